package sim

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

func errCode(t *testing.T, r resp) string {
	t.Helper()
	e, _ := r.json(t)["error"].(map[string]any)
	inner, _ := e["innerError"].(map[string]any)
	if inner["request-id"] == nil || inner["date"] == nil || inner["client-request-id"] == nil {
		t.Fatalf("error without innerError ids: %s", r.body)
	}
	return e["code"].(string)
}

// testWriter sends log lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func TestAuthAndPermissions(t *testing.T) {
	b := newBundle(t, func(c *Config) {
		c.Users = 30
		c.Groups = 4
		c.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	u := b.ten.UserList()[3]
	cases := []struct {
		name, method, url, token string
		body                     any
		status                   int
		code                     string
	}{
		{"no token", "GET", "/v1.0/users", "", nil, 401, "InvalidAuthenticationToken"},
		{"bad token", "GET", "/v1.0/users", "garbage", nil, 401, "InvalidAuthenticationToken"},
		{"expired", "GET", "/v1.0/users", "expired", nil, 401, "InvalidAuthenticationToken"},
		{"no role", "GET", "/v1.0/users", "app:Group.Read.All", nil, 403, "Authorization_RequestDenied"},
		{"read-only cannot write", "PATCH", "/v1.0/users/" + u.ID, "app:User.Read.All", map[string]any{"jobTitle": "x"}, 403, "Authorization_RequestDenied"},
		{"groups need group role", "GET", "/v1.0/groups", "app:User.Read.All", nil, 403, "Authorization_RequestDenied"},
		{"contacts need Contacts.Read", "GET", "/v1.0/users/" + u.ID + "/contacts", "app:User.Read.All", nil, 403, "Authorization_RequestDenied"},
		{"presence write needs ReadWrite", "POST", "/v1.0/users/" + u.ID + "/presence/setPresence", "app:Presence.Read.All", map[string]any{"sessionId": testClient, "availability": "Busy", "activity": "InACall"}, 403, "Authorization_RequestDenied"},
		{"me with app token", "GET", "/v1.0/me", "app", nil, 400, "BadRequest"},
		{"delegated other mailbox", "GET", "/v1.0/users/" + u.ID + "/contacts", "del:" + b.ten.UserList()[4].ID, nil, 403, "ErrorAccessDenied"},
		{"unknown user", "GET", "/v1.0/users/00000000-0000-0000-0000-000000000000", "app", nil, 404, "Request_ResourceNotFound"},
		{"method not allowed", "PUT", "/v1.0/users", "app", nil, 405, "Request_BadRequest"},
		{"$count needs eventual", "GET", "/v1.0/users?$count=true", "app", nil, 400, "Request_BadRequest"},
		{"ne needs eventual", "GET", "/v1.0/users?$filter=accountEnabled ne true", "app", nil, 400, "Request_UnsupportedQuery"},
		{"search needs eventual", "GET", `/v1.0/users?$search="displayName:a"`, "app", nil, 400, "Request_BadRequest"},
		{"top too big", "GET", "/v1.0/users?$top=1000", "app", nil, 400, "Request_UnsupportedQuery"},
		{"skip unsupported", "GET", "/v1.0/users?$skip=5", "app", nil, 400, "Request_BadRequest"},
		{"unknown select", "GET", "/v1.0/users?$select=nope", "app", nil, 400, "Request_BadRequest"},
		{"mailboxSettings on list", "GET", "/v1.0/users?$select=mailboxSettings", "app", nil, 501, "NotImplemented"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := b.do(c.method, c.url, c.token, c.body)
			mustStatus(t, r, c.status)
			if got := errCode(t, r); got != c.code {
				t.Fatalf("code %q, want %q", got, c.code)
			}
		})
	}
	// Allowed with the least-privileged permission.
	mustStatus(t, b.do("GET", "/v1.0/groups", "app:GroupMember.Read.All", nil), 200)
	mustStatus(t, b.do("GET", "/v1.0/users/"+u.ID+"/presence", "app:Presence.Read.All", nil), 200)
}

