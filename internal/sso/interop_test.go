//go:build e2e

// Interop test: the relying party signs in against a certified OpenID
// provider that nobody here wrote (panva/oidc-provider from the npm
// registry, run with node on loopback) set up to issue Entra-shaped claims.
//
//	npm ci --prefix internal/sso/testdata/oidc-provider
//	go test -tags e2e -run TestInteropOIDCProvider ./internal/sso/
package sso_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startOIDCProvider runs testdata/oidc-provider/server.mjs and returns its base URL (scheme://host:port).
func startOIDCProvider(t *testing.T, redirect string, users []map[string]string) string {
	t.Helper()
	dir := filepath.Join("testdata", "oidc-provider")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "oidc-provider")); err != nil {
		t.Fatalf("oidc-provider is not installed: run `npm ci --prefix internal/sso/testdata/oidc-provider` (%v)", err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is required (apt-get install -y nodejs): %v", err)
	}
	u, _ := json.Marshal(users)
	cmd := exec.CommandContext(t.Context(), node, "server.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TENANT_ID="+tenantID, "CLIENT_ID="+clientID, "CLIENT_SECRET="+clientSecret,
		"REDIRECT_URI="+redirect, "USERS="+string(u))
	cmd.Stderr = testWriter{t}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			var v struct{ Issuer string }
			if json.Unmarshal(sc.Bytes(), &v) == nil {
				ready <- v.Issuer
			}
		}
		close(ready)
	}()
	select {
	case iss, ok := <-ready:
		if !ok || iss == "" {
			t.Fatal("oidc-provider did not start")
		}
		p, _ := url.Parse(iss)
		return p.Scheme + "://" + p.Host
	case <-time.After(30 * time.Second):
		t.Fatal("oidc-provider did not start within 30 s")
	}
	return ""
}

func TestInteropOIDCProvider(t *testing.T) {
	e := newEnv(t)
	e.connect() // the integration (tenant, client, secret) comes from the simulated tenant
	e.syncedExt(0, "2001")
	redirect := e.srv.URL + "/client/v1/sso/callback"
	users := []map[string]string{
		{"login": e.users[0].UserPrincipalName, "oid": e.users[0].ID, "email": e.users[0].Mail, "name": e.users[0].DisplayName},
		{"login": e.users[1].UserPrincipalName, "oid": e.users[1].ID, "email": e.users[1].Mail, "name": e.users[1].DisplayName},
	}
	base := startOIDCProvider(t, redirect, users)
	e.sso.LoginURL = base // Microsoft sign-in is now the certified provider

	hint := url.QueryEscape(e.users[0].UserPrincipalName)
	b := e.browser()
	b.also = []string{base}
	code, body, res := b.get("/client/v1/sso/start?client=web&login_hint=" + hint)
	if code != 200 || res.Request.URL.Path != "/client/app" || !strings.Contains(body, ">2001<") {
		t.Fatalf("web sign-in via oidc-provider ended at %s with %d: %s", res.Request.URL, code, body)
	}
	if az := b.visitedURL(base); az == nil {
		t.Fatalf("the sign-in did not go through oidc-provider: %v", b.visited)
	}

	// Desktop code exchange.
	b = e.browser()
	b.also = []string{base}
	_, _, res = b.get("/client/v1/sso/start?client=desktop&port=40123&login_hint=" + hint)
	loc, _ := url.Parse(res.Header.Get("Location"))
	if loc == nil || loc.Host != "localhost:40123" || loc.Query().Get("code") == "" {
		t.Fatalf("desktop sign-in via oidc-provider: %s", res.Header.Get("Location"))
	}
	if st, out := e.call("POST", "/client/v1/sso/exchange", "", map[string]any{"code": loc.Query().Get("code")}); st != 200 {
		t.Fatalf("exchange: %d %v", st, out)
	}

	// A user without an extension is refused.
	b = e.browser()
	b.also = []string{base}
	if code, body, _ := b.get("/client/v1/sso/start?login_hint=" + url.QueryEscape(e.users[1].UserPrincipalName)); code != 403 || !strings.Contains(body, "not linked") {
		t.Fatalf("user without an extension: %d %s", code, body)
	}

	// A nonce swapped on the way is caught in the provider's ID token.
	b = e.browser()
	b.also = []string{base}
	b.c.CheckRedirect = wrapRedirect(b.c.CheckRedirect, func(r *http.Request) {
		if strings.HasPrefix(r.URL.String(), base) && strings.HasSuffix(r.URL.Path, "/auth") {
			q := r.URL.Query()
			q.Set("nonce", "attacker-chosen-nonce")
			r.URL.RawQuery = q.Encode()
		}
	})
	if code, body, _ := b.get("/client/v1/sso/start?login_hint=" + hint); code != 403 || !strings.Contains(body, "nonce") {
		t.Fatalf("nonce mismatch via oidc-provider: %d %s", code, body)
	}
}

func wrapRedirect(next func(*http.Request, []*http.Request) error, f func(*http.Request)) func(*http.Request, []*http.Request) error {
	return func(r *http.Request, via []*http.Request) error {
		f(r)
		return next(r, via)
	}
}
