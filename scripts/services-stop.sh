#!/usr/bin/env bash
# Stop the services that scripts/services.sh started (by their pid files) and wait until they have exited.
# Usage: scripts/services-stop.sh [all|kafka|clickhouse]     (default: all)
# Data is kept: the next scripts/services.sh start reuses it. To reset, delete .tollgate/services.
set -euo pipefail

# shellcheck source=SCRIPTDIR/../services/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/services/lib.sh"

usage() { echo "usage: $0 [all|kafka|clickhouse]" >&2; exit 2; }

# stop_one <name> <pid file> <config path in its command line> <wait seconds> <port>...
stop_one() {
  local name="$1" pid_file="$2" marker="$3" wait_s="$4" t0 pid
  shift 4
  t0="$(now_ms)"
  pid="$(live_pid "$pid_file" "$marker")"
  if [[ -z "$pid" ]]; then
    rm -f "$pid_file"
    local p
    for p in "$@"; do
      if port_open "$p"; then
        warn "$name: not started by scripts/services.sh (no live pid in $pid_file), but 127.0.0.1:$p answers: left alone"
        return 0
      fi
    done
    say "$name: not running"
    return 0
  fi
  say "$name: stopping pid $pid"
  stop_pid "$pid" "$name" "$wait_s"
  rm -f "$pid_file"
  for p in "$@"; do wait_port_free "$p"; done
  say "$name: stopped in $(secs_since "$t0")"
}

what="${1:-all}"
case "$what" in all | kafka | clickhouse) ;; *) usage ;; esac

tg_lock
if [[ "$what" == all || "$what" == kafka ]]; then
  stop_one kafka "$KAFKA_PID_FILE" "$KAFKA_CONFIG" "${TOLLGATE_KAFKA_STOP_TIMEOUT:-60}" \
    "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"
fi
if [[ "$what" == all || "$what" == clickhouse ]]; then
  stop_one clickhouse "$CH_PID_FILE" "$CH_CONFIG" "${TOLLGATE_CLICKHOUSE_STOP_TIMEOUT:-60}" \
    "$CH_HTTP_PORT" "$CH_TCP_PORT"
fi
