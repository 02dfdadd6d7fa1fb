#!/usr/bin/env bash
# The AWS emulator (LocalStack's Python package, on the host, no Docker) on 127.0.0.1:$TMS_AWS_PORT,
# from its project-local venv (.local/venv-aws; tools/python/emulator.txt says why LocalStack), with
# the project's plugins (tools/emulator: SES v2, which LocalStack's package routes but does not serve).
#   scripts/aws-emulator.sh start   install if needed, start unless running (prints "started" or "reused")
#   scripts/aws-emulator.sh stop    stop it if we started it
#   scripts/aws-emulator.sh status  exit 0 when it answers
# TMS_AWS_DIR keeps its pid, log and state elsewhere than .local/aws (make bench runs its own, with
# TMS_AWS_PORT).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

DIR="${TMS_AWS_DIR:-$LOCAL/aws}"
PIDFILE="$DIR/emulator.pid"
LOG="$DIR/emulator.log"
EMULATOR_VENV="$LOCAL/venv-aws"
SERVICES="sqs,s3,ssm,secretsmanager,events,ses,sesv2"
PLUGINS="$ROOT/tools/emulator"

# Answers once every service the stack uses is up.
answers() {
  local health
  health=$(curl -fs "http://127.0.0.1:$TMS_AWS_PORT/_localstack/health" 2>/dev/null) || return 1
  for svc in ${SERVICES//,/ }; do
    grep -Eq "\"$svc\": \"(available|running)\"" <<<"$health" || return 1
  done
}

# Installs tools/emulator into the emulator's venv, again whenever its files change (built from a
# copy, so the checkout gets no build folders).
install_plugins() {
  local stamp build
  stamp="$EMULATOR_VENV/.installed-plugins-$(cd "$PLUGINS" && find . -type f \( -name '*.py' -o -name '*.toml' \) \
    | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)"
  [ -f "$stamp" ] && return
  say "installing the emulator's plugins (tools/emulator)"
  build="$(mktemp -d)"
  cp -r "$PLUGINS"/. "$build"/
  "$EMULATOR_VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --force-reinstall "$build" \
    || { rm -rf "$build"; die "pip could not install tools/emulator (is PyPI reachable?)"; }
  rm -rf "$build"
  rm -f "$EMULATOR_VENV"/.installed-plugins-*
  touch "$stamp"
}

start() {
  command -v curl >/dev/null 2>&1 || die "curl not found: install curl."
  if pid_alive "$PIDFILE" && answers; then echo reused; return; fi
  if port_open "$TMS_AWS_PORT"; then
    if answers; then echo reused; return; fi
    die "port $TMS_AWS_PORT is in use by another program: stop it, or set TMS_AWS_PORT to a free port."
  fi
  TMS_VENV="$EMULATOR_VENV" "$ROOT/scripts/venv.sh" emulator
  install_plugins
  mkdir -p "$DIR/fs" "$DIR/tmp" "$DIR/home"
  say "starting the AWS emulator on 127.0.0.1:$TMS_AWS_PORT"
  # NOTE: each setting is one LocalStack needs on these hosts: hypercorn (its default server
  # binds every interface), no DNS server (port 53), not "in Docker" (it guesses so from the
  # cgroups), no downloads or analytics (no network), and every file it writes below $DIR.
  env GATEWAY_SERVER=hypercorn \
    GATEWAY_LISTEN="127.0.0.1:$TMS_AWS_PORT" \
    LOCALSTACK_HOST="127.0.0.1:$TMS_AWS_PORT" \
    SERVICES="$SERVICES" \
    EAGER_SERVICE_LOADING=1 \
    DNS_ADDRESS=0 \
    OVERRIDE_IN_DOCKER=0 \
    SKIP_SSL_CERT_DOWNLOAD=1 \
    SKIP_INFRA_DOWNLOADS=1 \
    DISABLE_EVENTS=1 \
    FILESYSTEM_ROOT="$DIR/fs" \
    TMPDIR="$DIR/tmp" \
    HOME="$DIR/home" \
    nohup "$EMULATOR_VENV/bin/python" -m localstack.runtime.main >"$LOG" 2>&1 &
  echo $! > "$PIDFILE"
  wait_for 90 "the AWS emulator" answers \
    || { tail -n 20 "$LOG" >&2; die "the AWS emulator did not answer within 90 s (log above)"; }
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
