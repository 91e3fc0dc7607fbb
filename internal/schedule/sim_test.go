package schedule

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/graph"
	"github.com/switchboard-pbx/switchboard/internal/sim"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// End-to-end over real HTTP: the simulated tenant creates subscriptions
// (validation handshake against our webhook), delivers change and
// lifecycle notifications to it, and the fake Runner sees the triggers.

const (
	simTenant = "7d0f3a52-2c4b-4e8f-9a1b-3c5d7e9f1a2b"
	simClient = "1e2f3a4b-5c6d-4e7f-8091-a2b3c4d5e6f7"
	simSecret = "schedule-test-secret"
)

// clock is a real clock that tests can move forward (shared by the sim and the service).
type clock struct{ skew atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.skew.Load())) }
func (c *clock) advance(d time.Duration) { c.skew.Add(int64(d)) }

type simEnv struct {
	tenant *sim.Tenant
	gc     *graph.Client
	svc    *Service
	runner *fakeRunner
	web    *httptest.Server
	clk    *clock
}

func newSimEnv(t *testing.T, publicURL func(web *httptest.Server) string, tune func(*Service)) *simEnv {
	t.Helper()
	e := &simEnv{clk: &clock{}, runner: &fakeRunner{}}
	var err error
	e.tenant, err = sim.New(sim.Config{TenantID: simTenant, ClientID: simClient, ClientSecret: simSecret,
		Users: 6, Groups: 2, Seed: 3, Now: e.clk.now, NotifyBackoff: 50 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.tenant.Close)
	simSrv := httptest.NewServer(e.tenant.Handler())
	t.Cleanup(simSrv.Close)
	e.gc, err = graph.New(graph.Config{GraphURL: simSrv.URL, LoginURL: simSrv.URL, TenantID: simTenant, ClientID: simClient,
		ClientSecret: simSecret, HTTPClient: simSrv.Client(), Logger: testLogger(t), MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	in := newFakeIntegration("a")
	in.client = e.gc
	e.svc = &Service{Store: newMemStore(directory.PBX{ID: "a", TimeZone: "UTC"}), Integration: in, Runner: e.runner,
		Logger: testLogger(t), AllowLocalURL: true, Now: e.clk.now}
	if tune != nil {
		tune(e.svc)
	}
	e.web = httptest.NewServer(e.svc.Handler())
	t.Cleanup(e.web.Close)
	e.svc.PublicURL = publicURL(e.web)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = e.svc.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return e
}

func webURL(web *httptest.Server) string { return web.URL }

// eventually polls cond until it holds or 10 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *simEnv) subs() map[string]sim.SubscriptionInfo {
	out := map[string]sim.SubscriptionInfo{}
	for _, s := range e.tenant.Subscriptions() {
		out[s.Resource] = s
	}
	return out
}

func (e *simEnv) patchUser(t *testing.T, i int, title string) {
	t.Helper()
	users := e.tenant.UserList()
	if err := e.gc.Do(t.Context(), http.MethodPatch, "/users/"+users[i%len(users)].ID, nil, map[string]string{"jobTitle": title}, nil); err != nil {
		t.Fatal(err)
	}
}

func (e *simEnv) waitNotifications(t *testing.T) {
	t.Helper()
	eventually(t, "two subscriptions and notifications mode", func() bool {
		m, _ := e.svc.Mode(t.Context(), "a")
		return len(e.subs()) == 2 && m == ModeNotifications
	})
}

func TestSimSubscriptionsAndChanges(t *testing.T) {
	e := newSimEnv(t, webURL, nil)
	e.waitNotifications(t)
	subs := e.subs()
	for _, res := range []string{"users", "groups"} {
		s := subs[res]
		if s.ChangeType != "updated,deleted" || s.NotificationURL != e.web.URL+WebhookPath ||
			s.LifecycleNotificationURL != e.web.URL+LifecyclePath || len(s.ClientState) < 32 {
			t.Errorf("%s subscription = %+v", res, s)
		}
	}
	if subs["users"].ClientState == subs["groups"].ClientState {
		t.Error("both subscriptions share one clientState")
	}
	if v := e.svc.Stats().Validations; v < 4 {
		t.Errorf("validation handshakes = %d, want 4 (two URLs, two subscriptions)", v)
	}
	// The clientState is not stored in the clear.
	raw, _ := e.svc.Store.GetSetting(t.Context(), "a", subsKey)
	if strings.Contains(string(raw), subs["users"].ClientState) {
		t.Error("clientState stored in the clear")
	}

	// One change: the Runner is asked (debouncing is the Runner's: jobs.Runner).
	e.patchUser(t, 0, "Changed once")
	eventually(t, "a change sync", func() bool { return e.runner.count("a", ReasonChange) == 1 })

	// A forged notification over HTTP changes nothing.
	res, err := http.Post(e.web.URL+WebhookPath, "application/json", strings.NewReader(
		`{"value":[`+notification(subs["users"].ID, "guessed")+`]}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Errorf("forged notification = %d", res.StatusCode)
	}

	// missed: a catch-up sync at once.
	if err := e.tenant.TriggerLifecycle(subs["groups"].ID, sim.LifecycleMissed); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a catch-up sync after missed", func() bool { return e.runner.count("a", ReasonMissed) == 1 })

	// subscriptionRemoved: created again (new id, same resource), then a catch-up sync.
	if err := e.tenant.TriggerLifecycle(subs["users"].ID, sim.LifecycleSubscriptionRemoved); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the users subscription recreated", func() bool {
		s, ok := e.subs()["users"]
		return ok && s.ID != subs["users"].ID
	})
	eventually(t, "a catch-up sync after subscriptionRemoved", func() bool { return e.runner.count("a", ReasonResubscribed) == 1 })
	if m, why := e.svc.Mode(t.Context(), "a"); m != ModeNotifications {
		t.Errorf("mode after recreation = %s (%s)", m, why)
	}
	// Notifications of the new subscription are accepted.
	e.patchUser(t, 1, "After recreation")
	eventually(t, "a change sync via the new subscription", func() bool { return e.runner.count("a", ReasonChange) == 2 })

	// reauthorizationRequired: renewed in place.
	before := e.subs()["groups"]
	e.clk.advance(time.Hour)
	if err := e.tenant.TriggerLifecycle(before.ID, sim.LifecycleReauthorizationRequired); err != nil {
		t.Fatal(err)
	}
	eventually(t, "renewal after reauthorizationRequired", func() bool {
		s := e.subs()["groups"]
		return s.ID == before.ID && s.Expires.After(before.Expires)
	})

	// Renewal before expiry: 27 days on, both are renewed (same ids, later expiry).
	before2 := e.subs()
	e.clk.advance(27 * 24 * time.Hour)
	if err := e.svc.EnsureSubscriptions(t.Context(), "a"); err != nil {
		t.Fatal(err)
	}
	after := e.subs()
	for _, res := range []string{"users", "groups"} {
		if after[res].ID != before2[res].ID || !after[res].Expires.After(e.clk.now().Add(28*24*time.Hour)) {
			t.Errorf("%s: before %v, after %v: want the same subscription renewed ~28 days ahead", res, before2[res], after[res])
		}
	}
	if n := e.runner.count("", ReasonPoll); n != 0 {
		t.Errorf("%d polls while notifications work", n)
	}

	// Unsubscribe (disconnect) deletes them at Graph.
	if err := e.svc.Unsubscribe(t.Context(), "a"); err != nil {
		t.Fatal(err)
	}
	if n := len(e.tenant.Subscriptions()); n != 0 {
		t.Errorf("%d subscriptions left after Unsubscribe", n)
	}
}

func TestSimUnreachableURLPolls(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	e := newSimEnv(t, func(*httptest.Server) string { return deadURL }, func(s *Service) { s.PollInterval = 200 * time.Millisecond })
	eventually(t, "polling mode", func() bool {
		m, why := e.svc.Mode(t.Context(), "a")
		return m == ModePolling && strings.Contains(why, "users and groups could not be set up: creating the subscription failed")
	})
	eventually(t, "polls", func() bool { return e.runner.count("a", ReasonPoll) >= 3 })
	if n := len(e.tenant.Subscriptions()); n != 0 {
		t.Errorf("%d subscriptions exist", n)
	}
	_, why := e.svc.Mode(t.Context(), "a")
	t.Logf("polling because: %s", why)
}

// While another instance holds a PBX's subscription lease this one creates
// no subscription (both would, finding none); once that lease has expired
// (its holder stopped), this one takes over, and it releases the lease after.
func TestSubscriptionLeaseOneInstance(t *testing.T) {
	held, _ := json.Marshal(store.Lease{Owner: "other-instance", Expires: time.Now().Add(time.Hour)})
	e := newSimEnv(t, webURL, func(s *Service) {
		if err := s.Store.UpdateSetting(t.Context(), "a", subsLeaseKey, func([]byte) ([]byte, error) { return held, nil }); err != nil {
			t.Fatal(err)
		}
	})
	if err := e.svc.EnsureSubscriptions(t.Context(), "a"); err != nil {
		t.Fatal(err)
	}
	if n := len(e.tenant.Subscriptions()); n != 0 {
		t.Fatalf("%d subscriptions created while another instance held the lease", n)
	}
	e.clk.advance(2 * time.Hour)
	if err := e.svc.EnsureSubscriptions(t.Context(), "a"); err != nil {
		t.Fatal(err)
	}
	e.waitNotifications(t)
	if n := len(e.tenant.Subscriptions()); n != 2 {
		t.Fatalf("%d subscriptions after the lease expired, want 2", n)
	}
	eventually(t, "the lease released", func() bool {
		_, err := e.svc.Store.GetSetting(t.Context(), "a", subsLeaseKey)
		return errors.Is(err, store.ErrNotFound)
	})
}
