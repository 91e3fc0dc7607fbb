package api

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/secret"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// Sessions issues and verifies administrator session tokens: signed
// (HMAC-SHA256), expiring, and revocable (a revoked token id is kept in the
// store until the token would have expired, so every instance sees it).
type Sessions struct {
	Key   []byte // HMAC key
	Store store.Store
	TTL   time.Duration
	Now   func() time.Time

	mu       sync.Mutex
	limiters map[string]*rate.Limiter // login attempts per username and per client address
}

type sessionClaims struct {
	ID       string `json:"i"`
	Admin    string `json:"a"`
	Username string `json:"u"`
	PBX      string `json:"p,omitempty"`
	Expires  int64  `json:"e"`
}

var errBadSession = errors.New("invalid session")

func (s *Sessions) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Issue returns a new token for the admin.
func (s *Sessions) Issue(a *store.Admin) (string, time.Time) {
	ttl := s.TTL
	if ttl == 0 {
		ttl = 12 * time.Hour
	}
	exp := s.now().Add(ttl)
	c := sessionClaims{ID: secret.RandomToken(12), Admin: a.ID, Username: a.Username, PBX: a.PBXID, Expires: exp.Unix()}
	payload, _ := json.Marshal(c)
	p := base64.RawURLEncoding.EncodeToString(payload)
	return p + "." + s.mac(p), exp
}

