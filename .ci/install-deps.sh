#!/usr/bin/env bash
# Installs the Debian packages the tests need, only those that are missing.
set -euo pipefail
need=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for p in postgresql kamailio kamailio-sqlite-modules kamailio-postgres-modules kamailio-extra-modules sip-tester sqlite3 chromium; do
  have "$p" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Kamailio's package starts a system service on install; the tests run their own.
systemctl disable --now kamailio >/dev/null 2>&1 || service kamailio stop >/dev/null 2>&1 || true
# The OIDC interop test (internal/sso, e2e) runs the npm oidc-provider under node.
if command -v npm >/dev/null 2>&1 && [ ! -d internal/sso/testdata/oidc-provider/node_modules ]; then
  npm ci --silent --no-audit --no-fund --prefix internal/sso/testdata/oidc-provider >/dev/null
fi
