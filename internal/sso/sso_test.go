package sso_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/sso"
)

func TestWebSignIn(t *testing.T) {
	e := newEnv(t)
	e.connect()
	x := e.syncedExt(0, "2001")
	e.syncedExt(1, "2002")

	b := e.browser()
	code, body, res := b.get("/client/v1/sso/start?client=web&login_hint=" + url.QueryEscape(e.users[0].UserPrincipalName))
	if code != 200 || res.Request.URL.Path != "/client/app" {
		t.Fatalf("web sign-in ended at %s with %d: %s", res.Request.URL, code, body)
	}
	if !strings.Contains(body, ">2001<") || !strings.Contains(body, x.FirstName) {
		t.Fatalf("the web client page does not show the extension: %s", body)
	}
	if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
		t.Fatalf("CSP: %q", csp)
	}
	if strings.Contains(body, "<script>") {
		t.Fatal("inline script on the web client page")
	}
	// The authorize request: PKCE S256, state, nonce, the SSO redirect URI, login_hint passed on.
	az := b.visitedURL("/oauth2/v2.0/authorize")
	if az == nil {
		t.Fatalf("no authorize request among %v", b.visited)
	}
	q := az.Query()
	if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("state") == "" || q.Get("nonce") == "" ||
		q.Get("redirect_uri") != e.srv.URL+"/client/v1/sso/callback" || q.Get("login_hint") != e.users[0].UserPrincipalName ||
		q.Get("client_id") != clientID || !strings.Contains(q.Get("scope"), "openid") || !strings.HasPrefix(az.Path, "/"+tenantID+"/") {
		t.Fatalf("authorize request: %s", az)
	}
	// The session cookie works for the client API.
	tok := b.cookie(sso.SessionCookie)
	if tok == "" {
		t.Fatal("no session cookie")
	}
	st, me := e.call("GET", "/client/v1/me", "", nil)
	if st != 401 {
		t.Fatalf("me without credentials: %d %v", st, me)
	}
	code, body, _ = b.get("/client/v1/me")
	if code != 200 || !strings.Contains(body, `"number":"2001"`) || !strings.Contains(body, `"method":"sso"`) {
		t.Fatalf("me with the cookie: %d %s", code, body)
	}
	if n := e.counter("switchboard_client_signins_total", map[string]string{"method": "sso", "outcome": "ok"}); n != 1 {
		t.Fatalf("successful sign-ins counted: %v", n)
	}
	if n := e.counter("switchboard_client_requests_total", map[string]string{"route": "GET /client/v1/sso/callback", "code": "303"}); n != 1 {
		t.Fatalf("callback requests counted: %v", n)
	}
	// The sign-in page offers Microsoft sign-in.
	if code, body, _ := e.browser().get("/client/"); code != 200 || !strings.Contains(body, "Sign in with Microsoft") || !strings.Contains(body, "/client/v1/sso/start?client=web") {
		t.Fatalf("sign-in page: %d %s", code, body)
	}
	// The sign-in page sends a signed-in browser on to the web client.
	if _, _, res := b.get("/client/"); res.Request.URL.Path != "/client/app" {
		t.Fatalf("signed-in /client/ went to %s", res.Request.URL)
	}

	// login_hint picks the user: the second user gets the second extension.
	b2 := e.browser()
	code, body, _ = b2.get("/client/v1/sso/start?login_hint=" + url.QueryEscape(e.users[1].Mail))
	if code != 200 || !strings.Contains(body, ">2002<") {
		t.Fatalf("second user: %d %s", code, body)
	}

	// Web logout ends the session.
	req, _ := http.NewRequest("POST", e.srv.URL+"/client/app/logout", nil)
	req.Header.Set("Origin", e.srv.URL)
	res, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if st, _ := e.call("GET", "/client/v1/me", bearer(tok), nil); st != 401 {
		t.Fatalf("me after logout: %d", st)
	}
}

