# Start/stop `cargo lambda watch` for the three functions, on loopback. Source it.
# Requires lib.sh to be sourced first.

WATCH_PORT="${WATCH_PORT:-9000}"
WATCH_PID_FILE="$STATE_DIR/watch-$WATCH_PORT.pid"
WATCH_LOG="$STATE_DIR/watch-$WATCH_PORT.log"

watch_start() {  # $1: env file
  local env_file="$1"
  log "building the functions (debug) so the first invocation does not compile"
  (cd "$REPO_ROOT" && cargo build --quiet -p kms-jwt-rotate -p kms-jwt-sign -p kms-jwt-jwks)
  log "starting cargo lambda watch on 127.0.0.1:$WATCH_PORT (log: $WATCH_LOG)"
  # exec: the recorded pid is cargo-lambda itself, leader of its own process group (setsid),
  # so stopping it also stops the function processes it spawned.
  (cd "$REPO_ROOT" && exec setsid "$VENV/bin/cargo-lambda" lambda watch \
      --invoke-address 127.0.0.1 --invoke-port "$WATCH_PORT" \
      --env-file "$env_file" --disable-cors --ignore-changes \
      >"$WATCH_LOG" 2>&1 </dev/null) &
  echo $! >"$WATCH_PID_FILE"
  for _ in $(seq 1 120); do
    # The emulator answers 404 on / once it listens.
    if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$WATCH_PORT/"; then return 0; fi
    kill -0 "$(cat "$WATCH_PID_FILE")" 2>/dev/null || { cat "$WATCH_LOG" >&2; die "cargo lambda watch exited"; }
    sleep 0.5
  done
  die "cargo lambda watch did not start listening"
}

watch_stop() {
  [[ -f "$WATCH_PID_FILE" ]] || return 0
  local pid; pid="$(cat "$WATCH_PID_FILE")"
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$WATCH_PID_FILE"
}

invoke() {  # $1: function, $2: JSON payload. Bounded: a function that fails its cold start
  # leaves `cargo lambda invoke` waiting for ever.
  timeout "${INVOKE_TIMEOUT:-300}" "$VENV/bin/cargo-lambda" lambda invoke --invoke-address 127.0.0.1 --invoke-port "$WATCH_PORT" "$1" --data-ascii "$2"
}
