package sim

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// deltaRound follows nextLinks from url and returns the items and the deltaLink.
func deltaRound(t *testing.T, b *bundle, url string) ([]map[string]any, string) {
	t.Helper()
	var items []map[string]any
	for {
		r := b.get(url)
		mustStatus(t, r, 200)
		m := r.json(t)
		for _, v := range m["value"].([]any) {
			items = append(items, v.(map[string]any))
		}
		if next, ok := m["@odata.nextLink"].(string); ok {
			if _, both := m["@odata.deltaLink"]; both {
				t.Fatal("page carries both nextLink and deltaLink")
			}
			url = next
			continue
		}
		dl, ok := m["@odata.deltaLink"].(string)
		if !ok {
			t.Fatalf("last page without deltaLink: %s", r.body)
		}
		return items, dl
	}
}

func TestUsersDeltaReturnsExactlyTheChanges(t *testing.T) {
	b := newBundle(t, nil)
	items, link := deltaRound(t, b, "/v1.0/users/delta?$select=displayName,jobTitle,mobilePhone")
	if len(items) != 300 {
		t.Fatalf("initial round: %d users, want 300", len(items))
	}
	for _, it := range items {
		if _, ok := it["id"]; !ok {
			t.Fatal("delta item without id")
		}
	}
	users := b.ten.UserList()
	// No change: empty round.
	if items, _ := deltaRound(t, b, link); len(items) != 0 {
		t.Fatalf("unchanged tenant returned %d items", len(items))
	}
	mustStatus(t, b.do("PATCH", "/v1.0/users/"+users[5].ID, "app", map[string]any{"jobTitle": "Chief Listener"}), 204)
	mustStatus(t, b.do("DELETE", "/v1.0/users/"+users[7].ID, "app", nil), 204)
	items, link2 := deltaRound(t, b, link)
	if len(items) != 2 {
		t.Fatalf("got %d items, want 2: %v", len(items), items)
	}
	byID := map[string]map[string]any{}
	for _, it := range items {
		byID[it["id"].(string)] = it
	}
	if got := byID[users[5].ID]["jobTitle"]; got != "Chief Listener" {
		t.Fatalf("patched user jobTitle = %v", got)
	}
	rm, _ := byID[users[7].ID]["@removed"].(map[string]any)
	if rm["reason"] != "changed" {
		t.Fatalf("deleted user: %v", byID[users[7].ID])
	}
	if items, _ := deltaRound(t, b, link2); len(items) != 0 {
		t.Fatalf("second deltaLink returned %d items", len(items))
	}
}

func TestGroupsDeltaMemberChanges(t *testing.T) {
	b := newBundle(t, nil)
	items, link := deltaRound(t, b, "/v1.0/groups/delta?$select=displayName,members")
	if len(items) != 25 {
		t.Fatalf("initial round: %d groups", len(items))
	}
	groups := b.ten.GroupList()
	var g GroupInfo
	for _, x := range groups {
		if len(x.GroupTypes) == 0 && x.SecurityEnabled && !x.MailEnabled {
			g = x
			break
		}
	}
	var newcomer string
	for _, u := range b.ten.UserList() {
		if !contains(g.Members, u.ID) && !u.Shared {
			newcomer = u.ID
			break
		}
	}
	ref := map[string]string{"@odata.id": "https://graph.microsoft.com/v1.0/directoryObjects/" + newcomer}
	mustStatus(t, b.do("POST", "/v1.0/groups/"+g.ID+"/members/$ref", "app", ref), 204)
	mustStatus(t, b.do("POST", "/v1.0/groups/"+g.ID+"/members/$ref", "app", ref), 400)
	leaver := g.Members[0]
	mustStatus(t, b.do("DELETE", "/v1.0/groups/"+g.ID+"/members/"+leaver+"/$ref", "app", nil), 204)
	items, _ = deltaRound(t, b, link)
	if len(items) != 1 || items[0]["id"] != g.ID {
		t.Fatalf("want exactly group %s, got %v", g.ID, items)
	}
	md := items[0]["members@delta"].([]any)
	if len(md) != 2 {
		t.Fatalf("members@delta = %v", md)
	}
	for _, x := range md {
		m := x.(map[string]any)
		switch m["id"] {
		case newcomer:
			if _, ok := m["@removed"]; ok {
				t.Fatal("added member marked removed")
			}
		case leaver:
			if m["@removed"].(map[string]any)["reason"] != "deleted" {
				t.Fatal("removed member lacks @removed")
			}
		default:
			t.Fatalf("unexpected member %v", m)
		}
		if m["@odata.type"] != "#microsoft.graph.user" {
			t.Fatalf("member type %v", m["@odata.type"])
		}
	}
}

func TestDeltaTokenExpiry(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	b := newBundle(t, func(c *Config) { c.Now = clock; c.Users = 20; c.Groups = 3 })
	_, link := deltaRound(t, b, "/v1.0/users/delta")
	now = now.Add(6 * 24 * time.Hour)
	_, link = deltaRound(t, b, link)
	now = now.Add(7*24*time.Hour + time.Minute)
	r := b.get(link)
	mustStatus(t, r, 410)
	if code := r.json(t)["error"].(map[string]any)["code"]; code != "syncStateNotFound" {
		t.Fatalf("code %v", code)
	}
	if loc := r.header.Get("Location"); !strings.HasSuffix(loc, "/v1.0/users/delta") {
		t.Fatalf("Location %q", loc)
	}
	// Admin expiry.
	_, link = deltaRound(t, b, "/v1.0/users/delta")
	b.ten.ExpireDeltaTokens()
	mustStatus(t, b.get(link), 410)
	mustStatus(t, b.get("/v1.0/users/delta?$deltatoken=garbage"), 410)
	// latest: only a deltaLink.
	r = b.get("/v1.0/users/delta?$deltatoken=latest")
	mustStatus(t, r, 200)
	m := r.json(t)
	if len(m["value"].([]any)) != 0 || m["@odata.deltaLink"] == nil {
		t.Fatalf("latest: %s", r.body)
	}
}

