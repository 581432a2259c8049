#!/usr/bin/env bash
# Fuzzes the parse-and-observe path (fuzz_targets/classify.rs: FieldSet::classify, then
# the value-rules and reconciliation observers) for a bounded time. scripts/test.sh runs it.
#
#   fuzz/run.sh [SECONDS] [LIBFUZZER-FLAGS...]   # default 60 s
#
# e.g. `fuzz/run.sh 60 -fork=1 -ignore_crashes=1` keeps fuzzing after a crash. Like
# libFuzzer, it exits non-zero when an invariant breaks, leaving the input in artifacts.
#
# With the nightly toolchain and cargo-fuzz (installed here if missing) it runs the
# libFuzzer target. Without nightly, or if cargo-fuzz cannot be installed or built, it
# builds the same file as a plain binary (--no-default-features) that runs the same
# checks over a seeded pseudo-random corpus; FUZZ_FALLBACK=1 forces that mode and
# FUZZ_SEED picks its seed. Build output goes to $CARGO_TARGET_DIR/fuzz (default
# ~/.cache/tidewatch/target/fuzz); the corpus and crash artifacts to $FUZZ_WORK (default
# ~/.cache/tidewatch/fuzz), outside the repository.
set -euo pipefail

seconds="${1:-60}"
shift $(( $# > 0 ? 1 : 0 ))
case "$seconds" in '' | *[!0-9]*) echo "usage: $0 [SECONDS] [LIBFUZZER-FLAGS...]" >&2; exit 2 ;; esac
here="$(cd "$(dirname "$0")" && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tidewatch/target}/fuzz"
work="${FUZZ_WORK:-$HOME/.cache/tidewatch/fuzz}"
corpus="$work/corpus/classify"
artifacts="$work/artifacts/classify"
mkdir -p "$corpus" "$artifacts"

fallback() {
    echo "run.sh: $1; running the fallback (same checks, seeded pseudo-random corpus) for ${seconds}s" >&2
    cargo build --release --quiet --manifest-path "$here/Cargo.toml" --no-default-features --bin classify
    FUZZ_ARTIFACTS="$artifacts" exec "$CARGO_TARGET_DIR/release/classify" "$seconds" "${FUZZ_SEED:-$(date +%s)}"
}

[ "${FUZZ_FALLBACK:-0}" = 1 ] && fallback "FUZZ_FALLBACK=1"

toolchains="$(rustup toolchain list 2>/dev/null || true)"
if ! grep -q '^nightly' <<<"$toolchains"; then
    echo "run.sh: installing the nightly toolchain" >&2
    rustup toolchain install nightly --profile minimal >&2 || fallback "the nightly toolchain is not installable here"
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "run.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked >&2 || fallback "cargo-fuzz could not be installed"
fi

# A few seeds, the first time.
if [ -z "$(ls -A "$corpus")" ]; then
    printf '%s' '{"event_time":"2024-05-01T12:00:00Z","user_id":"u-1","page":"/home"}' >"$corpus/valid"
    printf '%s' '{"event_time":null,"user_id":"","page":[],"context":{"user":{"login":{}},"referral":null}}' >"$corpus/kinds"
    printf '%s' '{"a":{"b":{"c":{"d":{"e":1}}}},"x":[1,"",{}],"p\u0061ge":1e400}' >"$corpus/nested"
    printf '%s' '[1,"x",null]' >"$corpus/array"
    printf '{"page":"caf\xe9","x":"\xc3\x28"}' >"$corpus/latin1"
fi

cd "$here"
cargo +nightly fuzz build --fuzz-dir "$here" classify >&2 || fallback "cargo fuzz build failed"
# The binary cargo fuzz built, run directly so nothing is written inside the repository.
host="$(rustc -vV | sed -n 's/^host: //p')"
# -max_len: room for deep nesting; -timeout: a hang is a failure too.
exec "$CARGO_TARGET_DIR/$host/release/classify" "$corpus" \
    -max_total_time="$seconds" -max_len=20000 -timeout=10 -rss_limit_mb=4096 \
    -artifact_prefix="$artifacts/" -print_final_stats=1 "$@"
