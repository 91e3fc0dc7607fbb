//go:build e2e

package app_test

// The "Done when" of issue 12, through the whole product: a real Kamailio 5.6 provisioned by
// Switchboard, a simulated Entra tenant, and sipp as the phone.
//
//	bash .ci/install-sip.sh && eval "$(bash .ci/start-postgres.sh)"
//	go test -count=1 -tags e2e -run SIP -v ./internal/app/

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/apitest"
	"github.com/switchboard-pbx/switchboard/internal/app"
	"github.com/switchboard-pbx/switchboard/internal/config"
	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/integration"
	"github.com/switchboard-pbx/switchboard/internal/sim"
	"github.com/switchboard-pbx/switchboard/internal/sip/siptest"
)

const (
	e2eTenantID     = "7e0b3c4d-1a2b-4c5d-8e9f-0a1b2c3d4e5f"
	e2eClientID     = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
	e2eClientSecret = "sip-e2e-client-secret"
	e2eAdminToken   = "sip-e2e-admin-token"
)

func TestSIPRegistrarE2E(t *testing.T) {
	for _, tc := range []struct {
		name  string
		newDB func(testing.TB) *siptest.DB
	}{{"SQLite", siptest.NewSQLiteDB}, {"Postgres", siptest.NewPostgresDB}} {
		t.Run(tc.name, func(t *testing.T) {
			begin := time.Now()
			testSIPRegistrar(t, tc.newDB(t))
			t.Logf("%s variant: %v in all", tc.name, time.Since(begin).Round(time.Millisecond))
		})
	}
}

// testWriter sends log lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// step logs how long f took.
func step(t *testing.T, what string, f func()) {
	t.Helper()
	begin := time.Now()
	f()
	t.Logf("%-58s %7.0f ms", what, float64(time.Since(begin).Microseconds())/1000)
}

// e2eClient calls the admin API with the admin token.
type e2eClient struct {
	t    *testing.T
	base string
	http *http.Client
}

// do sends a request and decodes a JSON answer into out (when not nil); it returns the
// status code.
func (c e2eClient) do(method, path string, body, out any) int {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(c.t.Context(), method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e2eAdminToken)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	if out != nil && res.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: %d %v in %s", method, path, res.StatusCode, err, b)
		}
	}
	if res.StatusCode >= 300 && out != nil {
		c.t.Logf("%s %s: %d %s", method, path, res.StatusCode, b)
	}
	return res.StatusCode
}

// must is do that fails the test on a status other than want.
func (c e2eClient) must(want int, method, path string, body, out any) {
	c.t.Helper()
	if got := c.do(method, path, body, out); got != want {
		c.t.Fatalf("%s %s = %d, want %d", method, path, got, want)
	}
}

type sipCreds struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Domain   string `json:"domain"`
}

type runView struct {
	ID      string `json:"id"`
	State   string `json:"state"`
	Created int    `json:"created"`
	Deleted int    `json:"deleted"`
}

type extView struct {
	ID      string `json:"id"`
	Number  string `json:"number"`
	Source  string `json:"source"`
	EntraID string `json:"entraId"`
}

// poll calls cond every 50 ms until it holds, failing the test after timeout.
func poll(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(50 * time.Millisecond): // poll interval of a deadline-bounded wait
		}
	}
}