func (s *Sessions) mac(p string) string {
	m := hmac.New(sha256.New, s.Key)
	m.Write([]byte("switchboard admin session\x00" + p))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (s *Sessions) parse(tok string) (sessionClaims, error) {
	var c sessionClaims
	p, mac, ok := strings.Cut(tok, ".")
	if !ok || !hmac.Equal([]byte(mac), []byte(s.mac(p))) {
		return c, errBadSession
	}
	b, err := base64.RawURLEncoding.DecodeString(p)
	if err != nil || json.Unmarshal(b, &c) != nil {
		return c, errBadSession
	}
	if s.now().Unix() >= c.Expires {
		return c, errBadSession
	}
	return c, nil
}

func revokedKey(id string) string { return "session.revoked." + id }

// Verify checks a token and returns its principal.
func (s *Sessions) Verify(ctx context.Context, tok string) (Principal, error) {
	c, err := s.parse(tok)
	if err != nil {
		return Principal{}, err
	}
	if _, err := s.Store.GetSetting(ctx, directory.DefaultPBX, revokedKey(c.ID)); err == nil {
		return Principal{}, errBadSession
	} else if !errors.Is(err, store.ErrNotFound) {
		return Principal{}, err
	}
	return Principal{Name: c.Username, PBXID: c.PBX}, nil
}

// Revoke ends a session.
func (s *Sessions) Revoke(ctx context.Context, tok string) error {
	c, err := s.parse(tok)
	if err != nil {
		return nil // already unusable
	}
	exp, _ := json.Marshal(c.Expires)
	return s.Store.UpdateSetting(ctx, directory.DefaultPBX, revokedKey(c.ID), func([]byte) ([]byte, error) { return exp, nil })
}

// Allow rate-limits login attempts: 5 a minute per key, bursts of 5.
func (s *Sessions) Allow(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.limiters == nil {
		s.limiters = map[string]*rate.Limiter{}
	}
	if len(s.limiters) > 100_000 { // bound memory under a flood of names
		s.limiters = map[string]*rate.Limiter{}
	}
	l, ok := s.limiters[key]
	if !ok {
		l = rate.NewLimiter(rate.Every(12*time.Second), 5)
		s.limiters[key] = l
	}
	return l.Allow()
}

// Authenticate checks a username and password, rate-limited per username and client.
func (s *Sessions) Authenticate(ctx context.Context, username, password, client string) (*store.Admin, error) {
	if !s.Allow("u:"+strings.ToLower(username)) || !s.Allow("c:"+client) {
		return nil, errTooManyAttempts
	}
	a, err := s.Store.GetAdminByUsername(ctx, username)
	if errors.Is(err, store.ErrNotFound) {
		secret.CheckPassword(dummyHash, password) // same work as a real check
		return nil, errBadCredentials
	}
	if err != nil {
		return nil, err
	}
	if secret.CheckPassword(a.PasswordHash, password) != nil {
		return nil, errBadCredentials
	}
	return a, nil
}

var (
	errTooManyAttempts = errors.New("too many login attempts; wait a minute")
	errBadCredentials  = errors.New("wrong username or password")
	dummyHash          = secret.HashPassword("not a real password")
)

// clientAddr is the request's remote host (no port).
func clientAddr(r *http.Request) string {
	h := r.RemoteAddr
	if i := strings.LastIndexByte(h, ':'); i > 0 {
		h = h[:i]
	}
	return h
}

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	var req loginRequest
	if err := decode(r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	a, err := s.Sessions.Authenticate(r.Context(), req.Username, req.Password, clientAddr(r))
	switch {
	case errors.Is(err, errTooManyAttempts):
		w.Header().Set("Retry-After", "60")
		writeErr(w, http.StatusTooManyRequests, "rate_limited", err.Error(), "")
		return
	case errors.Is(err, errBadCredentials):
		writeErr(w, http.StatusUnauthorized, "bad_credentials", err.Error(), "")
		return
	case err != nil:
		s.writeError(w, r, err)
		return
	}
	tok, exp := s.Sessions.Issue(a)
	s.PBX.Audit(r.Context(), directory.DefaultPBX, a.Username, "admin.login", a.Username, "api")
	writeJSON(w, http.StatusCreated, map[string]any{"token": tok, "expiresAt": exp.UTC(), "mustChangePassword": a.MustChange})
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	tok := strings.TrimSpace(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
	if c, err := r.Cookie(SessionCookie); err == nil && tok == "" {
		tok = c.Value
	}
	if err := s.Sessions.Revoke(r.Context(), tok); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type adminRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
	PBX      string `json:"pbx"`
}

func (s *Server) createAdmin(w http.ResponseWriter, r *http.Request) {
	var req adminRequest
	if err := decode(r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if p, _ := PrincipalFrom(r.Context()); p.PBXID != "" && req.PBX != p.PBXID {
		req.PBX = p.PBXID // a PBX's administrator can only create administrators of that PBX
	}
	if err := validateAdmin(req); err != nil {
		s.writeError(w, r, err)
		return
	}
	a := &store.Admin{Username: req.Username, PasswordHash: secret.HashPassword(req.Password), PBXID: req.PBX, CreatedAt: time.Now().UTC()}
	if err := s.Store.CreateAdmin(r.Context(), a); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.PBX.Audit(r.Context(), directory.DefaultPBX, actor(r), "admin.create", a.Username, "")
	writeJSON(w, http.StatusCreated, map[string]any{"id": a.ID, "username": a.Username, "pbx": a.PBXID})
}

func validateAdmin(req adminRequest) error {
	u := strings.TrimSpace(req.Username)
	if u == "" {
		return &directory.FieldError{Field: "username", Code: "required", Reason: "is required"}
	}
	if len(u) > 64 || strings.ContainsAny(u, " \t\r\n") {
		return &directory.FieldError{Field: "username", Code: "invalid", Reason: "must be at most 64 characters without spaces"}
	}
	if len(req.Password) < 10 {
		return &directory.FieldError{Field: "password", Code: "too_short", Reason: "must be at least 10 characters"}
	}
	if len(req.Password) > 256 {
		return &directory.FieldError{Field: "password", Code: "invalid", Reason: "must be at most 256 characters"}
	}
	return nil
}

func (s *Server) listAudit(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok {
		return
	}
	limit, err := queryInt(r, "limit", 100, 1000)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var before int64
	if v := r.URL.Query().Get("before"); v != "" {
		n, err := parseInt64(v)
		if err != nil {
			s.writeError(w, r, &directory.FieldError{Field: "before", Code: "invalid", Reason: "must be an entry id"})
			return
		}
		before = n
	}
	items, err := s.Store.ListAudit(r.Context(), pbxID, before, limit)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if items == nil {
		items = []store.AuditEntry{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
}
