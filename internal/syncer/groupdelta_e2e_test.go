//go:build e2e

package syncer_test

import (
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/syncer"
)

// A 5,000-user, 400-group tenant at 20 ms latency, transitive members: the
// first run reads groups in one full delta round; after 20 member changes an
// incremental run reads one delta page and no member list.
func TestLargeTenantGroupsFullThenDelta(t *testing.T) {
	backends(t, func(t *testing.T, db func(testing.TB) string) {
		b := newBundle(t, opts{users: 5000, groups: 400, latency: 20 * time.Millisecond, db: db(t)})
		b.save(defaults())
		gs := syncer.DefaultGroupSettings()
		gs.Enabled, gs.GroupMembers = true, syncer.MembersTransitive
		b.tenant.ResetStats()
		start := time.Now()
		b.saveGroups(gs)
		by, total := b.requests()
		t.Logf("first group run: %s, %d requests %v", time.Since(start), total, by)
		synced := map[string]bool{}
		for id, g := range b.groups() {
			if g.Synced() {
				synced[id] = true
			}
		}
		users := b.tenant.UserList()
		n := 0
		for _, g := range b.tenant.GroupList() {
			if !synced[g.ID] || n >= 10 {
				continue
			}
			b.addMember(g.ID, users[4000+n].ID)
			b.removeMember(g.ID, g.Members[0])
			n++
		}
		b.tenant.ResetStats()
		start = time.Now()
		r := b.mustSucceed(b.run(syncer.RunOptions{}))
		by, total = b.requests()
		t.Logf("incremental run after %d member changes: %s, %d requests %v", 2*n, time.Since(start), total, by)
		if r.GroupsRead != "delta" || r.GroupsUpdated < n || by["GET /v1.0/groups/delta"] != 1 || membersCalls(by) != 0 || total > 3 {
			t.Fatalf("incremental: read %q updated %d, %d requests %v", r.GroupsRead, r.GroupsUpdated, total, by)
		}
	})
}
