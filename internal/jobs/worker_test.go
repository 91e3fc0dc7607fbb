package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/syncer"
)

// fakeSettings is a store.Settings holding one lease document.
type fakeSettings struct{ lease []byte }

func (f *fakeSettings) GetSetting(context.Context, string, string) ([]byte, error) {
	if f.lease == nil {
		return nil, store.ErrNotFound
	}
	return f.lease, nil
}
func (f *fakeSettings) UpdateSetting(context.Context, string, string, func([]byte) ([]byte, error)) error {
	return errors.New("not used")
}
func (f *fakeSettings) UpdateSettingFenced(context.Context, string, string, *store.Fence, func([]byte) ([]byte, error)) error {
	return errors.New("not used")
}
func (f *fakeSettings) ListSettings(context.Context, string, string) (map[string][]byte, error) {
	return nil, errors.New("not used")
}

// fakeSyncer returns a fixed run and counts calls.
type fakeSyncer struct {
	run     *syncer.Run
	running *syncer.Run
	calls   int
}

func (f *fakeSyncer) Run(context.Context, string, syncer.RunOptions) (*syncer.Run, error) {
	f.calls++
	return f.run, nil
}
func (f *fakeSyncer) Running(string) *syncer.Run { return f.running }

func TestWorkerOutcome(t *testing.T) {
	t.Parallel()
	lease := func(d time.Duration) []byte {
		b, _ := json.Marshal(map[string]any{"owner": "other", "run": "r1", "expires": time.Now().Add(d)})
		return b
	}
	ok := &syncer.Run{ID: "1", State: syncer.StateSucceeded}
	for _, tc := range []struct {
		name      string
		lease     []byte
		running   *syncer.Run
		run       *syncer.Run
		want      string // nil | snooze | cancel | retry
		wantCalls int
	}{
		{name: "succeeded", run: ok, want: "nil", wantCalls: 1},
		{name: "needs confirmation", run: &syncer.Run{State: syncer.StateNeedsConfirmation}, want: "nil", wantCalls: 1},
		{name: "expired lease is free", lease: lease(-time.Second), run: ok, want: "nil", wantCalls: 1},
		{name: "released lease", lease: []byte("null"), run: ok, want: "nil", wantCalls: 1},
		{name: "lease held elsewhere", lease: lease(time.Minute), run: ok, want: "snooze"},
		{name: "running here", running: ok, run: ok, want: "snooze"},
		{name: "not connected", run: &syncer.Run{State: syncer.StateFailed, ErrorCode: "not_connected"}, want: "cancel", wantCalls: 1},
		{name: "paused", run: &syncer.Run{State: syncer.StateFailed, ErrorCode: "paused"}, want: "cancel", wantCalls: 1},
		{name: "disabled", run: &syncer.Run{State: syncer.StateFailed, ErrorCode: "disabled"}, want: "cancel", wantCalls: 1},
		{name: "graph throttled", run: &syncer.Run{State: syncer.StateFailed, ErrorCode: "read_failed", Error: "graph: 429"}, want: "retry", wantCalls: 1},
		{name: "apply failed", run: &syncer.Run{State: syncer.StateFailed, ErrorCode: "apply_failed"}, want: "retry", wantCalls: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fs := &fakeSyncer{run: tc.run, running: tc.running}
			cfg := Config{Store: &fakeSettings{lease: tc.lease}, Syncer: fs}
			cfg.defaults()
			w := &syncWorker{cfg: &cfg}
			err := w.Work(t.Context(), &river.Job[SyncArgs]{JobRow: &rivertype.JobRow{ID: 1}, Args: SyncArgs{PBX: "default", Reason: "change"}})
			var sn *rivertype.JobSnoozeError
			var cn *rivertype.JobCancelError
			got := "retry"
			switch {
			case err == nil:
				got = "nil"
			case errors.As(err, &sn):
				got = "snooze"
				if sn.Duration < cfg.Snooze || sn.Duration > 2*cfg.Snooze {
					t.Errorf("snooze %v, want about %v", sn.Duration, cfg.Snooze)
				}
			case errors.As(err, &cn):
				got = "cancel"
			}
			if got != tc.want || fs.calls != tc.wantCalls {
				t.Fatalf("outcome %s (err %v), %d engine calls; want %s, %d", got, err, fs.calls, tc.want, tc.wantCalls)
			}
		})
	}
}

// Outcome maps each failure code the syncer names to River's action.
func TestOutcomeCodes(t *testing.T) {
	t.Parallel()
	failed := func(code string, retryAfter time.Duration) *syncer.Run {
		return &syncer.Run{ID: "r", State: syncer.StateFailed, ErrorCode: code, Error: code, RetryAfter: retryAfter}
	}
	for _, tc := range []struct {
		name     string
		run      *syncer.Run
		want     string        // nil | snooze | cancel | retry
		min, max time.Duration // snooze bounds
	}{
		{name: "succeeded", run: &syncer.Run{State: syncer.StateSucceeded}, want: "nil"},
		{name: "dry run", run: &syncer.Run{State: syncer.StateDryRun}, want: "nil"},
		{name: "throttled without Retry-After", run: failed("throttled", 0), want: "snooze", min: 5 * time.Second, max: 5*time.Second + 5*time.Second/4},
		{name: "throttled, short Retry-After", run: failed("throttled", 2*time.Second), want: "snooze", min: 5 * time.Second, max: 5*time.Second + 5*time.Second/4},
		{name: "throttled, long Retry-After", run: failed("throttled", time.Minute), want: "snooze", min: time.Minute, max: time.Minute + 15*time.Second},
		{name: "unauthorized", run: failed("unauthorized", 0), want: "cancel"},
		{name: "not connected", run: failed("not_connected", 0), want: "cancel"},
		{name: "lease lost", run: failed("lease_lost", 0), want: "retry"},
		{name: "read failed", run: failed("read_failed", 0), want: "retry"},
		{name: "internal", run: failed("internal", 0), want: "retry"},
		{name: "no run", run: nil, want: "retry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for range 20 { // the jitter is random: stay in bounds every time
				err := Outcome(tc.run)
				var sn *rivertype.JobSnoozeError
				var cn *rivertype.JobCancelError
				got := "retry"
				switch {
				case err == nil:
					got = "nil"
				case errors.As(err, &sn):
					got = "snooze"
					if sn.Duration < tc.min || sn.Duration > tc.max {
						t.Fatalf("snooze %v, want within [%v, %v]", sn.Duration, tc.min, tc.max)
					}
				case errors.As(err, &cn):
					got = "cancel"
				}
				if got != tc.want {
					t.Fatalf("Outcome = %s (%v), want %s", got, err, tc.want)
				}
			}
		})
	}
}
