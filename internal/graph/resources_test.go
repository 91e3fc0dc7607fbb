package graph

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestGetPresencesByUserIDChunks650(t *testing.T) {
	f := newFakeTenant(t)
	var sizes []int
	f.mux.HandleFunc("POST /v1.0/communications/getPresencesByUserId", func(w http.ResponseWriter, r *http.Request) {
		var body struct{ IDs []string }
		json.NewDecoder(r.Body).Decode(&body)
		sizes = append(sizes, len(body.IDs))
		var out []Presence
		for _, id := range body.IDs {
			out = append(out, Presence{ID: id, Availability: "Available", Activity: "Available"})
		}
		writeJSON(w, 200, map[string]any{"value": out})
	})
	c, _ := newTestClient(t, f)
	ids := make([]string, 1301)
	for i := range ids {
		ids[i] = fmt.Sprint("u", i)
	}
	ps, err := c.GetPresencesByUserID(t.Context(), ids)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "sizes", fmt.Sprint(sizes), "[650 650 1]")
	eq(t, "all", len(ps), 1301)
	eq(t, "last", ps[1300].ID, "u1300")
}

func TestPresenceWrites(t *testing.T) {
	f := newFakeTenant(t)
	bodies := map[string]map[string]string{}
	for _, op := range []string{"setPresence", "clearPresence", "setUserPreferredPresence", "clearUserPreferredPresence"} {
		f.mux.HandleFunc("POST /v1.0/users/u1/presence/"+op, func(w http.ResponseWriter, r *http.Request) {
			eq(t, op+" content type", r.Header.Get("Content-Type"), "application/json")
			var b map[string]string
			json.NewDecoder(r.Body).Decode(&b)
			bodies[op] = b
			w.WriteHeader(200)
		})
	}
	c, _ := newTestClient(t, f)
	ctx := t.Context()
	if err := c.SetPresence(ctx, "u1", SetPresenceRequest{Availability: "Busy", Activity: "InACall", Expiration: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if err := c.ClearPresence(ctx, "u1", ""); err != nil {
		t.Fatal(err)
	}
	if err := c.SetUserPreferredPresence(ctx, "u1", "DoNotDisturb", "DoNotDisturb", 8*time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := c.ClearUserPreferredPresence(ctx, "u1"); err != nil {
		t.Fatal(err)
	}
	eq(t, "set", fmt.Sprint(bodies["setPresence"]), "map[activity:InACall availability:Busy expirationDuration:PT1H sessionId:client-1]")
	eq(t, "clear", bodies["clearPresence"]["sessionId"], testClient)
	eq(t, "preferred", bodies["setUserPreferredPresence"]["expirationDuration"], "PT8H")
	eq(t, "clear preferred", len(bodies["clearUserPreferredPresence"]), 0)
}

func TestSubscriptions(t *testing.T) {
	f := newFakeTenant(t)
	f.mux.HandleFunc("POST /v1.0/subscriptions", func(w http.ResponseWriter, r *http.Request) {
		var s Subscription
		json.NewDecoder(r.Body).Decode(&s)
		if s.Resource == "dup" {
			graphError(w, 409, "ExtensionError", "Subscription Id <x> already exists for the requesting application.")
			return
		}
		s.ID = "sub-1"
		writeJSON(w, 201, s)
	})
	f.mux.HandleFunc("PATCH /v1.0/subscriptions/sub-1", func(w http.ResponseWriter, r *http.Request) {
		var b map[string]string
		json.NewDecoder(r.Body).Decode(&b)
		writeJSON(w, 200, map[string]string{"id": "sub-1", "expirationDateTime": b["expirationDateTime"]})
	})
	f.mux.HandleFunc("DELETE /v1.0/subscriptions/sub-1", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	f.mux.HandleFunc("DELETE /v1.0/subscriptions/gone", func(w http.ResponseWriter, r *http.Request) {
		graphError(w, 404, "ResourceNotFound", "no such subscription")
	})
	c, _ := newTestClient(t, f)
	exp := time.Date(2026, 1, 20, 11, 0, 0, 0, time.UTC)
	s, err := c.CreateSubscription(t.Context(), Subscription{ChangeType: "updated,deleted", Resource: "users",
		NotificationURL: "https://pbx.example.com/graph/notify", ClientState: "cs", ExpirationDateTime: NewDateTime(exp)})
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "id", s.ID, "sub-1")
	eq(t, "expiry round trip", s.ExpirationDateTime.Time, exp)
	eq(t, "clientState", s.ClientState, "cs")
	_, err = c.CreateSubscription(t.Context(), Subscription{Resource: "dup"})
	if !errors.Is(err, ErrConflict) {
		t.Errorf("err = %v", err)
	}
	r, err := c.RenewSubscription(t.Context(), "sub-1", exp.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "renewed", r.ExpirationDateTime.Time, exp.Add(24*time.Hour))
	if err := c.DeleteSubscription(t.Context(), "sub-1"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteSubscription(t.Context(), "gone"); !errors.Is(err, ErrNotFound) {
		t.Errorf("err = %v", err)
	}
}

func TestContactsPaths(t *testing.T) {
	f := newFakeTenant(t)
	f.mux.HandleFunc("GET /v1.0/users/{uid}/contacts", func(w http.ResponseWriter, r *http.Request) {
		eq(t, "Prefer", r.Header.Get("Prefer"), "odata.maxpagesize=50")
		writeJSON(w, 200, map[string]any{"value": []any{map[string]any{"id": "c1", "emailAddresses": []any{map[string]string{"name": "A", "address": "a@x"}}}}})
	})
	f.mux.HandleFunc("GET /v1.0/users/{uid}/contactFolders/{fid}/contacts", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"value": []any{map[string]any{"id": "c2", "parentFolderId": r.PathValue("fid")}}})
	})
	f.mux.HandleFunc("GET /v1.0/users/{uid}/contactFolders", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"value": []any{map[string]any{"id": "f1", "displayName": "Team"}}})
	})
	f.mux.HandleFunc("GET /v1.0/users/{uid}/contactFolders/{fid}/childFolders", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"value": []any{map[string]any{"id": "f2", "parentFolderId": r.PathValue("fid")}}})
	})
	c, _ := newTestClient(t, f)
	ctx := t.Context()
	for ct, err := range c.ListContacts(ctx, "shared@contoso.com", "", ListOptions{MaxPageSize: 50}) {
		if err != nil {
			t.Fatal(err)
		}
		eq(t, "email", ct.PrimaryEmail(), "a@x")
	}
	for ct, err := range c.ListContacts(ctx, "u1", "f/1", ListOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		eq(t, "folder escaped and routed", ct.ParentFolderID, "f/1")
	}
	for fo, err := range c.ListContactFolders(ctx, "u1", "", ListOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		eq(t, "folder", fo.DisplayName, "Team")
	}
	for fo, err := range c.ListContactFolders(ctx, "u1", "f1", ListOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		eq(t, "child", fo.ParentFolderID, "f1")
	}
}

