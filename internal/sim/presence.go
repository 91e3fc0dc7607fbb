package sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// presenceInfo holds what changed a user's presence beyond the generated Teams state.
type presenceInfo struct {
	sessions  map[string]*presenceSession // by application (session) id
	preferred *presenceSession
}

type presenceSession struct {
	presenceState
	set, expires time.Time
}

var availabilityRank = map[string]int{"DoNotDisturb": 5, "Busy": 4, "BusyIdle": 4, "Available": 3, "AvailableIdle": 2, "Away": 1, "BeRightBack": 1}

// effectivePresence computes the user's aggregated presence (graph-facts 6.3): the
// user-preferred state wins while a session exists; among sessions
// DoNotDisturb > Busy > Available > Away; no session means Offline. The caller holds the lock.
func (t *Tenant) effectivePresence(u *user) presenceState {
	base := presenceStates[u.presence].presenceState
	info := t.st.presence[u.id]
	if info == nil {
		return base
	}
	now := t.now()
	online := base.availability != "Offline"
	var best *presenceState
	if online {
		best = &base
	}
	for _, s := range info.sessions {
		if !now.Before(s.expires) {
			continue
		}
		st := s.presenceState
		if st.availability == "Available" {
			switch idle := now.Sub(s.set); {
			case idle > 10*time.Minute:
				st = presenceState{"Away", "Away"}
			case idle > 5*time.Minute:
				st = presenceState{"AvailableIdle", "Inactive"}
			}
		}
		online = true
		if best == nil || availabilityRank[st.availability] > availabilityRank[best.availability] {
			b := st
			best = &b
		}
	}
	if p := info.preferred; p != nil && now.Before(p.expires) && online {
		return p.presenceState
	}
	if best == nil {
		if base.availability == "Offline" && len(info.sessions) == 0 {
			return base
		}
		return presenceState{"Offline", "Offline"}
	}
	return *best
}

func presenceObj(id string, p presenceState) obj {
	return obj{{"id", id}, {"availability", p.availability}, {"activity", p.activity}, {"statusMessage", nil},
		{"outOfOfficeSettings", obj{{"message", nil}, {"isOutOfOffice", p.activity == "OutOfOffice"}}}}
}

var (
	pPresenceRead  = perm{app: []string{"Presence.Read.All", "Presence.ReadWrite.All"}, del: []string{"Presence.Read.All", "Presence.ReadWrite.All"}}
	pPresenceMe    = perm{del: []string{"Presence.Read", "Presence.Read.All", "Presence.ReadWrite", "Presence.ReadWrite.All"}, meOnly: true}
	pPresenceWrite = perm{app: []string{"Presence.ReadWrite.All"}, del: []string{"Presence.ReadWrite", "Presence.ReadWrite.All"}}
)

func (t *Tenant) presenceRoutes() {
	t.route("GET /v1.0/users/{id}/presence", pPresenceRead, t.getPresence)
	t.route("GET /v1.0/communications/presences/{id}", pPresenceRead, t.getPresence)
	t.route("GET /v1.0/me/presence", pPresenceMe, t.getPresence)
	t.route("POST /v1.0/communications/getPresencesByUserId", pPresenceRead, t.getPresences)
	for _, pre := range []string{"/v1.0/users/{id}/presence", "/v1.0/me/presence"} {
		p := pPresenceWrite
		if strings.HasPrefix(pre, "/v1.0/me") {
			p.meOnly = true
		}
		t.route("POST "+pre+"/setPresence", p, t.setPresence)
		t.route("POST "+pre+"/clearPresence", p, t.clearPresence)
		t.route("POST "+pre+"/setUserPreferredPresence", p, t.setPreferred)
		t.route("POST "+pre+"/clearUserPreferredPresence", p, t.clearPreferred)
	}
}

func (t *Tenant) getPresence(w http.ResponseWriter, r *http.Request) {
	key := userKey(r)
	t.st.mu.RLock()
	u := t.st.userByID[key] // presence is addressed by object id only
	if u == nil || u.deleted {
		t.st.mu.RUnlock()
		t.fail(w, r, &gerr{http.StatusNotFound, "NotFound", fmt.Sprintf("User %s was not found.", key)})
		return
	}
	p := t.effectivePresence(u)
	t.st.mu.RUnlock()
	o := append(obj{{"@odata.context", t.baseURL(r) + "/v1.0/$metadata#users('" + u.id + "')/presence/$entity"}}, presenceObj(u.id, p)...)
	writeJSON(w, http.StatusOK, o)
}

