package graph

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

// userPages serves total users in pages of size under GET /v1.0/users, with absolute
// nextLinks, recording each request.
type userPages struct {
	total, size int
	pages       [][]byte
	requests    atomic.Int32
	onRequest   func(r *http.Request, page int)
}

func newUserPages(t testing.TB, f *fakeTenant, total, size int) *userPages {
	up := &userPages{total: total, size: size}
	for start := 0; start < total || start == 0; start += size {
		var items []map[string]any
		for i := start; i < min(start+size, total); i++ {
			items = append(items, map[string]any{
				"id": fmt.Sprintf("00000000-0000-0000-0000-%012d", i), "displayName": fmt.Sprintf("User %d", i),
				"givenName": "User", "surname": strconv.Itoa(i), "mail": fmt.Sprintf("user%d@contoso.com", i),
				"userPrincipalName": fmt.Sprintf("user%d@contoso.com", i), "mobilePhone": "+1 425 555 0101",
				"businessPhones": []string{"+1 425 555 0100"}, "jobTitle": "Engineer", "department": "R&D",
				"accountEnabled": true, "userType": "Member", "employeeId": strconv.Itoa(1000 + i),
				"onPremisesExtensionAttributes": map[string]any{"extensionAttribute1": strconv.Itoa(200 + i), "extensionAttribute2": nil},
			})
		}
		body := map[string]any{"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users", "value": items}
		if start+size < total {
			body["@odata.nextLink"] = fmt.Sprintf("%s/v1.0/users?$select=id&$skiptoken=page%d", f.srv.URL, len(up.pages)+1)
		}
		b, _ := json.Marshal(body)
		up.pages = append(up.pages, b)
		if total == 0 {
			break
		}
	}
	f.mux.HandleFunc("GET /v1.0/users", func(w http.ResponseWriter, r *http.Request) {
		up.requests.Add(1)
		page := 0
		if tok := r.URL.Query().Get("$skiptoken"); tok != "" {
			page, _ = strconv.Atoi(strings.TrimPrefix(tok, "page"))
		}
		if up.onRequest != nil {
			up.onRequest(r, page)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(up.pages[page])
	})
	return up
}

func TestPagingVisitsEveryItemOnceLazily(t *testing.T) {
	f := newFakeTenant(t)
	up := newUserPages(t, f, 25, 10)
	var consumed atomic.Int32
	var headers []string
	up.onRequest = func(r *http.Request, page int) {
		// The page is requested only after the previous pages were consumed entirely:
		// the iterator never holds more than one page.
		if got, want := int(consumed.Load()), page*10; got != want {
			t.Errorf("page %d requested after %d items consumed, want %d", page, got, want)
		}
		headers = append(headers, r.Header.Get("ConsistencyLevel"))
		if page == 0 {
			q := r.URL.Query()
			eq(t, "$top", q.Get("$top"), "10")
			eq(t, "$count", q.Get("$count"), "true")
			eq(t, "$filter", q.Get("$filter"), "accountEnabled ne true")
			eq(t, "$select has id", strings.HasPrefix(q.Get("$select"), "id,"), true)
		}
	}
	c, _ := newTestClient(t, f)
	seen := map[string]int{}
	for u, err := range c.ListUsers(t.Context(), ListOptions{Top: 10, Count: true, Filter: "accountEnabled ne true"}) {
		if err != nil {
			t.Fatal(err)
		}
		seen[u.ID]++
		consumed.Add(1)
	}
	eq(t, "distinct", len(seen), 25)
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s seen %d times", id, n)
		}
	}
	eq(t, "requests", up.requests.Load(), 3)
	eq(t, "ConsistencyLevel on every page", strings.Join(headers, ","), "eventual,eventual,eventual")
}

func TestPagingStopsOnBreak(t *testing.T) {
	f := newFakeTenant(t)
	up := newUserPages(t, f, 50, 10)
	c, _ := newTestClient(t, f)
	n := 0
	for _, err := range c.ListUsers(t.Context(), ListOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		if n++; n == 15 {
			break
		}
	}
	eq(t, "requests", up.requests.Load(), 2)
}

