package graph

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// MaxPresenceIDs is the getPresencesByUserId limit per request.
const MaxPresenceIDs = 650

// GetPresence reads one user's presence (id must be the user's object id).
func (c *Client) GetPresence(ctx context.Context, userID string) (Presence, error) {
	var p Presence
	err := c.Do(ctx, http.MethodGet, "/users/"+pathEscape(userID)+"/presence", nil, nil, &p)
	return p, err
}

// GetPresencesByUserID reads the presence of many users, 650 ids per request. It
// returns what Graph returned (users without presence may be missing).
func (c *Client) GetPresencesByUserID(ctx context.Context, ids []string) ([]Presence, error) {
	out := make([]Presence, 0, len(ids))
	for start := 0; start < len(ids); start += MaxPresenceIDs {
		chunk := ids[start:min(start+MaxPresenceIDs, len(ids))]
		var resp struct {
			Value []Presence `json:"value"`
		}
		body := struct {
			IDs []string `json:"ids"`
		}{chunk}
		if err := c.Do(ctx, http.MethodPost, "/communications/getPresencesByUserId", nil, body, &resp); err != nil {
			return out, err
		}
		out = append(out, resp.Value...)
	}
	return out, nil
}

// SetPresenceRequest is the body of setPresence. SessionID defaults to the client ID.
// Expiration is sent as an ISO 8601 duration (Graph accepts PT5M..PT4H; 0 = default 5 min).
type SetPresenceRequest struct {
	SessionID    string
	Availability string
	Activity     string
	Expiration   time.Duration
}

// SetPresence sets the application's presence session for a user.
func (c *Client) SetPresence(ctx context.Context, userID string, r SetPresenceRequest) error {
	if r.SessionID == "" {
		r.SessionID = c.cfg.ClientID
	}
	body := map[string]string{
		"sessionId":    r.SessionID,
		"availability": r.Availability,
		"activity":     r.Activity,
	}
	if r.Expiration > 0 {
		body["expirationDuration"] = ISODuration(r.Expiration)
	}
	return c.Do(ctx, http.MethodPost, "/users/"+pathEscape(userID)+"/presence/setPresence", nil, body, nil)
}

// ClearPresence ends the application's presence session (sessionID "" = client ID).
// Graph answers 404 (ErrNotFound) when the session does not exist.
func (c *Client) ClearPresence(ctx context.Context, userID, sessionID string) error {
	if sessionID == "" {
		sessionID = c.cfg.ClientID
	}
	return c.Do(ctx, http.MethodPost, "/users/"+pathEscape(userID)+"/presence/clearPresence", nil,
		map[string]string{"sessionId": sessionID}, nil)
}

// SetUserPreferredPresence sets the user's preferred presence (0 expiration = Graph's
// default: 1 day for Busy/DoNotDisturb, 7 days otherwise).
func (c *Client) SetUserPreferredPresence(ctx context.Context, userID, availability, activity string, expiration time.Duration) error {
	body := map[string]string{"availability": availability, "activity": activity}
	if expiration > 0 {
		body["expirationDuration"] = ISODuration(expiration)
	}
	return c.Do(ctx, http.MethodPost, "/users/"+pathEscape(userID)+"/presence/setUserPreferredPresence", nil, body, nil)
}

// ClearUserPreferredPresence removes the user's preferred presence.
func (c *Client) ClearUserPreferredPresence(ctx context.Context, userID string) error {
	return c.Do(ctx, http.MethodPost, "/users/"+pathEscape(userID)+"/presence/clearUserPreferredPresence", nil, struct{}{}, nil)
}

// ISODuration formats d as an ISO 8601 duration (PT1H30M, PT5M, PT45S), whole seconds.
func ISODuration(d time.Duration) string {
	if d <= 0 {
		return "PT0S"
	}
	d = d.Round(time.Second)
	h := int64(d / time.Hour)
	m := int64(d % time.Hour / time.Minute)
	s := int64(d % time.Minute / time.Second)
	var b strings.Builder
	b.WriteString("PT")
	if h > 0 {
		fmt.Fprintf(&b, "%dH", h)
	}
	if m > 0 {
		fmt.Fprintf(&b, "%dM", m)
	}
	if s > 0 {
		fmt.Fprintf(&b, "%dS", s)
	}
	return b.String()
}
