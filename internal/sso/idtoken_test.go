package sso

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// TestCheckIDToken crafts ID tokens that a genuine identity provider would
// not issue (right key and issuer, wrong tenant; no oid; ...) and checks
// each is refused for its reason.
func TestCheckIDToken(t *testing.T) {
	const (
		iss    = "https://login.example/6b1a0a54-8f0e-4c7c-9d1b-2f0e8c1d9a01/v2.0"
		tid    = "6b1a0a54-8f0e-4c7c-9d1b-2f0e8c1d9a01"
		client = "0f4e6c2a-3b5d-4e7f-8a9b-1c2d3e4f5a6b"
		nonce  = "the-nonce"
	)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	sign := func(k *rsa.PrivateKey, claims map[string]any) string {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: k, KeyID: "k1"}}, (&jose.SignerOptions{}).WithType("JWT"))
		if err != nil {
			t.Fatal(err)
		}
		raw, err := jwt.Signed(s).Claims(claims).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	good := func() map[string]any {
		return map[string]any{"iss": iss, "aud": client, "tid": tid, "oid": "u-1", "nonce": nonce, "ver": "2.0",
			"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(), "sub": "s"}
	}
	with := func(k string, v any) map[string]any {
		c := good()
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	verifier := func(at time.Time) *oidc.IDTokenVerifier {
		return oidc.NewVerifier(iss, &oidc.StaticKeySet{PublicKeys: []crypto.PublicKey{&key.PublicKey}},
			&oidc.Config{ClientID: client, Now: func() time.Time { return at.Add(-clockSkew) }})
	}
	for _, c := range []struct {
		name   string
		raw    string
		at     time.Time
		reason string // "" = accepted
	}{
		{"genuine", sign(key, good()), now, ""},
		{"expired within the skew", sign(key, good()), now.Add(time.Hour + time.Minute), ""},
		{"expired", sign(key, good()), now.Add(time.Hour + 3*time.Minute), "expired"},
		{"other tenant, right issuer and key", sign(key, with("tid", "99999999-8888-7777-6666-555555555555")), now, "another tenant"},
		{"tid not a GUID", sign(key, with("tid", "common")), now, "another tenant"},
		{"other issuer", sign(key, with("iss", "https://login.example/99999999-8888-7777-6666-555555555555/v2.0")), now, "another tenant or provider"},
		{"other audience", sign(key, with("aud", "11111111-2222-3333-4444-555555555555")), now, "another application"},
		{"other key", sign(other, good()), now, "signature"},
		{"nonce mismatch", sign(key, with("nonce", "other")), now, "nonce"},
		{"no nonce", sign(key, with("nonce", nil)), now, "nonce"},
		{"no oid", sign(key, with("oid", nil)), now, "oid"},
		{"v1 token", sign(key, with("ver", "1.0")), now, "v2.0"},
		{"unsigned", strings.Join(strings.Split(sign(key, good()), ".")[:2], ".") + ".", now, "signature"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := checkIDToken(t.Context(), verifier(c.at), tid, c.raw, tokenHash(nonce))
			if c.reason == "" {
				if err != nil || got.ObjectID != "u-1" {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ref *Refusal
			if !errors.As(err, &ref) || ref.Code != "bad_id_token" || !strings.Contains(ref.Message, c.reason) {
				t.Fatalf("want a refusal naming %q, got %v", c.reason, err)
			}
		})
	}
}

func TestValidateRedirectURI(t *testing.T) {
	for uri, ok := range map[string]bool{
		"switchboard://sso": true, "http://localhost/sso": true, "http://127.0.0.1:8400/cb": true, "http://[::1]/cb": true,
		"https://app.example.com/sso": true, "com.example.app:/oauth": true,
		"http://example.com/sso": false, "javascript:alert(1)": false, "data:text/html,x": false, "file:///etc/passwd": false,
		"switchboard://sso#frag": false, "/relative": false, "": false, "https:///nohost": false,
	} {
		if err := validateRedirectURI("f", uri); (err == nil) != ok {
			t.Errorf("%q: %v", uri, err)
		}
	}
	if u, err := withLoopbackPort("http://localhost/sso", "8400"); err != nil || u != "http://localhost:8400/sso" {
		t.Fatalf("port: %s %v", u, err)
	}
	for _, p := range []string{"0", "70000", "x"} {
		if _, err := withLoopbackPort("http://localhost/sso", p); err == nil {
			t.Errorf("port %q accepted", p)
		}
	}
	if _, err := withLoopbackPort("switchboard://sso", "8400"); err == nil {
		t.Error("port accepted for an app scheme")
	}
}