func TestPagingEmptyAndErrorPages(t *testing.T) {
	f := newFakeTenant(t)
	f.mux.HandleFunc("GET /v1.0/groups", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("$skiptoken") {
		case "":
			writeJSON(w, 200, map[string]any{"value": []any{}, "@odata.nextLink": f.srv.URL + "/v1.0/groups?$skiptoken=2"})
		case "2":
			writeJSON(w, 200, map[string]any{"value": []any{map[string]any{"id": "g1"}}, "@odata.nextLink": f.srv.URL + "/v1.0/groups?$skiptoken=3"})
		default:
			graphError(w, 400, "Request_BadRequest", "bad skiptoken")
		}
	})
	c, _ := newTestClient(t, f)
	var ids []string
	var last error
	for g, err := range c.ListGroups(t.Context(), ListOptions{}) {
		if err != nil {
			last = err
			continue
		}
		ids = append(ids, g.ID)
	}
	eq(t, "ids", strings.Join(ids, ","), "g1")
	var ge *Error
	if !errors.As(last, &ge) || ge.Code != "Request_BadRequest" {
		t.Errorf("err = %v", last)
	}
}

func TestSearchUsersPagesBeyondFirst(t *testing.T) {
	f := newFakeTenant(t)
	up := newUserPages(t, f, 450, 200)
	up.onRequest = func(r *http.Request, page int) {
		eq(t, "ConsistencyLevel", r.Header.Get("ConsistencyLevel"), "eventual")
		if page == 0 {
			eq(t, "$search", r.URL.Query().Get("$search"), `"displayName:Ann O" OR "mail:Ann O" OR "userPrincipalName:Ann O"`)
			eq(t, "$orderby", r.URL.Query().Get("$orderby"), "displayName")
		}
	}
	c, _ := newTestClient(t, f)
	n := 0
	for _, err := range c.SearchUsers(t.Context(), `Ann "O`, ListOptions{Top: 200}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	eq(t, "found", n, 450)

	p, err := c.SearchUsersPage(t.Context(), "Ann O", "", 200)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "page 1", len(p.Items), 200)
	p2, err := c.SearchUsersPage(t.Context(), "", p.NextLink, 0)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "page 2 first", p2.Items[0].ID, "00000000-0000-0000-0000-000000000200")
}

func TestGroupMembersPaths(t *testing.T) {
	f := newFakeTenant(t)
	f.mux.HandleFunc("GET /v1.0/groups/g1/transitiveMembers", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"value": []any{
			map[string]any{"@odata.type": "#microsoft.graph.user", "id": "u1", "userPrincipalName": "u1@x"},
			map[string]any{"@odata.type": "#microsoft.graph.group", "id": "g2"},
		}})
	})
	f.mux.HandleFunc("GET /v1.0/groups/g1/members/microsoft.graph.user", func(w http.ResponseWriter, r *http.Request) {
		eq(t, "ConsistencyLevel", r.Header.Get("ConsistencyLevel"), "eventual")
		eq(t, "$count", r.URL.Query().Get("$count"), "true")
		writeJSON(w, 200, map[string]any{"value": []any{map[string]any{"id": "u1", "accountEnabled": false}}})
	})
	c, _ := newTestClient(t, f)
	var kinds []string
	for m, err := range c.GroupMembers(t.Context(), "g1", true, ListOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, fmt.Sprintf("%s:%v:%v", m.ID, m.IsUser(), m.IsGroup()))
	}
	eq(t, "members", strings.Join(kinds, " "), "u1:true:false g2:false:true")
	for u, err := range c.GroupUserMembers(t.Context(), "g1", false, ListOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		eq(t, "disabled", u.Enabled(), false)
	}
}

// deltaServer serves a scripted delta round: pages[i] answers the i-th request.
func deltaServer(t *testing.T, f *fakeTenant, path string, pages []map[string]any) *[]string {
	var got []string
	i := 0
	f.mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.URL.RawQuery)
		if i >= len(pages) {
			t.Errorf("unexpected request %s", r.URL)
			graphError(w, 500, "unexpected", "")
			return
		}
		p := pages[i]
		i++
		if st, ok := p["status"].(int); ok {
			graphError(w, st, p["code"].(string), "token expired")
			return
		}
		for _, k := range []string{"@odata.nextLink", "@odata.deltaLink"} {
			if v, ok := p[k].(string); ok {
				p[k] = f.srv.URL + v
			}
		}
		writeJSON(w, 200, p)
	})
	return &got
}

