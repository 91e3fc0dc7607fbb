package idp

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	testTenant = "aaaabbbb-0000-cccc-1111-dddd2222eeee"
	syncID     = "11111111-2222-3333-4444-555555555555" // confidential, consented
	publicID   = "22222222-3333-4444-5555-666666666666" // public client (no secret), consented
	freshID    = "33333333-4444-5555-6666-777777777777" // confidential, not consented
	syncSecret = "s3cret~Valid.Value"
	oldSecret  = "expired~Secret.Value"
	redirect   = "https://pbx.example.test/callback"
)

// testKeys are generated once per test binary: RSA generation dominates run time.
var testKeys = sync.OnceValue(func() []*rsa.PrivateKey {
	keys := make([]*rsa.PrivateKey, 3)
	for i := range keys {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		keys[i] = k
	}
	return keys
})

var keyCounter atomic.Int64

func poolKey() (*rsa.PrivateKey, error) {
	keys := testKeys()
	return keys[int(keyCounter.Add(1))%len(keys)], nil
}

// clock is a settable Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fakeDir is a Directory over a fixed user list.
type fakeDir struct {
	mu    sync.Mutex
	users []User
}

func (d *fakeDir) UserByLogin(login string) (User, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, u := range d.users {
		if strings.EqualFold(u.UserPrincipalName, login) || u.Mail != "" && strings.EqualFold(u.Mail, login) {
			return u, true
		}
	}
	return User{}, false
}

func (d *fakeDir) FirstGlobalAdmin() (User, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, u := range d.users {
		if u.GlobalAdmin {
			return u, true
		}
	}
	return User{}, false
}

func (d *fakeDir) update(id string, f func(*User)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range d.users {
		if d.users[i].ID == id {
			f(&d.users[i])
		}
	}
}

var (
	admin = User{ID: "aaaaaaaa-0000-0000-0000-000000000001", UserPrincipalName: "admin@contoso.onmicrosoft.com",
		Mail: "admin@contoso.com", DisplayName: "Ada Admin", GlobalAdmin: true, Enabled: true}
	alice = User{ID: "aaaaaaaa-0000-0000-0000-000000000002", UserPrincipalName: "alice@contoso.onmicrosoft.com",
		Mail: "alice@contoso.com", DisplayName: "Alice Smith", Enabled: true}
	bob = User{ID: "aaaaaaaa-0000-0000-0000-000000000003", UserPrincipalName: "bob@contoso.onmicrosoft.com",
		Mail: "", DisplayName: "Bob Disabled", Enabled: false}
)

// bundle is one provider behind a real HTTP server.
type bundle struct {
	p     *Provider
	srv   *httptest.Server
	clock *clock
	dir   *fakeDir
	start time.Time
}

func (b *bundle) url(tenant, path string) string { return b.srv.URL + "/" + tenant + path }

func (b *bundle) tokenURL() string { return b.url(testTenant, "/oauth2/v2.0/token") }

