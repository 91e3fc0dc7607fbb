package sso

import (
	"context"
	"errors"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/secret"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// Password sign-in errors.
var (
	// ErrBadCredentials is the one answer for an unknown user, a wrong
	// password and an extension without a client password.
	ErrBadCredentials = errors.New("wrong username or password")
	// ErrTooManyAttempts: the username or the client address tried too often.
	ErrTooManyAttempts = errors.New("too many sign-in attempts; wait a minute and try again")
	// ErrSSORequired: the extension is synced and the PBX is in SSO-only mode.
	ErrSSORequired = errors.New("this extension signs in with Microsoft only (single sign-on is required for synced users); use \"Sign in with Microsoft\"")
)

// dummyHash gives an unknown user the same work as a real password check.
var dummyHash = secret.HashPassword("switchboard: not a real password")

type limiterEntry struct {
	l *rate.Limiter
}

// allow takes one attempt from the limiter of key (every and burst apply
// when the limiter is created; zero values take the defaults given).
func (s *Service) allow(key string, every time.Duration, burst int, defEvery time.Duration, defBurst int) bool {
	if every <= 0 {
		every = defEvery
	}
	if burst <= 0 {
		burst = defBurst
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.limiters == nil {
		s.limiters = map[string]*limiterEntry{}
	}
	if len(s.limiters) >= 10_000 {
		// Bound memory under a flood of names: a limiter that has refilled
		// is no different from a new one, so it can go.
		for k, e := range s.limiters {
			if e.l.TokensAt(now) >= float64(e.l.Burst()) {
				delete(s.limiters, k)
			}
		}
	}
	e, ok := s.limiters[key]
	if !ok {
		e = &limiterEntry{l: rate.NewLimiter(rate.Every(every), burst)}
		s.limiters[key] = e
	}
	return e.l.AllowN(now, 1)
}

// findExtension looks a username up: an extension number or an email.
func (s *Service) findExtension(ctx context.Context, pbxID, username string) (*directory.Extension, error) {
	username = strings.TrimSpace(username)
	if username == "" {
		return nil, store.ErrNotFound
	}
	if directory.ValidateNumber(username) == nil {
		return s.Store.FindExtension(ctx, pbxID, "number", username)
	}
	return s.Store.FindExtension(ctx, pbxID, "email", directory.NormalizeEmail(username))
}

// PasswordLogin signs an extension in with its client password. Attempts
// are limited per username and per client address. A synced extension is
// refused with ErrSSORequired while the PBX is in SSO-only mode (only once
// the password is right, so that the answer reveals nothing to a guesser).
func (s *Service) PasswordLogin(ctx context.Context, pbxID, username, password, clientAddr, client string) (string, *directory.Extension, error) {
	ext, err := s.findExtension(ctx, pbxID, username)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return "", nil, err
	}
	// One limiter per extension, however it is named (number or email).
	who := "n:" + strings.ToLower(strings.TrimSpace(username))
	if ext != nil {
		who = "x:" + ext.ID
	}
	userOK := s.allow(pbxID+"\x00"+who, s.LoginRate, s.LoginBurst, 12*time.Second, 5)
	addrOK := s.allow("c:"+clientAddr, s.AddrRate, s.AddrBurst, time.Second, 30)
	if !userOK || !addrOK {
		return "", nil, ErrTooManyAttempts
	}
	if ext == nil || ext.ClientPasswordHash == "" {
		_ = secret.CheckPassword(dummyHash, password)
		return "", nil, ErrBadCredentials
	}
	if secret.CheckPassword(ext.ClientPasswordHash, password) != nil {
		return "", nil, ErrBadCredentials
	}
	if ext.Synced() {
		st, err := s.GetSettings(ctx, pbxID)
		if err != nil {
			return "", nil, err
		}
		if st.SSOOnly() {
			s.PBX.Audit(ctx, pbxID, "client:"+ext.Number, "client.login.refused", ext.Number, "password sign-in refused: SSO only")
			return "", nil, ErrSSORequired
		}
	}
	tok, err := s.issue(ctx, Session{PBX: pbxID, ExtensionID: ext.ID, Method: MethodPassword, Client: client, PasswordFP: passwordFP(ext.ClientPasswordHash)})
	if err != nil {
		return "", nil, err
	}
	s.PBX.Audit(ctx, pbxID, "client:"+ext.Number, "client.login", ext.Number, "password, "+client)
	return tok, ext, nil
}
