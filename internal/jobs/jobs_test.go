package jobs_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/jobs"
	"github.com/switchboard-pbx/switchboard/internal/syncer"
)

// A trigger runs a sync through the queue; a burst of triggers for one PBX
// is one job (two when the burst straddles a debounce window), not twenty.
func TestTriggerBurst(t *testing.T) {
	backends(t, func(t *testing.T, db string) {
		w := newWorld(t, db, 1, 0)
		in := w.instance(testConfig("a"))
		w.setup(in)
		pbx := w.pbxs[0]
		if err := in.runner.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		for range 20 {
			if err := in.runner.Trigger(t.Context(), pbx, syncer.TriggerChange); err != nil {
				t.Fatal(err)
			}
		}
		w.waitIdle(in.st.DB(), 20*time.Second)
		total, _ := w.jobCounts(in.st.DB(), pbx)
		runs := w.track.runs(pbx, syncer.TriggerChange)
		if total < 1 || total > 2 || len(runs) != total {
			t.Fatalf("20 triggers: %d jobs, %d successful runs; want 1 or 2 of each", total, len(runs))
		}
		if runs[0].Created != users {
			t.Fatalf("first run created %d extensions, want %d: %+v", runs[0].Created, users, runs[0])
		}
		if o := w.track.overlaps(); len(o) > 0 {
			t.Fatalf("runs overlapped on %v", o)
		}
	})
}

// A job for a PBX whose integration is not connected is cancelled (terminal),
// not retried.
func TestNotConnectedCancels(t *testing.T) {
	w := newWorld(t, "", 1, 0)
	in := w.instance(testConfig("a"))
	w.setup(in)
	w.src.setErr(syncer.ErrNotConnected)
	if err := in.runner.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := in.runner.Trigger(t.Context(), w.pbxs[0], syncer.TriggerChange); err != nil {
		t.Fatal(err)
	}
	w.waitIdle(in.st.DB(), 20*time.Second)
	var state string
	var attempt int
	if err := in.st.DB().QueryRowContext(t.Context(), `SELECT state, attempt FROM river_job WHERE kind = 'sync'`).Scan(&state, &attempt); err != nil {
		t.Fatal(err)
	}
	if state != "cancelled" || attempt != 1 {
		t.Fatalf("job %s after %d attempts, want cancelled after 1", state, attempt)
	}
}

// Two instances on one PostgreSQL database share the jobs, and never run
// the same PBX at once (the lease, with snoozing); every PBX is synced and
// its extensions are created once.
func TestTwoInstances(t *testing.T) {
	w := newWorld(t, pgDatabase(t), 6, 20*time.Millisecond)
	a := w.instance(testConfig("a"))
	b := w.instance(testConfig("b"))
	w.setup(a)
	// Triggers over three debounce windows from both instances, before they
	// start working: several jobs per PBX, available at the same moment.
	end := time.Now().Add(1500 * time.Millisecond)
	for i := 0; time.Now().Before(end); i++ {
		in := []*instance{a, b}[i%2]
		for _, pbx := range w.pbxs {
			if err := in.runner.Trigger(t.Context(), pbx, syncer.TriggerChange); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(100 * time.Millisecond) // pacing the triggers, not waiting for a result
	}
	for _, in := range []*instance{a, b} {
		if err := in.runner.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	w.waitIdle(a.st.DB(), 25*time.Second)
	if o := w.track.overlaps(); len(o) > 0 {
		t.Fatalf("two runs of one PBX at once: %v", o)
	}
	for _, pbx := range w.pbxs {
		total, _ := w.jobCounts(a.st.DB(), pbx)
		runs := w.track.runs(pbx, syncer.TriggerChange)
		created := 0
		for _, r := range runs {
			created += r.Created
		}
		if len(runs) == 0 || len(runs) > total || total > 5 || created != users {
			t.Errorf("%s: %d jobs, %d runs, %d extensions created; want 1..5 jobs, a run per job at most, %d created", pbx, total, len(runs), created, users)
		}
	}
	var snoozed int
	if err := a.st.DB().QueryRowContext(t.Context(), `SELECT count(*) FROM river_job WHERE (metadata->>'snoozes')::int > 0`).Scan(&snoozed); err != nil {
		t.Fatal(err)
	}
	if snoozed == 0 {
		t.Errorf("no job found its PBX's lease taken: the test did not exercise one-run-per-PBX")
	}
	var workers int
	if err := a.st.DB().QueryRowContext(t.Context(),
		`SELECT count(DISTINCT attempted_by[array_length(attempted_by, 1)]) FROM river_job WHERE state = 'completed'`).Scan(&workers); err != nil {
		t.Fatal(err)
	}
	if workers != 2 {
		t.Errorf("completed jobs were worked by %d instances, want 2", workers)
	}
}

// A sync job whose worker died before finishing (no lease held, running past
// StuckAfter) is replaced by the leader's reaper; the replacement syncs the
// PBX, once.
func TestReaperReplacesOrphanedJob(t *testing.T) {
	backends(t, func(t *testing.T, db string) {
		w := newWorld(t, db, 1, 0)
		pbx := w.pbxs[0]
		release := make(chan struct{})
		cfg := testConfig("a")
		cfg.MaxWorkers = 2
		cfg.StuckAfter, cfg.ReapInterval = 500*time.Millisecond, 200*time.Millisecond
		// The first job's worker "dies": it never returns while the test runs.
		cfg.BeforeWork = func(_ context.Context, a jobs.SyncArgs) error {
			if a.RescueOf == 0 {
				<-release
				return errors.New("worker gone")
			}
			return nil
		}
		in := w.instance(cfg)
		t.Cleanup(func() { close(release) }) // before the instance's cleanups: it stops at once
		w.setup(in)
		if err := in.runner.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := in.runner.Trigger(t.Context(), pbx, syncer.TriggerChange); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for len(w.track.runs(pbx, syncer.TriggerChange)) == 0 {
			if time.Now().After(deadline) {
				t.Fatal("the orphaned job was not replaced")
			}
			time.Sleep(50 * time.Millisecond) // polling with a deadline
		}
		runs := w.track.runs(pbx, syncer.TriggerChange)
		if len(runs) != 1 || runs[0].Created != users {
			t.Fatalf("runs: %+v; want one that created %d extensions", runs, users)
		}
		total, _ := w.jobCounts(in.st.DB(), pbx)
		if total != 2 {
			t.Fatalf("%d sync jobs, want the orphan and its replacement", total)
		}
	})
}

// subsRecorder is a jobs.Subscriptions that records checks.
type subsRecorder struct {
	mu    sync.Mutex
	calls []string
}

func (s *subsRecorder) Check(_ context.Context, pbx, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, pbx+"/"+id)
	return nil
}

func (s *subsRecorder) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.calls...)
}

