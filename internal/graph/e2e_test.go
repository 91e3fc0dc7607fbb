//go:build e2e

package graph_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/switchboard-pbx/switchboard/internal/graph"
	"github.com/switchboard-pbx/switchboard/internal/sim"
)

const (
	e2eTenant = "6f1c2b3a-1d2e-4f50-8a9b-0c1d2e3f4a5b"
	e2eClient = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
	e2eSecret = "e2e-secret-value"
)

func startSim(t *testing.T, users, groups int) (*sim.Tenant, *httptest.Server) {
	t.Helper()
	tn, err := sim.New(sim.Config{TenantID: e2eTenant, ClientID: e2eClient, ClientSecret: e2eSecret,
		Users: users, Groups: groups, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tn.Close)
	srv := httptest.NewServer(tn.Handler())
	t.Cleanup(srv.Close)
	return tn, srv
}

func simClient(t *testing.T, srv *httptest.Server, mod ...func(*graph.Config)) *graph.Client {
	t.Helper()
	cfg := graph.Config{GraphURL: srv.URL, LoginURL: srv.URL, TenantID: e2eTenant, ClientID: e2eClient,
		ClientSecret: e2eSecret, HTTPClient: srv.Client(),
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := graph.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestE2EListUsersAndGroups(t *testing.T) {
	tn, srv := startSim(t, 1200, 15)
	c := simClient(t, srv)
	ctx := t.Context()
	want := map[string]sim.UserInfo{}
	for _, u := range tn.UserList() {
		want[u.ID] = u
	}
	seen := map[string]bool{}
	for u, err := range c.ListUsers(ctx, graph.ListOptions{Top: 999}) {
		if err != nil {
			t.Fatal(err)
		}
		if seen[u.ID] {
			t.Fatalf("user %s seen twice", u.ID)
		}
		seen[u.ID] = true
		w, ok := want[u.ID]
		if !ok {
			t.Fatalf("unknown user %s", u.ID)
		}
		if u.UserPrincipalName != w.UserPrincipalName || u.Enabled() != w.AccountEnabled || u.Department != w.Department {
			t.Errorf("user %s = %+v, sim has %+v", u.ID, u, w)
		}
	}
	if len(seen) != len(want) {
		t.Errorf("listed %d users, sim has %d", len(seen), len(want))
	}
	n, err := c.CountUsers(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if int(n) != len(want) {
		t.Errorf("$count = %d, want %d", n, len(want))
	}

	groups := tn.GroupList()
	got := 0
	for g, err := range c.ListGroups(ctx, graph.ListOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		got++
		if g.ID == groups[0].ID {
			members := 0
			for m, err := range c.GroupMembers(ctx, g.ID, false, graph.ListOptions{}) {
				if err != nil {
					t.Fatal(err)
				}
				if m.ID == "" {
					t.Error("member without id")
				}
				members++
			}
			if members != len(groups[0].Members) {
				t.Errorf("group %s: %d members, sim has %d", g.ID, members, len(groups[0].Members))
			}
		}
	}
	if got != len(groups) {
		t.Errorf("listed %d groups, sim has %d", got, len(groups))
	}
}

func TestE2EUsersDelta(t *testing.T) {
	tn, srv := startSim(t, 300, 5)
	c := simClient(t, srv)
	ctx := t.Context()
	full := map[string]bool{}
	link, err := c.UsersDelta(ctx, "", nil, func(p graph.DeltaPage[graph.User]) error {
		for _, u := range p.Items {
			full[u.ID] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if link == "" || len(full) != len(tn.UserList()) {
		t.Fatalf("full round: %d users (sim %d), link %q", len(full), len(tn.UserList()), link)
	}

	// Change one user, delete another, through Graph writes.
	users := tn.UserList()
	changed, deleted := users[1].ID, users[2].ID
	if err := c.Do(ctx, http.MethodPatch, "/users/"+changed, nil, map[string]string{"jobTitle": "Chief Switchboard Officer"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, http.MethodDelete, "/users/"+deleted, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	var gotChanged, gotDeleted bool
	link2, err := c.UsersDelta(ctx, link, nil, func(p graph.DeltaPage[graph.User]) error {
		for _, u := range p.Items {
			switch {
			case u.ID == changed && u.Removed == nil:
				gotChanged = u.JobTitle == "Chief Switchboard Officer"
			case u.ID == deleted && u.Removed != nil:
				gotDeleted = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !gotChanged || !gotDeleted || link2 == "" {
		t.Errorf("incremental round: changed %v, deleted %v, link %q", gotChanged, gotDeleted, link2)
	}

	tn.ExpireDeltaTokens()
	_, err = c.UsersDelta(ctx, link2, nil, func(graph.DeltaPage[graph.User]) error { return nil })
	if !errors.Is(err, graph.ErrResyncRequired) {
		t.Errorf("after expiry: %v, want ErrResyncRequired", err)
	}
}

func TestE2EGroupsDelta(t *testing.T) {
	tn, srv := startSim(t, 200, 10)
	c := simClient(t, srv)
	members := map[string]map[string]bool{}
	link, err := c.GroupsDelta(t.Context(), "", nil, func(p graph.DeltaPage[graph.Group]) error {
		for _, g := range p.Items {
			if members[g.ID] == nil {
				members[g.ID] = map[string]bool{}
			}
			for _, m := range g.MembersDelta {
				if m.Removed == nil {
					members[g.ID][m.ID] = true
				} else {
					delete(members[g.ID], m.ID)
				}
			}
		}
		return nil
	})
	if err != nil || link == "" {
		t.Fatalf("delta: %v %q", err, link)
	}
	for _, g := range tn.GroupList() {
		if len(members[g.ID]) != len(g.Members) {
			t.Errorf("group %s: %d members via delta, sim has %d", g.ID, len(members[g.ID]), len(g.Members))
		}
	}
}

func TestE2EPresenceAndBatch(t *testing.T) {
	tn, srv := startSim(t, 700, 3)
	c := simClient(t, srv)
	ctx := t.Context()
	var ids []string
	for _, u := range tn.UserList() {
		ids = append(ids, u.ID)
	}
	ps, err := c.GetPresencesByUserID(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) == 0 || len(ps) > len(ids) {
		t.Errorf("%d presences for %d ids", len(ps), len(ids))
	}
	if err := c.SetPresence(ctx, ids[0], graph.SetPresenceRequest{Availability: "Busy", Activity: "InACall", Expiration: 10 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	p, err := c.GetPresence(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if p.Availability != "Busy" || p.Activity != "InACall" {
		t.Errorf("presence after setPresence = %s/%s", p.Availability, p.Activity)
	}

	var reqs []graph.BatchRequest
	for _, id := range ids[:25] {
		reqs = append(reqs, graph.BatchRequest{Method: "GET", URL: "/users/" + id + "/presence"})
	}
	reqs = append(reqs, graph.BatchRequest{Method: "GET", URL: "/users/00000000-0000-0000-0000-000000000000"})
	resps, err := c.Batch(ctx, reqs)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range resps[:25] {
		var p graph.Presence
		if err := r.Decode(&p); err != nil || p.ID != ids[i] {
			t.Errorf("batch item %d: %v %q", i, err, p.ID)
		}
	}
	if !errors.Is(resps[25].Err, graph.ErrNotFound) {
		t.Errorf("missing user in batch: %v", resps[25].Err)
	}
}

func TestE2EContacts(t *testing.T) {
	tn, srv := startSim(t, 150, 3)
	c := simClient(t, srv)
	ctx := t.Context()
	var mbx string
	var want int
	for _, m := range tn.SharedMailboxes() {
		if m.Contacts > 0 {
			mbx, want = m.ID, m.Contacts
			break
		}
	}
	if mbx == "" {
		t.Skip("seeded tenant has no shared mailbox with contacts")
	}
	purpose, err := c.MailboxPurpose(ctx, mbx)
	if err != nil || purpose != "shared" {
		t.Errorf("mailbox purpose = %q, %v", purpose, err)
	}
	total := 0
	for ct, err := range c.ListContacts(ctx, mbx, "", graph.ListOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		if ct.ID == "" {
			t.Error("contact without id")
		}
		total++
	}
	for f, err := range c.ListContactFolders(ctx, mbx, "", graph.ListOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		for _, err := range c.ListContacts(ctx, mbx, f.ID, graph.ListOptions{}) {
			if err != nil {
				t.Fatal(err)
			}
			total++
		}
	}
	if total != want {
		t.Errorf("listed %d contacts, sim reports %d", total, want)
	}
	var delta int
	link, err := c.ContactsDelta(ctx, mbx, "", "", nil, func(p graph.DeltaPage[graph.Contact]) error {
		delta += len(p.Items)
		return nil
	}, graph.WithMaxPageSize(10))
	if err != nil || link == "" || delta == 0 {
		t.Errorf("contacts delta: %d items, link %q, err %v", delta, link, err)
	}
}

func TestE2ECredentialErrors(t *testing.T) {
	tn, srv := startSim(t, 10, 1)
	ctx := t.Context()

	wrong := simClient(t, srv, func(c *graph.Config) { c.ClientSecret = "not-the-secret" })
	if err := wrong.CheckCredentials(ctx); !graph.IsInvalidSecret(err) {
		t.Errorf("wrong secret: %v", err)
	}
	badTenant := simClient(t, srv, func(c *graph.Config) { c.TenantID = "11111111-2222-3333-4444-555555555555" })
	if err := badTenant.CheckCredentials(ctx); !graph.IsTenantNotFound(err) {
		t.Errorf("unknown tenant: %v", err)
	}

	c := simClient(t, srv)
	if err := c.CheckCredentials(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tn.SetAppRoles(nil); err != nil {
		t.Fatal(err)
	}
	fresh := simClient(t, srv)
	for _, err := range fresh.ListUsers(ctx, graph.ListOptions{}) {
		if !errors.Is(err, graph.ErrForbidden) && !graph.IsConsentMissing(err) {
			t.Errorf("no roles: %v", err)
		}
		break
	}
	if err := tn.ExpireClientSecret(); err != nil {
		t.Fatal(err)
	}
	if err := simClient(t, srv).CheckCredentials(ctx); !graph.IsExpiredSecret(err) {
		t.Errorf("expired secret: %v", err)
	}
}

func TestE2EThrottlingAndFaults(t *testing.T) {
	tn, srv := startSim(t, 2500, 3)
	var slept []time.Duration
	c := simClient(t, srv, func(c *graph.Config) {
		c.MaxRetries = 8
		c.Sleep = func(ctx context.Context, d time.Duration) error { slept = append(slept, d); return ctx.Err() }
	})
	tn.SetFaults(sim.Faults{Throttle: 0.2, Unavailable: 0.1, Drop: 0.05, RetryAfter: 3 * time.Second})
	n := 0
	for _, err := range c.ListUsers(t.Context(), graph.ListOptions{Top: 100}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != len(tn.UserList()) {
		t.Errorf("listed %d users under faults, sim has %d", n, len(tn.UserList()))
	}
	throttled := 0
	for _, d := range slept {
		if d == 3*time.Second {
			throttled++
		}
	}
	if throttled == 0 {
		t.Errorf("no Retry-After sleeps recorded (%v)", slept)
	}
	t.Logf("faults: %d users, %d sleeps, %d honouring Retry-After", n, len(slept), throttled)
}

func TestE2EConnectFlowAndDelegatedTokens(t *testing.T) {
	tn, srv := startSim(t, 20, 2)
	ctx := t.Context()
	const redirect = "https://pbx.example.com/integrations/microsoft/callback"
	if err := tn.AddRedirectURI(redirect); err != nil {
		t.Fatal(err)
	}
	c := simClient(t, srv)
	verifier := oauth2.GenerateVerifier()
	scopes := []string{"openid", "profile", "offline_access", "https://graph.microsoft.com/Presence.Read.All"}
	authURL := c.AuthorizeURL(graph.AuthorizeParams{RedirectURI: redirect, Scopes: scopes, State: "st-1",
		Nonce: "n-1", CodeChallenge: oauth2.S256ChallengeFromVerifier(verifier)})
	noFollow := *srv.Client()
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := noFollow.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("code") == "" {
		t.Fatalf("authorize answered %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if loc.Query().Get("state") != "st-1" {
		t.Errorf("state = %q", loc.Query().Get("state"))
	}
	tr, err := c.ExchangeCode(ctx, loc.Query().Get("code"), verifier, redirect, scopes)
	if err != nil {
		t.Fatal(err)
	}
	if tr.RefreshToken == "" || tr.IDToken == "" || tr.AccessToken == "" {
		t.Fatalf("token response %+v", tr)
	}
	// Redeeming the same code twice fails.
	if _, err := c.ExchangeCode(ctx, loc.Query().Get("code"), verifier, redirect, scopes); err == nil {
		t.Error("code redeemed twice")
	}

	var rotated []string
	d, err := graph.NewDelegated(graph.Config{GraphURL: srv.URL, LoginURL: srv.URL, TenantID: e2eTenant,
		ClientID: e2eClient, ClientSecret: e2eSecret, HTTPClient: srv.Client(), Gate: c.Gate()},
		tr.RefreshToken, func(_ context.Context, rt string) error { rotated = append(rotated, rt); return nil })
	if err != nil {
		t.Fatal(err)
	}
	id := tn.UserList()[0].ID
	if _, err := d.GetPresence(ctx, id); err != nil {
		t.Fatal(err)
	}
	if len(rotated) != 1 || rotated[0] == tr.RefreshToken {
		t.Errorf("rotation: %v", rotated)
	}
}

// BenchmarkE2EListUsers pages 10,000 users from the simulated tenant over HTTP.
// BenchmarkE2EListUsers pages every user of a 100,000-user simulated tenant
// with $top=999, at 0 ms and 20 ms simulated latency. It reports users/s,
// Graph requests per pass and the peak heap above the baseline. The
// simulated tenant's data is allocated before the baseline, but it serves
// in this process, so the figure includes its page-rendering buffers as
// well as the client's working memory.
func BenchmarkE2EListUsers(b *testing.B) {
	const users = 100000
	for _, lat := range []time.Duration{0, 20 * time.Millisecond} {
		b.Run(fmt.Sprintf("users=%d/latency=%s", users, lat), func(b *testing.B) {
			tn, err := sim.New(sim.Config{TenantID: e2eTenant, ClientID: e2eClient, ClientSecret: e2eSecret, Users: users, Groups: 1, Seed: 7, Latency: lat})
			if err != nil {
				b.Fatal(err)
			}
			defer tn.Close()
			srv := httptest.NewServer(tn.Handler())
			defer srv.Close()
			c, err := graph.New(graph.Config{GraphURL: srv.URL, LoginURL: srv.URL, TenantID: e2eTenant, ClientID: e2eClient,
				ClientSecret: e2eSecret, HTTPClient: srv.Client()})
			if err != nil {
				b.Fatal(err)
			}
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			base, peak := ms.HeapInuse, ms.HeapInuse
			stop := make(chan struct{})
			sampled := make(chan struct{})
			go func() {
				defer close(sampled)
				tick := time.NewTicker(5 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
						var m runtime.MemStats
						runtime.ReadMemStats(&m)
						peak = max(peak, m.HeapInuse)
					}
				}
			}()
			tn.ResetStats()
			b.ReportAllocs()
			start := time.Now()
			for b.Loop() {
				n := 0
				for _, err := range c.ListUsers(b.Context(), graph.ListOptions{Top: 999}) {
					if err != nil {
						b.Fatal(err)
					}
					n++
				}
				if n != users {
					b.Fatalf("%d users", n)
				}
			}
			elapsed := time.Since(start)
			close(stop)
			<-sampled
			b.ReportMetric(float64(users*b.N)/elapsed.Seconds(), "users/s")
			b.ReportMetric(float64(tn.Stats().ByEndpoint["GET /v1.0/users"])/float64(b.N), "requests/op")
			b.ReportMetric(float64(peak-base)/(1<<20), "peak-heap-MiB")
		})
	}
}
