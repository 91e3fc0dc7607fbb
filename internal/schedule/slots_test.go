package schedule

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/jobs"
	"github.com/switchboard-pbx/switchboard/internal/sqlstore"
)

// flakyStore fails the next failState updates of the schedule's run state
// (LastSlot): the store failing after the slot's job was inserted.
type flakyStore struct {
	Store
	failState atomic.Int32
}

func (f *flakyStore) UpdateSetting(ctx context.Context, pbx, key string, fn func([]byte) ([]byte, error)) error {
	if key == stateKey && f.failState.Add(-1) >= 0 {
		return errors.New("store unavailable")
	}
	return f.Store.UpdateSetting(ctx, pbx, key, fn)
}

// With a SlotRunner each slot is one job, inserted at the slot and starting
// at slot + offset; a store failure after the insert makes the next tick
// insert again, which is the same job, and the slot is then recorded.
func TestScheduledSlotsQueued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &flakyStore{Store: newMemStore(directory.PBX{ID: "a", TimeZone: "UTC"})}
		r := &queueRunner{}
		s := &Service{Store: st, Integration: newFakeIntegration("a"), Runner: r, Logger: testLogger(t), PollInterval: 24 * time.Hour}
		stop := run(t, s)
		time.Sleep(time.Hour) // Jan 1 00:30 queued
		synctest.Wait()
		st.failState.Store(1)
		time.Sleep(24 * time.Hour) // Jan 2 00:30: queued, recording it failed once, then again
		synctest.Wait()
		// Jan 3: the queue is down at the slot: nothing is recorded, and the
		// slot's job is inserted when the queue is back.
		time.Sleep(23*time.Hour + 29*time.Minute) // Jan 3 00:29
		r.setErr(errors.New("queue down"))
		time.Sleep(3 * time.Minute) // 00:32
		synctest.Wait()
		if ls, _, _ := s.loadState(t.Context(), "a"); !ls.LastSlot.Equal(time.Date(2000, 1, 2, 0, 30, 0, 0, time.UTC)) {
			t.Fatalf("LastSlot = %s while the queue is down, want still Jan 2", ls.LastSlot)
		}
		r.setErr(nil)
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		stop()
		got := r.slotJobs("a", ReasonSchedule)
		off := s.offset("a")
		if len(got) != 3 {
			t.Fatalf("slot jobs in 3 days = %v, want 3", got)
		}
		for i, c := range got {
			slot := time.Date(2000, 1, 1+i, 0, 30, 0, 0, time.UTC)
			if !c.At.Equal(slot.Add(off)) {
				t.Errorf("slot %s starts at %s, want slot + offset %s", slot, c.At, off)
			}
		}
		if n := st.failState.Load(); n > 0 {
			t.Fatalf("the store failure was not hit (%d left)", n)
		}
		if ls, _, _ := s.loadState(t.Context(), "a"); !ls.LastSlot.Equal(time.Date(2000, 1, 3, 0, 30, 0, 0, time.UTC)) {
			t.Errorf("LastSlot = %s, want the Jan 3 slot recorded once its job was queued", ls.LastSlot)
		}
	})
}

// The real queue (River on SQLite): two Services on one store, ticking in
// turn, insert one job per scheduled slot and one per poll grid point; a
// store failure after the insert leaves one job for the slot.
func TestTwoServicesOneJobPerSlot(t *testing.T) {
	ctx := t.Context()
	st, err := sqlstore.Open(ctx, "sqlite:"+t.TempDir()+"/s.db", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.EnsurePBX(ctx, directory.PBX{ID: "a", Name: "a", MaxExtensions: 10, TimeZone: "UTC"}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	set := func(t time.Time) { mu.Lock(); now = t; mu.Unlock() }
	var svcs []*Service
	var flaky []*flakyStore
	for range 2 {
		r, err := jobs.OpenSQLite(ctx, st.DB(), jobs.Config{}) // not started: jobs stay queued
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.Close)
		fs := &flakyStore{Store: st}
		flaky = append(flaky, fs)
		svcs = append(svcs, &Service{Store: fs, Integration: newFakeIntegration("a"), Runner: r, Logger: testLogger(t),
			Now: clock, PollInterval: time.Hour, Spread: 10 * time.Minute})
	}
	tickAll := func() {
		for _, s := range append(svcs, svcs...) { // each instance twice, in turn
			s.init()
			s.tick(ctx)
		}
	}
	tickAll() // 00:00: armed
	set(time.Date(2030, 1, 1, 0, 31, 0, 0, time.UTC))
	tickAll()
	set(time.Date(2030, 1, 2, 0, 45, 0, 0, time.UTC))
	flaky[0].failState.Store(1)
	tickAll()
	for _, s := range svcs {
		s.wg.Wait() // subscription upkeep goroutines
	}
	rows, err := st.DB().QueryContext(ctx, `SELECT json(args) FROM river_job WHERE kind = 'sync'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	slots := map[int64]int{}
	polls := map[int64]int{}
	for rows.Next() {
		var raw []byte
		if err := rows.Scan(&raw); err != nil {
			t.Fatal(err)
		}
		var a jobs.SyncArgs
		if err := json.Unmarshal(raw, &a); err != nil {
			t.Fatal(err)
		}
		switch a.Grid {
		case ReasonSchedule:
			slots[a.Bucket]++
		case ReasonPoll:
			polls[a.Bucket]++
		default:
			t.Errorf("unexpected job %+v", a)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	jan1, jan2 := time.Date(2030, 1, 1, 0, 30, 0, 0, time.UTC).Unix(), time.Date(2030, 1, 2, 0, 30, 0, 0, time.UTC).Unix()
	if len(slots) != 2 || slots[jan1] != 1 || slots[jan2] != 1 {
		t.Errorf("slot jobs %v, want one for each of %d and %d", slots, jan1, jan2)
	}
	if flaky[0].failState.Load() > 0 {
		t.Errorf("the store failure was not hit")
	}
	// Polling (no public URL): three looks at three grid points, one job each.
	if len(polls) != 3 {
		t.Errorf("poll jobs %v, want 3 grid points with one job each", polls)
	}
	for b, n := range polls {
		if n != 1 {
			t.Errorf("poll at %d: %d jobs", b, n)
		}
	}
}

// With a SlotRunner polls lie on the PBX's grid: every PollInterval at the
// PBX's offset, one job per grid point.
func TestPollGrid(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore(directory.PBX{ID: "a", TimeZone: "UTC"})
		r := &queueRunner{}
		s := &Service{Store: st, Integration: newFakeIntegration("a"), Runner: r, Logger: testLogger(t), PollInterval: 5 * time.Minute}
		stop := run(t, s)
		time.Sleep(time.Hour)
		synctest.Wait()
		stop()
		got := r.slotJobs("a", ReasonPoll)
		if len(got) < 12 || len(got) > 13 {
			t.Fatalf("%d poll jobs in an hour, want about 12", len(got))
		}
		phase := (s.offset("a") % s.PollInterval).Truncate(time.Second)
		for i, c := range got {
			if at := c.At.Add(-phase); !at.Truncate(s.PollInterval).Equal(at) {
				t.Errorf("poll %d at %s: not on the grid (phase %s)", i, c.At, phase)
			}
			if i > 0 && c.At.Sub(got[i-1].At) != s.PollInterval {
				t.Errorf("poll %d at %s, %s after the previous one", i, c.At, c.At.Sub(got[i-1].At))
			}
		}
	})
}
