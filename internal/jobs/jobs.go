// Package jobs runs sync requests as durable River jobs, so that several
// `switchboard serve` instances sharing one PostgreSQL database share the
// work, and a SQLite deployment runs the same code path in one process.
//
// A trigger (schedule slot, change notification, poll) inserts a "sync" job
// that carries only a key: the PBX and a debounce bucket. Triggers for one PBX
// within one bucket collapse into one job (River unique jobs), which starts
// when the bucket closes, so it sees every change of the window. The worker
// calls syncer.Engine.Run; the engine's per-PBX lease keeps one run per PBX
// across instances, and a job that finds the lease taken is snoozed instead
// of holding a worker slot, as is a job over its Entra tenant's bound
// (MaxPerTenant). Lifecycle notifications become "subscription.check" jobs.
// This is the only package that imports River.
package jobs

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"

	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/syncer"
)

// QueueSync is the River queue sync jobs run on.
const QueueSync = "sync"

// Syncer runs one sync for a PBX (*syncer.Engine implements it).
type Syncer interface {
	Run(ctx context.Context, pbx string, opt syncer.RunOptions) (*syncer.Run, error)
	// Running returns the run in progress in this process, or nil.
	Running(pbx string) *syncer.Run
}

var _ Syncer = (*syncer.Engine)(nil)

// SyncArgs is the "sync" job: a key, not a command. The worker reads the
// current state and reconciles. PBX and Bucket make the job unique.
type SyncArgs struct {
	PBX    string `json:"pbx" river:"unique"`
	Bucket int64  `json:"bucket" river:"unique"` // end of the debounce window, or the slot (Grid set), Unix seconds
	// Grid names the grid Bucket lies on when it is not a debounce window:
	// "schedule" (a scheduled slot) or "poll" (a polling tick). Buckets of
	// different grids never collapse into one job.
	Grid   string `json:"grid,omitempty" river:"unique"`
	Reason string `json:"reason"`
	// RescueOf is the orphaned job this one replaces (see ReapArgs).
	RescueOf int64 `json:"rescueOf,omitempty" river:"unique"`
}

// Kind implements river.JobArgs.
func (SyncArgs) Kind() string { return "sync" }

// Config configures a Runner. Zero values pick the defaults.
type Config struct {
	// Store is read for the PBX's sync lease.
	Store store.Settings
	// Syncer runs the syncs.
	Syncer Syncer
	Logger *slog.Logger
	// ID names this instance in River (default: random).
	ID string
	// MaxWorkers bounds the sync jobs running at once in this instance (default 4).
	MaxWorkers int
	// Window is the debounce window: triggers for one PBX inside one window
	// are one job, which starts when the window closes (default 5 s).
	Window time.Duration
	// MaxAttempts of a sync job before River discards it (default 8).
	MaxAttempts int
	// Snooze is how long a job waits when another run holds the PBX (default 2 s, plus jitter).
	Snooze time.Duration
	// JobTimeout cancels a job's context (default 30 min; the engine finishes
	// its current step regardless).
	JobTimeout time.Duration
	// RescueStuckJobsAfter: a job running this long on an instance that
	// vanished is retried elsewhere (default 35 min, at least JobTimeout).
	RescueStuckJobsAfter time.Duration
	// FetchPollInterval is how often workers look for jobs without a
	// notification (default 1 s; SQLite always polls).
	FetchPollInterval time.Duration
	// ReapInterval is how often the leader looks for orphaned sync jobs (default 30 s).
	ReapInterval time.Duration
	// StuckAfter: a sync job running this long while its PBX has no live
	// lease belongs to an instance that died; the reaper replaces it (default
	// 2 min, above the engine's 1 min lease TTL).
	StuckAfter time.Duration
	// Subscriptions handles "subscription.check" jobs (a lifecycle
	// notification: renew the subscription, or create it again when it is
	// gone); *schedule.Service implements it. Nil: such jobs are cancelled.
	Subscriptions Subscriptions
	// Tenant returns the Entra tenant of a PBX's integration, for
	// MaxPerTenant. Nil, or an error: the PBX counts as its own tenant.
	Tenant func(ctx context.Context, pbx string) (string, error)
	// MaxPerTenant bounds the sync jobs of one Entra tenant running at once
	// in this instance (several PBXs may share a tenant, and Graph throttles
	// per app and tenant); a job over the bound is snoozed (default 2).
	MaxPerTenant int
	// BeforeWork, when set, is called at the start of every sync job (tests
	// use it to stop an instance mid-job). An error fails the attempt.
	BeforeWork func(ctx context.Context, args SyncArgs) error
}

