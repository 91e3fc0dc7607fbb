// Package syncer is the reconcile engine that keeps a PBX's extensions in
// step with Microsoft Entra ID users. A run is level-triggered: it reads the
// users in range (a full read, or a delta round after the first run), reads
// the PBX's extensions, computes a plan (create, update, bind, release,
// delete, skip — with reasons and the number each new user would get) and
// applies it through pbx.Service in transactions. A dry run is the same plan
// with nothing written. Only one run per PBX executes at a time; a second
// request joins the running one.
//
// A run's group phase keeps extension groups in step with Entra groups
// through /groups/delta and a stored mirror of the memberships it needs
// (groupdelta.go), under the same deletion guard as extensions.
package syncer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/graph"
	"github.com/switchboard-pbx/switchboard/internal/mail"
	"github.com/switchboard-pbx/switchboard/internal/pbx"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// GraphSource gives the engine an app-token Graph client for a PBX's
// connected tenant (package integration implements it).
type GraphSource interface {
	// AppClient returns an error wrapping ErrNotConnected when the PBX's
	// integration is not connected or is disabled.
	AppClient(ctx context.Context, pbx string) (*graph.Client, error)
}

// ErrNotConnected: the PBX has no connected (and enabled) Entra integration.
var ErrNotConnected = directory.ErrNotConnected

// Mailer sends email (mail.Sender implements it).
type Mailer interface {
	Send(ctx context.Context, cfg mail.Config, msgs ...mail.Message) error
}

var _ Mailer = mail.Sender{}

// Engine runs user syncs. Its exported fields are its dependencies; the zero
// values of Mailer, Logger and Now are usable.
type Engine struct {
	Store  store.Store
	PBX    *pbx.Service
	Graph  GraphSource
	Mailer Mailer // nil: welcome emails are not sent (the run says so)
	Logger *slog.Logger
	Now    func() time.Time
	// ApplyBatch is the number of changes per transaction (default 2000).
	ApplyBatch int
	// KeepRuns is how many run records are kept per PBX (default 50).
	KeepRuns int
	// PortalURL is written into welcome emails when set.
	PortalURL string
	// LeaseTTL is how long a run's lease on its PBX lasts without renewal
	// (default 1 minute; renewed every third of it). The lease keeps one run
	// per PBX across instances sharing a database; a stopped process's lease
	// expires after LeaseTTL. A run that finds its lease taken over when it
	// renews it (the process was paused for longer than LeaseTTL) is
	// cancelled and fails with ErrorCode lease_lost; its extension batches,
	// delta links and welcome-email outbox writes are fenced by the lease in
	// their own transactions, so none of them lands after another instance
	// took the PBX over.
	LeaseTTL time.Duration
	// BeforeApplyBatch, when set, is called before each apply transaction
	// (tests use it to stop a process mid-apply).
	BeforeApplyBatch func(run *Run, batch int)
	// Finished, when set, is called after every real (not dry) run with the
	// error that failed it, if any: the service records an integration error
	// state (expired secret, consent withdrawn) or starts follow-up work.
	Finished func(ctx context.Context, pbx string, run *Run, err error)

	mu       sync.Mutex
	inflight map[string]*inflight
	instance string // lease owner id of this engine
	wg       sync.WaitGroup
}

type inflight struct {
	run  *Run // guarded by Engine.mu
	done chan struct{}
}

// Run triggers.
const (
	TriggerManual   = "manual"
	TriggerInitial  = "initial"
	TriggerSchedule = "schedule"
	TriggerChange   = "change"
	TriggerConfirm  = "confirm"
	TriggerBind     = "bind"
	TriggerPause    = "pause"
)

// Run states.
const (
	StateRunning           = "running"
	StateSucceeded         = "succeeded"
	StateFailed            = "failed"
	StateNeedsConfirmation = "needs_confirmation"
	StateDryRun            = "dry_run"
	StateConfirmed         = "confirmed" // a needs_confirmation run that a later run applied
)

