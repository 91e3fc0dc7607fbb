package presence

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/store"
)

// LeaseKey is the setting holding the PBX's presence lease, {owner,
// expires, kick}: Run reconciles a PBX (polling, the subscription's create,
// renewal and teardown) only on the instance holding it, so that several
// instances sharing one database poll each PBX once and never race to
// create its subscription. Notifications are applied by whichever instance
// receives them.
const LeaseKey = "presence.lease"

// DefaultLeaseTTL is the default of Service.LeaseTTL.
const DefaultLeaseTTL = 90 * time.Second

type leaseDoc struct {
	Owner   string    `json:"owner,omitempty"`
	Expires time.Time `json:"expires,omitzero"`
	// Kick is bumped by a settings change handled on an instance that does
	// not hold the lease: the owner sees it move and runs a round at once.
	Kick int64 `json:"kick,omitempty"`
}

var errLeaseHeld = errors.New("presence: another instance holds the PBX's presence lease")

func parseLease(b []byte) leaseDoc {
	var l leaseDoc
	if b != nil {
		_ = json.Unmarshal(b, &l)
	}
	return l
}

func (s *Service) leaseTTL() time.Duration { return orDur(s.LeaseTTL, DefaultLeaseTTL) }

// instance names this process in leases (Instance, else a random id).
func (s *Service) instance() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Instance != "" {
		return s.Instance
	}
	if s.instanceID == "" {
		b := make([]byte, 12)
		_, _ = rand.Read(b)
		s.instanceID = hex.EncodeToString(b)
	}
	return s.instanceID
}

func (s *Service) readLease(ctx context.Context, pbx string) (leaseDoc, error) {
	b, err := s.Store.GetSetting(ctx, pbx, LeaseKey)
	if errors.Is(err, store.ErrNotFound) {
		return leaseDoc{}, nil
	}
	if err != nil {
		return leaseDoc{}, err
	}
	return parseLease(b), nil
}

// leaseCheck is how often the lease is read, by its holder (to notice
// kicks and a takeover) and by the other instances (to notice that it was
// released or expired): LeaseTTL/30 (3 s by default), at least one Tick.
func (s *Service) leaseCheck() time.Duration {
	return max(s.leaseTTL()/30, orDur(s.Tick, DefaultTick))
}

