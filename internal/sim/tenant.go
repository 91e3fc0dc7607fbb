package sim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/switchboard-pbx/switchboard/internal/httpx"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/sim/idp"
)

// TokenValidator checks a bearer token presented to the Graph endpoints. *idp.Provider
// implements it; tests can pass a fake in Config.Validator.
type TokenValidator interface {
	ValidateAccessToken(raw string) (*idp.AccessClaims, error)
}

var _ TokenValidator = (*idp.Provider)(nil)

// Config configures a simulated tenant. Zero values get the defaults noted per field.
type Config struct {
	TenantID, ClientID, ClientSecret string
	Users, Groups                    int
	Seed                             int64
	// ContactsPerUser, when > 0, gives every member user exactly that many personal
	// contacts, all in the default Contacts folder (no named folders), instead of the
	// default mix (3-20 contacts for about 60% of users). They are generated from the
	// seed on each read like the default ones (a few invalid on purpose), so the count
	// costs no memory until a mailbox is written. Shared mailboxes, guests and users
	// created through the API are unaffected. 0 keeps the default data.
	ContactsPerUser int
	// Latency is added to every request (identity, Graph and admin).
	Latency time.Duration
	Now     func() time.Time // default time.Now
	Logger  *slog.Logger     // default: discard

	// Domain is the tenant's verified mail domain (default "contoso.com"); guests get
	// UPNs under <first label>.onmicrosoft.com.
	Domain string
	// BaseURL overrides the scheme://host written into @odata.nextLink, @odata.deltaLink
	// and @odata.context (default: taken from each request).
	BaseURL string
	// RedirectURIs are registered on the app at start (AddRedirectURI adds more later).
	RedirectURIs []string
	// Faults are the initial fault-injection and throttling settings (see SetFaults).
	Faults Faults
	// DeltaTokenTTL is how long users/groups delta tokens stay valid (default 7 days).
	DeltaTokenTTL time.Duration
	// DeltaMembersPerPage caps members@delta entries per group per page (default 1000): a
	// larger group recurs on the following pages with further slices, as Graph does.
	DeltaMembersPerPage int
	// Validator replaces the idp provider as the access-token checker (tests).
	Validator TokenValidator
	// HTTPClient sends validation requests and change notifications (default: 10 s timeout).
	HTTPClient *http.Client
	// NotifyQueue bounds the notification queue (default 1000; overflow is dropped and
	// counted in Stats as "notification dropped (queue full)"). NotifyBackoff is the first retry delay
	// (default 1 s, doubling); NotifyRetryFor is how long delivery is retried (default 4 h).
	NotifyQueue    int
	NotifyBackoff  time.Duration
	NotifyRetryFor time.Duration
	// IDP tunes the embedded identity provider (TenantID, Dir, Now and Logger are filled in).
	IDP idp.Config
}

func (c Config) tenantDomain() string {
	label, _, _ := strings.Cut(c.Domain, ".")
	return label + ".onmicrosoft.com"
}

// Tenant is one simulated Microsoft Entra tenant: Microsoft Graph v1.0, the identity
// platform and the /sim/ admin API. It is safe for concurrent use.
type Tenant struct {
	cfg   Config
	log   *slog.Logger
	now   func() time.Time
	idp   *idp.Provider
	val   TokenValidator
	st    *store
	stats *stats
	fault *faultState
	hooks *notifier

	graph  *http.ServeMux
	handle http.Handler

	tokenMu    sync.Mutex
	tokenEpoch uint64 // bumped by ExpireDeltaTokens
	deltaTTL   time.Duration
}

// AppRoles are the application permissions the simulated app registration is granted.
var AppRoles = []string{
	"User.Read.All", "User.ReadWrite.All", "Group.Read.All", "Group.ReadWrite.All",
	"GroupMember.Read.All", "GroupMember.ReadWrite.All", "Directory.Read.All",
	"Contacts.Read", "Contacts.ReadWrite", "MailboxSettings.Read",
	"Presence.Read.All", "Presence.ReadWrite.All", "Organization.Read.All",
}

// DelegatedScopes are the delegated permissions consented for the organisation.
var DelegatedScopes = []string{
	"openid", "profile", "email", "offline_access", "User.Read", "User.ReadBasic.All",
	"Contacts.Read", "Contacts.ReadWrite", "Presence.Read", "Presence.Read.All", "Presence.ReadWrite",
	"MailboxSettings.Read",
}

