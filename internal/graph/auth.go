package graph

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// TokenSource yields bearer tokens for Graph. Implementations that also have
// Invalidate(token string) get one forced refresh when Graph answers 401.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// TokenResponse is a successful token-endpoint answer.
type TokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	Scope        string `json:"scope"` // as sent (the docs show it URL-encoded)
	RefreshToken string `json:"refresh_token,omitempty"`
	IDToken      string `json:"id_token,omitempty"`
	// Expiry is computed from ExpiresIn and the client's clock when the token arrived.
	Expiry time.Time `json:"-"`
}

// tokenLock is a mutex that gives up when ctx ends.
type tokenLock chan struct{}

func (l tokenLock) lock(ctx context.Context) error {
	select {
	case l <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l tokenLock) unlock() { <-l }

// refreshMargin: tokens are renewed this long before they expire (at most half their life).
const refreshMargin = 5 * time.Minute

func margin(ttl time.Duration) time.Duration { return min(refreshMargin, ttl/2) }

// postToken sends a form to the token endpoint with retries on 429/5xx/network errors.
// Error answers become *AuthError.
func (c *Client) postToken(ctx context.Context, form url.Values) (*TokenResponse, error) {
	r := &request{
		method:      http.MethodPost,
		url:         c.tokenURL,
		body:        []byte(form.Encode()),
		contentType: "application/x-www-form-urlencoded",
		path:        "/oauth2/v2.0/token",
	}
	start := c.now()
	resp, err := c.send(ctx, r, func(status int, _ http.Header, b []byte) error {
		return parseAuthError(status, b)
	})
	if err != nil {
		return nil, err
	}
	defer resp.release()
	var tr TokenResponse
	if err := json.Unmarshal(resp.bytes(), &tr); err != nil {
		return nil, fmt.Errorf("identity platform: decode token response: %w", err)
	}
	if tr.AccessToken == "" {
		return nil, errors.New("identity platform: token response without access_token")
	}
	if tr.ExpiresIn <= 0 {
		tr.ExpiresIn = 3599
	}
	tr.Expiry = start.Add(time.Duration(tr.ExpiresIn) * time.Second)
	return &tr, nil
}

// appTokenSource caches the client-credentials token and renews it before expiry.
type appTokenSource struct {
	c      *Client
	lock   tokenLock
	tok    string
	expiry time.Time
	ttl    time.Duration
}

func (s *appTokenSource) Token(ctx context.Context) (string, error) {
	if err := s.lock.lock(ctx); err != nil {
		return "", err
	}
	defer s.lock.unlock()
	if s.tok != "" && s.c.now().Before(s.expiry.Add(-margin(s.ttl))) {
		return s.tok, nil
	}
	tr, err := s.c.postToken(ctx, url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {s.c.cfg.ClientID},
		"client_secret": {s.c.cfg.ClientSecret},
		"scope":         {s.c.cfg.Scope},
	})
	if err != nil {
		return "", err
	}
	s.tok, s.expiry, s.ttl = tr.AccessToken, tr.Expiry, time.Duration(tr.ExpiresIn)*time.Second
	s.c.log.DebugContext(ctx, "graph: app token acquired", "tenant", s.c.cfg.TenantID, "expires_in", tr.ExpiresIn)
	return s.tok, nil
}

// Invalidate drops the cached token if it is tok (any token when tok is "").
func (s *appTokenSource) Invalidate(tok string) {
	s.lock <- struct{}{}
	if tok == "" || s.tok == tok {
		s.tok = ""
	}
	<-s.lock
}

// CheckCredentials fetches a fresh app token, which proves tenant, client ID, secret and
// consent. The error is an *AuthError for the identity platform's refusals.
func (c *Client) CheckCredentials(ctx context.Context) error {
	if s, ok := c.tokens.(*appTokenSource); ok {
		s.Invalidate("")
	}
	_, err := c.tokens.Token(ctx)
	return err
}

// DelegatedTokenSource turns a refresh token into access tokens, rotating the refresh
// token each time the identity platform issues a new one.
type DelegatedTokenSource struct {
	c        *Client
	lock     tokenLock
	refresh  string
	onRotate func(ctx context.Context, newRefreshToken string) error
	pending  bool // a rotated refresh token has not been stored yet
	tok      string
	expiry   time.Time
	ttl      time.Duration
}

// NewDelegated returns a Client whose requests carry delegated tokens obtained from
// refreshToken. onRotate (may be nil) is called with every new refresh token; the caller
// stores it (encrypted). If onRotate fails, the new token stays in use in memory and
// onRotate is called again on the next refresh.
func NewDelegated(cfg Config, refreshToken string, onRotate func(ctx context.Context, newRefreshToken string) error) (*Client, error) {
	if refreshToken == "" {
		return nil, errors.New("graph: empty refresh token")
	}
	if cfg.TenantID == "" || cfg.ClientID == "" {
		return nil, errors.New("graph: TenantID and ClientID are required")
	}
	s := &DelegatedTokenSource{lock: make(tokenLock, 1), refresh: refreshToken, onRotate: onRotate}
	cfg.TokenSource = s
	c, err := New(cfg)
	if err != nil {
		return nil, err
	}
	s.c = c
	return c, nil
}