func TestQueries(t *testing.T) {
	b := newBundle(t, nil)
	ev := []string{"ConsistencyLevel", "eventual"}
	all := b.ten.UserList()
	count := func(pred func(UserInfo) bool) int {
		n := 0
		for _, u := range all {
			if pred(u) {
				n++
			}
		}
		return n
	}
	total := func(url string, hdr ...string) int {
		n := 0
		for url != "" {
			r := b.get(url, hdr...)
			mustStatus(t, r, 200)
			m := r.json(t)
			n += len(m["value"].([]any))
			url, _ = m["@odata.nextLink"].(string)
		}
		return n
	}
	guests := count(func(u UserInfo) bool { return u.UserType == "Guest" })
	disabled := count(func(u UserInfo) bool { return !u.AccountEnabled })
	if guests == 0 || disabled == 0 {
		t.Fatalf("generated data lacks guests (%d) or disabled users (%d)", guests, disabled)
	}
	if n := total("/v1.0/users?$filter=userType eq 'Guest'&$select=id"); n != guests {
		t.Fatalf("guests: %d, want %d", n, guests)
	}
	if n := total("/v1.0/users?$filter=accountEnabled eq false&$top=5"); n != disabled {
		t.Fatalf("disabled: %d, want %d", n, disabled)
	}
	if n := total("/v1.0/users?$filter=accountEnabled ne true&$count=true", ev...); n != disabled {
		t.Fatalf("ne: %d, want %d", n, disabled)
	}
	ids := fmt.Sprintf("'%s','%s'", all[1].ID, all[2].ID)
	if n := total("/v1.0/users?$filter=id in (" + ids + ")"); n != 2 {
		t.Fatalf("id in: %d", n)
	}
	if n := total("/v1.0/users?$filter=userPrincipalName eq '" + all[0].UserPrincipalName + "'"); n != 1 {
		t.Fatalf("upn eq: %d", n)
	}
	r := b.get("/v1.0/users?$filter=startswith(displayName,'A')&$orderby=displayName&$count=true&$top=3", ev...)
	mustStatus(t, r, 200)
	m := r.json(t)
	if m["@odata.count"].(float64) < 3 {
		t.Fatalf("count %v", m["@odata.count"])
	}
	var names []string
	for _, v := range m["value"].([]any) {
		names = append(names, strings.ToLower(v.(map[string]any)["displayName"].(string)))
	}
	for i := 1; i < len(names); i++ {
		if names[i-1] > names[i] {
			t.Fatalf("not ordered: %v", names)
		}
	}
	// Page 2 of an ordered query carries no @odata.count.
	r = b.get(m["@odata.nextLink"].(string), ev...)
	mustStatus(t, r, 200)
	if _, ok := r.json(t)["@odata.count"]; ok {
		t.Fatal("@odata.count on page 2")
	}
	// $count segment is text/plain.
	r = b.get("/v1.0/users/$count", ev...)
	mustStatus(t, r, 200)
	if r.body == nil || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") || string(r.body) != fmt.Sprint(len(all)) {
		t.Fatalf("$count: %q %s", r.body, r.header.Get("Content-Type"))
	}
	// Guests look like Graph's guests.
	for _, u := range all {
		if u.UserType == "Guest" && !strings.Contains(u.UserPrincipalName, "#EXT#@") {
			t.Fatalf("guest UPN %s", u.UserPrincipalName)
		}
	}
	// Admin is user 0.
	if a := b.ten.Admin(); a.ID != all[0].ID || !strings.HasPrefix(a.UserPrincipalName, "admin@") {
		t.Fatalf("admin %+v", a)
	}
}

