package portal_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/switchboard-pbx/switchboard/internal/api"
	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/portal"
)

func TestSessionCookieIsTheAPIs(t *testing.T) {
	if portal.SessionCookie != api.SessionCookie {
		t.Fatalf("portal cookie %q, API cookie %q: the API would not accept portal sessions", portal.SessionCookie, api.SessionCookie)
	}
}

func TestRootShowsLoginWhenSignedOut(t *testing.T) {
	e := newEnv(t)
	p := e.do(e.client(), "GET", "/", nil, nil)
	if p.status != 200 || !strings.Contains(p.body, `action="/login"`) || !strings.Contains(p.body, `name="username"`) || !strings.Contains(p.body, `name="password"`) {
		t.Fatalf("GET / signed out: %d\n%s", p.status, p.body)
	}
}

func TestLoginSetsSecureCookie(t *testing.T) {
	for _, secure := range []bool{false, true} {
		t.Run(fmt.Sprintf("secure=%v", secure), func(t *testing.T) {
			e := newEnv(t, func(c *portal.Config, _ *api.Server) { c.Secure = secure })
			c := e.client()
			p := e.do(c, "POST", "/login", url.Values{"username": {adminUser}, "password": {adminPass}, "next": {"/extensions?search=a"}}, e.sameOrigin())
			if p.status != http.StatusSeeOther || p.header.Get("Location") != "/extensions?search=a" {
				t.Fatalf("login: %d Location=%q", p.status, p.header.Get("Location"))
			}
			set := p.header.Values("Set-Cookie")
			if len(set) != 1 {
				t.Fatalf("Set-Cookie: %q", set)
			}
			ck, err := http.ParseSetCookie(set[0])
			if err != nil {
				t.Fatal(err)
			}
			if ck.Name != portal.SessionCookie || ck.Value == "" || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.Secure != secure || ck.MaxAge <= 0 {
				t.Fatalf("cookie: %+v", ck)
			}
			// Signed in: / goes to the integration page, which renders.
			if p := e.do(c, "GET", "/", nil, nil); p.status != http.StatusSeeOther || p.header.Get("Location") != "/integrations/microsoft" {
				t.Fatalf("GET / signed in: %d %q", p.status, p.header.Get("Location"))
			}
			if p := e.do(c, "GET", "/integrations/microsoft", nil, nil); p.status != 200 || !strings.Contains(p.body, "Microsoft 365") || !strings.Contains(p.body, adminUser) {
				t.Fatalf("integration page: %d", p.status)
			}
		})
	}
}

func TestBadLoginShowsError(t *testing.T) {
	e := newEnv(t)
	cases := []struct{ user, pass, want string }{
		{adminUser, "wrong password", "Wrong username or password."},
		{"nobody", adminPass, "Wrong username or password."},
		{"", "", "Enter your username and password."},
	}
	for _, tc := range cases {
		c := e.client()
		p := e.login(c, tc.user, tc.pass)
		if p.status == http.StatusSeeOther || !strings.Contains(p.body, tc.want) || !strings.Contains(p.body, `role="alert"`) {
			t.Errorf("login %q/%q: %d, want the message %q", tc.user, tc.pass, p.status, tc.want)
		}
		if len(p.header.Values("Set-Cookie")) != 0 || e.sessionCookie(c) != nil {
			t.Errorf("login %q: a failed login set a cookie", tc.user)
		}
		if tc.user != "" && !strings.Contains(p.body, `value="`+tc.user+`"`) {
			t.Errorf("login %q: the username is not kept in the form", tc.user)
		}
	}
}

func TestLoginIsRateLimited(t *testing.T) {
	e := newEnv(t)
	var last page
	for range 6 {
		last = e.login(e.client(), adminUser, "wrong password")
	}
	if last.status != http.StatusTooManyRequests || !strings.Contains(last.body, "Too many sign-in attempts") || last.header.Get("Retry-After") == "" {
		t.Fatalf("6th bad attempt: %d", last.status)
	}
	// Even the right password waits now.
	if p := e.login(e.client(), adminUser, adminPass); p.status != http.StatusTooManyRequests {
		t.Fatalf("right password while limited: %d", p.status)
	}
}

