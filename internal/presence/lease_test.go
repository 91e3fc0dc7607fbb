package presence_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/presence"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// countingStore counts the presence lease's reads and writes.
type countingStore struct {
	store.Store
	reads, writes atomic.Int64
}

func (c *countingStore) GetSetting(ctx context.Context, pbx, key string) ([]byte, error) {
	if key == presence.LeaseKey {
		c.reads.Add(1)
	}
	return c.Store.GetSetting(ctx, pbx, key)
}

func (c *countingStore) UpdateSetting(ctx context.Context, pbx, key string, fn func([]byte) ([]byte, error)) error {
	if key == presence.LeaseKey {
		c.writes.Add(1)
	}
	return c.Store.UpdateSetting(ctx, pbx, key, fn)
}

// peer is another instance on the same database and tenant, with e.svc's tunables.
func (e *env) peer(name string) *presence.Service {
	a := e.svc
	return &presence.Service{Store: e.store, Graph: e.integ, Logger: e.logger.With("instance", name), BaseURL: a.BaseURL, Instance: name,
		Tick: a.Tick, MinPollInterval: a.MinPollInterval, SubscriptionCapacity: a.SubscriptionCapacity, LeaseTTL: a.LeaseTTL}
}

// loop calls svc.RunDue every Tick until the returned crash is called, which
// stops it without releasing anything, as when the process dies.
func loop(t *testing.T, svc *presence.Service) (crash func()) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tk := time.NewTicker(svc.Tick)
		defer tk.Stop()
		for {
			svc.RunDue(ctx)
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
		}
	}()
	var once sync.Once
	crash = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(crash)
	return crash
}

// start runs svc.Run until the returned stop is called, which waits for Run
// to return (a graceful shutdown).
func start(t *testing.T, svc *presence.Service) (stop func()) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func svcStatus(t *testing.T, svc *presence.Service) presence.Status {
	t.Helper()
	st, err := svc.GetStatus(t.Context(), directory.DefaultPBX)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// requests is how many Graph presence requests svc made.
func requests(t *testing.T, svc *presence.Service) int64 { return svcStatus(t, svc).PresenceRequests }

type leaseView struct {
	Owner   string    `json:"owner"`
	Expires time.Time `json:"expires"`
}

func (e *env) lease() leaseView {
	e.t.Helper()
	var l leaseView
	b, err := e.store.GetSetting(e.t.Context(), directory.DefaultPBX, presence.LeaseKey)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		e.t.Fatal(err)
	}
	if b != nil {
		if err := json.Unmarshal(b, &l); err != nil {
			e.t.Fatal(err)
		}
	}
	return l
}