// Token returns a valid delegated access token, refreshing it when needed.
func (s *DelegatedTokenSource) Token(ctx context.Context) (string, error) {
	if err := s.lock.lock(ctx); err != nil {
		return "", err
	}
	defer s.lock.unlock()
	if s.tok != "" && s.c.now().Before(s.expiry.Add(-margin(s.ttl))) {
		return s.tok, nil
	}
	form := url.Values{
		"grant_type":    {"refresh_token"},
		"client_id":     {s.c.cfg.ClientID},
		"refresh_token": {s.refresh},
		"scope":         {strings.Join(s.c.cfg.DelegatedScopes, " ")},
	}
	if s.c.cfg.ClientSecret != "" {
		form.Set("client_secret", s.c.cfg.ClientSecret)
	}
	tr, err := s.c.postToken(ctx, form)
	if err != nil {
		return "", err
	}
	s.tok, s.expiry, s.ttl = tr.AccessToken, tr.Expiry, time.Duration(tr.ExpiresIn)*time.Second
	if tr.RefreshToken != "" && tr.RefreshToken != s.refresh {
		s.refresh = tr.RefreshToken
		s.pending = true
	}
	if s.pending && s.onRotate != nil {
		if err := s.onRotate(ctx, s.refresh); err != nil {
			s.c.log.ErrorContext(ctx, "graph: storing rotated refresh token failed; will retry on next refresh",
				"tenant", s.c.cfg.TenantID, "err", err)
		} else {
			s.pending = false
		}
	}
	return s.tok, nil
}

// Invalidate drops the cached access token if it is tok.
func (s *DelegatedTokenSource) Invalidate(tok string) {
	s.lock <- struct{}{}
	if s.tok == tok {
		s.tok = ""
	}
	<-s.lock
}

// ExchangeCode redeems an authorization code (PKCE verifier, exact redirect URI) at
// the tenant's token endpoint (Config.TenantID may be "organizations" or "common" here)
// and returns the access, refresh and ID tokens.
func (c *Client) ExchangeCode(ctx context.Context, code, verifier, redirectURI string, scopes []string) (*TokenResponse, error) {
	form := url.Values{
		"grant_type":   {"authorization_code"},
		"client_id":    {c.cfg.ClientID},
		"code":         {code},
		"redirect_uri": {redirectURI},
	}
	if verifier != "" {
		form.Set("code_verifier", verifier)
	}
	if len(scopes) > 0 {
		form.Set("scope", strings.Join(scopes, " "))
	}
	if c.cfg.ClientSecret != "" {
		form.Set("client_secret", c.cfg.ClientSecret)
	}
	return c.postToken(ctx, form)
}

// AuthorizeParams are the inputs of an authorization-code (PKCE) sign-in URL.
type AuthorizeParams struct {
	RedirectURI   string
	Scopes        []string
	State         string
	Nonce         string
	CodeChallenge string // S256 challenge of the verifier
	Prompt        string // login | none | consent | select_account
	LoginHint     string
	DomainHint    string
	ResponseMode  string // query (default) | form_post
}

// AuthorizeURL returns the /authorize URL for the configured tenant.
func (c *Client) AuthorizeURL(p AuthorizeParams) string {
	q := url.Values{
		"client_id":     {c.cfg.ClientID},
		"response_type": {"code"},
		"redirect_uri":  {p.RedirectURI},
		"scope":         {strings.Join(p.Scopes, " ")},
	}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("state", p.State)
	set("nonce", p.Nonce)
	if p.CodeChallenge != "" {
		q.Set("code_challenge", p.CodeChallenge)
		q.Set("code_challenge_method", "S256")
	}
	set("prompt", p.Prompt)
	set("login_hint", p.LoginHint)
	set("domain_hint", p.DomainHint)
	set("response_mode", p.ResponseMode)
	return c.cfg.LoginURL + "/" + url.PathEscape(c.cfg.TenantID) + "/oauth2/v2.0/authorize?" + q.Encode()
}

// AdminConsentURL returns the v2 admin-consent URL (scope /.default) for the configured
// tenant ("organizations" when TenantID is empty or "common").
func (c *Client) AdminConsentURL(redirectURI, state string) string {
	tenant := c.cfg.TenantID
	if tenant == "" || tenant == "common" {
		tenant = "organizations"
	}
	q := url.Values{
		"client_id":    {c.cfg.ClientID},
		"scope":        {c.cfg.Scope},
		"redirect_uri": {redirectURI},
		"state":        {state},
	}
	return c.cfg.LoginURL + "/" + url.PathEscape(tenant) + "/v2.0/adminconsent?" + q.Encode()
}
