package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"time"
)

// ErrLeaseHeld: another owner holds the lease and it has not expired.
var ErrLeaseHeld = errors.New("store: another instance holds the lease")

// Lease is a per-PBX setting that lets one instance at a time do a piece of
// work for the PBX when several share one database.
type Lease struct {
	Owner   string    `json:"owner"`
	Expires time.Time `json:"expires"`
}

// NewLeaseOwner returns a random name for this process in leases.
func NewLeaseOwner() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// TakeLease stores the lease at key for owner until expires: it takes a
// free or expired lease and renews owner's own; while another owner's lease
// has not expired at now it returns ErrLeaseHeld.
func TakeLease(ctx context.Context, s Settings, pbx, key, owner string, now, expires time.Time) error {
	return s.UpdateSetting(ctx, pbx, key, func(old []byte) ([]byte, error) {
		var l Lease
		if old != nil && json.Unmarshal(old, &l) == nil && l.Owner != owner && now.Before(l.Expires) {
			return nil, ErrLeaseHeld
		}
		return json.Marshal(Lease{Owner: owner, Expires: expires})
	})
}

// ReleaseLease removes the lease at key if owner holds it (another owner's
// lease is left alone).
func ReleaseLease(ctx context.Context, s Settings, pbx, key, owner string) error {
	return s.UpdateSetting(ctx, pbx, key, func(old []byte) ([]byte, error) {
		var l Lease
		if old != nil && json.Unmarshal(old, &l) == nil && l.Owner != owner {
			return old, nil
		}
		return nil, nil
	})
}
