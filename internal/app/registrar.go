package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/sip"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// registrar adapts sip.Provisioner to pbx.Registrar.
type registrar struct{ p *sip.Provisioner }

func (r registrar) Upsert(ctx context.Context, username, password string) error {
	return r.p.Upsert(ctx, sip.Subscriber{Username: username, Password: password})
}

func (r registrar) Remove(ctx context.Context, username string) error {
	return r.p.Remove(ctx, username)
}

// openRegistrar connects the Kamailio subscriber table when --kamailio-db is
// set, reconciles it with the directory, and starts the call-event intake.
func (a *App) openRegistrar(ctx context.Context) error {
	c := a.Config
	if c.KamailioDB == "" {
		return nil
	}
	p, err := sip.Open(ctx, sip.Config{DBURL: c.KamailioDB, Domain: c.SIPDomain, CtlAddr: c.KamailioCtl,
		RemoveUnknown: c.KamailioRemoveUnknown, Logger: a.Logger.With("component", "sip")})
	if err != nil {
		return fmt.Errorf("kamailio-db: %w", err)
	}
	a.closers = append(a.closers, p.Close)
	a.PBX.Registrar = registrar{p}
	if err := a.reconcileRegistrar(ctx, p); err != nil {
		return err
	}
	if c.KamailioEvents != "" {
		evCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		a.closers = append(a.closers, func() error { cancel(); return nil })
		go func() {
			_ = sip.ListenCallEvents(evCtx, c.KamailioEvents, a.Logger.With("component", "sip-events"), func(ev sip.CallEvent) {
				a.applyCallEvent(evCtx, ev)
			})
		}()
	}
	return nil
}

// reconcileRegistrar makes the subscriber table match the default PBX's extensions.
func (a *App) reconcileRegistrar(ctx context.Context, p *sip.Provisioner) error {
	var want []sip.Subscriber
	err := a.Store.ListAllExtensions(ctx, directory.DefaultPBX, func(e *directory.Extension) error {
		pw, err := a.PBX.SIPPassword(e)
		if err != nil {
			return fmt.Errorf("extension %s: %w", e.Number, err)
		}
		want = append(want, sip.Subscriber{Username: e.Number, Password: pw})
		return nil
	})
	if err != nil {
		return err
	}
	rep, err := p.Reconcile(ctx, want)
	if err != nil && !errors.Is(err, sip.ErrRegistrar) {
		return fmt.Errorf("reconciling the Kamailio subscriber table: %w", err)
	}
	a.Logger.Info("kamailio subscribers reconciled", "added", rep.Added, "updated", rep.Updated, "unchanged", rep.Unchanged,
		"unknown", len(rep.Unknown), "removed", len(rep.Removed))
	if len(rep.Unknown) > 0 && len(rep.Removed) == 0 {
		a.Logger.Warn("kamailio subscriber rows that match no extension (kept; --kamailio-remove-unknown removes them)", "usernames", rep.Unknown)
	}
	if err != nil {
		a.Logger.Warn("kamailio control socket unreachable during reconcile", "err", err)
	}
	return nil
}

// applyCallEvent records a call state the registrar reported.
func (a *App) applyCallEvent(ctx context.Context, ev sip.CallEvent) {
	e, err := a.Store.FindExtension(ctx, directory.DefaultPBX, "number", ev.Extension)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			a.Logger.Error("call event: looking up extension", "extension", ev.Extension, "err", err)
		}
		return
	}
	if _, err := a.Store.UpdateExtension(ctx, directory.DefaultPBX, e.ID, func(x *directory.Extension) error {
		x.CallState = directory.CallState(ev.State)
		return nil
	}); err != nil {
		a.Logger.Error("call event: updating call state", "extension", ev.Extension, "err", err)
		return
	}
	if err := a.Presence.OnCallState(ctx, directory.DefaultPBX, e.ID, directory.CallState(ev.State)); err != nil {
		a.Logger.Error("call event: presence", "extension", ev.Extension, "err", err)
	}
}
