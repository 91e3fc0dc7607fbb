#!/usr/bin/env bash
# Reproducible benchmark run (make bench). Runs the existing benchmarks one
# package at a time (never in parallel: the reference machine has 2 cores),
# keeps the raw `go test -bench` output and prints a Markdown table.
#
#   bash scripts/bench.sh                  # everything (about 3-4 min on 2 cores)
#   BENCH_QUICK=1 bash scripts/bench.sh    # fewer sync runs (no 100k full sync)
#   TEST_DATABASE_URL=postgres://... bash scripts/bench.sh   # adds the PostgreSQL store runs
#                                          # and the 1 vs 2 instances run (internal/jobs)
#   BENCH_OUT=dir bash scripts/bench.sh    # where raw output goes (default /tmp/switchboard-bench)
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
OUT=${BENCH_OUT:-/tmp/switchboard-bench}
mkdir -p "$OUT"
RAW="$OUT/raw.txt"
: >"$RAW"

run() { # package, -bench regexp, benchtime
	local pkg=$1 re=$2 bt=$3
	echo "== $pkg -bench '$re' -benchtime $bt" | tee -a "$RAW" >&2
	"$GO" test "$pkg" -run '^$' -bench "$re" -benchtime "$bt" -count 1 -timeout 60m 2>&1 | tee -a "$RAW" >&2
}

{
	echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "go: $("$GO" version)"
	echo "cpu: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ //')"
	echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
	if [[ -n "${TEST_DATABASE_URL:-}" ]]; then echo "postgres: yes ($(psql "$TEST_DATABASE_URL" -Atc 'show server_version' 2>/dev/null || echo '?'))"; else echo "postgres: no (TEST_DATABASE_URL unset: the PostgreSQL runs skip)"; fi
} | tee "$OUT/env.txt" >&2

# Sample the load average while the benchmarks run (other work on the
# machine skews the numbers: the table's notes quote the peak).
( while sleep 5; do cut -d' ' -f1 /proc/loadavg; done ) >"$OUT/load.txt" &
sampler=$!
trap 'kill "$sampler" 2>/dev/null || true' EXIT

run ./internal/sqlstore '^(BenchmarkApplyExtensions100k|BenchmarkListExtensions100k)$' 3x
run ./internal/graph '^BenchmarkListUsers$' 3x
run ./internal/sim '^BenchmarkUsersPage999$' 20x
if [[ "${BENCH_QUICK:-}" == 1 ]]; then
	run ./internal/syncer '^BenchmarkFullSync$/^users=10000$/' 1x
	run ./internal/syncer '^BenchmarkIncremental$/.*/.*/^latency=0s$' 1x
	run ./internal/syncer '^BenchmarkManyPBXs$/.*/.*/.*/^concurrency=4$' 1x
else
	run ./internal/syncer '^BenchmarkFullSync$' 1x
	run ./internal/syncer '^BenchmarkIncremental$' 1x
	run ./internal/syncer '^BenchmarkManyPBXs$' 1x
fi
# 200 PBXs x 500 users through River jobs on PostgreSQL, 1 vs 2 instances
# (child processes, 1, 2 and 4 sync workers each); skips without TEST_DATABASE_URL.
run ./internal/jobs '^BenchmarkManyPBXsInstances$' 1x
kill "$sampler" 2>/dev/null || true
{
	echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "load (1-min average) during the run: max $(sort -n "$OUT/load.txt" | tail -n1), median $(sort -n "$OUT/load.txt" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
} | tee -a "$OUT/env.txt" >&2
# The 1 vs 2 instances speed-up, per per-instance worker setting.
speedup=$(awk '/^BenchmarkManyPBXsInstances\// {
	w = $1; sub(/.*workers=/, "", w); sub(/\/.*/, "", w)
	for (i = 3; i < NF; i++) if ($(i + 1) == "s/all-pbxs") { if ($1 ~ /instances=1-/) one[w] = $i; if ($1 ~ /instances=2-/) two[w] = $i }
} END { for (w in one) if (one[w] > 0 && two[w] > 0) printf "%s workers per instance: %.2fx (%.2f s with 1 instance, %.2f s with 2)\n", w, one[w] / two[w], one[w], two[w] }' "$RAW" | sort -n)
if [[ -n "$speedup" ]]; then
	echo "200 PBXs x 500 users, 2 instances vs 1:" | tee -a "$OUT/env.txt" >&2
	echo "$speedup" | tee -a "$OUT/env.txt" >&2
fi

# Table: one row per benchmark result line; ns/op as seconds, then the
# custom metrics each benchmark reports (s/sync, graph-requests, peak-rss-MiB...).
awk '
/^pkg: / { pkg = $2; sub(/.*switchboard\//, "", pkg) }
/^Benchmark/ && /ns\/op/ {
	name = $1; sub(/-[0-9]+$/, "", name)
	row = "| " pkg " | " name " | " $2 " |"
	t = ""; m = ""
	for (i = 3; i < NF; i += 2) {
		v = $i; u = $(i + 1)
		if (u == "ns/op") { t = sprintf("%.3f s", v / 1e9); if (v < 1e6) t = sprintf("%.1f µs", v / 1e3); else if (v < 1e9) t = sprintf("%.1f ms", v / 1e6) }
		else m = m (m == "" ? "" : ", ") v " " u
	}
	print row " " t " | " m " |"
}
/^--- SKIP/ { skip = skip "\n" $0 }
BEGIN {
	print "| package | benchmark | runs | time/op | reported metrics |"
	print "|---|---|---|---|---|"
}
' "$RAW" | tee "$OUT/table.md"
