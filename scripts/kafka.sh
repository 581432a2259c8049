#!/usr/bin/env bash
# A real single-node Apache Kafka broker (KRaft: broker and controller in one JVM) for
# development, tests and benchmarks, run from Maven Central jars with the machine's
# Java 17+. No docker.
#
#   scripts/kafka.sh start                   start (idempotent) and wait until ready
#   scripts/kafka.sh stop                    stop it (TERM, then KILL after 30 s)
#   scripts/kafka.sh status                  exit 0 and print the bootstrap servers if it answers
#   scripts/kafka.sh kill9                   kill -9 the broker, keeping its data (fault tests)
#   scripts/kafka.sh create-topic NAME [N]   create a topic with N partitions (default 1)
#   scripts/kafka.sh quota CLIENT RATE       cap the fetch rate of client.id CLIENT at RATE bytes/s
#                                            (a broker quota, e.g. to make a job fall behind; 0 removes it)
#   scripts/kafka.sh logs                    follow the broker log
#
# With TIDEWATCH_KAFKA_SECURITY=sasl_ssl the broker also has a SASL_SSL listener
# (SCRAM-SHA-512 over TLS) for clients; its PLAINTEXT listener (inter-broker, and the
# admin commands above) then listens on 127.0.0.1 only. At a fresh start a throwaway CA
# and a broker certificate (SAN IP:127.0.0.1, DNS:localhost and TIDEWATCH_KAFKA_HOST)
# are made with openssl in <state>/security/, and the SCRAM user is added when the
# storage is formatted; its password (and the keystore's) are written 0600 there.
# `start` and `status` print the listener, the CA file and the password file.
#
# Environment:
#   TIDEWATCH_KAFKA_PORT             broker port (9092)
#   TIDEWATCH_KAFKA_HOST             address the broker listens on and advertises (127.0.0.1;
#                                    e.g. a bridge address that network namespaces reach)
#   TIDEWATCH_KAFKA_CONTROLLER_PORT  controller port (9093)
#   TIDEWATCH_KAFKA_JMX_PORT         port of the broker's Prometheus JMX exporter agent on 127.0.0.1
#                                    (5556; `off` runs the broker without it), rules in kafka/jmx-exporter.yml
#   TIDEWATCH_JMX_EXPORTER_VERSION   io.prometheus.jmx:jmx_prometheus_javaagent from Maven Central (1.0.1)
#   TIDEWATCH_STATE_DIR              data and logs go to $TIDEWATCH_STATE_DIR/kafka-<port> (/tmp/tidewatch)
#   TIDEWATCH_KAFKA_KEEP_DATA=1      start on the existing data (e.g. after kill9) instead of a fresh dir
#   TIDEWATCH_CACHE                  jar cache, <cache>/kafka-<version>/libs (~/.cache/tidewatch)
#   TIDEWATCH_KAFKA_VERSION          Kafka version from Maven Central (4.1.2; 4.1 or later)
#   TIDEWATCH_KAFKA_SECURITY         plaintext (default) or sasl_ssl (read at start; other
#                                    commands tell from the state dir)
#   TIDEWATCH_KAFKA_SASL_SSL_PORT    port of the SASL_SSL listener (9094)
#   TIDEWATCH_KAFKA_SASL_USERNAME    the SCRAM-SHA-512 user (tidewatch)
#   TIDEWATCH_KAFKA_SASL_PASSWORD    its password ([A-Za-z0-9._~-], at least 8; random if unset)
#   JAVA_HOME                        the Java to use (else java on PATH)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
version="${TIDEWATCH_KAFKA_VERSION:-4.1.2}"
port="${TIDEWATCH_KAFKA_PORT:-9092}"
host="${TIDEWATCH_KAFKA_HOST:-127.0.0.1}"
controller_port="${TIDEWATCH_KAFKA_CONTROLLER_PORT:-9093}"
state="${TIDEWATCH_STATE_DIR:-/tmp/tidewatch}/kafka-$port"
libs="${TIDEWATCH_CACHE:-$HOME/.cache/tidewatch}/kafka-$version/libs"
props="$state/server.properties"
pidfile="$state/kafka.pid"
logfile="$state/kafka.log"
bootstrap="$host:$port"
java="${JAVA_HOME:+$JAVA_HOME/bin/}java"
jvm_opts=(-Xms256m -Xmx512m -XX:+UseG1GC -Djava.awt.headless=true)
jmx_port="${TIDEWATCH_KAFKA_JMX_PORT:-5556}"
sasl_port="${TIDEWATCH_KAFKA_SASL_SSL_PORT:-9094}"
sasl_user="${TIDEWATCH_KAFKA_SASL_USERNAME:-tidewatch}"
security_dir="$state/security"
jmx_version="${TIDEWATCH_JMX_EXPORTER_VERSION:-1.0.1}"
agent_dir="${TIDEWATCH_CACHE:-$HOME/.cache/tidewatch}/jmx-exporter-$jmx_version"
agent_jar="$agent_dir/jmx_prometheus_javaagent-$jmx_version.jar"

