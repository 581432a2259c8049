#!/usr/bin/env bash
# A real single-node OpenSearch for development, tests and benchmarks, run from Maven
# Central jars with the machine's Java 17+ (the node is embedded in a small launcher,
# scripts/opensearch/src/main/java/tidewatch/opensearch/EmbeddedNode.java, compiled by
# this script). No docker, no security plugin: plain HTTP on 127.0.0.1.
#
#   scripts/opensearch.sh start      start (idempotent) and wait until the cluster is yellow
#   scripts/opensearch.sh stop       stop it (TERM, then KILL after 30 s)
#   scripts/opensearch.sh status     exit 0 and print the URL if it answers
#   scripts/opensearch.sh kill9      kill -9 the node, keeping its data (fault tests)
#   scripts/opensearch.sh logs       follow the node log
#
# Environment:
#   TIDEWATCH_OPENSEARCH_PORT            HTTP port (9200)
#   TIDEWATCH_OPENSEARCH_TRANSPORT_PORT  transport port (9300)
#   TIDEWATCH_STATE_DIR                  data and logs go to $TIDEWATCH_STATE_DIR/opensearch-<port> (/tmp/tidewatch)
#   TIDEWATCH_OPENSEARCH_KEEP_DATA=1     start on the existing data (e.g. after kill9) instead of a fresh dir
#   TIDEWATCH_OPENSEARCH_HEAP            maximum heap (1g)
#   TIDEWATCH_OPENSEARCH_JAVA_OPTS       extra JVM options, space-separated
#   TIDEWATCH_OPENSEARCH_READY_TIMEOUT   seconds to wait for the cluster to turn yellow (180)
#   TIDEWATCH_CACHE                      jar cache, <cache>/opensearch-<version>/libs (~/.cache/tidewatch)
#   TIDEWATCH_OPENSEARCH_VERSION         OpenSearch version from Maven Central (2.19.6; 2.x only, 3.x needs Java 21)
#   JAVA_HOME                            the JDK to use (else java and javac on PATH)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
version="${TIDEWATCH_OPENSEARCH_VERSION:-2.19.6}"
port="${TIDEWATCH_OPENSEARCH_PORT:-9200}"
transport_port="${TIDEWATCH_OPENSEARCH_TRANSPORT_PORT:-9300}"
heap="${TIDEWATCH_OPENSEARCH_HEAP:-1g}"
state="${TIDEWATCH_STATE_DIR:-/tmp/tidewatch}/opensearch-$port"
cache="${TIDEWATCH_CACHE:-$HOME/.cache/tidewatch}/opensearch-$version"
libs="$cache/libs"
classes="$cache/launcher"
src="$here/opensearch/src/main/java/tidewatch/opensearch/EmbeddedNode.java"
main_class="tidewatch.opensearch.EmbeddedNode"
pidfile="$state/opensearch.pid"
logfile="$state/opensearch.log"
url="http://127.0.0.1:$port"
java="${JAVA_HOME:+$JAVA_HOME/bin/}java"
javac="${JAVA_HOME:+$JAVA_HOME/bin/}javac"
# The distribution's system JVM options that matter for an embedded node.
# shellcheck disable=SC2054  # the comma in SPI,COMPAT is not a separator
jvm_opts=("-Xmx$heap" -XX:+UseG1GC -XX:G1ReservePercent=25 -XX:InitiatingHeapOccupancyPercent=30
  -XX:-OmitStackTraceInFastThrow -Djava.awt.headless=true -Dfile.encoding=UTF-8 -Djna.nosys=true
  -Dio.netty.noUnsafe=true -Dio.netty.noKeySetOptimization=true -Dio.netty.recycler.maxCapacityPerThread=0
  -Dio.netty.allocator.numDirectArenas=0 -Dlog4j.shutdownHookEnabled=false -Dlog4j2.disable.jmx=true
  -Djava.locale.providers=SPI,COMPAT)
ready_timeout="${TIDEWATCH_OPENSEARCH_READY_TIMEOUT:-180}"
# Extra JVM options, split on spaces.
read -r -a extra_jvm_opts <<<"${TIDEWATCH_OPENSEARCH_JAVA_OPTS:-}"

