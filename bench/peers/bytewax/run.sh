#!/usr/bin/env bash
# The Bytewax peer: Bytewax 0.21.1 (PyPI) with confluent-kafka, its KafkaSource →
# KafkaSink copying every record of INPUT to the same partition of OUTPUT (flow.py), in
# WORKERS worker processes, optionally observing as tidewatch's quality observer does
# ("observe"). With EXPECT > 0 it stops at the input's end and prints
# {"records":N,"seconds":S} on stdout; with EXPECT 0 it runs until ended (driver.py).
#
#   bench/peers/bytewax/run.sh BOOTSTRAP INPUT OUTPUT WORKERS EXPECT passthrough|observe
#   bench/peers/bytewax/run.sh --prepare          # only install (cached)
#
# requirements.txt goes into a virtualenv at $TIDEWATCH_CACHE/peers/bytewax/venv
# (~/.cache/tidewatch/...), again when it changes. Install output goes to stderr only.
# Needs Python 3.8-3.12 (python3.11, else python3). Environment: TIDEWATCH_CACHE, PYTHON.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cache="${TIDEWATCH_CACHE:-$HOME/.cache/tidewatch}/peers/bytewax"
venv="$cache/venv"

die() { echo "bytewax peer: $*" >&2; exit 2; }

ensure_venv() {
  local want
  want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
  [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.requirements-hash" 2>/dev/null)" = "$want" ] && return 0
  local python="${PYTHON:-}"
  [ -n "$python" ] || python="$(command -v python3.11 || command -v python3)" || die "python3 is required"
  echo "bytewax peer: installing Bytewax into $venv ..." >&2
  rm -rf "$venv"
  "$python" -m venv "$venv" >&2 || die "could not create the virtualenv $venv"
  if ! "$venv/bin/python" -m pip install -q -r "$here/requirements.txt" >"$cache/pip.log" 2>&1; then
    tail -n 20 "$cache/pip.log" >&2
    die "pip install failed (log: $cache/pip.log)"
  fi
  echo "$want" >"$venv/.requirements-hash"
}

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
ensure_venv
flock -u 9
exec 9>&-

if [ "${1:-}" = "--prepare" ]; then
  exit 0
fi
[ $# -eq 6 ] || die "usage: $0 BOOTSTRAP INPUT OUTPUT WORKERS EXPECT passthrough|observe  |  $0 --prepare"
exec "$venv/bin/python" "$here/driver.py" "$@"