die() { echo "kafka.sh: $*" >&2; exit 1; }
say() { echo "kafka.sh: $*"; }
# shellcheck source=scripts/service-lib.sh
source "$here/service-lib.sh"
# shellcheck source=scripts/tls-lib.sh
source "$here/tls-lib.sh"

# The listener set: from the environment at start, else from the state dir.
security="${TIDEWATCH_KAFKA_SECURITY:-}"
if [ -z "$security" ]; then
  if [ "${1:-}" != start ] && [ -f "$security_dir/ca.pem" ]; then security=sasl_ssl; else security=plaintext; fi
fi
[[ "$security" = plaintext || "$security" = sasl_ssl ]] || die "TIDEWATCH_KAFKA_SECURITY must be plaintext or sasl_ssl, got '$security'"
plain_host="$host"
if [ "$security" = sasl_ssl ]; then
  # The plaintext listener serves the broker itself and the admin commands, on loopback only.
  plain_host=127.0.0.1
  bootstrap="127.0.0.1:$port"
  [[ "$sasl_port" =~ ^[0-9]+$ ]] || die "TIDEWATCH_KAFKA_SASL_SSL_PORT must be a port number"
  [ "$sasl_port" != "$port" ] && [ "$sasl_port" != "$controller_port" ] || die "TIDEWATCH_KAFKA_SASL_SSL_PORT must differ from the broker and controller ports"
  [[ "$sasl_user" =~ ^[A-Za-z0-9._~-]+$ ]] || die "TIDEWATCH_KAFKA_SASL_USERNAME must be made of [A-Za-z0-9._~-]"
  if [ -n "${TIDEWATCH_KAFKA_SASL_PASSWORD:-}" ] && ! [[ "$TIDEWATCH_KAFKA_SASL_PASSWORD" =~ ^[A-Za-z0-9._~-]{8,}$ ]]; then
    die "TIDEWATCH_KAFKA_SASL_PASSWORD must be at least 8 characters of [A-Za-z0-9._~-]"
  fi
fi

