#!/usr/bin/env bash
# The MirrorMaker 2 peer: Kafka's own topic copier (connect-mirror, the broker's version,
# from Maven Central), in dedicated mode, source and target both the broker at BOOTSTRAP.
# It copies every record of INPUT to the same partition of ALIAS.INPUT (the default
# replication policy's name for it; the source cluster's alias is ALIAS, unique per run)
# and runs until it is ended (SIGTERM); the bench suite times it by the output topic's end
# offsets (`suite watch`, see README.md).
#
#   bench/peers/mirrormaker/run.sh BOOTSTRAP INPUT ALIAS
#   bench/peers/mirrormaker/run.sh --prepare     # only fetch the jars (cached)
#
# The jars (pom.xml) are copied once with `mvn dependency:copy-dependencies` into
# $TIDEWATCH_CACHE/peers/mirrormaker/libs (~/.cache/tidewatch/...), again when pom.xml
# changes. Needs Java 17 and Maven. Environment: TIDEWATCH_CACHE, JAVA_HOME.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cache="${TIDEWATCH_CACHE:-$HOME/.cache/tidewatch}/peers/mirrormaker"
libs="$cache/libs"
java="${JAVA_HOME:+$JAVA_HOME/bin/}java"

die() { echo "mirrormaker peer: $*" >&2; exit 2; }

ensure_jars() {
  local want
  want="$(sha256sum "$here/pom.xml" | cut -d' ' -f1)"
  [ "$(cat "$libs/.pom-hash" 2>/dev/null)" = "$want" ] && return 0
  command -v mvn >/dev/null || die "mvn is required (Debian: apt-get install -y maven)"
  echo "mirrormaker peer: fetching connect-mirror and its dependencies into $libs ..." >&2
  rm -rf "$libs"
  mkdir -p "$libs"
  if ! mvn -q -B -Dstyle.color=never -f "$here/pom.xml" -Dmm2.libs.dir="$libs" dependency:copy-dependencies >"$cache/mvn.log" 2>&1; then
    tail -n 40 "$cache/mvn.log" >&2
    die "the Maven copy failed (log: $cache/mvn.log)"
  fi
  echo "$want" >"$libs/.pom-hash"
}

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
ensure_jars
flock -u 9
exec 9>&-

if [ "${1:-}" = "--prepare" ]; then
  exit 0
fi
[ $# -eq 3 ] || die "usage: $0 BOOTSTRAP INPUT ALIAS  |  $0 --prepare"
bootstrap="$1" input="$2" alias="$3"
target="$alias-t"

# Every setting that is not MirrorMaker's default says why (README.md has the table).
config="$(mktemp -t tidewatch-mm2-XXXXXX.properties)"
trap 'rm -f "$config"' EXIT
cat >"$config" <<PROPS
clusters = $alias, $target
$alias.bootstrap.servers = $bootstrap
$target.bootstrap.servers = $bootstrap
$alias->$target.enabled = true
$target->$alias.enabled = false
$alias->$target.topics = $input
# One broker: every internal topic with one replica.
replication.factor = 1
checkpoints.topic.replication.factor = 1
heartbeats.topic.replication.factor = 1
offset-syncs.topic.replication.factor = 1
offset.storage.replication.factor = 1
status.storage.replication.factor = 1
config.storage.replication.factor = 1
tasks.max = 1
# Connect finds its plugins through their ServiceLoader manifests instead of scanning
# every jar (the scan takes seconds at start-up and warns that this is possible).
plugin.discovery = service_load
# A fresh copy from the oldest offset (MirrorMaker's consumer default is earliest too).
$alias.consumer.auto.offset.reset = earliest
# The producer as every contender's: linger 5 ms, 1 MB batches, idempotent, acks=all, uncompressed.
$target.producer.linger.ms = 5
$target.producer.batch.size = 1000000
$target.producer.enable.idempotence = true
$target.producer.acks = all
$target.producer.compression.type = none
PROPS

# Not exec'd, so the config file goes when MirrorMaker does; TERM is passed on.
"$java" -Xmx1g -Dlog4j2.configurationFile="$here/log4j2.properties" -cp "$libs/*" \
  org.apache.kafka.connect.mirror.MirrorMaker "$config" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null' TERM INT
wait "$pid" || wait "$pid"
