#!/usr/bin/env bash
# stop-postgres.sh: stops the test cluster started by start-postgres.sh. Pass --purge to also
# delete its data folder. Same environment as start-postgres.sh (PGTEST_PORT, PGTEST_DIR).
set -euo pipefail

port="${PGTEST_PORT:-55432}"
dir="${PGTEST_DIR:-/tmp/switchboard-pg-$port}"

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
if [[ -z "$bin" || ! -d "$dir/data" ]]; then
	echo "stop-postgres: no cluster in $dir" >&2
	exit 0
fi

as_pg() {
	if [[ $(id -un) == postgres ]]; then
		"$@"
	elif [[ $(id -u) -eq 0 ]]; then
		runuser -u postgres -- "$@"
	else
		sudo -u postgres -- "$@"
	fi
}

if as_pg "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
	as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2
fi
if [[ "${1:-}" == "--purge" ]]; then
	rm -rf "$dir"
	echo "stop-postgres: removed $dir" >&2
fi