// New builds a tenant whose data is derived from cfg.Seed.
func New(cfg Config) (*Tenant, error) {
	var problems []error
	if cfg.TenantID == "" {
		problems = append(problems, errors.New("sim: TenantID is required"))
	}
	if cfg.ClientID == "" {
		problems = append(problems, errors.New("sim: ClientID is required"))
	}
	if cfg.Users < 1 {
		problems = append(problems, errors.New("sim: Users must be at least 1 (user 0 is the Global Administrator)"))
	}
	if cfg.Groups < 0 {
		problems = append(problems, errors.New("sim: Groups must not be negative"))
	}
	if err := errors.Join(problems...); err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Domain == "" {
		cfg.Domain = "contoso.com"
	}
	if cfg.DeltaMembersPerPage <= 0 {
		cfg.DeltaMembersPerPage = 1000
	}
	if cfg.DeltaTokenTTL == 0 {
		cfg.DeltaTokenTTL = 7 * 24 * time.Hour
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.NotifyQueue <= 0 {
		cfg.NotifyQueue = 1000
	}
	if cfg.NotifyBackoff <= 0 {
		cfg.NotifyBackoff = time.Second
	}
	if cfg.NotifyRetryFor <= 0 {
		cfg.NotifyRetryFor = 4 * time.Hour
	}
	t := &Tenant{
		cfg:      cfg,
		log:      cfg.Logger,
		now:      cfg.Now,
		st:       newStore(),
		stats:    newStats(),
		deltaTTL: cfg.DeltaTokenTTL,
	}
	t.fault = newFaultState(cfg.Seed, cfg.Faults)
	t.st.generate(cfg)

	icfg := cfg.IDP
	icfg.TenantID, icfg.Dir, icfg.Now = cfg.TenantID, directory{t}, cfg.Now
	if icfg.Logger == nil {
		icfg.Logger = cfg.Logger
	}
	icfg.Domains = append(icfg.Domains, cfg.Domain, cfg.tenantDomain())
	p, err := idp.New(icfg)
	if err != nil {
		return nil, fmt.Errorf("sim: identity provider: %w", err)
	}
	t.idp = p
	var secrets []idp.Secret
	if cfg.ClientSecret != "" {
		secrets = []idp.Secret{{Value: cfg.ClientSecret, Expires: cfg.Now().AddDate(1, 0, 0)}}
	}
	p.RegisterApp(idp.App{
		ClientID: cfg.ClientID, DisplayName: "Switchboard PBX", Secrets: secrets,
		RedirectURIs: slices.Clone(cfg.RedirectURIs), AppRoles: slices.Clone(AppRoles),
		DelegatedScopes: slices.Clone(DelegatedScopes), Consented: true,
	})
	t.val = cfg.Validator
	if t.val == nil {
		t.val = p
	}
	t.hooks = newNotifier(t)
	t.graph = http.NewServeMux()
	t.routes()
	t.handle = t.buildHandler(p.Handler())
	return t, nil
}

// Close stops notification delivery. Pending notifications are dropped.
func (t *Tenant) Close() { t.hooks.close() }

// IDP returns the tenant's identity platform.
func (t *Tenant) IDP() *idp.Provider { return t.idp }

// TenantID returns the tenant's GUID.
func (t *Tenant) TenantID() string { return t.cfg.TenantID }

// Domain returns the tenant's mail domain.
func (t *Tenant) Domain() string { return t.cfg.Domain }

// AddRedirectURI registers another redirect URI on the simulated app registration.
func (t *Tenant) AddRedirectURI(uri string) error {
	return t.idp.UpdateApp(t.cfg.ClientID, func(a *idp.App) {
		if !slices.Contains(a.RedirectURIs, uri) {
			a.RedirectURIs = append(a.RedirectURIs, uri)
		}
	})
}

// ExpireClientSecret makes every current secret of the app expire now (AADSTS7000222 on
// the next token request). AddClientSecret adds a fresh one.
func (t *Tenant) ExpireClientSecret() error {
	now := t.now()
	return t.idp.UpdateApp(t.cfg.ClientID, func(a *idp.App) {
		for i := range a.Secrets {
			a.Secrets[i].Expires = now.Add(-time.Second)
		}
	})
}

// AddClientSecret adds a client secret valid for validFor.
func (t *Tenant) AddClientSecret(value string, validFor time.Duration) error {
	exp := t.now().Add(validFor)
	return t.idp.UpdateApp(t.cfg.ClientID, func(a *idp.App) {
		a.Secrets = append(a.Secrets, idp.Secret{Value: value, Expires: exp})
	})
}

// SetAppRoles replaces the application permissions granted to the app (tests of 403s).
func (t *Tenant) SetAppRoles(roles []string) error {
	return t.idp.UpdateApp(t.cfg.ClientID, func(a *idp.App) { a.AppRoles = slices.Clone(roles) })
}

// Handler serves Graph under /v1.0/, the admin API under /sim/ and everything else through
// the identity platform.
func (t *Tenant) Handler() http.Handler { return t.handle }

func (t *Tenant) buildHandler(identity http.Handler) http.Handler {
	root := http.NewServeMux()
	root.Handle("/v1.0/", t.graphEntry())
	root.Handle("/sim/", t.adminHandler())
	root.Handle("/", identity)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d := t.cfg.Latency; d > 0 {
			tm := time.NewTimer(d)
			select {
			case <-tm.C:
			case <-r.Context().Done():
				tm.Stop()
				return
			}
		}
		if !strings.HasPrefix(r.URL.Path, "/v1.0/") && !strings.HasPrefix(r.URL.Path, "/sim/") {
			t.stats.add(r.Method + " " + identityRoute(r.URL.Path))
		}
		root.ServeHTTP(w, r)
	})
}

