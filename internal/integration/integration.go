// Package integration connects a PBX to Microsoft Entra ID and manages the
// integration's lifecycle: connect (authorization code with PKCE and admin
// consent), status, client-secret update, disable, enable and disconnect.
// It keeps the credentials sealed at rest and hands Graph clients to the
// features that need them (sync, contacts, presence).
package integration

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/graph"
	"github.com/switchboard-pbx/switchboard/internal/pbx"
	"github.com/switchboard-pbx/switchboard/internal/secret"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// Status values (CONTRACT.md).
const (
	StatusNotConnected = "not_connected"
	StatusConnected    = "connected"
	StatusDisabled     = "disabled"
	StatusError        = "error"
)

// Settings keys.
const (
	stateKey   = "integration"
	pendingKey = "integration.pending"
)

// Paths of the redirect URIs under the public base URL.
const (
	CallbackPath    = "/api/v1/integration/callback"
	SSOCallbackPath = "/client/v1/sso/callback"
)

// pendingTTL bounds how long a started connect can be completed.
const pendingTTL = 15 * time.Minute

// Errors.
var (
	// ErrNotConnected: the PBX has no working integration (not connected or disabled).
	ErrNotConnected = directory.ErrNotConnected
	// ErrDisabled: the integration is disabled; its configuration is locked.
	ErrDisabled = errors.New("the Microsoft Entra ID integration is disabled")
	// ErrBadState: the callback's state is unknown, used, expired or bound elsewhere.
	ErrBadState = errors.New("this sign-in response is unknown, expired or was already used; start the connection again")
)

// ConnectError is a connect that failed at the identity provider or in the checks after it.
type ConnectError struct {
	Reason string // what happened and what to do
	Err    error
}

func (e *ConnectError) Error() string { return e.Reason }
func (e *ConnectError) Unwrap() error { return e.Err }

// Account is the authorization account: who signed in during connect.
type Account struct {
	ID                string `json:"id"`
	UserPrincipalName string `json:"userPrincipalName"`
	DisplayName       string `json:"displayName"`
}

// MissingPermission is an application permission a feature needs and the app lacks.
type MissingPermission struct {
	Permission string `json:"permission"`
	Feature    string `json:"feature"`
}

// state is what is stored per PBX (JSON in the settings table).
type state struct {
	Status             string              `json:"status"`
	StatusReason       string              `json:"statusReason,omitempty"`
	ClientID           string              `json:"clientId"`
	TenantID           string              `json:"tenantId"`
	SealedSecret       string              `json:"sealedSecret"`
	SecretExpiresAt    *time.Time          `json:"secretExpiresAt,omitempty"`
	Account            *Account            `json:"account,omitempty"`
	SealedRefreshToken string              `json:"sealedRefreshToken,omitempty"`
	Granted            []string            `json:"granted,omitempty"`
	Missing            []MissingPermission `json:"missing,omitempty"`
	ConnectedAt        time.Time           `json:"connectedAt"`
	ConnectedBy        string              `json:"connectedBy,omitempty"`
	DisabledAt         *time.Time          `json:"disabledAt,omitempty"`
	UpdatedAt          time.Time           `json:"updatedAt"`
}

type pending struct {
	StateHash    string    `json:"stateHash"`
	SealedVerify string    `json:"sealedVerifier"`
	ClientID     string    `json:"clientId"`
	TenantID     string    `json:"tenantId"`
	SealedSecret string    `json:"sealedSecret"`
	Binding      string    `json:"binding,omitempty"` // hash of the portal session, when started there
	Actor        string    `json:"actor"`
	From         string    `json:"from,omitempty"`
	Expires      time.Time `json:"expires"`
}

