package syncer_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/sim"
	"github.com/switchboard-pbx/switchboard/internal/syncer"
)

func (b *bundle) addMember(group, member string) {
	b.t.Helper()
	b.graphDo(http.MethodPost, "/groups/"+group+"/members/$ref", map[string]any{"@odata.id": b.srv.URL + "/v1.0/directoryObjects/" + member})
}

func (b *bundle) removeMember(group, member string) {
	b.t.Helper()
	b.graphDo(http.MethodDelete, "/groups/"+group+"/members/"+member+"/$ref", nil)
}

// emails returns the sorted emails of prefix users 1..n given by index.
func emails(prefix string, idx ...int) []string {
	out := make([]string, len(idx))
	for i, x := range idx {
		out[i] = fmt.Sprintf("%s%d@contoso.com", prefix, x)
	}
	slices.Sort(out)
	return out
}

// requests returns the Graph requests the tenant served since the last
// ResetStats, by endpoint, and their total.
func (b *bundle) requests() (map[string]int64, int64) {
	st := b.tenant.Stats()
	out := map[string]int64{}
	for k, v := range st.ByEndpoint {
		if m, _, _ := strings.Cut(k, " "); m == "GET" || m == "POST" || m == "PATCH" || m == "DELETE" || m == "PUT" {
			out[k] = v
		}
	}
	return out, st.Total
}

func membersCalls(by map[string]int64) int64 {
	var n int64
	for k, v := range by {
		if strings.Contains(k, "/members") || strings.Contains(k, "/transitiveMembers") {
			n += v
		}
	}
	return n
}

// An incremental group run after a few member changes reads one
// /groups/delta page and no member list, in a tenant of 60 groups.
func TestGroupSyncIncrementalRequests(t *testing.T) {
	backends(t, func(t *testing.T, db func(testing.TB) string) {
		b := newBundle(t, opts{users: 40, groups: 60, db: db(t)})
		b.save(defaults())
		gs := syncer.DefaultGroupSettings()
		gs.Enabled = true
		b.tenant.ResetStats()
		b.saveGroups(gs)
		by, total := b.requests()
		runs, _ := b.eng.ListRuns(t.Context(), "default")
		first := must(b.eng.GetRun(t.Context(), "default", runs[0].ID))
		b.mustSucceed(first)
		t.Logf("first run (users full + groups full, 40 users, 60 groups): %d requests %v", total, by)
		if first.GroupsRead != "full" || first.GroupsCreated != 60 || membersCalls(by) != 0 {
			t.Fatalf("first run: read %q, created %d, member reads %d", first.GroupsRead, first.GroupsCreated, membersCalls(by))
		}

		// Nothing changed: one users delta page and one groups delta page.
		b.tenant.ResetStats()
		r := b.mustSucceed(b.run(syncer.RunOptions{}))
		by, total = b.requests()
		t.Logf("no-change run: %d requests %v", total, by)
		if r.GroupsRead != "delta" || r.GroupsUnchanged != 60 || by["GET /v1.0/groups/delta"] != 1 || total > 3 {
			t.Fatalf("no-change run: read %q unchanged %d, %d requests %v", r.GroupsRead, r.GroupsUnchanged, total, by)
		}

		// A few member changes across three groups.
		gl := b.tenant.GroupList()
		slices.SortFunc(gl, func(a, b sim.GroupInfo) int { return strings.Compare(a.ID, b.ID) })
		users := b.tenant.UserList()
		var changed []string
		for _, g := range gl[:3] {
			for _, u := range users {
				if !slices.Contains(g.Members, u.ID) {
					b.addMember(g.ID, u.ID)
					break
				}
			}
			for _, m := range g.Members {
				if b.byEntra()[m].ID != "" {
					b.removeMember(g.ID, m)
					break
				}
			}
			changed = append(changed, g.ID)
		}
		b.tenant.ResetStats()
		r = b.mustSucceed(b.run(syncer.RunOptions{}))
		by, total = b.requests()
		t.Logf("incremental run after 6 member changes in 3 groups: %d requests (graphRequests %d) %v", total, r.GraphRequests, by)
		if r.GroupsRead != "delta" || r.GroupsUpdated != 3 || by["GET /v1.0/groups/delta"] != 1 || membersCalls(by) != 0 || total > 3 {
			t.Fatalf("incremental run: read %q updated %d, %d requests %v", r.GroupsRead, r.GroupsUpdated, total, by)
		}
		// The result equals what the members lists say.
		exts := b.byEntra()
		got := b.groups()
		for _, g := range b.tenant.GroupList() {
			var want []string
			for _, m := range g.Members {
				if x, ok := exts[m]; ok {
					want = append(want, x.ID)
				}
			}
			slices.Sort(want)
			if !slices.Equal(got[g.ID].Members, want) {
				t.Fatalf("group %s: members %v, want %v", g.DisplayName, got[g.ID].Members, want)
			}
		}
	})
}

