package app

import (
	"context"
	"net"
	"net/url"

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
