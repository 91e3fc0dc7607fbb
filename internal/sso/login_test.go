package sso_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestPasswordLogin(t *testing.T) {
	e := newEnv(t)
	e.connect()
	local := e.localExt("3001", "local@example.com", "local-password-1")
	synced := e.syncedExt(0, "2001")
	e.setPassword(synced.ID, "synced-password-1")
	e.localExt("3002", "nopass@example.com", "")

	login := func(user, pw string) (int, map[string]any) {
		return e.call("POST", "/client/v1/login", "", map[string]any{"username": user, "password": pw})
	}
	// By number and by email (any case).
	st, out := login("3001", "local-password-1")
	if st != 200 || out["extension"].(map[string]any)["id"] != local.ID || out["accessToken"] == "" {
		t.Fatalf("login by number: %d %v", st, out)
	}
	localTok := out["accessToken"].(string)
	if st, out := login("LOCAL@example.com", "local-password-1"); st != 200 {
		t.Fatalf("login by email: %d %v", st, out)
	}
	if st, me := e.call("GET", "/client/v1/me", bearer(localTok), nil); st != 200 || me["extension"].(map[string]any)["number"] != "3001" {
		t.Fatalf("me: %d %v", st, me)
	}
	// Unknown user, wrong password and no password set look the same.
	var answers []string
	for _, c := range [][2]string{{"3001", "wrong-password"}, {"9999", "local-password-1"}, {"3002", "anything-at-all"}, {"nobody@example.com", "x"}} {
		st, out := login(c[0], c[1])
		if st != 401 {
			t.Fatalf("login %v: %d %v", c, st, out)
		}
		answers = append(answers, fmt.Sprint(out))
	}
	for _, a := range answers[1:] {
		if a != answers[0] {
			t.Fatalf("refusals differ: %v", answers)
		}
	}

	// A synced user may use the password while the mode is sso_or_password...
	st, out = login("2001", "synced-password-1")
	if st != 200 {
		t.Fatalf("synced user, sso_or_password: %d %v", st, out)
	}
	syncedTok := out["accessToken"].(string)
	// ...but not in sso_only mode, which also ends the password session it has.
	e.setSSO(map[string]any{"loginMode": "sso_only"})
	st, out = login("2001", "synced-password-1")
	if st != 403 || out["error"].(map[string]any)["code"] != "sso_required" || !strings.Contains(fmt.Sprint(out), "Microsoft") {
		t.Fatalf("synced user, sso_only: %d %v", st, out)
	}
	if st, _ := e.call("GET", "/client/v1/me", bearer(syncedTok), nil); st != 401 {
		t.Fatalf("synced user's password session in sso_only mode: %d", st)
	}
	// Local extensions keep signing in with passwords.
	if st, out := login("3001", "local-password-1"); st != 200 {
		t.Fatalf("local user, sso_only: %d %v", st, out)
	}
	if st, _ := e.call("GET", "/client/v1/me", bearer(localTok), nil); st != 200 {
		t.Fatal("local password session ended by sso_only")
	}
	// Microsoft sign-in still works for the synced user.
	if code, body, _ := e.browser().get("/client/v1/sso/start?login_hint=" + url.QueryEscape(e.users[0].UserPrincipalName)); code != 200 || !strings.Contains(body, ">2001<") {
		t.Fatalf("SSO in sso_only mode: %d %s", code, body)
	}
	// sso_only with SSO switched off does not lock synced users out.
	e.setSSO(map[string]any{"enabled": false})
	if st, out := login("2001", "synced-password-1"); st != 200 {
		t.Fatalf("synced user, sso_only but SSO off: %d %v", st, out)
	}

	// The web client's password form.
	b := e.browser()
	res, err := b.c.PostForm(e.srv.URL+"/client/app/login", url.Values{"username": {"3001"}, "password": {"local-password-1"}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.Request.URL.Path != "/client/app" || res.StatusCode != 200 {
		t.Fatalf("web password login ended at %s (%d)", res.Request.URL, res.StatusCode)
	}
	// Bad bodies name the field.
	if st, out := e.call("POST", "/client/v1/login", "", map[string]any{"user": "3001"}); st != 400 || out["error"].(map[string]any)["field"] != "user" {
		t.Fatalf("unknown field: %d %v", st, out)
	}
	if st, out := e.call("POST", "/client/v1/login?pbx=nowhere", "", map[string]any{"username": "3001", "password": "x"}); st != 400 || out["error"].(map[string]any)["field"] != "pbx" {
		t.Fatalf("unknown PBX: %d %v", st, out)
	}
}

func TestLoginRateLimit(t *testing.T) {
	e := newEnv(t)
	e.localExt("3001", "a@example.com", "right-password-1")
	login := func(user, pw, addr string) int {
		req, _ := http.NewRequest("POST", e.srv.URL+"/client/v1/login", strings.NewReader(fmt.Sprintf(`{"username":%q,"password":%q}`, user, pw)))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode == 429 && res.Header.Get("Retry-After") == "" {
			t.Fatal("429 without Retry-After")
		}
		return res.StatusCode
	}
	// Per username: five guesses, then even the right password is refused.
	for i := range 5 {
		if st := login("3001", fmt.Sprintf("guess-%d", i), ""); st != 401 {
			t.Fatalf("guess %d: %d", i, st)
		}
	}
	if st := login("3001", "right-password-1", ""); st != 429 {
		t.Fatalf("sixth attempt: %d", st)
	}
	// The same extension named by its email shares the limit.
	if st := login("A@example.com", "right-password-1", ""); st != 429 {
		t.Fatalf("login by email after guesses by number: %d", st)
	}
	// ...but spraying many usernames from one address hits the address limit.
	e.sso.AddrBurst = 30
	sprayed := 0
	for i := range 40 {
		if st := login(fmt.Sprintf("user%d@example.com", i), "x", ""); st == 429 {
			break
		}
		sprayed++
	}
	if sprayed > 30 {
		t.Fatalf("%d usernames sprayed from one address before the limit", sprayed)
	}
}
