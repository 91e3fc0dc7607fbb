package sso

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/secret"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// Settings key prefixes of the records this package keeps per PBX. Every
// record is stored under the SHA-256 of its token: the store never holds a
// usable token.
const (
	sessionPrefix = "client.session."
	codePrefix    = "sso.code."
	pendingPrefix = "sso.pending."
)

// Lifetimes.
const (
	defaultSessionTTL = 12 * time.Hour
	codeTTL           = 60 * time.Second
	pendingTTL        = 10 * time.Minute
	pruneEvery        = 10 * time.Minute
)

// Sign-in methods of a session.
const (
	MethodSSO      = "sso"
	MethodPassword = "password"
)

// ErrInvalidSession: the token is unknown, expired or revoked, or the
// session ended (extension deleted, integration disabled, SSO-only mode).
var ErrInvalidSession = errors.New("the session is invalid or has ended; sign in again")

// Session is a signed-in client.
type Session struct {
	PBX         string `json:"-"`
	ExtensionID string `json:"ext"`
	Method      string `json:"method"`           // MethodSSO or MethodPassword
	Client      string `json:"client"`           // web, desktop, mobile or api
	ObjectID    string `json:"oid,omitempty"`    // Entra user (SSO sessions)
	TenantID    string `json:"tenant,omitempty"` // Entra tenant (SSO sessions)
	// PasswordFP fingerprints the client password a password session was
	// opened with: a new or removed password ends the session.
	PasswordFP string    `json:"pwfp,omitempty"`
	Created    time.Time `json:"created"`
	Expires    time.Time `json:"expires"`
}

