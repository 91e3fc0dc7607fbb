package sso

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/integration"
	"github.com/switchboard-pbx/switchboard/internal/secret"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// Clients that sign in.
const (
	ClientWeb     = "web"
	ClientDesktop = "desktop"
	ClientMobile  = "mobile"
)

// Tuning of the ID token checks.
const (
	// clockSkew is how long after its exp an ID token is still accepted.
	clockSkew = 2 * time.Minute
	// discoveryTTL bounds how long a tenant's discovery document and keys
	// are trusted before they are fetched again (Microsoft: at least daily).
	discoveryTTL = 24 * time.Hour
)

// ssoScopes are the scopes a client sign-in asks for: an ID token with the
// user's object id (profile) and email. No Graph access is requested.
var ssoScopes = []string{oidc.ScopeOpenID, "profile", "email"}

var guidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// Refusal is a sign-in that did not end with a session, with the message
// the user sees.
type Refusal struct {
	Status  int    // HTTP status of the refusal page
	Code    string // machine-readable reason, e.g. "not_linked"
	Message string // what happened and what to do
	Err     error  // the cause, for the log
}

func (e *Refusal) Error() string { return e.Message }
func (e *Refusal) Unwrap() error { return e.Err }

func refuse(status int, code, msg string, err error) *Refusal {
	return &Refusal{Status: status, Code: code, Message: msg, Err: err}
}

const msgBadState = "This sign-in response is unknown, expired, was already used or was started in another browser. Start the sign-in again."

// pending is a started sign-in, stored under the hash of its state.
type pending struct {
	Binding     string    `json:"binding"` // hash of the browser cookie's value
	Verifier    string    `json:"verifier"`
	NonceHash   string    `json:"nonceHash"`
	Client      string    `json:"client"`
	RedirectURI string    `json:"redirectUri,omitempty"` // native clients
	ClientState string    `json:"clientState,omitempty"` // echoed to native clients
	TenantID    string    `json:"tenantId"`
	ClientID    string    `json:"clientId"`
	Expires     time.Time `json:"expires"`
}

type providerEntry struct {
	p       *oidc.Provider
	fetched time.Time
}

func (s *Service) issuer(tenantID string) string {
	return strings.TrimRight(s.LoginURL, "/") + "/" + strings.ToLower(tenantID) + "/v2.0"
}

// provider returns the tenant's OpenID provider: its discovery document is
// fetched once a day; its key set (go-oidc's remote key set) fetches the
// JWKS again whenever a token names a key it does not hold (key rotation).
func (s *Service) provider(ctx context.Context, tenantID string) (*oidc.Provider, error) {
	iss := s.issuer(tenantID)
	now := s.now()
	s.mu.Lock()
	e := s.oidc[iss]
	s.mu.Unlock()
	if e != nil && now.Sub(e.fetched) < discoveryTTL {
		return e.p, nil
	}
	dctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, s.httpClient()), 15*time.Second)
	defer cancel()
	p, err := oidc.NewProvider(dctx, iss)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.oidc == nil {
		s.oidc = map[string]*providerEntry{}
	}
	s.oidc[iss] = &providerEntry{p: p, fetched: now}
	s.mu.Unlock()
	return p, nil
}

func (s *Service) oauthConfig(p *oidc.Provider, clientID, clientSecret string) *oauth2.Config {
	ep := p.Endpoint()
	ep.AuthStyle = oauth2.AuthStyleInParams // client_secret_post, as Microsoft documents
	return &oauth2.Config{ClientID: clientID, ClientSecret: clientSecret, Endpoint: ep,
		RedirectURL: s.Integration.SSORedirectURI(), Scopes: ssoScopes}
}

// ssoApp checks that Microsoft sign-in is allowed for the PBX and returns the app.
func (s *Service) ssoApp(ctx context.Context, pbxID string) (tenantID, clientID, clientSecret string, err error) {
	st, err := s.GetSettings(ctx, pbxID)
	if err != nil {
		return "", "", "", err
	}
	tenantID, clientID, clientSecret, err = s.Integration.SSOApp(ctx, pbxID)
	switch {
	case errors.Is(err, integration.ErrNotConnected), errors.Is(err, integration.ErrDisabled):
		return "", "", "", refuse(http.StatusForbidden, "integration_disabled", ErrIntegrationOff.Error(), err)
	case err != nil:
		return "", "", "", err
	case !st.Enabled:
		return "", "", "", refuse(http.StatusForbidden, "sso_disabled", ErrSSOOff.Error(), ErrSSOOff)
	}
	return tenantID, clientID, clientSecret, nil
}

