package presence_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/api"
	"github.com/switchboard-pbx/switchboard/internal/apitest"
	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/integration"
	"github.com/switchboard-pbx/switchboard/internal/pbx"
	"github.com/switchboard-pbx/switchboard/internal/presence"
	"github.com/switchboard-pbx/switchboard/internal/secret"
	"github.com/switchboard-pbx/switchboard/internal/sim"
	"github.com/switchboard-pbx/switchboard/internal/sqlstore"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

const (
	tenantID     = "6b1a0a54-8f0e-4c7c-9d1b-2f0e8c1d9a01"
	clientID     = "0f4e6c2a-3b5d-4e7f-8a9b-1c2d3e4f5a6b"
	clientSecret = "sim~Secret.Value_0123456789abcdef"
	adminToken   = "presence-test-admin-token"
)

// env is a connected PBX over real HTTP: the simulated tenant, the admin API,
// the presence webhook, and the presence service (not running until run()).
type env struct {
	t      *testing.T
	tenant *sim.Tenant
	srv    *httptest.Server
	store  store.Store
	pbx    *pbx.Service
	svc    *presence.Service
	integ  *integration.Service
	logger *slog.Logger
	users  []sim.UserInfo    // the tenant's users except the authorization account
	exts   map[string]string // entra id -> extension id
	byExt  map[string]string // extension id -> entra id
}

type opts struct {
	users int
	tune  func(*presence.Service)
}

