package sso_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/sim"
	"github.com/switchboard-pbx/switchboard/internal/sim/idp"
)

// mintIDToken runs an authorization code flow against a tenant directly (as
// an attacker holding another application or tenant could) and returns the
// ID token.
func mintIDToken(t *testing.T, base, tenant, client, secret, redirect, loginHint, nonce string) string {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	q := url.Values{"client_id": {client}, "response_type": {"code"}, "redirect_uri": {redirect}, "scope": {"openid profile email"},
		"state": {"s"}, "nonce": {nonce}, "login_hint": {loginHint}}
	res, err := c.Get(base + "/" + tenant + "/oauth2/v2.0/authorize?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	loc, _ := url.Parse(res.Header.Get("Location"))
	code := loc.Query().Get("code")
	if code == "" {
		t.Fatalf("no code from %s: %s", base, res.Header.Get("Location"))
	}
	res, err = http.PostForm(base+"/"+tenant+"/oauth2/v2.0/token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {redirect}, "client_id": {client}, "client_secret": {secret}})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out struct {
		IDToken string `json:"id_token"`
	}
	b, _ := io.ReadAll(res.Body)
	if json.Unmarshal(b, &out); out.IDToken == "" {
		t.Fatalf("no id token: %s", b)
	}
	return out.IDToken
}

func TestStateAndNonce(t *testing.T) {
	e := newEnv(t)
	e.connect()
	e.syncedExt(0, "2001")
	hint := url.QueryEscape(e.users[0].UserPrincipalName)

	// callbackOf runs a sign-in up to the callback and returns the callback URL and the browser.
	callbackOf := func() (string, *browser) {
		b := e.browser()
		b.stopAtCallback = true
		_, _, res := b.get("/client/v1/sso/start?login_hint=" + hint)
		cb := res.Header.Get("Location")
		if !strings.Contains(cb, "/client/v1/sso/callback?") {
			t.Fatalf("no callback: %s", cb)
		}
		b.stopAtCallback = false
		return cb, b
	}

	// Tampered state: refused, and the real sign-in still completes once.
	cb, b := callbackOf()
	u, _ := url.Parse(cb)
	q := u.Query()
	real := q.Get("state")
	q.Set("state", real[:len(real)-2]+"xx")
	u.RawQuery = q.Encode()
	if code, body, _ := b.get(u.String()); code != 400 || !strings.Contains(body, "Start the sign-in again") {
		t.Fatalf("tampered state: %d %s", code, body)
	}
	if code, body, _ := b.get(cb); code != 200 || !strings.Contains(body, ">2001<") {
		t.Fatalf("genuine callback after a tampered one: %d %s", code, body)
	}
	// Replayed state: the same callback again is refused.
	if code, body, _ := b.get(cb); code != 400 || !strings.Contains(body, "already used") {
		t.Fatalf("replayed callback: %d %s", code, body)
	}

	// A callback carried to another browser (no binding cookie) is refused.
	cb, _ = callbackOf()
	if code, body, _ := e.browser().get(cb); code != 400 || !strings.Contains(body, "another browser") {
		t.Fatalf("callback in another browser: %d %s", code, body)
	}

	// Nonce mismatch: the authorize request's nonce is swapped on the way.
	b = e.browser()
	b.beforeAuthorize = func(u *url.URL) {
		q := u.Query()
		q.Set("nonce", "attacker-chosen-nonce")
		u.RawQuery = q.Encode()
	}
	if code, body, _ := b.get("/client/v1/sso/start?login_hint=" + hint); code != 403 || !strings.Contains(body, "nonce") {
		t.Fatalf("nonce mismatch: %d %s", code, body)
	}

	// An error from Microsoft is shown with its description.
	cb, b = callbackOf()
	u, _ = url.Parse(cb)
	q = u.Query()
	q.Del("code")
	q.Set("error", "access_denied")
	q.Set("error_description", "AADSTS65004: User declined to consent to access the app.")
	u.RawQuery = q.Encode()
	if code, body, _ := b.get(u.String()); code != 403 || !strings.Contains(body, "AADSTS65004") {
		t.Fatalf("error callback: %d %s", code, body)
	}
}

func TestForeignIDTokens(t *testing.T) {
	e := newEnv(t)
	e.connect()
	e.syncedExt(0, "2001")
	hint := e.users[0].UserPrincipalName
	redirect := e.srv.URL + "/client/v1/sso/callback"

	// Another application of the same tenant: valid signature and issuer, wrong audience.
	const otherApp = "11111111-2222-3333-4444-555555555555"
	e.tenant.IDP().RegisterApp(idp.App{ClientID: otherApp, DisplayName: "Other", Secrets: []idp.Secret{{Value: "other~secret", Expires: time.Now().Add(time.Hour)}},
		RedirectURIs: []string{redirect}, DelegatedScopes: []string{"openid", "profile", "email", "User.Read"}, Consented: true})
	otherAud := mintIDToken(t, e.simSrv.URL, tenantID, otherApp, "other~secret", redirect, hint, "n")
	e.swap.set(func(string) string { return otherAud })
	if code, body, _ := e.browser().get("/client/v1/sso/start?login_hint=" + url.QueryEscape(hint)); code != 403 || !strings.Contains(body, "another application") {
		t.Fatalf("ID token for another application: %d %s", code, body)
	}

	// Another tenant (its own keys and issuer), same user object id even.
	const otherTenant = "99999999-8888-7777-6666-555555555555"
	t2, err := sim.New(sim.Config{TenantID: otherTenant, ClientID: clientID, ClientSecret: clientSecret, Users: 5, Seed: 3,
		RedirectURIs: []string{redirect}, IDP: idp.Config{NewKey: newKey}})
	if err != nil {
		t.Fatal(err)
	}
	defer t2.Close()
	t2.IDP().RotateSigningKey() // a key the first tenant does not publish
	srv2 := newServer(t, t2.Handler())
	foreign := mintIDToken(t, srv2, otherTenant, clientID, clientSecret, redirect, t2.Admin().UserPrincipalName, "n")
	e.swap.set(func(string) string { return foreign })
	if code, body, _ := e.browser().get("/client/v1/sso/start?login_hint=" + url.QueryEscape(hint)); code != 403 || !strings.Contains(body, "could not be verified") {
		t.Fatalf("ID token from another tenant: %d %s", code, body)
	}

	// A token whose signature was tampered with.
	e.swap.set(func(tok string) string {
		parts := strings.Split(tok, ".")
		sig := []byte(parts[2])
		if sig[10] == 'A' {
			sig[10] = 'B'
		} else {
			sig[10] = 'A'
		}
		return parts[0] + "." + parts[1] + "." + string(sig)
	})
	if code, body, _ := e.browser().get("/client/v1/sso/start?login_hint=" + url.QueryEscape(hint)); code != 403 || !strings.Contains(body, "signature") {
		t.Fatalf("tampered signature: %d %s", code, body)
	}
	e.swap.set(nil)
	if code, body, _ := e.browser().get("/client/v1/sso/start?login_hint=" + url.QueryEscape(hint)); code != 200 || !strings.Contains(body, ">2001<") {
		t.Fatalf("genuine sign-in: %d %s", code, body)
	}
}

func TestExpiredIDToken(t *testing.T) {
	e := newEnv(t)
	e.connect()
	e.syncedExt(0, "2001")
	hint := url.QueryEscape(e.users[0].UserPrincipalName)
	// The tenant's clock runs 2 hours behind: its ID tokens (1 h) are expired on arrival.
	e.simAge.Store(int64(2 * time.Hour))
	if code, body, _ := e.browser().get("/client/v1/sso/start?login_hint=" + hint); code != 403 || !strings.Contains(body, "expired") {
		t.Fatalf("expired ID token: %d %s", code, body)
	}
	// A small skew is tolerated: 61 minutes behind = expired 1 minute ago.
	e.simAge.Store(int64(61 * time.Minute))
	if code, body, _ := e.browser().get("/client/v1/sso/start?login_hint=" + hint); code != 200 || !strings.Contains(body, ">2001<") {
		t.Fatalf("ID token within the clock skew: %d %s", code, body)
	}
}

func TestSigningKeyRotation(t *testing.T) {
	e := newEnv(t)
	e.connect()
	e.syncedExt(0, "2001")
	hint := url.QueryEscape(e.users[0].UserPrincipalName)
	seen := map[string]bool{}
	for i := range 3 {
		kid := e.tenant.IDP().ActiveKeyID()
		if seen[kid] {
			t.Fatalf("rotation %d reused signing key %s", i, kid)
		}
		seen[kid] = true
		if code, body, _ := e.browser().get("/client/v1/sso/start?login_hint=" + hint); code != 200 || !strings.Contains(body, ">2001<") {
			t.Fatalf("sign-in %d: %d %s", i, code, body)
		}
		e.tenant.IDP().RotateSigningKey()
	}
}

func newServer(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptestServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}