func (c *Config) defaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.ID == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		c.ID = "switchboard-" + hex.EncodeToString(b[:])
	}
	if c.MaxWorkers <= 0 {
		c.MaxWorkers = 4
	}
	if c.Window <= 0 {
		c.Window = 5 * time.Second
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 8
	}
	if c.Snooze <= 0 {
		c.Snooze = 2 * time.Second
	}
	if c.JobTimeout <= 0 {
		c.JobTimeout = 30 * time.Minute
	}
	if c.RescueStuckJobsAfter < c.JobTimeout {
		c.RescueStuckJobsAfter = max(35*time.Minute, c.JobTimeout)
	}
	if c.ReapInterval <= 0 {
		c.ReapInterval = 30 * time.Second
	}
	if c.StuckAfter <= 0 {
		c.StuckAfter = 2 * time.Minute
	}
	if c.FetchPollInterval <= 0 {
		c.FetchPollInterval = time.Second
	}
	if c.MaxPerTenant <= 0 {
		c.MaxPerTenant = 2
	}
}

// Subscriptions works lifecycle notifications of change-notification
// subscriptions (*schedule.Service implements it).
type Subscriptions interface {
	// Check renews the PBX's subscription, or creates it again when Graph
	// no longer has it. An error retries the job.
	Check(ctx context.Context, pbx, subscriptionID string) error
}

// fetchCooldown is the least time between two fetches of one instance's
// sync queue (River's default is 100 ms). When a worker slot frees up River
// fetches again, but at most once per cooldown: with syncs of 100-200 ms a
// 100 ms cooldown left a third of the worker time idle (200 PBXs x 500 users:
// 0.13 s per job, 10 s for what 4 busy workers do in 6.5 s). A fetch is one
// indexed UPDATE ... SKIP LOCKED, so 50 a second at most costs little.
const fetchCooldown = 20 * time.Millisecond

// client is what Runner needs of a *river.Client, whatever its driver.
type client interface {
	Insert(ctx context.Context, args river.JobArgs, opts *river.InsertOpts) (*rivertype.JobInsertResult, error)
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
	StopAndCancel(ctx context.Context) error
	JobList(ctx context.Context, params *river.JobListParams) (*river.JobListResult, error)
	JobCancel(ctx context.Context, jobID int64) (*rivertype.JobRow, error)
}

// Runner owns the River client. Trigger makes it a schedule.Runner;
// TriggerAt and CheckSubscription are the optional parts schedule uses.
type Runner struct {
	cfg    Config
	client client
	close  func()
	now    func() time.Time // tests; nil: time.Now

	gate *tenantGate
	done *workedSet // sync jobs whose Work returned here (see reap)

	mu sync.Mutex
	// inserted is, per PBX, the last debounce bucket whose job this Runner
	// inserted (or found inserted): later triggers in that window need no
	// database round trip.
	inserted map[string]int64
}

// OpenPostgres migrates River's tables in the database at url (a separate
// pgx pool; River keeps its own tables next to ours) and builds a Runner.
func OpenPostgres(ctx context.Context, url string, cfg Config) (*Runner, error) {
	cfg.defaults()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("jobs: open postgres: %w", err)
	}
	driver := riverpgxv5.New(pool)
	if err := migratePostgres(ctx, pool, driver, cfg.Logger); err != nil {
		pool.Close()
		return nil, err
	}
	r := &Runner{cfg: cfg, close: pool.Close}
	if r.client, err = newClient(driver, r); err != nil {
		pool.Close()
		return nil, err
	}
	return r, nil
}

