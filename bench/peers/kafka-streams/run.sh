#!/usr/bin/env bash
# The Kafka Streams passthrough peer: copies every record of INPUT to the same partition
# of OUTPUT with THREADS stream threads, stops once EXPECT records are forwarded and
# flushed, and prints one JSON line on stdout: {"records":N,"seconds":S}. With --observe
# it also counts what tidewatch's quality observer counts (per 10 s window, on stderr;
# their sum as "observed" in the result line).
#
#   bench/peers/kafka-streams/run.sh BOOTSTRAP INPUT OUTPUT THREADS EXPECT [--observe]
#   bench/peers/kafka-streams/run.sh --prepare     # only build the jar (cached)
#
# A line {"event":"start"} on stdout, before the result, marks the start of the timed span.
# The jar is built once with Maven (Java 17, jars from Maven Central) into
# $TIDEWATCH_CACHE/peers/kafka-streams (~/.cache/tidewatch/...) and rebuilt when pom.xml
# or anything under src/ changes. Build output and logs go to stderr only.
# Environment: TIDEWATCH_CACHE (~/.cache/tidewatch), JAVA_HOME (else java on PATH).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cache="${TIDEWATCH_CACHE:-$HOME/.cache/tidewatch}/peers/kafka-streams"
build="$cache/build"
jar="$build/kafka-streams-passthrough.jar"
java="${JAVA_HOME:+$JAVA_HOME/bin/}java"

die() { echo "kafka-streams peer: $*" >&2; exit 2; }


# What the jar is built from: the pom and every file under src/, in a stable order.
source_hash() {
  (cd "$here" && { echo pom.xml; find src -type f | LC_ALL=C sort; } | xargs sha256sum) | sha256sum | cut -d' ' -f1
}

ensure_jar() {
  local want
  want="$(source_hash)"
  [ -f "$jar" ] && [ "$(cat "$build/.source-hash" 2>/dev/null)" = "$want" ] && return 0
  command -v mvn >/dev/null || die "mvn is required (Debian: apt-get install -y maven)"
  echo "kafka-streams peer: building the jar into $build ..." >&2
  rm -rf "$build"
  if ! mvn -q -B -Dstyle.color=never -f "$here/pom.xml" -Dpeer.build.dir="$build" package >"$cache/mvn.log" 2>&1; then
    tail -n 40 "$cache/mvn.log" >&2
    die "the Maven build failed (log: $cache/mvn.log)"
  fi
  echo "$want" >"$build/.source-hash"
}

mkdir -p "$cache"
# One build at a time; runs only read the finished jar.
exec 9>"$cache/.lock"
flock 9
ensure_jar
flock -u 9
exec 9>&-

if [ "${1:-}" = "--prepare" ]; then
  exit 0
fi
[ $# -eq 5 ] || { [ $# -eq 6 ] && [ "$6" = --observe ]; } || die "usage: $0 BOOTSTRAP INPUT OUTPUT THREADS EXPECT [--observe]  |  $0 --prepare"
bootstrap="$1" input="$2" output="$3" threads="$4" expect="$5"

exec "$java" -Xmx1g -jar "$jar" \
  --bootstrap "$bootstrap" --input "$input" --output "$output" --threads "$threads" --expect "$expect" ${6:+"$6"}