func TestCrossOriginPostsRefused(t *testing.T) {
	e := newEnv(t)
	form := url.Values{"username": {adminUser}, "password": {adminPass}}
	for name, hdr := range map[string]map[string]string{
		"sec-fetch-site cross-site": {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
		"sec-fetch-site same-site":  {"Sec-Fetch-Site": "same-site", "Origin": "https://sub.example"},
		"origin only":               {"Origin": "https://evil.example"},
	} {
		c := e.client()
		if p := e.do(c, "POST", "/login", form, hdr); p.status != http.StatusForbidden {
			t.Errorf("%s: POST /login answered %d", name, p.status)
		}
		if e.sessionCookie(c) != nil {
			t.Errorf("%s: cross-origin login set a cookie", name)
		}
	}
	// Logout too: a cross-origin post cannot end the session.
	c := e.signedIn()
	if p := e.do(c, "POST", "/logout", nil, map[string]string{"Sec-Fetch-Site": "cross-site"}); p.status != http.StatusForbidden {
		t.Fatalf("cross-origin logout: %d", p.status)
	}
	if p := e.do(c, "GET", "/extensions", nil, nil); p.status != 200 {
		t.Fatalf("session ended by a cross-origin post: %d", p.status)
	}
}

func TestSecurityHeadersOnEveryResponse(t *testing.T) {
	e := newEnv(t)
	anon, signed := e.client(), e.signedIn()
	cases := []struct {
		c    *http.Client
		path string
	}{
		{anon, "/"}, {anon, "/login"}, {anon, "/extensions"}, {anon, "/no-such-page"}, {anon, "/static/app.css"},
		{anon, "/static/htmx.min.js"}, {anon, "/static/missing.js"},
		{signed, "/integrations/microsoft"}, {signed, "/extensions"}, {signed, "/extension-groups"}, {signed, "/phonebooks"}, {signed, "/audit"},
	}
	for _, tc := range cases {
		p := e.do(tc.c, "GET", tc.path, nil, nil)
		csp := p.header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: CSP %q", tc.path, csp)
		}
		for k, want := range map[string]string{"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"} {
			if got := p.header.Get(k); got != want {
				t.Errorf("%s: %s = %q, want %q", tc.path, k, got, want)
			}
		}
	}
	if p := e.do(anon, "POST", "/login", url.Values{"username": {"x"}}, map[string]string{"Sec-Fetch-Site": "cross-site"}); p.header.Get("X-Frame-Options") != "DENY" {
		t.Error("the cross-origin refusal lacks the security headers")
	}
}

var (
	inlineScript  = regexp.MustCompile(`(?i)<script(?:\s[^>]*)?>`)
	inlineHandler = regexp.MustCompile(`(?i)\son[a-z]+\s*=`)
)

// TestNoInlineScript: the CSP forbids inline script, so no page may carry any.
func TestNoInlineScript(t *testing.T) {
	e := newEnv(t)
	c := e.signedIn()
	for _, path := range []string{"/integrations/microsoft", "/extensions", "/extension-groups", "/phonebooks", "/audit", "/nope"} {
		p := e.do(c, "GET", path, nil, nil)
		for _, tag := range inlineScript.FindAllString(p.body, -1) {
			if !strings.Contains(tag, ` src="/static/`) {
				t.Errorf("%s: inline script %s", path, tag)
			}
		}
		if m := inlineHandler.FindString(p.body); m != "" {
			t.Errorf("%s: inline event handler %q", path, m)
		}
		if strings.Contains(p.body, "style=") {
			t.Errorf("%s: inline style attribute", path)
		}
	}
	p := e.do(e.client(), "GET", "/", nil, nil)
	if inlineHandler.MatchString(p.body) || strings.Contains(p.body, "<style") {
		t.Error("login page has inline handlers or styles")
	}
}

