package syncer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/switchboard-pbx/switchboard/internal/store"
)

func (e *Engine) keepRuns() int {
	if e.KeepRuns > 0 {
		return e.KeepRuns
	}
	return 50
}

// saveRun stores the run record and prunes the oldest beyond KeepRuns.
func (e *Engine) saveRun(ctx context.Context, pbx string, r *Run) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := e.Store.UpdateSetting(ctx, pbx, keyRunPrefix+r.ID, func([]byte) ([]byte, error) { return b, nil }); err != nil {
		return err
	}
	if r.State == StateRunning {
		return nil
	}
	all, err := e.Store.ListSettings(ctx, pbx, keyRunPrefix)
	if err != nil {
		return err
	}
	keys := make([]string, 0, len(all))
	for k := range all {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for len(keys) > e.keepRuns() {
		k := keys[0]
		keys = keys[1:]
		if err := e.Store.UpdateSetting(ctx, pbx, k, func([]byte) ([]byte, error) { return nil, nil }); err != nil {
			return err
		}
	}
	return nil
}

// GetRun returns one run: the live record while it runs, else the stored one.
func (e *Engine) GetRun(ctx context.Context, pbx, id string) (*Run, error) {
	e.mu.Lock()
	if fl := e.inflight[pbx]; fl != nil && fl.run.ID == id {
		r := fl.run.clone()
		e.mu.Unlock()
		return r, nil
	}
	e.mu.Unlock()
	if strings.ContainsAny(id, "/%") || id == "" {
		return nil, store.ErrNotFound
	}
	b, err := e.Store.GetSetting(ctx, pbx, keyRunPrefix+id)
	if err != nil {
		return nil, err
	}
	var r Run
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("syncer: run %s: %w", id, err)
	}
	return &r, nil
}

// ListRuns returns the kept runs, newest first, without their plans.
func (e *Engine) ListRuns(ctx context.Context, pbx string) ([]Run, error) {
	all, err := e.Store.ListSettings(ctx, pbx, keyRunPrefix)
	if err != nil {
		return nil, err
	}
	out := make([]Run, 0, len(all))
	for _, b := range all {
		var r Run
		if err := json.Unmarshal(b, &r); err != nil {
			continue
		}
		if r.Skipped == nil {
			r.Skipped = []Skip{}
		}
		r.Plan = nil
		if len(r.Skipped) > 20 {
			r.Skipped = r.Skipped[:20]
		}
		out = append(out, r)
	}
	e.mu.Lock()
	if fl := e.inflight[pbx]; fl != nil {
		live := fl.run.clone()
		live.Plan = nil
		for i := range out {
			if out[i].ID == live.ID {
				out[i] = *live
				live = nil
				break
			}
		}
		if live != nil {
			out = append(out, *live)
		}
	}
	e.mu.Unlock()
	slices.SortFunc(out, func(a, b Run) int { return strings.Compare(b.ID, a.ID) })
	return out, nil
}

// markInterrupted turns stored "running" records that no run of this process
// owns into failed ones: the process that ran them stopped mid-run.
func (e *Engine) markInterrupted(ctx context.Context, pbx, current string) {
	all, err := e.Store.ListSettings(ctx, pbx, keyRunPrefix)
	if err != nil {
		return
	}
	for k, b := range all {
		var r Run
		if json.Unmarshal(b, &r) != nil || r.State != StateRunning || r.ID == current {
			continue
		}
		r.State = StateFailed
		r.Error = "interrupted: the process stopped during this run; every committed step stays, the rest was not applied (the next run completes it)"
		r.Phase = "done"
		nb, _ := json.Marshal(r)
		_ = e.Store.UpdateSetting(ctx, pbx, k, func([]byte) ([]byte, error) { return nb, nil })
	}
}

// ErrNotConfirmable: the run is not waiting for a confirmation.
var ErrNotConfirmable = errors.New("the run is not waiting for confirmation")

// Confirm applies a run held by the deletion guard: it runs a fresh sync that
// may delete up to as many synced extensions as the held run reported.
func (e *Engine) Confirm(ctx context.Context, pbx, id, actor string) (*Run, error) {
	held, err := e.GetRun(ctx, pbx, id)
	if err != nil {
		return nil, err
	}
	if held.State != StateNeedsConfirmation {
		return nil, &confirmError{state: held.State}
	}
	return e.Run(ctx, pbx, RunOptions{Trigger: TriggerConfirm, ConfirmDeletes: true, AllowDeletes: held.PendingDeletes, AllowGroupDeletes: held.PendingGroupDeletes, Actor: actor, confirms: id})
}

type confirmError struct{ state string }

func (c *confirmError) Error() string {
	return fmt.Sprintf("the run is %s, not waiting for confirmation", c.state)
}
func (c *confirmError) Unwrap() error { return ErrNotConfirmable }
