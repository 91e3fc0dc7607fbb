package idp

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

func TestClientCredentialsWithOAuth2Library(t *testing.T) {
	for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInParams, oauth2.AuthStyleInHeader} {
		b := newBundle(t)
		cfg := clientcredentials.Config{
			ClientID: syncID, ClientSecret: syncSecret, TokenURL: b.tokenURL(),
			Scopes: []string{"https://graph.microsoft.com/.default"}, AuthStyle: style,
		}
		ctx := oidc.ClientContext(t.Context(), b.srv.Client())
		tok, err := cfg.Token(ctx)
		if err != nil {
			t.Fatalf("auth style %v: %v", style, err)
		}
		if tok.TokenType != "Bearer" || tok.Expiry.IsZero() || tok.RefreshToken != "" {
			t.Errorf("token %+v", tok)
		}
		c, err := b.p.ValidateAccessToken(tok.AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		if c.AppID != syncID || c.TenantID != testTenant || c.Delegated || c.ObjectID == "" ||
			!slices.Equal(c.Roles, []string{"User.Read.All", "Group.Read.All"}) || len(c.Scopes) != 0 {
			t.Errorf("claims %+v", c)
		}
		if got := c.ExpiresAt.Sub(b.start); got != 3599*time.Second {
			t.Errorf("expires after %v, want 3599s", got)
		}
		claims := jwtPart(t, tok.AccessToken, 1)
		if claims["iss"] != "https://sts.windows.net/"+testTenant+"/" || claims["aud"] != "https://graph.microsoft.com" ||
			claims["ver"] != "1.0" || claims["idtyp"] != "app" || claims["appid"] != syncID {
			t.Errorf("access token claims %v", claims)
		}
	}
}

func TestClientCredentialsOnOrganizationsAndDomain(t *testing.T) {
	b := newBundle(t)
	for _, tenant := range []string{"organizations", "contoso.onmicrosoft.com", strings.ToUpper(testTenant)} {
		status, body := b.postToken(t, b.url(tenant, "/oauth2/v2.0/token"), url.Values{
			"grant_type": {"client_credentials"}, "client_id": {syncID}, "client_secret": {syncSecret},
			"scope": {"00000003-0000-0000-c000-000000000000/.default"},
		})
		if status != http.StatusOK || body["access_token"] == nil {
			t.Errorf("%s: %d %v", tenant, status, body)
		}
	}
}

// TestAuthorizationCodePKCE runs the whole code flow with golang.org/x/oauth2 and
// verifies the ID token with go-oidc, for a confidential and a public client.
func TestAuthorizationCodePKCE(t *testing.T) {
	b := newBundle(t)
	ctx := oidc.ClientContext(t.Context(), b.srv.Client())
	prov, err := oidc.NewProvider(ctx, b.url(testTenant, "/v2.0"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, clientID, secret, redirectURI string
	}{
		{"confidential", syncID, syncSecret, redirect},
		{"public", publicID, "", "http://localhost"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := oauth2.Config{
				ClientID: tc.clientID, ClientSecret: tc.secret, Endpoint: prov.Endpoint(), RedirectURL: tc.redirectURI,
				Scopes: []string{oidc.ScopeOpenID, "profile", "email", oidc.ScopeOfflineAccess,
					"https://graph.microsoft.com/User.Read", "Presence.ReadWrite"},
			}
			verifier := oauth2.GenerateVerifier()
			authURL := cfg.AuthCodeURL("state-xyz", oauth2.S256ChallengeOption(verifier), oidc.Nonce("nonce-1"),
				oauth2.SetAuthURLParam("login_hint", "ALICE@contoso.com"))
			resp, body := b.get(t, authURL)
			if resp.StatusCode != http.StatusFound {
				t.Fatalf("authorize %d: %s", resp.StatusCode, body)
			}
			loc, _ := url.Parse(resp.Header.Get("Location"))
			if got := loc.Scheme + "://" + loc.Host + loc.Path; got != tc.redirectURI {
				t.Fatalf("redirected to %s", got)
			}
			if loc.Query().Get("state") != "state-xyz" || loc.Query().Get("code") == "" {
				t.Fatalf("redirect query %v", loc.Query())
			}
			tok, err := cfg.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatal(err)
			}
			if tok.RefreshToken == "" {
				t.Error("no refresh token despite offline_access")
			}
			rawID, _ := tok.Extra("id_token").(string)
			idt, err := prov.Verifier(&oidc.Config{ClientID: tc.clientID, Now: b.clock.Now}).Verify(ctx, rawID)
			if err != nil {
				t.Fatal(err)
			}
			var claims struct {
				Nonce, OID, TID, Name, Email, Ver string
				PreferredUsername                 string `json:"preferred_username"`
			}
			if err := idt.Claims(&claims); err != nil {
				t.Fatal(err)
			}
			if claims.Nonce != "nonce-1" || claims.OID != alice.ID || claims.TID != testTenant ||
				claims.PreferredUsername != alice.UserPrincipalName || claims.Email != alice.Mail ||
				claims.Name != alice.DisplayName || claims.Ver != "2.0" || len(idt.Subject) != 43 {
				t.Errorf("id token claims %+v sub %q", claims, idt.Subject)
			}
			c, err := b.p.ValidateAccessToken(tok.AccessToken)
			if err != nil {
				t.Fatal(err)
			}
			if !c.Delegated || c.ObjectID != alice.ID || c.AppID != tc.clientID || c.UserPrincipalName != alice.UserPrincipalName ||
				!slices.Contains(c.Scopes, "User.Read") || !slices.Contains(c.Scopes, "Presence.ReadWrite") ||
				slices.Contains(c.Scopes, "offline_access") || len(c.Roles) != 0 {
				t.Errorf("access claims %+v", c)
			}
			if s, _ := tok.Extra("scope").(string); !strings.Contains(s, "https://graph.microsoft.com/User.Read") ||
				!strings.Contains(s, "offline_access") {
				t.Errorf("scope %q", s)
			}
			// UserInfo through go-oidc, with the access token.
			ui, err := prov.UserInfo(ctx, oauth2.StaticTokenSource(tok))
			if err != nil {
				t.Fatal(err)
			}
			if ui.Subject != idt.Subject || ui.Email != alice.Mail {
				t.Errorf("userinfo %+v", ui)
			}
		})
	}
}

