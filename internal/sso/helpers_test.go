package sso_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-pbx/switchboard/internal/api"
	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/integration"
	"github.com/switchboard-pbx/switchboard/internal/pbx"
	"github.com/switchboard-pbx/switchboard/internal/secret"
	"github.com/switchboard-pbx/switchboard/internal/sim"
	"github.com/switchboard-pbx/switchboard/internal/sim/idp"
	"github.com/switchboard-pbx/switchboard/internal/sqlstore"
	"github.com/switchboard-pbx/switchboard/internal/sso"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

const (
	tenantID     = "6b1a0a54-8f0e-4c7c-9d1b-2f0e8c1d9a01"
	clientID     = "0f4e6c2a-3b5d-4e7f-8a9b-1c2d3e4f5a6b"
	clientSecret = "sim~Secret.Value_0123456789abcdef"
	adminToken   = "sso-test-admin-token"
)

// Pre-generated signing keys: RSA generation is the slow part of a simulated tenant.
var (
	keysOnce sync.Once
	keyPool  []*rsa.PrivateKey
	keyNext  atomic.Int64
)

func newKey() (*rsa.PrivateKey, error) {
	keysOnce.Do(func() {
		for range 4 {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			keyPool = append(keyPool, k)
		}
	})
	return keyPool[int(keyNext.Add(1))%len(keyPool)], nil
}

// tokenSwap lets a test replace the ID token in the tenant's token responses.
type tokenSwap struct {
	mu sync.Mutex
	fn func(idToken string) string
}

func (ts *tokenSwap) set(fn func(string) string) {
	ts.mu.Lock()
	ts.fn = fn
	ts.mu.Unlock()
}

func (ts *tokenSwap) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ts.mu.Lock()
		fn := ts.fn
		ts.mu.Unlock()
		if fn == nil || r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/oauth2/v2.0/token") {
			h.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		var body map[string]any
		if rec.Code == 200 && json.Unmarshal(rec.Body.Bytes(), &body) == nil {
			if t, ok := body["id_token"].(string); ok {
				body["id_token"] = fn(t)
			}
			b, _ := json.Marshal(body)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(200)
			w.Write(b)
			return
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	})
}

