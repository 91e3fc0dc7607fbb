package syncer

import (
	"context"
	"encoding/json"
	"errors"
	"time"
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

// acquireLease waits until the PBX's lease is free (another instance's run
// finished or its lease expired), takes it and keeps renewing it until the
// returned release is called.
func (e *Engine) acquireLease(ctx context.Context, pbx, run string, waiting func()) (release func(), err error) {
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
				if err := e.tryLease(ctx, pbx, run); err != nil {
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
