package integration_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/api"
	"github.com/switchboard-pbx/switchboard/internal/apitest"
	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/integration"
	"github.com/switchboard-pbx/switchboard/internal/pbx"
	"github.com/switchboard-pbx/switchboard/internal/secret"
	"github.com/switchboard-pbx/switchboard/internal/sim"
	"github.com/switchboard-pbx/switchboard/internal/sim/idp"
	"github.com/switchboard-pbx/switchboard/internal/sqlstore"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

const (
	tenantID     = "6b1a0a54-8f0e-4c7c-9d1b-2f0e8c1d9a01"
	clientID     = "0f4e6c2a-3b5d-4e7f-8a9b-1c2d3e4f5a6b"
	clientSecret = "sim~Secret.Value_0123456789abcdef"
	adminToken   = "integration-test-admin-token"
)

// syncWriter collects log output from concurrent handlers.
type syncWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

type env struct {
	t       *testing.T
	tenant  *sim.Tenant
	simSrv  *httptest.Server
	srv     *httptest.Server
	store   store.Store
	keys    *secret.Keyring
	svc     *integration.Service
	logs    *syncWriter
	answers bytes.Buffer // every API answer body, to grep for secrets
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, logs: &syncWriter{}}
	logger := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var err error
	e.tenant, err = sim.New(sim.Config{TenantID: tenantID, ClientID: clientID, ClientSecret: clientSecret, Users: 40, Groups: 4, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.tenant.Close)
	e.simSrv = httptest.NewServer(e.tenant.Handler())
	t.Cleanup(e.simSrv.Close)

	st, err := sqlstore.Open(t.Context(), "sqlite:"+filepath.Join(t.TempDir(), "sb.db"), logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.store = st
	for _, id := range []string{directory.DefaultPBX, "branch"} {
		if _, err := st.EnsurePBX(t.Context(), directory.PBX{ID: id, Name: "PBX " + id, MaxExtensions: 100, TimeZone: "UTC"}); err != nil {
			t.Fatal(err)
		}
	}
	e.keys, _ = secret.NewKeyring(secret.NewKey())
	ps := &pbx.Service{Store: st, Keys: e.keys, Logger: logger}
	e.svc = &integration.Service{Store: st, PBX: ps, Keys: e.keys, Logger: logger, GraphURL: e.simSrv.URL, LoginURL: e.simSrv.URL}
	s := &api.Server{Store: st, PBX: ps, Keys: e.keys, Logger: logger, AdminToken: adminToken, Integration: e.svc,
		Sessions: &api.Sessions{Key: []byte("k"), Store: st}}
	e.srv = httptest.NewServer(s.Handler())
	t.Cleanup(e.srv.Close)
	e.svc.BaseURL = e.srv.URL
	if err := e.tenant.AddRedirectURI(e.svc.RedirectURI()); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) api(method, path string, body any) (int, map[string]any) {
	e.t.Helper()
	code, out, raw := apitest.Call(e.t, e.srv.URL, adminToken, method, path, body)
	e.answers.Write(raw)
	return code, out
}

// follow GETs the authorize URL like a browser: redirects are followed to the
// callback; it returns the final status, body and the callback URL visited.
func (e *env) follow(u string) (int, string, string) {
	e.t.Helper()
	jar, _ := cookiejar.New(nil)
	var callback string
	c := &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), e.srv.URL+integration.CallbackPath) {
			callback = req.URL.String()
		}
		return nil
	}}
	res, err := c.Get(u)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b), callback
}

func (e *env) connect(pbxQuery string, in map[string]any) (int, map[string]any) {
	return e.api("POST", "/api/v1/integration/connect"+pbxQuery, in)
}

func good() map[string]any {
	return map[string]any{"clientId": clientID, "tenantId": tenantID, "clientSecret": clientSecret}
}

func (e *env) status(q string) map[string]any {
	_, st := e.api("GET", "/api/v1/integration"+q, nil)
	return st
}

func (e *env) mustConnect() {
	e.t.Helper()
	code, out := e.connect("", good())
	if code != 200 {
		e.t.Fatalf("connect: %d %v", code, out)
	}
	status, body, _ := e.follow(out["authorizeUrl"].(string))
	if status != 200 || !strings.Contains(body, "Connected to Microsoft Entra ID") {
		e.t.Fatalf("callback: %d %s", status, body)
	}
	if st := e.status(""); st["status"] != "connected" {
		e.t.Fatalf("status after connect: %v", st)
	}
}