func testSIPRegistrar(t *testing.T, kdb *siptest.DB) {
	ctx := t.Context()
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))

	var k *siptest.Kamailio
	step(t, "start kamailio", func() { k = siptest.Start(t, kdb) })

	// The service's listener first: its URL is the public URL the sim redirects to.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() }) // Serve closes it too; this covers an early failure
	base := "http://" + ln.Addr().String()

	var tenant *sim.Tenant
	step(t, "start the simulated tenant (40 users)", func() {
		tenant, err = sim.New(sim.Config{TenantID: e2eTenantID, ClientID: e2eClientID, ClientSecret: e2eClientSecret,
			Users: 40, Groups: 3, Seed: 12, RedirectURIs: []string{base + integration.CallbackPath},
			Logger: logger.With("component", "sim")})
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Cleanup(tenant.Close)
	simSrv := httptest.NewServer(tenant.Handler())
	t.Cleanup(simSrv.Close)

	dir := t.TempDir()
	cfg := config.Defaults()
	cfg.DataDir = dir
	cfg.DB = "sqlite:" + filepath.Join(dir, "db", "switchboard.db")
	cfg.PublicURL = base
	cfg.GraphURL, cfg.LoginURL = simSrv.URL, simSrv.URL
	cfg.AdminToken = e2eAdminToken
	cfg.KamailioDB = kdb.URL
	cfg.SIPDomain = siptest.Domain
	cfg.KamailioCtl = k.CtlAddr
	cfg.ShutdownTimeout = 5 * time.Second
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	// startApp runs the service on addr (ln the first time); stop shuts it down (also on
	// cleanup, which runs before Kamailio stops and the databases go).
	addr := ln.Addr().String()
	startApp := func(ln net.Listener) (*app.App, func()) {
		t.Helper()
		a, err := app.New(ctx, cfg, logger)
		if err != nil {
			t.Fatal(err)
		}
		if ln == nil {
			if ln, err = net.Listen("tcp", addr); err != nil {
				a.Close()
				t.Fatal(err)
			}
		}
		serveCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		served := make(chan error, 1)
		go func() { served <- a.Serve(serveCtx, ln) }()
		var once sync.Once
		stop := func() {
			once.Do(func() {
				cancel()
				select {
				case err := <-served:
					if err != nil {
						t.Errorf("Serve: %v", err)
					}
				case <-time.After(10 * time.Second):
					t.Error("Serve did not return 10 s after cancel")
				}
				a.Close()
			})
		}
		t.Cleanup(stop)
		return a, stop
	}
	var a *app.App
	var stopApp func()
	step(t, "app.New (migrations, kamailio reconcile), Serve", func() { a, stopApp = startApp(ln) })
	api := e2eClient{t: t, base: base, http: &http.Client{Timeout: 40 * time.Second}}

	step(t, "connect the integration to the sim", func() {
		// The sim's authorize endpoint signs in at once and redirects to the callback.
		apitest.ConnectSim(t, a.Integration, directory.DefaultPBX, integration.ConnectInput{
			ClientID: e2eClientID, TenantID: e2eTenantID, ClientSecret: e2eClientSecret})
	})

	step(t, "save user sync (deleteWhen disabled,deleted), initial sync", func() {
		var set struct {
			InitialRunID string `json:"initialRunId"`
		}
		api.must(200, "PUT", "/api/v1/integration/user-sync", map[string]any{
			"enabled": true, "range": "all", "userTypes": []string{}, "groupIds": []string{}, "userIds": []string{},
			"numbering":  map[string]any{"mode": "auto", "start": "1000"},
			"deleteWhen": []string{"disabled", "deleted"},
		}, &set)
		if set.InitialRunID == "" {
			t.Fatal("saving the settings started no initial sync")
		}
		var run runView
		poll(t, 20*time.Second, "the initial sync", func() bool {
			api.must(200, "GET", "/api/v1/sync/runs/"+set.InitialRunID, nil, &run)
			return run.State != "running"
		})
		if run.State != "succeeded" || run.Created == 0 {
			t.Fatalf("initial sync: %+v", run)
		}
		t.Logf("initial sync: %d extensions created", run.Created)
	})

	// Two synced extensions of enabled users (not the Global Administrator).
	var exts struct {
		Items []extView `json:"items"`
	}
	api.must(200, "GET", "/api/v1/extensions?source=entra&limit=1000", nil, &exts)
	var picked []extView
	for _, e := range exts.Items {
		u, ok := tenant.User(e.EntraID)
		if ok && u.AccountEnabled && !u.GlobalAdmin && e.Source == "entra" {
			picked = append(picked, e)
		}
		if len(picked) == 2 {
			break
		}
	}
	if len(picked) < 2 {
		t.Fatalf("fewer than 2 synced extensions of enabled users among %d", len(exts.Items))
	}
	leaver, rotated := picked[0], picked[1]
	t.Logf("leaver: extension %s (Entra %s); rotated: extension %s", leaver.Number, leaver.EntraID, rotated.Number)

	// The registrar holds digests only.
	var pw, ha1 string
	if err := kdb.Raw.QueryRowContext(ctx, `SELECT password, ha1 FROM subscriber WHERE username = $1 AND domain = $2`,
		leaver.Number, siptest.Domain).Scan(&pw, &ha1); err != nil {
		t.Fatalf("subscriber row of %s: %v", leaver.Number, err)
	}
	if pw != "" || len(ha1) != 32 {
		t.Fatalf("subscriber row of %s: password %q, ha1 %q; want digests only", leaver.Number, pw, ha1)
	}

	var creds sipCreds
	step(t, "synced extension: sip-credentials, REGISTER -> 200", func() {
		api.must(200, "GET", "/api/v1/extensions/"+leaver.ID+"/sip-credentials", nil, &creds)
		if creds.Username != leaver.Number || creds.Domain != siptest.Domain || creds.Password == "" {
			t.Fatalf("sip-credentials of %s: user %q domain %q, password set %v", leaver.Number, creds.Username, creds.Domain, creds.Password != "")
		}
		if code := k.Register(t, creds.Username, creds.Password); code != 200 {
			t.Fatalf("REGISTER %s = %d, want 200", creds.Username, code)
		}
		if got := k.Contacts(t, creds.Username); len(got) != 1 {
			t.Fatalf("bindings of %s after 200 OK: %q", creds.Username, got)
		}
	})

	step(t, "disable the user in Entra, sync -> extension deleted", func() {
		gc, err := a.Integration.AppClient(ctx, directory.DefaultPBX)
		if err != nil {
			t.Fatal(err)
		}
		if err := gc.Do(ctx, http.MethodPatch, "/users/"+leaver.EntraID, nil, map[string]any{"accountEnabled": false}, nil); err != nil {
			t.Fatalf("disable %s in the sim: %v", leaver.EntraID, err)
		}
		if u, _ := tenant.User(leaver.EntraID); u.AccountEnabled {
			t.Fatal("the sim still shows the user enabled")
		}
		// A change notification may have started a sync that read the user before the
		// change; POST /sync joins a running sync, so sync until the extension is gone.
		syncs := 0
		poll(t, 20*time.Second, "the extension's deletion", func() bool {
			var run runView
			api.must(200, "POST", "/api/v1/integration/sync", nil, &run)
			syncs++
			if run.State != "succeeded" && run.State != "running" {
				t.Fatalf("sync: %+v", run)
			}
			return api.do("GET", "/api/v1/extensions/"+leaver.ID, nil, nil) == http.StatusNotFound
		})
		t.Logf("extension %s deleted after %d sync(s)", leaver.Number, syncs)
		var n int
		if err := kdb.Raw.QueryRowContext(ctx, `SELECT count(*) FROM subscriber WHERE username = $1`, leaver.Number).Scan(&n); err != nil || n != 0 {
			t.Fatalf("subscriber rows of %s after the deletion: %d %v", leaver.Number, n, err)
		}
	})

	step(t, "deleted: old registration gone, REGISTER refused", func() {
		if got := k.Contacts(t, creds.Username); len(got) != 0 {
			t.Fatalf("ul.lookup: %s still has bindings %q", creds.Username, got)
		}
		if aors := k.Dump(t); slices.Contains(aors, creds.Username+"@"+siptest.Domain) {
			t.Fatalf("ul.dump still lists %s: %q", creds.Username, aors)
		}
		if code := k.Register(t, creds.Username, creds.Password); !refused(code) {
			t.Fatalf("REGISTER of the deleted %s = %d, want 401/403/404", creds.Username, code)
		}
		if got := k.Contacts(t, creds.Username); len(got) != 0 {
			t.Fatalf("the refused REGISTER left bindings %q", got)
		}
	})

	step(t, "rotate: old secret refused, new accepted", func() {
		var old, fresh, read sipCreds
		api.must(200, "GET", "/api/v1/extensions/"+rotated.ID+"/sip-credentials", nil, &old)
		if code := k.Register(t, old.Username, old.Password); code != 200 {
			t.Fatalf("REGISTER %s before the rotation = %d, want 200", old.Username, code)
		}
		api.must(200, "POST", "/api/v1/extensions/"+rotated.ID+"/sip-credentials/rotate", nil, &fresh)
		if fresh.Username != old.Username || fresh.Password == "" || fresh.Password == old.Password {
			t.Fatalf("rotate: user %q -> %q, new password differs %v", old.Username, fresh.Username, fresh.Password != old.Password)
		}
		api.must(200, "GET", "/api/v1/extensions/"+rotated.ID+"/sip-credentials", nil, &read)
		if read.Password != fresh.Password {
			t.Fatal("sip-credentials after the rotation do not return the new secret")
		}
		if code := k.Register(t, old.Username, old.Password); !refused(code) {
			t.Fatalf("REGISTER %s with the old secret = %d, want 401/403/404", old.Username, code)
		}
		if code := k.Register(t, fresh.Username, fresh.Password); code != 200 {
			t.Fatalf("REGISTER %s with the new secret = %d, want 200", fresh.Username, code)
		}
	})

	step(t, "local extension: create, REGISTER -> 200, delete -> refused", func() {
		var local extView
		api.must(201, "POST", "/api/v1/extensions", map[string]any{"number": "2001", "firstName": "Lobby", "lastName": "Phone"}, &local)
		var c sipCreds
		api.must(200, "GET", "/api/v1/extensions/"+local.ID+"/sip-credentials", nil, &c)
		if code := k.Register(t, c.Username, c.Password); code != 200 {
			t.Fatalf("REGISTER local %s = %d, want 200", c.Username, code)
		}
		if code := api.do("DELETE", "/api/v1/extensions/"+local.ID, nil, nil); code != http.StatusNoContent && code != http.StatusOK {
			t.Fatalf("DELETE local extension = %d", code)
		}
		if got := k.Contacts(t, c.Username); len(got) != 0 {
			t.Fatalf("deleted local %s keeps bindings %q", c.Username, got)
		}
		if code := k.Register(t, c.Username, c.Password); !refused(code) {
			t.Fatalf("REGISTER deleted local %s = %d, want 401/403/404", c.Username, code)
		}
	})

	step(t, "restart: reconcile restores a row removed behind its back", func() {
		var c sipCreds
		api.must(200, "GET", "/api/v1/extensions/"+rotated.ID+"/sip-credentials", nil, &c)
		stopApp()
		if _, err := kdb.Raw.ExecContext(ctx, `DELETE FROM subscriber WHERE username = $1`, c.Username); err != nil {
			t.Fatal(err)
		}
		if code := k.Register(t, c.Username, c.Password); !refused(code) {
			t.Fatalf("REGISTER %s without its row = %d, want refused", c.Username, code)
		}
		a, stopApp = startApp(nil)
		if code := k.Register(t, c.Username, c.Password); code != 200 {
			t.Fatalf("REGISTER %s after the restart = %d, want 200 (row reconciled)", c.Username, code)
		}
		var n int
		if err := kdb.Raw.QueryRowContext(ctx, `SELECT count(*) FROM subscriber WHERE domain = $1`, siptest.Domain).Scan(&n); err != nil {
			t.Fatal(err)
		}
		var total struct {
			Items []extView `json:"items"`
		}
		api.must(200, "GET", "/api/v1/extensions?limit=1000", nil, &total)
		if n != len(total.Items) {
			t.Fatalf("subscriber rows %d, extensions %d: the table does not match the directory", n, len(total.Items))
		}
	})
}

func refused(code int) bool { return code == 401 || code == 403 || code == 404 }
