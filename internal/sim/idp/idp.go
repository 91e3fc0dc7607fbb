// Package idp simulates the Microsoft identity platform (login.microsoftonline.com)
// for one Entra tenant: OpenID discovery, JWKS, the v2.0 authorize and token
// endpoints (client credentials, authorization code with PKCE, refresh tokens),
// the admin consent endpoints and logout.
//
// It speaks Microsoft's documented wire format (error JSON with AADSTS codes,
// v1 Graph access tokens, v2 ID tokens, RS256 signatures) so that the product's
// real OAuth and OIDC clients can talk to it over HTTP. The Graph side of the
// simulated tenant (package sim) supplies the users through Directory and checks
// bearer tokens with ValidateAccessToken. The package imports nothing of this
// repository.
package idp

import (
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// User is a tenant user as the identity platform sees it.
type User struct {
	ID, UserPrincipalName, Mail, DisplayName string
	GlobalAdmin, Enabled                     bool
}

// Directory is implemented by the Graph simulator: the tenant's users.
type Directory interface {
	UserByLogin(login string) (User, bool) // UPN or mail, case-insensitive
	FirstGlobalAdmin() (User, bool)
}

// UserByIDer is an optional Directory extension. When the Directory implements
// it, refresh-token redemption looks the user up by object ID (so a renamed user
// keeps signing in); otherwise it looks the user up by UPN.
type UserByIDer interface {
	UserByID(id string) (User, bool)
}

// App is an app registration (and its service principal) in the tenant.
type App struct {
	ClientID, DisplayName string
	Secrets               []Secret // several may be valid at once (secret rotation)
	RedirectURIs          []string // exact match required, else AADSTS50011
	AppRoles              []string // application permissions granted by admin consent, e.g. "User.Read.All"
	DelegatedScopes       []string // delegated permissions consented for the org, e.g. "User.Read", "openid"
	Consented             bool     // admin consent given

	// HomeTenant marks an app registered in this very tenant: its service
	// principal exists before any consent, so client credentials succeed
	// without consent but the token has no roles claim (Graph then answers
	// 403), as on Microsoft's service. When false (a multi-tenant app from
	// another tenant) client credentials without consent fail with AADSTS7000229.
	HomeTenant bool
}

// Secret is a client secret of an App.
type Secret struct {
	Value   string
	Expires time.Time
}

// Config configures a Provider.
type Config struct {
	TenantID string
	Dir      Directory
	Now      func() time.Time // nil -> time.Now

	AccessTokenTTL  time.Duration // default 3599s
	IDTokenTTL      time.Duration // default 1h
	RefreshTokenTTL time.Duration // default 90 days
	AuthCodeTTL     time.Duration // default 10 minutes

	// Domains are verified domain names accepted in place of the tenant ID in
	// URLs (e.g. "contoso.onmicrosoft.com"). Optional.
	Domains []string

	// NewKey returns a fresh RSA signing key (New and RotateSigningKey call it).
	// nil -> 2048-bit rsa.GenerateKey. Tests pass pre-generated keys for speed.
	NewKey func() (*rsa.PrivateKey, error)

	// RetiredKeys is how many previous signing keys stay published in the JWKS
	// (and accepted by ValidateAccessToken) after RotateSigningKey. Default 2.
	RetiredKeys int

	Logger *slog.Logger // nil -> discard
}

// Sentinel errors returned (wrapped) by ValidateAccessToken and UpdateApp.
var (
	ErrInvalidToken = errors.New("idp: invalid access token")
	ErrTokenExpired = errors.New("idp: access token expired")
	ErrUnknownApp   = errors.New("idp: unknown application")
)

// Provider is the simulated identity platform of one tenant. It is safe for
// concurrent use.
type Provider struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	apps    map[string]*App // by lower-case client ID
	codes   map[string]*authCode
	refresh map[string]*refreshGrant
	keys    []*signingKey // last is active
}