func TestDeterminism(t *testing.T) {
	mk := func(seed int64) ([]UserInfo, []GroupInfo, []ContactInfo) {
		b := newBundle(t, func(c *Config) { c.Seed = seed; c.Users = 200; c.Groups = 10 })
		us := b.ten.UserList()
		cs, _ := b.ten.Contacts(us[17].ID)
		return us, b.ten.GroupList(), cs
	}
	u1, g1, c1 := mk(7)
	u2, g2, c2 := mk(7)
	u3, _, _ := mk(8)
	if !reflect.DeepEqual(u1, u2) || !reflect.DeepEqual(g1, g2) || !reflect.DeepEqual(c1, c2) {
		t.Fatal("same seed produced different data")
	}
	if reflect.DeepEqual(u1, u3) {
		t.Fatal("different seeds produced the same data")
	}
	scripts := map[string]bool{}
	for _, u := range u1 {
		for _, r := range u.DisplayName {
			switch {
			case r >= 0x4e00 && r <= 0x9fff:
				scripts["han"] = true
			case r >= 0x0400 && r <= 0x04ff:
				scripts["cyrillic"] = true
			case r >= 0x0600 && r <= 0x06ff:
				scripts["arabic"] = true
			case r > 0x7f && r < 0x250:
				scripts["latin-accents"] = true
			}
		}
	}
	if len(scripts) < 4 {
		t.Fatalf("scripts %v", scripts)
	}
}

func TestBatch(t *testing.T) {
	b := newBundle(t, func(c *Config) { c.Users = 30; c.Groups = 4 })
	u := b.ten.UserList()[2]
	req := map[string]any{"requests": []any{
		map[string]any{"id": "a", "method": "GET", "url": "/users/" + u.ID},
		map[string]any{"id": "b", "method": "GET", "url": "/users/11111111-2222-3333-4444-555555555555"},
		map[string]any{"id": "c", "method": "PATCH", "url": "/users/" + u.ID, "body": map[string]any{"jobTitle": "Batched"}, "headers": map[string]string{"Content-Type": "application/json"}, "dependsOn": []string{"a"}},
		map[string]any{"id": "d", "method": "GET", "url": "/users/" + u.ID + "?$select=jobTitle", "dependsOn": []string{"b"}},
	}}
	r := b.do("POST", "/v1.0/$batch", "app", req)
	mustStatus(t, r, 200)
	var got struct {
		Responses []struct {
			ID      string
			Status  int
			Headers map[string]string
			Body    json.RawMessage
		}
	}
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"a": 200, "b": 404, "c": 204, "d": 424}
	for _, x := range got.Responses {
		if x.Status != want[x.ID] {
			t.Fatalf("%s: status %d, want %d: %s", x.ID, x.Status, want[x.ID], x.Body)
		}
	}
	if info, _ := b.ten.User(u.ID); info.JobTitle != "Batched" {
		t.Fatalf("PATCH in batch not applied: %q", info.JobTitle)
	}
	var reqs []any
	for i := range 21 {
		reqs = append(reqs, map[string]any{"id": fmt.Sprint(i), "method": "GET", "url": "/users"})
	}
	mustStatus(t, b.do("POST", "/v1.0/$batch", "app", map[string]any{"requests": reqs}), 400)
	dup := map[string]any{"requests": []any{map[string]any{"id": "x", "method": "GET", "url": "/users"}, map[string]any{"id": "X", "method": "GET", "url": "/users"}}}
	mustStatus(t, b.do("POST", "/v1.0/$batch", "app", dup), 400)
	// Stats count the inner requests by route.
	if s := b.ten.Stats(); s.ByEndpoint["GET /v1.0/users/{id}"] < 2 || s.ByEndpoint["POST /v1.0/$batch"] != 3 {
		t.Fatalf("stats %v", s.ByEndpoint)
	}
}

