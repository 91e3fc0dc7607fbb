// Package sso lets the people of a PBX sign in to its softphone clients
// (web, desktop, mobile) and serves the client API they use afterwards.
//
// It is an OpenID Connect relying party for the PBX's Microsoft Entra
// application: authorization code with PKCE, a single-use state and nonce
// bound to the browser by a short-lived cookie, and an ID token verified
// with go-oidc (signature against the tenant's JWKS with key rotation, issuer
// {login}/{tid}/v2.0, audience = client ID, expiry, tid = the connected
// tenant). The token's oid must belong to a synced extension of the PBX.
// Extensions may also sign in with their client password, unless the PBX
// is in "SSO only" mode and the extension is synced.
//
// Client sessions are opaque bearer tokens stored hashed in the settings
// store (so every instance sees them and they can be revoked). Every request
// re-checks a session: it ends when its extension is deleted; a Microsoft
// session also when the integration is disabled or SSO switched off; a
// password session also when the client password changes or SSO-only mode
// comes to apply. The web client carries the same token in a cookie.
package sso

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/integration"
	"github.com/switchboard-pbx/switchboard/internal/pbx"
	"github.com/switchboard-pbx/switchboard/internal/secret"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// Login modes (CONTRACT.md).
const (
	ModeSSOOrPassword = "sso_or_password"
	ModeSSOOnly       = "sso_only"
)

// Default registered redirect URIs of the native clients: the desktop app
// listens on the loopback interface (RFC 8252 section 7.3; a start request
// may name the port it listens on), the mobile app claims a private URI
// scheme (section 7.1).
const (
	DefaultDesktopRedirectURI = "http://localhost/sso"
	DefaultMobileRedirectURI  = "switchboard://sso"
)

// settingsKey is the Settings key of a PBX's SSO settings.
const settingsKey = "sso"

// Settings are a PBX's single sign-on settings.
type Settings struct {
	Enabled   bool   `json:"enabled"`
	LoginMode string `json:"loginMode"` // ModeSSOOrPassword or ModeSSOOnly
	// Where the native clients receive their one-time code (?code=...).
	DesktopRedirectURI string `json:"desktopRedirectUri"`
	MobileRedirectURI  string `json:"mobileRedirectUri"`
}

// SSOOnly reports whether synced users must sign in with Microsoft.
func (st Settings) SSOOnly() bool { return st.Enabled && st.LoginMode == ModeSSOOnly }

// DefaultSettings are the settings of a PBX that never saved any.
func DefaultSettings() Settings {
	return Settings{LoginMode: ModeSSOOrPassword, DesktopRedirectURI: DefaultDesktopRedirectURI, MobileRedirectURI: DefaultMobileRedirectURI}
}

// SettingsInput is a settings update; nil fields keep their value, an
// empty redirect URI takes the default again.
type SettingsInput struct {
	Enabled            *bool   `json:"enabled"`
	LoginMode          *string `json:"loginMode"`
	DesktopRedirectURI *string `json:"desktopRedirectUri"`
	MobileRedirectURI  *string `json:"mobileRedirectUri"`
}

// Validate names the first bad field.
func (st *Settings) Validate() error {
	if st.LoginMode != ModeSSOOrPassword && st.LoginMode != ModeSSOOnly {
		return &directory.FieldError{Field: "loginMode", Code: "invalid", Reason: `must be "sso_or_password" or "sso_only"`}
	}
	if err := validateRedirectURI("desktopRedirectUri", st.DesktopRedirectURI); err != nil {
		return err
	}
	return validateRedirectURI("mobileRedirectUri", st.MobileRedirectURI)
}

