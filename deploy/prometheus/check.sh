#!/usr/bin/env bash
# Validates the Prometheus configuration, the alert rules and their unit tests, and the
# PromQL syntax of the Grafana dashboards:
#   promtool check config, promtool check rules, promtool test rules.
# Installs Debian's prometheus package (which ships promtool) when promtool is missing;
# that needs root. Exits non-zero when anything fails. Runs from any directory.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/../.."   # the repository root, so that the paths printed are deploy/...

if ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "check.sh: promtool is missing; run as root to install Debian's prometheus package," >&2
    echo "          or install it yourself: apt-get update && apt-get install -y prometheus" >&2
    exit 2
  fi
  echo "check.sh: promtool is missing, installing Debian's prometheus package" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
promtool --version 2>&1 | head -n 1

status=0
run() {
  echo "+ $*"
  if ! "$@"; then
    echo "check.sh: FAILED: $*" >&2
    status=1
  fi
}
run promtool check config deploy/prometheus/prometheus.yml
run promtool check rules deploy/prometheus/tidewatch-rules.yml deploy/prometheus/kafka-rules.yml
run promtool test rules deploy/prometheus/tidewatch-rules.test.yml deploy/prometheus/kafka-rules.test.yml
# The dashboards' PromQL, as recording rules, through promtool's parser.
dashboard_rules="$(mktemp --suffix=.yml)"
trap 'rm -f "$dashboard_rules"' EXIT
run python3 deploy/check-dashboard-metrics.py --as-rules "$dashboard_rules"
run promtool check rules "$dashboard_rules"

if [ "$status" -eq 0 ]; then
  echo "check.sh: all Prometheus checks passed"
fi
exit "$status"