func newEnv(t *testing.T, o opts) *env {
	t.Helper()
	if o.users == 0 {
		o.users = 20
	}
	e := &env{t: t, exts: map[string]string{}, byExt: map[string]string{}}
	logger := slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	var err error
	e.tenant, err = sim.New(sim.Config{TenantID: tenantID, ClientID: clientID, ClientSecret: clientSecret, Users: o.users, Groups: 1, Seed: 3,
		NotifyBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.tenant.Close)
	simSrv := httptest.NewServer(e.tenant.Handler())
	t.Cleanup(simSrv.Close)

	st, err := sqlstore.Open(t.Context(), "sqlite:"+filepath.Join(t.TempDir(), "sb.db"), logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.store = st
	if _, err := st.EnsurePBX(t.Context(), directory.PBX{ID: directory.DefaultPBX, Name: "PBX", MaxExtensions: 20000, TimeZone: "UTC"}); err != nil {
		t.Fatal(err)
	}
	keys, _ := secret.NewKeyring(secret.NewKey())
	e.pbx = &pbx.Service{Store: st, Keys: keys, Logger: logger}
	integ := &integration.Service{Store: st, PBX: e.pbx, Keys: keys, Logger: logger, GraphURL: simSrv.URL, LoginURL: simSrv.URL}
	e.integ, e.logger = integ, logger
	e.svc = &presence.Service{Store: st, Graph: integ, Logger: logger, Tick: 20 * time.Millisecond, MinPollInterval: 300 * time.Millisecond}
	if o.tune != nil {
		o.tune(e.svc)
	}
	a := &api.Server{Store: st, PBX: e.pbx, Keys: keys, Logger: logger, AdminToken: adminToken, Integration: integ, Presence: e.svc,
		Sessions: &api.Sessions{Key: []byte("k"), Store: st}}
	root := http.NewServeMux()
	root.Handle("/", a.Handler())
	root.Handle(presence.WebhookPath, e.svc.Webhook())
	e.srv = httptest.NewServer(root)
	t.Cleanup(e.srv.Close)
	integ.BaseURL = e.srv.URL
	if e.svc.BaseURL == "" {
		e.svc.BaseURL = e.srv.URL
	}
	if err := e.tenant.AddRedirectURI(integ.RedirectURI()); err != nil {
		t.Fatal(err)
	}
	e.connect()
	e.seedExtensions()
	return e
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// connect runs the admin connect flow over HTTP against the simulated tenant.
func (e *env) connect() {
	e.t.Helper()
	code, out := e.api("POST", "/api/v1/integration/connect", map[string]any{"clientId": clientID, "tenantId": tenantID, "clientSecret": clientSecret})
	if code != 200 {
		e.t.Fatalf("connect: %d %v", code, out)
	}
	jar, _ := cookiejar.New(nil)
	res, err := (&http.Client{Jar: jar}).Get(out["authorizeUrl"].(string))
	if err != nil {
		e.t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(b), "Connected") {
		e.t.Fatalf("callback: %d %s", res.StatusCode, b)
	}
}

// seedExtensions creates a synced extension for every user but the
// authorization account (as the user sync would), all Teams-Available.
func (e *env) seedExtensions() {
	e.t.Helper()
	admin := e.tenant.Admin().ID
	var c store.ExtensionChanges
	for _, u := range e.tenant.UserList() {
		if u.ID == admin {
			continue
		}
		e.users = append(e.users, u)
		if err := e.tenant.SetTeamsPresence(u.ID, "Available", "Available"); err != nil {
			e.t.Fatal(err)
		}
		c.Create = append(c.Create, &directory.Extension{Number: fmt.Sprint(1000 + len(e.users)), FirstName: u.GivenName, LastName: u.Surname,
			Source: directory.SourceEntra, EntraID: u.ID})
	}
	if err := e.pbx.ApplyExtensions(e.t.Context(), directory.DefaultPBX, c); err != nil {
		e.t.Fatal(err)
	}
	for _, x := range c.Create {
		e.exts[x.EntraID], e.byExt[x.ID] = x.ID, x.EntraID
	}
}

func (e *env) api(method, path string, body any) (int, map[string]any) {
	e.t.Helper()
	code, out, _ := apitest.Call(e.t, e.srv.URL, adminToken, method, path, body)
	return code, out
}

func (e *env) mustAPI(method, path string, body any) map[string]any {
	e.t.Helper()
	code, out := e.api(method, path, body)
	if code != 200 {
		e.t.Fatalf("%s %s: %d %v", method, path, code, out)
	}
	return out
}

// enable turns sync on (direction) and enables the first n users' extensions.
func (e *env) enable(direction string, n int) {
	e.t.Helper()
	e.mustAPI("PUT", "/api/v1/integration/presence-sync", map[string]any{"enabled": true, "direction": direction})
	ids := make([]string, 0, n)
	for _, u := range e.users[:n] {
		ids = append(ids, e.exts[u.ID])
	}
	e.mustAPI("PUT", "/api/v1/presence-sync/extensions", map[string]any{"extensionIds": ids, "enabled": true})
}

// run starts the presence loop until the test ends.
func (e *env) run() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = e.svc.Run(e.t.Context())
	}()
	e.t.Cleanup(func() { <-done })
}

func (e *env) ext(userID string) *directory.Extension {
	e.t.Helper()
	x, err := e.store.GetExtension(e.t.Context(), directory.DefaultPBX, e.exts[userID])
	if err != nil {
		e.t.Fatal(err)
	}
	return x
}

// waitPresence polls the extension until it shows want, returning how long it took.
func (e *env) waitPresence(userID string, want directory.Presence, within time.Duration) time.Duration {
	e.t.Helper()
	start := time.Now()
	deadline := start.Add(within)
	for {
		if got := e.ext(userID).Presence; got == want {
			return time.Since(start)
		} else if time.Now().After(deadline) {
			e.t.Fatalf("extension of %s: presence %q after %v, want %q", userID, got, within, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitTeams polls the simulated tenant until the user's Teams presence is want.
func (e *env) waitTeams(userID, availability, activity string, within time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for {
		a, b, _ := e.tenant.Presence(userID)
		if a == availability && b == activity {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("Teams presence of %s: %s/%s after %v, want %s/%s", userID, a, b, within, availability, activity)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (e *env) status() presence.Status {
	e.t.Helper()
	var st presence.Status
	req, _ := http.NewRequestWithContext(e.t.Context(), "GET", e.srv.URL+"/api/v1/presence-sync/status", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		e.t.Fatal(err)
	}
	return st
}

// waitStatus polls the status until ok accepts it.
func (e *env) waitStatus(within time.Duration, ok func(presence.Status) bool) presence.Status {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for {
		st := e.status()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("status never matched: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func pathOf(st presence.Status, userID string) string {
	for _, u := range st.Users {
		if u.EntraID == userID {
			return u.Path
		}
	}
	return "absent"
}
