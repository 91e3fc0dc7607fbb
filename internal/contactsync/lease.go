package contactsync

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"time"
)

// LeaseKey is the per-PBX setting that keeps one contacts sync per PBX across
// instances sharing one database: {owner, expires}, renewed while the run
// lasts and removed at its end. A stopped instance's lease expires after
// LeaseTTL.
const LeaseKey = "contacts.lease"

// LeaseTTL is how long a contacts-sync lease lasts without renewal.
const LeaseTTL = 2 * time.Minute

type lease struct {
	Owner   string    `json:"owner"`
	Expires time.Time `json:"expires"`
}

// owner names this process in leases.
func (s *Service) owner() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.instance == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		s.instance = hex.EncodeToString(b[:])
	}
	return s.instance
}

// takeLease takes the PBX's contacts-sync lease (ErrRunning while another
// instance holds it) and renews it every LeaseTTL/3 until release is called.
func (s *Service) takeLease(ctx context.Context, pbx string) (release func(), err error) {
	me := s.owner()
	put := func(ctx context.Context) error {
		return s.Store.UpdateSetting(ctx, pbx, LeaseKey, func(old []byte) ([]byte, error) {
			var l lease
			if old != nil && json.Unmarshal(old, &l) == nil && l.Owner != me && s.now().Before(l.Expires) {
				return nil, ErrRunning
			}
			return json.Marshal(lease{Owner: me, Expires: s.now().Add(LeaseTTL)})
		})
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
		err := s.Store.UpdateSetting(context.WithoutCancel(ctx), pbx, LeaseKey, func(old []byte) ([]byte, error) {
			var l lease
			if old != nil && json.Unmarshal(old, &l) == nil && l.Owner != me {
				return old, nil
			}
			return nil, nil
		})
		if err != nil {
			s.log().WarnContext(ctx, "contacts: releasing the sync lease failed", "pbx", pbx, "err", err)
		}
	}, nil
}
