#!/usr/bin/env bash
# A real single-node Apache Kafka broker (KRaft, broker + controller in one JVM) for
# development, tests and benchmarks, built from Maven Central jars with the machine's
# Java. No docker.
#
#   scripts/kafka.sh start                   start (idempotent) and wait until ready
#   scripts/kafka.sh stop                    stop it (TERM, then KILL after 30 s)
#   scripts/kafka.sh status                  exit 0 if it answers
#   scripts/kafka.sh kill9                   kill -9 (keeps the data; for fault tests)
#   scripts/kafka.sh create-topic NAME [N]   create a topic with N partitions (default 2)
#   scripts/kafka.sh logs                    follow the broker log
#
# Environment: TIDEWATCH_KAFKA_PORT (9092), TIDEWATCH_KAFKA_CONTROLLER_PORT (9093),
# TIDEWATCH_STATE_DIR (/tmp/tidewatch), TIDEWATCH_KAFKA_KEEP_DATA=1 to restart on the
# existing data, TIDEWATCH_CACHE (~/.cache/tidewatch) for the jars.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
version="4.1.2"
port="${TIDEWATCH_KAFKA_PORT:-9092}"
controller_port="${TIDEWATCH_KAFKA_CONTROLLER_PORT:-9093}"
state="${TIDEWATCH_STATE_DIR:-/tmp/tidewatch}/kafka-$port"
libs="${TIDEWATCH_CACHE:-$HOME/.cache/tidewatch}/kafka-$version/libs"
pidfile="$state/kafka.pid"
logfile="$state/kafka.log"
bootstrap="127.0.0.1:$port"

die() { echo "kafka.sh: $*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

running_pid() {
  [ -f "$pidfile" ] || return 1
  local pid; pid="$(cat "$pidfile")"
  kill -0 "$pid" 2>/dev/null && echo "$pid"
}

ensure_jars() {
  [ -f "$libs/.complete" ] && return 0
  command -v java >/dev/null || die "java is required (Debian: apt-get install -y openjdk-17-jre-headless)"
  command -v mvn >/dev/null || die "mvn is required (Debian: apt-get install -y maven)"
  echo "kafka.sh: fetching Apache Kafka $version jars from Maven Central into $libs ..."
  rm -rf "$libs"; mkdir -p "$libs"
  mvn -q -B -f "$here/kafka/pom.xml" -Dkafka.version="$version" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$libs" >"$libs.mvn.log" 2>&1 \
    || { tail -n 30 "$libs.mvn.log" >&2; die "mvn could not fetch the Kafka jars (is Maven Central reachable?)"; }
  touch "$libs/.complete"
}

java_cmd() {
  java -Xms256m -Xmx512m -XX:+UseG1GC -Djava.awt.headless=true \
       -Dlog4j2.configurationFile="${log_config:-$here/kafka/log4j2.properties}" \
       -cp "$libs/*" "$@"
}

write_properties() {
  mkdir -p "$state/data"
  cat > "$state/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$state/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
message.max.bytes=2097152
replica.fetch.max.bytes=2097152
log.retention.hours=24
log.segment.bytes=268435456
PROPS
}

wait_ready() {
  local pid="$1" deadline=$((SECONDS + 120))
  while [ $SECONDS -lt $deadline ]; do
    kill -0 "$pid" 2>/dev/null || { tail -n 40 "$logfile" >&2; die "the broker exited during start-up (log: $logfile)"; }
    if port_open "$port" && grep -q "Kafka Server started\|\[KafkaRaftServer nodeId=1\] Kafka Server started" "$logfile" 2>/dev/null; then
      return 0
    fi
    sleep 0.5
  done
  tail -n 40 "$logfile" >&2
  die "the broker did not become ready within 120 s (log: $logfile)"
}

start() {
  if pid="$(running_pid)"; then
    echo "kafka.sh: broker already running (pid $pid)"
    echo "bootstrap servers: $bootstrap"
    return 0
  fi
  port_open "$port" && die "port $port is in use by another process; set TIDEWATCH_KAFKA_PORT"
  ensure_jars
  if [ "${TIDEWATCH_KAFKA_KEEP_DATA:-0}" != 1 ] || [ ! -f "$state/server.properties" ]; then
    rm -rf "$state"
    write_properties
    local cluster_id
    cluster_id="$(java_cmd kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)"
    java_cmd kafka.tools.StorageTool format -t "$cluster_id" -c "$state/server.properties" --ignore-formatted >"$state/format.log" 2>&1 \
      || { cat "$state/format.log" >&2; die "formatting the storage failed"; }
  fi
  local started=$SECONDS
  java_cmd kafka.Kafka "$state/server.properties" >"$logfile" 2>&1 </dev/null &
  echo $! > "$pidfile"
  wait_ready "$(cat "$pidfile")"
  echo "kafka.sh: Apache Kafka $version ready in $((SECONDS - started)) s (pid $(cat "$pidfile"), data in $state)"
  echo "bootstrap servers: $bootstrap"
  echo "stop it with: scripts/kafka.sh stop"
}

stop() {
  local pid
  if ! pid="$(running_pid)"; then
    echo "kafka.sh: no broker running"
    rm -f "$pidfile"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "kafka.sh: broker did not stop in 30 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  echo "kafka.sh: broker stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status)
    if running_pid >/dev/null && port_open "$port"; then echo "bootstrap servers: $bootstrap"; else echo "kafka.sh: not running"; exit 1; fi ;;
  kill9)
    pid="$(running_pid)" || die "no broker running"
    kill -KILL "$pid"; echo "kafka.sh: killed broker $pid with SIGKILL (data kept in $state)" ;;
  create-topic)
    [ -n "${2:-}" ] || die "usage: kafka.sh create-topic NAME [PARTITIONS]"
    ensure_jars
    log_config="$here/kafka/tools-log4j2.properties" java_cmd org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" --create --if-not-exists \
      --topic "$2" --partitions "${3:-2}" --replication-factor 1 ;;
  logs) tail -F "$logfile" ;;
  *) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