// Transitive members through delta: a member change in a nested group (at
// depth 2) changes the chosen parent, without a /transitiveMembers read; a
// newly nested group is read once; a deleted nested group's users leave.
func TestGroupSyncTransitiveDelta(t *testing.T) {
	backends(t, func(t *testing.T, db func(testing.TB) string) {
		b := newBundle(t, opts{users: 1, db: db(t)})
		u := b.people("td", 7, nil)
		deep := b.group("Deep", u[3])
		mid := b.group("Mid", u[2], deep)
		top := b.group("Top", u[0], mid)
		other := b.group("Other", u[5])
		us := defaults()
		us.DeleteGuard = loose()
		b.save(us)
		gs := syncer.DefaultGroupSettings()
		gs.Enabled, gs.Range, gs.GroupIDs, gs.GroupMembers, gs.DeleteOutOfRange = true, syncer.RangeGroups, []string{top}, syncer.MembersTransitive, true
		b.saveGroups(gs)
		if m := b.members(b.groups()[top]); !slices.Equal(m, emails("td", 1, 3, 4)) {
			t.Fatalf("Top transitive members %v", m)
		}
		check := func(step string, want []string, maxMemberReads int64) {
			t.Helper()
			b.tenant.ResetStats()
			r := b.mustSucceed(b.run(syncer.RunOptions{}))
			by, total := b.requests()
			t.Logf("%s: %d requests %v", step, total, by)
			if r.GroupsRead != "delta" || membersCalls(by) > maxMemberReads || by["GET /v1.0/groups/delta"] != 1 {
				t.Fatalf("%s: read %q, %d requests %v", step, r.GroupsRead, total, by)
			}
			if m := b.members(b.groups()[top]); !slices.Equal(m, want) {
				t.Fatalf("%s: Top members %v, want %v", step, m, want)
			}
		}
		b.addMember(deep, u[4])
		check("user joins the group nested at depth 2", emails("td", 1, 3, 4, 5), 0)
		b.removeMember(mid, u[2])
		check("user leaves the nested group", emails("td", 1, 4, 5), 0)
		b.addMember(mid, other)
		check("a group is nested under Mid", emails("td", 1, 4, 5, 6), 1)
		b.addMember(other, u[6])
		check("user joins the newly nested group", emails("td", 1, 4, 5, 6, 7), 0)
		b.graphDo(http.MethodDelete, "/groups/"+deep, nil)
		check("the depth-2 group is deleted", emails("td", 1, 6, 7), 0)
		// A cycle (Other contains Top) does not loop.
		b.addMember(other, top)
		check("a nesting cycle", emails("td", 1, 6, 7), 0)
		// Back to direct members: a full read, and only Top's own users.
		gs.GroupMembers = syncer.MembersDirect
		b.saveGroups(gs)
		r := b.mustSucceed(b.run(syncer.RunOptions{}))
		if r.GroupsRead != "full" || !slices.Equal(b.members(b.groups()[top]), emails("td", 1)) {
			t.Fatalf("direct after transitive: read %q members %v", r.GroupsRead, b.members(b.groups()[top]))
		}
	})
}

