package sim

import (
	"encoding/json"
	"net/http"
	"time"
)

// faultsJSON is the wire form of Faults on the admin API.
type faultsJSON struct {
	Throttle          float64  `json:"throttle"`
	RetryAfterSeconds float64  `json:"retryAfterSeconds"`
	Unavailable       float64  `json:"unavailable"`
	Drop              float64  `json:"drop"`
	RealLimits        bool     `json:"realLimits"`
	Routes            []string `json:"routes,omitempty"`
}

func (t *Tenant) adminHandler() http.Handler {
	mux := http.NewServeMux()
	ok := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		if v == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		_ = json.NewEncoder(w).Encode(v)
	}
	bad := func(w http.ResponseWriter, status int, msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": http.StatusText(status), "message": msg}})
	}
	decode := func(w http.ResponseWriter, r *http.Request, v any) bool {
		if err := json.NewDecoder(r.Body).Decode(v); err != nil {
			bad(w, http.StatusBadRequest, "invalid JSON body: "+err.Error())
			return false
		}
		return true
	}
	mux.HandleFunc("GET /sim/info", func(w http.ResponseWriter, r *http.Request) {
		a := t.Admin()
		ok(w, map[string]any{"tenantId": t.cfg.TenantID, "clientId": t.cfg.ClientID, "domain": t.cfg.Domain,
			"admin": a.UserPrincipalName, "adminId": a.ID, "users": t.Users(), "groups": len(t.GroupList()),
			"graphBase": t.baseURL(r) + "/v1.0", "loginBase": t.baseURL(r)})
	})
	mux.HandleFunc("GET /sim/stats", func(w http.ResponseWriter, r *http.Request) { ok(w, t.Stats()) })
	mux.HandleFunc("POST /sim/stats/reset", func(w http.ResponseWriter, r *http.Request) { t.ResetStats(); ok(w, nil) })
	mux.HandleFunc("GET /sim/faults", func(w http.ResponseWriter, r *http.Request) {
		f := t.Faults()
		ok(w, faultsJSON{f.Throttle, f.RetryAfter.Seconds(), f.Unavailable, f.Drop, f.RealLimits, f.Routes})
	})
	mux.HandleFunc("PUT /sim/faults", func(w http.ResponseWriter, r *http.Request) {
		var f faultsJSON
		if !decode(w, r, &f) {
			return
		}
		for _, p := range []float64{f.Throttle, f.Unavailable, f.Drop} {
			if p < 0 || p > 1 {
				bad(w, http.StatusBadRequest, "shares must be between 0 and 1")
				return
			}
		}
		t.SetFaults(Faults{Throttle: f.Throttle, RetryAfter: time.Duration(f.RetryAfterSeconds * float64(time.Second)),
			Unavailable: f.Unavailable, Drop: f.Drop, RealLimits: f.RealLimits, Routes: f.Routes})
		ok(w, nil)
	})
	mux.HandleFunc("POST /sim/delta/expire", func(w http.ResponseWriter, r *http.Request) { t.ExpireDeltaTokens(); ok(w, nil) })
	mux.HandleFunc("PUT /sim/delta/ttl", func(w http.ResponseWriter, r *http.Request) {
		var b struct {
			Seconds float64 `json:"seconds"`
		}
		if !decode(w, r, &b) {
			return
		}
		t.SetDeltaTokenTTL(time.Duration(b.Seconds * float64(time.Second)))
		ok(w, nil)
	})
	mux.HandleFunc("GET /sim/subscriptions", func(w http.ResponseWriter, r *http.Request) {
		type sub struct {
			ID                       string    `json:"id"`
			Resource                 string    `json:"resource"`
			ChangeType               string    `json:"changeType"`
			NotificationURL          string    `json:"notificationUrl"`
			LifecycleNotificationURL string    `json:"lifecycleNotificationUrl,omitempty"`
			ExpirationDateTime       time.Time `json:"expirationDateTime"`
		}
		out := []sub{}
		for _, s := range t.Subscriptions() {
			out = append(out, sub{s.ID, s.Resource, s.ChangeType, s.NotificationURL, s.LifecycleNotificationURL, s.Expires})
		}
		ok(w, map[string]any{"value": out})
	})
	mux.HandleFunc("POST /sim/subscriptions/{id}/lifecycle", func(w http.ResponseWriter, r *http.Request) {
		var b struct {
			Event string `json:"event"`
		}
		if !decode(w, r, &b) {
			return
		}
		if err := t.TriggerLifecycle(r.PathValue("id"), b.Event); err != nil {
			bad(w, http.StatusBadRequest, err.Error())
			return
		}
		ok(w, nil)
	})
	mux.HandleFunc("POST /sim/app/secret/expire", func(w http.ResponseWriter, r *http.Request) {
		if err := t.ExpireClientSecret(); err != nil {
			bad(w, http.StatusInternalServerError, err.Error())
			return
		}
		ok(w, nil)
	})
	mux.HandleFunc("POST /sim/app/secrets", func(w http.ResponseWriter, r *http.Request) {
		var b struct {
			Value           string  `json:"value"`
			ValidForSeconds float64 `json:"validForSeconds"`
		}
		if !decode(w, r, &b) {
			return
		}
		if b.Value == "" {
			bad(w, http.StatusBadRequest, "value is required")
			return
		}
		d := time.Duration(b.ValidForSeconds * float64(time.Second))
		if d <= 0 {
			d = 365 * 24 * time.Hour
		}
		if err := t.AddClientSecret(b.Value, d); err != nil {
			bad(w, http.StatusInternalServerError, err.Error())
			return
		}
		ok(w, nil)
	})
	mux.HandleFunc("POST /sim/app/redirect-uris", func(w http.ResponseWriter, r *http.Request) {
		var b struct {
			URI string `json:"uri"`
		}
		if !decode(w, r, &b) {
			return
		}
		if err := t.AddRedirectURI(b.URI); err != nil {
			bad(w, http.StatusInternalServerError, err.Error())
			return
		}
		ok(w, nil)
	})
	mux.HandleFunc("PUT /sim/app/roles", func(w http.ResponseWriter, r *http.Request) {
		var b struct {
			Roles []string `json:"roles"`
		}
		if !decode(w, r, &b) {
			return
		}
		if err := t.SetAppRoles(b.Roles); err != nil {
			bad(w, http.StatusInternalServerError, err.Error())
			return
		}
		ok(w, nil)
	})
	mux.HandleFunc("GET /sim/mailboxes", func(w http.ResponseWriter, r *http.Request) {
		list := t.SharedMailboxes()
		if list == nil {
			list = []SharedMailbox{}
		}
		ok(w, map[string]any{"value": list})
	})
	mux.HandleFunc("PUT /sim/users/{id}/presence", func(w http.ResponseWriter, r *http.Request) {
		var b struct {
			Availability string `json:"availability"`
			Activity     string `json:"activity"`
		}
		if !decode(w, r, &b) {
			return
		}
		if err := t.SetTeamsPresence(r.PathValue("id"), b.Availability, b.Activity); err != nil {
			bad(w, http.StatusBadRequest, err.Error())
			return
		}
		ok(w, nil)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.stats.add("admin " + r.Method + " " + r.URL.Path)
		mux.ServeHTTP(w, r)
	})
}
