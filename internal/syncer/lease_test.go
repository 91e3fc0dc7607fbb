package syncer_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/syncer"
)

const leaseKey = "sync.lease"

// takeOver writes the PBX's lease as another instance that took it over
// would (nil value: the lease released).
func takeOver(t testing.TB, st store.Store, owner string) {
	t.Helper()
	err := st.UpdateSetting(context.Background(), directory.DefaultPBX, leaseKey, func([]byte) ([]byte, error) {
		if owner == "" {
			return nil, nil
		}
		return json.Marshal(map[string]any{"owner": owner, "run": "their-run", "expires": time.Now().Add(time.Hour)})
	})
	if err != nil {
		t.Errorf("taking the lease over: %v", err)
	}
}

// checkWholeBatches checks that the directory holds exactly the first n
// whole batches of the run and no duplicates.
func checkWholeBatches(t *testing.T, b *bundle, r *syncer.Run, want int) {
	t.Helper()
	exts := b.extensions()
	if r.Created != want || len(exts) != want {
		t.Fatalf("created %d, %d extensions stored; want %d (whole batches only)", r.Created, len(exts), want)
	}
	if n := len(b.byEntra()); n != want {
		t.Fatalf("%d distinct synced users for %d extensions", n, want)
	}
}

// An instance whose lease another instance took over while it applied
// (it was paused past its lease, say) writes no further batch: the next
// batch's fence refuses it inside its transaction, the delta link is not
// advanced and the run ends lease_lost. The new owner's run then completes.
func TestLeaseTakenOverMidApplyIsFenced(t *testing.T) {
	backends(t, func(t *testing.T, db func(testing.TB) string) {
		b := newBundle(t, opts{users: 300, db: db(t)})
		b.eng.ApplyBatch = 50
		var batches []int
		b.eng.BeforeApplyBatch = func(_ *syncer.Run, batch int) {
			batches = append(batches, batch)
			if batch == 2 {
				takeOver(t, b.store, "other-instance")
			}
		}
		s := defaults()
		s.WelcomeEmail = true
		id := b.save(s)
		r := must(b.eng.GetRun(t.Context(), directory.DefaultPBX, id))
		if r.State != syncer.StateFailed || r.ErrorCode != "lease_lost" || !strings.Contains(r.Error, "now held by instance other-instance") {
			t.Fatalf("run: state %s, code %q, error %q; want failed, lease_lost", r.State, r.ErrorCode, r.Error)
		}
		if len(batches) != 3 {
			t.Fatalf("apply batches started: %v; want [0 1 2] (none after the refused one)", batches)
		}
		checkWholeBatches(t, b, r, 100)
		if r.WelcomeEmails != 0 {
			t.Fatalf("a fenced-off run sent %d welcome emails", r.WelcomeEmails)
		}
		if _, err := b.store.GetSetting(t.Context(), directory.DefaultPBX, "sync.delta.users"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("the fenced-off run stored a delta link: %v", err)
		}
		v, err := b.store.GetSetting(t.Context(), directory.DefaultPBX, leaseKey)
		if err != nil || !strings.Contains(string(v), "other-instance") {
			t.Fatalf("the losing run's release touched the new owner's lease: %q, %v", v, err)
		}

		// The new owner finishes and releases; the next run completes the rest.
		takeOver(t, b.store, "")
		b.eng.BeforeApplyBatch = nil
		r = b.mustSucceed(b.run(syncer.RunOptions{}))
		exts := b.extensions()
		if r.Created != len(exts)-100 || len(b.byEntra()) != len(exts) || len(exts) < 300 {
			t.Fatalf("recovery run created %d; %d extensions, %d synced", r.Created, len(exts), len(b.byEntra()))
		}
	})
}

// leaseWatch reports the lease renewals that fail.
type leaseWatch struct {
	store.Store
	mu     sync.Mutex
	failed []error
}

func (w *leaseWatch) UpdateSetting(ctx context.Context, pbx, key string, fn func([]byte) ([]byte, error)) error {
	err := w.Store.UpdateSetting(ctx, pbx, key, fn)
	if key == leaseKey && err != nil {
		w.mu.Lock()
		w.failed = append(w.failed, err)
		w.mu.Unlock()
	}
	return err
}

func (w *leaseWatch) renewalFailed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.failed) > 0
}

