package presence

import (
	"context"
	"time"
)

// Paths a user's presence takes.
const (
	PathNotification = "notification"
	PathPolling      = "polling"
)

// Status is what GET /api/v1/presence-sync/status answers.
type Status struct {
	Enabled   bool      `json:"enabled"`
	Direction Direction `json:"direction"`
	// PollIntervalSeconds is the current polling interval (see the package doc).
	PollIntervalSeconds float64             `json:"pollIntervalSeconds"`
	LastRoundAt         *time.Time          `json:"lastRoundAt,omitempty"`
	NextRoundAt         *time.Time          `json:"nextRoundAt,omitempty"`
	LastError           string              `json:"lastError,omitempty"`
	Subscription        *SubscriptionStatus `json:"subscription"`
	SubscriptionError   string              `json:"subscriptionError,omitempty"`
	NotificationUsers   int                 `json:"notificationUsers"`
	PollingUsers        int                 `json:"pollingUsers"`
	// PresenceRequests counts Graph presence requests made since start (polling,
	// notification reads, two-way writes).
	PresenceRequests int64 `json:"presenceRequests"`
	// LeaseHolder names the instance reconciling the PBX (see
	// Service.LeaseTTL); "" when none holds the lease. Asked on another
	// instance, the paths come from the stored subscription, and the round
	// times, errors and request count are that instance's own (none).
	LeaseHolder string       `json:"leaseHolder,omitempty"`
	Users       []UserStatus `json:"users"`
}

// SubscriptionStatus describes the PBX's presence subscription.
type SubscriptionStatus struct {
	ID        string    `json:"id"`
	ExpiresAt time.Time `json:"expiresAt"`
	Users     int       `json:"users"`
}

// UserStatus says which path a synced user's presence takes.
type UserStatus struct {
	ExtensionID  string `json:"extensionId"`
	Number       string `json:"number"`
	EntraID      string `json:"entraId"`
	Path         string `json:"path"` // notification or polling ("" before the first round)
	Presence     string `json:"presence"`
	CallState    string `json:"callState"`
	Availability string `json:"availability,omitempty"`
	Activity     string `json:"activity,omitempty"`
	// Held is true while a call holds the extension's presence (two-way).
	Held bool `json:"held"`
}

// GetStatus reports the PBX's presence sync: settings, subscription, and each user's path.
func (s *Service) GetStatus(ctx context.Context, pbx string) (Status, error) {
	set, err := s.GetSettings(ctx, pbx)
	if err != nil {
		return Status{}, err
	}
	out := Status{Enabled: set.Enabled, Direction: set.Direction, Users: []UserStatus{}}
	ts, err := s.targets(ctx, pbx)
	if err != nil {
		return Status{}, err
	}
	rec, err := s.loadSub(ctx, pbx)
	if err == nil && rec != nil {
		out.Subscription = &SubscriptionStatus{ID: rec.ID, ExpiresAt: rec.Expires, Users: len(rec.UserIDs)}
	}
	now := s.now()
	if l, err := s.readLease(ctx, pbx); err == nil && now.Before(l.Expires) {
		out.LeaseHolder = l.Owner
	}
	holder := s.ownsLease(pbx)
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.state(pbx)
	notified := st.notified
	polled := make(map[string]bool, len(st.polled))
	for _, id := range st.polled {
		polled[id] = true
	}
	iv := st.interval
	if !holder && out.LeaseHolder != "" && set.Enabled {
		// Another instance runs the rounds: its split, as stored.
		notified = map[string]bool{}
		if rec != nil && now.Before(rec.Expires) {
			for _, id := range rec.UserIDs {
				notified[id] = true
			}
		}
		clear(polled)
		for _, t := range ts {
			if !notified[t.userID] {
				polled[t.userID] = true
			}
		}
		iv = s.PollInterval(len(polled))
	}
	if iv == 0 {
		iv = s.PollInterval(len(ts))
	}
	out.PollIntervalSeconds = iv.Seconds()
	if !st.lastPoll.IsZero() {
		lp, np := st.lastPoll, st.nextRun
		out.LastRoundAt, out.NextRoundAt = &lp, &np
	}
	out.LastError, out.SubscriptionError = st.lastErr, st.subErr
	out.PresenceRequests = st.requests
	two := set.Enabled && set.Direction == TwoWay
	for _, t := range ts {
		u := UserStatus{ExtensionID: t.extID, Number: t.number, EntraID: t.userID, Presence: string(t.presence),
			CallState: string(t.callState), Held: two && inCall(t.callState)}
		switch {
		case notified[t.userID]:
			u.Path = PathNotification
			out.NotificationUsers++
		case polled[t.userID]:
			u.Path = PathPolling
			out.PollingUsers++
		}
		if l, ok := st.latest[t.userID]; ok {
			u.Availability, u.Activity = l.Availability, l.Activity
		}
		out.Users = append(out.Users, u)
	}
	return out, nil
}