// Status is the integration's state as the API shows it.
type Status struct {
	Status             string              `json:"status"`
	StatusReason       string              `json:"statusReason,omitempty"`
	ClientID           string              `json:"clientId"`
	TenantID           string              `json:"tenantId"`
	RedirectURI        string              `json:"redirectUri"`
	SSORedirectURI     string              `json:"ssoRedirectUri"`
	AuthorizationUser  *Account            `json:"authorizationAccount,omitempty"`
	Permissions        []string            `json:"grantedPermissions"`
	MissingPermissions []MissingPermission `json:"missingPermissions"`
	SecretExpiresAt    *time.Time          `json:"secretExpiresAt,omitempty"`
	SecretWarning      string              `json:"secretWarning,omitempty"`
	ConnectedAt        *time.Time          `json:"connectedAt,omitempty"`
	NextSyncAt         *time.Time          `json:"nextSyncAt"`
	LastRun            any                 `json:"lastRun"`
	// ChangeDetection says how changes in Entra reach the PBX: change
	// notifications, or delta polling (with the reason), or off.
	ChangeDetection *ChangeDetection `json:"changeDetection,omitempty"`
}

// ChangeDetection is the active way of noticing changes in the tenant.
type ChangeDetection struct {
	Mode   string `json:"mode"` // notifications | polling | off
	Reason string `json:"reason,omitempty"`
}

// Service runs the integration's lifecycle for every PBX.
type Service struct {
	Store      store.Store
	PBX        *pbx.Service
	Keys       *secret.Keyring
	Logger     *slog.Logger
	BaseURL    string // public base URL of this service
	GraphURL   string
	LoginURL   string
	HTTPClient *http.Client
	Now        func() time.Time
	// OnConnected runs after a successful connect (e.g. initial data load).
	OnConnected func(ctx context.Context, pbx string)
	// OnDisconnecting runs at the start of a disconnect, while the
	// credentials still work (remove subscriptions, synced contacts).
	OnDisconnecting func(ctx context.Context, pbx string)
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now().UTC()
}

// RedirectURI is the Redirect URI to register on the Entra application.
func (s *Service) RedirectURI() string { return strings.TrimRight(s.BaseURL, "/") + CallbackPath }

// SSORedirectURI is the client SSO redirect URI to register on the Entra application.
func (s *Service) SSORedirectURI() string { return strings.TrimRight(s.BaseURL, "/") + SSOCallbackPath }

func (s *Service) load(ctx context.Context, pbxID string) (*state, error) {
	b, err := s.Store.GetSetting(ctx, pbxID, stateKey)
	if errors.Is(err, store.ErrNotFound) {
		return &state{Status: StatusNotConnected}, nil
	}
	if err != nil {
		return nil, err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("integration state: %w", err)
	}
	return &st, nil
}

// update changes the stored state in one transaction; fn returning nil state deletes it.
func (s *Service) update(ctx context.Context, pbxID string, fn func(*state) (*state, error)) error {
	return s.Store.UpdateSetting(ctx, pbxID, stateKey, func(old []byte) ([]byte, error) {
		st := &state{Status: StatusNotConnected}
		if old != nil {
			if err := json.Unmarshal(old, st); err != nil {
				return nil, err
			}
		}
		next, err := fn(st)
		if err != nil || next == nil {
			return nil, err
		}
		next.UpdatedAt = s.now()
		return json.Marshal(next)
	})
}