// StartRequest is a client's request to sign in with Microsoft.
type StartRequest struct {
	PBX         string
	Client      string // web, desktop or mobile
	LoginHint   string // passed on to Microsoft
	Port        string // desktop: the loopback port the app listens on
	ClientState string // native clients: echoed back with the code
}

// Started is a started sign-in: the browser goes to AuthURL carrying a
// cookie named CookieName with the value Binding.
type Started struct {
	AuthURL    string
	CookieName string
	Binding    string
}

// bindingCookie names the cookie that binds one sign-in to the browser.
func bindingCookie(state string) string { return "sb_sso_" + tokenHash(state)[:16] }

// Start begins a sign-in: it refuses when SSO or the integration is off,
// stores the single-use state (with the PKCE verifier and the nonce's hash)
// and returns Microsoft's authorize URL.
func (s *Service) Start(ctx context.Context, req StartRequest) (*Started, error) {
	if req.Client == "" {
		req.Client = ClientWeb
	}
	if req.Client != ClientWeb && req.Client != ClientDesktop && req.Client != ClientMobile {
		return nil, &directory.FieldError{Field: "client", Code: "invalid", Reason: "must be web, desktop or mobile"}
	}
	if len(req.LoginHint) > 256 || strings.ContainsAny(req.LoginHint, "\r\n") {
		return nil, &directory.FieldError{Field: "login_hint", Code: "invalid", Reason: "is not a sign-in name"}
	}
	if len(req.ClientState) > 256 {
		return nil, &directory.FieldError{Field: "state", Code: "invalid", Reason: "must be at most 256 characters"}
	}
	tenantID, clientID, clientSecret, err := s.ssoApp(ctx, req.PBX)
	if err != nil {
		return nil, err
	}
	p := pending{Client: req.Client, ClientState: req.ClientState, TenantID: tenantID, ClientID: clientID,
		Expires: s.now().Add(pendingTTL)}
	if req.Client != ClientWeb {
		st, err := s.GetSettings(ctx, req.PBX)
		if err != nil {
			return nil, err
		}
		p.RedirectURI = st.MobileRedirectURI
		if req.Client == ClientDesktop {
			p.RedirectURI = st.DesktopRedirectURI
		}
		if req.Port != "" {
			if p.RedirectURI, err = withLoopbackPort(p.RedirectURI, req.Port); err != nil {
				return nil, err
			}
		}
	} else if req.Port != "" || req.ClientState != "" {
		return nil, &directory.FieldError{Field: "client", Code: "invalid", Reason: "port and state are for the desktop and mobile clients"}
	}
	prov, err := s.provider(ctx, tenantID)
	if err != nil {
		return nil, refuse(http.StatusBadGateway, "idp_unreachable", "Microsoft sign-in is unreachable right now; try again in a moment.", err)
	}
	state := req.PBX + "~" + secret.RandomToken(32)
	nonce := secret.RandomToken(32)
	binding := secret.RandomToken(32)
	verifier := oauth2.GenerateVerifier()
	p.Binding, p.NonceHash, p.Verifier = tokenHash(binding), tokenHash(nonce), s.Keys.SealString(verifier)
	b, _ := json.Marshal(p)
	s.prune(ctx, req.PBX)
	if err := s.Store.UpdateSetting(ctx, req.PBX, pendingPrefix+tokenHash(state), func([]byte) ([]byte, error) { return b, nil }); err != nil {
		return nil, err
	}
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce),
		oauth2.SetAuthURLParam("response_mode", "query")}
	if req.LoginHint != "" {
		opts = append(opts, oauth2.SetAuthURLParam("login_hint", req.LoginHint))
	}
	u := s.oauthConfig(prov, clientID, clientSecret).AuthCodeURL(state, opts...)
	return &Started{AuthURL: u, CookieName: bindingCookie(state), Binding: binding}, nil
}

