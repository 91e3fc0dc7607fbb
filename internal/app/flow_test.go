package app

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/apitest"
	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/integration"
	"github.com/switchboard-pbx/switchboard/internal/sim"
	"github.com/switchboard-pbx/switchboard/internal/syncer"
)

const (
	flowTenant = "2c6f0d1e-5a4b-4c3d-9e8f-7a6b5c4d3e2f"
	flowClient = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
	flowSecret = "flow~secret_value_0123456789"
)

// fullApp runs the whole service against a simulated tenant over real HTTP.
type fullApp struct {
	t      *testing.T
	a      *App
	tenant *sim.Tenant
	base   string
}

func startFull(t *testing.T) *fullApp {
	t.Helper()
	tenant, err := sim.New(sim.Config{TenantID: flowTenant, ClientID: flowClient, ClientSecret: flowSecret, Users: 30, Groups: 3, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tenant.Close)
	simSrv := httptest.NewServer(tenant.Handler())
	t.Cleanup(simSrv.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := testConfig(t)
	c.PublicURL = "http://" + ln.Addr().String()
	c.GraphURL, c.LoginURL = simSrv.URL, simSrv.URL
	a, err := New(t.Context(), c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	ctx := t.Context()
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx, ln) }()
	if err := tenant.AddRedirectURI(a.Integration.RedirectURI()); err != nil {
		t.Fatal(err)
	}
	f := &fullApp{t: t, a: a, tenant: tenant, base: c.PublicURL}
	apitest.ConnectSim(t, a.Integration, directory.DefaultPBX,
		integration.ConnectInput{ClientID: flowClient, TenantID: flowTenant, ClientSecret: flowSecret})
	if st := f.status(); st["status"] != "connected" {
		t.Fatalf("not connected: %v", st)
	}
	return f
}

func (f *fullApp) call(method, path string, body any) (int, map[string]any) {
	f.t.Helper()
	code, out, _ := apitest.Call(f.t, f.base, f.a.Config.AdminToken, method, path, body)
	return code, out
}

func (f *fullApp) status() map[string]any {
	_, st := f.call("GET", "/api/v1/integration", nil)
	return st
}

// An expired client secret found by a sync puts the integration in the error
// state with what to do; updating the secret brings it back.
func TestExpiredSecretFoundBySync(t *testing.T) {
	f := startFull(t)
	st := syncer.DefaultUserSettings()
	st.Enabled = true
	if code, out := f.call("PUT", "/api/v1/integration/user-sync", st); code != 200 {
		t.Fatalf("user-sync: %d %v", code, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		n, _ := f.a.Store.CountExtensions(t.Context(), directory.DefaultPBX)
		if n > 20 && f.a.Syncer.Running(directory.DefaultPBX) == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("initial sync did not finish: %d extensions", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := f.tenant.ExpireClientSecret(); err != nil {
		t.Fatal(err)
	}
	code, run := f.call("POST", "/api/v1/integration/sync", nil)
	if code >= 500 || run["state"] != "failed" {
		t.Fatalf("sync with an expired secret: %d %v", code, run)
	}
	st2 := f.status()
	if st2["status"] != "error" || !strings.Contains(strings.ToLower(st2["statusReason"].(string)), "expired") {
		t.Fatalf("status after the failed sync: %v", st2)
	}
	const fresh = "flow~second_secret_abcdef0123"
	if err := f.tenant.AddClientSecret(fresh, 90*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if code, out := f.call("POST", "/api/v1/integration/client-secret", map[string]string{"clientSecret": fresh}); code != 200 || out["status"] != "connected" {
		t.Fatalf("secret update: %d %v", code, out)
	}
	if code, run := f.call("POST", "/api/v1/integration/sync", nil); code != 200 || run["state"] != "succeeded" {
		t.Fatalf("sync after the update: %d %v", code, run)
	}
	// The status carries the last run and the next scheduled sync.
	st3 := f.status()
	if st3["lastRun"] == nil || st3["nextSyncAt"] == nil {
		t.Fatalf("status lacks lastRun/nextSyncAt: %v", st3)
	}
	// The simulated tenant reaches the loopback public URL, so the service
	// subscribed to change notifications at connect.
	cd, _ := st3["changeDetection"].(map[string]any)
	if cd["mode"] != "notifications" {
		t.Fatalf("status lacks the change-detection mode: %v", st3)
	}
}

// The service's handlers are composed: portal at /, API, client API, webhooks.
func TestRootMux(t *testing.T) {
	f := startFull(t)
	for path, want := range map[string]int{"/": 200, "/healthz": 200, "/client/": 200, "/api/v1/extensions": 401} {
		res, err := http.Get(f.base + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("GET %s = %d, want %d", path, res.StatusCode, want)
		}
	}
	res, err := http.Post(f.base+"/webhooks/graph?validationToken=abc", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || string(b) != "abc" {
		t.Errorf("webhook handshake: %d %q", res.StatusCode, b)
	}
}