func TestFaults(t *testing.T) {
	b := newBundle(t, func(c *Config) {
		c.Users = 30
		c.Groups = 4
		c.Faults = Faults{Throttle: 1, RetryAfter: 3 * time.Second}
	})
	r := b.get("/v1.0/users")
	mustStatus(t, r, 429)
	if r.header.Get("Retry-After") != "3" {
		t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
	}
	e := r.json(t)["error"].(map[string]any)
	if e["code"] != "TooManyRequests" || e["innerError"].(map[string]any)["status"] != "429" {
		t.Fatalf("429 body %s", r.body)
	}
	// Inside a batch the item is throttled, the batch is 200.
	b.ten.SetFaults(Faults{Throttle: 1, Routes: []string{"GET /v1.0/users"}})
	r = b.do("POST", "/v1.0/$batch", "app", map[string]any{"requests": []any{map[string]any{"id": "1", "method": "GET", "url": "/users"}}})
	mustStatus(t, r, 200)
	if !strings.Contains(string(r.body), `"status":429`) || !strings.Contains(string(r.body), `"Retry-After":"2"`) {
		t.Fatalf("batch: %s", r.body)
	}
	b.ten.SetFaults(Faults{Unavailable: 1})
	mustStatus(t, b.get("/v1.0/groups"), 503)
	b.ten.SetFaults(Faults{Drop: 1})
	req, _ := http.NewRequestWithContext(t.Context(), "GET", b.srv.URL+"/v1.0/users", nil)
	req.Header.Set("Authorization", "Bearer app")
	if res, err := b.srv.Client().Do(req); err == nil {
		res.Body.Close()
		t.Fatalf("dropped connection answered %d", res.StatusCode)
	}
	b.ten.SetFaults(Faults{})
	mustStatus(t, b.get("/v1.0/users"), 200)
	s := b.ten.Stats()
	if s.ByEndpoint["fault 429"] != 2 || s.ByEndpoint["fault 503"] != 1 || s.ByEndpoint["fault drop"] < 1 { // net/http retries an idempotent request once
		t.Fatalf("stats %v", s.ByEndpoint)
	}
}

func TestRealLimits(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	b := newBundle(t, func(c *Config) {
		c.Users = 30 // small tenant: 3,500 resource units per 10 s
		c.Groups = 2
		c.Now = func() time.Time { return now }
		c.Faults = Faults{RealLimits: true}
	})
	n := 0
	var r resp
	for n = 0; n < 2000; n++ {
		r = b.get("/v1.0/users") // costs 2
		if r.status == 429 {
			break
		}
	}
	if n != 1750 {
		t.Fatalf("throttled after %d requests, want 1750", n)
	}
	if r.header.Get("Retry-After") == "" || !strings.HasPrefix(r.header.Get("x-ms-throttle-scope"), "Tenant_Application/") {
		t.Fatalf("headers %v", r.header)
	}
	now = now.Add(10 * time.Second)
	mustStatus(t, b.get("/v1.0/users"), 200)
}