// Extension group members join and leave as their users are synced and
// unsynced, with no change to the group in Entra.
func TestGroupMembersFollowUserSync(t *testing.T) {
	backends(t, func(t *testing.T, db func(testing.TB) string) {
		b := newBundle(t, opts{users: 1, db: db(t)})
		u := b.people("fu", 3, nil)
		g := b.group("Followers", u...)
		us := defaults()
		us.DeleteWhen, us.DeleteGuard = []string{syncer.DeleteWhenDisabled, syncer.DeleteWhenDeleted}, loose()
		b.save(us)
		gs := syncer.DefaultGroupSettings()
		gs.Enabled, gs.Range, gs.GroupIDs = true, syncer.RangeGroups, []string{g}
		b.saveGroups(gs)
		if m := b.members(b.groups()[g]); !slices.Equal(m, emails("fu", 1, 2, 3)) {
			t.Fatalf("members %v", m)
		}
		b.patchUser(u[1], map[string]any{"accountEnabled": false}) // unsynced: its extension is deleted
		r := b.mustSucceed(b.run(syncer.RunOptions{}))
		if m := b.members(b.groups()[g]); r.Deleted != 1 || r.GroupsRead != "delta" || !slices.Equal(m, emails("fu", 1, 3)) {
			t.Fatalf("after unsync: deleted %d read %q members %v", r.Deleted, r.GroupsRead, m)
		}
		b.patchUser(u[1], map[string]any{"accountEnabled": true}) // synced again: a new extension
		r = b.mustSucceed(b.run(syncer.RunOptions{}))
		if m := b.members(b.groups()[g]); r.Created != 1 || !slices.Equal(m, emails("fu", 1, 2, 3)) {
			t.Fatalf("after resync: created %d members %v", r.Created, m)
		}
		// A group member that is not a synced user never becomes a member;
		// when user sync starts covering them, they join.
		stranger := b.createUser("fu9", map[string]any{"givenName": "Nine", "surname": "Fu"})
		b.addMember(g, stranger)
		b.mustSucceed(b.run(syncer.RunOptions{}))
		if m := b.members(b.groups()[g]); !slices.Contains(m, "fu9@contoso.com") {
			t.Fatalf("new synced member missing: %v", m)
		}
	})
}

// An expired groups delta token (410 Gone) falls back to a full read; the
// result is the same as if the token had held.
func TestGroupSyncExpiredToken(t *testing.T) {
	backends(t, func(t *testing.T, db func(testing.TB) string) {
		b := newBundle(t, opts{users: 1, db: db(t)})
		u := b.people("ex", 3, nil)
		g := b.group("Expiring", u[0])
		b.save(defaults())
		gs := syncer.DefaultGroupSettings()
		gs.Enabled, gs.Range, gs.GroupIDs = true, syncer.RangeGroups, []string{g}
		b.saveGroups(gs)
		b.addMember(g, u[1])
		b.graphDo(http.MethodPatch, "/groups/"+g, map[string]any{"displayName": "Expired"})
		b.tenant.ExpireDeltaTokens()
		r := b.mustSucceed(b.run(syncer.RunOptions{}))
		x := b.groups()[g]
		if r.GroupsRead != "full" || x.Name != "Expired" || !slices.Equal(b.members(x), emails("ex", 1, 2)) {
			t.Fatalf("after expiry: read %q, %s %v, notes %v", r.GroupsRead, x.Name, b.members(x), r.Notes)
		}
		b.addMember(g, u[2])
		r = b.mustSucceed(b.run(syncer.RunOptions{}))
		if r.GroupsRead != "delta" || !slices.Equal(b.members(b.groups()[g]), emails("ex", 1, 2, 3)) {
			t.Fatalf("delta after the full read: %q %v", r.GroupsRead, b.members(b.groups()[g]))
		}
	})
}

