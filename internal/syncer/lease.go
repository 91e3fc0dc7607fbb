package syncer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/store"
)

// keyLease holds the lease that makes one run per PBX hold across
// instances sharing one database: {owner, run, expires}.
const keyLease = "sync.lease"

type lease struct {
	Owner   string    `json:"owner"`
	Run     string    `json:"run"`
	Expires time.Time `json:"expires"`
}

var errLeaseHeld = errors.New("another instance is running a sync for this PBX")

// LeaseHeld reports whether a run holds the PBX's sync lease at now (another
// instance's, or this one's): the job queue snoozes a job instead of waiting
// for it, and its reaper tells a live run from an orphaned one.
func LeaseHeld(ctx context.Context, st store.Settings, pbx string, now time.Time) (bool, error) {
	b, err := st.GetSetting(ctx, pbx, keyLease)
	if errors.Is(err, store.ErrNotFound) || err == nil && len(b) == 0 {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading the sync lease: %w", err)
	}
	var l lease
	if json.Unmarshal(b, &l) != nil || l.Owner == "" {
		return false, nil
	}
	return now.Before(l.Expires), nil
}

func (e *Engine) leaseTTL() time.Duration {
	if e.LeaseTTL > 0 {
		return e.LeaseTTL
	}
	return time.Minute
}

func (e *Engine) owner() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.instance == "" {
		e.instance = e.newRunID()
	}
	return e.instance
}

// tryLease takes or renews the PBX's lease for run.
func (e *Engine) tryLease(ctx context.Context, pbx, run string) error {
	me := e.owner()
	return e.Store.UpdateSetting(ctx, pbx, keyLease, func(old []byte) ([]byte, error) {
		var l lease
		if old != nil && json.Unmarshal(old, &l) == nil && (l.Owner != me || l.Run != run) && e.now().Before(l.Expires) {
			return nil, errLeaseHeld
		}
		return json.Marshal(lease{Owner: me, Run: run, Expires: e.now().Add(e.leaseTTL())})
	})
}

// renewLease extends the PBX's lease for run, which must still hold it
// (expired or not). A lease that another owner or run holds, or that is
// gone, is never taken back: the run lost it (errLeaseLost), and whoever
// holds it now may already have written under it.
func (e *Engine) renewLease(ctx context.Context, pbx, run string) error {
	me := e.owner()
	return e.Store.UpdateSetting(ctx, pbx, keyLease, func(old []byte) ([]byte, error) {
		if err := checkLease(old, me, run); err != nil {
			return nil, err
		}
		return json.Marshal(lease{Owner: me, Run: run, Expires: e.now().Add(e.leaseTTL())})
	})
}

// checkLease returns nil when the stored lease v is owner's lease for run,
// else an error wrapping errLeaseLost.
func checkLease(v []byte, owner, run string) error {
	var l lease
	switch {
	case v == nil:
		return fmt.Errorf("%w (the lease was released)", errLeaseLost)
	case json.Unmarshal(v, &l) != nil:
		return fmt.Errorf("%w (the stored lease is unreadable)", errLeaseLost)
	case l.Owner != owner || l.Run != run:
		return fmt.Errorf("%w (now held by instance %s for run %s)", errLeaseLost, l.Owner, l.Run)
	}
	return nil
}

// leaseFence is the fence of a run's writes: they land only while the run
// still holds the PBX's lease (checked inside each write's transaction).
func (e *Engine) leaseFence(run string) *store.Fence {
	me := e.owner()
	return &store.Fence{Key: keyLease, Check: func(v []byte) error { return checkLease(v, me, run) }}
}

// acquireLease waits until the PBX's lease is free (another instance's run
// finished or its lease expired), takes it and keeps renewing it until the
// returned release is called. When a renewal finds the lease lost (another
// instance took it over while this one was paused or cut off for longer
// than the lease), renewal stops and lost (may be nil) is called with the
// error, once.
func (e *Engine) acquireLease(ctx context.Context, pbx, run string, waiting func(), lost func(error)) (release func(), err error) {
	wait := 50 * time.Millisecond
	for {
		err := e.tryLease(ctx, pbx, run)
		if err == nil {
			break
		}
		if !errors.Is(err, errLeaseHeld) {
			return nil, err
		}
		if waiting != nil {
			waiting()
			waiting = nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, time.Second)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tk := time.NewTicker(e.leaseTTL() / 3)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				err := e.renewLease(ctx, pbx, run)
				if errors.Is(err, errLeaseLost) {
					e.logger().ErrorContext(ctx, "sync: the run lost its lease; stopping it", "pbx", pbx, "run", run, "err", err)
					if lost != nil {
						lost(err)
					}
					return
				}
				if err != nil {
					e.logger().WarnContext(ctx, "sync: renewing the run lease failed", "pbx", pbx, "run", run, "err", err)
				}
			}
		}
	}()
	return func() {
		close(stop)
		<-done
		me := e.owner()
		_ = e.Store.UpdateSetting(context.WithoutCancel(ctx), pbx, keyLease, func(old []byte) ([]byte, error) {
			var l lease
			if old != nil && json.Unmarshal(old, &l) == nil && (l.Owner != me || l.Run != run) {
				return old, nil
			}
			return nil, nil
		})
	}, nil
}

// errLeaseLost: another instance took the PBX's lease over while this run
// held it (this one was paused past its lease, say); the run stops and
// writes nothing more.
var errLeaseLost = errors.New("the run lost its lease on the PBX to another instance")