func TestCountUsers(t *testing.T) {
	f := newFakeTenant(t)
	f.mux.HandleFunc("GET /v1.0/users/$count", func(w http.ResponseWriter, r *http.Request) {
		eq(t, "ConsistencyLevel", r.Header.Get("ConsistencyLevel"), "eventual")
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, "893")
	})
	c, _ := newTestClient(t, f)
	n, err := c.CountUsers(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "count", n, 893)
}

func TestDateTimeLenient(t *testing.T) {
	for in, want := range map[string]time.Time{
		`"2016-11-20T18:23:45.9356913Z"`: time.Date(2016, 11, 20, 18, 23, 45, 935691300, time.UTC),
		`"2016-01-09 02:02:12Z"`:         time.Date(2016, 1, 9, 2, 2, 12, 0, time.UTC),
		`"2021-03-12"`:                   time.Date(2021, 3, 12, 0, 0, 0, 0, time.UTC),
		`"datetime-value"`:               {},
		`null`:                           {},
		`12`:                             {},
	} {
		var d DateTime
		if err := json.Unmarshal([]byte(in), &d); err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if !d.Time.Equal(want) {
			t.Errorf("%s -> %v, want %v", in, d.Time, want)
		}
	}
	b, _ := json.Marshal(struct {
		A DateTime `json:"a"`
		B DateTime `json:"b,omitzero"`
	}{A: NewDateTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))})
	eq(t, "marshal", string(b), `{"a":"2026-01-02T03:04:05Z"}`)
}

func TestUserPropertyAndTolerance(t *testing.T) {
	// jobTitle has an unexpected type; the rest must still decode.
	raw := `{"id":"u1","jobTitle":42,"accountEnabled":false,"businessPhones":["+1 1","+1 2"],
		"onPremisesExtensionAttributes":{"extensionAttribute7":"4711","extensionAttribute8":null},
		"extension_abc_costCenter":"CC-9","employeeHireDate":"datetime-value","otherMails":[]}`
	var u User
	if err := json.Unmarshal([]byte(raw), &u); err != nil {
		t.Fatal(err)
	}
	eq(t, "id", u.ID, "u1")
	eq(t, "enabled", u.Enabled(), false)
	prop(t, u, "accountEnabled", "false")
	prop(t, u, "extensionAttribute7", "4711")
	prop(t, u, "onPremisesExtensionAttributes.extensionAttribute7", "4711")
	prop(t, u, "extensionAttribute8", "")
	prop(t, u, "extension_abc_costCenter", "CC-9")
	prop(t, u, "businessPhones", "+1 1")
	prop(t, u, "jobTitle", "")
	prop(t, u, "otherMails", "")
	prop(t, u, "employeeHireDate", "datetime-value")
	prop(t, u, "nope", "")
	// Hand-built users (no raw JSON) still answer for modelled fields.
	prop(t, User{Department: "Sales"}, "department", "Sales")
	b, _ := json.Marshal(User{ID: "x", AccountEnabled: new(true)})
	eq(t, "marshal", string(b), `{"id":"x","accountEnabled":true}`)
}

func TestISODuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		5 * time.Minute: "PT5M", time.Hour: "PT1H", 90 * time.Minute: "PT1H30M", 4*time.Hour + 5*time.Second: "PT4H5S", 0: "PT0S",
	} {
		eq(t, d.String(), ISODuration(d), want)
	}
}

func TestErrorText(t *testing.T) {
	e := parseGraphError(403, http.Header{"Request-Id": {"r1"}}, []byte(`{"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges to complete the operation."}}`), time.Now())
	e.Method, e.Path = "GET", "/v1.0/users"
	eq(t, "text", e.Error(), "graph: GET /v1.0/users: 403 Authorization_RequestDenied: Insufficient privileges to complete the operation. (request-id r1)")
	if !strings.Contains(Hint(e), "admin consent") {
		t.Errorf("hint = %q", Hint(e))
	}
	e = parseGraphError(502, nil, []byte("<html>proxy</html>"), time.Now())
	eq(t, "non-json body", e.Message, "<html>proxy</html>")
	eq(t, "http date", parseRetryAfter("Wed, 21 Oct 2015 07:28:10 GMT", time.Date(2015, 10, 21, 7, 28, 0, 0, time.UTC)), 10*time.Second)
}
