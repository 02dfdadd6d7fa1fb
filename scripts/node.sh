#!/usr/bin/env bash
# The project-local Node tools of `make test` in .local/node (openapi-typescript, typescript),
# installed with `npm ci` from tools/node/package-lock.json unless already installed.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

command -v npm >/dev/null 2>&1 || die "npm not found: install Node.js 18 or newer (Debian/Ubuntu: apt-get install nodejs npm), needed to check the OpenAPI document with openapi-typescript."

NODE_DIR="$LOCAL/node"
lock="$ROOT/tools/node/package-lock.json"
stamp="$NODE_DIR/.installed-$(cat "$ROOT/tools/node/package.json" "$lock" | sha256sum | cut -c1-16)"
[ -f "$stamp" ] && exit 0
say "installing Node tools: openapi-typescript, typescript (first run only)"
mkdir -p "$NODE_DIR"
cp "$ROOT/tools/node/package.json" "$lock" "$NODE_DIR/"
(cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) \
  || die "npm could not install tools/node/package.json (is the npm registry reachable?)"
rm -f "$NODE_DIR"/.installed-*
touch "$stamp"