func TestConnect(t *testing.T) {
	e := newEnv(t)
	st := e.status("")
	if st["status"] != "not_connected" || st["redirectUri"] != e.srv.URL+"/api/v1/integration/callback" || st["ssoRedirectUri"] != e.srv.URL+"/client/v1/sso/callback" {
		t.Fatalf("initial status: %v", st)
	}
	code, out := e.connect("", good())
	if code != 200 {
		t.Fatalf("connect: %d %v", code, out)
	}
	u, _ := url.Parse(out["authorizeUrl"].(string))
	q := u.Query()
	if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("state") == "" || !strings.Contains(q.Get("scope"), "offline_access") {
		t.Fatalf("authorize URL lacks PKCE/state/offline_access: %s", u)
	}
	status, body, callback := e.follow(u.String())
	if status != 200 || !strings.Contains(body, "Connected") {
		t.Fatalf("callback: %d %s", status, body)
	}
	st = e.status("")
	acct, _ := st["authorizationAccount"].(map[string]any)
	if st["status"] != "connected" || st["clientId"] != clientID || acct["userPrincipalName"] != e.tenant.Admin().UserPrincipalName {
		t.Fatalf("status: %v", st)
	}
	if miss := st["missingPermissions"].([]any); len(miss) != 0 {
		t.Fatalf("missing permissions with a fully consented app: %v", miss)
	}
	// The state is single use: replaying the callback fails and changes nothing.
	res, err := http.Get(callback)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 400 || !strings.Contains(string(b), "already used") {
		t.Fatalf("replayed callback: %d %s", res.StatusCode, b)
	}
	if st := e.status(""); st["status"] != "connected" {
		t.Fatal("replay changed the status")
	}
	// The stored app client works against the tenant.
	gc, err := e.svc.AppClient(t.Context(), directory.DefaultPBX)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gc.GetUser(t.Context(), e.tenant.Admin().ID, nil); err != nil {
		t.Fatalf("app client: %v", err)
	}
	// Secrets are sealed at rest and never in logs or answers.
	raw, _ := e.store.GetSetting(t.Context(), directory.DefaultPBX, "integration")
	if bytes.Contains(raw, []byte(clientSecret)) {
		t.Fatal("client secret stored in plain text")
	}
	var stored struct {
		SealedRefreshToken string `json:"sealedRefreshToken"`
	}
	json.Unmarshal(raw, &stored)
	rt, err := e.keys.OpenString(stored.SealedRefreshToken)
	if err != nil || len(rt) < 10 {
		t.Fatalf("refresh token not stored: %v", err)
	}
	for _, s := range []string{clientSecret, rt} {
		if strings.Contains(e.logs.String(), s) {
			t.Fatal("a secret appears in the logs")
		}
		if strings.Contains(e.answers.String(), s) {
			t.Fatal("a secret appears in an API answer")
		}
	}
	// The delegated client (authorization account) works and stores rotated tokens.
	dc, err := e.svc.DelegatedClient(t.Context(), directory.DefaultPBX)
	if err != nil {
		t.Fatal(err)
	}
	var me map[string]any
	if err := dc.Do(t.Context(), "GET", "/me", nil, nil, &me); err != nil || me["id"] != e.tenant.Admin().ID {
		t.Fatalf("delegated /me: %v %v", me, err)
	}
}

func TestConnectRefusals(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct {
		name  string
		in    map[string]any
		field string
	}{
		{"missing client id", map[string]any{"tenantId": tenantID, "clientSecret": "x"}, "clientId"},
		{"client id not a GUID", map[string]any{"clientId": "abc", "tenantId": tenantID, "clientSecret": "x"}, "clientId"},
		{"tenant not a GUID", map[string]any{"clientId": clientID, "tenantId": "contoso", "clientSecret": "x"}, "tenantId"},
		{"empty secret", map[string]any{"clientId": clientID, "tenantId": tenantID, "clientSecret": " "}, "clientSecret"},
		{"secret id pasted", map[string]any{"clientId": clientID, "tenantId": tenantID, "clientSecret": tenantID}, "clientSecret"},
	} {
		code, out := e.connect("", c.in)
		errObj, _ := out["error"].(map[string]any)
		if code != 400 || errObj["field"] != c.field {
			t.Errorf("%s: %d %v", c.name, code, out)
		}
	}
	if st := e.status(""); st["status"] != "not_connected" {
		t.Fatalf("status after refusals: %v", st)
	}
}

