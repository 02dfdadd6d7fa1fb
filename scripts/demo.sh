#!/usr/bin/env bash
# make demo / make load: `tms-local demo` (the walk-through) or `tms-local load` (the volume
# run) against the running stack; starts the stack first (and stops it after) when it is not
# running.
#   scripts/demo.sh [demo|load]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

command="${1:-demo}"
case "$command" in
  demo|load) ;;
  *) die "usage: $0 [demo|load]" ;;
esac

api_up() { curl -fs -o /dev/null "http://127.0.0.1:$TMS_API_PORT/health"; }

dev_pid=""
cleanup() {
  local rc=$?
  if [ -n "$dev_pid" ]; then
    say "stopping the stack the $command started"
    kill -TERM "$dev_pid" 2>/dev/null || true
    wait "$dev_pid" 2>/dev/null || true
  fi
  exit "$rc"
}
trap cleanup EXIT

if ! api_up; then
  say "the stack is not running: starting it (log in .local/dev.log; the first build takes several minutes)"
  mkdir -p "$LOCAL"
  "$ROOT/scripts/dev.sh" > "$LOCAL/dev.log" 2>&1 &
  dev_pid=$!
  wait_for 1800 "the API" api_up || { tail -n 30 "$LOCAL/dev.log" >&2; die "the stack did not start (log above)"; }
fi
cargo build --quiet -p tms-local
"$ROOT/target/debug/tms-local" "$command"
