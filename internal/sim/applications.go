package sim

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"regexp"
	"time"
)

func (t *Tenant) applicationRoutes() {
	p := perm{app: []string{"Application.Read.All", "Application.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"},
		del: []string{"Application.Read.All", "Directory.Read.All"}}
	t.route("GET /v1.0/applications", p, t.applications)
}

var appIDFilter = regexp.MustCompile(`^\s*appId\s+eq\s+'([^']*)'\s*$`)

// applications answers GET /applications: the tenant's one app registration,
// with its password credentials' dates (never the secret text), as an app
// uses it to warn before its client secret expires.
func (t *Tenant) applications(w http.ResponseWriter, r *http.Request) {
	app, ok := t.idp.App(t.cfg.ClientID)
	if !ok {
		t.graphError(w, r, http.StatusInternalServerError, "generalException", "the app registration is missing")
		return
	}
	if f := r.URL.Query().Get("$filter"); f != "" {
		m := appIDFilter.FindStringSubmatch(f)
		if m == nil {
			t.graphError(w, r, http.StatusBadRequest, "Request_UnsupportedQuery", "Unsupported query: only appId eq '...' is supported here.")
			return
		}
		if m[1] != app.ClientID {
			writeJSON(w, http.StatusOK, obj{{"@odata.context", t.baseURL(r) + "/v1.0/$metadata#applications"}, {"value", []any{}}})
			return
		}
	}
	var creds []any
	for _, s := range app.Secrets {
		sum := sha256.Sum256([]byte(s.Value))
		keyID := fmt.Sprintf("%x-%x-%x-%x-%x", sum[0:4], sum[4:6], sum[6:8], sum[8:10], sum[10:16])
		hint := s.Value
		if len(hint) > 3 {
			hint = hint[:3]
		}
		var end, start any
		if !s.Expires.IsZero() {
			end = s.Expires.UTC().Format(time.RFC3339)
			start = s.Expires.AddDate(-1, 0, 0).UTC().Format(time.RFC3339)
		}
		creds = append(creds, obj{{"customKeyIdentifier", nil}, {"displayName", "Switchboard"}, {"endDateTime", end},
			{"hint", hint}, {"keyId", keyID}, {"secretText", nil}, {"startDateTime", start}})
	}
	item := obj{{"id", t.cfg.ClientID}, {"appId", app.ClientID}, {"displayName", app.DisplayName}, {"passwordCredentials", creds}}
	writeJSON(w, http.StatusOK, obj{{"@odata.context", t.baseURL(r) + "/v1.0/$metadata#applications"}, {"value", []any{item}}})
}