// The group picker lists every group past the first 200, tells distribution
// lists and mail-enabled security groups apart, and range "type" syncs
// exactly the groups of the chosen types.
func TestGroupPickerAndTypes(t *testing.T) {
	backends(t, func(t *testing.T, db func(testing.TB) string) {
		b := newBundle(t, opts{users: 10, groups: 230, db: db(t)})
		us := defaults()
		us.DeleteGuard = loose()
		b.save(us)
		kind := map[string]string{}
		for _, g := range b.tenant.GroupList() {
			switch {
			case slices.Contains(g.GroupTypes, "Unified"):
				kind[g.ID] = "microsoft365"
			case g.MailEnabled && g.SecurityEnabled:
				kind[g.ID] = "mailSecurity"
			case g.MailEnabled:
				kind[g.ID] = "distribution"
			default:
				kind[g.ID] = "security"
			}
		}
		seen := map[string]bool{}
		cursor, pages := "", 0
		for {
			p, err := b.eng.SearchGroups(t.Context(), "default", "", cursor)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			for _, g := range p.Items {
				if seen[g.ID] {
					t.Fatalf("group %s listed twice", g.DisplayName)
				}
				seen[g.ID] = true
				if g.Type != kind[g.ID] {
					t.Fatalf("group %s: type %q, want %q", g.DisplayName, g.Type, kind[g.ID])
				}
			}
			if cursor = p.NextCursor; cursor == "" {
				break
			}
		}
		if len(seen) != 230 || pages < 3 {
			t.Fatalf("picker listed %d groups in %d pages", len(seen), pages)
		}
		count := map[string]int{}
		for _, k := range kind {
			count[k]++
		}
		if count["distribution"] == 0 || count["mailSecurity"] == 0 {
			t.Fatalf("tenant lacks a kind: %v", count)
		}
		// A search term narrows the list.
		p, err := b.eng.SearchGroups(t.Context(), "default", "DL", "")
		if err != nil || len(p.Items) == 0 {
			t.Fatalf("search DL: %v %+v", err, p)
		}
		for _, g := range p.Items {
			if !strings.Contains(strings.ToLower(g.DisplayName+g.Mail+g.Description), "dl") {
				t.Fatalf("search DL returned %q", g.DisplayName)
			}
		}

		// Range type: exactly the groups of the chosen types (up to the cap).
		for _, types := range [][]string{{"security"}, {"microsoft365"}} {
			gs := syncer.DefaultGroupSettings()
			gs.Enabled, gs.Range, gs.GroupTypes, gs.DeleteOutOfRange = true, syncer.RangeType, types, true
			b.saveGroups(gs)
			b.mustSucceed(b.run(syncer.RunOptions{}))
			n := 0
			for _, g := range b.groups() {
				if !g.Synced() {
					t.Fatalf("unexpected local group %q", g.Name)
				}
				if kind[g.EntraID] != types[0] {
					t.Fatalf("range %v synced %q (%s)", types, g.Name, kind[g.EntraID])
				}
				n++
			}
			if want := min(count[types[0]], directory.MaxGroups); n != want {
				t.Fatalf("range %v: %d groups synced, want %d", types, n, want)
			}
		}
		// Picked by hand, a distribution list and a mail-enabled security group sync.
		var picked []string
		for _, k := range []string{"distribution", "mailSecurity"} {
			for id, kk := range kind {
				if kk == k {
					picked = append(picked, id)
					break
				}
			}
		}
		gs := syncer.DefaultGroupSettings()
		gs.Enabled, gs.Range, gs.GroupIDs, gs.DeleteOutOfRange = true, syncer.RangeGroups, picked, true
		b.saveGroups(gs)
		b.mustSucceed(b.run(syncer.RunOptions{}))
		got := b.groups()
		if len(got) != 2 || got[picked[0]].EntraID == "" || got[picked[1]].EntraID == "" {
			t.Fatalf("picked DL and mail-enabled security group: %+v", got)
		}
	})
}

