package app

import (
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/syncer"
)

// The service's Runner (what schedules, change notifications and polling
// call) is the River queue: a trigger becomes a job that Serve's worker runs.
func TestTriggerRunsThroughJobs(t *testing.T) {
	f := startFull(t)
	st := syncer.DefaultUserSettings()
	st.Enabled = true
	if code, out := f.call("PUT", "/api/v1/integration/user-sync", st); code != 200 {
		t.Fatalf("user-sync: %d %v", code, out)
	}
	if f.a.Schedule.Runner != f.a.Jobs {
		t.Fatal("schedule.Service does not trigger through the job queue")
	}
	if err := f.a.Schedule.Runner.Trigger(t.Context(), directory.DefaultPBX, syncer.TriggerChange); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		runs, err := f.a.Syncer.ListRuns(t.Context(), directory.DefaultPBX)
		if err != nil {
			t.Fatal(err)
		}
		var state string
		for _, r := range runs {
			if r.Trigger == syncer.TriggerChange {
				state = r.State
			}
		}
		if state == syncer.StateSucceeded {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no succeeded run from the triggered job: %+v", runs)
		}
		time.Sleep(50 * time.Millisecond) // polling with a deadline
	}
}