func waitFor(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Two instances on one database and tenant: only the lease holder polls the
// PBX and there is one subscription; when the holder dies the other takes
// over after the lease expires (full first round, same subscription); a
// graceful stop releases the lease at once.
func TestLeaseOneInstancePerPBX(t *testing.T) {
	const ttl = time.Second
	var counted *countingStore
	e := newEnv(t, opts{tune: func(s *presence.Service) {
		s.Instance, s.LeaseTTL, s.SubscriptionCapacity, s.MinPollInterval = "a", ttl, 3, 100*time.Millisecond
		counted = &countingStore{Store: s.Store}
		s.Store = counted
	}})
	e.enable("one-way", 6)
	a, b := e.svc, e.peer("b")
	crashA := loop(t, a)
	waitFor(t, 10*time.Second, "a's first round", func() bool {
		st := svcStatus(t, a)
		return st.NotificationUsers == 3 && st.PollingUsers == 3
	})
	stopB := start(t, b)
	first := e.lease()
	if first.Owner != "a" {
		t.Fatalf("lease %+v, want a's", first)
	}
	// a keeps the lease past its first TTL (renewed at half TTL), polling
	// every 100 ms, while b, also running, reads and writes nothing at Graph.
	w0, r0, t0 := counted.writes.Load(), counted.reads.Load(), time.Now()
	waitFor(t, 5*time.Second, "a renewing its lease twice", func() bool { return !e.lease().Expires.Before(first.Expires.Add(ttl)) })
	held := time.Since(t0)
	if l := e.lease(); l.Owner != "a" {
		t.Fatalf("lease moved to %q while a was alive", l.Owner)
	}
	crashA()
	crashedAt, last := time.Now(), e.lease()
	aReq, bReq := requests(t, a), requests(t, b)
	total := e.tenant.Stats().ByEndpoint["POST /v1.0/communications/getPresencesByUserId"]
	t.Logf("a held the lease %v: %d lease writes, %d lease reads; a made %d presence requests, b %d, the tenant saw %d",
		held, counted.writes.Load()-w0, counted.reads.Load()-r0, aReq, bReq, total)
	if bReq != 0 || aReq < 3 || total != aReq {
		t.Fatalf("presence requests: a %d, b %d, tenant %d: want only a's (at least 3 rounds)", aReq, bReq, total)
	}
	// No write per tick: one renewal per half TTL (the test's Tick is 20 ms).
	if n, max := counted.writes.Load()-w0, int64(held/(ttl/2))+2; n > max {
		t.Errorf("%d lease writes in %v, want at most %d", n, held, max)
	}
	subs := e.tenant.Subscriptions()
	if len(subs) != 1 {
		t.Fatalf("subscriptions: %+v", subs)
	}

	// a dies holding the lease: b takes over once it expires.
	waitFor(t, ttl+3*time.Second, "b polling after a died", func() bool { return requests(t, b) > 0 })
	took := time.Since(crashedAt)
	st := svcStatus(t, b)
	t.Logf("takeover %v after the crash (lease TTL %v, %v left at the crash)", took, ttl, last.Expires.Sub(crashedAt))
	if l := e.lease(); l.Owner != "b" {
		t.Fatalf("lease after the takeover: %+v", l)
	}
	if st.LastRoundAt == nil || st.LastRoundAt.Before(last.Expires) {
		t.Fatalf("b's first round at %v, before a's lease expired (%v)", st.LastRoundAt, last.Expires)
	}
	if took > ttl+time.Second {
		t.Errorf("takeover took %v with a %v lease", took, ttl)
	}
	if got := e.tenant.Subscriptions(); len(got) != 1 || got[0].ID != subs[0].ID {
		t.Fatalf("after the takeover: subscriptions %+v, want the same one %s", got, subs[0].ID)
	}
	// b's first round read everyone, the notified users too.
	st = svcStatus(t, b)
	if st.NotificationUsers != 3 || st.PollingUsers != 3 {
		t.Fatalf("b's paths: %+v", st)
	}
	for _, u := range st.Users {
		if u.Availability == "" {
			t.Fatalf("b's first round did not read %s: %+v", u.EntraID, u)
		}
	}
	// Both paths work under the new owner.
	for _, path := range []string{presence.PathNotification, presence.PathPolling} {
		var u string
		for _, us := range st.Users {
			if us.Path == path {
				u = us.EntraID
			}
		}
		if err := e.tenant.SetTeamsPresence(u, "Away", "Away"); err != nil {
			t.Fatal(err)
		}
		e.waitPresence(u, directory.PresenceAway, 3*time.Second)
	}

	// b stops gracefully: the lease is free at once, and a restarted a takes
	// over long before b's lease would have expired.
	before := e.lease()
	stopB()
	stoppedAt := time.Now()
	if l := e.lease(); l.Owner != "" {
		t.Fatalf("lease after a graceful stop: %+v", l)
	}
	a2 := e.peer("a2")
	loop(t, a2)
	waitFor(t, 3*time.Second, "a2 polling after b stopped", func() bool { return requests(t, a2) > 0 })
	t.Logf("takeover %v after a graceful stop (b's lease had %v left)", time.Since(stoppedAt), before.Expires.Sub(stoppedAt))
	if l := e.lease(); l.Owner != "a2" || time.Now().After(before.Expires) {
		t.Fatalf("lease %+v at %v; b's would have expired at %v", l, time.Now(), before.Expires)
	}
	if got := e.tenant.Subscriptions(); len(got) != 1 || got[0].ID != subs[0].ID {
		t.Fatalf("after the second takeover: subscriptions %+v", got)
	}
}

// A settings change made through an instance that does not hold the lease
// reaches the holder at once, not at its next polling round.
func TestLeaseKickReachesHolder(t *testing.T) {
	e := newEnv(t, opts{tune: func(s *presence.Service) {
		s.Instance, s.LeaseTTL, s.MinPollInterval = "api", time.Second, time.Hour
	}})
	e.enable("one-way", 4)
	b := e.peer("holder")
	loop(t, b)
	waitFor(t, 10*time.Second, "the holder's first round", func() bool { return svcStatus(t, b).NotificationUsers == 4 })
	loop(t, e.svc) // the API's instance runs too, without the lease
	// Its status shows the holder's split, from the stored subscription.
	if st := e.status(); st.LeaseHolder != "holder" || st.NotificationUsers != 4 || st.PollingUsers != 0 || st.Subscription == nil {
		t.Fatalf("status on the API instance: %+v", st)
	}
	u := e.users[0].ID
	// The admin changes the user's mapping through the API instance: the user
	// is Teams-Available, nothing changes at Teams, and polling is an hour away.
	at := time.Now()
	e.mustAPI("PUT", "/api/v1/extensions/"+e.exts[u]+"/presence-sync", map[string]any{"enabled": true, "mapping": map[string]string{"Available": "lunch_break"}})
	took := e.waitPresence(u, directory.PresenceLunchBreak, 3*time.Second)
	t.Logf("settings change on a non-holder applied by the holder in %v (API call included: %v)", took, time.Since(at))
	if l := e.lease(); l.Owner != "holder" {
		t.Fatalf("lease %+v", l)
	}
	if n := requests(t, e.svc); n != 0 {
		t.Fatalf("the API instance made %d presence requests", n)
	}
	// Turning sync off through the API instance: the holder removes the subscription.
	e.mustAPI("PUT", "/api/v1/integration/presence-sync", map[string]any{"enabled": false})
	waitFor(t, 3*time.Second, "the subscription removed", func() bool { return len(e.tenant.Subscriptions()) == 0 })
}

// A two-way session set by an instance that does not hold the lease (the
// call state arrived there) is kept up by that instance: refreshed at half
// its expiry and cleared when two-way sync is switched off.
func TestLeaseSessionUpkeepOffHolder(t *testing.T) {
	var offset atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	e := newEnv(t, opts{tune: func(s *presence.Service) {
		s.Instance, s.LeaseTTL, s.SubscriptionCapacity, s.Now = "api", time.Hour, -1, clock
	}})
	e.enable("two-way", 1)
	b := e.peer("holder")
	b.Now = clock
	loop(t, b)
	waitFor(t, 10*time.Second, "the holder's first round", func() bool { return svcStatus(t, b).PollingUsers == 1 })
	loop(t, e.svc)
	u, x := e.users[0].ID, e.exts[e.users[0].ID]
	e.mustAPI("POST", "/api/v1/extensions/"+x+"/call-state", map[string]any{"state": "busy"})
	if err := e.svc.OnCallState(t.Context(), directory.DefaultPBX, x, directory.CallBusy); err != nil {
		t.Fatal(err)
	}
	e.waitTeams(u, "Busy", "InACall", 2*time.Second)
	const setPresence = "POST /v1.0/users/{id}/presence/setPresence"
	before := e.tenant.Stats().ByEndpoint[setPresence]
	offset.Store(int64(16 * time.Minute)) // past half of the 30-minute session, within the 1-hour lease
	waitFor(t, 3*time.Second, "the session refreshed", func() bool { return e.tenant.Stats().ByEndpoint[setPresence] > before })
	if l := e.lease(); l.Owner != "holder" {
		t.Fatalf("lease %+v", l)
	}
	e.mustAPI("PUT", "/api/v1/integration/presence-sync", map[string]any{"enabled": true, "direction": "one-way"})
	e.waitTeams(u, "Available", "Available", 3*time.Second)
}
