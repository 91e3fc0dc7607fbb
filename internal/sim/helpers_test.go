package sim

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/sim/idp"
)

const (
	testTenant = "9f3c1a52-7d0e-4c8e-a6f1-2b6f0e1d4c33"
	testClient = "5e8b2c1d-3a4f-4b6e-9c7d-1f2e3d4c5b6a"
)

// fakeValidator accepts tokens of the form "app[:Role,Role]" and "del:<oid>[:scope,scope]".
type fakeValidator struct{}

func (fakeValidator) ValidateAccessToken(raw string) (*idp.AccessClaims, error) {
	parts := strings.SplitN(raw, ":", 3)
	c := &idp.AccessClaims{TenantID: testTenant, AppID: testClient, ExpiresAt: time.Now().Add(time.Hour)}
	switch parts[0] {
	case "app":
		c.Roles = AppRoles
		if len(parts) > 1 {
			c.Roles = strings.Split(parts[1], ",")
		}
	case "del":
		if len(parts) < 2 {
			return nil, idp.ErrInvalidToken
		}
		c.Delegated, c.ObjectID, c.Scopes = true, parts[1], DelegatedScopes
		if len(parts) > 2 {
			c.Scopes = strings.Split(parts[2], ",")
		}
	case "expired":
		return nil, idp.ErrTokenExpired
	default:
		return nil, errors.Join(idp.ErrInvalidToken, errors.New("bad fake token"))
	}
	return c, nil
}

var (
	keyOnce sync.Once
	key     *rsa.PrivateKey
	keyErr  error
)

// testKey hands every test tenant the same signing key (generating one per tenant is slow).
func testKey() (*rsa.PrivateKey, error) {
	keyOnce.Do(func() { key, keyErr = rsa.GenerateKey(rand.Reader, 2048) })
	return key, keyErr
}

// testValidator checks real JWTs with the tenant's identity provider and accepts the
// fakeValidator shorthands (custom roles, delegated users) for everything else.
type testValidator struct{ p *idp.Provider }

func (v *testValidator) ValidateAccessToken(raw string) (*idp.AccessClaims, error) {
	if strings.HasPrefix(raw, "eyJ") {
		return v.p.ValidateAccessToken(raw)
	}
	return fakeValidator{}.ValidateAccessToken(raw)
}

type bundle struct {
	t   *testing.T
	ten *Tenant
	srv *httptest.Server

	tokMu  sync.Mutex
	tok    string
	tokExp time.Time
}

// appToken returns a client-credentials token from the tenant's identity provider.
func (b *bundle) appToken() string {
	b.tokMu.Lock()
	defer b.tokMu.Unlock()
	if b.tok != "" && b.ten.now().Before(b.tokExp.Add(-time.Minute)) {
		return b.tok
	}
	form := "client_id=" + testClient + "&client_secret=s3cret&grant_type=client_credentials&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default"
	res, err := b.srv.Client().Post(b.srv.URL+"/"+testTenant+"/oauth2/v2.0/token", "application/x-www-form-urlencoded", strings.NewReader(form))
	if err != nil {
		b.t.Fatal(err)
	}
	defer res.Body.Close()
	var tr struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.NewDecoder(res.Body).Decode(&tr); err != nil || tr.AccessToken == "" {
		b.t.Fatalf("token: %d %v", res.StatusCode, err)
	}
	b.tok, b.tokExp = tr.AccessToken, b.ten.now().Add(time.Duration(tr.ExpiresIn)*time.Second)
	return b.tok
}

func newBundle(t *testing.T, mod func(*Config)) *bundle {
	t.Helper()
	tv := &testValidator{}
	cfg := Config{TenantID: testTenant, ClientID: testClient, ClientSecret: "s3cret", Users: 300, Groups: 25, Seed: 42,
		Validator: tv, NotifyBackoff: 20 * time.Millisecond}
	cfg.IDP.NewKey = testKey
	if mod != nil {
		mod(&cfg)
	}
	ten, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tv.p = ten.IDP()
	srv := httptest.NewServer(ten.Handler())
	t.Cleanup(func() { srv.Close(); ten.Close() })
	return &bundle{t: t, ten: ten, srv: srv}
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("decode %d %s: %v", r.status, r.body, err)
	}
	return m
}

// do sends a request; url may be absolute or a path. hdr pairs are header name/value.
func (b *bundle) do(method, url, token string, body any, hdr ...string) resp {
	b.t.Helper()
	if strings.HasPrefix(url, "/") {
		url = b.srv.URL + url
	}
	url = strings.NewReplacer(" ", "%20", `"`, "%22", "#", "%23").Replace(url)
	var rd io.Reader
	if body != nil {
		switch x := body.(type) {
		case string:
			rd = strings.NewReader(x)
		default:
			raw, _ := json.Marshal(x)
			rd = strings.NewReader(string(raw))
		}
	}
	req, err := http.NewRequestWithContext(b.t.Context(), method, url, rd)
	if err != nil {
		b.t.Fatal(err)
	}
	if token == "app" && b.ten.cfg.ClientSecret == "s3cret" {
		token = b.appToken() // a real token; "app:Roles" and "del:..." stay shorthands
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := b.srv.Client().Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return resp{res.StatusCode, res.Header, raw}
}

func (b *bundle) get(url string, hdr ...string) resp { return b.do("GET", url, "app", nil, hdr...) }

func mustStatus(t *testing.T, r resp, want int) {
	t.Helper()
	if r.status != want {
		t.Fatalf("status %d, want %d: %s", r.status, want, r.body)
	}
}