// migratePostgres runs River's migrations under a session advisory lock, so
// instances starting together do not race. (Not in one transaction: River's
// migrations add enum values that later ones use.)
func migratePostgres(ctx context.Context, pool *pgxpool.Pool, driver *riverpgxv5.Driver, log *slog.Logger) error {
	m, err := rivermigrate.New(driver, &rivermigrate.Config{Logger: log})
	if err != nil {
		return fmt.Errorf("jobs: river migrator: %w", err)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("jobs: migration lock: %w", err)
	}
	defer conn.Release()
	const lock = `hashtext('switchboard.river.migrate')`
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(`+lock+`)`); err != nil {
		return fmt.Errorf("jobs: migration lock: %w", err)
	}
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(`+lock+`)`) }()
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("jobs: river migrations: %w", err)
	}
	return nil
}

// OpenSQLite migrates River's tables into the SQLite database behind db (the
// store's single write connection: River and the store then queue on it
// instead of meeting SQLITE_BUSY) and builds a Runner.
func OpenSQLite(ctx context.Context, db *sql.DB, cfg Config) (*Runner, error) {
	cfg.defaults()
	driver := riversqlite.New(db)
	m, err := rivermigrate.New(driver, &rivermigrate.Config{Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("jobs: river migrator: %w", err)
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return nil, fmt.Errorf("jobs: river migrations: %w", err)
	}
	r := &Runner{cfg: cfg, close: func() {}}
	if r.client, err = newClient(driver, r); err != nil {
		return nil, err
	}
	return r, nil
}

func newClient[TTx any](driver riverdriver.Driver[TTx], r *Runner) (*river.Client[TTx], error) {
	cfg := r.cfg
	workers := river.NewWorkers()
	r.gate = &tenantGate{max: cfg.MaxPerTenant}
	if r.done == nil {
		r.done = &workedSet{at: map[int64]time.Time{}}
	}
	river.AddWorker(workers, &syncWorker{cfg: &r.cfg, gate: r.gate, done: r.done})
	river.AddWorker(workers, &reapWorker{r: r})
	river.AddWorker(workers, &subscriptionWorker{cfg: &r.cfg})
	c, err := river.NewClient(driver, &river.Config{
		ID:     cfg.ID,
		Logger: cfg.Logger.With("component", "river"),
		Queues: map[string]river.QueueConfig{
			QueueSync:          {MaxWorkers: cfg.MaxWorkers},
			river.QueueDefault: {MaxWorkers: 2},
		},
		PeriodicJobs: []*river.PeriodicJob{river.NewPeriodicJob(river.PeriodicInterval(cfg.ReapInterval),
			func() (river.JobArgs, *river.InsertOpts) {
				return ReapArgs{Slot: time.Now().Truncate(cfg.ReapInterval).UnixMilli()}, nil
			}, &river.PeriodicJobOpts{RunOnStart: true})},
		Workers:              workers,
		JobTimeout:           cfg.JobTimeout,
		RescueStuckJobsAfter: cfg.RescueStuckJobsAfter,
		FetchPollInterval:    cfg.FetchPollInterval,
		FetchCooldown:        min(fetchCooldown, cfg.FetchPollInterval),
		MaxAttempts:          cfg.MaxAttempts,
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: river client: %w", err)
	}
	return c, nil
}

// Trigger asks for a sync of the PBX (schedule.Runner). Triggers for one PBX
// inside one Window are one job; it starts when the window closes. When
// Trigger returns nil the job is in the database (durable).
//
// The Runner remembers per PBX the last window whose job it inserted, so
// further triggers inside that window (a notification flood) return at
// once, without a database round trip. That is sound because the window's
// job is scheduled at the window's end: while now is inside the window, the
// job cannot have started, so it will see every change of the window.
func (r *Runner) Trigger(ctx context.Context, pbx, reason string) error {
	now := time.Now()
	if r.now != nil {
		now = r.now()
	}
	w := r.cfg.Window
	end := now.Truncate(w).Add(w)
	r.mu.Lock()
	done := r.inserted[pbx] == end.Unix()
	r.mu.Unlock()
	if done {
		return nil
	}
	if _, err := r.insert(ctx, SyncArgs{PBX: pbx, Bucket: end.Unix(), Reason: reason}, end); err != nil {
		return err
	}
	r.mu.Lock()
	if r.inserted == nil {
		r.inserted = map[string]int64{}
	}
	if r.inserted[pbx] < end.Unix() {
		r.inserted[pbx] = end.Unix()
	}
	r.mu.Unlock()
	return nil
}

// TriggerAt asks, idempotently, for the sync of the PBX at bucket on the
// grid named by reason ("schedule": a scheduled slot; "poll": a polling
// tick), to start at at. However many instances or ticks ask, there is one
// job per PBX, grid and bucket (while River keeps the finished job: a day by
// default). When TriggerAt returns nil the job is in the database.
func (r *Runner) TriggerAt(ctx context.Context, pbx, reason string, bucket, at time.Time) error {
	_, err := r.insert(ctx, SyncArgs{PBX: pbx, Bucket: bucket.Unix(), Grid: reason, Reason: reason}, at)
	return err
}

// insert inserts a sync job (unique by its args) scheduled at at; it reports
// whether a new job was inserted (false: one was already there).
func (r *Runner) insert(ctx context.Context, args SyncArgs, at time.Time) (bool, error) {
	res, err := r.client.Insert(ctx, args, &river.InsertOpts{
		Queue:       QueueSync,
		ScheduledAt: at,
		UniqueOpts:  river.UniqueOpts{ByArgs: true},
	})
	if err != nil {
		return false, fmt.Errorf("jobs: enqueue sync for %s: %w", args.PBX, err)
	}
	return !res.UniqueSkippedAsDuplicate, nil
}

// CheckSubscription asks for a check of one of the PBX's change-notification
// subscriptions (after a lifecycle notification): Config.Subscriptions.Check
// runs in a "subscription.check" job. One check per subscription is pending
// at a time; when CheckSubscription returns nil the job is in the database.
func (r *Runner) CheckSubscription(ctx context.Context, pbx, subscriptionID string) error {
	if _, err := r.client.Insert(ctx, SubscriptionArgs{PBX: pbx, SubscriptionID: subscriptionID}, nil); err != nil {
		return fmt.Errorf("jobs: enqueue subscription check for %s: %w", pbx, err)
	}
	return nil
}

// SubscriptionArgs is the "subscription.check" job: renew (or recreate) one
// change-notification subscription of a PBX.
type SubscriptionArgs struct {
	PBX            string `json:"pbx" river:"unique"`
	SubscriptionID string `json:"subscriptionId" river:"unique"`
}

// Kind implements river.JobArgs.
func (SubscriptionArgs) Kind() string { return "subscription.check" }

// InsertOpts implements river.JobArgsWithInsertOpts: unique while not
// finished (River requires pending, scheduled, available and running), so
// a burst of lifecycle events for one subscription is one check.
func (SubscriptionArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{MaxAttempts: 6, UniqueOpts: river.UniqueOpts{ByArgs: true,
		ByState: []rivertype.JobState{rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRunning,
			rivertype.JobStateRetryable, rivertype.JobStateScheduled}}}
}

type subscriptionWorker struct {
	river.WorkerDefaults[SubscriptionArgs]
	cfg *Config
}

func (w *subscriptionWorker) Work(ctx context.Context, job *river.Job[SubscriptionArgs]) error {
	if w.cfg.Subscriptions == nil {
		return river.JobCancel(errors.New("jobs: no subscription handler configured"))
	}
	if err := w.cfg.Subscriptions.Check(ctx, job.Args.PBX, job.Args.SubscriptionID); err != nil {
		return fmt.Errorf("checking subscription %s of %s: %w", job.Args.SubscriptionID, job.Args.PBX, err)
	}
	return nil
}

// Start starts working jobs; it returns at once. Call Stop to end.
func (r *Runner) Start(ctx context.Context) error {
	if err := r.client.Start(ctx); err != nil {
		return fmt.Errorf("jobs: start: %w", err)
	}
	return nil
}

// Run starts the client and blocks until ctx ends, then stops it: running
// syncs get until drain to finish, after which their contexts are cancelled.
// It fits App's background workers.
func (r *Runner) Run(ctx context.Context, drain time.Duration) error {
	if err := r.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drain)
	defer cancel()
	if err := r.client.Stop(sctx); err != nil {
		hctx, hcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer hcancel()
		if err := r.client.StopAndCancel(hctx); err != nil {
			return fmt.Errorf("jobs: stop: %w", err)
		}
	}
	return ctx.Err()
}

// Stop stops the client gracefully: running jobs finish first.
func (r *Runner) Stop(ctx context.Context) error { return r.client.Stop(ctx) }

// StopAndCancel stops the client, cancelling the contexts of running jobs.
func (r *Runner) StopAndCancel(ctx context.Context) error { return r.client.StopAndCancel(ctx) }

// Close releases the PostgreSQL pool (after Stop).
func (r *Runner) Close() { r.close() }

// syncWorker works "sync" jobs.
type syncWorker struct {
	river.WorkerDefaults[SyncArgs]
	cfg  *Config
	gate *tenantGate // nil: no per-tenant bound
	done *workedSet
}

// workedSet remembers, for a few minutes, the sync jobs whose Work returned
// in this instance. Between Work's return and River recording the outcome
// (its completer batches) a job is still "running" while its run has released
// the lease; the reaper must not take such a job for an orphan.
type workedSet struct {
	mu sync.Mutex
	at map[int64]time.Time
}

func (s *workedSet) add(id int64, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, t := range s.at {
		if now.Sub(t) > 10*time.Minute {
			delete(s.at, k)
		}
	}
	s.at[id] = now
}

func (s *workedSet) has(id int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.at[id]
	return ok
}

// worked reports whether this instance worked the job to its end.
func (r *Runner) worked(id int64) bool { return r.done != nil && r.done.has(id) }

// tenantGate counts the sync jobs running in this instance per Entra tenant.
type tenantGate struct {
	max  int
	mu   sync.Mutex
	busy map[string]int
}

// tryAcquire takes a slot of the tenant without waiting; ok is false when
// max jobs of the tenant run already. Call release when done.
func (g *tenantGate) tryAcquire(tenant string) (release func(), ok bool) {
	if g == nil {
		return func() {}, true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.busy[tenant] >= g.max {
		return nil, false
	}
	if g.busy == nil {
		g.busy = map[string]int{}
	}
	g.busy[tenant]++
	return func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.busy[tenant]--; g.busy[tenant] <= 0 {
			delete(g.busy, tenant)
		}
	}, true
}

// tenantOf is the gate's key for the PBX: its Entra tenant, or the PBX
// itself when the tenant is unknown (not connected: the run says so).
func (w *syncWorker) tenantOf(ctx context.Context, pbx string) string {
	if w.cfg.Tenant != nil {
		t, err := w.cfg.Tenant(ctx, pbx)
		if err == nil && t != "" {
			return "tenant:" + strings.ToLower(t)
		}
	}
	return "pbx:" + pbx
}

func (w *syncWorker) Work(ctx context.Context, job *river.Job[SyncArgs]) error {
	if w.done != nil {
		defer w.done.add(job.ID, time.Now())
	}
	a := job.Args
	log := w.cfg.Logger.With("pbx", a.PBX, "job", job.ID, "attempt", job.Attempt, "reason", a.Reason)
	if w.cfg.BeforeWork != nil {
		if err := w.cfg.BeforeWork(ctx, a); err != nil {
			return err
		}
	}
	// One run per PBX: when another run holds it (another instance, or
	// "update now" here), come back later without holding a worker slot.
	if w.cfg.Syncer.Running(a.PBX) != nil {
		log.DebugContext(ctx, "jobs: a sync of this PBX is running here; snoozing")
		return river.JobSnooze(w.snooze())
	}
	// At most MaxPerTenant syncs of one Entra tenant at once here: Graph
	// throttles per app and tenant, and PBXs may share a tenant.
	release, ok := w.gate.tryAcquire(w.tenantOf(ctx, a.PBX))
	if !ok {
		log.DebugContext(ctx, "jobs: this tenant's sync slots are taken here; snoozing")
		return river.JobSnooze(w.snooze())
	}
	defer release()
	if held, err := syncer.LeaseHeld(ctx, w.cfg.Store, a.PBX, time.Now()); err != nil {
		return err
	} else if held {
		log.DebugContext(ctx, "jobs: another instance holds this PBX's sync lease; snoozing")
		return river.JobSnooze(w.snooze())
	}
	// A retried job (River's rescuer after its instance died, or a retry
	// after a failure) may find its trigger already served by a run that
	// finished after the job became due: then it is done.
	if job.Attempt > 1 {
		if done, err := satisfied(ctx, w.cfg.Syncer, a.PBX, a.due(job.ScheduledAt)); err != nil {
			return err
		} else if done {
			log.InfoContext(ctx, "jobs: a run since this job became due already succeeded; not repeating it")
			return nil
		}
	}
	run, err := w.cfg.Syncer.Run(ctx, a.PBX, syncer.RunOptions{Trigger: a.Reason})
	if err != nil {
		return err
	}
	return Outcome(run)
}

func (w *syncWorker) snooze() time.Duration {
	return w.cfg.Snooze + jitter(w.cfg.Snooze/2)
}

// MinThrottleSnooze is the least a throttled sync job waits before it runs
// again, whatever Retry-After Graph gave (or none).
const MinThrottleSnooze = 5 * time.Second

// Outcome maps a finished run to what River does with its job:
//   - nil (completed): succeeded, waiting for deletion confirmation, or a dry run;
//   - river.JobCancel, terminal: integration not connected or disabled, sync
//     paused or off, or Graph refusing the app ("unauthorized": the
//     integration shows the error, and retrying does not help);
//   - river.JobSnooze for "throttled": max(RetryAfter, MinThrottleSnooze) plus
//     up to a quarter of that as jitter. A snooze is not an attempt in River
//     v0.47.0 (the executor stores attempt-1 and counts it in metadata
//     "snoozes"), so throttling never exhausts MaxAttempts;
//   - an error for everything else ("lease_lost", a Graph read or apply
//     failure, a store error), which River retries with backoff.
func Outcome(run *syncer.Run) error {
	if run == nil {
		return errors.New("jobs: sync returned no run")
	}
	switch run.State {
	case syncer.StateSucceeded, syncer.StateNeedsConfirmation, syncer.StateDryRun, syncer.StateConfirmed:
		return nil
	}
	switch run.ErrorCode {
	case "paused", "disabled", "not_connected", "unauthorized":
		return river.JobCancel(fmt.Errorf("sync run %s: %s: %s", run.ID, run.ErrorCode, run.Error))
	case "throttled":
		d := max(run.RetryAfter, MinThrottleSnooze)
		return river.JobSnooze(d + jitter(d/4))
	}
	return fmt.Errorf("sync run %s failed (%s): %s", run.ID, run.ErrorCode, run.Error)
}

// jitter returns a random duration in [0, d].
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	j, _ := rand.Int(rand.Reader, big.NewInt(int64(d)+1))
	return time.Duration(j.Int64())
}

