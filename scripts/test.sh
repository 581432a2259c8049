#!/usr/bin/env bash
# The test command: starts the real services the tests need (an Apache Kafka broker and
# an OpenSearch node, both from Maven Central jars), checks the Prometheus rules with
# promtool (Debian's prometheus package, installed if missing), installs Debian's
# chromium if missing (the profile report and dashboard tests render in it), nginx-light
# (the TLS proxy of the secured-cluster tests, scripts/tls-proxy.sh) and libssl-dev with
# pkg-config (librdkafka's TLS), runs the whole test suite, and stops the services it started.
#
#   scripts/test.sh            # all tests
#   scripts/test.sh -- NAME    # only tests whose name contains NAME
#
# Build output goes to $CARGO_TARGET_DIR (default ~/.cache/tidewatch/target).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tidewatch/target}"
export TIDEWATCH_KAFKA_PORT="${TIDEWATCH_KAFKA_PORT:-9092}"
export TIDEWATCH_KAFKA="127.0.0.1:${TIDEWATCH_KAFKA_PORT}"
export TIDEWATCH_OPENSEARCH_PORT="${TIDEWATCH_OPENSEARCH_PORT:-9200}"
export TIDEWATCH_OPENSEARCH="http://127.0.0.1:${TIDEWATCH_OPENSEARCH_PORT}"

for tool in cargo java mvn; do
  command -v "$tool" >/dev/null || { echo "test.sh: '$tool' is required (see README: Requirements)" >&2; exit 1; }
done

started_kafka=0
started_opensearch=0
cleanup() {
  if [ "$started_kafka" = 1 ]; then scripts/kafka.sh stop || true; fi
  if [ "$started_opensearch" = 1 ]; then scripts/opensearch.sh stop || true; fi
}
trap cleanup EXIT

if ! scripts/kafka.sh status >/dev/null 2>&1; then
  scripts/kafka.sh start
  started_kafka=1
fi
if ! scripts/opensearch.sh status >/dev/null 2>&1; then
  scripts/opensearch.sh start
  started_opensearch=1
fi

# Prometheus configuration, alert rules and their unit tests (promtool, from Debian).
deploy/prometheus/check.sh

# Debian packages the tests need, installed when missing: headless Chromium for the
# profile report and dashboard tests, nginx for the TLS proxy of the secured-cluster
# tests, OpenSSL's headers and pkg-config for librdkafka's TLS (rdkafka's ssl feature).
missing=()
[ -x "${TIDEWATCH_CHROMIUM:-/usr/bin/chromium}" ] || missing+=(chromium)
command -v nginx >/dev/null || missing+=(nginx-light)
command -v pkg-config >/dev/null || missing+=(pkg-config)
command -v openssl >/dev/null || missing+=(openssl)
pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev)
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: installing Debian's ${missing[*]}" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "test.sh: run as root, or install them yourself: apt-get update && apt-get install -y ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
  fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# iproute2's `ip` for the hosts-apart test's network namespaces (Debian's iproute2).
if ! command -v ip >/dev/null; then
  echo "test.sh: ip is missing, installing Debian's iproute2 package" >&2
  { ${sudo:-} env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
    && ${sudo:-} env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iproute2 >/dev/null; } \
    || echo "test.sh: could not install iproute2; the hosts-apart test runs on loopback addresses" >&2
fi

# The guide's example observer builds and runs.
cargo run -q --locked -p tidewatch-operators --example custom_observer

cargo test --workspace --locked "$@"

# Malformed-input fuzzing of the parse-and-observe path for a bounded time: libFuzzer with
# the nightly toolchain and cargo-fuzz (installed once and cached if missing), else the
# seeded fallback. A crash or a broken invariant fails the run (the input is kept under
# ~/.cache/tidewatch/fuzz/artifacts). TIDEWATCH_FUZZ_SECONDS=0 skips it.
fuzz_seconds="${TIDEWATCH_FUZZ_SECONDS:-60}"
if [ "$fuzz_seconds" != 0 ]; then
  fuzz/run.sh "$fuzz_seconds"
fi