type env struct {
	t      *testing.T
	tenant *sim.Tenant
	simSrv *httptest.Server
	srv    *httptest.Server
	store  store.Store
	pbx    *pbx.Service
	integ  *integration.Service
	sso    *sso.Service
	swap   *tokenSwap
	simAge atomic.Int64 // nanoseconds the tenant's clock lags behind
	reg    *prometheus.Registry
	users  []sim.UserInfo
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, swap: &tokenSwap{}}
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	var err error
	e.tenant, err = sim.New(sim.Config{TenantID: tenantID, ClientID: clientID, ClientSecret: clientSecret, Users: 12, Groups: 1, Seed: 3,
		Now: func() time.Time { return time.Now().Add(-time.Duration(e.simAge.Load())) }, IDP: idp.Config{NewKey: newKey}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.tenant.Close)
	e.simSrv = httptest.NewServer(e.swap.wrap(e.tenant.Handler()))
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
	keys, _ := secret.NewKeyring(secret.NewKey())
	e.pbx = &pbx.Service{Store: st, Keys: keys, Logger: logger}
	e.integ = &integration.Service{Store: st, PBX: e.pbx, Keys: keys, Logger: logger, GraphURL: e.simSrv.URL, LoginURL: e.simSrv.URL}
	e.reg = prometheus.NewRegistry()
	e.sso = &sso.Service{Store: st, Keys: keys, Integration: e.integ, PBX: e.pbx, Logger: logger, LoginURL: e.simSrv.URL, Metrics: e.reg}
	a := &api.Server{Store: st, PBX: e.pbx, Keys: keys, Logger: logger, AdminToken: adminToken, Integration: e.integ,
		Sessions: &api.Sessions{Key: []byte("k"), Store: st}, SSO: e.sso}
	root := http.NewServeMux()
	root.Handle("/", a.Handler())
	root.Handle("/client/", e.sso.Handler())
	e.srv = httptest.NewServer(root)
	t.Cleanup(e.srv.Close)
	e.integ.BaseURL, e.sso.BaseURL = e.srv.URL, e.srv.URL
	for _, u := range []string{e.integ.RedirectURI(), e.integ.SSORedirectURI()} {
		if err := e.tenant.AddRedirectURI(u); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range e.tenant.UserList() {
		if u.AccountEnabled && !u.Shared && u.UserType == "Member" && u.Mail != "" && !u.GlobalAdmin {
			e.users = append(e.users, u)
		}
	}
	if len(e.users) < 4 {
		t.Fatalf("the simulated tenant has only %d ordinary users", len(e.users))
	}
	return e
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// api calls the admin API.
func (e *env) api(method, path string, body any) (int, map[string]any) {
	e.t.Helper()
	return e.call(method, path, "Bearer "+adminToken, body)
}

// call sends JSON with an Authorization header (may be empty).
func (e *env) call(method, path, auth string, body any) (int, map[string]any) {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequestWithContext(e.t.Context(), method, e.srv.URL+path, rd)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return res.StatusCode, out
}

// connect connects the default PBX to the simulated tenant and switches SSO on.
func (e *env) connect() {
	e.t.Helper()
	code, out := e.api("POST", "/api/v1/integration/connect", map[string]any{"clientId": clientID, "tenantId": tenantID, "clientSecret": clientSecret})
	if code != 200 {
		e.t.Fatalf("connect: %d %v", code, out)
	}
	res, err := http.Get(out["authorizeUrl"].(string))
	if err != nil {
		e.t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(b), "Connected to Microsoft Entra ID") {
		e.t.Fatalf("connect callback: %d %s", res.StatusCode, b)
	}
	e.setSSO(map[string]any{"enabled": true})
}

func (e *env) setSSO(in map[string]any) map[string]any {
	e.t.Helper()
	code, out := e.api("PUT", "/api/v1/integration/sso", in)
	if code != 200 {
		e.t.Fatalf("PUT sso: %d %v", code, out)
	}
	return out
}

// syncedExt creates the synced extension of the i-th ordinary user, as the sync engine would.
func (e *env) syncedExt(i int, number string) *directory.Extension {
	e.t.Helper()
	u := e.users[i]
	x := &directory.Extension{Number: number, FirstName: u.GivenName, LastName: u.Surname, Email: u.Mail,
		Source: directory.SourceEntra, EntraID: u.ID}
	if err := e.pbx.CreateExtension(e.t.Context(), directory.DefaultPBX, "sync", x); err != nil {
		e.t.Fatal(err)
	}
	return x
}

func (e *env) localExt(number, email, password string) *directory.Extension {
	e.t.Helper()
	x := &directory.Extension{Number: number, FirstName: "Local", LastName: "User" + number, Email: email}
	if err := e.pbx.CreateExtension(e.t.Context(), directory.DefaultPBX, "admin", x); err != nil {
		e.t.Fatal(err)
	}
	if password != "" {
		e.setPassword(x.ID, password)
	}
	return x
}

func (e *env) setPassword(id, password string) {
	e.t.Helper()
	if _, err := e.store.UpdateExtension(e.t.Context(), directory.DefaultPBX, id, func(x *directory.Extension) error {
		x.ClientPasswordHash = secret.HashPassword(password)
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
}

// browser is a cookie-keeping HTTP client that follows redirects between
// the service and the tenant and stops at any other place (a native
// client's redirect URI).
type browser struct {
	e       *env
	c       *http.Client
	visited []string
	// beforeAuthorize may rewrite the authorize URL (attacks on the flow).
	beforeAuthorize func(*url.URL)
	// stopAtCallback stops before the callback is requested.
	stopAtCallback bool
	// also lists other origins the browser follows redirects to (another provider).
	also []string
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	b := &browser{e: e}
	b.c = &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		b.visited = append(b.visited, req.URL.String())
		u := req.URL.String()
		if strings.Contains(req.URL.Path, "/oauth2/v2.0/authorize") && b.beforeAuthorize != nil {
			b.beforeAuthorize(req.URL)
		}
		if b.stopAtCallback && strings.HasPrefix(u, e.srv.URL+"/client/v1/sso/callback") {
			return http.ErrUseLastResponse
		}
		if strings.HasPrefix(u, e.srv.URL) || strings.HasPrefix(u, e.simSrv.URL) {
			return nil
		}
		for _, o := range b.also {
			if strings.HasPrefix(u, o) {
				return nil
			}
		}
		return http.ErrUseLastResponse
	}}
	return b
}

// get fetches path (relative to the service, or absolute) and returns status, body, final response.
func (b *browser) get(path string) (int, string, *http.Response) {
	b.e.t.Helper()
	u := path
	if strings.HasPrefix(path, "/") {
		u = b.e.srv.URL + path
	}
	res, err := b.c.Get(u)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body), res
}

// visitedURL returns the first visited URL containing s.
func (b *browser) visitedURL(s string) *url.URL {
	for _, v := range b.visited {
		if strings.Contains(v, s) {
			u, _ := url.Parse(v)
			return u
		}
	}
	return nil
}

// cookie returns the value of a cookie the browser holds for the service.
func (b *browser) cookie(name string) string {
	u, _ := url.Parse(b.e.srv.URL + "/client/")
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// bearer is an Authorization header value.
func bearer(tok string) string { return "Bearer " + tok }

func httptestServer(h http.Handler) *httptest.Server { return httptest.NewServer(h) }

// counter returns the value of a counter with the given labels (0 when absent).
func (e *env) counter(name string, labels map[string]string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}
