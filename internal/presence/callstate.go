package presence

import (
	"context"
	"errors"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/graph"
)

// Teams state set while an extension is ringing or busy (a supported setPresence pair).
const (
	CallAvailability = "Busy"
	CallActivity     = "InACall"
)

type callKey struct{ pbx, ext string }

// callRun serializes the Teams writes of one extension: OnCallState records
// the wanted state, one goroutine drives Teams toward it, coalescing bursts.
type callRun struct {
	want, applied directory.CallState
	running       bool
	userID        string    // user whose session we hold ("" = none)
	setAt         time.Time // last setPresence
}

// OnCallState tells the service an extension's call state (from the
// call-state API or Kamailio's events). In two-way mode ringing and busy set
// the user's Teams presence to Busy/InACall with the application's session
// and idle clears it, then applies the user's current Teams presence. It
// returns at once; the Graph writes happen in order in the background.
func (s *Service) OnCallState(ctx context.Context, pbx, extensionID string, state directory.CallState) error {
	if !state.Valid() {
		return &directory.FieldError{Field: "state", Code: "invalid", Reason: "must be idle, ringing or busy"}
	}
	k := callKey{pbx, extensionID}
	s.mu.Lock()
	if s.calls == nil {
		s.calls = map[callKey]*callRun{}
	}
	c := s.calls[k]
	if c == nil {
		c = &callRun{}
		s.calls[k] = c
	}
	c.want = state
	if c.running {
		s.mu.Unlock()
		return nil
	}
	c.running = true
	s.mu.Unlock()
	go s.driveCall(context.WithoutCancel(ctx), k, c)
	return nil
}

func (s *Service) driveCall(ctx context.Context, k callKey, c *callRun) {
	for {
		s.mu.Lock()
		want := c.want
		if want == c.applied {
			c.running = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := s.applyCall(cctx, k, c, want)
		cancel()
		if err != nil {
			s.log().WarnContext(ctx, "two-way presence: updating Teams", "pbx", k.pbx, "extension", k.ext, "state", want, "err", err)
		}
		s.mu.Lock()
		c.applied = want
		s.mu.Unlock()
	}
}

func (s *Service) applyCall(ctx context.Context, k callKey, c *callRun, state directory.CallState) error {
	s.mu.Lock()
	held := c.userID
	s.mu.Unlock()
	if state == directory.CallIdle {
		if held == "" {
			// No session of ours is known. Clear one only for an eligible
			// extension in two-way mode whose earlier state is a call or
			// unknown (a restart may have lost track of a session).
			s.mu.Lock()
			prev := c.applied
			s.mu.Unlock()
			if prev == directory.CallIdle || !s.holdFor(ctx, k.pbx) {
				return nil
			}
			e, err := s.Store.GetExtension(ctx, k.pbx, k.ext)
			if err != nil {
				return nil
			}
			if _, err := s.targetOf(ctx, k.pbx, e); err != nil {
				return nil
			}
		}
		return s.endCall(ctx, k, c)
	}
	if !s.holdFor(ctx, k.pbx) {
		return nil
	}
	e, err := s.Store.GetExtension(ctx, k.pbx, k.ext)
	if err != nil {
		return err
	}
	t, err := s.targetOf(ctx, k.pbx, e)
	if err != nil {
		return nil // not synced or presence sync off
	}
	gc, err := s.appClient(ctx, k.pbx)
	if err != nil {
		return err
	}
	setAt := s.now() // the session's expiry counts from the request
	err = gc.SetPresence(ctx, t.userID, graph.SetPresenceRequest{Availability: CallAvailability, Activity: CallActivity,
		Expiration: s.sessionExpiry()})
	s.countRequests(k.pbx, "set", 1)
	if err != nil {
		return err
	}
	s.mu.Lock()
	c.userID, c.setAt = t.userID, setAt
	if s.sessions == nil {
		s.sessions = map[string]bool{}
	}
	s.sessions[sessionKey(k.pbx, t.userID)] = true
	s.mu.Unlock()
	return nil
}

// endCall clears the application's session and applies the user's current Teams presence.
func (s *Service) endCall(ctx context.Context, k callKey, c *callRun) error {
	s.mu.Lock()
	userID := c.userID
	s.mu.Unlock()
	if userID == "" {
		e, err := s.Store.GetExtension(ctx, k.pbx, k.ext)
		if err != nil || !e.Synced() {
			return nil
		}
		userID = e.EntraID
	}
	gc, err := s.appClient(ctx, k.pbx)
	if err != nil {
		return err
	}
	err = gc.ClearPresence(ctx, userID, "")
	s.countRequests(k.pbx, "clear", 1)
	if err != nil && !errors.Is(err, graph.ErrNotFound) {
		return err
	}
	s.mu.Lock()
	c.userID = ""
	delete(s.sessions, sessionKey(k.pbx, userID))
	s.mu.Unlock()
	// The hold is over: the latest Teams state applies now.
	p, err := gc.GetPresence(ctx, userID)
	s.countRequests(k.pbx, "get", 1)
	if err != nil {
		return err
	}
	if p.ID == "" {
		p.ID = userID
	}
	t, err := s.targetByUser(ctx, k.pbx, userID)
	if err != nil {
		return nil
	}
	if set, err := s.GetSettings(ctx, k.pbx); err != nil || !set.Enabled {
		return err
	}
	return s.apply(ctx, k.pbx, *t, p, "call-end", false)
}

func (s *Service) sessionExpiry() time.Duration {
	return min(max(orDur(s.SessionExpiry, DefaultSessionExpiry), 5*time.Minute), 4*time.Hour)
}

// refreshSessions renews held Busy/InACall sessions at half their expiry, and
// clears them when two-way sync is no longer on.
func (s *Service) refreshSessions(ctx context.Context, pbx string) {
	two := s.holdFor(ctx, pbx)
	now := s.now()
	s.eachHeld(pbx, func(c *callRun) bool { return !two || now.Sub(c.setAt) > s.sessionExpiry()/2 }, func(k callKey, c *callRun) error {
		if !two {
			return s.endCall(ctx, k, c)
		}
		return s.applyCall(ctx, k, c, directory.CallBusy)
	})
}

// clearSessions ends every held session of the PBX (sync turned off).
func (s *Service) clearSessions(ctx context.Context, pbx string) {
	s.eachHeld(pbx, func(*callRun) bool { return true }, func(k callKey, c *callRun) error { return s.endCall(ctx, k, c) })
}

// eachHeld runs fn for the PBX's held sessions that match, each while it owns
// the extension's call run (so it never interleaves with driveCall).
func (s *Service) eachHeld(pbx string, match func(*callRun) bool, fn func(callKey, *callRun) error) {
	type item struct {
		k callKey
		c *callRun
	}
	var due []item
	s.mu.Lock()
	for k, c := range s.calls {
		if k.pbx == pbx && c.userID != "" && !c.running && match(c) {
			c.running = true
			due = append(due, item{k, c})
		}
	}
	s.mu.Unlock()
	for _, it := range due {
		if err := fn(it.k, it.c); err != nil {
			s.log().Warn("two-way presence: session upkeep", "pbx", pbx, "extension", it.k.ext, "err", err)
		}
		s.mu.Lock()
		it.c.running = false
		restart := it.c.want != it.c.applied
		if restart {
			it.c.running = true
		}
		s.mu.Unlock()
		if restart {
			go s.driveCall(context.Background(), it.k, it.c)
		}
	}
}