func TestUsersDeltaRoundAndRemoved(t *testing.T) {
	f := newFakeTenant(t)
	reqs := deltaServer(t, f, "/v1.0/users/delta", []map[string]any{
		{"@odata.nextLink": "/v1.0/users/delta?$skiptoken=s1", "value": []any{
			map[string]any{"id": "u1", "displayName": "Cameron White"},
			map[string]any{"id": "u2", "@removed": map[string]any{"reason": "deleted"}},
		}},
		{"@odata.deltaLink": "/v1.0/users/delta?$deltatoken=d1", "value": []any{
			map[string]any{"id": "u3", "@removed": map[string]any{"reason": "changed"}},
		}},
		// second round from the stored deltaLink
		{"@odata.deltaLink": "/v1.0/users/delta?$deltatoken=d2", "value": []any{}},
	})
	c, _ := newTestClient(t, f)
	var items []string
	link, err := c.UsersDelta(t.Context(), "", []string{"id", "displayName"}, func(p DeltaPage[User]) error {
		for _, u := range p.Items {
			s := u.ID
			if u.Removed != nil {
				s += "/" + u.Removed.Reason
			}
			items = append(items, s)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "items", strings.Join(items, ","), "u1,u2/deleted,u3/changed")
	eq(t, "deltaLink", link, f.srv.URL+"/v1.0/users/delta?$deltatoken=d1")
	link2, err := c.UsersDelta(t.Context(), link, nil, func(DeltaPage[User]) error { return nil }, WithPreferMinimal())
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "deltaLink 2", link2, f.srv.URL+"/v1.0/users/delta?$deltatoken=d2")
	eq(t, "requests", strings.Join(*reqs, " | "), "$select=id%2CdisplayName | $skiptoken=s1 | $deltatoken=d1")
}

func TestDeltaLinkOnlyOnSuccess(t *testing.T) {
	f := newFakeTenant(t)
	reqs := deltaServer(t, f, "/v1.0/groups/delta", []map[string]any{
		{"@odata.nextLink": "/v1.0/groups/delta?$skiptoken=s1", "value": []any{map[string]any{"id": "g1"}}},
		{"@odata.nextLink": "/v1.0/groups/delta?$skiptoken=s2", "value": []any{map[string]any{"id": "g1",
			"members@delta": []any{map[string]any{"@odata.type": "#microsoft.graph.user", "id": "u9", "@removed": map[string]any{"reason": "deleted"}}}}}},
		{"@odata.deltaLink": "/v1.0/groups/delta?$deltatoken=d1", "value": []any{}},
	})
	c, _ := newTestClient(t, f)
	boom := errors.New("store failed")
	pages := 0
	link, err := c.GroupsDelta(t.Context(), "", nil, func(p DeltaPage[Group]) error {
		pages++
		if pages == 2 {
			eq(t, "member removed", p.Items[0].MembersDelta[0].Removed.Reason, "deleted")
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	eq(t, "no link on failure", link, "")
	eq(t, "stopped after failing page", len(*reqs), 2)
	if !strings.Contains((*reqs)[0], "members") {
		t.Errorf("first request %q does not select members", (*reqs)[0])
	}
}

func TestDeltaResyncRequired(t *testing.T) {
	for _, tc := range []struct {
		status int
		code   string
	}{
		{410, "Gone"},
		{400, "syncStateNotFound"},
		{400, "resyncRequired"},
		{404, "ErrorInvalidSyncStateData"},
	} {
		t.Run(fmt.Sprint(tc.status, tc.code), func(t *testing.T) {
			f := newFakeTenant(t)
			deltaServer(t, f, "/v1.0/users/u1/contactFolders/f1/contacts/delta", []map[string]any{
				{"status": tc.status, "code": tc.code},
			})
			c, _ := newTestClient(t, f)
			link, err := c.ContactsDelta(t.Context(), "u1", "f1", f.srv.URL+"/v1.0/users/u1/contactFolders/f1/contacts/delta?$deltatoken=old", nil,
				func(DeltaPage[Contact]) error { t.Error("callback called"); return nil })
			if !errors.Is(err, ErrResyncRequired) {
				t.Errorf("err = %v, want ErrResyncRequired", err)
			}
			if errors.Is(err, ErrNotFound) {
				t.Error("resync error also matches ErrNotFound")
			}
			eq(t, "link", link, "")
		})
	}
}

func TestDeltaPageWithoutLinksIsAnError(t *testing.T) {
	f := newFakeTenant(t)
	deltaServer(t, f, "/v1.0/users/delta", []map[string]any{{"value": []any{}}})
	c, _ := newTestClient(t, f)
	if _, err := c.UsersDelta(t.Context(), "", nil, func(DeltaPage[User]) error { return nil }); err == nil {
		t.Error("want error")
	}
}

// TestPagingConstantMemory reads 20,000 users (about 9 MB of JSON) and checks that the
// live heap does not grow with the number of pages consumed.
func TestPagingConstantMemory(t *testing.T) {
	f := newFakeTenant(t)
	newUserPages(t, f, 20000, 999)
	c, _ := newTestClient(t, f, func(c *Config) { c.Logger = nil })
	var samples []uint64
	n := 0
	for _, err := range c.ListUsers(t.Context(), ListOptions{Top: 999}) {
		if err != nil {
			t.Fatal(err)
		}
		if n%999 == 500 { // mid-page: exactly one page is live
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			samples = append(samples, ms.HeapAlloc)
		}
		n++
	}
	eq(t, "users", n, 20000)
	// Ignore the first two samples (pools and buffers warming up).
	lo, hi := slices.Min(samples[2:]), slices.Max(samples[2:])
	t.Logf("live heap across %d pages: %d..%d bytes", len(samples), lo, hi)
	if hi-lo > 2<<20 {
		t.Errorf("live heap grew by %d bytes while paging", hi-lo)
	}
}

// A user list whose $select holds only modelled properties is decoded lean
// (no raw JSON kept); it must read exactly what the raw-keeping decoder reads,
// skip a property of the wrong JSON type, and still refuse a body whose
// "value" is not an array.
func TestLeanUserDecodeMatchesRaw(t *testing.T) {
	f := newFakeTenant(t)
	body := `{"value":[
		{"id":"u1","displayName":"Ada","jobTitle":42,"accountEnabled":false,"businessPhones":["+1 1"],
		 "onPremisesExtensionAttributes":{"extensionAttribute7":"4711"},"extension_abc_costCenter":"CC-9"},
		{"id":"u2","displayName":"Bo","userType":"Guest","@removed":{"reason":"changed"}}]}`
	f.mux.HandleFunc("GET /v1.0/users", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("$select") == "bad" {
			_, _ = w.Write([]byte(`{"value":"not an array"}`))
			return
		}
		_, _ = w.Write([]byte(body))
	})
	c, _ := newTestClient(t, f)
	read := func(sel ...string) []User {
		t.Helper()
		var out []User
		for u, err := range c.ListUsers(t.Context(), ListOptions{Select: sel}) {
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, u)
		}
		return out
	}
	leanUsers := read("id", "displayName", "jobTitle", "accountEnabled", "businessPhones", "onPremisesExtensionAttributes", "userType")
	rawUsers := read("id", "displayName", "extension_abc_costCenter")
	if !lean([]string{"ID", "DisplayName"}) || lean([]string{"id", "extension_abc_costCenter"}) || lean(nil) {
		t.Fatal("lean() misjudges which selects are modelled")
	}
	if len(leanUsers) != 2 || len(rawUsers) != 2 {
		t.Fatalf("got %d lean and %d raw users, want 2 each", len(leanUsers), len(rawUsers))
	}
	for i := range leanUsers {
		l, r := leanUsers[i], rawUsers[i]
		if l.Raw() != nil || r.Raw() == nil {
			t.Errorf("user %d: lean raw %q, raw raw %q", i, l.Raw(), r.Raw())
		}
		lb, _ := json.Marshal(l)
		rb, _ := json.Marshal(r)
		eq(t, "user "+l.ID, string(lb), string(rb))
	}
	prop(t, leanUsers[0], "extensionAttribute7", "4711")
	prop(t, leanUsers[0], "jobTitle", "")
	eq(t, "enabled", leanUsers[0].Enabled(), false)
	eq(t, "removed", leanUsers[1].IsRemoved(), true)
	prop(t, rawUsers[0], "extension_abc_costCenter", "CC-9")
	for _, err := range c.ListUsers(t.Context(), ListOptions{Select: []string{"bad"}}) {
		if err == nil || !strings.Contains(err.Error(), "decode page") {
			t.Fatalf("a non-array value: err %v, want a decode error", err)
		}
	}
}
