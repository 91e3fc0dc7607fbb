#!/usr/bin/env bash
# install-sip.sh: installs what the internal/sip end-to-end tests need on Debian bookworm:
# Kamailio 5.6 (+ SQLite, PostgreSQL and extra modules: evapi lives in kamailio-extra-modules),
# sipp (package sip-tester) and the sqlite3 shell. Idempotent: when every package is already
# installed it returns at once without touching the network; apt-get update runs only when a
# package is missing.
set -euo pipefail

pkgs=(kamailio kamailio-sqlite-modules kamailio-postgres-modules kamailio-extra-modules sip-tester sqlite3)

missing=()
for p in "${pkgs[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
		missing+=("$p")
	fi
done

if ((${#missing[@]} == 0)); then
	echo "install-sip: all present: ${pkgs[*]}"
	exit 0
fi

sudo=""
if [[ $(id -u) -ne 0 ]]; then
	sudo="sudo"
fi

echo "install-sip: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"

# Debian's kamailio package ships a service that may not start here (no systemd); the tests
# run their own Kamailio in the foreground, so nothing else is needed.
dpkg-query -W -f='${Package} ${Version}\n' "${pkgs[@]}"
