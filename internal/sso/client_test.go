package sso_test

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/sso"
)

// ssoToken signs the i-th user in from the desktop client and returns the access token.
func (e *env) ssoToken(i int) string {
	e.t.Helper()
	b := e.browser()
	_, _, res := b.get("/client/v1/sso/start?client=desktop&login_hint=" + url.QueryEscape(e.users[i].UserPrincipalName))
	loc, _ := url.Parse(res.Header.Get("Location"))
	if loc == nil || loc.Query().Get("code") == "" {
		e.t.Fatalf("desktop sign-in of user %d: %s", i, res.Header.Get("Location"))
	}
	st, out := e.call("POST", "/client/v1/sso/exchange", "", map[string]any{"code": loc.Query().Get("code")})
	if st != 200 {
		e.t.Fatalf("exchange: %d %v", st, out)
	}
	return out["accessToken"].(string)
}

func TestSessionsEnd(t *testing.T) {
	e := newEnv(t)
	e.connect()
	x := e.syncedExt(0, "2001")
	e.syncedExt(1, "2002")
	e.localExt("3001", "local@example.com", "local-password-1")

	tok := e.ssoToken(0)
	other := e.ssoToken(1)
	if st, _ := e.call("GET", "/client/v1/me", bearer(tok), nil); st != 200 {
		t.Fatal("fresh session refused")
	}
	// Deleting the extension (as the sync engine does) ends its sessions.
	if err := e.pbx.DeleteExtension(t.Context(), directory.DefaultPBX, "sync", x.ID, nil); err != nil {
		t.Fatal(err)
	}
	if st, out := e.call("GET", "/client/v1/me", bearer(tok), nil); st != 401 {
		t.Fatalf("session of a deleted extension: %d %v", st, out)
	}
	// A re-created extension with the same number does not revive it.
	e.syncedExt(0, "2001")
	if st, _ := e.call("GET", "/client/v1/me", bearer(tok), nil); st != 401 {
		t.Fatal("session revived by a new extension")
	}

	// Logout revokes the token.
	st, out := e.call("POST", "/client/v1/login", "", map[string]any{"username": "3001", "password": "local-password-1"})
	if st != 200 {
		t.Fatalf("login: %d %v", st, out)
	}
	pw := out["accessToken"].(string)
	pw2 := e.mustLogin("3001", "local-password-1")
	if st, _ := e.call("POST", "/client/v1/logout", bearer(pw2), nil); st != 204 {
		t.Fatalf("logout: %d", st)
	}
	if st, _ := e.call("GET", "/client/v1/me", bearer(pw2), nil); st != 401 {
		t.Fatal("logged-out token still works")
	}

	// A new client password (an administrator's reset) ends the password sessions.
	pw3 := e.mustLogin("3001", "local-password-1")
	e.setPassword(e.mustFind("3001").ID, "local-password-2")
	if st, _ := e.call("GET", "/client/v1/me", bearer(pw3), nil); st != 401 {
		t.Fatal("password session survived a password change")
	}
	pw = e.mustLogin("3001", "local-password-2")

	// Switching single sign-on off ends Microsoft sessions.
	third := e.ssoToken(1)
	e.setSSO(map[string]any{"enabled": false})
	if st, _ := e.call("GET", "/client/v1/me", bearer(third), nil); st != 401 {
		t.Fatal("SSO session survived switching SSO off")
	}
	e.setSSO(map[string]any{"enabled": true})
	other = e.ssoToken(1)
	if st, _ := e.call("GET", "/client/v1/me", bearer(other), nil); st != 200 {
		t.Fatal("fresh SSO session refused")
	}

	// Disabling the integration ends Microsoft sessions, not password ones.
	if st, out := e.api("POST", "/api/v1/integration/disable", nil); st != 200 {
		t.Fatalf("disable: %d %v", st, out)
	}
	if st, _ := e.call("GET", "/client/v1/me", bearer(other), nil); st != 401 {
		t.Fatal("SSO session survived disabling the integration")
	}
	if st, _ := e.call("GET", "/client/v1/me", bearer(pw), nil); st != 200 {
		t.Fatal("password session ended by disabling the integration")
	}
	// Garbage tokens.
	for _, bad := range []string{"", "x", "default~short", strings.Repeat("a", 600), "nowhere~" + strings.Repeat("b", 40)} {
		if st, _ := e.call("GET", "/client/v1/me", bearer(bad), nil); st != 401 {
			t.Fatalf("token %q: %d", bad, st)
		}
	}
}