func TestAdminAPI(t *testing.T) {
	b := newBundle(t, func(c *Config) { c.Users = 120; c.Groups = 4 })
	r := b.do("GET", "/sim/mailboxes", "", nil)
	mustStatus(t, r, 200)
	var mb struct{ Value []SharedMailbox }
	_ = json.Unmarshal(r.body, &mb)
	if len(mb.Value) < 2 || mb.Value[0].Contacts == 0 {
		t.Fatalf("mailboxes %s", r.body)
	}
	// A shared mailbox: disabled member account, mailboxSettings.userPurpose shared.
	r = b.get("/v1.0/users/" + mb.Value[0].ID + "/mailboxSettings")
	mustStatus(t, r, 200)
	if r.json(t)["userPurpose"] != "shared" {
		t.Fatalf("mailboxSettings %s", r.body)
	}
	r = b.get("/v1.0/users/" + mb.Value[0].ID + "?$select=accountEnabled,userType")
	if m := r.json(t); m["accountEnabled"] != false || m["userType"] != "Member" {
		t.Fatalf("shared mailbox user %s", r.body)
	}
	mustStatus(t, b.do("PUT", "/sim/faults", "", map[string]any{"throttle": 1, "retryAfterSeconds": 7}), 204)
	if r := b.get("/v1.0/users"); r.status != 429 || r.header.Get("Retry-After") != "7" {
		t.Fatalf("admin faults not applied: %d", r.status)
	}
	mustStatus(t, b.do("PUT", "/sim/faults", "", map[string]any{}), 204)
	r = b.do("GET", "/sim/stats", "", nil)
	mustStatus(t, r, 200)
	var st Stats
	_ = json.Unmarshal(r.body, &st)
	graphCalls := st.ByEndpoint["GET /v1.0/users"] + st.ByEndpoint["GET /v1.0/users/{id}"] + st.ByEndpoint["GET /v1.0/users/{id}/mailboxSettings"]
	if graphCalls != 3 || st.Total != graphCalls+st.ByEndpoint["POST /{tenant}/oauth2/v2.0/token"] {
		t.Fatalf("stats %s", r.body)
	}
	mustStatus(t, b.do("POST", "/sim/stats/reset", "", nil), 204)
	if b.ten.Stats().Total != 0 {
		t.Fatal("reset")
	}
	_, link := deltaRound(t, b, "/v1.0/groups/delta")
	mustStatus(t, b.do("POST", "/sim/delta/expire", "", nil), 204)
	mustStatus(t, b.get(link), 410)
	mustStatus(t, b.do("PUT", "/sim/users/"+b.ten.UserList()[5].ID+"/presence", "", map[string]string{"availability": "Busy", "activity": "InAMeeting"}), 204)
	if av, ac, _ := b.ten.Presence(b.ten.UserList()[5].ID); av != "Busy" || ac != "InAMeeting" {
		t.Fatalf("presence %s/%s", av, ac)
	}
}

func TestPresenceAggregation(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	b := newBundle(t, func(c *Config) { c.Users = 10; c.Groups = 1; c.Now = func() time.Time { return now } })
	id := b.ten.UserList()[3].ID
	get := func() string {
		av, ac, _ := b.ten.Presence(id)
		return av + "/" + ac
	}
	post := func(action string, body any, status int) {
		t.Helper()
		mustStatus(t, b.do("POST", "/v1.0/users/"+id+"/presence/"+action, "app", body), status)
	}
	if err := b.ten.SetTeamsPresence(id, "Offline", "Offline"); err != nil {
		t.Fatal(err)
	}
	// Preferred presence needs a session.
	post("setUserPreferredPresence", map[string]any{"availability": "DoNotDisturb", "activity": "DoNotDisturb"}, 200)
	if got := get(); got != "Offline/Offline" {
		t.Fatalf("preferred without session: %s", got)
	}
	post("setPresence", map[string]any{"sessionId": testClient, "availability": "Busy", "activity": "InACall", "expirationDuration": "PT1H"}, 200)
	if got := get(); got != "DoNotDisturb/DoNotDisturb" {
		t.Fatalf("preferred with session: %s", got)
	}
	post("clearUserPreferredPresence", map[string]any{}, 200)
	if got := get(); got != "Busy/InACall" {
		t.Fatalf("session: %s", got)
	}
	if err := b.ten.SetTeamsPresence(id, "DoNotDisturb", "Presenting"); err != nil {
		t.Fatal(err)
	}
	if got := get(); got != "DoNotDisturb/Presenting" {
		t.Fatalf("DoNotDisturb beats Busy: %s", got)
	}
	if err := b.ten.SetTeamsPresence(id, "Offline", "Offline"); err != nil {
		t.Fatal(err)
	}
	post("setPresence", map[string]any{"sessionId": "someone-else", "availability": "Busy", "activity": "InACall"}, 400)
	post("setPresence", map[string]any{"sessionId": testClient, "availability": "Busy", "activity": "InAMeeting"}, 400)
	post("setPresence", map[string]any{"sessionId": testClient, "availability": "Busy", "activity": "InACall", "expirationDuration": "PT5H"}, 400)
	now = now.Add(61 * time.Minute)
	if got := get(); got != "Offline/Offline" {
		t.Fatalf("expired session: %s", got)
	}
	post("clearPresence", map[string]any{"sessionId": testClient}, 200)
	post("clearPresence", map[string]any{"sessionId": testClient}, 404)
	var ids []string
	for range 651 {
		ids = append(ids, id)
	}
	mustStatus(t, b.do("POST", "/v1.0/communications/getPresencesByUserId", "app", map[string]any{"ids": ids}), 400)
}