die() { echo "opensearch.sh: $*" >&2; exit 1; }
say() { echo "opensearch.sh: $*"; }
# shellcheck source=scripts/service-lib.sh
source "$here/service-lib.sh"

[[ "$port" =~ ^[0-9]+$ && "$transport_port" =~ ^[0-9]+$ ]] || die "ports must be numbers"
[ "$port" != "$transport_port" ] || die "the HTTP and transport ports must differ"
[[ "$heap" =~ ^[0-9]+[mMgG]$ ]] || die "TIDEWATCH_OPENSEARCH_HEAP must look like 512m or 1g"
[[ "$ready_timeout" =~ ^[0-9]+$ ]] || die "TIDEWATCH_OPENSEARCH_READY_TIMEOUT must be a number of seconds"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# 0 when the cluster answers with status yellow or green.
healthy() {
  curl -sf --max-time 5 "$url/_cluster/health?wait_for_status=yellow&timeout=1s" >/dev/null 2>&1
}

# The pid of this state dir's node JVM, found through the pid file or, failing that,
# by its command line (which ends with the launcher class and this state dir).
node_pid() {
  jvm_pid "$main_class $state "
}

check_tools() {
  command -v "$java" >/dev/null || die "java 17+ is required (Debian: apt-get install -y openjdk-17-jdk-headless)"
  command -v curl >/dev/null || die "curl is required (Debian: apt-get install -y curl)"
  local v
  v="$("$java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1)"
  [ "${v:-0}" -ge 17 ] || die "OpenSearch $version needs Java 17 or later (found: ${v:-unknown})"
}

# Fetches the jars once; the marker holds the version and the pom's checksum so that
# editing the pom (or the version) fetches again.
ensure_jars() {
  local want
  want="$version $(sha256sum "$here/opensearch/pom.xml" | cut -d' ' -f1)"
  [ "$(cat "$libs/.complete" 2>/dev/null)" = "$want" ] && return 0
  command -v mvn >/dev/null || die "mvn is required (Debian: apt-get install -y maven)"
  say "fetching OpenSearch $version jars from Maven Central into $libs ..."
  mkdir -p "$cache"
  # Fetch next to the old dir and swap, so a node running from the old jars survives.
  rm -rf "$libs.new"; mkdir -p "$libs.new"
  mvn -q -B -Dstyle.color=never -f "$here/opensearch/pom.xml" -Dopensearch.version="$version" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$libs.new" >"$cache/mvn.log" 2>&1 \
    || { tail -n 30 "$cache/mvn.log" >&2; die "mvn could not fetch the OpenSearch jars (is Maven Central reachable?)"; }
  echo "$want" >"$libs.new/.complete"
  rm -rf "$libs.old"
  [ -d "$libs" ] && mv "$libs" "$libs.old"
  mv "$libs.new" "$libs"
  rm -rf "$libs.old"
}

# Compiles the launcher once per (jars, source); the marker works as for the jars.
ensure_launcher() {
  local want
  want="$(cat "$libs/.complete") $(sha256sum "$src" | cut -d' ' -f1)"
  [ "$(cat "$classes/.complete" 2>/dev/null)" = "$want" ] && return 0
  command -v "$javac" >/dev/null || die "javac is required to compile the launcher (Debian: apt-get install -y openjdk-17-jdk-headless)"
  rm -rf "$classes.new"; mkdir -p "$classes.new"
  "$javac" -nowarn -encoding UTF-8 --release 17 -cp "$libs/*" -d "$classes.new" "$src" >"$cache/javac.log" 2>&1 \
    || { cat "$cache/javac.log" >&2; die "compiling $src failed"; }
  echo "$want" >"$classes.new/.complete"
  rm -rf "$classes.old"
  [ -d "$classes" ] && mv "$classes" "$classes.old"
  mv "$classes.new" "$classes"
  rm -rf "$classes.old"
}

