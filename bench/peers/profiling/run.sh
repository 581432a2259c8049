#!/usr/bin/env bash
# The profiling peers: ydata-profiling (minimal) and whylogs over an NDJSON file of
# visits, each timed several times; prints one JSON document on stdout (see
# profile_peers.py for exactly what each timing includes).
#
#   bench/peers/profiling/run.sh VISITS.ndjson [--runs N] [--only ydata|whylogs]
#
# The virtualenv is created once from requirements.txt (PyPI) in
# $TIDEWATCH_CACHE/venv-profiling (~/.cache/tidewatch/...) and reinstalled when
# requirements.txt changes. Install output goes to stderr only.
# Environment: TIDEWATCH_CACHE (~/.cache/tidewatch), PYTHON (python3.11, else python3).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cache="${TIDEWATCH_CACHE:-$HOME/.cache/tidewatch}"
venv="$cache/venv-profiling"

die() { echo "profiling peers: $*" >&2; exit 2; }

[ $# -ge 1 ] || die "usage: $0 VISITS.ndjson [--runs N] [--only ydata|whylogs]"

python="${PYTHON:-}"
if [ -z "$python" ]; then
  python="$(command -v python3.11 || command -v python3 || true)"
fi
[ -n "$python" ] || die "python3 (3.11) is required"

ensure_venv() {
  local want
  want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
  [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.requirements-hash" 2>/dev/null)" = "$want" ] && return 0
  echo "profiling peers: installing ydata-profiling and whylogs into $venv ..." >&2
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv" >&2 || die "could not create the virtualenv $venv"
  if ! "$venv/bin/python" -m pip install -q -r "$here/requirements.txt" >"$cache/venv-profiling.log" 2>&1; then
    tail -n 40 "$cache/venv-profiling.log" >&2
    die "pip install failed (log: $cache/venv-profiling.log)"
  fi
  echo "$want" >"$venv/.requirements-hash"
}

mkdir -p "$cache"
# One install at a time; runs only use the finished virtualenv.
exec 9>"$cache/.venv-profiling.lock"
flock 9
ensure_venv
flock -u 9
exec 9>&-

# Neither library may phone home during a measurement.
export YDATA_PROFILING_NO_ANALYTICS=True WHYLOGS_NO_ANALYTICS=True
exec "$venv/bin/python" "$here/profile_peers.py" "$@"