// ReapArgs is the periodic "sync.reap" job (the leader inserts it every
// ReapInterval). It finds sync jobs orphaned by an instance that died mid-job
// (running for StuckAfter while their PBX has no live lease), cancels them
// and inserts a replacement, which any instance picks up at once. River's
// own rescuer would retry the orphan only after RescueStuckJobsAfter; a
// cancelled orphan is not retried.
//
// Any instance may work a reap job. Slot (the ReapInterval it belongs to)
// keeps one job per interval when leadership changes hands, without letting
// a reap job orphaned by a dead instance (still "running" until River's
// rescuer comes, RescueStuckJobsAfter later) block the next intervals' reaps.
type ReapArgs struct {
	Slot int64 `json:"slot,omitempty" river:"unique"` // Unix milliseconds
}

// Kind implements river.JobArgs.
func (ReapArgs) Kind() string { return "sync.reap" }

// InsertOpts implements river.JobArgsWithInsertOpts: one reap per slot.
func (ReapArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{MaxAttempts: 1, UniqueOpts: river.UniqueOpts{ByArgs: true,
		ByState: []rivertype.JobState{rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRunning,
			rivertype.JobStateRetryable, rivertype.JobStateScheduled}}}
}

type reapWorker struct {
	river.WorkerDefaults[ReapArgs]
	r *Runner
}

