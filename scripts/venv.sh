#!/usr/bin/env bash
# The project-local Python environment in .local/venv.
#   scripts/venv.sh NAME...   installs tools/python/NAME.txt for each NAME unless already installed
set -euo pipefail
. "$(dirname "$0")/lib.sh"

command -v python3 >/dev/null 2>&1 || die "python3 not found: install Python 3.9 or newer (Debian/Ubuntu: apt-get install python3 python3-venv)."

if [ ! -x "$VENV/bin/python" ]; then
  say "creating the Python environment in ${VENV#"$ROOT"/} (first run only)"
  mkdir -p "$LOCAL"
  python3 -m venv "$VENV" 2>/dev/null || { rm -rf "$VENV"; die "python3 cannot create a virtual environment: install the venv module (Debian/Ubuntu: apt-get install python3-venv)."; }
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
fi

for name in "$@"; do
  req="$ROOT/tools/python/$name.txt"
  [ -f "$req" ] || die "no requirements file tools/python/$name.txt"
  stamp="$VENV/.installed-$name-$(sha256sum "$req" | cut -c1-16)"
  [ -f "$stamp" ] && continue
  say "installing Python tools: $name (first run only, about a minute)"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$req" \
    || die "pip could not install tools/python/$name.txt (is PyPI reachable?)"
  rm -f "$VENV"/.installed-"$name"-*
  touch "$stamp"
done
