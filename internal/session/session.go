// Package session issues and verifies administrator sessions (portal
// cookies and API bearer tokens) and rate-limits password guessing.
package session

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

// Principal is who makes an admin request.
type Principal struct {
	Name  string // "admin-token" or the admin's username
	PBXID string // "" = provider-wide
}

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
	// The account must still exist with the same binding: a deleted
	// administrator (or one of a deleted PBX) loses its sessions at once.
	a, err := s.Store.GetAdminByUsername(ctx, c.Username)
	if errors.Is(err, store.ErrNotFound) {
		return Principal{}, errBadSession
	}
	if err != nil {
		return Principal{}, err
	}
	if a.ID != c.Admin || a.PBXID != c.PBX {
		return Principal{}, errBadSession
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
		return nil, ErrTooManyAttempts
	}
	a, err := s.Store.GetAdminByUsername(ctx, username)
	if errors.Is(err, store.ErrNotFound) {
		secret.CheckPassword(dummyHash, password) // same work as a real check
		return nil, ErrBadCredentials
	}
	if err != nil {
		return nil, err
	}
	if secret.CheckPassword(a.PasswordHash, password) != nil {
		return nil, ErrBadCredentials
	}
	return a, nil
}

var (
	ErrTooManyAttempts = errors.New("too many login attempts; wait a minute")
	ErrBadCredentials  = errors.New("wrong username or password")
	dummyHash          = secret.HashPassword("not a real password")
)

// ClientAddr is the request's remote host (no port).
func ClientAddr(r *http.Request) string {
	h := r.RemoteAddr
	if i := strings.LastIndexByte(h, ':'); i > 0 {
		h = h[:i]
	}
	return h
}