func (w *reapWorker) Work(ctx context.Context, _ *river.Job[ReapArgs]) error {
	_, err := w.r.reap(ctx, time.Now())
	return err
}

// due is when the job's trigger became due: the end of its debounce window
// (River moves scheduled_at on retries and snoozes, the window stays).
func (a SyncArgs) due(scheduled time.Time) time.Time {
	if a.Bucket > 0 {
		return time.Unix(a.Bucket, 0)
	}
	return scheduled
}

// runLister is the optional part of a Syncer that lists a PBX's run records.
type runLister interface {
	ListRuns(ctx context.Context, pbx string) ([]syncer.Run, error)
}

// satisfied reports whether a real run of the PBX started at or after since
// and succeeded. A sync is level-triggered, so such a run serves every
// trigger whose job became due (its window closed) at or before since.
func satisfied(ctx context.Context, s Syncer, pbx string, since time.Time) (bool, error) {
	rl, ok := s.(runLister)
	if !ok {
		return false, nil
	}
	runs, err := rl.ListRuns(ctx, pbx)
	if err != nil {
		return false, fmt.Errorf("jobs: listing runs of %s: %w", pbx, err)
	}
	for _, run := range runs {
		if !run.DryRun && run.State == syncer.StateSucceeded && !run.StartedAt.Before(since) {
			return true, nil
		}
	}
	return false, nil
}

