#!/usr/bin/env bash
# The AWS emulator (moto server) on 127.0.0.1:$TMS_AWS_PORT, from the project-local venv.
#   scripts/aws-emulator.sh start   install if needed, start unless running (prints "started" or "reused")
#   scripts/aws-emulator.sh stop    stop it if we started it
#   scripts/aws-emulator.sh status  exit 0 when it answers
# TMS_AWS_DIR keeps its pid and log elsewhere than .local/aws (make bench runs its own, with TMS_AWS_PORT).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

DIR="${TMS_AWS_DIR:-$LOCAL/aws}"
PIDFILE="$DIR/moto.pid"
LOG="$DIR/moto.log"

answers() { curl -fs -o /dev/null "http://127.0.0.1:$TMS_AWS_PORT/moto-api/data.json"; }

start() {
  command -v curl >/dev/null 2>&1 || die "curl not found: install curl."
  if pid_alive "$PIDFILE" && answers; then echo reused; return; fi
  if port_open "$TMS_AWS_PORT"; then
    if answers; then echo reused; return; fi
    die "port $TMS_AWS_PORT is in use by another program: stop it, or set TMS_AWS_PORT to a free port."
  fi
  "$ROOT/scripts/venv.sh" emulator
  mkdir -p "$DIR"
  say "starting the AWS emulator on 127.0.0.1:$TMS_AWS_PORT"
  nohup "$VENV/bin/moto_server" -H 127.0.0.1 -p "$TMS_AWS_PORT" >"$LOG" 2>&1 &
  echo $! > "$PIDFILE"
  wait_for 60 "the AWS emulator" answers \
    || { tail -n 20 "$LOG" >&2; die "the AWS emulator did not answer within 60 s (log above)"; }
  echo started
}

stop() {
  pid_alive "$PIDFILE" || { rm -f "$PIDFILE"; return 0; }
  local pid
  pid="$(head -n1 "$PIDFILE")"
  kill "$pid" 2>/dev/null || true
  wait_for 20 "the AWS emulator to stop" bash -c "! kill -0 $pid 2>/dev/null" || kill -9 "$pid" 2>/dev/null || true
  rm -f "$PIDFILE"
  say "AWS emulator stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) answers ;;
  *) die "usage: $0 start|stop|status" ;;
esac