// RunOptions are what one run request asks for.
type RunOptions struct {
	DryRun  bool
	Trigger string // manual (default), initial, schedule, change, confirm, bind
	// ConfirmDeletes lets the run delete up to AllowDeletes synced extensions
	// past the deletion guard (set by Confirm).
	ConfirmDeletes bool
	AllowDeletes   int
	// AllowGroupDeletes is the same for synced extension groups.
	AllowGroupDeletes int
	// Actor is written to the audit log ("system" when empty).
	Actor string
	// confirms is the needs_confirmation run this run applies.
	confirms string
}

// Skip is a user or extension the run left alone, with the reason.
type Skip struct {
	Subject string `json:"subject"`
	EntraID string `json:"entraId,omitempty"`
	Reason  string `json:"reason"`
}

// Run is the record of one sync run.
type Run struct {
	ID         string     `json:"id"`
	State      string     `json:"state"`
	Trigger    string     `json:"trigger"`
	DryRun     bool       `json:"dryRun"`
	Read       string     `json:"read,omitempty"` // full | delta | groups | users
	StartedAt  time.Time  `json:"startedAt"`
	FinishedAt *time.Time `json:"finishedAt,omitempty"`
	Phase      string     `json:"phase,omitempty"` // reading | planning | applying | mailing | done
	UsersRead  int        `json:"usersRead"`
	Created    int        `json:"created"`
	Updated    int        `json:"updated"`
	Bound      int        `json:"bound"`
	Released   int        `json:"released"`
	Deleted    int        `json:"deleted"`
	Unchanged  int        `json:"unchanged"`
	Skipped    []Skip     `json:"skipped"`
	// Group sync (extension groups): counts of the group phase.
	GroupsCreated   int `json:"groupsCreated"`
	GroupsUpdated   int `json:"groupsUpdated"`
	GroupsDeleted   int `json:"groupsDeleted"`
	GroupsReleased  int `json:"groupsReleased"`
	GroupsUnchanged int `json:"groupsUnchanged"`
	// GroupsRead is how groups were read: full (a whole /groups/delta round) or delta.
	GroupsRead string `json:"groupsRead,omitempty"`
	// PendingGroupDeletes is the number of extension group deletions waiting for confirmation.
	PendingGroupDeletes int `json:"pendingGroupDeletes,omitempty"`
	SkippedTotal        int `json:"skippedTotal"`
	// PendingDeletes is the number of deletions waiting for confirmation.
	PendingDeletes int      `json:"pendingDeletes,omitempty"`
	Plan           []Action `json:"plan,omitempty"`
	PlanTotal      int      `json:"planTotal,omitempty"`
	WelcomeEmails  int      `json:"welcomeEmails,omitempty"`
	GraphRequests  int      `json:"graphRequests"`
	Notes          []string `json:"notes,omitempty"`
	Error          string   `json:"error,omitempty"`
	// ErrorCode classifies a failure: paused, disabled, not_connected, read_failed, apply_failed,
	// throttled (Graph kept answering 429/503 after the client's own retries), unauthorized
	// (Graph refused the app: 401/403), lease_lost (another instance took the PBX over), internal.
	ErrorCode string `json:"errorCode,omitempty"`
	// RetryAfter is Graph's Retry-After of a throttled run (ErrorCode throttled), when it gave one.
	RetryAfter  time.Duration `json:"retryAfter,omitempty"`
	ConfirmedBy string        `json:"confirmedBy,omitempty"`
	Confirms    string        `json:"confirms,omitempty"`
}

// Limits on what a run record keeps.
const (
	maxSkipsKept = 1000
	maxPlanKept  = 5000
)

func (r *Run) skip(subject, entraID, reason string) {
	r.SkippedTotal++
	if len(r.Skipped) < maxSkipsKept {
		r.Skipped = append(r.Skipped, Skip{Subject: subject, EntraID: entraID, Reason: reason})
	}
}

func (r *Run) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

func (r *Run) clone() *Run {
	c := *r
	c.Skipped = append(make([]Skip, 0, len(r.Skipped)), r.Skipped...) // [] in JSON, never null
	c.Notes = append([]string(nil), r.Notes...)
	c.Plan = append([]Action(nil), r.Plan...)
	return &c
}

func (e *Engine) logger() *slog.Logger {
	if e.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return e.Logger
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now().UTC()
	}
	return time.Now().UTC()
}

func (e *Engine) batchSize() int {
	if e.ApplyBatch > 0 {
		return e.ApplyBatch
	}
	return 2000
}

// newRunID returns a sortable id: the start time in milliseconds and 4 random bytes.
func (e *Engine) newRunID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%013d-%s", e.now().UnixMilli(), hex.EncodeToString(b[:]))
}

// Run runs a sync for the PBX and returns its record. If a run is already in
// progress for the PBX, Run waits for it and returns that run instead.
func (e *Engine) Run(ctx context.Context, pbx string, opt RunOptions) (*Run, error) {
	fl, run, joined := e.begin(ctx, pbx, opt)
	if joined {
		select {
		case <-fl.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return e.snapshot(fl), nil
	}
	e.execute(context.WithoutCancel(ctx), pbx, opt, fl, run)
	return e.snapshot(fl), nil
}

// Start starts a sync in the background and returns the run record as it
// starts (state running), or the run already in progress.
func (e *Engine) Start(ctx context.Context, pbx string, opt RunOptions) (*Run, error) {
	fl, run, joined := e.begin(ctx, pbx, opt)
	if joined {
		return e.snapshot(fl), nil
	}
	snap := e.snapshot(fl)
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.execute(context.WithoutCancel(ctx), pbx, opt, fl, run)
	}()
	return snap, nil
}

// Wait blocks until every background run has finished (tests, shutdown).
func (e *Engine) Wait() { e.wg.Wait() }

// Running returns the run in progress for the PBX, or nil.
func (e *Engine) Running(pbx string) *Run {
	e.mu.Lock()
	defer e.mu.Unlock()
	if fl := e.inflight[pbx]; fl != nil {
		return fl.run.clone()
	}
	return nil
}

func (e *Engine) begin(ctx context.Context, pbx string, opt RunOptions) (*inflight, *Run, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.inflight == nil {
		e.inflight = map[string]*inflight{}
	}
	if fl := e.inflight[pbx]; fl != nil {
		return fl, nil, true
	}
	if opt.Trigger == "" {
		opt.Trigger = TriggerManual
	}
	run := &Run{ID: e.newRunID(), State: StateRunning, Trigger: opt.Trigger, DryRun: opt.DryRun, StartedAt: e.now(), Phase: "reading", Skipped: []Skip{}}
	fl := &inflight{run: run, done: make(chan struct{})}
	e.inflight[pbx] = fl
	return fl, run, false
}

func (e *Engine) snapshot(fl *inflight) *Run {
	e.mu.Lock()
	defer e.mu.Unlock()
	return fl.run.clone()
}

// progress updates the live run under the lock (GET shows it while running).
func (e *Engine) progress(fl *inflight, fn func(r *Run)) {
	e.mu.Lock()
	fn(fl.run)
	e.mu.Unlock()
}

func (e *Engine) finish(ctx context.Context, pbx string, fl *inflight) {
	e.mu.Lock()
	r := fl.run
	if r.FinishedAt == nil {
		t := e.now()
		r.FinishedAt = &t
	}
	r.Phase = "done"
	final := r.clone()
	delete(e.inflight, pbx)
	e.mu.Unlock()
	if err := e.saveRun(ctx, pbx, final); err != nil {
		e.logger().ErrorContext(ctx, "sync: saving the run record failed", "pbx", pbx, "run", final.ID, "err", err)
	}
	close(fl.done)
}
