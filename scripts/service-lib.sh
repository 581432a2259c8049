#!/usr/bin/env bash
# Shared by scripts/kafka.sh and scripts/opensearch.sh (sourced, not run): stopping a
# service's JVM and serialising start/stop per state directory. Expects `say`, `$state`
# and `$pidfile` from the sourcing script.
# shellcheck disable=SC2154  # state and pidfile are set by the sourcing script

# jvm_pid NEEDLE: the pid of the service's JVM — the one in the pid file if its command
# line holds NEEDLE, else the first process whose command line does.
jvm_pid() {
  local needle="$1" pid f
  if [ -f "$pidfile" ]; then
    pid="$(cat "$pidfile")"
    if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "$needle"; then
      echo "$pid"; return 0
    fi
  fi
  for f in /proc/[0-9]*/cmdline; do
    if tr '\0' ' ' 2>/dev/null <"$f" | grep -qF -- "$needle"; then
      pid="${f#/proc/}"; echo "${pid%/cmdline}"; return 0
    fi
  done
  return 1
}

# stop_jvm LABEL PID: TERM, wait up to 30 s, then KILL; removes the pid file.
stop_jvm() {
  local label="$1" pid="$2"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 120); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.25
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "$label did not stop within 30 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  rm -f "$pidfile"
  say "$label stopped"
}

# One start/stop/kill9 at a time per state dir.
lock() {
  command -v flock >/dev/null || return 0
  mkdir -p "$(dirname "$state")"
  exec 9>"$state.lock"
  flock 9
}
