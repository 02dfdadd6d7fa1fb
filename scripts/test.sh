#!/usr/bin/env bash
# make test: starts the services the suite needs (reusing running ones), runs the whole suite,
# stops what it started, and exits non-zero on any failure.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust (https://rustup.rs)."

trap stop_started EXIT INT TERM
TMS_PG_FAST=1 start_service postgres
"$ROOT/scripts/browser.sh"
"$ROOT/scripts/venv.sh" tools test
"$ROOT/scripts/node.sh"
start_service aws-emulator

# Test databases left behind by an interrupted run.
if command -v psql >/dev/null 2>&1; then
  url=$("$ROOT/scripts/postgres.sh" url)
  for db in $(psql "$url" -Atc "SELECT datname FROM pg_database WHERE datname LIKE 't\_%'"); do
    psql "$url" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null
  done
  # Roles of the bootstrap tests (prefix tt...), members first.
  for role in $(psql "$url" -Atc "SELECT rolname FROM pg_roles WHERE rolname ~ '^tt[0-9a-f]{12}_' ORDER BY rolcanlogin DESC"); do
    psql "$url" -qc "DROP ROLE IF EXISTS \"$role\"" >/dev/null 2>&1 || true
  done
fi

say "building the function binaries the end-to-end tests run (the first build takes several minutes)"
# The end-to-end tests run the five function binaries: built here, not inside a test's time limit.
cargo build --quiet $(printf -- '-p tms-%s ' api worker importer scheduler bootstrap)
say "building and running the test suite"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --profile ci "$@"
else
  say "cargo-nextest not found: falling back to cargo test"
  cargo test --workspace "$@"
fi