func (t *Tenant) getPresences(w http.ResponseWriter, r *http.Request) {
	var body struct {
		IDs []string `json:"ids"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		t.fail(w, r, badRequest("BadRequest", "Unable to read JSON request payload."))
		return
	}
	if len(body.IDs) == 0 || len(body.IDs) > 650 {
		t.fail(w, r, badRequest("BadRequest", "The number of ids must be between 1 and 650 (got %d).", len(body.IDs)))
		return
	}
	var items []any
	t.st.mu.RLock()
	for _, id := range body.IDs {
		if u := t.st.userByID[id]; u != nil && !u.deleted {
			items = append(items, presenceObj(u.id, t.effectivePresence(u)))
		}
	}
	t.st.mu.RUnlock()
	if items == nil {
		items = []any{}
	}
	writeJSON(w, http.StatusOK, obj{{"@odata.context", t.baseURL(r) + "/v1.0/$metadata#Collection(microsoft.graph.presence)"}, {"value", items}})
}

var durRE = regexp.MustCompile(`^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$`)

// parseDuration parses the ISO 8601 durations Graph uses (PT5M, PT1H, P1D).
func parseDuration(s string) (time.Duration, bool) {
	m := durRE.FindStringSubmatch(strings.ToUpper(s))
	if m == nil || s == "P" || s == "PT" {
		return 0, false
	}
	units := []time.Duration{24 * time.Hour, time.Hour, time.Minute, time.Second}
	var d time.Duration
	for i, u := range units {
		if m[i+1] != "" {
			n, _ := strconv.Atoi(m[i+1])
			d += time.Duration(n) * u
		}
	}
	return d, true
}

type presenceBody struct {
	SessionID          string `json:"sessionId"`
	Availability       string `json:"availability"`
	Activity           string `json:"activity"`
	ExpirationDuration string `json:"expirationDuration"`
}

var (
	sessionPairs   = map[string]bool{"Available/Available": true, "Busy/InACall": true, "Busy/InAConferenceCall": true, "Away/Away": true, "DoNotDisturb/Presenting": true}
	preferredPairs = map[string]bool{"Available/Available": true, "Busy/Busy": true, "DoNotDisturb/DoNotDisturb": true, "BeRightBack/BeRightBack": true, "Away/Away": true, "Offline/OffWork": true}
)

// changePresence runs f on the user's presence info under the write lock and sends
// notifications when the effective presence changed.
func (t *Tenant) changePresence(w http.ResponseWriter, r *http.Request, f func(u *user, info *presenceInfo) *gerr) {
	key := userKey(r)
	t.st.mu.Lock()
	u := t.st.userByID[key]
	if u == nil || u.deleted {
		t.st.mu.Unlock()
		t.fail(w, r, &gerr{http.StatusNotFound, "NotFound", fmt.Sprintf("User %s was not found.", key)})
		return
	}
	before := t.effectivePresence(u)
	info := t.st.presence[u.id]
	if info == nil {
		info = &presenceInfo{sessions: map[string]*presenceSession{}}
		t.st.presence[u.id] = info
	}
	if e := f(u, info); e != nil {
		t.st.mu.Unlock()
		t.fail(w, r, e)
		return
	}
	after := t.effectivePresence(u)
	t.st.mu.Unlock()
	if before != after {
		t.hooks.presenceChanged(u.id, after)
	}
	w.WriteHeader(http.StatusOK)
}

func decodePresence(r *http.Request) (presenceBody, *gerr) {
	var b presenceBody
	if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
		return b, badRequest("BadRequest", "Unable to read JSON request payload.")
	}
	return b, nil
}

func (t *Tenant) setPresence(w http.ResponseWriter, r *http.Request) {
	b, e := decodePresence(r)
	if e != nil {
		t.fail(w, r, e)
		return
	}
	c := claimsOf(r)
	if b.SessionID == "" || !strings.EqualFold(b.SessionID, c.AppID) {
		t.fail(w, r, badRequest("BadRequest", "The sessionId must be the application ID of the caller."))
		return
	}
	if !sessionPairs[b.Availability+"/"+b.Activity] {
		t.fail(w, r, badRequest("BadRequest", "The presence pair %s/%s is not supported.", b.Availability, b.Activity))
		return
	}
	d := 5 * time.Minute
	if b.ExpirationDuration != "" {
		var ok bool
		d, ok = parseDuration(b.ExpirationDuration)
		if !ok || d < 5*time.Minute || d > 4*time.Hour {
			t.fail(w, r, badRequest("BadRequest", "expirationDuration must be between PT5M and PT4H."))
			return
		}
	}
	now := t.now()
	t.changePresence(w, r, func(u *user, info *presenceInfo) *gerr {
		info.sessions[strings.ToLower(b.SessionID)] = &presenceSession{presenceState{b.Availability, b.Activity}, now, now.Add(d)}
		return nil
	})
}

func (t *Tenant) clearPresence(w http.ResponseWriter, r *http.Request) {
	b, e := decodePresence(r)
	if e != nil {
		t.fail(w, r, e)
		return
	}
	t.changePresence(w, r, func(u *user, info *presenceInfo) *gerr {
		k := strings.ToLower(b.SessionID)
		if _, ok := info.sessions[k]; !ok {
			return &gerr{http.StatusNotFound, "NotFound", "The presence session does not exist."}
		}
		delete(info.sessions, k)
		return nil
	})
}

func (t *Tenant) setPreferred(w http.ResponseWriter, r *http.Request) {
	b, e := decodePresence(r)
	if e != nil {
		t.fail(w, r, e)
		return
	}
	if !preferredPairs[b.Availability+"/"+b.Activity] {
		t.fail(w, r, badRequest("BadRequest", "The presence pair %s/%s is not supported.", b.Availability, b.Activity))
		return
	}
	d := 7 * 24 * time.Hour
	if b.Availability == "Busy" || b.Availability == "DoNotDisturb" {
		d = 24 * time.Hour
	}
	if b.ExpirationDuration != "" {
		var ok bool
		if d, ok = parseDuration(b.ExpirationDuration); !ok || d <= 0 {
			t.fail(w, r, badRequest("BadRequest", "Invalid expirationDuration."))
			return
		}
	}
	now := t.now()
	t.changePresence(w, r, func(u *user, info *presenceInfo) *gerr {
		info.preferred = &presenceSession{presenceState{b.Availability, b.Activity}, now, now.Add(d)}
		return nil
	})
}

func (t *Tenant) clearPreferred(w http.ResponseWriter, r *http.Request) {
	t.changePresence(w, r, func(u *user, info *presenceInfo) *gerr {
		info.preferred = nil
		return nil
	})
}

// Presence returns a user's effective availability and activity.
func (t *Tenant) Presence(userID string) (availability, activity string, ok bool) {
	t.st.mu.RLock()
	defer t.st.mu.RUnlock()
	u := t.st.userByID[userID]
	if u == nil || u.deleted {
		return "", "", false
	}
	p := t.effectivePresence(u)
	return p.availability, p.activity, true
}

// SetTeamsPresence sets the state of the user's (simulated) Teams client session, as if the
// user changed it in Teams; "Offline" availability means no Teams session. Subscribers are
// notified when the effective presence changes.
func (t *Tenant) SetTeamsPresence(userID, availability, activity string) error {
	t.st.mu.Lock()
	u := t.st.userByID[userID]
	if u == nil || u.deleted {
		t.st.mu.Unlock()
		return fmt.Errorf("sim: user %s not found", userID)
	}
	idx := -1
	for i, p := range presenceStates {
		if strings.EqualFold(p.availability, availability) && strings.EqualFold(p.activity, activity) {
			idx = i
		}
	}
	if idx < 0 {
		t.st.mu.Unlock()
		return fmt.Errorf("sim: unsupported presence %s/%s", availability, activity)
	}
	before := t.effectivePresence(u)
	u.presence = uint8(idx)
	after := t.effectivePresence(u)
	t.st.mu.Unlock()
	if before != after {
		t.hooks.presenceChanged(u.id, after)
	}
	return nil
}
