//go:build e2e

package jobs_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/jobs"
	"github.com/switchboard-pbx/switchboard/internal/syncer"
)

// An instance that dies with a sync job in hand: another instance picks the
// job up (River's rescuer, after RescueStuckJobsAfter) and completes the
// PBX's sync, once. Takes up to ~40 s: River's leader TTL and rescuer interval.
func TestKilledInstanceJobIsPickedUp(t *testing.T) {
	w := newWorld(t, pgDatabase(t), 1, 0)
	pbx := w.pbxs[0]
	picked := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	cfgA := testConfig("a")
	cfgA.JobTimeout, cfgA.RescueStuckJobsAfter = time.Second, 2*time.Second
	// A "dies" holding the job: its worker never returns while the test runs,
	// so River never hears how the job ended.
	cfgA.BeforeWork = func(context.Context, jobs.SyncArgs) error {
		once.Do(func() { close(picked) })
		<-release
		return errors.New("instance a is gone")
	}
	a := w.instance(cfgA)
	t.Cleanup(func() { close(release) }) // before the instance's cleanups: it stops at once
	w.setup(a)
	if err := a.runner.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := a.runner.Trigger(t.Context(), pbx, syncer.TriggerChange); err != nil {
		t.Fatal(err)
	}
	select {
	case <-picked:
	case <-time.After(20 * time.Second):
		t.Fatal("instance a never picked the job")
	}
	// Hard stop without waiting for the job.
	kctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_ = a.runner.StopAndCancel(kctx)

	cfgB := testConfig("b")
	cfgB.JobTimeout, cfgB.RescueStuckJobsAfter = time.Second, 2*time.Second
	b := w.instance(cfgB)
	if err := b.runner.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for len(w.track.runs(pbx, syncer.TriggerChange)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no instance completed the killed instance's sync")
		}
		time.Sleep(100 * time.Millisecond) // polling with a deadline
	}
	w.waitIdle(b.st.DB(), 20*time.Second)
	runs := w.track.runs(pbx, syncer.TriggerChange)
	if len(runs) != 1 || runs[0].Created != users {
		t.Fatalf("runs after the rescue: %+v; want one that created %d extensions", runs, users)
	}
	var state, by string
	if err := b.st.DB().QueryRowContext(t.Context(), `SELECT state, array_to_string(attempted_by, ',') FROM river_job WHERE kind = 'sync'`).Scan(&state, &by); err != nil {
		t.Fatal(err)
	}
	if state != "completed" || by != "a,b" {
		t.Fatalf("job %s, attempted by %q; want completed, attempted by a then b", state, by)
	}
}
