package contactsync

import (
	"context"
	"errors"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/store"
)

// LeaseKey is the per-PBX setting that keeps one contacts sync per PBX across
// instances sharing one database (a store.Lease), renewed while the run
// lasts and removed at its end. A stopped instance's lease expires after
// LeaseTTL.
const LeaseKey = "contacts.lease"

// LeaseTTL is how long a contacts-sync lease lasts without renewal.
const LeaseTTL = 2 * time.Minute

// owner names this process in leases.
func (s *Service) owner() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.instance == "" {
		s.instance = store.NewLeaseOwner()
	}
	return s.instance
}

// takeLease takes the PBX's contacts-sync lease (ErrRunning while another
// instance holds it) and renews it every LeaseTTL/3 until release is called.
func (s *Service) takeLease(ctx context.Context, pbx string) (release func(), err error) {
	me := s.owner()
	put := func(ctx context.Context) error {
		now := s.now()
		err := store.TakeLease(ctx, s.Store, pbx, LeaseKey, me, now, now.Add(LeaseTTL))
		if errors.Is(err, store.ErrLeaseHeld) {
			return ErrRunning
		}
		return err
	}
	if err := put(ctx); err != nil {
		return nil, err
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(LeaseTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if err := put(ctx); err != nil {
					s.log().WarnContext(ctx, "contacts: renewing the sync lease failed", "pbx", pbx, "err", err)
				}
			}
		}
	}()
	return func() {
		close(stop)
		<-done
		if err := store.ReleaseLease(context.WithoutCancel(ctx), s.Store, pbx, LeaseKey, me); err != nil {
			s.log().WarnContext(ctx, "contacts: releasing the sync lease failed", "pbx", pbx, "err", err)
		}
	}, nil
}
