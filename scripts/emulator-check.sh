#!/usr/bin/env bash
# make emulator-check: `tms-local emulator-check` against the AWS emulator (started first, and
# stopped after, when it is not running).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

trap stop_started EXIT INT TERM
start_service aws-emulator
cargo build --quiet -p tms-local
"$ROOT/target/debug/tms-local" emulator-check