func (e *env) mustFind(number string) *directory.Extension {
	e.t.Helper()
	x, err := e.store.FindExtension(e.t.Context(), directory.DefaultPBX, "number", number)
	if err != nil {
		e.t.Fatal(err)
	}
	return x
}

func (e *env) mustLogin(user, pw string) string {
	e.t.Helper()
	st, out := e.call("POST", "/client/v1/login", "", map[string]any{"username": user, "password": pw})
	if st != 200 {
		e.t.Fatalf("login %s: %d %v", user, st, out)
	}
	return out["accessToken"].(string)
}

func TestClientAPI(t *testing.T) {
	e := newEnv(t)
	x := e.localExt("3001", "me@example.com", "my-password-1")
	y := e.localExt("3002", "other@example.com", "")
	tok := e.mustLogin("3001", "my-password-1")
	ctx := t.Context()
	add := func(c *directory.Contact) {
		if err := e.store.CreateContact(ctx, directory.DefaultPBX, c); err != nil {
			t.Fatal(err)
		}
	}
	// Personal contacts of this and of another extension; a visible and a hidden phonebook.
	add(&directory.Contact{ExtensionID: x.ID, FirstName: "Alice", LastName: "Mine", Mobile: "+1 555 0101", Source: directory.SourceLocal})
	add(&directory.Contact{ExtensionID: y.ID, FirstName: "Bob", LastName: "Theirs", Mobile: "+1 555 0102", Source: directory.SourceLocal})
	visible := &directory.Phonebook{Name: "Company", Source: directory.SourceLocal}
	hidden := &directory.Phonebook{Name: "Hidden", Source: directory.SourceLocal}
	for _, p := range []*directory.Phonebook{visible, hidden} {
		if err := e.store.CreatePhonebook(ctx, directory.DefaultPBX, p); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		add(&directory.Contact{PhonebookID: visible.ID, FirstName: fmt.Sprintf("Carol%d", i), LastName: "Shared", Business: "+1 555 020" + fmt.Sprint(i), Company: "Contoso", Source: directory.SourceLocal})
	}
	add(&directory.Contact{PhonebookID: hidden.ID, FirstName: "Dave", LastName: "Secret", Business: "+1 555 0301", Source: directory.SourceLocal})
	if err := e.store.SetVisibility(ctx, directory.DefaultPBX, visible.ID, []directory.Visibility{{PhonebookID: visible.ID, Kind: directory.VisibleToEveryone}}); err != nil {
		t.Fatal(err)
	}

	names := func(q string) ([]string, string) {
		t.Helper()
		st, out := e.call("GET", "/client/v1/contacts"+q, bearer(tok), nil)
		if st != 200 {
			t.Fatalf("contacts%s: %d %v", q, st, out)
		}
		var n []string
		for _, it := range out["items"].([]any) {
			n = append(n, it.(map[string]any)["firstName"].(string))
		}
		next, _ := out["nextCursor"].(string)
		return n, next
	}
	all, _ := names("")
	if got := strings.Join(all, ","); !strings.Contains(got, "Alice") || !strings.Contains(got, "Carol0") || strings.Contains(got, "Bob") || strings.Contains(got, "Dave") || len(all) != 4 {
		t.Fatalf("visible contacts: %v", all)
	}
	if got, _ := names("?search=alice"); len(got) != 1 || got[0] != "Alice" {
		t.Fatalf("search: %v", got)
	}
	// Paging with a cursor walks every visible contact once.
	var paged []string
	cursor := ""
	for range 10 {
		q := "?limit=1"
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		page, next := names(q)
		paged = append(paged, page...)
		if next == "" {
			break
		}
		cursor = next
	}
	if len(paged) != 4 {
		t.Fatalf("paged contacts: %v", paged)
	}
	if st, _ := e.call("GET", "/client/v1/contacts?limit=0", bearer(tok), nil); st != 400 {
		t.Fatal("limit=0 accepted")
	}

	// Presence.
	st, out := e.call("PUT", "/client/v1/presence", bearer(tok), map[string]any{"presence": "do_not_disturb"})
	if st != 200 || out["extension"].(map[string]any)["presence"] != "do_not_disturb" {
		t.Fatalf("presence: %d %v", st, out)
	}
	if got, _ := e.store.GetExtension(ctx, directory.DefaultPBX, x.ID); got.Presence != directory.PresenceDoNotDisturb {
		t.Fatalf("stored presence: %s", got.Presence)
	}
	if st, out := e.call("PUT", "/client/v1/presence", bearer(tok), map[string]any{"presence": "sleeping"}); st != 400 || out["error"].(map[string]any)["field"] != "presence" {
		t.Fatalf("bad presence: %d %v", st, out)
	}

	// The user's own presence mapping.
	if st, out := e.call("GET", "/client/v1/presence-sync", bearer(tok), nil); st != 200 || out["enabled"] != false {
		t.Fatalf("presence-sync default: %d %v", st, out)
	}
	st, out = e.call("PUT", "/client/v1/presence-sync", bearer(tok), map[string]any{"enabled": true, "mapping": map[string]string{"busy": "do_not_disturb", "Away": "away"}})
	if st != 200 || out["mapping"].(map[string]any)["Busy"] != "do_not_disturb" {
		t.Fatalf("presence-sync: %d %v", st, out)
	}
	raw, err := e.store.GetSetting(ctx, directory.DefaultPBX, sso.PresenceSyncKey(x.ID))
	if err != nil || !strings.Contains(string(raw), `"Busy":"do_not_disturb"`) || !strings.Contains(string(raw), `"enabled":true`) {
		t.Fatalf("stored mapping: %s %v", raw, err)
	}
	for _, bad := range []map[string]any{
		{"enabled": true, "mapping": map[string]string{"Sleeping": "away"}},
		{"enabled": true, "mapping": map[string]string{"Busy": "sleeping"}},
	} {
		if st, out := e.call("PUT", "/client/v1/presence-sync", bearer(tok), bad); st != 400 || !strings.HasPrefix(out["error"].(map[string]any)["field"].(string), "mapping.") {
			t.Fatalf("bad mapping %v: %d %v", bad, st, out)
		}
	}
	if _, out := e.call("GET", "/client/v1/presence-sync", bearer(tok), nil); out["mapping"].(map[string]any)["Away"] != "away" {
		t.Fatalf("a refused mapping changed the stored one: %v", out)
	}
}

