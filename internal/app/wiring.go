package app

import (
	"context"
	"errors"
	"net"
	"net/url"

	"github.com/switchboard-pbx/switchboard/internal/graph"
	"github.com/switchboard-pbx/switchboard/internal/syncer"
)

// syncRunner lets the scheduler and the webhooks start syncs: a trigger
// starts a run for the PBX or joins the one already running.
type syncRunner struct{ e *syncer.Engine }

func (r syncRunner) Trigger(ctx context.Context, pbx, reason string) error {
	_, err := r.e.Start(ctx, pbx, syncer.RunOptions{Trigger: reason})
	return err
}

// isLoopbackURL reports whether u points at this machine (a simulated tenant).
func isLoopbackURL(u string) bool {
	p, err := url.Parse(u)
	if err != nil {
		return false
	}
	host := p.Hostname()
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// syncFinished runs after each sync: an identity-platform refusal (expired
// or wrong secret, consent withdrawn, tenant gone) puts the integration in
// the error state with what to do; a successful run clears it.
func (a *App) syncFinished(ctx context.Context, pbx string, run *syncer.Run, err error) {
	var ae *graph.AuthError
	var ge *graph.Error
	switch {
	case err != nil && (errors.As(err, &ae) || errors.As(err, &ge) && (ge.Status == 401 || ge.Status == 403)):
		a.Integration.ReportFailure(ctx, pbx, err)
	case err == nil && run.State == syncer.StateSucceeded:
		a.Integration.Clear(ctx, pbx)
		// Personal contacts follow the synced users (a no-op when off).
		a.bg.Go(func() {
			if _, err := a.Contacts.AfterUserSync(ctx, pbx); err != nil {
				a.Logger.WarnContext(ctx, "contacts sync after user sync", "pbx", pbx, "err", err)
			}
		})
	}
}
