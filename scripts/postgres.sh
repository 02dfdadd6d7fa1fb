#!/usr/bin/env bash
# A project-local PostgreSQL 15 cluster under .local/pg, TLS on, listening on 127.0.0.1 only.
#   scripts/postgres.sh start   initialise on first use, start unless running (prints "started" or "reused")
#   scripts/postgres.sh stop    stop it if running
#   scripts/postgres.sh restart stop it, then start it (`make load FAULTS=1` restarts it mid-run)
#   scripts/postgres.sh status  exit 0 when running
#   scripts/postgres.sh url     the admin connection URL
#   scripts/postgres.sh bindir  the folder of the server binaries (postgres, initdb, pgbench)
# Files: .local/pg/admin.password (superuser), .local/pg/roles.env (login roles), .local/pg/tls/ca.crt.
# TMS_PG_FAST=1 starts it without fsync (test runs: durability is irrelevant there).
# TMS_PG_DIR puts the cluster elsewhere than .local/pg (make bench runs its own, with TMS_PG_PORT).
# TMS_PG_OPTS adds server settings ("-c name=value ...") when this script starts the server.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

PGDIR="${TMS_PG_DIR:-$LOCAL/pg}"
DATA="$PGDIR/data"
TLS="$PGDIR/tls"
PWFILE="$PGDIR/admin.password"
# Local passwords of the login roles the bootstrapper creates (tms_migrator, tms_app, tms_dev):
# one set per cluster, shared by `make dev`, `make bootstrap` and the tests.
ROLES_ENV="$PGDIR/roles.env"
LOG="$PGDIR/postgres.log"

find_bindir() {
  if [ -n "${PG_BINDIR:-}" ]; then echo "$PG_BINDIR"; return; fi
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -n -r); do
    if [ -x "$d/postgres" ] && [ -x "$d/initdb" ]; then echo "$d"; return; fi
  done
  if command -v postgres >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
    dirname "$(command -v postgres)"; return
  fi
  die "PostgreSQL server binaries not found. Install PostgreSQL 15 or newer (Debian/Ubuntu: apt-get install postgresql-15; macOS: brew install postgresql@15), or set PG_BINDIR to the folder holding postgres and initdb."
}

BIN="$(find_bindir)"
command -v openssl >/dev/null 2>&1 || die "openssl not found: install openssl (needed for the cluster's TLS certificate)."

# The server refuses to run as root: as root, run it inside a user namespace where we are an
# ordinary user (files stay ours); elsewhere run it directly.
as_pg() {
  if [ "$(id -u)" != 0 ]; then
    "$@"
  elif unshare --user --map-user=1000 --map-group=1000 true 2>/dev/null; then
    unshare --user --map-user=1000 --map-group=1000 -- "$@"
  else
    die "running as root and user namespaces are unavailable: run as an ordinary user, or allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1)."
  fi
}

make_certs() {
  mkdir -p "$TLS"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=TMS local CA" \
    -keyout "$TLS/ca.key" -out "$TLS/ca.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$TLS/server.key" -out "$TLS/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$TLS/server.ext"
  openssl x509 -req -in "$TLS/server.csr" -CA "$TLS/ca.crt" -CAkey "$TLS/ca.key" -CAcreateserial \
    -days 3650 -extfile "$TLS/server.ext" -out "$TLS/server.crt" 2>/dev/null
  rm -f "$TLS/server.csr" "$TLS/server.ext"
  chmod 600 "$TLS/server.key" "$TLS/ca.key"
}

