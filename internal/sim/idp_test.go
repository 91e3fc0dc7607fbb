package sim

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// token runs the client-credentials grant against the tenant's identity platform.
func (b *bundle) clientToken(secret string) (string, resp) {
	b.t.Helper()
	form := url.Values{"client_id": {testClient}, "client_secret": {secret}, "grant_type": {"client_credentials"},
		"scope": {"https://graph.microsoft.com/.default"}}
	r := b.do("POST", "/"+testTenant+"/oauth2/v2.0/token", "", form.Encode(), "Content-Type", "application/x-www-form-urlencoded")
	if r.status != 200 {
		return "", r
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.Unmarshal(r.body, &tok)
	return tok.AccessToken, r
}

func TestRealIdentityProvider(t *testing.T) {
	const redirect = "http://127.0.0.1:9/callback"
	b := newBundle(t, func(c *Config) { c.Validator = nil; c.Users = 25; c.Groups = 3; c.RedirectURIs = []string{redirect} })
	tok, r := b.clientToken("s3cret")
	mustStatus(t, r, 200)
	mustStatus(t, b.do("GET", "/v1.0/users?$top=5", tok, nil), 200)
	mustStatus(t, b.do("GET", "/v1.0/me", tok, nil), 400)
	mustStatus(t, b.do("GET", "/v1.0/users", tok+"x", nil), 401)

	// Withdrawn permission: 403.
	if err := b.ten.SetAppRoles([]string{"Presence.Read.All"}); err != nil {
		t.Fatal(err)
	}
	tok2, r := b.clientToken("s3cret")
	mustStatus(t, r, 200)
	mustStatus(t, b.do("GET", "/v1.0/users", tok2, nil), 403)
	_ = b.ten.SetAppRoles(AppRoles)

	// Expired secret: the token endpoint refuses it (AADSTS7000222).
	if err := b.ten.ExpireClientSecret(); err != nil {
		t.Fatal(err)
	}
	if _, r := b.clientToken("s3cret"); r.status == 200 || !strings.Contains(string(r.body), "7000222") {
		t.Fatalf("expired secret: %d %s", r.status, r.body)
	}
	mustStatus(t, b.do("POST", "/sim/app/secrets", "", map[string]any{"value": "n3w", "validForSeconds": 3600}), 204)
	if _, r := b.clientToken("n3w"); r.status != 200 {
		t.Fatalf("new secret: %s", r.body)
	}

	// Delegated sign-in: authorize signs in the login_hint user at once.
	u := b.ten.UserList()[4]
	verifier := "ThisIsntRandomButItNeedsToBe43CharactersLong"
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{"client_id": {testClient}, "response_type": {"code"}, "redirect_uri": {redirect},
		"scope": {"openid offline_access https://graph.microsoft.com/Presence.Read.All https://graph.microsoft.com/User.Read"},
		"state": {"st"}, "login_hint": {u.UserPrincipalName}, "code_challenge_method": {"S256"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := client.Get(b.srv.URL + "/" + testTenant + "/oauth2/v2.0/authorize?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	loc, err := url.Parse(res.Header.Get("Location"))
	if err != nil || loc.Query().Get("code") == "" {
		t.Fatalf("authorize: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	form := url.Values{"client_id": {testClient}, "client_secret": {"n3w"}, "grant_type": {"authorization_code"},
		"code": {loc.Query().Get("code")}, "redirect_uri": {redirect}, "code_verifier": {verifier}}
	r = b.do("POST", "/"+testTenant+"/oauth2/v2.0/token", "", form.Encode(), "Content-Type", "application/x-www-form-urlencoded")
	mustStatus(t, r, 200)
	dtok := r.json(t)["access_token"].(string)
	r = b.do("GET", "/v1.0/me", dtok, nil)
	mustStatus(t, r, 200)
	if r.json(t)["id"] != u.ID {
		t.Fatalf("/me = %s", r.body)
	}
	mustStatus(t, b.do("GET", "/v1.0/me/presence", dtok, nil), 200)
	// Identity endpoints are counted in the stats.
	if s := b.ten.Stats(); s.ByEndpoint["POST /{tenant}/oauth2/v2.0/token"] < 4 {
		t.Fatalf("stats %v", s.ByEndpoint)
	}
}