write_config() {
  mkdir -p "$state/config" "$state/data" "$state/logs" "$state/tmp" "$state/plugins" "$state/modules"
  cat >"$state/config/opensearch.yml" <<YML
# Written by scripts/opensearch.sh on every start.
cluster.name: tidewatch
node.name: tidewatch-$port
path.data: $state/data
path.logs: $state/logs
discovery.type: single-node
network.host: 127.0.0.1
http.port: $port
transport.port: $transport_port
# A test node on a shared disk must not turn indices read-only when the disk fills up.
cluster.routing.allocation.disk.threshold_enabled: false
YML
}

wait_ready() {
  local pid="$1" deadline=$((SECONDS + ready_timeout))
  while [ $SECONDS -lt $deadline ]; do
    kill -0 "$pid" 2>/dev/null || { tail -n 40 "$logfile" >&2; die "the node exited during start-up (log: $logfile)"; }
    healthy && return 0
    sleep 0.5
  done
  tail -n 40 "$logfile" >&2
  die "the node did not become ready (cluster health yellow) within $ready_timeout s (log: $logfile; it is still running, pid $pid)"
}

usage_hint() {
  local env=""
  [ -n "${TIDEWATCH_OPENSEARCH_PORT:-}" ] && env+="TIDEWATCH_OPENSEARCH_PORT=$port "
  [ -n "${TIDEWATCH_STATE_DIR:-}" ] && env+="TIDEWATCH_STATE_DIR=$TIDEWATCH_STATE_DIR "
  echo "url: $url"
  echo "stop it with: $env$0 stop"
}

start() {
  local pid started
  if pid="$(node_pid)"; then
    echo "$pid" >"$pidfile"
    wait_ready "$pid"
    say "node already running (pid $pid, data in $state)"
    usage_hint
    return 0
  fi
  port_open "$port" && die "port $port is in use by another process; set TIDEWATCH_OPENSEARCH_PORT"
  port_open "$transport_port" && die "port $transport_port is in use by another process; set TIDEWATCH_OPENSEARCH_TRANSPORT_PORT"
  check_tools
  cache_lock
  ensure_jars
  ensure_launcher
  cache_unlock
  started=$SECONDS
  if [ "${TIDEWATCH_OPENSEARCH_KEEP_DATA:-0}" = 1 ] && [ -d "$state/data/nodes" ]; then
    say "restarting on the existing data in $state"
    [ -f "$logfile" ] && mv -f "$logfile" "$logfile.1"
  else
    rm -rf "$state"
  fi
  write_config
  # The node logs to stdout (see opensearch/log4j2.properties), which goes to the log
  # file; it must not inherit the locks' descriptors (8, 9).
  nohup "$java" "${jvm_opts[@]}" ${extra_jvm_opts[@]+"${extra_jvm_opts[@]}"} -Djava.io.tmpdir="$state/tmp" \
    -Dlog4j2.configurationFile="$here/opensearch/log4j2.properties" \
    -cp "$libs/*:$classes" "$main_class" "$state" >"$logfile" 2>&1 </dev/null 8>&- 9>&- &
  pid=$!
  echo "$pid" >"$pidfile"
  wait_ready "$pid"
  say "OpenSearch $version ready in $((SECONDS - started)) s (pid $pid, data in $state)"
  usage_hint
}

stop() {
  local pid
  if ! pid="$(node_pid)"; then
    say "no node running"
    rm -f "$pidfile"
    return 0
  fi
  stop_jvm node "$pid"
}


# One jar fetch / launcher compile at a time per cache dir (nodes on other ports share it).
cache_lock() {
  command -v flock >/dev/null || return 0
  mkdir -p "$(dirname "$cache")"
  exec 8>"$cache.lock"
  flock 8
}
cache_unlock() { exec 8>&-; }

case "${1:-}" in
  start) lock; start ;;
  stop) lock; stop ;;
  status)
    if node_pid >/dev/null && healthy; then
      echo "url: $url"
    else
      say "not running"; exit 1
    fi ;;
  kill9)
    lock
    pid="$(node_pid)" || die "no node running"
    kill -KILL "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    say "killed node $pid with SIGKILL (data kept in $state; restart it with TIDEWATCH_OPENSEARCH_KEEP_DATA=1 $0 start)" ;;
  logs) tail -n 100 -F "$logfile" ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
esac
