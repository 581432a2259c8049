#!/usr/bin/env bash
# The Spark peer: the reference online observer reduced to its copy and its per-batch
# data-quality counts (passthrough.py), on PySpark in local[2] mode. Copies every record
# of INPUT to the same partition of OUTPUT; with EXPECT > 0 stops once OUTPUT holds EXPECT
# records and prints {"records":N,"seconds":S} on stdout; with EXPECT 0 runs until ended.
#
#   bench/peers/spark/run.sh BOOTSTRAP INPUT OUTPUT EXPECT
#   bench/peers/spark/run.sh --prepare        # only install what it needs (cached)
#
# PySpark (requirements.txt) goes into a venv at $TIDEWATCH_CACHE/venv-spark, Spark's
# Kafka connector jars (pom.xml) into $TIDEWATCH_CACHE/spark-jars with
# `mvn dependency:copy-dependencies` (Maven Central only; passed with spark.jars, no ivy).
# Both are redone when requirements.txt or pom.xml change. Setup output and Spark's logs
# go to stderr only. Needs Python 3.11 (or python3), Java 17 and Maven.
# Environment: TIDEWATCH_CACHE (~/.cache/tidewatch), PYTHON (python3.11, else python3).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cache="${TIDEWATCH_CACHE:-$HOME/.cache/tidewatch}"
venv="$cache/venv-spark"
jars="$cache/spark-jars"

die() { echo "spark peer: $*" >&2; exit 2; }

hash_of() { sha256sum "$1" | cut -d' ' -f1; }

ensure_venv() {
  local want
  want="$(hash_of "$here/requirements.txt")"
  [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.requirements-hash" 2>/dev/null)" = "$want" ] && return 0
  local python="${PYTHON:-}"
  [ -n "$python" ] || python="$(command -v python3.11 || command -v python3)" || die "python3 is required"
  echo "spark peer: installing PySpark into $venv ..." >&2
  rm -rf "$venv"
  "$python" -m venv "$venv" >&2
  "$venv/bin/pip" install -q -r "$here/requirements.txt" >&2 || die "pip install failed"
  echo "$want" >"$venv/.requirements-hash"
}

ensure_jars() {
  local want
  want="$(hash_of "$here/pom.xml")"
  [ "$(cat "$jars/.pom-hash" 2>/dev/null)" = "$want" ] && return 0
  command -v mvn >/dev/null || die "mvn is required (Debian: apt-get install -y maven)"
  echo "spark peer: fetching Spark's Kafka connector jars into $jars ..." >&2
  rm -rf "$jars"
  mkdir -p "$jars"
  if ! mvn -q -B -Dstyle.color=never -f "$here/pom.xml" -Dspark.jars.dir="$jars" dependency:copy-dependencies >"$cache/spark-jars-mvn.log" 2>&1; then
    tail -n 40 "$cache/spark-jars-mvn.log" >&2
    die "the Maven copy failed (log: $cache/spark-jars-mvn.log)"
  fi
  echo "$want" >"$jars/.pom-hash"
}

mkdir -p "$cache"
exec 9>"$cache/.spark-peer.lock"
flock 9
ensure_venv
ensure_jars
flock -u 9
exec 9>&-

if [ "${1:-}" = "--prepare" ]; then
  exit 0
fi
[ $# -eq 4 ] || die "usage: $0 BOOTSTRAP INPUT OUTPUT EXPECT  |  $0 --prepare"

jar_list="$(find "$jars" -name '*.jar' | LC_ALL=C sort | paste -sd, -)"
export PYSPARK_PYTHON="$venv/bin/python"
exec "$venv/bin/python" "$here/passthrough.py" --bootstrap "$1" --input "$2" --output "$3" --expect "$4" --jars "$jar_list"