// When a lease renewal finds the lease lost (taken over, or released by
// someone else), it cancels the run: the run stops where it is and ends
// lease_lost; it never takes a lost lease back.
func TestLeaseLostCancelsRun(t *testing.T) {
	for _, tc := range []struct{ name, owner, msg string }{
		{"taken over", "other-instance", "now held by instance other-instance"},
		{"released", "", "the lease was released"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBundle(t, opts{users: 300})
			watch := &leaseWatch{Store: b.store}
			eng := &syncer.Engine{Store: watch, PBX: b.pbx, Graph: b.src, Logger: testLogger(t),
				ApplyBatch: 50, LeaseTTL: 90 * time.Millisecond} // renewed every 30 ms
			t.Cleanup(eng.Wait)
			eng.BeforeApplyBatch = func(_ *syncer.Run, batch int) {
				if batch != 1 {
					return
				}
				takeOver(t, b.store, tc.owner)
				// The run is "paused" here until its renewal notices.
				deadline := time.Now().Add(10 * time.Second)
				for !watch.renewalFailed() {
					if time.Now().After(deadline) {
						t.Error("no renewal noticed the lost lease")
						return
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
			_, id, err := eng.SaveUserSettings(t.Context(), directory.DefaultPBX, "test", defaults())
			if err != nil {
				t.Fatal(err)
			}
			eng.Wait()
			r := must(eng.GetRun(t.Context(), directory.DefaultPBX, id))
			if r.State != syncer.StateFailed || r.ErrorCode != "lease_lost" ||
				!strings.Contains(r.Error, tc.msg) || !strings.Contains(r.Error, "the run stopped") {
				t.Fatalf("run: state %s, code %q, error %q; want failed, lease_lost, stopped by the renewal", r.State, r.ErrorCode, r.Error)
			}
			checkWholeBatches(t, b, r, 50)
			// The lost lease was not taken back.
			v, err := b.store.GetSetting(t.Context(), directory.DefaultPBX, leaseKey)
			switch {
			case tc.owner == "" && !errors.Is(err, store.ErrNotFound):
				t.Fatalf("a released lease was taken back: %q, %v", v, err)
			case tc.owner != "" && !strings.Contains(string(v), tc.owner):
				t.Fatalf("the lease is %q, %v; want %s's", v, err, tc.owner)
			}
		})
	}
}

// takeOverOnGroup hands the PBX's lease to another instance just before the
// run's first group write, as if this instance had been paused past its lease.
type takeOverOnGroup struct {
	store.Store
	t    testing.TB
	once sync.Once
}

func (s *takeOverOnGroup) CreateGroup(ctx context.Context, pbx string, g *directory.Group) error {
	s.once.Do(func() { takeOver(s.t, s.Store, "other-instance") })
	return s.Store.CreateGroup(ctx, pbx, g)
}

// Group writes are fenced like extension batches: once another instance
// holds the lease, the run creates no group and ends lease_lost.
func TestLeaseTakenOverMidGroupsIsFenced(t *testing.T) {
	backends(t, func(t *testing.T, db func(testing.TB) string) {
		b := newBundle(t, opts{users: 1, db: db(t)})
		u := b.people("gf", 3, nil)
		g1 := b.group("Sales", u[0])
		g2 := b.group("Support", u[1], u[2])
		b.save(defaults())
		b.eng.Store = &takeOverOnGroup{Store: b.eng.Store, t: t}
		gs := syncer.DefaultGroupSettings()
		gs.Enabled, gs.Range, gs.GroupIDs = true, syncer.RangeGroups, []string{g1, g2}
		b.saveGroups(gs)
		runs, err := b.eng.ListRuns(t.Context(), directory.DefaultPBX)
		if err != nil || len(runs) == 0 {
			t.Fatalf("runs: %v, %v", runs, err)
		}
		r := must(b.eng.GetRun(t.Context(), directory.DefaultPBX, runs[0].ID))
		if r.State != syncer.StateFailed || r.ErrorCode != "lease_lost" {
			t.Fatalf("run: state %s, code %q, error %q; want failed, lease_lost", r.State, r.ErrorCode, r.Error)
		}
		if got := b.groups(); len(got) != 0 {
			t.Fatalf("a fenced-off run created groups: %+v", got)
		}
	})
}

// takeOverOnGroupDelete hands the lease away before the first group delete.
type takeOverOnGroupDelete struct {
	store.Store
	t    testing.TB
	once sync.Once
}

func (s *takeOverOnGroupDelete) DeleteGroup(ctx context.Context, pbx, id string, check func(*directory.Group) error) error {
	s.once.Do(func() { takeOver(s.t, s.Store, "other-instance") })
	return s.Store.DeleteGroup(ctx, pbx, id, check)
}

// Pausing group sync with deletion deletes nothing once the lease is lost.
func TestLeaseTakenOverDuringGroupPauseIsFenced(t *testing.T) {
	backends(t, func(t *testing.T, db func(testing.TB) string) {
		b := newBundle(t, opts{users: 1, db: db(t)})
		u := b.people("gp", 2, nil)
		g1 := b.group("Sales", u[0])
		b.save(defaults())
		gs := syncer.DefaultGroupSettings()
		gs.Enabled, gs.Range, gs.GroupIDs = true, syncer.RangeGroups, []string{g1}
		b.saveGroups(gs)
		if n := len(b.groups()); n != 1 {
			t.Fatalf("%d groups after the group sync, want 1", n)
		}
		b.eng.Store = &takeOverOnGroupDelete{Store: b.eng.Store, t: t}
		if _, err := b.eng.PauseGroups(t.Context(), directory.DefaultPBX, "test", true); err == nil || !strings.Contains(err.Error(), "lost its lease") {
			t.Fatalf("PauseGroups after losing the lease: %v, want the lease error", err)
		}
		if n := len(b.groups()); n != 1 {
			t.Fatalf("%d groups after a fenced-off pause, want the 1 kept", n)
		}
	})
}