init_cluster() {
  say "initialising a PostgreSQL cluster in ${PGDIR#"$ROOT"/} (first run only)"
  mkdir -p "$PGDIR"
  chmod 700 "$PGDIR"
  [ -f "$PWFILE" ] || (umask 077; openssl rand -hex 16 > "$PWFILE")
  [ -f "$TLS/server.crt" ] || make_certs
  as_pg "$BIN/initdb" -D "$DATA" -U postgres --auth=scram-sha-256 --pwfile="$PWFILE" \
    --encoding=UTF8 --no-locale --no-sync >"$PGDIR/initdb.log" 2>&1 \
    || { cat "$PGDIR/initdb.log" >&2; die "initdb failed (log above)"; }
  cp "$TLS/server.crt" "$TLS/server.key" "$DATA/"
  chmod 600 "$DATA/server.key"
  cat >> "$DATA/postgresql.conf" <<CONF

# TMS local cluster
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 200
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
log_min_messages = warning
log_statement = 'none'
CONF
  cat > "$DATA/pg_hba.conf" <<HBA
# TLS only: plaintext connections are refused.
hostssl   all  all  127.0.0.1/32  scram-sha-256
hostssl   all  all  ::1/128       scram-sha-256
hostnossl all  all  0.0.0.0/0     reject
hostnossl all  all  ::/0          reject
HBA
}

running() {
  pid_alive "$DATA/postmaster.pid" && "$BIN/pg_isready" -q -h 127.0.0.1 -p "$TMS_PG_PORT" >/dev/null 2>&1
}

url() {
  printf 'postgres://postgres:%s@127.0.0.1:%s/postgres?sslmode=verify-full&sslrootcert=%s\n' \
    "$(cat "$PWFILE")" "$TMS_PG_PORT" "$TLS/ca.crt"
}

role_passwords() {
  [ -f "$ROLES_ENV" ] && return
  (umask 077
   printf 'TMS_MIGRATOR_PASSWORD=%s\nTMS_APP_PASSWORD=%s\nTMS_DEV_PASSWORD=%s\n' \
     "$(openssl rand -hex 16)" "$(openssl rand -hex 16)" "$(openssl rand -hex 16)" > "$ROLES_ENV")
}

start() {
  [ -f "$DATA/PG_VERSION" ] || init_cluster
  role_passwords
  if running; then echo reused; return; fi
  if pid_alive "$DATA/postmaster.pid"; then
    die "a PostgreSQL server runs on ${PGDIR#"$ROOT"/} but does not answer on port $TMS_PG_PORT: stop it with 'scripts/postgres.sh stop' (or set TMS_PG_PORT to its port)."
  fi
  if port_open "$TMS_PG_PORT"; then
    die "port $TMS_PG_PORT is in use by another program: stop it, or set TMS_PG_PORT to a free port."
  fi
  local opts="-c port=$TMS_PG_PORT"
  # pg_stat_statements lets tests count the statements a handler sends.
  if [ -f "$BIN/../lib/pg_stat_statements.so" ]; then opts="$opts -c shared_preload_libraries=pg_stat_statements"; fi
  if [ "${TMS_PG_FAST:-0}" = 1 ]; then opts="$opts -c fsync=off -c full_page_writes=off -c synchronous_commit=off"; fi
  opts="$opts ${TMS_PG_OPTS:-}"
  say "starting PostgreSQL on 127.0.0.1:$TMS_PG_PORT (TLS on)"
  as_pg "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -o "$opts" -w -t 60 start >/dev/null \
    || { tail -n 20 "$LOG" >&2; die "PostgreSQL did not start (log above, full log in ${LOG#"$ROOT"/})"; }
  echo started
}

stop() {
  if ! pid_alive "$DATA/postmaster.pid"; then return 0; fi
  local pid
  pid="$(head -n1 "$DATA/postmaster.pid")"
  kill -INT "$pid" 2>/dev/null || true
  wait_for 60 "PostgreSQL to stop" bash -c "! kill -0 $pid 2>/dev/null" \
    || die "PostgreSQL (pid $pid) did not stop within 60 s"
  say "PostgreSQL stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart) stop; start >/dev/null ;;
  status) running ;;
  url) url ;;
  bindir) echo "$BIN" ;;
  *) die "usage: $0 start|stop|restart|status|url|bindir" ;;
esac