func TestNativeCodeExchange(t *testing.T) {
	e := newEnv(t)
	e.connect()
	e.syncedExt(0, "2001")
	hint := url.QueryEscape(e.users[0].UserPrincipalName)

	// Desktop: loopback redirect URI with the port the app listens on and its state.
	b := e.browser()
	code, body, res := b.get("/client/v1/sso/start?client=desktop&port=53682&state=app-state-1&login_hint=" + hint)
	loc, _ := url.Parse(res.Header.Get("Location"))
	if code != http.StatusSeeOther || loc == nil || loc.Scheme != "http" || loc.Host != "localhost:53682" || loc.Path != "/sso" ||
		loc.Query().Get("state") != "app-state-1" || loc.Query().Get("code") == "" {
		t.Fatalf("desktop callback: %d %s %s", code, res.Header.Get("Location"), body)
	}
	if b.cookie(sso.SessionCookie) != "" {
		t.Fatal("a native sign-in set the web session cookie")
	}
	oneTime := loc.Query().Get("code")
	st, out := e.call("POST", "/client/v1/sso/exchange", "", map[string]any{"code": oneTime})
	if st != 200 || out["accessToken"] == nil || out["extension"].(map[string]any)["number"] != "2001" {
		t.Fatalf("exchange: %d %v", st, out)
	}
	tok := out["accessToken"].(string)
	if st, out := e.call("POST", "/client/v1/sso/exchange", "", map[string]any{"code": oneTime}); st != 400 || out["error"].(map[string]any)["code"] != "invalid_code" {
		t.Fatalf("second exchange of the same code: %d %v", st, out)
	}
	if st, me := e.call("GET", "/client/v1/me", bearer(tok), nil); st != 200 || me["extension"].(map[string]any)["number"] != "2001" {
		t.Fatalf("me: %d %v", st, me)
	}
	if st, out := e.call("POST", "/client/v1/sso/exchange", "", map[string]any{"code": "default~forged-code-forged-code-forged"}); st != 400 {
		t.Fatalf("forged code: %d %v", st, out)
	}

	// Mobile: the registered app-scheme URI (configurable per PBX).
	e.setSSO(map[string]any{"mobileRedirectUri": "com.example.switchboard://auth"})
	b = e.browser()
	code, _, res = b.get("/client/v1/sso/start?client=mobile&login_hint=" + hint)
	loc, _ = url.Parse(res.Header.Get("Location"))
	if code != http.StatusSeeOther || loc.Scheme != "com.example.switchboard" || loc.Query().Get("code") == "" {
		t.Fatalf("mobile callback: %d %s", code, res.Header.Get("Location"))
	}
	if st, out := e.call("POST", "/client/v1/sso/exchange", "", map[string]any{"code": loc.Query().Get("code")}); st != 200 {
		t.Fatalf("mobile exchange: %d %v", st, out)
	}
	// A port is refused for an app-scheme URI.
	if code, body, _ := e.browser().get("/client/v1/sso/start?client=mobile&port=1234"); code != 400 || !strings.Contains(body, "port") {
		t.Fatalf("port for mobile: %d %s", code, body)
	}
}

func TestSSORefusals(t *testing.T) {
	e := newEnv(t)
	e.connect()
	e.syncedExt(0, "2001")
	disabled := e.syncedExt(2, "2003")
	_ = disabled

	// A user without an extension.
	code, body, _ := e.browser().get("/client/v1/sso/start?login_hint=" + url.QueryEscape(e.users[1].UserPrincipalName))
	if code != 403 || !strings.Contains(body, "not linked to an extension") {
		t.Fatalf("user without an extension: %d %s", code, body)
	}
	if n := e.counter("switchboard_client_signins_total", map[string]string{"method": "sso", "outcome": "not_linked"}); n != 1 {
		t.Fatalf("not_linked sign-ins counted: %v", n)
	}
	// A local extension with the same email is not a synced user.
	x := &directory.Extension{Number: "2004", FirstName: "Same", LastName: "Mail", Email: e.users[3].Mail}
	if err := e.pbx.CreateExtension(t.Context(), directory.DefaultPBX, "admin", x); err != nil {
		t.Fatal(err)
	}
	if code, body, _ := e.browser().get("/client/v1/sso/start?login_hint=" + url.QueryEscape(e.users[3].Mail)); code != 403 || !strings.Contains(body, "not linked") {
		t.Fatalf("local extension with the user's email: %d %s", code, body)
	}

	// A user disabled in Entra.
	gc, err := e.integ.AppClient(t.Context(), directory.DefaultPBX)
	if err != nil {
		t.Fatal(err)
	}
	if err := gc.Do(t.Context(), "PATCH", "/users/"+e.users[2].ID, nil, map[string]any{"accountEnabled": false}, nil); err != nil {
		t.Fatal(err)
	}
	if code, body, _ := e.browser().get("/client/v1/sso/start?login_hint=" + url.QueryEscape(e.users[2].UserPrincipalName)); code != 403 || !strings.Contains(body, "disabled") {
		t.Fatalf("disabled user: %d %s", code, body)
	}

	hint := url.QueryEscape(e.users[0].UserPrincipalName)
	// SSO switched off.
	e.setSSO(map[string]any{"enabled": false})
	if code, body, _ := e.browser().get("/client/v1/sso/start?login_hint=" + hint); code != 403 || !strings.Contains(body, "switched off") {
		t.Fatalf("SSO off: %d %s", code, body)
	}
	e.setSSO(map[string]any{"enabled": true})

	// A sign-in started before the integration was disabled does not complete.
	b := e.browser()
	b.stopAtCallback = true
	_, _, res := b.get("/client/v1/sso/start?login_hint=" + hint)
	callback := res.Header.Get("Location")
	if !strings.Contains(callback, "/client/v1/sso/callback") {
		t.Fatalf("no callback: %s", callback)
	}
	if st, out := e.api("POST", "/api/v1/integration/disable", nil); st != 200 {
		t.Fatalf("disable: %d %v", st, out)
	}
	b.stopAtCallback = false
	if code, body, _ := b.get(callback); code != 403 || !strings.Contains(body, "integration") {
		t.Fatalf("callback after disable: %d %s", code, body)
	}
	// And none starts.
	if code, body, _ := e.browser().get("/client/v1/sso/start?login_hint=" + hint); code != 403 || !strings.Contains(body, "disabled or not connected") {
		t.Fatalf("integration disabled: %d %s", code, body)
	}
	// The settings are locked while disabled.
	if st, out := e.api("PUT", "/api/v1/integration/sso", map[string]any{"enabled": false}); st != 409 {
		t.Fatalf("PUT sso while disabled: %d %v", st, out)
	}
}
