package jobs_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/syncer"
)

// BenchmarkManyPBXsInstances measures 200 PBXs of 500 users each (20 ms
// simulated Graph latency), one sync job per PBX through River on
// PostgreSQL, worked by 1 or 2 instances with the same per-instance
// concurrency: 1, 2 or 4 sync workers each (4 is the default). Every instance is
// its own process (this test binary re-executed: store, engine and River
// client), as `switchboard serve` instances are; the simulated tenant runs in
// the benchmark process and PostgreSQL on the same machine, so all of them
// share its cores (machine-busy-% says how much of them was used: once one
// instance keeps the machine busy, a second cannot double the speed).
// s/all-pbxs is from the first job's start to the last job's end (River's
// timestamps), so the debounce window and River's scheduler delay before the
// jobs become available are not counted; s/from-trigger includes them.
// Needs TEST_DATABASE_URL.
func BenchmarkManyPBXsInstances(b *testing.B) {
	const pbxs, users = 200, 500
	const latency = 20 * time.Millisecond
	for _, run := range []struct{ workers, instances int }{{1, 1}, {1, 2}, {2, 1}, {2, 2}, {4, 1}, {4, 2}} {
		workers, instances := run.workers, run.instances
		b.Run(fmt.Sprintf("pbxs=%d/users=%d/latency=%s/workers=%d/instances=%d", pbxs, users, latency, workers, instances), func(b *testing.B) {
			simURL := startSim(b, users, latency)
			for b.Loop() {
				b.StopTimer()
				db := pgDatabase(b)
				ids := make([]string, pbxs)
				for i := range ids {
					ids[i] = fmt.Sprintf("pbx-%03d", i)
				}
				ctl := newControl(b, db, ids)
				var children []*child
				for i := range instances {
					children = append(children, startChild(b, childEnv{ID: fmt.Sprintf("i%d", i), DB: db, SimURL: simURL, MaxWorkers: workers}))
				}
				b.StartTimer()
				t0 := time.Now()
				for _, id := range ids {
					if err := ctl.runner.Trigger(b.Context(), id, syncer.TriggerChange); err != nil {
						b.Fatal(err)
					}
				}
				waitFor(b, time.Minute, "the first sync job to start", func() bool {
					j := ctl.syncJobs(b)
					return j["running"]+j["completed"] > 0
				})
				busy0, total0 := machineCPU(b)
				self0 := selfCPU()
				inst0 := 0.0
				for _, c := range children {
					inst0 += c.cpu(b)
				}
				waitFor(b, 10*time.Minute, "every sync job finished", func() bool {
					j := ctl.syncJobs(b)
					return j["completed"]+j["cancelled"]+j["discarded"] == pbxs
				})
				fromTrigger := time.Since(t0)
				b.StopTimer()
				busy1, total1 := machineCPU(b)
				self1 := selfCPU()
				inst1 := 0.0
				for _, c := range children {
					inst1 += c.cpu(b)
				}
				var span, jobAvg float64
				var byInstance string
				if err := ctl.db().QueryRowContext(b.Context(), `SELECT extract(epoch from max(finalized_at) - min(attempted_at)),
					extract(epoch from avg(finalized_at - attempted_at)),
					(SELECT string_agg(w || '=' || n, ' ' ORDER BY w) FROM (SELECT attempted_by[1] AS w, count(*) AS n FROM river_job
					WHERE kind = 'sync' AND state = 'completed' GROUP BY 1) x)
					FROM river_job WHERE kind = 'sync'`).Scan(&span, &jobAvg, &byInstance); err != nil {
					b.Fatal(err)
				}
				if j := ctl.syncJobs(b); j["completed"] != pbxs {
					b.Fatalf("sync jobs %v, want %d completed", j, pbxs)
				}
				for _, id := range ids {
					runs := ctl.succeeded(b, id, syncer.TriggerChange)
					if len(runs) != 1 || runs[0].Created != users {
						b.Fatalf("%s: %d successful runs %+v; want one that created %d extensions", id, len(runs), runs, users)
					}
				}
				b.Logf("jobs completed per instance: %s", byInstance)
				b.ReportMetric(span, "s/all-pbxs")
				// A job's time from River's start to its end: the sync plus
				// River's completion; span x workers x instances / pbxs minus
				// this is the time workers waited for their next job.
				b.ReportMetric(jobAvg, "s/job")
				b.ReportMetric(fromTrigger.Seconds(), "s/from-trigger")
				b.ReportMetric(float64(pbxs*users)/span, "users/s")
				// Where the CPU went, from the first job's start (seen within
				// 50 ms) to the last job's end (seen within 50 ms):
				// the machine's busy share (all processes: instances,
				// PostgreSQL, the simulated tenant, anything else running),
				// the instances' CPU seconds and this process's (the
				// simulated tenant and the polling).
				b.ReportMetric(100*(busy1-busy0)/(total1-total0), "machine-busy-%")
				b.ReportMetric(inst1-inst0, "instances-cpu-s")
				b.ReportMetric(self1-self0, "sim-cpu-s")
				b.StartTimer()
			}
		})
	}
}

// machineCPU returns the machine's busy and total CPU time so far, in
// clock ticks, from /proc/stat (busy = everything but idle and iowait).
func machineCPU(tb testing.TB) (busy, total float64) {
	tb.Helper()
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		tb.Fatal(err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	for i, f := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseFloat(f, 64)
		if i >= 8 { // guest time is already in user
			break
		}
		total += v
		if i != 3 && i != 4 {
			busy += v
		}
	}
	return busy, total
}

// selfCPU returns this process's user+system CPU seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// cpu returns the child's user+system CPU seconds so far (/proc/PID/stat).
func (c *child) cpu(tb testing.TB) float64 {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.cmd.Process.Pid))
	if err != nil {
		tb.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(b), ") ") // after the command name
	f := strings.Fields(rest)
	ut, _ := strconv.ParseFloat(f[11], 64) // field 14, utime
	st, _ := strconv.ParseFloat(f[12], 64) // field 15, stime
	return (ut + st) / 100                 // USER_HZ
}