// reap replaces orphaned sync jobs and returns how many it replaced.
func (r *Runner) reap(ctx context.Context, now time.Time) (int, error) {
	res, err := r.client.JobList(ctx, river.NewJobListParams().Kinds(SyncArgs{}.Kind()).States(rivertype.JobStateRunning).First(1000))
	if err != nil {
		return 0, fmt.Errorf("jobs: listing running sync jobs: %w", err)
	}
	n := 0
	for _, j := range res.Jobs {
		if j.AttemptedAt == nil || now.Sub(*j.AttemptedAt) < r.cfg.StuckAfter {
			continue
		}
		if r.worked(j.ID) {
			// This instance worked the job to its end; River records the
			// outcome asynchronously. Its run may have released the lease
			// already: not an orphan.
			continue
		}
		var a SyncArgs
		var meta struct {
			CancelAttemptedAt *time.Time `json:"cancel_attempted_at"`
		}
		if json.Unmarshal(j.EncodedArgs, &a) != nil || json.Unmarshal(j.Metadata, &meta) == nil && meta.CancelAttemptedAt != nil {
			continue // already replaced; River's rescuer cancels it for good
		}
		held, err := syncer.LeaseHeld(ctx, r.cfg.Store, a.PBX, now)
		if err != nil {
			return n, err
		}
		if held {
			continue // a live run: its instance renews the lease
		}
		if done, err := satisfied(ctx, r.cfg.Syncer, a.PBX, a.due(j.ScheduledAt)); err != nil {
			return n, err
		} else if done {
			// The instance finished the sync but died before River recorded
			// the job as completed: the trigger is served, so no second run.
			if _, err := r.client.JobCancel(ctx, j.ID); err != nil {
				return n, fmt.Errorf("jobs: cancelling orphaned job %d: %w", j.ID, err)
			}
			r.cfg.Logger.InfoContext(ctx, "jobs: a stopped instance's sync job had finished its run; not repeating it",
				"pbx", a.PBX, "job", j.ID, "attemptedBy", j.AttemptedBy)
			continue
		}
		_, err = r.client.Insert(ctx, SyncArgs{PBX: a.PBX, Reason: a.Reason, RescueOf: j.ID}, &river.InsertOpts{
			Queue: QueueSync, UniqueOpts: river.UniqueOpts{ByArgs: true}})
		if err != nil {
			return n, fmt.Errorf("jobs: replacing orphaned job %d: %w", j.ID, err)
		}
		if _, err := r.client.JobCancel(ctx, j.ID); err != nil {
			return n, fmt.Errorf("jobs: cancelling orphaned job %d: %w", j.ID, err)
		}
		n++
		r.cfg.Logger.WarnContext(ctx, "jobs: replaced a sync job orphaned by a stopped instance",
			"pbx", a.PBX, "job", j.ID, "attemptedBy", j.AttemptedBy)
	}
	return n, nil
}