// withLoopbackPort sets the port of a loopback http redirect URI.
func withLoopbackPort(uri, port string) (string, error) {
	n, err := strconv.Atoi(port)
	u, perr := url.Parse(uri)
	if err != nil || n < 1 || n > 65535 || perr != nil || u.Scheme != "http" || !isLoopback(u.Hostname()) {
		return "", &directory.FieldError{Field: "port", Code: "invalid", Reason: "a port is accepted only from 1 to 65535 and only when the desktop redirect URI is a loopback http URI"}
	}
	u.Host = u.Hostname() + ":" + strconv.Itoa(n)
	if strings.Contains(u.Hostname(), ":") {
		u.Host = "[" + u.Hostname() + "]:" + strconv.Itoa(n)
	}
	return u.String(), nil
}

// SignIn is a completed Microsoft sign-in.
type SignIn struct {
	PBX         string
	Client      string
	Extension   *directory.Extension
	RedirectURI string // native clients
	ClientState string
	Session     Session
}

// idClaims are the ID token claims read after go-oidc verified the token.
type idClaims struct {
	TenantID          string `json:"tid"`
	ObjectID          string `json:"oid"`
	Nonce             string `json:"nonce"`
	Version           string `json:"ver"`
	PreferredUsername string `json:"preferred_username"`
}