func TestConnectFailuresStoreNothing(t *testing.T) {
	t.Run("wrong secret", func(t *testing.T) {
		e := newEnv(t)
		in := good()
		in["clientSecret"] = "wrong-secret-value"
		_, out := e.connect("", in)
		status, body, _ := e.follow(out["authorizeUrl"].(string))
		if status != 400 || !strings.Contains(body, "secret") {
			t.Fatalf("wrong secret: %d %s", status, body)
		}
		if st := e.status(""); st["status"] != "not_connected" || st["clientId"] != "" {
			t.Fatalf("half-connected after wrong secret: %v", st)
		}
	})
	t.Run("expired secret", func(t *testing.T) {
		e := newEnv(t)
		if err := e.tenant.ExpireClientSecret(); err != nil {
			t.Fatal(err)
		}
		_, out := e.connect("", good())
		status, body, _ := e.follow(out["authorizeUrl"].(string))
		if status != 400 || !strings.Contains(strings.ToLower(body), "expired") {
			t.Fatalf("expired secret: %d %s", status, body)
		}
		if st := e.status(""); st["status"] != "not_connected" {
			t.Fatalf("status: %v", st)
		}
	})
	t.Run("unknown tenant", func(t *testing.T) {
		e := newEnv(t)
		in := good()
		in["tenantId"] = "11111111-2222-3333-4444-555555555555"
		_, out := e.connect("", in)
		status, body, callback := e.follow(out["authorizeUrl"].(string))
		if status != 400 || !strings.Contains(body, "90002") || callback != "" {
			t.Fatalf("unknown tenant: %d %.300s", status, body)
		}
		if st := e.status(""); st["status"] != "not_connected" {
			t.Fatalf("status: %v", st)
		}
	})
	t.Run("denied consent", func(t *testing.T) {
		e := newEnv(t)
		if err := e.tenant.IDP().UpdateApp(clientID, func(a *idp.App) { a.Consented = false }); err != nil {
			t.Fatal(err)
		}
		var user string
		for _, u := range e.tenant.UserList() {
			if !u.GlobalAdmin && u.AccountEnabled && u.UserType == "Member" && !u.Shared {
				user = u.UserPrincipalName
				break
			}
		}
		_, out := e.connect("", good())
		status, body, _ := e.follow(out["authorizeUrl"].(string) + "&login_hint=" + url.QueryEscape(user))
		if status != 400 || !strings.Contains(body, "Consent was not given") {
			t.Fatalf("denied consent: %d %s", status, body)
		}
		if st := e.status(""); st["status"] != "not_connected" {
			t.Fatalf("status: %v", st)
		}
	})
	t.Run("forged state", func(t *testing.T) {
		e := newEnv(t)
		e.connect("", good())
		res, err := http.Get(e.srv.URL + integration.CallbackPath + "?code=abc&state=default~forged")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 400 {
			t.Fatalf("forged state: %d", res.StatusCode)
		}
		if st := e.status(""); st["status"] != "not_connected" {
			t.Fatalf("status: %v", st)
		}
	})
	t.Run("portal session binding", func(t *testing.T) {
		e := newEnv(t)
		// A connect started from a portal session must come back with that session.
		u, err := e.svc.StartConnect(t.Context(), directory.DefaultPBX, "admin", "test", integration.ConnectInput{ClientID: clientID, TenantID: tenantID, ClientSecret: clientSecret}, "portal-session-A")
		if err != nil {
			t.Fatal(err)
		}
		status, _, _ := e.follow(u) // the browser here has no portal cookie
		if status != 400 {
			t.Fatalf("callback without the binding session: %d", status)
		}
		if st := e.status(""); st["status"] != "not_connected" {
			t.Fatalf("status: %v", st)
		}
	})
}

func TestOneAppOnePBX(t *testing.T) {
	e := newEnv(t)
	e.mustConnect()
	code, out := e.connect("?pbx=branch", good())
	errObj, _ := out["error"].(map[string]any)
	if code != 409 || errObj["code"] != "app_in_use" || !strings.Contains(errObj["message"].(string), "PBX default") {
		t.Fatalf("second PBX on the same app: %d %v", code, out)
	}
	if st := e.status("?pbx=branch"); st["status"] != "not_connected" {
		t.Fatalf("branch status: %v", st)
	}
}