[[ "$port" =~ ^[0-9]+$ && "$controller_port" =~ ^[0-9]+$ ]] || die "ports must be numbers"
[[ "$jmx_port" = off || "$jmx_port" =~ ^[0-9]+$ ]] || die "TIDEWATCH_KAFKA_JMX_PORT must be a port number or off"
[[ "$host" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "TIDEWATCH_KAFKA_HOST must be an IPv4 address, got '$host'"

# port_open PORT [HOST]: something listens there (HOST defaults to 127.0.0.1).
port_open() { (exec 3<>"/dev/tcp/${2:-127.0.0.1}/$1") 2>/dev/null; }

# The pid of this state dir's broker JVM, found through the pid file or, failing that,
# by its command line (which names this state dir's server.properties).
broker_pid() {
  jvm_pid "kafka.Kafka $props"
}

# Fetches the jars once; the marker holds the pom's checksum so that editing the pom
# (or the version) fetches again.
ensure_jars() {
  local want
  want="$version $(sha256sum "$here/kafka/pom.xml" | cut -d' ' -f1)"
  [ "$(cat "$libs/.complete" 2>/dev/null)" = "$want" ] && return 0
  command -v mvn >/dev/null || die "mvn is required (Debian: apt-get install -y maven)"
  say "fetching Apache Kafka $version jars from Maven Central into $libs ..."
  # Fetch next to the old dir and swap, so a broker running from the old jars survives.
  rm -rf "$libs.new"; mkdir -p "$libs.new"
  mvn -q -B -Dstyle.color=never -f "$here/kafka/pom.xml" -Dkafka.version="$version" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$libs.new" >"$libs.mvn.log" 2>&1 \
    || { tail -n 30 "$libs.mvn.log" >&2; die "mvn could not fetch the Kafka jars (is Maven Central reachable?)"; }
  echo "$want" >"$libs.new/.complete"
  rm -rf "$libs.old"
  [ -d "$libs" ] && mv "$libs" "$libs.old"
  mv "$libs.new" "$libs"
  rm -rf "$libs.old"
}

# Fetches the JMX exporter agent once, into a directory of its own (not the broker's
# class path); the marker holds the pom's checksum, as for the Kafka jars.
ensure_agent() {
  [ "$jmx_port" = off ] && return 0
  local want
  want="$jmx_version $(sha256sum "$here/kafka/jmx-exporter-pom.xml" | cut -d' ' -f1)"
  [ -f "$agent_jar" ] && [ "$(cat "$agent_dir/.complete" 2>/dev/null)" = "$want" ] && return 0
  command -v mvn >/dev/null || die "mvn is required (Debian: apt-get install -y maven)"
  say "fetching the Prometheus JMX exporter agent $jmx_version from Maven Central into $agent_dir ..."
  rm -rf "$agent_dir.new"; mkdir -p "$agent_dir.new"
  mvn -q -B -Dstyle.color=never -f "$here/kafka/jmx-exporter-pom.xml" -Djmx.exporter.version="$jmx_version" \
      dependency:copy-dependencies -DincludeScope=runtime -DexcludeTransitive=true -DoutputDirectory="$agent_dir.new" \
      >"$agent_dir.mvn.log" 2>&1 \
    || { tail -n 30 "$agent_dir.mvn.log" >&2; die "mvn could not fetch the JMX exporter agent (is Maven Central reachable?)"; }
  [ -f "$agent_dir.new/${agent_jar##*/}" ] || die "mvn fetched no ${agent_jar##*/} (log: $agent_dir.mvn.log)"
  echo "$want" >"$agent_dir.new/.complete"
  rm -rf "$agent_dir"
  mv "$agent_dir.new" "$agent_dir"
}

# The broker's JVM option loading the exporter agent (nothing when it is off).
agent_opts() {
  [ "$jmx_port" = off ] && return 0
  echo "-javaagent:$agent_jar=127.0.0.1:$jmx_port:$here/kafka/jmx-exporter.yml"
}

check_java() {
  command -v "$java" >/dev/null || die "java 17+ is required (Debian: apt-get install -y openjdk-17-jre-headless)"
  local v
  v="$("$java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1)"
  [ "${v:-0}" -ge 17 ] || die "Kafka $version needs Java 17 or later (found: ${v:-unknown})"
}

# Runs a Kafka tool in the foreground with the quiet logging configuration.
tool() {
  "$java" "${jvm_opts[@]}" -Dlog4j2.configurationFile="$here/kafka/tools-log4j2.properties" \
    -cp "$libs/*" "$@"
}

# The listener lines of server.properties: PLAINTEXT (and CONTROLLER) only, or with the
# SASL_SSL listener beside a loopback-only PLAINTEXT.
listener_properties() {
  if [ "$security" = plaintext ]; then
    cat <<PROPS
listeners=PLAINTEXT://$host:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://$host:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
PROPS
    return 0
  fi
  local store_password
  store_password="$(cat "$security_dir/keystore.password")"
  cat <<PROPS
listeners=PLAINTEXT://127.0.0.1:$port,SASL_SSL://$host:$sasl_port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port,SASL_SSL://$host:$sasl_port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PKCS12
ssl.keystore.location=$security_dir/broker.p12
ssl.keystore.password=$store_password
ssl.key.password=$store_password
ssl.client.auth=none
PROPS
}

# The CA, the broker's certificate in a PKCS12 keystore, and the SCRAM user's password,
# in the state dir (kept across a TIDEWATCH_KAFKA_KEEP_DATA restart).
make_security() {
  [ "$security" = sasl_ssl ] || return 0
  local san="IP:127.0.0.1,DNS:localhost"
  [ "$host" = 127.0.0.1 ] || san+=",IP:$host"
  make_certs "$security_dir" "$host" "$san"
  if [ ! -f "$security_dir/broker.p12" ]; then
    write_secret "$security_dir/keystore.password" "$(random_secret)"
    (umask 077 && openssl pkcs12 -export -in "$security_dir/server.pem" -inkey "$security_dir/server.key" \
        -certfile "$security_dir/ca.pem" -name broker -out "$security_dir/broker.p12" \
        -passout "file:$security_dir/keystore.password") >>"$security_dir/openssl.log" 2>&1 \
      || { cat "$security_dir/openssl.log" >&2; die "openssl could not make the broker keystore"; }
  fi
  if [ ! -f "$security_dir/sasl.password" ]; then
    write_secret "$security_dir/sasl.password" "${TIDEWATCH_KAFKA_SASL_PASSWORD:-$(random_secret)}"
    printf '%s' "$sasl_user" >"$security_dir/sasl.username"
  fi
}

# The --add-scram argument of the storage format: the SCRAM-SHA-512 user.
scram_args() {
  [ "$security" = sasl_ssl ] || return 0
  echo "--add-scram"
  echo "SCRAM-SHA-512=[name=$(cat "$security_dir/sasl.username"),password=$(cat "$security_dir/sasl.password")]"
}

write_properties() {
  mkdir -p "$state/data"
  (umask 077 && : >"$props")
  cat >"$props" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
$(listener_properties)
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
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
# Never delete by time: tests use synthetic (old) record timestamps, and time-based
# retention measures the age from those, deleting fresh data within minutes.
log.retention.ms=-1
log.segment.bytes=268435456
PROPS
}

# A cluster id as Kafka's Uuid.randomUuid() makes it (22 base64url characters, not
# starting with '-'), without paying for a JVM start.
random_cluster_id() {
  local id
  while :; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | cut -c 1-22)"
    [ "${id:0:1}" != "-" ] && { echo "$id"; return; }
  done
}

