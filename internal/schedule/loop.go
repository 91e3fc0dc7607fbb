package schedule

import (
	"context"
	"fmt"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/directory"
)

// Run is the background loop: it fires scheduled syncs, polls where change
// notifications are off, keeps subscriptions alive and works off the
// webhook queue, until ctx ends (then it returns nil after its goroutines
// stopped). Run it once per process; several processes sharing one store
// fire each slot once (the slot is claimed in a transaction).
func (s *Service) Run(ctx context.Context) error {
	s.init()
	defer s.wg.Wait()
	for {
		next := s.tick(ctx)
		d := next.Sub(s.now())
		d = min(max(d, 50*time.Millisecond), s.Tick)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-s.kick:
			t.Stop()
		case <-t.C:
		}
	}
}

// wake makes the loop look again now (settings changed).
func (s *Service) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// tick looks at every PBX once and returns when it wants to look again.
func (s *Service) tick(ctx context.Context) time.Time {
	now := s.now()
	next := now.Add(s.Tick)
	pbxs, err := s.Store.ListPBXs(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.Logger.ErrorContext(ctx, "schedule: listing PBXs", "err", err)
		}
		return next
	}
	// Other instances sharing the store create subscriptions too: reload the
	// registry now and then (never per request: a flood of unknown ids must
	// not reach the store).
	if now.Sub(s.regLoaded) >= s.Tick {
		s.regLoaded = now
		if err := s.loadRegistry(ctx); err != nil && ctx.Err() == nil {
			s.Logger.WarnContext(ctx, "schedule: reloading subscriptions", "err", err)
		}
	}
	for _, p := range pbxs {
		if ctx.Err() != nil {
			return next
		}
		if !s.Integration.Connected(ctx, p.ID) {
			s.forget(p.ID)
			continue
		}
		if at, err := s.checkSchedule(ctx, p, now); err != nil {
			s.Logger.ErrorContext(ctx, "schedule: checking the schedule", "pbx", p.ID, "err", err)
		} else if at.Before(next) {
			next = at
		}
		s.maybeMaintain(ctx, p.ID, now)
		if at := s.maybePoll(ctx, p.ID, now); !at.IsZero() && at.Before(next) {
			next = at
		}
	}
	return next
}

// forget drops in-memory timers of a PBX that is not connected.
func (s *Service) forget(pbx string) {
	s.mu.Lock()
	delete(s.lastPoll, pbx)
	delete(s.lastMaint, pbx)
	s.mu.Unlock()
}

// checkSchedule fires the PBX's scheduled sync when its slot has come, once
// across restarts and instances. Slots missed while the service was down
// fire once, on the first look after. It returns when it wants to look
// again.
//
// With a SlotRunner (the job queue) the slot's job is inserted first, at
// the slot, to start at slot + the PBX's spread offset; it is unique by PBX
// and slot, so repeated ticks and instances insert one job. LastSlot is
// recorded only after the insert succeeded: a crash or store failure in
// between makes the next tick insert again, which finds the job there.
// Without one, the slot is claimed in the store (LastSlot, in a
// transaction), then triggered at slot + offset.
func (s *Service) checkSchedule(ctx context.Context, p directory.PBX, now time.Time) (time.Time, error) {
	set, err := s.load(ctx, p.ID)
	if err != nil {
		return time.Time{}, err
	}
	if set.TimeZone == "" {
		set.TimeZone = p.TimeZone
	}
	off := s.offset(p.ID)
	st, ok, err := s.loadState(ctx, p.ID)
	if err != nil {
		return time.Time{}, err
	}
	if !ok { // first sight: arm from now
		if err := s.updateState(ctx, p.ID, func(st *runState) bool {
			if st.LastSlot.IsZero() {
				st.LastSlot = now.UTC()
				return true
			}
			return false
		}); err != nil {
			return time.Time{}, err
		}
		return NextRun(set, now).Add(off), nil
	}
	sr, queued := s.Runner.(SlotRunner)
	due := func(slot time.Time) time.Time { return slot.Add(off) }
	if queued {
		due = func(slot time.Time) time.Time { return slot } // the job itself waits for the offset
	}
	slot := NextRun(set, st.LastSlot)
	if due(slot).After(now) {
		return due(slot), nil
	}
	// Due: take the latest slot that has come (several missed ones fire once).
	for range 1000 {
		n := NextRun(set, slot)
		if due(n).After(now) {
			break
		}
		slot = n
	}
	if queued {
		if err := sr.TriggerAt(ctx, p.ID, ReasonSchedule, slot.UTC(), slot.Add(off).UTC()); err != nil {
			return time.Time{}, fmt.Errorf("queueing the scheduled sync of %s: %w", slot.UTC(), err)
		}
		s.stats.triggers.Add(1)
		if err := s.updateState(ctx, p.ID, func(st *runState) bool {
			if !st.LastSlot.Before(slot) {
				return false
			}
			st.LastSlot = slot.UTC()
			return true
		}); err != nil {
			return time.Time{}, fmt.Errorf("recording the queued slot %s: %w", slot.UTC(), err)
		}
		s.Logger.InfoContext(ctx, "schedule: scheduled sync queued", "pbx", p.ID, "slot", slot.UTC(), "startsAt", slot.Add(off).UTC())
		return due(NextRun(set, slot)), nil
	}
	claimed := false
	if err := s.updateState(ctx, p.ID, func(st *runState) bool {
		if !st.LastSlot.Before(slot) {
			return false // fired already (another instance)
		}
		st.LastSlot, claimed = slot.UTC(), true
		return true
	}); err != nil {
		return time.Time{}, err
	}
	if claimed {
		s.Logger.InfoContext(ctx, "schedule: scheduled sync due", "pbx", p.ID, "slot", slot.UTC())
		s.fire(ctx, p.ID, ReasonSchedule)
	}
	return NextRun(set, slot).Add(off), nil
}