func TestSecretUpdate(t *testing.T) {
	e := newEnv(t)
	e.mustConnect()
	code, out := e.api("POST", "/api/v1/integration/client-secret", map[string]any{"clientSecret": "not-the-right-one"})
	errObj, _ := out["error"].(map[string]any)
	if code != 400 || errObj["field"] != "clientSecret" {
		t.Fatalf("bad secret update: %d %v", code, out)
	}
	if _, err := e.svc.AppClient(t.Context(), directory.DefaultPBX); err != nil {
		t.Fatal(err)
	}
	gc, _ := e.svc.AppClient(t.Context(), directory.DefaultPBX)
	if err := gc.CheckCredentials(t.Context()); err != nil {
		t.Fatalf("old secret stopped working after a refused update: %v", err)
	}
	const newSecret = "sim~Second.Secret_abcdef0123456789"
	if err := e.tenant.AddClientSecret(newSecret, 20*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if code, out := e.api("POST", "/api/v1/integration/client-secret", map[string]any{"clientSecret": newSecret}); code != 200 || out["status"] != "connected" {
		t.Fatalf("good secret update: %d %v", code, out)
	}
	raw, _ := e.store.GetSetting(t.Context(), directory.DefaultPBX, "integration")
	if bytes.Contains(raw, []byte(newSecret)) {
		t.Fatal("new secret stored in plain text")
	}
	if err := e.tenant.ExpireClientSecret(); err == nil {
		// The old secret is gone at the tenant; the stored (new) one still works.
		gc, _ := e.svc.AppClient(t.Context(), directory.DefaultPBX)
		if err := gc.CheckCredentials(t.Context()); err != nil {
			t.Logf("after expiring the first secret: %v", err)
		}
	}
	if strings.Contains(e.logs.String(), newSecret) || strings.Contains(e.answers.String(), newSecret) {
		t.Fatal("the new secret leaked into logs or answers")
	}
}

// seedSynced stores synced and local records as a sync would leave them.
func (e *env) seedSynced() (synced, local string, group string) {
	e.t.Helper()
	ctx := e.t.Context()
	ps := &pbx.Service{Store: e.store, Keys: e.keys, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	s := &directory.Extension{Number: "101", FirstName: "Syn", Email: "syn@x.test", Source: directory.SourceEntra, EntraID: "u-1"}
	l := &directory.Extension{Number: "102", FirstName: "Loc"}
	for _, x := range []*directory.Extension{s, l} {
		if err := ps.CreateExtension(ctx, directory.DefaultPBX, "test", x); err != nil {
			e.t.Fatal(err)
		}
	}
	g := &directory.Group{Name: "Sales", Source: directory.SourceEntra, EntraID: "g-1", Members: []string{s.ID, l.ID}}
	if err := e.store.CreateGroup(ctx, directory.DefaultPBX, g); err != nil {
		e.t.Fatal(err)
	}
	return s.ID, l.ID, g.ID
}

func (e *env) ext(id string) (*directory.Extension, bool) {
	x, err := e.store.GetExtension(e.t.Context(), directory.DefaultPBX, id)
	return x, err == nil
}

func (e *env) grp(id string) (*directory.Group, bool) {
	g, err := e.store.GetGroup(e.t.Context(), directory.DefaultPBX, id)
	return g, err == nil
}

func TestDisableEnableDisconnect(t *testing.T) {
	for _, del := range []bool{false, true} {
		t.Run(fmt.Sprintf("disable delete=%t", del), func(t *testing.T) {
			e := newEnv(t)
			e.mustConnect()
			s, l, g := e.seedSynced()
			code, out := e.api("POST", "/api/v1/integration/disable", map[string]any{"deleteExtensions": del, "deleteGroups": del})
			if code != 200 || out["status"] != "disabled" {
				t.Fatalf("disable: %d %v", code, out)
			}
			if _, ok := e.ext(l); !ok {
				t.Fatal("local extension deleted by disable")
			}
			x, ok := e.ext(s)
			if ok == del {
				t.Fatalf("synced extension present=%t after disable with delete=%t", ok, del)
			}
			if ok && !x.Synced() {
				t.Fatal("kept synced extension was unlocked by disable")
			}
			gr, ok := e.grp(g)
			if ok == del || (ok && !gr.Synced()) {
				t.Fatalf("group after disable: present=%t", ok)
			}
			if _, err := e.svc.AppClient(t.Context(), directory.DefaultPBX); err == nil {
				t.Fatal("a disabled integration still hands out Graph clients")
			}
			if code, out := e.connect("", good()); code != 409 {
				t.Fatalf("connect while disabled: %d %v", code, out)
			}
			if code, out := e.api("POST", "/api/v1/integration/enable", nil); code != 200 || out["status"] != "connected" {
				t.Fatalf("enable: %d %v", code, out)
			}
			if _, err := e.svc.AppClient(t.Context(), directory.DefaultPBX); err != nil {
				t.Fatalf("after enable: %v", err)
			}
		})
		t.Run(fmt.Sprintf("disconnect delete=%t", del), func(t *testing.T) {
			e := newEnv(t)
			e.mustConnect()
			s, l, g := e.seedSynced()
			e.store.UpdateSetting(t.Context(), directory.DefaultPBX, "sync.user-settings", func([]byte) ([]byte, error) { return []byte(`{}`), nil })
			code, out := e.api("POST", "/api/v1/integration/disconnect", map[string]any{"deleteExtensions": del, "deleteGroups": del})
			if code != 200 || out["status"] != "not_connected" {
				t.Fatalf("disconnect: %d %v", code, out)
			}
			if _, ok := e.ext(l); !ok {
				t.Fatal("local extension deleted by disconnect")
			}
			x, ok := e.ext(s)
			if ok == del {
				t.Fatalf("synced extension present=%t after disconnect with delete=%t", ok, del)
			}
			if ok && (x.Synced() || x.Source != directory.SourceLocal) {
				t.Fatal("kept extension still locked after disconnect")
			}
			gr, ok := e.grp(g)
			if ok == del || (ok && gr.Synced()) {
				t.Fatalf("group after disconnect: present=%t synced=%v", ok, ok && gr.Synced())
			}
			if _, err := e.store.GetSetting(t.Context(), directory.DefaultPBX, "integration"); err == nil {
				t.Fatal("integration state (with secrets) kept after disconnect")
			}
			if m, _ := e.store.ListSettings(t.Context(), directory.DefaultPBX, "sync."); len(m) != 0 {
				t.Fatalf("sync settings kept after disconnect: %v", m)
			}
			// Kept records are ordinary now: they can be deleted by hand.
			if ok {
				if code, _ := e.api("DELETE", "/api/v1/extensions/"+s, nil); code != 204 {
					t.Fatalf("released extension not deletable: %d", code)
				}
			}
			// A disconnected PBX can connect again.
			e.mustConnect()
		})
	}
}

func TestAuditTrail(t *testing.T) {
	e := newEnv(t)
	e.mustConnect()
	e.api("POST", "/api/v1/integration/disable", nil)
	_, out := e.api("GET", "/api/v1/audit", nil)
	var actions []string
	for _, it := range out["items"].([]any) {
		actions = append(actions, it.(map[string]any)["action"].(string))
	}
	joined := strings.Join(actions, ",")
	for _, want := range []string{"integration.connect.start", "integration.connect", "integration.disable"} {
		if !strings.Contains(joined, want) {
			t.Errorf("audit lacks %s: %v", want, actions)
		}
	}
}

// The status reads the secret's end date from the app registration and warns
// before it expires, and once it has.
func TestSecretExpiryWarning(t *testing.T) {
	e := newEnv(t)
	now := time.Now().UTC()
	e.svc.Now = func() time.Time { return now }
	e.mustConnect()
	st := e.status("")
	if st["secretExpiresAt"] == nil || st["secretWarning"] != nil {
		t.Fatalf("a one-year secret: %v", st)
	}
	const soon = "soon~expiring_secret_abcdef01234"
	if err := e.tenant.AddClientSecret(soon, 20*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if code, out := e.api("POST", "/api/v1/integration/client-secret", map[string]any{"clientSecret": soon}); code != 200 {
		t.Fatalf("secret update: %d %v", code, out)
	}
	st = e.status("")
	exp, _ := time.Parse(time.RFC3339, st["secretExpiresAt"].(string))
	if d := exp.Sub(now); d < 19*24*time.Hour || d > 21*24*time.Hour {
		t.Fatalf("expiry of the new secret = %v from now", d)
	}
	if w, _ := st["secretWarning"].(string); !strings.Contains(w, "expires on") {
		t.Fatalf("no warning for a secret expiring in 20 days: %v", st)
	}
	now = now.Add(21 * 24 * time.Hour)
	if w, _ := e.status("")["secretWarning"].(string); !strings.Contains(w, "has expired") {
		t.Fatalf("no warning for an expired secret: %q", w)
	}
}