func TestDeletedItemsRestoreAndPurge(t *testing.T) {
	b := newBundle(t, func(c *Config) { c.Users = 30; c.Groups = 3 })
	u := b.ten.UserList()[9]
	_, link := deltaRound(t, b, "/v1.0/users/delta?$select=displayName")
	mustStatus(t, b.do("DELETE", "/v1.0/users/"+u.ID, "app", nil), 204)
	r := b.get("/v1.0/directory/deletedItems/microsoft.graph.user")
	mustStatus(t, r, 200)
	if v := r.json(t)["value"].([]any); len(v) != 1 || v[0].(map[string]any)["id"] != u.ID {
		t.Fatalf("deletedItems %s", r.body)
	}
	mustStatus(t, b.do("POST", "/v1.0/directory/deletedItems/"+u.ID+"/restore", "app", nil), 200)
	items, link := deltaRound(t, b, link)
	if len(items) != 1 || items[0]["displayName"] != u.DisplayName {
		t.Fatalf("restored user should reappear in full: %v", items)
	}
	mustStatus(t, b.do("DELETE", "/v1.0/users/"+u.ID, "app", nil), 204)
	mustStatus(t, b.do("DELETE", "/v1.0/directory/deletedItems/"+u.ID, "app", nil), 204)
	items, _ = deltaRound(t, b, link)
	if len(items) != 1 || items[0]["@removed"].(map[string]any)["reason"] != "deleted" {
		t.Fatalf("purged user: %v", items)
	}
	mustStatus(t, b.do("POST", "/v1.0/directory/deletedItems/"+u.ID+"/restore", "app", nil), 404)
}

func TestDeltaTracksSelectedPropertiesAndMinimal(t *testing.T) {
	b := newBundle(t, func(c *Config) { c.Users = 30; c.Groups = 3 })
	us := b.ten.UserList()
	_, link := deltaRound(t, b, "/v1.0/users/delta?$select=displayName,mobilePhone,jobTitle")
	// A change to an unselected property does not surface the user.
	mustStatus(t, b.do("PATCH", "/v1.0/users/"+us[3].ID, "app", map[string]any{"department": "Elsewhere"}), 204)
	// A PATCH that changes nothing is no change.
	mustStatus(t, b.do("PATCH", "/v1.0/users/"+us[4].ID, "app", map[string]any{"displayName": us[4].DisplayName}), 204)
	mustStatus(t, b.do("PATCH", "/v1.0/users/"+us[5].ID, "app", map[string]any{"mobilePhone": nil}), 204)
	r := b.get(link, "Prefer", "return=minimal")
	mustStatus(t, r, 200)
	items := r.json(t)["value"].([]any)
	if len(items) != 1 {
		t.Fatalf("items %s", r.body)
	}
	it := items[0].(map[string]any)
	if it["id"] != us[5].ID || len(it) != 2 {
		t.Fatalf("minimal item %v", it)
	}
	if v, ok := it["mobilePhone"]; !ok || v != nil {
		t.Fatalf("property set to null must be returned as null: %v", it)
	}
	// Without return=minimal every selected property comes back.
	items2, _ := deltaRound(t, b, link)
	if len(items2) != 1 || len(items2[0]) != 4 {
		t.Fatalf("full item %v", items2)
	}
	// A new user appears in full.
	mustStatus(t, b.do("POST", "/v1.0/users", "app", map[string]any{"accountEnabled": true, "displayName": "Nova Lind",
		"mailNickname": "nova", "userPrincipalName": "nova@contoso.com", "passwordProfile": map[string]any{"password": "x"}}), 201)
	r = b.get(link, "Prefer", "return=minimal")
	found := false
	for _, v := range r.json(t)["value"].([]any) {
		if v.(map[string]any)["displayName"] == "Nova Lind" {
			found = true
		}
	}
	if !found {
		t.Fatalf("created user missing: %s", r.body)
	}
}

func TestGroupsDeltaSlicesLargeGroups(t *testing.T) {
	b := newBundle(t, func(c *Config) { c.Users = 120; c.Groups = 6; c.DeltaMembersPerPage = 4 })
	want := map[string]map[string]bool{}
	for _, g := range b.ten.GroupList() {
		want[g.ID] = map[string]bool{}
		for _, m := range g.Members {
			want[g.ID][m] = true
		}
	}
	items, _ := deltaRound(t, b, "/v1.0/groups/delta?$select=displayName,members")
	got := map[string]map[string]bool{}
	recurred := false
	for _, it := range items {
		id := it["id"].(string)
		if got[id] == nil {
			got[id] = map[string]bool{}
		} else {
			recurred = true
		}
		md, _ := it["members@delta"].([]any)
		if len(md) > 4 {
			t.Fatalf("slice of %d members", len(md))
		}
		for _, m := range md {
			got[id][m.(map[string]any)["id"].(string)] = true
		}
	}
	if !recurred {
		t.Fatal("no group recurred across pages")
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("merged members differ")
	}
}
