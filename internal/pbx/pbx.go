// Package pbx is the write path of the PBX directory: it wraps the store with
// the side effects every writer needs, whoever it is (admin API, sync engine):
// SIP secrets generated and sealed, the SIP registrar provisioned and
// deprovisioned, and the audit log written.
package pbx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/secret"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// Registrar is a SIP registrar whose subscribers follow the extensions
// (package sip implements it for Kamailio).
type Registrar interface {
	Upsert(ctx context.Context, username, password string) error
	Remove(ctx context.Context, username string) error
}

// Service is the directory's write path.
type Service struct {
	Store     store.Store
	Keys      *secret.Keyring
	Registrar Registrar // nil: no registrar configured
	Logger    *slog.Logger
	Now       func() time.Time
}

// NewSIPSecret returns a fresh SIP password (20 URL-safe characters, ~120 bits).
func NewSIPSecret() string { return secret.RandomToken(15) }

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now().UTC()
}

// prepare fills defaults and seals a new SIP secret; it returns the plain secret.
func (s *Service) prepare(e *directory.Extension) string {
	if e.Source == "" {
		e.Source = directory.SourceLocal
	}
	if e.Presence == "" {
		e.Presence = directory.PresenceAvailable
	}
	if e.CallState == "" {
		e.CallState = directory.CallIdle
	}
	e.Email = directory.NormalizeEmail(e.Email)
	plain := NewSIPSecret()
	e.SIPSecret = s.Keys.Seal([]byte(plain))
	return plain
}

// CreateExtension validates, stores and provisions one extension.
func (s *Service) CreateExtension(ctx context.Context, pbx, actor string, e *directory.Extension) error {
	plain := s.prepare(e)
	if err := directory.ValidateExtension(e); err != nil {
		return err
	}
	if err := s.Store.CreateExtension(ctx, pbx, e); err != nil {
		return err
	}
	s.provision(ctx, e.Number, plain)
	s.audit(ctx, pbx, actor, "extension.create", e.Number, "")
	return nil
}

// UpdateExtension applies fn in a transaction; a changed number re-provisions.
func (s *Service) UpdateExtension(ctx context.Context, pbx, actor, id string, fn func(*directory.Extension) error) (*directory.Extension, error) {
	var oldNumber string
	e, err := s.Store.UpdateExtension(ctx, pbx, id, func(e *directory.Extension) error {
		oldNumber = e.Number
		if err := fn(e); err != nil {
			return err
		}
		e.Email = directory.NormalizeEmail(e.Email)
		return directory.ValidateExtension(e)
	})
	if err != nil {
		return nil, err
	}
	if e.Number != oldNumber {
		s.deprovision(ctx, oldNumber)
		if plain, err := s.Keys.Open(e.SIPSecret); err == nil {
			s.provision(ctx, e.Number, string(plain))
		}
	}
	s.audit(ctx, pbx, actor, "extension.update", e.Number, "")
	return e, nil
}

// DeleteExtension deletes after check accepts and drops the registrar entry.
func (s *Service) DeleteExtension(ctx context.Context, pbx, actor, id string, check func(*directory.Extension) error) error {
	var number string
	err := s.Store.DeleteExtension(ctx, pbx, id, func(e *directory.Extension) error {
		number = e.Number
		if check != nil {
			return check(e)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.deprovision(ctx, number)
	s.audit(ctx, pbx, actor, "extension.delete", number, "")
	return nil
}

// ApplyExtensions is the bulk path: creates get SIP secrets, then one
// transaction, then the registrar follows.
func (s *Service) ApplyExtensions(ctx context.Context, pbx string, c store.ExtensionChanges) error {
	plains := make([]string, len(c.Create))
	for i, e := range c.Create {
		plains[i] = s.prepare(e)
		if err := directory.ValidateExtension(e); err != nil {
			return fmt.Errorf("extension %s: %w", e.Number, err)
		}
	}
	// The registrar follows numbers: deleted extensions and the old numbers of renumbered
	// ones are removed, created and renumbered ones provisioned.
	var gone []string
	renumbered := map[string]bool{} // extension ids whose number changes
	if s.Registrar != nil {
		for _, id := range c.Delete {
			if e, err := s.Store.GetExtension(ctx, pbx, id); err == nil {
				gone = append(gone, e.Number)
			}
		}
		for _, x := range c.Update {
			if e, err := s.Store.GetExtension(ctx, pbx, x.ID); err == nil && e.Number != x.Number {
				gone = append(gone, e.Number)
				renumbered[x.ID] = true
			}
		}
	}
	if err := s.Store.ApplyExtensions(ctx, pbx, c); err != nil {
		return err
	}
	if s.Registrar != nil {
		// Removals first: a number freed in this batch may be taken by another extension
		// of the same batch, whose new row must survive.
		for _, n := range gone {
			s.deprovision(ctx, n)
		}
		for i, e := range c.Create {
			s.provision(ctx, e.Number, plains[i])
		}
		for _, x := range c.Update {
			if !renumbered[x.ID] {
				continue
			}
			plain, err := s.SIPPassword(x)
			if err != nil {
				s.Logger.ErrorContext(ctx, "sip provisioning failed", "extension", x.Number, "err", err)
				continue
			}
			s.provision(ctx, x.Number, plain)
		}
	}
	return nil
}

// RotateSIPSecret replaces the extension's SIP password and re-provisions it.
func (s *Service) RotateSIPSecret(ctx context.Context, pbx, actor, id string) (*directory.Extension, string, error) {
	plain := NewSIPSecret()
	e, err := s.Store.UpdateExtension(ctx, pbx, id, func(e *directory.Extension) error {
		e.SIPSecret = s.Keys.Seal([]byte(plain))
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	s.provision(ctx, e.Number, plain)
	s.audit(ctx, pbx, actor, "extension.sip_secret.rotate", e.Number, "")
	return e, plain, nil
}

// SIPPassword opens the extension's sealed SIP password.
func (s *Service) SIPPassword(e *directory.Extension) (string, error) {
	if len(e.SIPSecret) == 0 {
		return "", errors.New("extension has no SIP secret")
	}
	b, err := s.Keys.Open(e.SIPSecret)
	return string(b), err
}

func (s *Service) provision(ctx context.Context, number, password string) {
	if s.Registrar == nil {
		return
	}
	if err := s.Registrar.Upsert(ctx, number, password); err != nil {
		// The registrar reconciles on start; the directory stays the source of truth.
		s.Logger.ErrorContext(ctx, "sip provisioning failed", "extension", number, "err", err)
	}
}

func (s *Service) deprovision(ctx context.Context, number string) {
	if s.Registrar == nil || number == "" {
		return
	}
	if err := s.Registrar.Remove(ctx, number); err != nil {
		s.Logger.ErrorContext(ctx, "sip deprovisioning failed", "extension", number, "err", err)
	}
}

// Audit appends an audit entry; a failure is logged, never fatal to the change.
func (s *Service) Audit(ctx context.Context, pbx, actor, action, target, detail string) {
	s.audit(ctx, pbx, actor, action, target, detail)
}

func (s *Service) audit(ctx context.Context, pbx, actor, action, target, detail string) {
	if actor == "" {
		actor = "system"
	}
	if err := s.Store.AppendAudit(ctx, store.AuditEntry{PBXID: pbx, At: s.now(), Actor: actor, Action: action, Target: target, Detail: detail}); err != nil {
		s.Logger.ErrorContext(ctx, "audit write failed", "action", action, "err", err)
	}
}
