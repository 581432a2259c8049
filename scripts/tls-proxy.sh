#!/usr/bin/env bash
# A TLS-terminating proxy with HTTP basic auth (Debian's nginx) in front of a plain-HTTP
# server, e.g. the OpenSearch node of scripts/opensearch.sh, which has no security
# plugin: for tests and development against an `https://` OpenSearch with a login. A
# throwaway CA and a server certificate (SAN IP:127.0.0.1, DNS:localhost) are made with
# openssl in the state dir; the password is written there 0600, the htpasswd line holds
# only its apr1 hash.
#
#   scripts/tls-proxy.sh start     start (idempotent) and wait until it listens
#   scripts/tls-proxy.sh stop      stop it
#   scripts/tls-proxy.sh status    exit 0 and print the URL, CA file and password file if it runs
#
# Environment:
#   TIDEWATCH_PROXY_PORT        HTTPS port on 127.0.0.1 (9443)
#   TIDEWATCH_PROXY_UPSTREAM    the plain-HTTP server behind it (http://127.0.0.1:9200)
#   TIDEWATCH_PROXY_USERNAME    the basic-auth user (tidewatch)
#   TIDEWATCH_PROXY_PASSWORD    its password ([A-Za-z0-9._~-], at least 8; random if unset)
#   TIDEWATCH_STATE_DIR         state goes to $TIDEWATCH_STATE_DIR/tls-proxy-<port> (/tmp/tidewatch)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
port="${TIDEWATCH_PROXY_PORT:-9443}"
upstream="${TIDEWATCH_PROXY_UPSTREAM:-http://127.0.0.1:9200}"
user="${TIDEWATCH_PROXY_USERNAME:-tidewatch}"
state="${TIDEWATCH_STATE_DIR:-/tmp/tidewatch}/tls-proxy-$port"
pidfile="$state/nginx.pid"
conf="$state/nginx.conf"
url="https://127.0.0.1:$port"

die() { echo "tls-proxy.sh: $*" >&2; exit 1; }
say() { echo "tls-proxy.sh: $*"; }
# shellcheck source=scripts/service-lib.sh
source "$here/service-lib.sh"
# shellcheck source=scripts/tls-lib.sh
source "$here/tls-lib.sh"

[[ "$port" =~ ^[0-9]+$ ]] || die "TIDEWATCH_PROXY_PORT must be a port number"
[[ "$upstream" =~ ^http://[A-Za-z0-9.:-]+/?$ ]] || die "TIDEWATCH_PROXY_UPSTREAM must look like http://HOST:PORT, got '$upstream'"
[[ "$user" =~ ^[A-Za-z0-9._~-]+$ ]] || die "TIDEWATCH_PROXY_USERNAME must be made of [A-Za-z0-9._~-]"
if [ -n "${TIDEWATCH_PROXY_PASSWORD:-}" ] && ! [[ "$TIDEWATCH_PROXY_PASSWORD" =~ ^[A-Za-z0-9._~-]{8,}$ ]]; then
  die "TIDEWATCH_PROXY_PASSWORD must be at least 8 characters of [A-Za-z0-9._~-]"
fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The pid of this state dir's nginx master.
proxy_pid() {
  jvm_pid "nginx -c $conf"
}

write_config() {
  mkdir -p "$state/tmp"
  # Workers run as the starting user: the state dir is private to it.
  cat >"$conf" <<CONF
daemon off;
worker_processes 1;
user $(id -un) $(id -gn);
pid $pidfile;
error_log $state/error.log warn;
events { worker_connections 256; }
http {
  access_log $state/access.log;
  client_body_temp_path $state/tmp/body;
  proxy_temp_path $state/tmp/proxy;
  fastcgi_temp_path $state/tmp/fastcgi;
  uwsgi_temp_path $state/tmp/uwsgi;
  scgi_temp_path $state/tmp/scgi;
  client_max_body_size 100m;
  server {
    listen 127.0.0.1:$port ssl;
    ssl_certificate $state/tls/chain.pem;
    ssl_certificate_key $state/tls/server.key;
    auth_basic "tidewatch";
    auth_basic_user_file $state/htpasswd;
    location / {
      proxy_pass ${upstream%/};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "";
    }
  }
}
CONF
}

hint() {
  echo "URL: $url (basic auth, user $user; in front of $upstream)"
  echo "CA file: $state/tls/ca.pem"
  echo "password file: $state/password"
}

start() {
  local pid
  if pid="$(proxy_pid)"; then
    say "proxy already running (pid $pid)"
    hint
    return 0
  fi
  command -v nginx >/dev/null || die "nginx is required (Debian: apt-get install -y nginx-light; scripts/test.sh installs it)"
  port_open "$port" && die "port $port is in use by another process; set TIDEWATCH_PROXY_PORT"
  rm -rf "$state"
  mkdir -p "$state"
  chmod 700 "$state"
  make_certs "$state/tls" 127.0.0.1 "IP:127.0.0.1,DNS:localhost"
  write_secret "$state/password" "${TIDEWATCH_PROXY_PASSWORD:-$(random_secret)}"
  printf '%s:%s\n' "$user" "$(openssl passwd -apr1 -stdin <"$state/password")" >"$state/htpasswd"
  write_config
  nohup nginx -c "$conf" -p "$state" -e "$state/error.log" >"$state/nginx.out" 2>&1 </dev/null 9>&- &
  pid=$!
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || { cat "$state/nginx.out" "$state/error.log" >&2 2>/dev/null; die "nginx exited during start-up (log: $state/error.log)"; }
    port_open "$port" && break
    sleep 0.1
  done
  port_open "$port" || die "nginx does not listen on $port after 10 s (log: $state/error.log)"
  say "TLS proxy ready (pid $pid)"
  hint
}

stop() {
  local pid
  if ! pid="$(proxy_pid)"; then
    say "no proxy running"
    return 0
  fi
  kill -QUIT "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  rm -f "$pidfile"
  say "proxy stopped"
}

case "${1:-}" in
  start) lock; start ;;
  stop) lock; stop ;;
  status)
    if proxy_pid >/dev/null && port_open "$port"; then hint; else say "not running"; exit 1; fi ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
esac