// Lifecycle events queued while one check of the subscription is pending
// are one "subscription.check" job, worked through Config.Subscriptions.
func TestSubscriptionCheckJob(t *testing.T) {
	backends(t, func(t *testing.T, db string) {
		w := newWorld(t, db, 1, 0)
		rec := &subsRecorder{}
		cfg := testConfig("a")
		cfg.Subscriptions = rec
		in := w.instance(cfg)
		for range 3 {
			if err := in.runner.CheckSubscription(t.Context(), "pbx-00", "sub-1"); err != nil {
				t.Fatal(err)
			}
		}
		if err := in.runner.CheckSubscription(t.Context(), "pbx-00", "sub-2"); err != nil {
			t.Fatal(err)
		}
		if err := in.runner.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for len(rec.list()) < 2 {
			if time.Now().After(deadline) {
				t.Fatalf("checks worked: %v, want both subscriptions", rec.list())
			}
			time.Sleep(20 * time.Millisecond) // polling with a deadline
		}
		var n int
		if err := in.st.DB().QueryRowContext(t.Context(), `SELECT count(*) FROM river_job WHERE kind = 'subscription.check'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if got := rec.list(); n != 2 || len(got) != 2 {
			t.Fatalf("%d check jobs, checks %v; want 2 and 2", n, got)
		}
	})
}

// Four PBXs on one Entra tenant, MaxPerTenant 1: never two of their syncs at
// once in the instance (the others snooze), and all complete.
func TestMaxPerTenant(t *testing.T) {
	w := newWorld(t, "", 4, 10*time.Millisecond)
	cfg := testConfig("a")
	cfg.MaxWorkers, cfg.MaxPerTenant, cfg.Snooze = 4, 1, 50*time.Millisecond
	cfg.Tenant = func(context.Context, string) (string, error) { return strings.ToUpper(tenantID), nil }
	in := w.instance(cfg)
	w.setup(in)
	for _, pbx := range w.pbxs {
		if err := in.runner.Trigger(t.Context(), pbx, syncer.TriggerChange); err != nil {
			t.Fatal(err)
		}
	}
	if err := in.runner.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	w.waitIdle(in.st.DB(), 30*time.Second)
	if m := w.track.mostAtOnce(); m != 1 {
		t.Errorf("%d syncs of one tenant at once, want 1", m)
	}
	for _, pbx := range w.pbxs {
		if runs := w.track.runs(pbx, syncer.TriggerChange); len(runs) != 1 || runs[0].Created != users {
			t.Errorf("%s: runs %+v, want one that created %d extensions", pbx, runs, users)
		}
	}
	var snoozed int
	if err := in.st.DB().QueryRowContext(t.Context(), `SELECT count(*) FROM river_job WHERE json_extract(metadata, '$.snoozes') > 0`).Scan(&snoozed); err != nil {
		t.Fatal(err)
	}
	if snoozed == 0 {
		t.Errorf("no job waited for the tenant: the test did not exercise the bound")
	}
}