func TestLogoutRevokesSession(t *testing.T) {
	e := newEnv(t)
	c := e.signedIn()
	old := e.sessionCookie(c)
	if old == nil {
		t.Fatal("no session cookie")
	}
	p := e.do(c, "POST", "/logout", nil, e.sameOrigin())
	if p.status != http.StatusSeeOther || p.header.Get("Location") != "/" {
		t.Fatalf("logout: %d %q", p.status, p.header.Get("Location"))
	}
	ck, err := http.ParseSetCookie(p.header.Get("Set-Cookie"))
	if err != nil || ck.Name != portal.SessionCookie || ck.MaxAge >= 0 && ck.Value != "" {
		t.Fatalf("logout cookie: %+v %v", ck, err)
	}
	// The old token is dead everywhere, not just forgotten by the browser.
	replay := e.client()
	u, _ := url.Parse(e.srv.URL)
	replay.Jar.SetCookies(u, []*http.Cookie{{Name: portal.SessionCookie, Value: old.Value, Path: "/"}})
	if p := e.do(replay, "GET", "/extensions", nil, nil); p.status != http.StatusSeeOther || !strings.HasPrefix(p.header.Get("Location"), "/login") {
		t.Fatalf("portal with a revoked cookie: %d %q", p.status, p.header.Get("Location"))
	}
	if p := e.do(replay, "GET", "/api/v1/extensions", nil, nil); p.status != http.StatusUnauthorized {
		t.Fatalf("API with a revoked cookie: %d", p.status)
	}
	// The log-in and log-out are in the audit log.
	entries, err := e.store.ListAudit(t.Context(), directory.DefaultPBX, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, a := range entries {
		actions = append(actions, a.Action)
	}
	if got := strings.Join(actions, ","); !strings.Contains(got, "admin.logout") || !strings.Contains(got, "admin.login") {
		t.Fatalf("audit actions: %s", got)
	}
}

func TestPagesRedirectToLoginWhenSignedOut(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	for _, path := range []string{"/integrations/microsoft", "/extensions?search=ann", "/extension-groups", "/phonebooks", "/phonebooks/x", "/audit"} {
		p := e.do(c, "GET", path, nil, nil)
		want := "/login?next=" + url.QueryEscape(path)
		if p.status != http.StatusSeeOther || p.header.Get("Location") != want {
			t.Errorf("%s: %d %q, want 303 %q", path, p.status, p.header.Get("Location"), want)
		}
	}
	// Signing in from there lands on the page asked for.
	p := e.do(c, "GET", "/login?next="+url.QueryEscape("/audit"), nil, nil)
	if !strings.Contains(p.body, `name="next" value="/audit"`) {
		t.Fatalf("login page does not carry next:\n%s", p.body)
	}
}

func TestNextIsKeptOnSite(t *testing.T) {
	e := newEnv(t) // five cases: the login rate limit allows five attempts in a burst
	for next, want := range map[string]string{
		"/audit":               "/audit",
		"https://evil.example": "/integrations/microsoft",
		"//evil.example/x":     "/integrations/microsoft",
		"/\\evil.example":      "/integrations/microsoft",
		"/login":               "/integrations/microsoft",
	} {
		c := e.client()
		p := e.do(c, "POST", "/login", url.Values{"username": {adminUser}, "password": {adminPass}, "next": {next}}, e.sameOrigin())
		if p.header.Get("Location") != want {
			t.Errorf("next=%q: Location %q, want %q", next, p.header.Get("Location"), want)
		}
	}
}

func TestPortalCookieDrivesTheAPI(t *testing.T) {
	e := newEnv(t)
	c := e.signedIn()
	req, _ := http.NewRequestWithContext(t.Context(), "POST", e.srv.URL+"/api/v1/extensions", strings.NewReader(`{"number":"200","firstName":"Ann"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("API create with the portal cookie: %d", res.StatusCode)
	}
	var out map[string]any
	p := e.do(c, "GET", "/api/v1/extensions", nil, nil)
	if err := json.Unmarshal([]byte(p.body), &out); err != nil || len(out["items"].([]any)) != 1 {
		t.Fatalf("API list with the portal cookie: %d %s", p.status, p.body)
	}
}

func TestStaticFiles(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	p := e.do(c, "GET", "/", nil, nil)
	m := regexp.MustCompile(`href="(/static/app\.css\?v=[0-9a-f]+)"`).FindStringSubmatch(p.body)
	if m == nil {
		t.Fatal("login page links no hashed stylesheet")
	}
	s := e.do(c, "GET", m[1], nil, nil)
	if s.status != 200 || !strings.HasPrefix(s.header.Get("Content-Type"), "text/css") || !strings.Contains(s.header.Get("Cache-Control"), "immutable") {
		t.Fatalf("stylesheet: %d %q %q", s.status, s.header.Get("Content-Type"), s.header.Get("Cache-Control"))
	}
	if s := e.do(c, "GET", "/static/htmx.min.js", nil, nil); s.status != 200 || !strings.Contains(s.header.Get("Content-Type"), "javascript") || s.header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("htmx: %d %q %q", s.status, s.header.Get("Content-Type"), s.header.Get("Cache-Control"))
	}
	if s := e.do(c, "GET", "/static/", nil, nil); s.status != 404 {
		t.Fatalf("static directory listing: %d", s.status)
	}
}