func TestContactsCRUDAndDelta(t *testing.T) {
	b := newBundle(t, func(c *Config) { c.Users = 40; c.Groups = 2 })
	u := b.ten.UserList()[6]
	base := "/v1.0/users/" + u.ID + "/contactFolders/contacts/contacts/delta"
	_, link := deltaRound(t, b, base+"?$select=displayName,mobilePhone")
	r := b.do("POST", "/v1.0/users/"+u.ID+"/contacts", "app", map[string]any{"givenName": "Pavel", "surname": "Novák", "mobilePhone": "+420 601 123 456"})
	mustStatus(t, r, 201)
	created := r.json(t)["id"].(string)
	cs, _ := b.ten.Contacts(u.ID)
	var victim string
	for _, c := range cs {
		if c.ID != created && c.FolderID == cs[0].FolderID {
			victim = c.ID
			break
		}
	}
	if victim == "" {
		// user without generated contacts: delete the new one instead after the patch
		victim = created
	}
	mustStatus(t, b.do("PATCH", "/v1.0/users/"+u.ID+"/contacts/"+created, "app", map[string]any{"mobilePhone": "+420 601 999 999"}), 200)
	mustStatus(t, b.do("DELETE", "/v1.0/users/"+u.ID+"/contacts/"+victim, "app", nil), 204)
	items, _ := deltaRound(t, b, link)
	got := map[string]bool{}
	for _, it := range items {
		_, removed := it["@removed"]
		got[fmt.Sprint(it["id"], removed)] = true
	}
	want := map[string]bool{fmt.Sprint(victim, true): true}
	if victim != created {
		want[fmt.Sprint(created, false)] = true
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("contact delta %v, want %v", got, want)
	}
	mustStatus(t, b.do("GET", "/v1.0/users/"+u.ID+"/contacts/"+victim, "app", nil), 404)
}

