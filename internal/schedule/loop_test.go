package schedule

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/directory"
)

// run starts s.Run in the bubble and returns a stop function that waits for it.
func run(t *testing.T, s *Service) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

func schedules(r *fakeRunner, pbx string) []call {
	var out []call
	for _, c := range r.list() {
		if c.Reason == ReasonSchedule && (pbx == "" || c.PBX == pbx) {
			out = append(out, c)
		}
	}
	return out
}

// The bubble's clock starts at 2000-01-01 00:00 UTC (01:00 in Berlin).
func TestSchedulerFiresOncePerSlot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore(directory.PBX{ID: "a", TimeZone: "Europe/Berlin"}, directory.PBX{ID: "off", TimeZone: "UTC"})
		r := &fakeRunner{}
		s := &Service{Store: st, Integration: newFakeIntegration("a"), Runner: r, Logger: testLogger(t)}
		stop := run(t, s)
		time.Sleep(72 * time.Hour)
		synctest.Wait()
		stop()
		got := schedules(r, "")
		if len(got) != 3 {
			t.Fatalf("scheduled syncs in 72 h = %d (%v), want 3", len(got), got)
		}
		off := s.offset("a")
		for i, c := range got {
			slot := time.Date(2000, 1, 2+i, 0, 30, 0, 0, mustLoc(t, "Europe/Berlin"))
			if c.PBX != "a" || !c.At.Equal(slot.Add(off)) {
				t.Errorf("run %d: %s at %s, want a at %s (slot %s + offset %s)", i, c.PBX, c.At.UTC(), slot.Add(off).UTC(), slot.UTC(), off)
			}
		}
		if n := len(schedules(r, "off")); n != 0 {
			t.Errorf("a PBX without a connected integration got %d runs", n)
		}
	})
}

func TestSchedulerRestartNeitherDoublesNorMisses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore(directory.PBX{ID: "a", TimeZone: "UTC"})
		r := &fakeRunner{}
		newSvc := func() *Service {
			return &Service{Store: st, Integration: newFakeIntegration("a"), Runner: r, Logger: testLogger(t), Spread: -1}
		}
		// Instance 1 fires the Jan 1 00:30 slot (the clock starts at 00:00).
		stop := run(t, newSvc())
		time.Sleep(31 * time.Minute) // 00:31
		synctest.Wait()
		stop()
		if n := len(schedules(r, "a")); n != 1 {
			t.Fatalf("before restart: %d runs, want 1", n)
		}
		// Restart right away: the slot already fired must not fire again.
		stop = run(t, newSvc())
		time.Sleep(10 * time.Minute) // 00:41
		synctest.Wait()
		stop()
		if n := len(schedules(r, "a")); n != 1 {
			t.Fatalf("after an immediate restart: %d runs, want still 1", n)
		}
		// Down across the next two slots (Jan 2 and Jan 3 00:30): both are
		// made up by one run when the service comes back on Jan 3 at 12:00.
		time.Sleep(59*time.Hour + 19*time.Minute) // Jan 3 12:00
		stop = run(t, newSvc())
		synctest.Wait()
		if n := len(schedules(r, "a")); n != 2 {
			t.Fatalf("after coming back from downtime: %d runs, want 2 (one catch-up)", n)
		}
		time.Sleep(13 * time.Hour) // Jan 4 01:00: the Jan 4 slot ran once
		synctest.Wait()
		stop()
		got := schedules(r, "a")
		if len(got) != 3 {
			t.Fatalf("runs = %v, want 3", got)
		}
		if want := time.Date(2000, 1, 4, 0, 30, 0, 0, time.UTC); !got[2].At.Equal(want) {
			t.Errorf("last run at %s, want %s", got[2].At, want)
		}
	})
}

func TestSchedulerSpreadsAndBoundsConcurrency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 40
		var pbxs []directory.PBX
		var ids []string
		for i := range n {
			id := "pbx-" + string(rune('a'+i%26)) + string(rune('a'+i/26))
			pbxs = append(pbxs, directory.PBX{ID: id, TimeZone: "UTC"})
			ids = append(ids, id)
		}
		st := newMemStore(pbxs...)
		var inFlight, maxInFlight atomic.Int32
		var mu sync.Mutex
		at := map[string]time.Time{}
		r := runnerFunc(func(_ context.Context, pbx, reason string) error {
			if reason != ReasonSchedule {
				return nil
			}
			cur := inFlight.Add(1)
			for {
				m := maxInFlight.Load()
				if cur <= m || maxInFlight.CompareAndSwap(m, cur) {
					break
				}
			}
			mu.Lock()
			at[pbx] = time.Now()
			mu.Unlock()
			time.Sleep(3 * time.Minute) // a slow sync
			inFlight.Add(-1)
			return nil
		})
		s := &Service{Store: st, Integration: newFakeIntegration(ids...), Runner: r, Logger: testLogger(t),
			Spread: 10 * time.Minute, Concurrency: 3, PollInterval: 24 * time.Hour}
		stop := run(t, s)
		time.Sleep(2 * time.Hour)
		synctest.Wait()
		stop()
		if len(at) != n {
			t.Fatalf("%d PBXs synced, want %d", len(at), n)
		}
		slot := time.Date(2000, 1, 1, 0, 30, 0, 0, time.UTC)
		distinct := map[time.Time]bool{}
		for pbx, when := range at {
			distinct[when] = true
			if when.Before(slot.Add(s.offset(pbx))) {
				t.Errorf("%s started at %s, before its slot+offset", pbx, when)
			}
		}
		if len(distinct) < n/4 {
			t.Errorf("only %d distinct start times for %d PBXs: not spread", len(distinct), n)
		}
		if m := maxInFlight.Load(); m > 3 {
			t.Errorf("%d syncs in flight at once, want at most 3", m)
		}
		for _, id := range ids {
			if off := s.offset(id); off < 0 || off >= 10*time.Minute {
				t.Errorf("offset(%s) = %s, outside [0, 10m)", id, off)
			}
		}
	})
}