// holdLease reports whether this instance holds the PBX's lease at now,
// taking it when free or expired and renewing it when less than half its TTL
// is left. Per PBX it costs one read per leaseCheck on every instance and one
// write per half TTL on the holder.
func (s *Service) holdLease(ctx context.Context, pbx string, now time.Time) bool {
	me := s.instance()
	ttl := s.leaseTTL()
	s.mu.Lock()
	st := s.state(pbx)
	held, exp := now.Before(st.leaseExp), st.leaseExp
	renew := held && exp.Sub(now) < ttl/2
	read := renew || !now.Before(st.leaseRead.Add(s.leaseCheck()))
	if read {
		st.leaseRead = now
	}
	s.mu.Unlock()
	if !read {
		return held
	}
	l, err := s.readLease(ctx, pbx)
	if err != nil {
		// The store is unreachable: a held lease stays ours until it expires.
		s.log().WarnContext(ctx, "presence: reading the lease", "pbx", pbx, "err", err)
		return held
	}

	if held {
		if l.Owner != me {
			s.leaseLost(ctx, pbx, l)
			return false
		}
		s.mu.Lock()
		if l.Kick != st.kickSeen {
			st.kickSeen = l.Kick
			st.kicked, st.fullPoll = true, true
		}
		s.mu.Unlock()
		if !renew {
			return true
		}
		err = s.writeLease(ctx, pbx, me, now.Add(ttl))
		switch {
		case errors.Is(err, errLeaseHeld):
			l, _ := s.readLease(ctx, pbx)
			s.leaseLost(ctx, pbx, l)
			return false
		case err != nil:
			s.log().WarnContext(ctx, "presence: renewing the lease", "pbx", pbx, "err", err)
			return true
		}
		s.mu.Lock()
		st.leaseExp = now.Add(ttl)
		s.mu.Unlock()
		return true
	}

	if l.Owner != "" && l.Owner != me && now.Before(l.Expires) {
		return false // another instance's
	}
	var kick int64
	err = s.Store.UpdateSetting(ctx, pbx, LeaseKey, func(old []byte) ([]byte, error) {
		l := parseLease(old)
		if l.Owner != "" && l.Owner != me && now.Before(l.Expires) {
			return nil, errLeaseHeld
		}
		kick = l.Kick
		l.Owner, l.Expires = me, now.Add(ttl)
		return json.Marshal(l)
	})
	switch {
	case errors.Is(err, errLeaseHeld):
		return false
	case err != nil:
		s.log().WarnContext(ctx, "presence: taking the lease", "pbx", pbx, "err", err)
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// A new owner starts with a full round: its in-memory view of the PBX
	// (who is notified, the mappings last applied) may be stale or empty.
	st.leaseExp, st.kickSeen = now.Add(ttl), kick
	st.kicked, st.fullPoll = true, true
	st.subRetryAt = time.Time{}
	st.notified, st.polled = map[string]bool{}, nil
	s.log().InfoContext(ctx, "presence: lease taken", "pbx", pbx, "instance", me, "previous", l.Owner, "expires", st.leaseExp)
	return true
}

// writeLease renews this instance's lease.
func (s *Service) writeLease(ctx context.Context, pbx, me string, expires time.Time) error {
	return s.Store.UpdateSetting(ctx, pbx, LeaseKey, func(old []byte) ([]byte, error) {
		l := parseLease(old)
		if l.Owner != me {
			return nil, errLeaseHeld
		}
		l.Expires = expires
		return json.Marshal(l)
	})
}

// leaseLost forgets the PBX's round state after another instance took its lease.
func (s *Service) leaseLost(ctx context.Context, pbx string, l leaseDoc) {
	s.mu.Lock()
	st := s.state(pbx)
	st.leaseExp = time.Time{}
	st.notified, st.polled, st.fullPoll = map[string]bool{}, nil, true
	s.mu.Unlock()
	s.log().WarnContext(ctx, "presence: lease lost to another instance", "pbx", pbx, "owner", l.Owner)
}

// ownsLease reports whether this instance holds the PBX's lease, as far as it knows.
func (s *Service) ownsLease(pbx string) bool {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	return now.Before(s.state(pbx).leaseExp)
}

// bumpKick tells the lease's owner, through the store, that the PBX's settings changed.
func (s *Service) bumpKick(ctx context.Context, pbx string) error {
	return s.Store.UpdateSetting(ctx, pbx, LeaseKey, func(old []byte) ([]byte, error) {
		l := parseLease(old)
		l.Kick++
		return json.Marshal(l)
	})
}

// releaseLeases gives up every lease this instance holds (Run returning), so
// that another instance takes the PBXs over at once instead of after the TTL.
func (s *Service) releaseLeases(ctx context.Context) {
	me := s.instance()
	now := s.now()
	var owned []string
	s.mu.Lock()
	for id, st := range s.pbxs {
		if now.Before(st.leaseExp) {
			owned = append(owned, id)
		}
		st.leaseExp = time.Time{}
	}
	s.mu.Unlock()
	for _, pbx := range owned {
		err := s.Store.UpdateSetting(ctx, pbx, LeaseKey, func(old []byte) ([]byte, error) {
			l := parseLease(old)
			if l.Owner != me {
				return old, nil
			}
			l.Owner, l.Expires = "", time.Time{}
			return json.Marshal(l)
		})
		if err != nil {
			s.log().WarnContext(ctx, "presence: releasing the lease", "pbx", pbx, "err", err)
		}
	}
}
