#!/usr/bin/env bash
# The benchmark suite in one command (see bench/README.md):
#
#   bench/run.sh            # full run: 1 M visits, 3 rounds, latency at 25/50/75 %  (~45 min with every peer)
#   bench/run.sh --quick    # smoke run (~6-8 min with every peer)
#
# Any flag of the suite passes through (bench/run.sh --help). Starts the broker with
# scripts/kafka.sh when none answers at 127.0.0.1:9092, prepares the peers (Maven
# Central, PyPI, the Go module proxy; cached under ~/.cache/tidewatch), shows progress on stderr and writes
# bench/results/suite.{json,md} and suite-{throughput,latency}.svg.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tidewatch/target}"
exec cargo run --release -q -p tidewatch-bench --bin suite -- "$@"