func TestSubscriptionValidation(t *testing.T) {
	b := newBundle(t, func(c *Config) { c.Users = 10; c.Groups = 1 })
	// An endpoint that answers 200 without echoing the token fails validation.
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "hello")
	}))
	t.Cleanup(bad.Close)
	body := func(u string, exp time.Duration) map[string]any {
		return map[string]any{"changeType": "updated", "notificationUrl": u, "resource": "groups",
			"expirationDateTime": time.Now().Add(exp).UTC().Format(time.RFC3339Nano), "clientState": "c"}
	}
	r := b.do("POST", "/v1.0/subscriptions", "app", body(bad.URL, time.Hour))
	mustStatus(t, r, 400)
	if errCode(t, r) != "ValidationError" {
		t.Fatalf("%s", r.body)
	}
	rc := newReceiver(t)
	mustStatus(t, b.do("POST", "/v1.0/subscriptions", "app", body(rc.srv.URL, 30*24*time.Hour)), 400) // over 41,760 min
	r = b.do("POST", "/v1.0/subscriptions", "app", body(rc.srv.URL, 10*time.Minute))
	mustStatus(t, r, 201)
	exp, _ := time.Parse(time.RFC3339Nano, r.json(t)["expirationDateTime"].(string))
	if time.Until(exp) < 44*time.Minute {
		t.Fatalf("expiry not raised to 45 minutes: %v", exp)
	}
	id := r.json(t)["id"].(string)
	mustStatus(t, b.do("POST", "/v1.0/subscriptions", "app", body(rc.srv.URL, time.Hour)), 409)
	r = b.do("PATCH", "/v1.0/subscriptions/"+id, "app", map[string]any{"expirationDateTime": time.Now().Add(48 * time.Hour).UTC().Format(time.RFC3339Nano)})
	mustStatus(t, r, 200)
	mustStatus(t, b.get("/v1.0/subscriptions/"+id), 200)
	if n := len(b.get("/v1.0/subscriptions").json(t)["value"].([]any)); n != 1 {
		t.Fatalf("list: %d", n)
	}
	// Group member change notifies the groups subscription.
	g := b.ten.GroupList()[0]
	mustStatus(t, b.do("DELETE", "/v1.0/groups/"+g.ID+"/members/"+g.Members[0]+"/$ref", "app", nil), 204)
	posts := rc.wait(t, 1)
	if !strings.Contains(string(posts[0]), `"resource":"Groups/`+g.ID+`"`) {
		t.Fatalf("notification %s", posts[0])
	}
	mustStatus(t, b.do("DELETE", "/v1.0/subscriptions/"+id, "app", nil), 204)
	mustStatus(t, b.get("/v1.0/subscriptions/"+id), 404)
}

func TestNotificationRetry(t *testing.T) {
	b := newBundle(t, func(c *Config) { c.Users = 10; c.Groups = 1 })
	fails := 2
	rc := &receiver{}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tok := r.URL.Query().Get("validationToken"); tok != "" {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, tok)
			return
		}
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if fails > 0 {
			fails--
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		raw, _ := io.ReadAll(r.Body)
		rc.posts = append(rc.posts, raw)
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(rc.srv.Close)
	u := b.ten.UserList()[2]
	mustStatus(t, b.do("POST", "/v1.0/subscriptions", "app", map[string]any{"changeType": "updated", "notificationUrl": rc.srv.URL,
		"resource": "users/" + u.ID, "expirationDateTime": time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano), "clientState": "r"}), 201)
	mustStatus(t, b.do("PATCH", "/v1.0/users/"+u.ID, "app", map[string]any{"department": "Retry"}), 204)
	rc.wait(t, 1)
	if s := b.ten.Stats(); s.ByEndpoint["notification failed"] != 2 || s.ByEndpoint["notification delivered"] != 1 {
		t.Fatalf("stats %v", s.ByEndpoint)
	}
}