// identityRoute replaces the tenant segment of an identity-platform path with {tenant}.
func identityRoute(p string) string {
	parts := strings.SplitN(strings.TrimPrefix(p, "/"), "/", 2)
	if len(parts) == 2 && parts[0] != "oidc" && parts[0] != "error" {
		return "/{tenant}/" + parts[1]
	}
	return p
}

// directory adapts the tenant's users to idp.Directory.
type directory struct{ t *Tenant }

func (d directory) toIDP(u *user) idp.User {
	return idp.User{ID: u.id, UserPrincipalName: u.upn, Mail: u.mail, DisplayName: u.displayName,
		GlobalAdmin: u.globalAdmin, Enabled: u.accountEnabled}
}

func (d directory) UserByLogin(login string) (idp.User, bool) {
	s := d.t.st
	s.mu.RLock()
	defer s.mu.RUnlock()
	if u := s.lookupUser(login); u != nil {
		return d.toIDP(u), true
	}
	l := strings.ToLower(login)
	for _, u := range s.users {
		if !u.deleted && strings.ToLower(u.mail) == l {
			return d.toIDP(u), true
		}
	}
	return idp.User{}, false
}

func (d directory) UserByID(id string) (idp.User, bool) {
	s := d.t.st
	s.mu.RLock()
	defer s.mu.RUnlock()
	if u := s.userByID[id]; u != nil && !u.deleted {
		return d.toIDP(u), true
	}
	return idp.User{}, false
}

func (d directory) FirstGlobalAdmin() (idp.User, bool) {
	s := d.t.st
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, u := range s.users {
		if u.globalAdmin && !u.deleted {
			return d.toIDP(u), true
		}
	}
	return idp.User{}, false
}

// ---- request plumbing ----

type ctxKey int

const (
	ctxClaims ctxKey = iota
	ctxInner         // set on requests dispatched from $batch
	ctxReqID
)

func claimsOf(r *http.Request) *idp.AccessClaims {
	c, _ := r.Context().Value(ctxClaims).(*idp.AccessClaims)
	return c
}

func isInner(r *http.Request) bool { return r.Context().Value(ctxInner) != nil }

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// perm lists the permissions that allow a call: application roles and delegated scopes.
// An empty del means the call is not available with delegated tokens (and vice versa).
type perm struct {
	app, del []string
	meOnly   bool // delegated tokens may only address the signed-in user
	any      bool // any valid token (the inner requests are checked one by one)
}

// route registers a Graph route: stats, faults, authentication and authorisation wrap h.
func (t *Tenant) route(pattern string, p perm, h http.HandlerFunc) {
	t.graph.Handle(pattern, t.wrap(pattern, p, h))
}

func (t *Tenant) wrap(pattern string, p perm, h http.HandlerFunc) http.Handler {
	inner := t.guard(pattern, p, h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !t.log.Enabled(r.Context(), slog.LevelDebug) {
			inner.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		sw := &httpx.StatusWriter{ResponseWriter: w}
		inner.ServeHTTP(sw, r)
		t.log.LogAttrs(r.Context(), slog.LevelDebug, "sim: graph request", slog.String("route", pattern),
			slog.String("path", r.URL.Path), slog.Int("status", sw.Code), slog.Duration("took", time.Since(start)),
			slog.Bool("batched", isInner(r)), slog.String("request_id", w.Header().Get("request-id")))
	})
}

// guard applies stats, faults, authentication, authorisation and limits around h.
func (t *Tenant) guard(pattern string, p perm, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.stats.add(pattern)
		if t.fault.inject(w, r, t, pattern) {
			return
		}
		c, ok := t.authenticate(w, r)
		if !ok {
			return
		}
		if p.meOnly && !c.Delegated {
			t.graphError(w, r, http.StatusBadRequest, "BadRequest", "/me request is only valid with delegated authentication flow.")
			return
		}
		if !t.authorize(w, r, c, p) {
			return
		}
		limited, release := t.fault.limit(w, r, t, pattern, c)
		if limited {
			return
		}
		defer release()
		h(w, r.WithContext(context.WithValue(r.Context(), ctxClaims, c)))
	})
}