// maybePoll triggers a delta poll of a PBX in polling mode every
// PollInterval; it returns when the next poll is due (zero when the PBX
// receives notifications).
//
// With a SlotRunner, polls lie on a grid (every PollInterval, shifted by
// the PBX's offset): the poll of a grid point is one job however many
// instances poll the PBX.
func (s *Service) maybePoll(ctx context.Context, pbx string, now time.Time) time.Time {
	if mode, _ := s.Mode(ctx, pbx); mode != ModePolling {
		s.mu.Lock()
		delete(s.lastPoll, pbx)
		s.mu.Unlock()
		return time.Time{}
	}
	if sr, ok := s.Runner.(SlotRunner); ok {
		return s.pollGrid(ctx, sr, pbx, now)
	}
	s.mu.Lock()
	last, ok := s.lastPoll[pbx]
	if !ok {
		// Start in the PBX's place of the interval, not all PBXs at once.
		last = now.Add(-s.PollInterval + s.offset(pbx)%s.PollInterval)
		s.lastPoll[pbx] = last
	}
	due := last.Add(s.PollInterval)
	fire := !due.After(now)
	if fire {
		s.lastPoll[pbx] = now
		due = now.Add(s.PollInterval)
	}
	s.mu.Unlock()
	if fire {
		s.fire(ctx, pbx, ReasonPoll)
	}
	return due
}

// pollGrid inserts the job of the latest grid point of the PBX's polls
// unless this instance did already; it returns the next grid point.
func (s *Service) pollGrid(ctx context.Context, sr SlotRunner, pbx string, now time.Time) time.Time {
	phase := (s.offset(pbx) % s.PollInterval).Truncate(time.Second) // buckets are Unix seconds
	bucket := now.Add(-phase).Truncate(s.PollInterval).Add(phase)
	next := bucket.Add(s.PollInterval)
	s.mu.Lock()
	done := !s.lastPoll[pbx].Before(bucket)
	s.mu.Unlock()
	if done {
		return next
	}
	if err := sr.TriggerAt(ctx, pbx, ReasonPoll, bucket.UTC(), bucket.UTC()); err != nil {
		if ctx.Err() == nil {
			s.Logger.WarnContext(ctx, "schedule: queueing a poll failed; trying again", "pbx", pbx, "err", err)
		}
		return now.Add(min(s.PollInterval, 10*time.Second))
	}
	s.stats.triggers.Add(1)
	s.mu.Lock()
	s.lastPoll[pbx] = bucket
	s.mu.Unlock()
	return next
}

// retryEvery is how often subscriptions are tried again while polling.
const retryEvery = 15 * time.Minute

// maybeMaintain creates or renews the PBX's subscriptions every
// MaintainEvery, every retryEvery while polling (in the background, one at
// a time per PBX).
func (s *Service) maybeMaintain(ctx context.Context, pbx string, now time.Time) {
	every := s.MaintainEvery
	if mode, _ := s.Mode(ctx, pbx); mode != ModeNotifications {
		every = min(every, retryEvery) // try to leave polling sooner
	}
	s.mu.Lock()
	last, ok := s.lastMaint[pbx]
	if (ok && now.Sub(last) < every) || s.maintaining[pbx] {
		s.mu.Unlock()
		return
	}
	s.lastMaint[pbx], s.maintaining[pbx] = now, true
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.maintaining, pbx)
			s.mu.Unlock()
		}()
		if err := s.EnsureSubscriptions(ctx, pbx); err != nil && ctx.Err() == nil {
			s.Logger.WarnContext(ctx, "schedule: subscriptions", "pbx", pbx, "err", err)
		}
	}()
}

// fire asks the Runner to sync the PBX, in the background, at most
// Concurrency at once. A trigger still waiting for its turn absorbs later
// ones for the same PBX (a sync reads the current state anyway).
func (s *Service) fire(ctx context.Context, pbx, reason string) {
	key := pbx
	s.mu.Lock()
	if s.waiting == nil {
		s.waiting = map[string]bool{}
	}
	if s.waiting[key] {
		s.mu.Unlock()
		return
	}
	s.waiting[key] = true
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		select {
		case s.sem <- struct{}{}:
		case <-ctx.Done():
			s.mu.Lock()
			delete(s.waiting, key)
			s.mu.Unlock()
			return
		}
		defer func() { <-s.sem }()
		s.mu.Lock()
		delete(s.waiting, key)
		s.mu.Unlock()
		s.stats.triggers.Add(1)
		if err := s.Runner.Trigger(ctx, pbx, reason); err != nil && ctx.Err() == nil {
			s.Logger.WarnContext(ctx, "schedule: starting a sync failed", "pbx", pbx, "reason", reason, "err", err)
		}
	}()
}