func TestGroupAndContactFilters(t *testing.T) {
	b := newBundle(t, nil)
	ev := []string{"ConsistencyLevel", "eventual"}
	groups := b.ten.GroupList()
	n := func(pred func(GroupInfo) bool) int {
		c := 0
		for _, g := range groups {
			if pred(g) {
				c++
			}
		}
		return c
	}
	unified := n(func(g GroupInfo) bool { return len(g.GroupTypes) == 1 })
	security := n(func(g GroupInfo) bool { return g.SecurityEnabled && !g.MailEnabled && len(g.GroupTypes) == 0 })
	r := b.get("/v1.0/groups?$filter=groupTypes/any(c:c eq 'Unified')&$select=id")
	mustStatus(t, r, 200)
	if got := len(r.json(t)["value"].([]any)); got != unified || unified == 0 {
		t.Fatalf("unified %d, want %d", got, unified)
	}
	r = b.get("/v1.0/groups?$filter=mailEnabled eq false and securityEnabled eq true and NOT(groupTypes/any(s:s eq 'Unified'))&$count=true", ev...)
	mustStatus(t, r, 200)
	if got := int(r.json(t)["@odata.count"].(float64)); got != security || security == 0 {
		t.Fatalf("security %d, want %d", got, security)
	}
	mustStatus(t, b.get("/v1.0/groups?$filter=NOT(groupTypes/any(s:s eq 'Unified'))"), 400)
	// Guest by UPN with an encoded #EXT#.
	for _, u := range b.ten.UserList() {
		if u.UserType == "Guest" {
			r := b.get("/v1.0/users/" + strings.ReplaceAll(u.UserPrincipalName, "#", "%23"))
			mustStatus(t, r, 200)
			if r.json(t)["id"] != u.ID {
				t.Fatalf("guest by UPN: %s", r.body)
			}
			break
		}
	}
	// Contacts by e-mail address.
	for _, u := range b.ten.UserList() {
		cs, _ := b.ten.Contacts(u.ID)
		if len(cs) == 0 || len(cs[0].Emails) == 0 || u.UserType != "Member" {
			continue
		}
		r := b.get("/v1.0/users/" + u.ID + "/contacts?$filter=emailAddresses/any(a:a/address eq '" + cs[0].Emails[0] + "')")
		mustStatus(t, r, 200)
		if v := r.json(t)["value"].([]any); len(v) < 1 || v[0].(map[string]any)["id"] != cs[0].ID {
			t.Fatalf("contact filter: %s", r.body)
		}
		break
	}
}

func TestOutlookConcurrencyLimit(t *testing.T) {
	b := newBundle(t, func(c *Config) { c.Users = 10; c.Groups = 1; c.Faults = Faults{RealLimits: true} })
	claims, _ := fakeValidator{}.ValidateAccessToken("app")
	call := func() (int, func()) {
		r := httptest.NewRequest("GET", "/v1.0/users/x/contacts", nil)
		r.SetPathValue("id", "x")
		w := httptest.NewRecorder()
		limited, release := b.ten.fault.limit(w, r, b.ten, "GET /v1.0/users/{id}/contacts", claims)
		if limited {
			return w.Code, release
		}
		return 0, release
	}
	var releases []func()
	for range 4 {
		code, rel := call()
		if code != 0 {
			t.Fatalf("request refused early: %d", code)
		}
		releases = append(releases, rel)
	}
	if code, _ := call(); code != 429 {
		t.Fatalf("fifth concurrent request: %d, want 429", code)
	}
	releases[0]()
	if code, rel := call(); code != 0 {
		t.Fatalf("after release: %d", code)
	} else {
		rel()
	}
}

func TestContactSubscription(t *testing.T) {
	b := newBundle(t, func(c *Config) { c.Users = 20; c.Groups = 1 })
	u := b.ten.SharedMailboxes()[0]
	rc := newReceiver(t)
	sub := map[string]any{"changeType": "created,updated,deleted", "notificationUrl": rc.srv.URL, "resource": "users/" + u.ID + "/contacts",
		"expirationDateTime": time.Now().Add(8 * 24 * time.Hour).UTC().Format(time.RFC3339Nano), "clientState": "c"}
	mustStatus(t, b.do("POST", "/v1.0/subscriptions", "app", sub), 400) // contacts: at most 10,080 minutes
	sub["expirationDateTime"] = time.Now().Add(6 * 24 * time.Hour).UTC().Format(time.RFC3339Nano)
	mustStatus(t, b.do("POST", "/v1.0/subscriptions", "app", sub), 201)
	r := b.do("POST", "/v1.0/users/"+u.ID+"/contacts", "app", map[string]any{"givenName": "Ada", "surname": "Lovelace", "businessPhones": []string{"+44 20 7946 0000"}})
	mustStatus(t, r, 201)
	posts := rc.wait(t, 1)
	if !strings.Contains(string(posts[0]), `"changeType":"created"`) || !strings.Contains(string(posts[0]), r.json(t)["id"].(string)) {
		t.Fatalf("notification %s", posts[0])
	}
}