func (t *Tenant) authenticate(w http.ResponseWriter, r *http.Request) (*idp.AccessClaims, bool) {
	if c := claimsOf(r); c != nil { // inner batch request, already checked
		return c, true
	}
	auth := r.Header.Get("Authorization")
	raw, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok {
		raw, ok = strings.CutPrefix(auth, "bearer ")
	}
	raw = strings.TrimSpace(raw)
	if !ok || raw == "" {
		t.graphError(w, r, http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token is empty.")
		return nil, false
	}
	c, err := t.val.ValidateAccessToken(raw)
	if err != nil {
		msg := "Access token validation failure. Invalid audience."
		if errors.Is(err, idp.ErrTokenExpired) {
			msg = "Lifetime validation failed, the token is expired."
		} else if errors.Is(err, idp.ErrInvalidToken) {
			msg = "IDX14100: JWT is not well formed, there are no dots (.)."
			if strings.Count(raw, ".") == 2 {
				msg = "Access token validation failure. Invalid signature."
			}
		}
		t.graphError(w, r, http.StatusUnauthorized, "InvalidAuthenticationToken", msg)
		return nil, false
	}
	if !c.ExpiresAt.IsZero() && !t.now().Before(c.ExpiresAt) {
		t.graphError(w, r, http.StatusUnauthorized, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
		return nil, false
	}
	if c.TenantID != "" && !strings.EqualFold(c.TenantID, t.cfg.TenantID) {
		t.graphError(w, r, http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.")
		return nil, false
	}
	return c, true
}

func (t *Tenant) authorize(w http.ResponseWriter, r *http.Request, c *idp.AccessClaims, p perm) bool {
	if p.any {
		return true
	}
	have, want := c.Roles, p.app
	if c.Delegated {
		have, want = c.Scopes, p.del
	}
	for _, h := range have {
		for _, x := range want {
			if strings.EqualFold(h, x) {
				return true
			}
		}
	}
	t.graphError(w, r, http.StatusForbidden, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
	return false
}

// graphError writes Graph's error body with innerError date and request ids.
func (t *Tenant) graphError(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	rid := requestID(w, r)
	crid := r.Header.Get("client-request-id")
	if crid == "" {
		crid = rid
	}
	body := obj{{"error", obj{
		{"code", code}, {"message", msg},
		{"innerError", obj{{"date", t.now().UTC().Format("2006-01-02T15:04:05")}, {"request-id", rid}, {"client-request-id", crid}}},
	}}}
	writeJSON(w, status, body)
}

// requestID returns the request-id header of the response, setting one if needed.
func requestID(w http.ResponseWriter, r *http.Request) string {
	if id := w.Header().Get("request-id"); id != "" {
		return id
	}
	id := newID()
	w.Header().Set("request-id", id)
	crid := r.Header.Get("client-request-id")
	if crid == "" {
		crid = id
	}
	w.Header().Set("client-request-id", crid)
	return id
}

const jsonCT = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"

func writeJSON(w http.ResponseWriter, status int, body obj) {
	w.Header().Set("Content-Type", jsonCT)
	if w.Header().Get("OData-Version") == "" {
		w.Header().Set("OData-Version", "4.0")
	}
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(status)
	_, _ = w.Write(appendJSON(make([]byte, 0, 256), body))
}

func writeRaw(w http.ResponseWriter, status int, b []byte) {
	w.Header().Set("Content-Type", jsonCT)
	w.Header().Set("OData-Version", "4.0")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// baseURL is the scheme and host written into links.
func (t *Tenant) baseURL(r *http.Request) string {
	if t.cfg.BaseURL != "" {
		return strings.TrimSuffix(t.cfg.BaseURL, "/")
	}
	scheme := "http"
	if r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https" {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// graphEntry routes /v1.0/ requests, answering unknown routes in Graph's error format.
func (t *Tenant) graphEntry() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requestID(w, r)
		if _, pat := t.graph.Handler(r); pat == "" {
			for _, m := range []string{"GET", "POST", "PATCH", "DELETE", "PUT"} {
				r2 := r.Clone(r.Context())
				r2.Method = m
				if _, p := t.graph.Handler(r2); p != "" {
					t.stats.add(r.Method + " (method not allowed)")
					t.graphError(w, r, http.StatusMethodNotAllowed, "Request_BadRequest", "Specified HTTP method is not allowed for the request target.")
					return
				}
			}
			t.stats.add(r.Method + " (unknown route)")
			seg := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
			t.graphError(w, r, http.StatusBadRequest, "BadRequest", fmt.Sprintf("Resource not found for the segment '%s'.", seg))
			return
		}
		t.graph.ServeHTTP(w, r)
	})
}