# wait_ready PID [jmx]: until the broker answers (and, with `jmx`, its exporter too: a
# broker found running may have been started without it).
wait_ready() {
  local pid="$1" need_jmx="${2:-}" deadline=$((SECONDS + 120))
  while [ $SECONDS -lt $deadline ]; do
    kill -0 "$pid" 2>/dev/null || { tail -n 40 "$logfile" >&2; die "the broker exited during start-up (log: $logfile)"; }
    if grep -q "Kafka Server started" "$logfile" 2>/dev/null && port_open "$port" "$plain_host" \
        && { [ "$security" = plaintext ] || port_open "$sasl_port" "$host"; } \
        && { [ -z "$need_jmx" ] || [ "$jmx_port" = off ] || port_open "$jmx_port"; }; then
      return 0
    fi
    sleep 0.25
  done
  tail -n 40 "$logfile" >&2
  die "the broker did not become ready within 120 s (log: $logfile; it is still running, pid $pid)"
}

metrics_hint() {
  if [ "$jmx_port" != off ] && port_open "$jmx_port"; then
    echo "broker metrics (JMX exporter): http://127.0.0.1:$jmx_port/metrics"
  elif [ "$jmx_port" != off ]; then
    echo "broker metrics: none on port $jmx_port (this broker was started without the JMX exporter; restart it)"
  fi
}

# What a client of the SASL_SSL listener needs (nothing for a plaintext broker).
security_hint() {
  [ "$security" = sasl_ssl ] || return 0
  echo "SASL_SSL bootstrap servers: $host:$sasl_port (SCRAM-SHA-512, user $(cat "$security_dir/sasl.username" 2>/dev/null))"
  echo "CA file: $security_dir/ca.pem"
  echo "password file: $security_dir/sasl.password"
}

usage_hint() {
  local env=""
  [ -n "${TIDEWATCH_KAFKA_PORT:-}" ] && env+="TIDEWATCH_KAFKA_PORT=$port "
  [ -n "${TIDEWATCH_KAFKA_HOST:-}" ] && env+="TIDEWATCH_KAFKA_HOST=$host "
  [ -n "${TIDEWATCH_STATE_DIR:-}" ] && env+="TIDEWATCH_STATE_DIR=$TIDEWATCH_STATE_DIR "
  echo "bootstrap servers: $bootstrap"
  security_hint
  metrics_hint
  [ "$security" = plaintext ] || env+="TIDEWATCH_KAFKA_SECURITY=sasl_ssl "
  echo "stop it with: $env$0 stop"
}

