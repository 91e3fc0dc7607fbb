package graph

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestAADSTSMapping(t *testing.T) {
	type helper struct {
		name string
		fn   func(error) bool
	}
	helpers := []helper{
		{"IsInvalidSecret", IsInvalidSecret},
		{"IsExpiredSecret", IsExpiredSecret},
		{"IsConsentMissing", IsConsentMissing},
		{"IsTenantNotFound", IsTenantNotFound},
		{"IsRefreshTokenExpired", IsRefreshTokenExpired},
	}
	for _, tc := range []struct {
		name     string
		status   int
		body     string
		aadsts   int
		want     string // helper that must match ("" = none)
		hintWord string
	}{
		{"invalid secret", 401, `{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.\r\nTrace ID: x","error_codes":[7000215],"correlation_id":"c1"}`,
			7000215, "IsInvalidSecret", "Value"},
		{"expired secret", 401, `{"error":"invalid_client","error_description":"AADSTS7000222: The provided client secret keys for app 'x' are expired.","error_codes":[7000222]}`,
			7000222, "IsExpiredSecret", "expired"},
		{"tenant not found", 400, `{"error":"invalid_request","error_description":"AADSTS90002: Tenant 'nope' not found.","error_codes":[90002]}`,
			90002, "IsTenantNotFound", "tenant"},
		{"consent missing", 400, `{"error":"invalid_grant","error_description":"AADSTS65001: The user or administrator has not consented to use the application.","error_codes":[65001]}`,
			65001, "IsConsentMissing", "admin consent"},
		{"sp missing", 400, `{"error":"invalid_resource","error_description":"AADSTS500011: The resource principal named https://graph.microsoft.com was not found in the tenant.","error_codes":[500011]}`,
			500011, "IsConsentMissing", "admin consent"},
		{"refresh expired (code only in description)", 400, `{"error":"invalid_grant","error_description":"AADSTS700082: The refresh token has expired due to inactivity."}`,
			700082, "IsRefreshTokenExpired", "sign in"},
		{"refresh expired 70008", 400, `{"error":"invalid_grant","error_description":"AADSTS70008: expired","error_codes":[70008]}`,
			70008, "IsRefreshTokenExpired", "sign in"},
		{"not json", 502, `<html>bad gateway</html>`, 0, "", "app registration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeTenant(t)
			f.tokenHandler = func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
				fmt.Fprint(w, tc.body)
			}
			c, _ := newTestClient(t, f, func(c *Config) { c.MaxRetries = -1 })
			err := c.CheckCredentials(t.Context())
			var ae *AuthError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v, want *AuthError", err)
			}
			eq(t, "status", ae.Status, tc.status)
			eq(t, "aadsts", ae.AADSTS, tc.aadsts)
			for _, h := range helpers {
				if got := h.fn(err); got != (h.name == tc.want) {
					t.Errorf("%s = %v", h.name, got)
				}
			}
			if !strings.Contains(strings.ToLower(ae.Hint()), strings.ToLower(tc.hintWord)) {
				t.Errorf("hint %q lacks %q", ae.Hint(), tc.hintWord)
			}
			eq(t, "Hint(err)", Hint(fmt.Errorf("wrapped: %w", err)), ae.Hint())
			if strings.Contains(err.Error(), "Trace ID") {
				t.Errorf("error text keeps trace lines: %q", err.Error())
			}
		})
	}
}