type runnerFunc func(ctx context.Context, pbx, reason string) error

func (f runnerFunc) Trigger(ctx context.Context, pbx, reason string) error {
	return f(ctx, pbx, reason)
}

func TestSettingsAndNextSyncAt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore(directory.PBX{ID: "a", TimeZone: "America/New_York"})
		r := &fakeRunner{}
		in := newFakeIntegration("a")
		s := &Service{Store: st, Integration: in, Runner: r, Logger: testLogger(t), Spread: -1}
		ctx := t.Context()
		got, err := s.GetSettings(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		if got.Frequency != Daily || got.Time != "00:30" || got.TimeZone != "America/New_York" {
			t.Errorf("default = %+v", got)
		}
		// 2000-01-01 00:00 UTC is Dec 31 19:00 in New York: next is Jan 1 00:30 EST.
		next, err := s.NextSyncAt(ctx, "a")
		if err != nil || next == nil || !next.Equal(time.Date(2000, 1, 1, 5, 30, 0, 0, time.UTC)) {
			t.Errorf("NextSyncAt = %v, %v", next, err)
		}
		put, err := s.PutSettings(ctx, "a", Settings{Frequency: "weekly", Days: []string{"Saturday"}, Time: "23:59", TimeZone: "Europe/Berlin"})
		if err != nil {
			t.Fatal(err)
		}
		if put.TimeZone != "Europe/Berlin" || put.Days[0] != "saturday" {
			t.Errorf("stored %+v", put)
		}
		next, _ = s.NextSyncAt(ctx, "a")
		if want := time.Date(2000, 1, 1, 22, 59, 0, 0, time.UTC); next == nil || !next.Equal(want) { // Sat Jan 1 23:59 CET
			t.Errorf("NextSyncAt after put = %v, want %s", next, want)
		}
		if _, err := s.PutSettings(ctx, "a", Settings{Frequency: "weekly", Time: "23:59"}); err == nil {
			t.Error("weekly without days accepted")
		}
		in.set("a", false)
		if next, err := s.NextSyncAt(ctx, "a"); next != nil || err != nil {
			t.Errorf("NextSyncAt when not connected = %v, %v; want nil", next, err)
		}
	})
}

// Changing the schedule does not fire a slot that passed before the change.
func TestPutSettingsDoesNotFirePastSlots(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore(directory.PBX{ID: "a", TimeZone: "UTC"})
		r := &fakeRunner{}
		s := &Service{Store: st, Integration: newFakeIntegration("a"), Runner: r, Logger: testLogger(t), Spread: -1}
		stop := run(t, s)
		time.Sleep(12 * time.Hour) // 00:30 fired
		synctest.Wait()
		if _, err := s.PutSettings(t.Context(), "a", Settings{Frequency: Daily, Time: "06:00"}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		if n := len(schedules(r, "a")); n != 1 {
			t.Errorf("runs after moving the time behind now = %d, want 1", n)
		}
		time.Sleep(18 * time.Hour) // Jan 2 07:00: the new 06:00 ran
		synctest.Wait()
		stop()
		got := schedules(r, "a")
		if len(got) != 2 || !got[1].At.Equal(time.Date(2000, 1, 2, 6, 0, 0, 0, time.UTC)) {
			t.Errorf("runs = %v", got)
		}
	})
}

func TestPollingWithoutPublicURL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore(directory.PBX{ID: "a", TimeZone: "UTC"})
		r := &fakeRunner{}
		s := &Service{Store: st, Integration: newFakeIntegration("a"), Runner: r, Logger: testLogger(t)}
		mode, why := s.Mode(t.Context(), "a")
		if mode != ModePolling || why == "" {
			t.Errorf("Mode = %q, %q", mode, why)
		}
		stop := run(t, s)
		time.Sleep(time.Hour)
		synctest.Wait()
		stop()
		if n := r.count("a", ReasonPoll); n < 11 || n > 13 {
			t.Errorf("polls in an hour = %d, want about 12", n)
		}
		for _, u := range []string{"http://localhost:8080", "https://127.0.0.1", "https://10.1.2.3/x", "https://[::1]:9"} {
			s := &Service{Store: st, Integration: newFakeIntegration("a"), PublicURL: u}
			if mode, why := s.Mode(t.Context(), "a"); mode != ModePolling || why == "" {
				t.Errorf("PublicURL %s: Mode = %q, %q; want polling", u, mode, why)
			}
		}
	})
}