start() {
  local pid started
  if pid="$(broker_pid)"; then
    local running=plaintext
    grep -q '^listeners=.*SASL_SSL' "$props" 2>/dev/null && running=sasl_ssl
    [ "$running" = "$security" ] || die "a $running broker already runs on $state; stop it before starting it as $security"
    echo "$pid" >"$pidfile"
    wait_ready "$pid"
    say "broker already running (pid $pid, data in $state)"
    usage_hint
    return 0
  fi
  port_open "$port" "$plain_host" && die "port $port is in use by another process; set TIDEWATCH_KAFKA_PORT"
  if [ "$security" = sasl_ssl ] && port_open "$sasl_port" "$host"; then
    die "port $sasl_port is in use by another process; set TIDEWATCH_KAFKA_SASL_SSL_PORT"
  fi
  port_open "$controller_port" && die "port $controller_port is in use by another process; set TIDEWATCH_KAFKA_CONTROLLER_PORT"
  if [ "$jmx_port" != off ] && port_open "$jmx_port"; then
    die "port $jmx_port is in use by another process; set TIDEWATCH_KAFKA_JMX_PORT (or off)"
  fi
  check_java
  ensure_jars
  ensure_agent
  started=$SECONDS
  if [ "${TIDEWATCH_KAFKA_KEEP_DATA:-0}" = 1 ] && [ -f "$state/data/meta.properties" ]; then
    say "restarting on the existing data in $state"
    make_security
    write_properties
    [ -f "$logfile" ] && mv -f "$logfile" "$logfile.1"
  else
    rm -rf "$state"
    make_security
    write_properties
    local scram=()
    mapfile -t scram < <(scram_args)
    tool kafka.tools.StorageTool format -t "$(random_cluster_id)" -c "$props" --ignore-formatted ${scram[@]+"${scram[@]}"} \
      >"$state/format.log" 2>&1 || { cat "$state/format.log" >&2; die "formatting the storage failed"; }
  fi
  # The broker logs to stdout (see kafka/log4j2.properties), which goes to the log file;
  # it must not inherit the lock's descriptor (9).
  local agent=()
  [ "$jmx_port" = off ] || agent=("$(agent_opts)")
  nohup "$java" "${jvm_opts[@]}" ${agent[@]+"${agent[@]}"} -Dlog4j2.configurationFile="$here/kafka/log4j2.properties" \
    -cp "$libs/*" kafka.Kafka "$props" >"$logfile" 2>&1 </dev/null 9>&- &
  pid=$!
  echo "$pid" >"$pidfile"
  wait_ready "$pid" jmx
  say "Apache Kafka $version ready in $((SECONDS - started)) s (pid $pid, data in $state)"
  usage_hint
}

stop() {
  local pid
  if ! pid="$(broker_pid)"; then
    say "no broker running"
    rm -f "$pidfile"
    return 0
  fi
  stop_jvm broker "$pid"
}


case "${1:-}" in
  start) lock; start ;;
  stop) lock; stop ;;
  status)
    if broker_pid >/dev/null && port_open "$port" "$plain_host"; then
      echo "bootstrap servers: $bootstrap"
      security_hint
      metrics_hint
    else
      say "not running"; exit 1
    fi ;;
  kill9)
    lock
    pid="$(broker_pid)" || die "no broker running"
    kill -KILL "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    say "killed broker $pid with SIGKILL (data kept in $state; restart it with TIDEWATCH_KAFKA_KEEP_DATA=1 $0 start)" ;;
  create-topic)
    [ -n "${2:-}" ] || die "usage: kafka.sh create-topic NAME [PARTITIONS]"
    check_java
    ensure_jars
    tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" --create --if-not-exists \
      --topic "$2" --partitions "${3:-1}" --replication-factor 1 ;;
  quota)
    [ -n "${2:-}" ] && [ -n "${3:-}" ] || die "usage: kafka.sh quota CLIENT_ID BYTES_PER_SECOND"
    check_java
    ensure_jars
    if [ "$3" = 0 ]; then change=(--delete-config consumer_byte_rate); else change=(--add-config "consumer_byte_rate=$3"); fi
    tool kafka.admin.ConfigCommand --bootstrap-server "$bootstrap" --alter "${change[@]}" --entity-type clients --entity-name "$2" ;;
  logs) tail -n 100 -F "$logfile" ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
esac