// validateRedirectURI accepts a native client's redirect URI: https, http on
// a loopback host, or a private scheme (RFC 8252); never a fragment or a
// scheme a browser would run.
func validateRedirectURI(field, v string) error {
	bad := func(reason string) error {
		return &directory.FieldError{Field: field, Code: "invalid", Reason: reason}
	}
	if v == "" {
		return &directory.FieldError{Field: field, Code: "required", Reason: "is required"}
	}
	u, err := url.Parse(v)
	if err != nil || u.Scheme == "" || len(v) > 512 || strings.ContainsAny(v, " \r\n\t") {
		return bad("must be an absolute URI such as " + DefaultMobileRedirectURI + " or " + DefaultDesktopRedirectURI)
	}
	if u.Fragment != "" || strings.Contains(v, "#") {
		return bad("must not contain a fragment (#)")
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		if u.Host == "" {
			return bad("must name a host")
		}
	case "http":
		if !isLoopback(u.Hostname()) {
			return bad("http is allowed only for a loopback host (localhost, 127.0.0.1, [::1]); use https or an app scheme")
		}
	case "javascript", "data", "file", "vbscript", "about", "blob", "ftp", "ws", "wss":
		return bad("scheme " + u.Scheme + " is not allowed")
	}
	return nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Errors.
var (
	// ErrSSOOff: single sign-on is switched off for the PBX.
	ErrSSOOff = errors.New("sign-in with Microsoft is switched off for this PBX; sign in with your extension's credentials or ask your administrator")
	// ErrIntegrationOff: the integration is disabled or not connected.
	ErrIntegrationOff = errors.New("sign-in with Microsoft is unavailable: the Microsoft Entra ID integration of this PBX is disabled or not connected; ask your administrator")
)

// Service is the client sign-in and the client API of every PBX.
type Service struct {
	Store       store.Store
	Keys        *secret.Keyring
	Integration *integration.Service
	PBX         *pbx.Service
	Logger      *slog.Logger
	// BaseURL is this service's public base URL; LoginURL the identity
	// platform's (https://login.microsoftonline.com or a simulated tenant).
	BaseURL, LoginURL string
	HTTPClient        *http.Client // nil: http.DefaultClient
	Now               func() time.Time

	// SessionTTL is how long a client session lasts (default 12 h).
	SessionTTL time.Duration
	// LoginRate and LoginBurst limit password attempts per username
	// (default one every 12 s, bursts of 5); AddrRate and AddrBurst per
	// client address, looser because an office shares one address (default
	// one a second, bursts of 30).
	LoginRate  time.Duration
	LoginBurst int
	AddrRate   time.Duration
	AddrBurst  int

	// Metrics, when set, receives switchboard_client_signins_total{method,
	// outcome} (method sso, password or exchange; outcome ok or the refusal
	// code) and switchboard_client_requests_total{route, code}. Set it
	// before the first Handler call (e.g. the admin API's registry).
	Metrics prometheus.Registerer

	once     sync.Once
	handler  http.Handler
	signins  *prometheus.CounterVec
	requests *prometheus.CounterVec
	mu       sync.Mutex
	oidc     map[string]*providerEntry // by issuer
	limiters map[string]*limiterEntry
	pruned   map[string]time.Time // last pruning of expired records, by PBX
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now().UTC()
}

func (s *Service) httpClient() *http.Client {
	if s.HTTPClient != nil {
		return s.HTTPClient
	}
	return http.DefaultClient
}

func (s *Service) secureCookies() bool {
	return strings.HasPrefix(strings.ToLower(s.BaseURL), "https://")
}

// GetSettings returns the PBX's SSO settings (defaults when never saved).
func (s *Service) GetSettings(ctx context.Context, pbxID string) (Settings, error) {
	st := DefaultSettings()
	b, err := s.Store.GetSetting(ctx, pbxID, settingsKey)
	if errors.Is(err, store.ErrNotFound) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("sso settings: %w", err)
	}
	return st, nil
}

// UpdateSettings applies in to the stored settings after validating the
// result; nothing is stored when a field is refused.
func (s *Service) UpdateSettings(ctx context.Context, pbxID, actor string, in SettingsInput) (Settings, error) {
	var out Settings
	err := s.Store.UpdateSetting(ctx, pbxID, settingsKey, func(old []byte) ([]byte, error) {
		st := DefaultSettings()
		if old != nil {
			if err := json.Unmarshal(old, &st); err != nil {
				return nil, err
			}
		}
		if in.Enabled != nil {
			st.Enabled = *in.Enabled
		}
		if in.LoginMode != nil {
			st.LoginMode = strings.TrimSpace(*in.LoginMode)
		}
		// An empty redirect URI puts the default back.
		if in.DesktopRedirectURI != nil {
			st.DesktopRedirectURI = cmp.Or(strings.TrimSpace(*in.DesktopRedirectURI), DefaultDesktopRedirectURI)
		}
		if in.MobileRedirectURI != nil {
			st.MobileRedirectURI = cmp.Or(strings.TrimSpace(*in.MobileRedirectURI), DefaultMobileRedirectURI)
		}
		if err := st.Validate(); err != nil {
			return nil, err
		}
		out = st
		return json.Marshal(st)
	})
	if err != nil {
		return Settings{}, err
	}
	s.PBX.Audit(ctx, pbxID, actor, "sso.settings.update", "", fmt.Sprintf("enabled=%t loginMode=%s", out.Enabled, out.LoginMode))
	return out, nil
}

// countSignIn records a sign-in's outcome (no-op without Metrics).
func (s *Service) countSignIn(method string, err error) {
	if s.signins == nil {
		return
	}
	outcome := "ok"
	var ref *Refusal
	switch {
	case err == nil:
	case errors.As(err, &ref):
		outcome = ref.Code
	case errors.Is(err, ErrBadCredentials):
		outcome = "bad_credentials"
	case errors.Is(err, ErrTooManyAttempts):
		outcome = "rate_limited"
	case errors.Is(err, ErrSSORequired):
		outcome = "sso_required"
	case errors.Is(err, ErrBadCode), errors.Is(err, ErrInvalidSession):
		outcome = "invalid_code"
	default:
		outcome = "error"
	}
	s.signins.WithLabelValues(method, outcome).Inc()
}
