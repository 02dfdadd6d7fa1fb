# shellcheck shell=bash
# Shared helpers for the local scripts: paths, ports (each overridable), progress and errors.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCAL="$ROOT/.local"
TMS_API_PORT="${TMS_API_PORT:-3000}"
TMS_AWS_PORT="${TMS_AWS_PORT:-4566}"
TMS_PG_PORT="${TMS_PG_PORT:-55432}"
VENV="${TMS_VENV:-$LOCAL/venv}"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pid_alive FILE: the process whose pid FILE's first line holds is running.
pid_alive() { [ -f "$1" ] && kill -0 "$(head -n1 "$1")" 2>/dev/null; }

# wait_for TIMEOUT_SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.2 s.
wait_for() {
  local timeout=$1 what=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

# Services a script started itself, stopped again when it exits:
#   trap stop_started EXIT INT TERM; start_service postgres; start_service aws-emulator
STARTED=()
start_service() {
  local state
  state=$("$ROOT/scripts/$1.sh" start)
  if [ "$state" = started ]; then STARTED+=("$1"); fi
}
stop_started() {
  local rc=$?
  for svc in "${STARTED[@]}"; do "$ROOT/scripts/$svc.sh" stop || true; done
  exit "$rc"
}
