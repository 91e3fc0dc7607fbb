#!/usr/bin/env bash
# start-postgres.sh: starts a throw-away PostgreSQL cluster for the store tests on Debian
# bookworm and prints the line to eval:
#
#	eval "$(bash .ci/start-postgres.sh)"
#	go test ./internal/sqlstore/...
#
# Runs as root (or via sudo). Installs Debian's postgresql package when no initdb is found,
# creates a cluster in a temp folder owned by the postgres user, listening only on 127.0.0.1,
# with trust authentication (test use only), and waits until it accepts connections.
# Idempotent: a cluster already answering on the port is reused.
#
# Environment: PGTEST_PORT (default 55432), PGTEST_DIR (default /tmp/switchboard-pg-$PORT).
# Everything except the final export line goes to stderr.
set -euo pipefail

port="${PGTEST_PORT:-55432}"
dir="${PGTEST_DIR:-/tmp/switchboard-pg-$port}"
url="postgres://postgres@127.0.0.1:${port}/postgres?sslmode=disable"

log() { echo "start-postgres: $*" >&2; }

sudo=""
if [[ $(id -u) -ne 0 ]]; then
	sudo="sudo"
fi

find_bin() {
	local d
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
	if [[ -n "$d" && -x "$d/initdb" ]]; then
		echo "$d"
	fi
}

bin=$(find_bin)
if [[ -z "$bin" ]]; then
	log "installing postgresql"
	export DEBIAN_FRONTEND=noninteractive
	if ! $sudo apt-get install -y --no-install-recommends postgresql >&2; then
		$sudo apt-get update -qq >&2
		$sudo apt-get install -y --no-install-recommends postgresql >&2
	fi
	bin=$(find_bin)
	if [[ -z "$bin" ]]; then
		log "initdb not found after installing postgresql"
		exit 1
	fi
fi

# as_pg runs a command as the postgres user.
as_pg() {
	if [[ $(id -un) == postgres ]]; then
		"$@"
	elif [[ $(id -u) -eq 0 ]]; then
		runuser -u postgres -- "$@"
	else
		sudo -u postgres -- "$@"
	fi
}

ready() { "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres; }

if ready; then
	log "reusing the cluster on 127.0.0.1:$port"
	echo "export TEST_DATABASE_URL='$url'"
	exit 0
fi

$sudo mkdir -p "$dir"
$sudo chown postgres:postgres "$dir"
$sudo chmod 700 "$dir"

if [[ ! -f "$dir/data/PG_VERSION" ]]; then
	log "initdb in $dir/data"
	as_pg "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-locale >&2
	{
		echo "listen_addresses = '127.0.0.1'"
		echo "port = $port"
		echo "unix_socket_directories = '$dir'"
		echo "fsync = on"
		echo "max_connections = 200"
	} | as_pg tee -a "$dir/data/postgresql.conf" >/dev/null
fi

log "starting on 127.0.0.1:$port"
as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -o "-p $port" start >&2 || {
	# a stale postmaster.pid from a killed cluster: pg_ctl start refuses; clear it once and retry
	if [[ -f "$dir/data/postmaster.pid" ]] && ! ready; then
		log "removing stale postmaster.pid and retrying"
		$sudo rm -f "$dir/data/postmaster.pid"
		as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -o "-p $port" start >&2
	else
		exit 1
	fi
}

deadline=$((SECONDS + 60))
until ready; do
	if ((SECONDS > deadline)); then
		log "not ready after 60 s; log follows"
		cat "$dir/postgres.log" >&2 || true
		exit 1
	fi
	sleep 0.2
done
log "ready"
echo "export TEST_DATABASE_URL='$url'"