// GetStatus returns the PBX's integration status.
func (s *Service) GetStatus(ctx context.Context, pbxID string) (*Status, error) {
	st, err := s.load(ctx, pbxID)
	if err != nil {
		return nil, err
	}
	out := &Status{Status: st.Status, StatusReason: st.StatusReason, ClientID: st.ClientID, TenantID: st.TenantID,
		RedirectURI: s.RedirectURI(), SSORedirectURI: s.SSORedirectURI(), AuthorizationUser: st.Account,
		Permissions: orEmpty(st.Granted), MissingPermissions: st.Missing, SecretExpiresAt: st.SecretExpiresAt}
	if out.MissingPermissions == nil {
		out.MissingPermissions = []MissingPermission{}
	}
	if st.Status != StatusNotConnected {
		t := st.ConnectedAt
		out.ConnectedAt = &t
	}
	if st.SecretExpiresAt != nil {
		switch left := st.SecretExpiresAt.Sub(s.now()); {
		case left <= 0:
			out.SecretWarning = "The client secret has expired: create a new secret in the Entra app registration and use Update client secret."
		case left <= 30*24*time.Hour:
			out.SecretWarning = fmt.Sprintf("The client secret expires on %s: create a new secret in the Entra app registration and use Update client secret before then.", st.SecretExpiresAt.Format("2006-01-02"))
		}
	}
	return out, nil
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// ConnectInput is what the administrator pastes from the app registration.
type ConnectInput struct {
	ClientID     string `json:"clientId"`
	TenantID     string `json:"tenantId"`
	ClientSecret string `json:"clientSecret"`
}

var guidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// Validate names the first bad field.
func (in *ConnectInput) Validate() error {
	in.ClientID, in.TenantID = strings.TrimSpace(in.ClientID), strings.TrimSpace(in.TenantID)
	if in.ClientID == "" {
		return &directory.FieldError{Field: "clientId", Code: "required", Reason: "is required: the Application (client) ID from the app registration's Overview"}
	}
	if !guidRE.MatchString(in.ClientID) {
		return &directory.FieldError{Field: "clientId", Code: "invalid", Reason: "must be a GUID like 11111111-2222-3333-4444-555555555555 (the Application (client) ID)"}
	}
	if in.TenantID == "" {
		return &directory.FieldError{Field: "tenantId", Code: "required", Reason: "is required: the Directory (tenant) ID from the app registration's Overview"}
	}
	if !guidRE.MatchString(in.TenantID) {
		return &directory.FieldError{Field: "tenantId", Code: "invalid", Reason: "must be a GUID (the Directory (tenant) ID)"}
	}
	return validateSecret("clientSecret", in.ClientSecret)
}

func validateSecret(field, v string) error {
	if strings.TrimSpace(v) == "" {
		return &directory.FieldError{Field: field, Code: "required", Reason: "is required: the secret's Value (not its Secret ID)"}
	}
	if len(v) > 512 || strings.ContainsAny(v, "\r\n") {
		return &directory.FieldError{Field: field, Code: "invalid", Reason: "is not a client secret value"}
	}
	if guidRE.MatchString(strings.TrimSpace(v)) {
		return &directory.FieldError{Field: field, Code: "invalid", Reason: "looks like the Secret ID; paste the secret's Value instead"}
	}
	return nil
}

// AppInUseError: another PBX of this service already uses the Entra application.
type AppInUseError struct{ PBX string }

func (e *AppInUseError) Error() string {
	return fmt.Sprintf("this Entra application is already connected to PBX %q; one application serves one PBX: register another application for this PBX", e.PBX)
}

func (s *Service) checkAppFree(ctx context.Context, pbxID, clientID string) error {
	pbxs, err := s.Store.ListPBXs(ctx)
	if err != nil {
		return err
	}
	for _, p := range pbxs {
		if p.ID == pbxID {
			continue
		}
		st, err := s.load(ctx, p.ID)
		if err != nil {
			return err
		}
		if st.Status != StatusNotConnected && strings.EqualFold(st.ClientID, clientID) {
			return &AppInUseError{PBX: p.Name}
		}
	}
	return nil
}

// Scopes requested at connect: sign-in, a refresh token, and every delegated
// Graph permission consented for the app.
var connectScopes = []string{"openid", "profile", "email", "offline_access", "https://graph.microsoft.com/.default"}

func hashString(v string) string {
	h := sha256.Sum256([]byte(v))
	return hex.EncodeToString(h[:])
}

// StartConnect validates the input and returns the URL the administrator's
// browser follows to sign in and consent. binding (may be empty) is the
// portal session the callback must come back with.
func (s *Service) StartConnect(ctx context.Context, pbxID, actor, from string, in ConnectInput, binding string) (string, error) {
	if err := in.Validate(); err != nil {
		return "", err
	}
	st, err := s.load(ctx, pbxID)
	if err != nil {
		return "", err
	}
	if st.Status == StatusDisabled {
		return "", &directory.LockedError{Reason: "the integration is disabled: enable it or disconnect it before connecting again"}
	}
	if err := s.checkAppFree(ctx, pbxID, in.ClientID); err != nil {
		return "", err
	}
	gc, err := s.client(in.TenantID, in.ClientID, in.ClientSecret)
	if err != nil {
		return "", err
	}
	stateVal := pbxID + "~" + secret.RandomToken(24)
	verifier := oauth2.GenerateVerifier()
	p := pending{StateHash: hashString(stateVal), SealedVerify: s.Keys.SealString(verifier), ClientID: in.ClientID, TenantID: in.TenantID,
		SealedSecret: s.Keys.SealString(in.ClientSecret), Actor: actor, From: from, Expires: s.now().Add(pendingTTL)}
	if binding != "" {
		p.Binding = hashString(binding)
	}
	b, _ := json.Marshal(p)
	if err := s.Store.UpdateSetting(ctx, pbxID, pendingKey, func([]byte) ([]byte, error) { return b, nil }); err != nil {
		return "", err
	}
	s.PBX.Audit(ctx, pbxID, actor, "integration.connect.start", in.ClientID, "from "+from)
	return gc.AuthorizeURL(graph.AuthorizeParams{
		RedirectURI: s.RedirectURI(), Scopes: connectScopes, State: stateVal,
		CodeChallenge: oauth2.S256ChallengeFromVerifier(verifier), Prompt: "consent",
	}), nil
}

func (s *Service) client(tenantID, clientID, clientSecret string) (*graph.Client, error) {
	return graph.New(graph.Config{GraphURL: s.GraphURL, LoginURL: s.LoginURL, TenantID: tenantID, ClientID: clientID,
		ClientSecret: clientSecret, HTTPClient: s.HTTPClient, Logger: s.Logger})
}

// CompleteConnect finishes a connect from the callback's query. It returns
// the PBX it was for (when the state could be read) and a *ConnectError or
// ErrBadState when it failed; nothing half-connected is stored.
func (s *Service) CompleteConnect(ctx context.Context, q url.Values, binding string) (string, error) {
	stateVal := q.Get("state")
	pbxID, _, ok := strings.Cut(stateVal, "~")
	if !ok || pbxID == "" {
		return "", ErrBadState
	}
	if _, err := s.Store.GetPBX(ctx, pbxID); err != nil {
		return "", ErrBadState
	}
	// Take the pending connect: single use, whatever happens next.
	var p pending
	found := false
	err := s.Store.UpdateSetting(ctx, pbxID, pendingKey, func(old []byte) ([]byte, error) {
		if old == nil {
			return nil, nil
		}
		var cand pending
		if json.Unmarshal(old, &cand) != nil {
			return nil, nil
		}
		if subtle.ConstantTimeCompare([]byte(cand.StateHash), []byte(hashString(stateVal))) != 1 {
			return old, nil // a forged state does not cancel the real pending connect
		}
		p, found = cand, true
		return nil, nil
	})
	if err != nil {
		return pbxID, err
	}
	if !found || s.now().After(p.Expires) {
		return pbxID, ErrBadState
	}
	if p.Binding != "" && subtle.ConstantTimeCompare([]byte(p.Binding), []byte(hashString(binding))) != 1 {
		return pbxID, ErrBadState
	}
	fail := func(reason string, err error) (string, error) {
		s.PBX.Audit(ctx, pbxID, p.Actor, "integration.connect.failed", p.ClientID, reason)
		return pbxID, &ConnectError{Reason: reason, Err: err}
	}
	if e := q.Get("error"); e != "" {
		desc := q.Get("error_description")
		if e == "access_denied" || e == "consent_required" {
			return fail("Consent was not given: sign in as a Global Administrator and accept the permissions for the organisation. ("+firstLine(desc)+")", nil)
		}
		return fail("Microsoft sign-in failed: "+e+": "+firstLine(desc), nil)
	}
	code := q.Get("code")
	if code == "" {
		return fail("Microsoft sign-in returned no authorization code; start the connection again.", nil)
	}
	clientSecret, err1 := s.Keys.OpenString(p.SealedSecret)
	verifier, err2 := s.Keys.OpenString(p.SealedVerify)
	if err := errors.Join(err1, err2); err != nil {
		return pbxID, err
	}
	gc, err := s.client(p.TenantID, p.ClientID, clientSecret)
	if err != nil {
		return pbxID, err
	}
	tok, err := gc.ExchangeCode(ctx, code, verifier, s.RedirectURI(), connectScopes)
	if err != nil {
		return fail("Could not redeem the sign-in: "+graph.Hint(err), err)
	}
	acct, err := accountFrom(tok, p.ClientID, p.TenantID)
	if err != nil {
		return fail(err.Error(), err)
	}
	if tok.RefreshToken == "" {
		return fail("Microsoft returned no refresh token: the app registration must allow the offline_access permission.", nil)
	}
	roles, err := gc.GrantedRoles(ctx)
	if err != nil {
		return fail("The client secret or consent does not work for application access: "+graph.Hint(err), err)
	}
	if err := s.checkAppFree(ctx, pbxID, p.ClientID); err != nil {
		return fail(err.Error(), err)
	}
	missing := MissingPermissions(roles)
	expires := s.secretExpiry(ctx, gc, p.ClientID, clientSecret)
	now := s.now()
	err = s.update(ctx, pbxID, func(st *state) (*state, error) {
		return &state{Status: StatusConnected, ClientID: p.ClientID, TenantID: p.TenantID, SealedSecret: p.SealedSecret,
			SecretExpiresAt: expires, Account: acct, SealedRefreshToken: s.Keys.SealString(tok.RefreshToken),
			Granted: roles, Missing: missing, ConnectedAt: now, ConnectedBy: p.Actor}, nil
	})
	if err != nil {
		return pbxID, err
	}
	detail := "authorization account " + acct.UserPrincipalName
	if len(missing) > 0 {
		detail += fmt.Sprintf("; %d permissions missing", len(missing))
	}
	s.PBX.Audit(ctx, pbxID, p.Actor, "integration.connect", p.ClientID, detail)
	if s.OnConnected != nil {
		s.OnConnected(context.WithoutCancel(ctx), pbxID)
	}
	return pbxID, nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\r")
	s, _, _ = strings.Cut(s, "\n")
	return s
}

func accountFrom(tok *graph.TokenResponse, clientID, tenantID string) (*Account, error) {
	if tok.IDToken == "" {
		return nil, errors.New("Microsoft returned no ID token; the sign-in did not include the openid permission")
	}
	c, err := graph.ParseTokenClaims(tok.IDToken)
	if err != nil {
		return nil, err
	}
	aud, _ := c.Audience.(string)
	if aud != clientID {
		return nil, errors.New("the ID token was issued to another application")
	}
	if !strings.EqualFold(c.TenantID, tenantID) {
		return nil, fmt.Errorf("the administrator signed in to another tenant (%s) than the one configured (%s)", c.TenantID, tenantID)
	}
	upn := c.PreferredUsername
	if upn == "" {
		upn = c.UPN
	}
	return &Account{ID: c.ObjectID, UserPrincipalName: upn, DisplayName: c.Name}, nil
}

// Required application permissions by feature; any one of the alternatives suffices.
var requiredPermissions = []struct {
	feature string
	anyOf   []string
}{
	{"user sync", []string{"User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}},
	{"group sync", []string{"GroupMember.Read.All", "Group.Read.All", "Group.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}},
	{"Outlook contacts sync", []string{"Contacts.Read", "Contacts.ReadWrite"}},
	{"Teams presence sync", []string{"Presence.ReadWrite.All"}},
}

// MissingPermissions lists, per feature, the least permission absent from roles.
func MissingPermissions(roles []string) []MissingPermission {
	var out []MissingPermission
	for _, r := range requiredPermissions {
		ok := false
		for _, p := range r.anyOf {
			if slices.Contains(roles, p) {
				ok = true
				break
			}
		}
		if !ok {
			out = append(out, MissingPermission{Permission: r.anyOf[0], Feature: r.feature})
		}
	}
	return out
}

// secretExpiry reads the end date of the app's password credential that
// matches clientSecret (Graph returns each credential's first characters as
// its hint), where the app may read its own registration
// (Application.Read.All or Directory.Read.All); nil when unknown.
func (s *Service) secretExpiry(ctx context.Context, gc *graph.Client, clientID, clientSecret string) *time.Time {
	var out struct {
		Value []struct {
			PasswordCredentials []struct {
				EndDateTime string `json:"endDateTime"`
				Hint        string `json:"hint"`
			} `json:"passwordCredentials"`
		} `json:"value"`
	}
	q := url.Values{"$filter": {"appId eq '" + clientID + "'"}, "$select": {"passwordCredentials"}}
	if err := gc.Do(ctx, http.MethodGet, "/applications", q, nil, &out); err != nil {
		s.Logger.DebugContext(ctx, "client secret expiry not readable", "err", err)
		return nil
	}
	var matched, latest *time.Time
	for _, a := range out.Value {
		for _, pc := range a.PasswordCredentials {
			t, err := time.Parse(time.RFC3339, pc.EndDateTime)
			if err != nil {
				continue
			}
			t = t.UTC()
			if pc.Hint != "" && strings.HasPrefix(clientSecret, pc.Hint) && (matched == nil || t.After(*matched)) {
				matched = &t
			}
			if latest == nil || t.After(*latest) {
				latest = &t
			}
		}
	}
	if matched != nil {
		return matched
	}
	return latest
}

// UpdateSecret proves the new secret against the tenant before storing it;
// the old secret keeps working until then.
func (s *Service) UpdateSecret(ctx context.Context, pbxID, actor, newSecret string) error {
	if err := validateSecret("clientSecret", newSecret); err != nil {
		return err
	}
	st, err := s.load(ctx, pbxID)
	if err != nil {
		return err
	}
	if st.Status == StatusNotConnected {
		return ErrNotConnected
	}
	gc, err := s.client(st.TenantID, st.ClientID, newSecret)
	if err != nil {
		return err
	}
	roles, err := gc.GrantedRoles(ctx)
	if err != nil {
		s.PBX.Audit(ctx, pbxID, actor, "integration.secret.update.failed", st.ClientID, graph.Hint(err))
		return &directory.FieldError{Field: "clientSecret", Code: "rejected", Reason: "was refused by Microsoft Entra ID: " + graph.Hint(err)}
	}
	expires := s.secretExpiry(ctx, gc, st.ClientID, newSecret)
	err = s.update(ctx, pbxID, func(cur *state) (*state, error) {
		if cur.Status == StatusNotConnected {
			return nil, ErrNotConnected
		}
		cur.SealedSecret = s.Keys.SealString(newSecret)
		cur.SecretExpiresAt = expires
		cur.Granted, cur.Missing = roles, MissingPermissions(roles)
		if cur.Status == StatusError {
			cur.Status, cur.StatusReason = StatusConnected, ""
		}
		return cur, nil
	})
	if err != nil {
		return err
	}
	s.PBX.Audit(ctx, pbxID, actor, "integration.secret.update", st.ClientID, "")
	return nil
}

// RemoveOptions are the disable/disconnect dialog's choices.
type RemoveOptions struct {
	DeleteExtensions bool `json:"deleteExtensions"`
	DeleteGroups     bool `json:"deleteGroups"`
}

// Disable stops everything, keeps (and locks) the configuration and the
// synced records, optionally deleting them.
func (s *Service) Disable(ctx context.Context, pbxID, actor string, opt RemoveOptions) error {
	err := s.update(ctx, pbxID, func(st *state) (*state, error) {
		if st.Status == StatusNotConnected {
			return nil, ErrNotConnected
		}
		now := s.now()
		st.Status, st.StatusReason, st.DisabledAt = StatusDisabled, "Disabled by an administrator: syncs and Microsoft sign-in are stopped.", &now
		return st, nil
	})
	if err != nil {
		return err
	}
	if err := s.removeSynced(ctx, pbxID, opt, false); err != nil {
		return err
	}
	s.PBX.Audit(ctx, pbxID, actor, "integration.disable", "", fmt.Sprintf("deleteExtensions=%t deleteGroups=%t", opt.DeleteExtensions, opt.DeleteGroups))
	return nil
}

// Enable turns a disabled integration back on.
func (s *Service) Enable(ctx context.Context, pbxID, actor string) error {
	err := s.update(ctx, pbxID, func(st *state) (*state, error) {
		if st.Status != StatusDisabled {
			return nil, &directory.FieldError{Field: "status", Code: "invalid", Reason: "the integration is not disabled"}
		}
		st.Status, st.StatusReason, st.DisabledAt = StatusConnected, "", nil
		return st, nil
	})
	if err != nil {
		return err
	}
	s.PBX.Audit(ctx, pbxID, actor, "integration.enable", "", "")
	return nil
}

// Disconnect removes the integration: secrets and tokens are erased, synced
// records are deleted or become ordinary PBX records.
func (s *Service) Disconnect(ctx context.Context, pbxID, actor string, opt RemoveOptions) error {
	st, err := s.load(ctx, pbxID)
	if err != nil {
		return err
	}
	if st.Status == StatusNotConnected {
		return ErrNotConnected
	}
	if s.OnDisconnecting != nil {
		s.OnDisconnecting(ctx, pbxID)
	}
	if err := s.removeSynced(ctx, pbxID, opt, true); err != nil {
		return err
	}
	if err := s.update(ctx, pbxID, func(*state) (*state, error) { return nil, nil }); err != nil {
		return err
	}
	// Sync settings, delta links and run state go with the integration.
	if err := s.clearPrefix(ctx, pbxID, "sync."); err != nil {
		return err
	}
	s.PBX.Audit(ctx, pbxID, actor, "integration.disconnect", st.ClientID, fmt.Sprintf("deleteExtensions=%t deleteGroups=%t", opt.DeleteExtensions, opt.DeleteGroups))
	return nil
}

func (s *Service) clearPrefix(ctx context.Context, pbxID, prefix string) error {
	m, err := s.Store.ListSettings(ctx, pbxID, prefix)
	if err != nil {
		return err
	}
	for k := range m {
		if err := s.Store.UpdateSetting(ctx, pbxID, k, func([]byte) ([]byte, error) { return nil, nil }); err != nil {
			return err
		}
	}
	return nil
}

// removeSynced deletes synced extensions/groups as asked; with release, the
// kept ones become ordinary (local, unlocked) records.
func (s *Service) removeSynced(ctx context.Context, pbxID string, opt RemoveOptions, release bool) error {
	var del []string
	var keep []*directory.Extension
	err := s.Store.ListAllExtensions(ctx, pbxID, func(e *directory.Extension) error {
		if e.Source != directory.SourceEntra {
			return nil
		}
		if opt.DeleteExtensions {
			del = append(del, e.ID)
		} else if release {
			c := *e
			c.Source, c.EntraID = directory.SourceLocal, ""
			keep = append(keep, &c)
		}
		return nil
	})
	if err != nil {
		return err
	}
	groups, err := s.Store.ListGroups(ctx, pbxID)
	if err != nil {
		return err
	}
	// Groups first: a deleted extension leaves its groups anyway.
	for _, g := range groups {
		if g.Source != directory.SourceEntra {
			continue
		}
		if opt.DeleteGroups {
			if err := s.Store.DeleteGroup(ctx, pbxID, g.ID, nil); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		} else if release {
			if _, err := s.Store.UpdateGroup(ctx, pbxID, g.ID, func(g *directory.Group) error {
				g.Source, g.EntraID = directory.SourceLocal, ""
				return nil
			}); err != nil {
				return err
			}
		}
	}
	if len(del) > 0 || len(keep) > 0 {
		return s.PBX.ApplyExtensions(ctx, pbxID, store.ExtensionChanges{Update: keep, Delete: del})
	}
	return nil
}

// AppClient returns an app-token Graph client for the PBX's tenant
// (ErrNotConnected when not connected or disabled).
func (s *Service) AppClient(ctx context.Context, pbxID string) (*graph.Client, error) {
	st, err := s.load(ctx, pbxID)
	if err != nil {
		return nil, err
	}
	switch st.Status {
	case StatusNotConnected:
		return nil, ErrNotConnected
	case StatusDisabled:
		return nil, fmt.Errorf("%w: %w", ErrNotConnected, ErrDisabled)
	}
	sec, err := s.Keys.OpenString(st.SealedSecret)
	if err != nil {
		return nil, err
	}
	return s.client(st.TenantID, st.ClientID, sec)
}

// DelegatedClient returns a Graph client acting as the authorization
// account; rotated refresh tokens are stored sealed.
func (s *Service) DelegatedClient(ctx context.Context, pbxID string) (*graph.Client, error) {
	st, err := s.load(ctx, pbxID)
	if err != nil {
		return nil, err
	}
	if st.Status != StatusConnected && st.Status != StatusError {
		return nil, ErrNotConnected
	}
	sec, err1 := s.Keys.OpenString(st.SealedSecret)
	rt, err2 := s.Keys.OpenString(st.SealedRefreshToken)
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	cfg := graph.Config{GraphURL: s.GraphURL, LoginURL: s.LoginURL, TenantID: st.TenantID, ClientID: st.ClientID,
		ClientSecret: sec, HTTPClient: s.HTTPClient, Logger: s.Logger}
	return graph.NewDelegated(cfg, rt, func(ctx context.Context, newRT string) error {
		return s.update(ctx, pbxID, func(cur *state) (*state, error) {
			if cur.Status == StatusNotConnected {
				return nil, ErrNotConnected
			}
			cur.SealedRefreshToken = s.Keys.SealString(newRT)
			return cur, nil
		})
	})
}

// ReportFailure records an error state with what to do, from a failed Graph
// or token call (e.g. an expired secret found by a sync).
func (s *Service) ReportFailure(ctx context.Context, pbxID string, cause error) {
	reason := graph.Hint(cause)
	if reason == "" {
		return
	}
	err := s.update(ctx, pbxID, func(st *state) (*state, error) {
		if st.Status != StatusConnected && st.Status != StatusError {
			return st, nil
		}
		st.Status, st.StatusReason = StatusError, reason
		return st, nil
	})
	if err != nil {
		s.Logger.ErrorContext(ctx, "recording integration failure", "err", err)
	}
}

// Clear returns an error state to connected after a call succeeded again.
func (s *Service) Clear(ctx context.Context, pbxID string) {
	_ = s.update(ctx, pbxID, func(st *state) (*state, error) {
		if st.Status == StatusError {
			st.Status, st.StatusReason = StatusConnected, ""
		}
		return st, nil
	})
}

// Connected reports whether the PBX's integration is connected (not disabled).
func (s *Service) Connected(ctx context.Context, pbxID string) bool {
	st, err := s.load(ctx, pbxID)
	return err == nil && (st.Status == StatusConnected || st.Status == StatusError)
}

// Locked reports an error when the configuration may not be changed (disabled).
func (s *Service) Locked(ctx context.Context, pbxID string) error {
	st, err := s.load(ctx, pbxID)
	if err != nil {
		return err
	}
	if st.Status == StatusDisabled {
		return &directory.LockedError{Reason: "the integration is disabled: its configuration is locked until it is enabled again"}
	}
	return nil
}
