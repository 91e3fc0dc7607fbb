package presence

import (
	"context"
	"crypto/sha256"
	"errors"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/graph"
)

// Run polls and renews subscriptions for every PBX with presence sync
// enabled until ctx ends. Each PBX is reconciled when its polling interval
// is due, when its subscription nears expiry, and at once after a settings
// change, by the one instance holding the PBX's presence lease (see
// LeaseTTL). When Run returns it releases the leases it holds, so that
// another instance takes those PBXs over at once.
func (s *Service) Run(ctx context.Context) error {
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		s.releaseLeases(rctx)
	}()
	tick := time.NewTicker(orDur(s.Tick, DefaultTick))
	defer tick.Stop()
	for {
		s.RunDue(ctx)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// RunDue reconciles every PBX whose round is due and whose presence lease
// this instance holds or can take. On the other PBXs it only keeps up the
// two-way sessions this instance set (they live in its memory).
func (s *Service) RunDue(ctx context.Context) {
	pbxs, err := s.Store.ListPBXs(ctx)
	if err != nil {
		s.log().ErrorContext(ctx, "presence: listing PBXs", "err", err)
		return
	}
	for _, p := range pbxs {
		now := s.now()
		if !s.holdLease(ctx, p.ID, now) {
			if s.upkeepDue(p.ID, now) {
				s.refreshSessions(ctx, p.ID)
			}
			if ctx.Err() != nil {
				return
			}
			continue
		}
		s.mu.Lock()
		st := s.state(p.ID)
		due := st.kicked || !now.Before(st.nextRun)
		s.mu.Unlock()
		if due {
			if err := s.Reconcile(ctx, p.ID); err != nil && ctx.Err() == nil {
				s.log().WarnContext(ctx, "presence sync round failed", "pbx", p.ID, "err", err)
			}
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// upkeepDue reports whether this instance, not holding the PBX's lease,
// holds two-way sessions of the PBX to keep up (refreshed, or cleared when
// two-way sync was switched off), at most once per MinPollInterval.
func (s *Service) upkeepDue(pbx string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.state(pbx)
	if now.Before(st.nextRun) {
		return false
	}
	for k, c := range s.calls {
		if k.pbx == pbx && c.userID != "" {
			st.nextRun = now.Add(orDur(s.MinPollInterval, DefaultMinPollInterval))
			return true
		}
	}
	return false
}

// Reconcile runs one round for the PBX: split the eligible users between the
// subscription and polling, keep the subscription alive, poll, refresh
// two-way sessions. When sync is off it tears the subscription down. It does
// not check the presence lease: RunDue calls it only while holding it, and a
// direct caller must be the only instance reconciling the PBX.
func (s *Service) Reconcile(ctx context.Context, pbx string) error {
	now := s.now()
	s.mu.Lock()
	st := s.state(pbx)
	st.kicked = false
	fullPoll := st.fullPoll
	s.mu.Unlock()

	set, err := s.GetSettings(ctx, pbx)
	if err != nil {
		return err
	}
	var ts []target
	if set.Enabled {
		ts, err = s.targets(ctx, pbx)
		if err != nil {
			return err
		}
	}
	connected := false
	if set.Enabled {
		// Checked fresh each round (no network): a disconnect or a new secret
		// must not be hidden by the cached client.
		if _, err := s.Graph.AppClient(ctx, pbx); err == nil {
			connected = true
		} else {
			s.dropClient(pbx)
			s.setRound(pbx, now, nil, nil, err.Error(), "", 0, time.Time{})
		}
	}
	if !set.Enabled || !connected || len(ts) == 0 {
		s.teardown(ctx, pbx)
		if set.Enabled && connected {
			s.setRound(pbx, now, nil, nil, "", "", 0, time.Time{})
		}
		return nil
	}

	// A mapping changed elsewhere (the client API): re-read everyone once.
	fp := fingerprint(ts)
	s.mu.Lock()
	if st.mappings != fp {
		fullPoll = true
	}
	s.mu.Unlock()

	// Notification path.
	var subscribed []string
	var subErr string
	s.mu.Lock()
	retryAt := st.subRetryAt
	var current []string
	for id := range st.notified {
		current = append(current, id)
	}
	s.mu.Unlock()
	if rec, _ := s.loadSub(ctx, pbx); rec != nil {
		current = rec.UserIDs
	}
	want := chooseSubscribed(current, ts, s.capacity())
	if s.BaseURL == "" {
		want = nil // Graph could not reach us: everyone is polled
	}
	if now.Before(retryAt) {
		// A create failed recently: keep what exists until the retry time.
		s.mu.Lock()
		subErr = st.subErr
		s.mu.Unlock()
		if rec, _ := s.loadSub(ctx, pbx); rec != nil && now.Before(rec.Expires) {
			for _, t := range filterTargets(ts, rec.UserIDs) {
				subscribed = append(subscribed, t.userID)
			}
		}
	} else {
		subscribed, err = s.ensureSubscription(ctx, pbx, want)
		if err == nil && s.BaseURL == "" && s.capacity() > 0 {
			subErr = "no public URL is configured (--public-url): presence change notifications are off and every user is polled"
		}
		if err != nil {
			subErr = err.Error()
			s.mu.Lock()
			st.subRetryAt = now.Add(orDur(s.RetryAfter, DefaultRetryAfter))
			s.mu.Unlock()
			s.log().WarnContext(ctx, "presence subscription unavailable; polling those users", "pbx", pbx, "err", err)
		}
	}
	notified := make(map[string]bool, len(subscribed))
	for _, id := range subscribed {
		notified[id] = true
	}
	s.mu.Lock()
	if !slicesEqualSet(sortedKeys(st.notified), subscribed) {
		fullPoll = true // new members: read their current state once
	}
	s.mu.Unlock()

	// Polling path (everyone once after a membership change).
	var polled []string
	var poll []target
	for _, t := range ts {
		if !notified[t.userID] {
			polled = append(polled, t.userID)
		}
		if fullPoll || !notified[t.userID] {
			poll = append(poll, t)
		}
	}
	pollErr := ""
	reqs := 0
	if len(poll) > 0 {
		reqs, err = s.poll(ctx, pbx, poll)
		if err != nil {
			pollErr = err.Error()
		}
	}
	s.mu.Lock()
	if pollErr == "" {
		st.fullPoll = false
		st.mappings = fp
	}
	s.mu.Unlock()
	var renewAt time.Time
	if rec, _ := s.loadSub(ctx, pbx); rec != nil && len(notified) > 0 {
		renewAt = rec.Expires.Add(-orDur(s.RenewBefore, DefaultRenewBefore))
	}
	s.setRound(pbx, now, notified, polled, pollErr, subErr, reqs, renewAt)
	s.refreshSessions(ctx, pbx)
	return nil
}

func filterTargets(ts []target, ids []string) []target {
	in := map[string]bool{}
	for _, id := range ids {
		in[id] = true
	}
	var out []target
	for _, t := range ts {
		if in[t.userID] {
			out = append(out, t)
		}
	}
	return out
}

func slicesEqualSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	in := make(map[string]bool, len(a))
	for _, x := range a {
		in[x] = true
	}
	for _, x := range b {
		if !in[x] {
			return false
		}
	}
	return true
}

// setRound records a round's outcome and schedules the next one.
func (s *Service) setRound(pbx string, now time.Time, notified map[string]bool, polled []string, pollErr, subErr string, reqs int, renewAt time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.state(pbx)
	if notified == nil {
		notified = map[string]bool{}
	}
	st.notified, st.polled = notified, polled
	st.lastPoll, st.lastErr, st.subErr = now, pollErr, subErr
	st.requests += int64(reqs)
	s.m().requests.WithLabelValues("poll").Add(float64(reqs))
	s.m().users.WithLabelValues(pbx, PathNotification).Set(float64(len(notified)))
	s.m().users.WithLabelValues(pbx, PathPolling).Set(float64(len(polled)))
	st.interval = s.PollInterval(len(polled))
	next := now.Add(st.interval)
	if !renewAt.IsZero() && renewAt.Before(next) {
		next = renewAt // wake up in time to renew the subscription
	}
	st.nextRun = next
}

// poll reads the presence of ts (650 ids a request) and applies it.
func (s *Service) poll(ctx context.Context, pbx string, ts []target) (int, error) {
	gc, err := s.appClient(ctx, pbx)
	if err != nil {
		return 0, err
	}
	ids := make([]string, len(ts))
	byUser := make(map[string]target, len(ts))
	for i, t := range ts {
		ids[i] = t.userID
		byUser[t.userID] = t
	}
	reqs := (len(ids) + graph.MaxPresenceIDs - 1) / graph.MaxPresenceIDs
	ps, err := gc.GetPresencesByUserID(ctx, ids)
	if err != nil {
		s.dropClient(pbx) // the next round starts with fresh credentials
	}
	hold := s.holdFor(ctx, pbx)
	var applyErr error
	for _, p := range ps {
		t, ok := byUser[p.ID]
		if !ok {
			continue
		}
		if e := s.apply(ctx, pbx, t, p, "polling", hold); e != nil {
			applyErr = e
		}
	}
	if err != nil {
		return reqs, err
	}
	return reqs, applyErr
}

// teardown stops everything for a PBX whose sync is off, disconnected or empty.
func (s *Service) teardown(ctx context.Context, pbx string) {
	if rec, err := s.loadSub(ctx, pbx); err == nil && rec != nil {
		if dc, err := s.Graph.DelegatedClient(ctx, pbx); err == nil && s.now().Before(rec.Expires) {
			if err := dc.DeleteSubscription(ctx, rec.ID); err != nil && !errors.Is(err, graph.ErrNotFound) {
				s.log().WarnContext(ctx, "deleting the presence subscription", "pbx", pbx, "err", err)
			}
		}
		if err := s.saveSub(ctx, pbx, nil); err != nil {
			s.log().WarnContext(ctx, "forgetting the presence subscription", "pbx", pbx, "err", err)
		}
	}
	s.clearSessions(ctx, pbx)
	s.mu.Lock()
	st := s.state(pbx)
	st.notified, st.polled, st.fullPoll = map[string]bool{}, nil, true
	st.nextRun = s.now().Add(orDur(s.MinPollInterval, DefaultMinPollInterval))
	s.mu.Unlock()
}

// fingerprint hashes the targets' mappings.
func fingerprint(ts []target) [sha256.Size]byte {
	h := sha256.New()
	for _, t := range ts {
		h.Write([]byte(t.extID))
		for _, a := range Availabilities {
			h.Write([]byte{0})
			h.Write([]byte(t.mapping[a]))
		}
		h.Write([]byte{1})
	}
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}
