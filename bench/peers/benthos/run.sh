#!/usr/bin/env bash
# The Benthos peer: Benthos v4.27.0 (MIT; the last release under that name and licence)
# built from the Go module proxy, copying every record of INPUT to the same partition of
# OUTPUT (passthrough.yaml), or copying and counting what tidewatch's quality observer
# counts (observe.yaml), with THREADS pipeline threads and its Prometheus metrics on
# 127.0.0.1:PORT. It runs until it is ended (SIGTERM); the bench suite times it by the
# output topic's end offsets (`suite watch`, see README.md).
#
#   bench/peers/benthos/run.sh BOOTSTRAP INPUT OUTPUT THREADS passthrough|observe PORT
#   bench/peers/benthos/run.sh --prepare        # only build the binary (cached)
#
# The binary is built once with `go mod tidy && go build` from go.mod and main.go here
# (go.sum pins every module) into $TIDEWATCH_CACHE/peers/benthos (~/.cache/tidewatch/...),
# and rebuilt when go.mod, go.sum or main.go change. Build output goes to stderr only.
# Needs Go 1.21 or later. Environment: TIDEWATCH_CACHE (~/.cache/tidewatch), GOPROXY.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cache="${TIDEWATCH_CACHE:-$HOME/.cache/tidewatch}/peers/benthos"
bin="$cache/benthos"

die() { echo "benthos peer: $*" >&2; exit 2; }

source_hash() {
  (cd "$here" && sha256sum go.mod go.sum main.go) | sha256sum | cut -d' ' -f1
}

ensure_binary() {
  local want
  want="$(source_hash)"
  [ -x "$bin" ] && [ "$(cat "$cache/.source-hash" 2>/dev/null)" = "$want" ] && return 0
  command -v go >/dev/null || die "go is required (https://go.dev/doc/install, or Debian: apt-get install -y golang)"
  echo "benthos peer: building Benthos v4.27.0 into $bin (about a minute) ..." >&2
  # Built in a copy, so the module files here stay as committed.
  local work="$cache/src"
  rm -rf "$work" && mkdir -p "$work"
  cp "$here/go.mod" "$here/go.sum" "$here/main.go" "$work/"
  if ! (cd "$work" && go mod tidy && go build -o "$bin.new" .) >"$cache/build.log" 2>&1; then
    tail -n 20 "$cache/build.log" >&2
    die "the Go build failed (log: $cache/build.log)"
  fi
  mv "$bin.new" "$bin"
  echo "$want" >"$cache/.source-hash"
}

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
ensure_binary
flock -u 9
exec 9>&-

if [ "${1:-}" = "--prepare" ]; then
  exit 0
fi
[ $# -eq 6 ] || die "usage: $0 BOOTSTRAP INPUT OUTPUT THREADS passthrough|observe PORT  |  $0 --prepare"
case "$5" in passthrough|observe) ;; *) die "the fifth argument is passthrough or observe, not $5" ;; esac

export TW_BROKERS="$1" TW_INPUT="$2" TW_OUTPUT="$3" TW_THREADS="$4" TW_HTTP_PORT="$6"
exec "$bin" -c "$here/$5.yaml"