func TestWebClientWrites(t *testing.T) {
	e := newEnv(t)
	e.localExt("3001", "me@example.com", "my-password-1")
	b := e.browser()
	res, err := b.c.PostForm(e.srv.URL+"/client/app/login", url.Values{"username": {"3001"}, "password": {"my-password-1"}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	tok := b.cookie(sso.SessionCookie)
	if tok == "" {
		t.Fatal("no session cookie after the password form")
	}
	put := func(origin, site string) int {
		req, _ := http.NewRequest("PUT", e.srv.URL+"/client/v1/presence", strings.NewReader(`{"presence":"away"}`))
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		if site != "" {
			req.Header.Set("Sec-Fetch-Site", site)
		}
		res, err := b.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if st := put("https://evil.example", "cross-site"); st != 403 {
		t.Fatalf("cross-site cookie write: %d", st)
	}
	if st := put(e.srv.URL, "same-origin"); st != 200 {
		t.Fatalf("same-origin cookie write: %d", st)
	}
	// The presence switcher form and the contacts page.
	req, _ := http.NewRequest("POST", e.srv.URL+"/client/app/presence", strings.NewReader("presence=lunch_break"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	res, err = b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(body), `value="lunch_break" selected`) {
		t.Fatalf("presence form: %d %s", res.StatusCode, body)
	}
	req, _ = http.NewRequest("POST", e.srv.URL+"/client/app/presence", strings.NewReader("presence=away"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	res, err = b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 403 {
		t.Fatalf("cross-site presence form: %d", res.StatusCode)
	}
	code, body2, _ := b.get("/client/app?q=nobody")
	if code != 200 || !strings.Contains(body2, "No contacts match") {
		t.Fatalf("contacts search page: %d %s", code, body2)
	}
	// Static assets.
	if code, js, res := b.get("/client/static/app.js"); code != 200 || !strings.Contains(js, "presence") || !strings.Contains(res.Header.Get("Content-Type"), "javascript") {
		t.Fatalf("app.js: %d %s", code, res.Header.Get("Content-Type"))
	}
	// Signed out, the web client sends the browser to the sign-in page.
	if _, body, res := e.browser().get("/client/app"); res.Request.URL.Path != "/client/" || !strings.Contains(body, "Sign in") {
		t.Fatalf("signed-out web client: %s", res.Request.URL)
	}
}

func TestAdminSSOSettings(t *testing.T) {
	e := newEnv(t)
	st, out := e.api("GET", "/api/v1/integration/sso", nil)
	if st != 200 || out["enabled"] != false || out["loginMode"] != "sso_or_password" || out["ssoRedirectUri"] != e.srv.URL+"/client/v1/sso/callback" ||
		out["desktopRedirectUri"] != sso.DefaultDesktopRedirectURI || out["mobileRedirectUri"] != sso.DefaultMobileRedirectURI {
		t.Fatalf("defaults: %d %v", st, out)
	}
	for _, c := range []struct {
		in    map[string]any
		field string
	}{
		{map[string]any{"loginMode": "password_only"}, "loginMode"},
		{map[string]any{"enabled": "yes"}, "enabled"},
		{map[string]any{"mobileRedirectUri": "javascript:alert(1)"}, "mobileRedirectUri"},
		{map[string]any{"desktopRedirectUri": "http://evil.example/sso"}, "desktopRedirectUri"},
		{map[string]any{"desktopRedirectUri": "switchboard://sso#x"}, "desktopRedirectUri"},
		{map[string]any{"sso": true}, "sso"},
	} {
		st, out := e.api("PUT", "/api/v1/integration/sso", c.in)
		if st != 400 || out["error"].(map[string]any)["field"] != c.field {
			t.Errorf("%v: %d %v", c.in, st, out)
		}
	}
	if _, out := e.api("GET", "/api/v1/integration/sso", nil); out["loginMode"] != "sso_or_password" || out["mobileRedirectUri"] != sso.DefaultMobileRedirectURI {
		t.Fatalf("a refused update changed the settings: %v", out)
	}
	out = e.setSSO(map[string]any{"enabled": true, "loginMode": "sso_only", "desktopRedirectUri": "http://127.0.0.1/cb"})
	if out["enabled"] != true || out["loginMode"] != "sso_only" || out["desktopRedirectUri"] != "http://127.0.0.1/cb" || out["mobileRedirectUri"] != sso.DefaultMobileRedirectURI {
		t.Fatalf("update: %v", out)
	}
	// An empty redirect URI (the portal's "optional" field left blank) is the default again.
	if out = e.setSSO(map[string]any{"desktopRedirectUri": ""}); out["desktopRedirectUri"] != sso.DefaultDesktopRedirectURI {
		t.Fatalf("cleared desktop URI: %v", out)
	}
	// Per PBX.
	if _, out := e.api("GET", "/api/v1/integration/sso?pbx=branch", nil); out["enabled"] != false {
		t.Fatalf("another PBX's settings: %v", out)
	}
	// Not connected: the sign-in page offers passwords only...
	if code, body, _ := e.browser().get("/client/"); code != 200 || strings.Contains(body, "Sign in with Microsoft") || !strings.Contains(body, `name="password"`) {
		t.Fatalf("sign-in page without an integration: %d %s", code, body)
	}
	// ...and Microsoft sign-in is refused with a clear page.
	if code, body, _ := e.browser().get("/client/v1/sso/start"); code != 403 || !strings.Contains(body, "not connected") {
		t.Fatalf("start without an integration: %d %s", code, body)
	}
	if code, body, _ := e.browser().get("/client/v1/sso/start?client=fax"); code != 400 || !strings.Contains(body, "client") {
		t.Fatalf("unknown client: %d %s", code, body)
	}
}
