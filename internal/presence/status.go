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
	PresenceRequests int64        `json:"presenceRequests"`
	Users            []UserStatus `json:"users"`
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
	if rec, err := s.loadSub(ctx, pbx); err == nil && rec != nil {
		out.Subscription = &SubscriptionStatus{ID: rec.ID, ExpiresAt: rec.Expires, Users: len(rec.UserIDs)}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.state(pbx)
	polled := make(map[string]bool, len(st.polled))
	for _, id := range st.polled {
		polled[id] = true
	}
	iv := st.interval
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
		case st.notified[t.userID]:
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
