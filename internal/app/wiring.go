package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"

	"github.com/switchboard-pbx/switchboard/internal/graph"
	"github.com/switchboard-pbx/switchboard/internal/jobs"
	"github.com/switchboard-pbx/switchboard/internal/sqlstore"
	"github.com/switchboard-pbx/switchboard/internal/syncer"
)

// openJobs builds the River client that runs the syncs schedules, change
// notifications and polling ask for (a.Jobs, a schedule.Runner). PostgreSQL:
// its own pgx pool on the same database, so several instances share the
// jobs; SQLite: the store's single write connection, in this process.
// River's tables are migrated here, next to ours.
func (a *App) openJobs(ctx context.Context, st *sqlstore.Store) error {
	cfg := jobs.Config{Store: st, Syncer: a.Syncer, Logger: a.Logger.With("component", "jobs"),
		Subscriptions: scheduleChecks{a},
		// The integration's stored tenant id (no secret is opened): syncs of
		// PBXs sharing an Entra tenant are bounded together (MaxPerTenant).
		Tenant: a.Integration.SSOTenant, MaxWorkers: a.Config.SyncWorkers}
	var err error
	if st.Flavour() == "postgres" {
		a.Jobs, err = jobs.OpenPostgres(ctx, a.Config.DB, cfg)
	} else {
		if cfg.MaxWorkers == 0 {
			cfg.MaxWorkers = 2 // one writer: more workers only queue on it
		}
		a.Jobs, err = jobs.OpenSQLite(ctx, st.DB(), cfg)
	}
	if err != nil {
		return fmt.Errorf("job queue: %w", err)
	}
	a.closers = append(a.closers, func() error { a.Jobs.Close(); return nil })
	return nil
}

// scheduleChecks works "subscription.check" jobs with a.Schedule, which is
// built after the job queue (jobs run only once runJobs started them).
type scheduleChecks struct{ a *App }

func (c scheduleChecks) Check(ctx context.Context, pbx, subscriptionID string) error {
	return c.a.Schedule.Check(ctx, pbx, subscriptionID)
}

// runJobs works sync jobs until ctx ends (a Serve worker); running syncs
// then get the shutdown timeout to finish.
func (a *App) runJobs(ctx context.Context) error {
	return a.Jobs.Run(ctx, a.Config.ShutdownTimeout)
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
