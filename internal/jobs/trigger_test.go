package jobs

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// fakeClient records inserts; unique by (kind, args) like River's ByArgs.
type fakeClient struct {
	client // the rest is not used
	mu     sync.Mutex
	calls  int
	err    error
	seen   map[string]bool
	args   []river.JobArgs
	opts   []*river.InsertOpts
}

func (f *fakeClient) Insert(_ context.Context, args river.JobArgs, opts *river.InsertOpts) (*rivertype.JobInsertResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	if f.seen == nil {
		f.seen = map[string]bool{}
	}
	key := args.Kind()
	if a, ok := args.(SyncArgs); ok {
		key += "/" + a.PBX + "/" + a.Grid + "/" + time.Unix(a.Bucket, 0).String() // Reason is not a unique field
	}
	dup := f.seen[key]
	f.seen[key] = true
	if !dup {
		f.args, f.opts = append(f.args, args), append(f.opts, opts)
	}
	return &rivertype.JobInsertResult{Job: &rivertype.JobRow{}, UniqueSkippedAsDuplicate: dup}, nil
}

// Triggers inside one window reach the database once; a failed insert is
// not remembered (the next trigger tries again); the next window inserts
// again; another PBX has its own memory.
func TestTriggerMemoizesWindow(t *testing.T) {
	t.Parallel()
	fc := &fakeClient{}
	now := time.Date(2026, 11, 22, 21, 0, 1, 0, time.UTC)
	r := &Runner{cfg: Config{Window: 5 * time.Second}, client: fc, now: func() time.Time { return now }}
	ctx := t.Context()
	for range 1000 {
		if err := r.Trigger(ctx, "a", "change"); err != nil {
			t.Fatal(err)
		}
	}
	if fc.calls != 1 {
		t.Fatalf("1000 triggers in one window: %d inserts, want 1", fc.calls)
	}
	a := fc.args[0].(SyncArgs)
	end := time.Date(2026, 11, 22, 21, 0, 5, 0, time.UTC)
	if a.Bucket != end.Unix() || !fc.opts[0].ScheduledAt.Equal(end) || a.Grid != "" {
		t.Fatalf("job %+v at %v, want bucket and start at the window's end %v", a, fc.opts[0].ScheduledAt, end)
	}
	if err := r.Trigger(ctx, "b", "change"); err != nil || fc.calls != 2 {
		t.Fatalf("another PBX: err %v, %d inserts, want 2", err, fc.calls)
	}
	// Next window: the database fails, the trigger says so and is not remembered.
	now = now.Add(5 * time.Second)
	fc.err = errors.New("database down")
	if err := r.Trigger(ctx, "a", "change"); err == nil {
		t.Fatal("a failed insert returned nil")
	}
	fc.err = nil
	if err := r.Trigger(ctx, "a", "change"); err != nil || fc.calls != 4 || len(fc.args) != 3 {
		t.Fatalf("after the failure: err %v, %d insert calls, %d jobs; want 4 and 3", err, fc.calls, len(fc.args))
	}
	if err := r.Trigger(ctx, "a", "missed"); err != nil || fc.calls != 4 {
		t.Fatalf("same window again: err %v, %d inserts, want still 4", err, fc.calls)
	}
}

// TriggerAt inserts the slot's job with the slot as bucket and the given
// start; repeats are one job, and a poll on the same second is another.
func TestTriggerAtIsIdempotent(t *testing.T) {
	t.Parallel()
	fc := &fakeClient{}
	r := &Runner{cfg: Config{Window: 5 * time.Second}, client: fc}
	slot := time.Date(2026, 11, 23, 0, 30, 0, 0, time.UTC)
	at := slot.Add(137 * time.Second)
	for range 3 {
		if err := r.TriggerAt(t.Context(), "a", "schedule", slot, at); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.TriggerAt(t.Context(), "a", "poll", slot, slot); err != nil {
		t.Fatal(err)
	}
	if len(fc.args) != 2 {
		t.Fatalf("%d jobs, want one per grid", len(fc.args))
	}
	a := fc.args[0].(SyncArgs)
	if a.Bucket != slot.Unix() || a.Grid != "schedule" || !fc.opts[0].ScheduledAt.Equal(at) || fc.opts[0].Queue != QueueSync {
		t.Fatalf("job %+v opts %+v", a, fc.opts[0])
	}
}

type fakeSubs struct {
	calls []string
	err   error
}

func (f *fakeSubs) Check(_ context.Context, pbx, id string) error {
	f.calls = append(f.calls, pbx+"/"+id)
	return f.err
}

// The subscription worker calls Check; an error retries; no handler cancels.
func TestSubscriptionWorker(t *testing.T) {
	t.Parallel()
	job := &river.Job[SubscriptionArgs]{JobRow: &rivertype.JobRow{ID: 1}, Args: SubscriptionArgs{PBX: "p", SubscriptionID: "s1"}}
	fs := &fakeSubs{}
	w := &subscriptionWorker{cfg: &Config{Subscriptions: fs}}
	if err := w.Work(t.Context(), job); err != nil || len(fs.calls) != 1 || fs.calls[0] != "p/s1" {
		t.Fatalf("err %v, calls %v", err, fs.calls)
	}
	fs.err = errors.New("graph 503")
	var cn *rivertype.JobCancelError
	if err := w.Work(t.Context(), job); err == nil || errors.As(err, &cn) {
		t.Fatalf("a failed check = %v, want a plain error (retry)", err)
	}
	w = &subscriptionWorker{cfg: &Config{}}
	if err := w.Work(t.Context(), job); !errors.As(err, &cn) {
		t.Fatalf("no handler = %v, want cancel", err)
	}
	opts := SubscriptionArgs{}.InsertOpts()
	if !opts.UniqueOpts.ByArgs || len(opts.UniqueOpts.ByState) == 0 {
		t.Fatalf("subscription checks are not unique while pending: %+v", opts.UniqueOpts)
	}
}

// The tenant gate never waits: over the bound it says no; a release frees
// a slot; a PBX whose tenant is unknown counts as its own tenant.
func TestTenantGate(t *testing.T) {
	t.Parallel()
	g := &tenantGate{max: 2}
	r1, ok1 := g.tryAcquire("t")
	_, ok2 := g.tryAcquire("t")
	_, ok3 := g.tryAcquire("t")
	_, other := g.tryAcquire("u")
	if !ok1 || !ok2 || ok3 || !other {
		t.Fatalf("acquire = %v %v %v (other tenant %v), want true true false (true)", ok1, ok2, ok3, other)
	}
	r1()
	if _, ok := g.tryAcquire("t"); !ok {
		t.Fatal("a released slot was not free")
	}
	w := &syncWorker{cfg: &Config{Tenant: func(_ context.Context, pbx string) (string, error) {
		if pbx == "gone" {
			return "", errors.New("not connected")
		}
		return "ABC", nil
	}}}
	if a, b := w.tenantOf(t.Context(), "p1"), w.tenantOf(t.Context(), "p2"); a != b || a != "tenant:abc" {
		t.Errorf("tenantOf = %q, %q; want one tenant key", a, b)
	}
	if k := w.tenantOf(t.Context(), "gone"); k != "pbx:gone" {
		t.Errorf("tenantOf(unknown) = %q, want the PBX's own key", k)
	}
}
