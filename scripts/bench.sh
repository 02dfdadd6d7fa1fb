#!/usr/bin/env bash
# make bench: release builds of the functions and the harness, the arm64 zips (`make build`, for
# their sizes; skipped when BENCH_ONLY leaves `package` out), then `tms-bench run` against a
# PostgreSQL cluster (durable: fsync on, unlike the tests' fast mode) and an AWS emulator of the
# bench's own, in .local/bench on their own ports, so the services of `make dev` and `make test`
# are left alone. Stops what it started and passes on tms-bench's exit status.
#   BENCH_PG_PORT (55440), BENCH_AWS_PORT (4580)   the bench services' ports
#   BENCH_STRICT=1   exit non-zero when a promise is not met (default: report only)
#   BENCH_QUICK=1    smaller sizes, for a smoke run
#   BENCH_ONLY=api,worker   only these measurements (init, lambda, package, import, api, worker)
#   BENCH_RUNS (3)   runs per measurement; the report gives the median
#   BENCH_BINARIES (target/release)   the folder of the function binaries measured
#   BENCH_API_CLIENTS (1,8), BENCH_API_SECONDS (10), BENCH_WORKER_BATCH_SIZES (10,100),
#   BENCH_WORKER_TASKS (30000), BENCH_WORKER_CONCURRENCY (4), BENCH_INIT_RUNS (10)
# Results: the summary on standard output and BENCHMARKS.md; logs in .local/bench.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust (https://rustup.rs)."
command -v psql >/dev/null 2>&1 || die "psql not found: install the PostgreSQL client (Debian/Ubuntu: apt-get install postgresql-client-15)."

export TMS_PG_PORT="${BENCH_PG_PORT:-55440}" TMS_AWS_PORT="${BENCH_AWS_PORT:-4580}"
export TMS_PG_DIR="$LOCAL/bench/pg" TMS_AWS_DIR="$LOCAL/bench/aws"
unset TMS_PG_FAST
# Memory and WAL as on a small RDS instance (4 GiB: shared_buffers is a quarter of it there), not
# PostgreSQL's 128 MB default: a million-row import in one transaction otherwise measures buffer
# eviction. The baselines run on the same server.
export TMS_PG_OPTS="-c shared_buffers=1GB -c max_wal_size=4GB"
PG_BINDIR="$("$ROOT/scripts/postgres.sh" bindir)"
export PG_BINDIR
[ -x "$PG_BINDIR/pgbench" ] || command -v pgbench >/dev/null 2>&1 \
  || die "pgbench not found beside the PostgreSQL server in $PG_BINDIR: install it (Debian/Ubuntu: it comes with postgresql-15)."

trap stop_started EXIT INT TERM
# boto3 for the init baseline; awslambdaric and psycopg for the Python peer of the API create.
"$ROOT/scripts/venv.sh" tools peer

say "building the release binaries (a cold build takes 15 minutes or more)"
cargo build --release -p tms-bench $(printf -- '-p tms-%s ' api worker importer scheduler bootstrap)
case ",${BENCH_ONLY:-package}," in
  *,package,*)
    say "building the arm64 zips with make build (a cold build takes 15 minutes or more)"
    make --no-print-directory build ;;
esac

mkdir -p "$LOCAL/bench"
start_service postgres
start_service aws-emulator

"$ROOT/target/release/tms-bench" run