// Complete finishes a sign-in from the callback's query: the state must be
// pending (it is consumed at once) and bound to this browser (binding is the
// value of the cookie named bindingCookie(state)); the code is redeemed with
// the PKCE verifier and the ID token checked. Failures are *Refusal.
func (s *Service) Complete(ctx context.Context, q url.Values, cookie func(name string) string) (*SignIn, error) {
	state := q.Get("state")
	pbxID, ok := tokenPBX(state)
	if !ok {
		return nil, refuse(http.StatusBadRequest, "bad_state", msgBadState, nil)
	}
	if _, err := s.Store.GetPBX(ctx, pbxID); err != nil {
		return nil, refuse(http.StatusBadRequest, "bad_state", msgBadState, err)
	}
	var p pending
	found := false
	err := s.Store.UpdateSetting(ctx, pbxID, pendingPrefix+tokenHash(state), func(old []byte) ([]byte, error) {
		if old != nil && json.Unmarshal(old, &p) == nil {
			found = true
		}
		return nil, nil // single use, whatever happens next
	})
	if err != nil {
		return nil, err
	}
	if !found || !s.now().Before(p.Expires) {
		return nil, refuse(http.StatusBadRequest, "bad_state", msgBadState, nil)
	}
	if subtle.ConstantTimeCompare([]byte(p.Binding), []byte(tokenHash(cookie(bindingCookie(state))))) != 1 {
		return nil, refuse(http.StatusBadRequest, "bad_state", msgBadState, errors.New("state not bound to this browser"))
	}
	if e := q.Get("error"); e != "" {
		desc := firstLine(q.Get("error_description"))
		msg := "Microsoft refused the sign-in: " + desc
		if desc == "" {
			msg = "Microsoft refused the sign-in (" + e + ")."
		}
		if strings.Contains(desc, "AADSTS50057") {
			msg = "Your Microsoft account is disabled, so it cannot sign in. Ask your administrator. (" + desc + ")"
		}
		return nil, refuse(http.StatusForbidden, "idp_error", msg, errors.New(e))
	}
	code := q.Get("code")
	if code == "" {
		return nil, refuse(http.StatusBadRequest, "no_code", "Microsoft returned no authorization code; start the sign-in again.", nil)
	}
	tenantID, clientID, clientSecret, err := s.ssoApp(ctx, pbxID)
	if err != nil {
		return nil, err
	}
	if !strings.EqualFold(tenantID, p.TenantID) || !strings.EqualFold(clientID, p.ClientID) {
		return nil, refuse(http.StatusBadRequest, "bad_state", "The PBX's Microsoft Entra connection changed during the sign-in; start the sign-in again.", nil)
	}
	verifier, err := s.Keys.OpenString(p.Verifier)
	if err != nil {
		return nil, err
	}
	prov, err := s.provider(ctx, tenantID)
	if err != nil {
		return nil, refuse(http.StatusBadGateway, "idp_unreachable", "Microsoft sign-in is unreachable right now; try again in a moment.", err)
	}
	cfg := s.oauthConfig(prov, clientID, clientSecret)
	xctx, cancel := context.WithTimeout(context.WithValue(ctx, oauth2.HTTPClient, s.httpClient()), 30*time.Second)
	defer cancel()
	tok, err := cfg.Exchange(xctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		return nil, refuse(http.StatusBadGateway, "redeem_failed", "Microsoft did not accept the sign-in: "+oauthReason(err)+" Start the sign-in again.", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, refuse(http.StatusBadGateway, "no_id_token", "Microsoft returned no ID token; the app registration must allow sign-in (openid).", nil)
	}
	claims, err := s.verifyIDToken(ctx, prov, tenantID, clientID, raw, p.NonceHash)
	if err != nil {
		return nil, err
	}
	ext, err := s.Store.FindExtension(ctx, pbxID, "entraId", claims.ObjectID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && ext.Source != directory.SourceEntra) {
		who := claims.PreferredUsername
		if who == "" {
			who = "Your Microsoft account"
		}
		s.PBX.Audit(ctx, pbxID, "sso:"+claims.ObjectID, "client.sso.refused", claims.PreferredUsername, "no synced extension")
		return nil, refuse(http.StatusForbidden, "not_linked", who+" is not linked to an extension of this PBX: only users synced from Microsoft Entra ID can sign in with Microsoft. Ask your administrator to include you in the user sync.", nil)
	}
	if err != nil {
		return nil, err
	}
	sess := Session{PBX: pbxID, ExtensionID: ext.ID, Method: MethodSSO, Client: p.Client, ObjectID: claims.ObjectID, TenantID: strings.ToLower(claims.TenantID)}
	s.PBX.Audit(ctx, pbxID, "client:"+ext.Number, "client.login", ext.Number, "Microsoft sign-in, "+p.Client)
	return &SignIn{PBX: pbxID, Client: p.Client, Extension: ext, RedirectURI: p.RedirectURI, ClientState: p.ClientState, Session: sess}, nil
}

// verifyIDToken checks the ID token with go-oidc (signature against the
// tenant's keys, issuer, audience, expiry with clockSkew) and then the
// claims go-oidc leaves to the caller: nonce, tid and oid.
func (s *Service) verifyIDToken(ctx context.Context, prov *oidc.Provider, tenantID, clientID, raw, nonceHash string) (*idClaims, error) {
	v := prov.Verifier(&oidc.Config{ClientID: clientID, Now: func() time.Time { return s.now().Add(-clockSkew) }})
	return checkIDToken(ctx, v, tenantID, raw, nonceHash)
}

func checkIDToken(ctx context.Context, v *oidc.IDTokenVerifier, tenantID, raw, nonceHash string) (*idClaims, error) {
	bad := func(reason string, err error) (*idClaims, error) {
		return nil, refuse(http.StatusForbidden, "bad_id_token", "The sign-in could not be verified ("+reason+"). Start the sign-in again; if it keeps failing, ask your administrator.", err)
	}
	tok, err := v.Verify(ctx, raw)
	if err != nil {
		var te *oidc.TokenExpiredError
		switch {
		case errors.As(err, &te):
			return bad("the ID token has expired; check this server's clock", err)
		case strings.Contains(err.Error(), "audience"):
			return bad("the ID token was issued to another application", err)
		case strings.Contains(err.Error(), "issued by a different provider"):
			return bad("the ID token was issued by another tenant or provider", err)
		}
		return bad("the ID token's signature or format is not valid", err)
	}
	var c idClaims
	if err := tok.Claims(&c); err != nil {
		return bad("unreadable claims", err)
	}
	if subtle.ConstantTimeCompare([]byte(tokenHash(c.Nonce)), []byte(nonceHash)) != 1 || c.Nonce == "" {
		return bad("the nonce does not match this sign-in", errors.New("nonce mismatch"))
	}
	if !guidRE.MatchString(c.TenantID) || !strings.EqualFold(c.TenantID, tenantID) {
		return bad("the account belongs to another tenant than the one this PBX is connected to", fmt.Errorf("tid %q", c.TenantID))
	}
	if c.Version != "" && c.Version != "2.0" {
		return bad("not a v2.0 ID token", fmt.Errorf("ver %q", c.Version))
	}
	if c.ObjectID == "" {
		return bad("the ID token carries no user object id (oid); the sign-in must include the profile scope", nil)
	}
	return &c, nil
}

// oauthReason turns a token endpoint error into one sentence.
func oauthReason(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		d := firstLine(re.ErrorDescription)
		if d == "" {
			d = re.ErrorCode
		}
		return d + "."
	}
	return "the token endpoint could not be reached."
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\r")
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