func TestWrongSecretNeverLogged(t *testing.T) {
	f := newFakeTenant(t)
	var logs strings.Builder
	c, _ := newTestClient(t, f, func(c *Config) {
		c.ClientSecret = "wrong-secret-xyz"
		c.Logger = newBufLogger(&logs)
	})
	err := c.CheckCredentials(t.Context())
	if !IsInvalidSecret(err) {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(logs.String(), "wrong-secret-xyz") || strings.Contains(err.Error(), "wrong-secret-xyz") {
		t.Error("secret leaked into logs or error")
	}
}

func TestDelegatedRotation(t *testing.T) {
	f := newFakeTenant(t)
	var seen []string
	f.tokenHandler = func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		rt := r.PostForm.Get("refresh_token")
		seen = append(seen, rt)
		if rt == "revoked" {
			w.WriteHeader(400)
			fmt.Fprint(w, `{"error":"invalid_grant","error_description":"AADSTS700082: The refresh token has expired due to inactivity.","error_codes":[700082]}`)
			return
		}
		n := len(seen)
		writeJSON(w, 200, map[string]any{"token_type": "Bearer", "expires_in": 3599,
			"access_token": fmt.Sprintf("at-%d", n), "refresh_token": fmt.Sprintf("rt-%d", n)})
	}
	f.mux.HandleFunc("GET /v1.0/users/u1/presence", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "Bearer at-1" {
			graphError(w, 401, "InvalidAuthenticationToken", "expired")
			return
		}
		writeJSON(w, 200, map[string]string{"id": "u1"})
	})
	var stored []string
	failStore := true
	cfg := testConfig(t, f)
	cfg.Sleep = (&sleeper{}).Sleep
	c, err := NewDelegated(cfg, "rt-0", func(_ context.Context, rt string) error {
		if failStore {
			failStore = false
			return errors.New("db down")
		}
		stored = append(stored, rt)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// First refresh: store fails (logged, kept pending); the 401 forces a second refresh,
	// which presents rt-1 and stores rt-2.
	if _, err := c.GetPresence(t.Context(), "u1"); err != nil {
		t.Fatal(err)
	}
	eq(t, "presented", strings.Join(seen, ","), "rt-0,rt-1")
	eq(t, "stored", strings.Join(stored, ","), "rt-2")

	d, err := NewDelegated(cfg, "revoked", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.GetPresence(t.Context(), "u1")
	if !IsRefreshTokenExpired(err) {
		t.Errorf("err = %v, want refresh token expired", err)
	}
}

func TestAuthorizeAndConsentURLs(t *testing.T) {
	c, err := New(Config{TenantID: "organizations", ClientID: "cid", ClientSecret: "s"})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(c.AuthorizeURL(AuthorizeParams{RedirectURI: "https://pbx.example.com/cb", Scopes: []string{"openid", "profile"},
		State: "st", Nonce: "n", CodeChallenge: "ch", LoginHint: "a@b.c"}))
	eq(t, "path", u.Path, "/organizations/oauth2/v2.0/authorize")
	q := u.Query()
	eq(t, "scope", q.Get("scope"), "openid profile")
	eq(t, "method", q.Get("code_challenge_method"), "S256")
	eq(t, "hint", q.Get("login_hint"), "a@b.c")
	eq(t, "response_type", q.Get("response_type"), "code")

	u, _ = url.Parse(c.AdminConsentURL("https://pbx.example.com/consent", "st2"))
	eq(t, "consent path", u.Path, "/organizations/v2.0/adminconsent")
	eq(t, "consent scope", u.Query().Get("scope"), DefaultScope)
}

// roles.go was added to this package by another engineer; this covers it.
func TestGrantedRoles(t *testing.T) {
	f := newFakeTenant(t)
	payload := base64.RawURLEncoding.EncodeToString([]byte(`{"tid":"t1","roles":["User.Read.All","Presence.Read.All"]}`))
	f.tokenHandler = func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"token_type": "Bearer", "expires_in": 3599, "access_token": "eyJhbGciOiJub25lIn0." + payload + ".sig"})
	}
	c, _ := newTestClient(t, f)
	roles, err := c.GrantedRoles(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "roles", strings.Join(roles, ","), "User.Read.All,Presence.Read.All")
	if _, err := ParseTokenClaims("not-a-jwt"); err == nil {
		t.Error("non-JWT accepted")
	}
}