func TestAuthorizeDefaultsToFirstGlobalAdminAndFormPost(t *testing.T) {
	b := newBundle(t)
	params := authParams(syncID, redirect, "openid profile offline_access User.Read", "response_mode", "form_post")
	resp, body := b.get(t, b.url(testTenant, "/oauth2/v2.0/authorize")+"?"+params.Encode())
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `action="`+redirect+`"`) ||
		!strings.Contains(body, `name="state" value="st-123"`) || !strings.Contains(body, "document.forms[0].submit()") {
		t.Fatalf("form_post %d: %s", resp.StatusCode, body)
	}
	i := strings.Index(body, `name="code" value="`)
	if i < 0 {
		t.Fatalf("no code in %s", body)
	}
	code := body[i+len(`name="code" value="`):]
	code = code[:strings.IndexByte(code, '"')]
	status, tok := b.postToken(t, b.tokenURL(), url.Values{
		"grant_type": {"authorization_code"}, "client_id": {syncID}, "client_secret": {syncSecret},
		"code": {code}, "redirect_uri": {redirect},
	})
	if status != http.StatusOK {
		t.Fatalf("redeem %d %v", status, tok)
	}
	c, err := b.p.ValidateAccessToken(tok["access_token"].(string))
	if err != nil || c.ObjectID != admin.ID {
		t.Fatalf("claims %+v, %v", c, err)
	}
	id := jwtPart(t, tok["id_token"].(string), 1)
	if id["nonce"] != "n-456" || id["email"] != nil {
		t.Errorf("id token without email scope: %v", id)
	}
}

// code runs the authorize endpoint with params and returns the issued code.
func (b *bundle) code(t *testing.T, params url.Values) string {
	t.Helper()
	q := b.authorize(t, testTenant, params)
	if q.Get("code") == "" {
		t.Fatalf("no code: %v", q)
	}
	return q.Get("code")
}

func TestAuthorizationCodeErrors(t *testing.T) {
	verifier := oauth2.GenerateVerifier()
	pkce := func(extra ...string) url.Values {
		p := authParams(syncID, redirect, "openid offline_access User.Read", extra...)
		p.Set("code_challenge", oauth2.S256ChallengeFromVerifier(verifier))
		p.Set("code_challenge_method", "S256")
		return p
	}
	redeem := func(code string, kv ...string) url.Values {
		v := url.Values{"grant_type": {"authorization_code"}, "client_id": {syncID}, "client_secret": {syncSecret},
			"code": {code}, "redirect_uri": {redirect}, "code_verifier": {verifier}}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "" {
				v.Del(kv[i])
			} else {
				v.Set(kv[i], kv[i+1])
			}
		}
		return v
	}
	b := newBundle(t)

	t.Run("replay", func(t *testing.T) {
		code := b.code(t, pkce())
		if s, body := b.postToken(t, b.tokenURL(), redeem(code)); s != http.StatusOK {
			t.Fatalf("first redemption %d %v", s, body)
		}
		s, body := b.postToken(t, b.tokenURL(), redeem(code))
		checkAADError(t, s, body, 400, "invalid_grant", 54005)
	})
	t.Run("wrong verifier", func(t *testing.T) {
		s, body := b.postToken(t, b.tokenURL(), redeem(b.code(t, pkce()), "code_verifier", oauth2.GenerateVerifier()))
		checkAADError(t, s, body, 400, "invalid_grant", 501481)
	})
	t.Run("missing verifier", func(t *testing.T) {
		s, body := b.postToken(t, b.tokenURL(), redeem(b.code(t, pkce()), "code_verifier", ""))
		checkAADError(t, s, body, 400, "invalid_grant", 501481)
	})
	t.Run("plain challenge", func(t *testing.T) {
		p := pkce()
		p.Set("code_challenge", verifier)
		p.Set("code_challenge_method", "plain")
		if s, body := b.postToken(t, b.tokenURL(), redeem(b.code(t, p))); s != http.StatusOK {
			t.Fatalf("%d %v", s, body)
		}
	})
	t.Run("other redirect uri", func(t *testing.T) {
		s, body := b.postToken(t, b.tokenURL(), redeem(b.code(t, pkce()), "redirect_uri", "http://localhost:9999/sso"))
		checkAADError(t, s, body, 400, "invalid_grant", 500112)
	})
	t.Run("other client", func(t *testing.T) {
		s, body := b.postToken(t, b.tokenURL(), redeem(b.code(t, pkce()), "client_id", publicID, "client_secret", ""))
		checkAADError(t, s, body, 400, "invalid_grant", 70000)
	})
	t.Run("unknown code", func(t *testing.T) {
		s, body := b.postToken(t, b.tokenURL(), redeem("1.Anot-a-code"))
		checkAADError(t, s, body, 400, "invalid_grant", 70000)
	})
	t.Run("expired code", func(t *testing.T) {
		code := b.code(t, pkce())
		b.clock.Advance(10*time.Minute + time.Second)
		s, body := b.postToken(t, b.tokenURL(), redeem(code))
		checkAADError(t, s, body, 400, "invalid_grant", 70008)
	})
	t.Run("missing secret for confidential app", func(t *testing.T) {
		s, body := b.postToken(t, b.tokenURL(), redeem(b.code(t, pkce()), "client_secret", ""))
		checkAADError(t, s, body, 401, "invalid_client", 7000218)
	})
	t.Run("public client sends a secret", func(t *testing.T) {
		p := authParams(publicID, "http://localhost", "openid")
		s, body := b.postToken(t, b.tokenURL(), url.Values{"grant_type": {"authorization_code"}, "client_id": {publicID},
			"client_secret": {"x"}, "code": {b.code(t, p)}, "redirect_uri": {"http://localhost"}})
		checkAADError(t, s, body, 401, "invalid_client", 700025)
	})
	t.Run("consent revoked before redemption", func(t *testing.T) {
		code := b.code(t, pkce())
		if err := b.p.UpdateApp(syncID, func(a *App) { a.Consented = false }); err != nil {
			t.Fatal(err)
		}
		defer b.p.UpdateApp(syncID, func(a *App) { a.Consented = true })
		s, body := b.postToken(t, b.tokenURL(), redeem(code))
		checkAADError(t, s, body, 400, "invalid_grant", 65001)
		if body["suberror"] != "consent_required" {
			t.Errorf("suberror %v", body["suberror"])
		}
	})
	t.Run("invalid scope on redemption", func(t *testing.T) {
		s, body := b.postToken(t, b.tokenURL(), redeem(b.code(t, pkce()), "scope", "https://foo.microsoft.com/mail.read"))
		checkAADError(t, s, body, 400, "invalid_scope", 70011)
	})
}

func TestRefreshTokenRotation(t *testing.T) {
	b := newBundle(t)
	code := b.code(t, authParams(syncID, redirect, "openid profile offline_access User.Read Presence.ReadWrite",
		"login_hint", alice.UserPrincipalName))
	s, first := b.postToken(t, b.tokenURL(), url.Values{"grant_type": {"authorization_code"}, "client_id": {syncID},
		"client_secret": {syncSecret}, "code": {code}, "redirect_uri": {redirect}})
	if s != http.StatusOK {
		t.Fatalf("%d %v", s, first)
	}
	rt1 := first["refresh_token"].(string)
	refresh := func(rt string, kv ...string) (int, map[string]any) {
		v := url.Values{"grant_type": {"refresh_token"}, "client_id": {syncID}, "client_secret": {syncSecret}, "refresh_token": {rt}}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return b.postToken(t, b.tokenURL(), v)
	}

	b.clock.Advance(time.Hour)
	s, second := refresh(rt1)
	if s != http.StatusOK {
		t.Fatalf("%d %v", s, second)
	}
	rt2, _ := second["refresh_token"].(string)
	if rt2 == "" || rt2 == rt1 || second["id_token"] == nil {
		t.Fatalf("refresh did not rotate: %v", second)
	}
	c, err := b.p.ValidateAccessToken(second["access_token"].(string))
	if err != nil || c.ObjectID != alice.ID || !slices.Contains(c.Scopes, "Presence.ReadWrite") {
		t.Fatalf("claims %+v %v", c, err)
	}
	if id := jwtPart(t, second["id_token"].(string), 1); id["nonce"] != nil || id["oid"] != alice.ID {
		t.Errorf("refreshed id token %v", id)
	}
	// Microsoft does not revoke the old refresh token on use.
	if s, body := refresh(rt1); s != http.StatusOK {
		t.Errorf("old refresh token: %d %v", s, body)
	}
	// Narrowing the scope works; widening beyond consent does not.
	if s, body := refresh(rt2, "scope", "User.Read offline_access"); s != http.StatusOK ||
		strings.Contains(body["scope"].(string), "Presence") {
		t.Errorf("narrowed refresh: %d %v", s, body)
	}
	s, body := refresh(rt2, "scope", "Mail.Send")
	checkAADError(t, s, body, 400, "invalid_grant", 65001)
	s, body = refresh(rt2, "scope", "https://foo.microsoft.com/mail.read")
	checkAADError(t, s, body, 400, "invalid_scope", 70011)
	s, body = refresh("garbage")
	checkAADError(t, s, body, 400, "invalid_grant", 9002313)
	s, body = b.postToken(t, b.tokenURL(), url.Values{"grant_type": {"refresh_token"}, "client_id": {publicID}, "refresh_token": {rt2}})
	checkAADError(t, s, body, 400, "invalid_grant", 70000)

	// A disabled user cannot refresh.
	b.dir.update(alice.ID, func(u *User) { u.Enabled = false })
	s, body = refresh(rt2)
	checkAADError(t, s, body, 400, "invalid_grant", 50057)
	b.dir.update(alice.ID, func(u *User) { u.Enabled = true })

	// Expiry after 90 days of inactivity.
	b.clock.Advance(90*24*time.Hour - 2*time.Hour)
	if s, body := refresh(rt2); s != http.StatusOK {
		t.Fatalf("before expiry: %d %v", s, body)
	}
	b.clock.Advance(2 * time.Hour)
	s, body = refresh(rt2)
	checkAADError(t, s, body, 400, "invalid_grant", 700082)
}

func TestRevokeRefreshTokens(t *testing.T) {
	b := newBundle(t)
	code := b.code(t, authParams(publicID, "http://localhost", "offline_access User.Read", "login_hint", alice.Mail))
	s, tok := b.postToken(t, b.tokenURL(), url.Values{"grant_type": {"authorization_code"}, "client_id": {publicID},
		"code": {code}, "redirect_uri": {"http://localhost"}})
	if s != http.StatusOK || tok["id_token"] != nil {
		t.Fatalf("%d %v", s, tok)
	}
	b.p.RevokeRefreshTokens(alice.ID)
	s, body := b.postToken(t, b.tokenURL(), url.Values{"grant_type": {"refresh_token"}, "client_id": {publicID},
		"refresh_token": {tok["refresh_token"].(string)}})
	checkAADError(t, s, body, 400, "invalid_grant", 50173)
}

func TestTokenEndpointErrors(t *testing.T) {
	b := newBundle(t)
	cc := func(kv ...string) url.Values {
		v := url.Values{"grant_type": {"client_credentials"}, "client_id": {syncID}, "client_secret": {syncSecret},
			"scope": {"https://graph.microsoft.com/.default"}}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "" {
				v.Del(kv[i])
			} else {
				v.Set(kv[i], kv[i+1])
			}
		}
		return v
	}
	for _, tc := range []struct {
		name   string
		tenant string
		form   url.Values
		basic  []string
		status int
		err    string
		code   int
	}{
		{"wrong secret", testTenant, cc("client_secret", "nope"), nil, 401, "invalid_client", 7000215},
		{"wrong secret basic", testTenant, cc("client_secret", "", "client_id", ""), []string{syncID, "nope"}, 401, "invalid_client", 7000215},
		{"expired secret", testTenant, cc("client_secret", oldSecret), nil, 401, "invalid_client", 7000222},
		{"missing secret", testTenant, cc("client_secret", ""), nil, 401, "invalid_client", 7000218},
		{"unknown client", testTenant, cc("client_id", "99999999-0000-0000-0000-000000000000"), nil, 400, "unauthorized_client", 700016},
		{"unknown tenant", "bbbbbbbb-0000-0000-0000-000000000000", cc(), nil, 400, "invalid_request", 90002},
		{"common", "common", cc(), nil, 400, "invalid_request", 9001023},
		{"bad scope", testTenant, cc("scope", "https://graph.microsoft.com/User.Read.All"), nil, 400, "invalid_scope", 70011},
		{"other resource", testTenant, cc("scope", "https://foo.microsoft.com/.default"), nil, 400, "invalid_scope", 70011},
		{"missing scope", testTenant, cc("scope", ""), nil, 400, "invalid_request", 900144},
		{"not consented", testTenant, cc("client_id", freshID), nil, 401, "invalid_client", 7000229},
		{"unsupported grant", testTenant, cc("grant_type", "password"), nil, 400, "unsupported_grant_type", 70003},
		{"missing grant", testTenant, cc("grant_type", ""), nil, 400, "invalid_request", 900144},
		{"missing client", testTenant, cc("client_id", ""), nil, 400, "invalid_request", 900144},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, body := b.postToken(t, b.url(tc.tenant, "/oauth2/v2.0/token"), tc.form, tc.basic...)
			checkAADError(t, s, body, tc.status, tc.err, tc.code)
		})
	}
}

func TestHomeTenantAppWithoutConsentGetsNoRoles(t *testing.T) {
	b := newBundle(t)
	_ = b.p.UpdateApp(freshID, func(a *App) { a.HomeTenant = true })
	s, body := b.postToken(t, b.tokenURL(), url.Values{"grant_type": {"client_credentials"}, "client_id": {freshID},
		"client_secret": {syncSecret}, "scope": {"https://graph.microsoft.com/.default"}})
	if s != http.StatusOK {
		t.Fatalf("%d %v", s, body)
	}
	c, err := b.p.ValidateAccessToken(body["access_token"].(string))
	if err != nil || len(c.Roles) != 0 {
		t.Fatalf("claims %+v %v", c, err)
	}
	if _, ok := jwtPart(t, body["access_token"].(string), 1)["roles"]; ok {
		t.Error("roles claim present without consent")
	}
}

func TestSecretExpiresWithClock(t *testing.T) {
	b := newBundle(t)
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {syncID}, "client_secret": {syncSecret},
		"scope": {"https://graph.microsoft.com/.default"}}
	if s, body := b.postToken(t, b.tokenURL(), form); s != http.StatusOK {
		t.Fatalf("%d %v", s, body)
	}
	b.clock.Advance(366 * 24 * time.Hour)
	s, body := b.postToken(t, b.tokenURL(), form)
	checkAADError(t, s, body, 401, "invalid_client", 7000222)
	// Rotation: a second secret makes the app work again while the old one stays expired.
	_ = b.p.UpdateApp(syncID, func(a *App) {
		a.Secrets = append(a.Secrets, Secret{Value: "new~secret", Expires: b.clock.Now().AddDate(0, 6, 0)})
	})
	form.Set("client_secret", "new~secret")
	if s, body := b.postToken(t, b.tokenURL(), form); s != http.StatusOK {
		t.Fatalf("new secret: %d %v", s, body)
	}
}

func TestAuthorizeErrors(t *testing.T) {
	b := newBundle(t)
	authz := func(tenant string, p url.Values) (*http.Response, string) {
		return b.get(t, b.url(tenant, "/oauth2/v2.0/authorize")+"?"+p.Encode())
	}
	// Errors where the redirect cannot be trusted: an HTML page.
	for _, tc := range []struct {
		name, tenant string
		params       url.Values
		want         string
	}{
		{"unknown client", testTenant, authParams("99999999-0000-0000-0000-000000000000", redirect, "openid"), "AADSTS700016"},
		{"redirect mismatch", testTenant, authParams(syncID, redirect+"/x", "openid"), "AADSTS50011"},
		{"unknown tenant", "nosuch.example", authParams(syncID, redirect, "openid"), "AADSTS90002"},
	} {
		resp, body := authz(tc.tenant, tc.params)
		if resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
			!strings.Contains(body, tc.want) || resp.Header.Get("Location") != "" {
			t.Errorf("%s: %d %q %s", tc.name, resp.StatusCode, resp.Header.Get("Location"), body)
		}
	}
	// Errors sent back to the registered redirect URI.
	for _, tc := range []struct {
		name   string
		params url.Values
		err    string
		code   string
	}{
		{"unknown user", authParams(syncID, redirect, "openid", "login_hint", "nobody@contoso.com"), "invalid_request", "AADSTS50034"},
		{"disabled user", authParams(syncID, redirect, "openid", "login_hint", bob.UserPrincipalName), "access_denied", "AADSTS50057"},
		{"response type", authParams(syncID, redirect, "openid", "response_type", "token"), "unsupported_response_type", "AADSTS700054"},
		{"bad scope", authParams(syncID, redirect, "openid https://foo.microsoft.com/mail.read"), "invalid_scope", "AADSTS70011"},
		{"missing scope", authParams(syncID, redirect, ""), "invalid_request", "AADSTS900144"},
		{"bad pkce method", authParams(syncID, redirect, "openid", "code_challenge", "abc", "code_challenge_method", "S512"), "invalid_request", "AADSTS90023"},
		{"non-admin, unconsented app", authParams(freshID, redirect, "openid User.Read", "login_hint", alice.UserPrincipalName), "consent_required", "AADSTS65001"},
		{"non-admin, scope beyond consent", authParams(syncID, redirect, "openid Mail.Send", "login_hint", alice.UserPrincipalName), "consent_required", "AADSTS65001"},
		{"prompt none, unconsented app", authParams(freshID, redirect, "openid", "prompt", "none"), "consent_required", "AADSTS65001"},
	} {
		q := b.authorize(t, testTenant, tc.params)
		if q.Get("error") != tc.err || !strings.HasPrefix(q.Get("error_description"), tc.code+": ") || q.Get("state") != "st-123" || q.Get("code") != "" {
			t.Errorf("%s: %v", tc.name, q)
		}
	}
	// Fragment response mode.
	q := b.authorize(t, testTenant, authParams(syncID, redirect, "openid", "response_mode", "fragment"))
	if q.Get("code") == "" {
		t.Errorf("fragment: %v", q)
	}
}

func TestConsentAtSignIn(t *testing.T) {
	b := newBundle(t)
	// A user cannot consent for an app that holds application permissions
	// (admin-only): AADSTS90094, and the app stays unconsented.
	q := b.authorize(t, testTenant, authParams(freshID, redirect, "openid User.Read", "login_hint", alice.UserPrincipalName, "prompt", "consent"))
	if q.Get("error") != "access_denied" || !strings.HasPrefix(q.Get("error_description"), "AADSTS90094: ") {
		t.Fatalf("non-admin prompt=consent on an app with app roles: %v", q)
	}
	if a, _ := b.p.App(freshID); a.Consented {
		t.Error("app consented by a non-admin")
	}
	// Without application permissions, the user's own consent is enough.
	_ = b.p.UpdateApp(freshID, func(a *App) { a.AppRoles = nil })
	q = b.authorize(t, testTenant, authParams(freshID, redirect, "openid User.Read", "login_hint", alice.UserPrincipalName, "prompt", "consent"))
	if q.Get("code") == "" {
		t.Fatalf("prompt=consent: %v", q)
	}
	if a, _ := b.p.App(freshID); !a.Consented || !slices.Contains(a.DelegatedScopes, "User.Read") {
		t.Errorf("app after consent %+v", a)
	}
	// An administrator consents for the organisation to new scopes (dynamic consent).
	q = b.authorize(t, testTenant, authParams(syncID, redirect, "openid Mail.Send"))
	if q.Get("code") == "" {
		t.Fatalf("admin sign-in: %v", q)
	}
	if a, _ := b.p.App(syncID); !slices.Contains(a.DelegatedScopes, "Mail.Send") {
		t.Errorf("scopes after admin consent %v", a.DelegatedScopes)
	}
}

func TestAdminConsent(t *testing.T) {
	for _, v2 := range []bool{false, true} {
		b := newBundle(t)
		path := "/adminconsent"
		if v2 {
			path = "/v2.0/adminconsent"
		}
		params := url.Values{"client_id": {freshID}, "redirect_uri": {redirect}, "state": {"s1"}}
		if v2 {
			params.Set("scope", "https://graph.microsoft.com/.default")
		}
		// A non-administrator cannot consent.
		params.Set("login_hint", alice.UserPrincipalName)
		resp, _ := b.get(t, b.url("organizations", path)+"?"+params.Encode())
		loc, _ := url.Parse(resp.Header.Get("Location"))
		q := loc.Query()
		if resp.StatusCode != http.StatusFound || q.Get("error") != "access_denied" ||
			!strings.HasPrefix(q.Get("error_description"), "AADSTS90094: ") || q.Get("state") != "s1" ||
			(q.Get("admin_consent") == "True") != v2 {
			t.Errorf("v2=%v non-admin: %d %v", v2, resp.StatusCode, q)
		}
		if a, _ := b.p.App(freshID); a.Consented {
			t.Fatal("consented by a non-admin")
		}
		// The first Global Administrator consents.
		params.Del("login_hint")
		resp, _ = b.get(t, b.url(testTenant, path)+"?"+params.Encode())
		loc, _ = url.Parse(resp.Header.Get("Location"))
		q = loc.Query()
		if resp.StatusCode != http.StatusFound || q.Get("admin_consent") != "True" || q.Get("tenant") != testTenant ||
			q.Get("state") != "s1" || q.Get("error") != "" {
			t.Errorf("v2=%v success: %d %v", v2, resp.StatusCode, q)
		}
		if v2 && q.Get("scope") != "https://graph.microsoft.com/User.Read.All" {
			t.Errorf("v2 scope %q", q.Get("scope"))
		}
		if a, _ := b.p.App(freshID); !a.Consented {
			t.Error("not consented")
		}
		// Now the app gets application tokens.
		s, body := b.postToken(t, b.tokenURL(), url.Values{"grant_type": {"client_credentials"}, "client_id": {freshID},
			"client_secret": {syncSecret}, "scope": {"https://graph.microsoft.com/.default"}})
		if s != http.StatusOK {
			t.Errorf("token after consent: %d %v", s, body)
		}
		// Unknown app: HTML page.
		params.Set("client_id", "99999999-0000-0000-0000-000000000000")
		resp, body2 := b.get(t, b.url(testTenant, path)+"?"+params.Encode())
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body2, "AADSTS700016") {
			t.Errorf("unknown app: %d %s", resp.StatusCode, body2)
		}
	}
}

func TestKeyRotationWithGoOIDC(t *testing.T) {
	b := newBundle(t)
	ctx := oidc.ClientContext(t.Context(), b.srv.Client())
	prov, err := oidc.NewProvider(ctx, b.url(testTenant, "/v2.0"))
	if err != nil {
		t.Fatal(err)
	}
	verifier := prov.Verifier(&oidc.Config{ClientID: syncID, Now: b.clock.Now})
	idToken := func() string {
		code := b.code(t, authParams(syncID, redirect, "openid profile"))
		s, body := b.postToken(t, b.tokenURL(), url.Values{"grant_type": {"authorization_code"}, "client_id": {syncID},
			"client_secret": {syncSecret}, "code": {code}, "redirect_uri": {redirect}})
		if s != http.StatusOK {
			t.Fatalf("%d %v", s, body)
		}
		return body["id_token"].(string)
	}
	old := idToken()
	if _, err := verifier.Verify(ctx, old); err != nil {
		t.Fatal(err)
	}
	oldKid := b.p.ActiveKeyID()
	b.p.RotateSigningKey()
	if b.p.ActiveKeyID() == oldKid {
		t.Fatal("kid unchanged after rotation")
	}
	fresh := idToken()
	if h := jwtPart(t, fresh, 0); h["kid"] != b.p.ActiveKeyID() {
		t.Errorf("new token header %v", h)
	}
	if _, err := verifier.Verify(ctx, fresh); err != nil {
		t.Fatalf("token signed with the rotated key: %v", err)
	}
	if _, err := verifier.Verify(ctx, old); err != nil {
		t.Fatalf("token signed with the retired key: %v", err)
	}
	// The JWKS lists both keys; after RetiredKeys more rotations the old one is gone.
	var set struct{ Keys []map[string]any }
	_, body := b.get(t, b.url(testTenant, "/discovery/v2.0/keys"))
	if err := json.Unmarshal([]byte(body), &set); err != nil || len(set.Keys) != 2 {
		t.Fatalf("jwks %v %s", err, body)
	}
	for _, k := range set.Keys {
		if k["kty"] != "RSA" || k["use"] != "sig" || k["kid"] != k["x5t"] || k["e"] != "AQAB" ||
			k["issuer"] != b.url(testTenant, "/v2.0") {
			t.Errorf("jwk %v", k)
		}
	}
	b.p.RotateSigningKey()
	b.p.RotateSigningKey()
	_, body = b.get(t, b.url(testTenant, "/discovery/v2.0/keys"))
	if strings.Contains(body, oldKid) {
		t.Error("retired key still published after 3 rotations")
	}
}

func TestValidateAccessToken(t *testing.T) {
	b := newBundle(t)
	_, tok := b.postToken(t, b.tokenURL(), url.Values{"grant_type": {"client_credentials"}, "client_id": {syncID},
		"client_secret": {syncSecret}, "scope": {"https://graph.microsoft.com/.default"}})
	raw := tok["access_token"].(string)
	if _, err := b.p.ValidateAccessToken(raw); err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(raw, ".")
	claims := jwtPart(t, raw, 1)
	claims["roles"] = []string{"Directory.ReadWrite.All"}
	forged, _ := json.Marshal(claims)
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(forged) + "." + parts[2]
	for name, bad := range map[string]string{"garbage": "abc", "tampered": tampered} {
		if _, err := b.p.ValidateAccessToken(bad); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A token from another provider (another tenant) is rejected.
	other := newBundle(t)
	_, otherTok := other.postToken(t, other.tokenURL(), url.Values{"grant_type": {"client_credentials"}, "client_id": {syncID},
		"client_secret": {syncSecret}, "scope": {"https://graph.microsoft.com/.default"}})
	if _, err := b.p.ValidateAccessToken(otherTok["access_token"].(string)); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("foreign token: %v", err)
	}
	b.clock.Advance(3599 * time.Second)
	if _, err := b.p.ValidateAccessToken(raw); !errors.Is(err, ErrTokenExpired) {
		t.Errorf("expired: %v", err)
	}
	b.clock.Advance(-3599 * time.Second)
	for range 3 {
		b.p.RotateSigningKey()
	}
	if _, err := b.p.ValidateAccessToken(raw); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("key retired: %v", err)
	}
}

func TestDiscoveryVariants(t *testing.T) {
	b := newBundle(t)
	for _, tc := range []struct{ tenant, issuer, endpointTenant string }{
		{testTenant, b.srv.URL + "/" + testTenant + "/v2.0", testTenant},
		{"contoso.onmicrosoft.com", b.srv.URL + "/" + testTenant + "/v2.0", testTenant},
		{"organizations", b.srv.URL + "/{tenantid}/v2.0", "organizations"},
		{"common", b.srv.URL + "/{tenantid}/v2.0", "common"},
	} {
		resp, body := b.get(t, b.url(tc.tenant, "/v2.0/.well-known/openid-configuration"))
		var d map[string]any
		if err := json.Unmarshal([]byte(body), &d); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", tc.tenant, resp.StatusCode, body)
		}
		if d["issuer"] != tc.issuer || d["token_endpoint"] != b.url(tc.endpointTenant, "/oauth2/v2.0/token") ||
			d["end_session_endpoint"] != b.url(tc.endpointTenant, "/oauth2/v2.0/logout") {
			t.Errorf("%s: %v", tc.tenant, d)
		}
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, b.url(testTenant, "/v2.0/.well-known/openid-configuration"), nil)
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Host = "login.example.test"
	resp, err := b.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&d)
	resp.Body.Close()
	if d["issuer"] != "https://login.example.test/"+testTenant+"/v2.0" {
		t.Errorf("forwarded issuer %v", d["issuer"])
	}
	resp2, body := b.get(t, b.url("00000000-1111-2222-3333-444444444444", "/v2.0/.well-known/openid-configuration"))
	var e map[string]any
	_ = json.Unmarshal([]byte(body), &e)
	checkAADError(t, resp2.StatusCode, e, 400, "invalid_tenant", 90002)
}

func TestLogout(t *testing.T) {
	b := newBundle(t)
	resp, _ := b.get(t, b.url(testTenant, "/oauth2/v2.0/logout")+"?post_logout_redirect_uri="+url.QueryEscape(redirect)+"&state=z")
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != redirect+"?state=z" {
		t.Errorf("registered: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, body := b.get(t, b.url(testTenant, "/oauth2/v2.0/logout")+"?post_logout_redirect_uri="+url.QueryEscape("https://evil.example/"))
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "signed out") {
		t.Errorf("unregistered: %d %s", resp.StatusCode, body)
	}
}

// jwtPart decodes part i (0 header, 1 claims) of a compact JWT without verifying it.
func jwtPart(t *testing.T, raw string, i int) map[string]any {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", raw)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}