func newBundle(t *testing.T) *bundle {
	t.Helper()
	start := time.Now().Truncate(time.Second)
	clk := &clock{t: start}
	dir := &fakeDir{users: []User{alice, admin, bob}}
	p, err := New(Config{
		TenantID: testTenant,
		Dir:      dir,
		Now:      clk.Now,
		NewKey:   poolKey,
		Domains:  []string{"contoso.onmicrosoft.com"},
		Logger:   slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	delegated := []string{"User.Read", "Presence.ReadWrite", "Contacts.Read.Shared", "offline_access", "openid", "profile", "email"}
	p.RegisterApp(App{
		ClientID: syncID, DisplayName: "Switchboard PBX",
		Secrets: []Secret{
			{Value: oldSecret, Expires: start.Add(-time.Hour)},
			{Value: syncSecret, Expires: start.AddDate(1, 0, 0)},
		},
		RedirectURIs:    []string{redirect, "http://localhost:9999/sso"},
		AppRoles:        []string{"User.Read.All", "Group.Read.All"},
		DelegatedScopes: delegated,
		Consented:       true,
	})
	p.RegisterApp(App{
		ClientID: publicID, DisplayName: "Switchboard Softphone",
		RedirectURIs: []string{"http://localhost"}, DelegatedScopes: delegated, Consented: true,
	})
	p.RegisterApp(App{
		ClientID: freshID, DisplayName: "Fresh App",
		Secrets:      []Secret{{Value: syncSecret, Expires: start.AddDate(1, 0, 0)}},
		RedirectURIs: []string{redirect}, AppRoles: []string{"User.Read.All"},
	})
	srv := httptest.NewServer(p.Handler())
	t.Cleanup(srv.Close)
	return &bundle{p: p, srv: srv, clock: clk, dir: dir, start: start}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// noRedirect is an HTTP client that returns redirects instead of following them.
func (b *bundle) noRedirect() *http.Client {
	c := *b.srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// get performs a GET without following redirects.
func (b *bundle) get(t *testing.T, u string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := b.noRedirect().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// authorize runs the authorize endpoint and returns the query (or fragment)
// parameters of the redirect.
func (b *bundle) authorize(t *testing.T, tenant string, params url.Values) url.Values {
	t.Helper()
	resp, body := b.get(t, b.url(tenant, "/oauth2/v2.0/authorize")+"?"+params.Encode())
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: status %d, want 302; body %s", resp.StatusCode, body)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if loc.Fragment != "" {
		v, _ := url.ParseQuery(loc.Fragment)
		return v
	}
	return loc.Query()
}

func authParams(clientID, redirectURI, scope string, extra ...string) url.Values {
	v := url.Values{
		"client_id": {clientID}, "response_type": {"code"}, "redirect_uri": {redirectURI},
		"scope": {scope}, "state": {"st-123"}, "nonce": {"n-456"},
	}
	for i := 0; i+1 < len(extra); i += 2 {
		v.Set(extra[i], extra[i+1])
	}
	return v
}

// postToken posts a form to the token endpoint and decodes the JSON answer.
func (b *bundle) postToken(t *testing.T, tokenURL string, form url.Values, basic ...string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if len(basic) == 2 {
		req.SetBasicAuth(url.QueryEscape(basic[0]), url.QueryEscape(basic[1]))
	}
	resp, err := b.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("token endpoint Content-Type %q", ct)
	}
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, m
}

// checkAADError asserts Microsoft's error shape, status, error and AADSTS code.
func checkAADError(t *testing.T, status int, body map[string]any, wantStatus int, wantErr string, wantCode int) {
	t.Helper()
	if status != wantStatus {
		t.Errorf("status %d, want %d (body %v)", status, wantStatus, body)
	}
	if body["error"] != wantErr {
		t.Errorf("error %q, want %q", body["error"], wantErr)
	}
	codes, _ := body["error_codes"].([]any)
	if len(codes) != 1 || codes[0] != float64(wantCode) {
		t.Errorf("error_codes %v, want [%d]", body["error_codes"], wantCode)
	}
	desc, _ := body["error_description"].(string)
	prefix := "AADSTS" + itoa(wantCode) + ": "
	if !strings.HasPrefix(desc, prefix) {
		t.Errorf("error_description %q does not start with %q", desc, prefix)
	}
	for _, line := range []string{"\r\nTrace ID: ", "\r\nCorrelation ID: ", "\r\nTimestamp: "} {
		if !strings.Contains(desc, line) {
			t.Errorf("error_description lacks %q: %q", line, desc)
		}
	}
	trace, _ := body["trace_id"].(string)
	corr, _ := body["correlation_id"].(string)
	ts, _ := body["timestamp"].(string)
	if trace == "" || !strings.Contains(desc, "Trace ID: "+trace) || !strings.Contains(desc, "Correlation ID: "+corr) {
		t.Errorf("trace/correlation ids do not match the description: %v", body)
	}
	if _, err := time.Parse("2006-01-02 15:04:05Z", ts); err != nil {
		t.Errorf("timestamp %q: %v", ts, err)
	}
	if u, _ := body["error_uri"].(string); !strings.HasSuffix(u, "/error?code="+itoa(wantCode)) {
		t.Errorf("error_uri %q", u)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }
