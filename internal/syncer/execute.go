package syncer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/graph"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

type deltaDoc struct {
	Link        string    `json:"link"`
	Fingerprint string    `json:"fingerprint"`
	NextNumber  int64     `json:"nextNumber,omitempty"`
	SavedAt     time.Time `json:"savedAt"`
}

// execute runs one sync on the working copy w and publishes it when done.
func (e *Engine) execute(ctx context.Context, pbx string, opt RunOptions, fl *inflight, run *Run) {
	w := run.clone()
	w.Confirms = opt.confirms
	log := e.logger().With("pbx", pbx, "run", w.ID, "trigger", w.Trigger)
	var syncErr error
	defer func() {
		if p := recover(); p != nil {
			w.State, w.Error = StateFailed, fmt.Sprintf("internal error: %v", p)
			log.ErrorContext(ctx, "sync: panic", "panic", p)
		}
		// The service learns the outcome (e.g. the integration's error state)
		// before the run is published as finished, so a reader of the run
		// never sees a stale integration status.
		if e.Finished != nil && !w.DryRun {
			e.Finished(context.WithoutCancel(ctx), pbx, w.clone(), syncErr)
		}
		e.progress(fl, func(r *Run) { *r = *w.clone() })
		e.finish(ctx, pbx, fl)
		log.InfoContext(ctx, "sync: run finished", "state", w.State, "created", w.Created, "updated", w.Updated,
			"deleted", w.Deleted, "unchanged", w.Unchanged, "skipped", w.SkippedTotal, "graphRequests", w.GraphRequests, "err", w.Error)
	}()
	// runCtx is cancelled, with the cause, when the run loses its lease: a
	// run paused past its lease (a stopped VM, a long GC pause, a cut
	// network) and taken over by another instance stops instead of carrying
	// on with a stale plan. Its writes are fenced as well (leaseFence), for
	// the ones already under way when it wakes up.
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	release, err := e.acquireLease(ctx, pbx, w.ID, func() {
		e.progress(fl, func(r *Run) { r.Phase = "waiting" })
		log.InfoContext(ctx, "sync: another instance is syncing this PBX; waiting for it")
	}, cancel)
	if err != nil {
		w.State, w.Error, w.ErrorCode = StateFailed, "taking the run lease: "+err.Error(), "internal"
		return
	}
	defer release()
	e.markInterrupted(ctx, pbx, w.ID)
	if !w.DryRun {
		if err := e.saveRun(ctx, pbx, w); err != nil {
			log.ErrorContext(ctx, "sync: saving the run record failed", "err", err)
		}
	}
	if err := e.sync(runCtx, pbx, opt, fl, w); err != nil {
		if cause := context.Cause(runCtx); errors.Is(cause, errLeaseLost) && !errors.Is(err, errLeaseLost) {
			// What failed was the cancellation: report its cause.
			err = fmt.Errorf("%w; the run stopped (%v)", cause, err)
		}
		syncErr = err
		w.State = StateFailed
		w.Error = err.Error()
		w.ErrorCode = errorCode(err)
		if w.ErrorCode == "throttled" {
			w.RetryAfter = retryAfter(err)
		}
		switch w.ErrorCode {
		case "paused", "disabled", "not_connected":
			return
		}
		log.WarnContext(ctx, "sync: run failed", "err", err)
	}
}

func (e *Engine) sync(ctx context.Context, pbx string, opt RunOptions, fl *inflight, w *Run) error {
	s, saved, err := e.loadSettings(ctx, pbx)
	if err != nil {
		return err
	}
	st, err := e.loadState(ctx, pbx)
	if err != nil {
		return err
	}
	gs, gsaved, err := e.loadGroupSettings(ctx, pbx)
	if err != nil {
		return err
	}
	gst, err := e.loadGroupState(ctx, pbx)
	if err != nil {
		return err
	}
	userOn := saved && !st.Paused && (s.Enabled || opt.DryRun) // a dry run previews saved settings before switching on
	groupOn := gsaved && !gst.Paused && (gs.Enabled || (opt.DryRun && !userOn))
	switch {
	case !userOn && !groupOn && st.Paused:
		return ErrPaused
	case !userOn && !groupOn:
		return ErrDisabled
	}
	c, err := e.Graph.AppClient(ctx, pbx)
	if err != nil {
		// No usable Graph client: the integration is not connected, disabled,
		// or its credentials fail; the run reports it as not_connected.
		return &stepError{code: "not_connected", err: err}
	}
	if userOn {
		if err := e.syncUsers(ctx, pbx, opt, fl, w, s, c); err != nil {
			return err
		}
		if w.State == StateNeedsConfirmation {
			return nil
		}
	} else {
		w.Read = "none"
	}
	if groupOn {
		e.progress(fl, func(r *Run) { r.Phase = "groups" })
		if err := e.syncGroups(ctx, pbx, opt, w, gs, s, c); err != nil {
			return err
		}
		if w.State == StateNeedsConfirmation {
			return nil
		}
	}
	if w.DryRun {
		w.State = StateDryRun
		return nil
	}
	w.State = StateSucceeded
	if opt.confirms != "" {
		e.markConfirmed(ctx, pbx, opt.confirms, w.ID)
	}
	e.PBX.Audit(ctx, pbx, opt.Actor, "sync.run", w.ID, fmt.Sprintf("trigger=%s created=%d updated=%d deleted=%d skipped=%d groups=+%d~%d-%d",
		w.Trigger, w.Created, w.Updated+w.Bound+w.Released, w.Deleted, w.SkippedTotal, w.GroupsCreated, w.GroupsUpdated+w.GroupsReleased, w.GroupsDeleted))
	return nil
}

// syncUsers is the user phase: read, plan, guard, apply.
func (e *Engine) syncUsers(ctx context.Context, pbx string, opt RunOptions, fl *inflight, w *Run, s UserSettings, c *graph.Client) error {
	var err error
	p, err := e.Store.GetPBX(ctx, pbx)
	if err != nil {
		return err
	}
	// Read. A failed read fails the run before anything is planned, so that
	// users that could not be read never count as gone.
	rd, loc, err := e.read(ctx, pbx, c, &s, w)
	if err != nil {
		return &stepError{code: "read_failed", err: fmt.Errorf("reading users from Entra failed, nothing was changed: %w", err)}
	}
	w.Read, w.UsersRead, w.GraphRequests = rd.mode, len(rd.users), rd.requests
	e.progress(fl, func(r *Run) {
		r.Phase, r.Read, r.UsersRead, r.GraphRequests = "planning", w.Read, w.UsersRead, w.GraphRequests
	})

	pl := makePlan(&s, loc, rd, p.MaxExtensions, rd.nextHint)
	if loc.err != nil {
		return fmt.Errorf("reading the PBX's extensions: %w", loc.err)
	}
	rd.users = nil // let the read go before applying
	for _, sk := range pl.skips {
		w.skip(sk.Subject, sk.EntraID, sk.Reason)
	}
	w.Unchanged = pl.unchanged
	acts := pl.actions()
	w.PlanTotal = len(acts)
	keepPlan := func() { w.Plan = slices.Clone(acts[:min(len(acts), maxPlanKept)]) }

	nd := len(pl.deletes)
	pct := s.guardPercent()
	synced := 0
	if nd > 0 {
		if synced, err = loc.syncedCount(); err != nil {
			return err
		}
	}
	trips := nd > 0 && (nd*100 > pct*synced || (s.DeleteGuard.MaxCount > 0 && nd > s.DeleteGuard.MaxCount))
	if trips && opt.ConfirmDeletes && nd <= opt.AllowDeletes {
		trips = false
	}
	if w.DryRun {
		keepPlan()
		w.countPlanned(pl)
		if trips {
			w.PendingDeletes = nd
			w.note("a real run would stop for confirmation: it deletes %d of %d synced extensions (guard: more than %d%%%s)", nd, synced, pct, countLimit(s))
		}
		return nil
	}
	if trips {
		keepPlan()
		w.countPlanned(pl)
		w.Created, w.Updated, w.Bound, w.Released, w.Deleted = 0, 0, 0, 0, 0
		w.PendingDeletes = nd
		w.State = StateNeedsConfirmation
		w.note("stopped before changing anything: the run would delete %d of %d synced extensions (guard: more than %d%%%s); confirm the run to apply it", nd, synced, pct, countLimit(s))
		return nil
	}

	e.progress(fl, func(r *Run) { r.Phase = "applying" })
	// Welcome emails go into the outbox only when they can be sent: without
	// SMTP the outbox rows would be written and dropped again in every batch.
	mailCfg, whyNot := e.welcomeMail(ctx, pbx, s.WelcomeEmail)
	if err := e.apply(ctx, pbx, fl, w, pl, whyNot == ""); err != nil {
		return &stepError{code: "apply_failed", err: fmt.Errorf("applying the plan failed (committed steps stay; the next run completes the rest): %w", err)}
	}
	// The delta link advances only now that everything it covers is applied.
	// Reads without one (groups, hand-picked users) drop the stored link: the
	// PBX changed in ways an old link does not cover.
	var doc []byte
	if rd.deltaLink != "" {
		doc, _ = json.Marshal(deltaDoc{Link: rd.deltaLink, Fingerprint: s.fingerprint(), NextNumber: pl.next, SavedAt: e.now()})
	}
	if err := e.Store.UpdateSettingFenced(ctx, pbx, keyDeltaUsers, e.leaseFence(w.ID), func([]byte) ([]byte, error) { return doc, nil }); err != nil {
		return fmt.Errorf("storing the delta link: %w", err)
	}
	if s.WelcomeEmail && whyNot != "" && w.Created > 0 {
		w.note("welcome emails to %d users not sent: %s", w.Created, whyNot)
	}
	e.progress(fl, func(r *Run) { r.Phase = "mailing" })
	e.drainWelcome(ctx, pbx, w, mailCfg, whyNot)
	return nil
}

func countLimit(s UserSettings) string {
	if s.DeleteGuard.MaxCount > 0 {
		return fmt.Sprintf(" or more than %d extensions", s.DeleteGuard.MaxCount)
	}
	return ""
}

func (w *Run) countPlanned(pl *plan) {
	w.Created, w.Deleted = len(pl.creates), len(pl.deletes)
	for _, a := range pl.updates {
		switch a.Op {
		case OpUpdate:
			w.Updated++
		case OpBind:
			w.Bound++
		case OpRelease:
			w.Released++
		}
	}
}

// loadLocal reads every extension of the PBX.
func (e *Engine) loadLocal(ctx context.Context, pbx string) (*local, error) {
	n, err := e.Store.CountExtensions(ctx, pbx)
	if err != nil {
		return nil, err
	}
	loc := newLocal(n)
	if err := e.Store.ListAllExtensions(ctx, pbx, func(x *directory.Extension) error {
		cp := *x
		loc.add(&cp)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("reading the PBX's extensions: %w", err)
	}
	return loc, nil
}

// read reads the users the settings ask for, and the PBX's extensions: all
// of them for full reads, one by one on demand for delta reads.
func (e *Engine) read(ctx context.Context, pbx string, c *graph.Client, s *UserSettings, w *Run) (*readResult, *local, error) {
	switch s.Range {
	case RangeAll, RangeType:
		var d deltaDoc
		if b, err := e.Store.GetSetting(ctx, pbx, keyDeltaUsers); err == nil {
			if json.Unmarshal(b, &d) != nil || d.Fingerprint != s.fingerprint() {
				d = deltaDoc{}
			}
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, nil, err
		}
		if d.Link == "" {
			w.note("full read: first run, or the range, numbering or field mapping changed")
		}
		rd, err := readDelta(ctx, c, s, d.Link)
		if d.Link != "" && errors.Is(err, graph.ErrResyncRequired) {
			w.note("the delta token expired (%v): full read instead", err)
			rd, err = readDelta(ctx, c, s, "")
		}
		if err != nil {
			return nil, nil, err
		}
		var loc *local
		if rd.mode == "delta" {
			rd.nextHint = d.NextNumber
			loc, err = newLazyLocal(ctx, e.Store, pbx)
		} else {
			loc, err = e.loadLocal(ctx, pbx)
		}
		return rd, loc, err
	case RangeGroups, RangeUsers:
		var rd *readResult
		var err error
		if s.Range == RangeGroups {
			rd, err = readGroups(ctx, c, s, w)
		} else {
			rd, err = readPicked(ctx, c, s)
		}
		if err != nil {
			return nil, nil, err
		}
		loc, err := e.loadLocal(ctx, pbx)
		if err != nil {
			return nil, nil, err
		}
		seen := make(map[string]bool, len(rd.users))
		for _, u := range rd.users {
			seen[u.ID] = true
		}
		var vanished []string
		for id := range loc.byEntra {
			if !seen[id] && !rd.gone[id] {
				vanished = append(vanished, id)
			}
		}
		slices.Sort(vanished)
		return rd, loc, resolveVanished(ctx, c, s, rd, vanished)
	}
	return nil, nil, fmt.Errorf("unknown range %q", s.Range)
}

func (e *Engine) markConfirmed(ctx context.Context, pbx, id, by string) {
	_ = e.Store.UpdateSetting(ctx, pbx, keyRunPrefix+id, func(old []byte) ([]byte, error) {
		if old == nil {
			return nil, nil
		}
		var r Run
		if err := json.Unmarshal(old, &r); err != nil {
			return old, nil
		}
		r.State, r.ConfirmedBy = StateConfirmed, by
		return json.Marshal(r)
	})
}

// stepError marks which step of a run failed.
type stepError struct {
	code string
	err  error
}

func (s *stepError) Error() string { return s.err.Error() }
func (s *stepError) Unwrap() error { return s.err }

// errorCode classifies a run's failure (Run.ErrorCode). Graph's answers
// win over the step that met them: a read or a group call that Graph kept
// throttling is "throttled", one Graph refused (401/403: credentials revoked,
// consent or permissions removed) is "unauthorized", wherever it happened.
func errorCode(err error) string {
	var se *stepError
	var ge *graph.Error
	switch {
	case errors.Is(err, ErrPaused):
		return "paused"
	case errors.Is(err, ErrDisabled):
		return "disabled"
	case errors.Is(err, ErrNotConnected):
		return "not_connected"
	case errors.Is(err, errLeaseLost):
		return "lease_lost"
	case errors.As(err, &ge) && ge.Is(graph.ErrThrottled):
		return "throttled"
	case errors.As(err, &ge) && (ge.Status == http.StatusUnauthorized || ge.Status == http.StatusForbidden):
		return "unauthorized"
	case errors.As(err, &se):
		return se.code
	}
	return "internal"
}

// retryAfter is Graph's Retry-After carried by a throttled run's error (0: none).
func retryAfter(err error) time.Duration {
	var ge *graph.Error
	if errors.As(err, &ge) && ge.Is(graph.ErrThrottled) {
		return ge.RetryAfter
	}
	return 0
}