func tokenHash(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

// passwordFP fingerprints a password hash (never the password itself).
func passwordFP(hash string) string { return tokenHash("client password\x00" + hash)[:16] }

// newToken returns a fresh unguessable token that names its PBX.
func newToken(pbxID string) string { return pbxID + "~" + secret.RandomToken(32) }

// tokenPBX returns the PBX a token names.
func tokenPBX(tok string) (string, bool) {
	i := strings.LastIndexByte(tok, '~')
	if i <= 0 || len(tok)-i < 20 || len(tok) > 512 {
		return "", false
	}
	return tok[:i], true
}

func (s *Service) sessionTTL() time.Duration {
	if s.SessionTTL > 0 {
		return s.SessionTTL
	}
	return defaultSessionTTL
}

// issue stores a new session and returns its access token.
func (s *Service) issue(ctx context.Context, sess Session) (string, error) {
	s.prune(ctx, sess.PBX)
	tok := newToken(sess.PBX)
	now := s.now()
	sess.Created, sess.Expires = now, now.Add(s.sessionTTL())
	b, _ := json.Marshal(sess)
	if err := s.Store.UpdateSetting(ctx, sess.PBX, sessionPrefix+tokenHash(tok), func([]byte) ([]byte, error) { return b, nil }); err != nil {
		return "", err
	}
	return tok, nil
}

// Authenticate checks an access token and returns the session and its
// extension. A session ends (it is deleted and refused with
// ErrInvalidSession) when it expired, its extension is gone, or: for a
// Microsoft session, the integration is disabled or disconnected, single
// sign-on is switched off, or the extension is no longer bound to the
// account; for a password session, the client password changed or was
// removed, or SSO-only mode now applies to the (synced) extension.
func (s *Service) Authenticate(ctx context.Context, tok string) (*Session, *directory.Extension, error) {
	pbxID, ok := tokenPBX(tok)
	if !ok {
		return nil, nil, ErrInvalidSession
	}
	key := sessionPrefix + tokenHash(tok)
	b, err := s.Store.GetSetting(ctx, pbxID, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, ErrInvalidSession
	}
	if err != nil {
		return nil, nil, err
	}
	var sess Session
	if err := json.Unmarshal(b, &sess); err != nil {
		return nil, nil, fmt.Errorf("client session: %w", err)
	}
	sess.PBX = pbxID
	end := func(reason string) (*Session, *directory.Extension, error) {
		s.Logger.InfoContext(ctx, "client session ended", "pbx", pbxID, "extension_id", sess.ExtensionID, "reason", reason)
		_ = s.Store.UpdateSetting(ctx, pbxID, key, func([]byte) ([]byte, error) { return nil, nil })
		return nil, nil, ErrInvalidSession
	}
	if !s.now().Before(sess.Expires) {
		return end("expired")
	}
	ext, err := s.Store.GetExtension(ctx, pbxID, sess.ExtensionID)
	if errors.Is(err, store.ErrNotFound) {
		return end("extension deleted")
	}
	if err != nil {
		return nil, nil, err
	}
	switch sess.Method {
	case MethodSSO:
		tenant, err := s.Integration.SSOTenant(ctx, pbxID)
		if err != nil {
			return end("integration not connected")
		}
		if !strings.EqualFold(tenant, sess.TenantID) || ext.EntraID != sess.ObjectID {
			return end("extension no longer bound to the signed-in Microsoft account")
		}
		st, err := s.GetSettings(ctx, pbxID)
		if err != nil {
			return nil, nil, err
		}
		if !st.Enabled {
			return end("single sign-on switched off")
		}
	case MethodPassword:
		if ext.ClientPasswordHash == "" || passwordFP(ext.ClientPasswordHash) != sess.PasswordFP {
			return end("client password changed")
		}
		if ext.Synced() {
			st, err := s.GetSettings(ctx, pbxID)
			if err != nil {
				return nil, nil, err
			}
			if st.SSOOnly() {
				return end("sso-only mode")
			}
		}
	default:
		return end("unknown method")
	}
	return &sess, ext, nil
}

// Revoke ends the session of tok (a no-op for an unknown token).
func (s *Service) Revoke(ctx context.Context, tok string) error {
	pbxID, ok := tokenPBX(tok)
	if !ok {
		return nil
	}
	return s.Store.UpdateSetting(ctx, pbxID, sessionPrefix+tokenHash(tok), func([]byte) ([]byte, error) { return nil, nil })
}

// RevokeExtension ends every session of an extension (e.g. after its client
// password changed) and returns how many ended.
func (s *Service) RevokeExtension(ctx context.Context, pbxID, extensionID string) (int, error) {
	m, err := s.Store.ListSettings(ctx, pbxID, sessionPrefix)
	if err != nil {
		return 0, err
	}
	n := 0
	for k, b := range m {
		var sess Session
		if json.Unmarshal(b, &sess) != nil || sess.ExtensionID != extensionID {
			continue
		}
		if err := s.Store.UpdateSetting(ctx, pbxID, k, func([]byte) ([]byte, error) { return nil, nil }); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// oneTimeCode is what a native client's code stands for.
type oneTimeCode struct {
	Session Session   `json:"session"`
	Expires time.Time `json:"expires"`
}

// issueCode stores a single-use code, valid codeTTL, for a native client.
func (s *Service) issueCode(ctx context.Context, sess Session) (string, error) {
	code := newToken(sess.PBX)
	b, _ := json.Marshal(oneTimeCode{Session: sess, Expires: s.now().Add(codeTTL)})
	if err := s.Store.UpdateSetting(ctx, sess.PBX, codePrefix+tokenHash(code), func([]byte) ([]byte, error) { return b, nil }); err != nil {
		return "", err
	}
	return code, nil
}

// ErrBadCode: the one-time code is unknown, expired or was used.
var ErrBadCode = errors.New("the sign-in code is unknown, expired or was already used; sign in again")

// Exchange turns a native client's one-time code into a session: the code
// works once, within 60 seconds.
func (s *Service) Exchange(ctx context.Context, code string) (string, *directory.Extension, error) {
	pbxID, ok := tokenPBX(code)
	if !ok {
		return "", nil, ErrBadCode
	}
	var c oneTimeCode
	found := false
	err := s.Store.UpdateSetting(ctx, pbxID, codePrefix+tokenHash(code), func(old []byte) ([]byte, error) {
		if old != nil && json.Unmarshal(old, &c) == nil {
			found = true
		}
		return nil, nil // single use, whatever happens next
	})
	if err != nil {
		return "", nil, err
	}
	if !found || !s.now().Before(c.Expires) {
		return "", nil, ErrBadCode
	}
	c.Session.PBX = pbxID
	tok, err := s.issue(ctx, c.Session)
	if err != nil {
		return "", nil, err
	}
	_, ext, err := s.Authenticate(ctx, tok)
	if err != nil {
		return "", nil, err
	}
	return tok, ext, nil
}

// prune deletes expired sessions, codes and pending sign-ins of the PBX, at
// most once every pruneEvery per instance.
func (s *Service) prune(ctx context.Context, pbxID string) {
	now := s.now()
	s.mu.Lock()
	if s.pruned == nil {
		s.pruned = map[string]time.Time{}
	}
	last, ok := s.pruned[pbxID]
	if ok && now.Sub(last) < pruneEvery {
		s.mu.Unlock()
		return
	}
	s.pruned[pbxID] = now
	s.mu.Unlock()
	for _, prefix := range []string{sessionPrefix, codePrefix, pendingPrefix} {
		m, err := s.Store.ListSettings(ctx, pbxID, prefix)
		if err != nil {
			s.Logger.WarnContext(ctx, "pruning client sign-in records", "err", err)
			return
		}
		for k, b := range m {
			var rec struct {
				Expires time.Time `json:"expires"`
			}
			if json.Unmarshal(b, &rec) == nil && !now.Before(rec.Expires) {
				_ = s.Store.UpdateSetting(ctx, pbxID, k, func(old []byte) ([]byte, error) {
					if err := json.Unmarshal(old, &rec); err == nil && now.Before(rec.Expires) {
						return old, nil
					}
					return nil, nil
				})
			}
		}
	}
}