// Under the cap, a synced group that leaves Entra frees its slot for the
// next group by name, read incrementally (one member read for the newcomer);
// local groups keep their slots.
func TestGroupSyncCapRefill(t *testing.T) {
	backends(t, func(t *testing.T, db func(testing.TB) string) {
		b := newBundle(t, opts{users: 1, db: db(t)})
		u := b.people("cr", 2, nil)
		for i := range 3 {
			if err := b.store.CreateGroup(t.Context(), "default", &directory.Group{Name: fmt.Sprintf("Local %d", i), Source: directory.SourceLocal, Members: []string{}}); err != nil {
				t.Fatal(err)
			}
		}
		var ids []string
		for i := range 62 {
			ids = append(ids, b.group(fmt.Sprintf("Cap %02d", i), u[i%2]))
		}
		us := defaults()
		us.DeleteGuard = loose()
		b.save(us)
		gs := syncer.DefaultGroupSettings()
		gs.Enabled, gs.DeleteOutOfRange = true, true
		b.saveGroups(gs)
		got := b.groups()
		if len(got) != directory.MaxGroups {
			t.Fatalf("%d groups", len(got))
		}
		for _, id := range ids[60:] {
			if _, ok := got[id]; ok {
				t.Fatalf("group over the cap synced: %s", got[id].Name)
			}
		}
		// Cap 05 is deleted in Entra: Cap 60 (next by name) takes its slot.
		b.graphDo(http.MethodDelete, "/groups/"+ids[5], nil)
		b.tenant.ResetStats()
		r := b.mustSucceed(b.run(syncer.RunOptions{}))
		by, total := b.requests()
		t.Logf("cap refill run: %d requests %v", total, by)
		got = b.groups()
		if _, ok := got[ids[60]]; !ok || r.GroupsDeleted != 1 || r.GroupsCreated != 1 || r.GroupsRead != "delta" || membersCalls(by) != 1 {
			t.Fatalf("refill: deleted %d created %d read %q, member reads %d", r.GroupsDeleted, r.GroupsCreated, r.GroupsRead, membersCalls(by))
		}
		if m := b.members(got[ids[60]]); !slices.Equal(m, emails("cr", 1)) {
			t.Fatalf("Cap 60 members %v", m)
		}
		if _, ok := got[ids[61]]; ok {
			t.Fatal("Cap 61 synced past the cap")
		}
		// Stable: another run changes nothing.
		r = b.mustSucceed(b.run(syncer.RunOptions{}))
		if r.GroupsCreated+r.GroupsDeleted+r.GroupsUpdated != 0 {
			t.Fatalf("churn: %+v", r)
		}
	})
}

// A large group's members@delta arrives in slices over several pages (here
// 4 a page): the slices are merged, on the full round and on delta rounds.
func TestGroupSyncMemberSlices(t *testing.T) {
	backends(t, func(t *testing.T, db func(testing.TB) string) {
		b := newBundle(t, opts{users: 1, membersPerPage: 4, db: db(t)})
		u := b.people("sl", 14, nil)
		big := b.group("Big", u[:10]...)
		small := b.group("Small", u[10])
		b.save(defaults())
		gs := syncer.DefaultGroupSettings()
		gs.Enabled, gs.Range, gs.GroupIDs = true, syncer.RangeGroups, []string{big, small}
		b.tenant.ResetStats()
		b.saveGroups(gs)
		if by, _ := b.requests(); by["GET /v1.0/groups/delta"] < 3 {
			t.Fatalf("the full round did not span pages: %v", by)
		}
		if m := b.members(b.groups()[big]); !slices.Equal(m, emails("sl", 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)) {
			t.Fatalf("Big members after the full round %v", m)
		}
		for _, x := range u[10:] {
			b.addMember(big, x)
		}
		for _, x := range u[:3] {
			b.removeMember(big, x)
		}
		b.addMember(small, u[11])
		b.tenant.ResetStats()
		r := b.mustSucceed(b.run(syncer.RunOptions{}))
		by, _ := b.requests()
		t.Logf("delta round over slices: %v", by)
		if r.GroupsRead != "delta" || r.GroupsUpdated != 2 || by["GET /v1.0/groups/delta"] < 2 || membersCalls(by) != 0 {
			t.Fatalf("delta: read %q updated %d %v", r.GroupsRead, r.GroupsUpdated, by)
		}
		if m := b.members(b.groups()[big]); !slices.Equal(m, emails("sl", 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14)) {
			t.Fatalf("Big members after the delta round %v", m)
		}
		if m := b.members(b.groups()[small]); !slices.Equal(m, emails("sl", 11, 12)) {
			t.Fatalf("Small members after the delta round %v", m)
		}
	})
}