// New returns a Provider for cfg.TenantID with a freshly generated signing key.
func New(cfg Config) (*Provider, error) {
	if _, err := uuid.Parse(cfg.TenantID); err != nil {
		return nil, fmt.Errorf("idp: tenant ID %q is not a GUID: %w", cfg.TenantID, err)
	}
	if cfg.Dir == nil {
		return nil, errors.New("idp: Config.Dir is required")
	}
	cfg.TenantID = strings.ToLower(cfg.TenantID)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.AccessTokenTTL <= 0 {
		cfg.AccessTokenTTL = 3599 * time.Second
	}
	if cfg.IDTokenTTL <= 0 {
		cfg.IDTokenTTL = time.Hour
	}
	if cfg.RefreshTokenTTL <= 0 {
		cfg.RefreshTokenTTL = 90 * 24 * time.Hour
	}
	if cfg.AuthCodeTTL <= 0 {
		cfg.AuthCodeTTL = 10 * time.Minute
	}
	if cfg.RetiredKeys <= 0 {
		cfg.RetiredKeys = 2
	}
	if cfg.NewKey == nil {
		cfg.NewKey = func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) }
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	p := &Provider{
		cfg:     cfg,
		log:     log,
		apps:    make(map[string]*App),
		codes:   make(map[string]*authCode),
		refresh: make(map[string]*refreshGrant),
	}
	k, err := p.newSigningKey()
	if err != nil {
		return nil, err
	}
	p.keys = []*signingKey{k}
	return p, nil
}

// TenantID returns the tenant GUID (lower case).
func (p *Provider) TenantID() string { return p.cfg.TenantID }

func (p *Provider) now() time.Time { return p.cfg.Now() }

// RegisterApp adds an app registration or replaces the one with the same client ID.
func (p *Provider) RegisterApp(a App) {
	a = cloneApp(a)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.apps[strings.ToLower(a.ClientID)] = &a
}

// UpdateApp changes an app registration in place under the provider's lock
// (f must not call back into the Provider).
// It returns ErrUnknownApp if no app has clientID.
func (p *Provider) UpdateApp(clientID string, f func(*App)) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	a, ok := p.apps[strings.ToLower(clientID)]
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownApp, clientID)
	}
	c := cloneApp(*a)
	f(&c)
	c.ClientID = a.ClientID // the key cannot change
	*a = c
	return nil
}

// App returns a copy of the app registration with clientID.
func (p *Provider) App(clientID string) (App, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	a, ok := p.apps[strings.ToLower(clientID)]
	if !ok {
		return App{}, false
	}
	return cloneApp(*a), true
}

// RevokeRefreshTokens revokes every refresh token issued to the user so far
// (like "Revoke sessions" in the Entra admin center). Redeeming one then fails
// with invalid_grant AADSTS50173.
func (p *Provider) RevokeRefreshTokens(userID string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, g := range p.refresh {
		if strings.EqualFold(g.userID, userID) {
			g.revoked = true
		}
	}
}

func cloneApp(a App) App {
	a.Secrets = slices.Clone(a.Secrets)
	a.RedirectURIs = slices.Clone(a.RedirectURIs)
	a.AppRoles = slices.Clone(a.AppRoles)
	a.DelegatedScopes = slices.Clone(a.DelegatedScopes)
	return a
}

// app returns a copy of the registration; callers must not hold p.mu.
func (p *Provider) app(clientID string) (App, bool) { return p.App(clientID) }

// userByID finds a user by object ID, falling back to the UPN.
func (p *Provider) userByID(id, upn string) (User, bool) {
	if d, ok := p.cfg.Dir.(UserByIDer); ok {
		return d.UserByID(id)
	}
	u, ok := p.cfg.Dir.UserByLogin(upn)
	if ok && !strings.EqualFold(u.ID, id) {
		return User{}, false
	}
	return u, ok
}
