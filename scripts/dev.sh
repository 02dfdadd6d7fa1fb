#!/usr/bin/env bash
# make dev: the whole system on this machine. Starts PostgreSQL and the AWS emulator unless they
# run, builds the API and the local runner, then runs `tms-local dev` in the foreground. Ctrl-C
# stops everything this script started.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust (https://rustup.rs)."

started=()
child=""
cleanup() {
  local rc=$?
  if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
    kill -INT "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
  for svc in "${started[@]}"; do "$ROOT/scripts/$svc.sh" stop || true; done
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The aws CLI the welcome text suggests for uploads by hand.
"$ROOT/scripts/venv.sh" tools
state=$("$ROOT/scripts/postgres.sh" start)
[ "$state" = started ] && started+=(postgres)
state=$("$ROOT/scripts/aws-emulator.sh" start)
[ "$state" = started ] && started+=(aws-emulator)

say "building the API and the local runner (the first build takes several minutes)"
cargo build --quiet -p tms-api -p tms-local

"$ROOT/target/debug/tms-local" dev &
child=$!
wait "$child"
