#!/usr/bin/env bash
# Start or stop a native LocalStack (no Docker) on loopback, tracked by its process id.
#   scripts/localstack.sh start   # idempotent; waits until KMS and Secrets Manager are ready
#   scripts/localstack.sh stop    # stops the process this script started
#   scripts/localstack.sh status
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PID_FILE="$STATE_DIR/localstack.pid"
LOG_FILE="$STATE_DIR/localstack.log"
PORT="${LOCALSTACK_PORT:-4566}"
HEALTH="http://127.0.0.1:$PORT/_localstack/health"

running() { [[ -f "$PID_FILE" ]] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; }

healthy() {
  # Ready when both services we need report "available" or "running".
  curl -fsS --max-time 2 "$HEALTH" 2>/dev/null | "$VENV/bin/python" -c '
import json, sys
services = json.load(sys.stdin).get("services", {})
sys.exit(0 if all(services.get(s) in ("available", "running") for s in ("kms", "secretsmanager", "ssm", "events", "sqs", "cloudwatch")) else 1)
' 2>/dev/null
}

start() {
  "$REPO_ROOT/scripts/python-env.sh"
  if running && healthy; then log "LocalStack already running (pid $(cat "$PID_FILE"))"; return; fi
  if healthy; then die "something else already answers on 127.0.0.1:$PORT; stop it or set LOCALSTACK_PORT"; fi
  mkdir -p "$STATE_DIR/localstack-volume"
  log "starting LocalStack on 127.0.0.1:$PORT (log: $LOG_FILE)"
  # setsid: LocalStack gets its own process group, so stop can end it and every child.
  GATEWAY_LISTEN="127.0.0.1:$PORT" \
  SERVICES="kms,secretsmanager,ssm,events,sqs,cloudwatch" \
  EAGER_SERVICE_LOADING=1 \
  LOCALSTACK_VOLUME_DIR="$STATE_DIR/localstack-volume" \
  FILESYSTEM_ROOT="$STATE_DIR/localstack-fs" \
  DISABLE_EVENTS=1 SKIP_SSL_CERT_DOWNLOAD=1 DNS_ADDRESS=0 \
  LS_LOG=warn \
    setsid "$VENV/bin/python" -m localstack.runtime.main >"$LOG_FILE" 2>&1 < /dev/null &
  echo $! >"$PID_FILE"
  for _ in $(seq 1 120); do
    if healthy; then log "LocalStack ready"; return; fi
    running || { tail -n 40 "$LOG_FILE" >&2; die "LocalStack exited during startup"; }
    sleep 0.5
  done
  tail -n 40 "$LOG_FILE" >&2
  die "LocalStack did not become healthy within 60s"
}

stop() {
  if ! running; then rm -f "$PID_FILE"; return; fi
  local pid; pid="$(cat "$PID_FILE")"
  log "stopping LocalStack (pid $pid)"
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$PID_FILE"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if running && healthy; then echo "running (pid $(cat "$PID_FILE"))"; else echo "stopped"; exit 1; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
