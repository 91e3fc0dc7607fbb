package syncer_test

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/syncer"
)

func (b *bundle) groups() map[string]directory.Group {
	b.t.Helper()
	gs, err := b.store.ListGroups(b.t.Context(), "default")
	if err != nil {
		b.t.Fatal(err)
	}
	out := map[string]directory.Group{}
	for _, g := range gs {
		key := g.EntraID
		if key == "" {
			key = "local:" + g.Name
		}
		out[key] = g
	}
	return out
}

func (b *bundle) saveGroups(g syncer.GroupSettings) {
	b.t.Helper()
	if _, err := b.eng.SaveGroupSettings(b.t.Context(), "default", "test", g); err != nil {
		b.t.Fatalf("SaveGroupSettings: %v", err)
	}
	b.eng.Wait()
}

func (b *bundle) members(g directory.Group) []string {
	var out []string
	exts := b.extensions()
	for _, id := range g.Members {
		for _, e := range exts {
			if e.ID == id {
				out = append(out, e.Email)
			}
		}
	}
	slices.Sort(out)
	return out
}

func TestGroupSync(t *testing.T) {
	for _, autoDelete := range []bool{false, true} {
		t.Run(fmt.Sprintf("deleteOutOfRange=%t", autoDelete), func(t *testing.T) {
			backends(t, func(t *testing.T, db func(testing.TB) string) {
				b := newBundle(t, opts{users: 1, db: db(t)})
				u := b.people("gm", 5, nil)
				inner := b.group("Inner", u[3])
				g1 := b.group("Sales", u[0], u[1])
				g2 := b.group("Support", u[2], inner)
				b.save(defaults())
				if err := b.store.CreateGroup(t.Context(), "default", &directory.Group{Name: "Local Team", Source: directory.SourceLocal, Members: []string{}}); err != nil {
					t.Fatal(err)
				}
				clash := b.group("Local Team", u[4]) // same name as a local PBX group
				gs := syncer.DefaultGroupSettings()
				gs.Enabled, gs.Range, gs.GroupIDs, gs.DeleteOutOfRange = true, syncer.RangeGroups, []string{g1, g2, clash}, autoDelete
				b.saveGroups(gs)
				runs, _ := b.eng.ListRuns(t.Context(), "default")
				if r := must(b.eng.GetRun(t.Context(), "default", runs[0].ID)); !slices.ContainsFunc(skipsFor(r, clash), func(s string) bool {
					return strings.Contains(s, "with this name already exists")
				}) {
					t.Fatalf("name clash not reported: %+v", r.Skipped)
				}
				gs.GroupIDs = []string{g1, g2}
				b.saveGroups(gs)
				got := b.groups()
				if len(got) != 3 || got[g1].Name != "Sales" || got[g1].EntraID != g1 {
					t.Fatalf("groups: %+v", got)
				}
				if m := b.members(got[g1]); !slices.Equal(m, []string{"gm1@contoso.com", "gm2@contoso.com"}) {
					t.Fatalf("Sales members %v", m)
				}
				if m := b.members(got[g2]); !slices.Equal(m, []string{"gm3@contoso.com"}) {
					t.Fatalf("Support direct members %v", m)
				}
				b.assertGroupLocked(got[g1])
				// Transitive members.
				gs.GroupMembers = syncer.MembersTransitive
				b.saveGroups(gs)
				b.mustSucceed(b.run(syncer.RunOptions{}))
				if m := b.members(b.groups()[g2]); !slices.Equal(m, []string{"gm3@contoso.com", "gm4@contoso.com"}) {
					t.Fatalf("Support transitive members %v", m)
				}
				// Rename, member added and removed in Entra.
				b.graphDo(http.MethodPatch, "/groups/"+g1, map[string]any{"displayName": "Sales EMEA"})
				b.graphDo(http.MethodPost, "/groups/"+g1+"/members/$ref", map[string]any{"@odata.id": b.srv.URL + "/v1.0/directoryObjects/" + u[4]})
				b.graphDo(http.MethodDelete, "/groups/"+g1+"/members/"+u[0]+"/$ref", nil)
				r := b.mustSucceed(b.run(syncer.RunOptions{}))
				if r.GroupsUpdated != 1 || r.GroupsRead != "delta" {
					t.Fatalf("groups updated %d, read %q", r.GroupsUpdated, r.GroupsRead)
				}
				s := b.groups()[g1]
				if s.Name != "Sales EMEA" || !slices.Equal(b.members(s), []string{"gm2@contoso.com", "gm5@contoso.com"}) {
					t.Fatalf("after rename and member changes: %s %v", s.Name, b.members(s))
				}
				// Dry run shows group steps without writing.
				b.graphDo(http.MethodDelete, "/groups/"+g2, nil)
				d := b.run(syncer.RunOptions{DryRun: true})
				if d.State != syncer.StateDryRun || d.GroupsDeleted+d.GroupsReleased != 1 || len(b.groups()) != 3 {
					t.Fatalf("dry run: %+v", d)
				}
				wantOp, wantPending := syncer.OpGroupRelease, 0
				if autoDelete {
					wantOp, wantPending = syncer.OpGroupDelete, 1 // the guard would hold it
				}
				if !slices.ContainsFunc(d.Plan, func(a syncer.Action) bool {
					return a.Op == wantOp && a.Subject == "Support" && strings.HasPrefix(a.Reason, "deleted in Entra")
				}) || d.PendingGroupDeletes != wantPending {
					t.Fatalf("dry run plan %+v, pending group deletes %d", d.Plan, d.PendingGroupDeletes)
				}
				// Deleted in Entra: removed (past the deletion guard: 1 of 2
				// synced groups needs confirmation) or released by the same setting.
				if autoDelete {
					r = b.confirmGroupDeletes(1)
				} else {
					r = b.mustSucceed(b.run(syncer.RunOptions{}))
				}
				if r.GroupsRead != "delta" {
					t.Fatalf("group deletion read %q, want delta", r.GroupsRead)
				}
				x, ok := b.groups()[g2]
				if autoDelete {
					if ok || r.GroupsDeleted != 1 {
						t.Fatalf("deleted group kept: %+v", x)
					}
				} else if _, kept := b.groups()["local:Support"]; !kept || r.GroupsReleased != 1 {
					t.Fatalf("deleted group not released: %+v", b.groups())
				}
				// Range change: Sales leaves the range.
				gs.GroupIDs = []string{inner}
				b.saveGroups(gs)
				if autoDelete {
					b.confirmGroupDeletes(1) // 1 of 1 synced group
				} else {
					b.mustSucceed(b.run(syncer.RunOptions{}))
				}
				got = b.groups()
				if _, ok := got[g1]; ok {
					t.Fatal("Sales still synced after leaving the range")
				}
				rel, ok := got["local:Sales EMEA"]
				if ok == autoDelete {
					t.Fatalf("range change with auto-delete %t: %+v", autoDelete, got)
				}
				// Released: an ordinary PBX group, editable and deletable by hand.
				if ok && (directory.CheckManualGroupEdit(&rel) != nil || directory.CheckManualGroupDelete(&rel) != nil) {
					t.Fatalf("released group still locked: %+v", rel)
				}
				if got[inner].Name != "Inner" {
					t.Fatalf("Inner not synced: %+v", got)
				}
			})
		})
	}
}

func ptr[T any](v T) *T { return &v }

// assertGroupLocked checks that hand edits and deletes of a synced group are
// refused through the store with the API's checks, and change nothing.
func (b *bundle) assertGroupLocked(g directory.Group) {
	b.t.Helper()
	ctx := b.t.Context()
	_, err := b.store.UpdateGroup(ctx, "default", g.ID, func(x *directory.Group) error {
		if err := directory.CheckManualGroupEdit(x); err != nil {
			return err
		}
		x.Name = "Hand edited"
		return nil
	})
	if !errors.Is(err, directory.ErrLocked) {
		b.t.Fatalf("hand edit of synced group %q: %v", g.Name, err)
	}
	if err := b.store.DeleteGroup(ctx, "default", g.ID, directory.CheckManualGroupDelete); !errors.Is(err, directory.ErrLocked) {
		b.t.Fatalf("hand delete of synced group %q: %v", g.Name, err)
	}
	if now := b.groups()[g.EntraID]; now.Name != g.Name {
		b.t.Fatalf("locked group changed: %+v", now)
	}
}

// confirmGroupDeletes runs a sync that the deletion guard must hold for
// pending group deletions, confirms it and returns the confirming run.
func (b *bundle) confirmGroupDeletes(pending int) *syncer.Run {
	b.t.Helper()
	runs, err := b.eng.ListRuns(b.t.Context(), "default")
	if err != nil {
		b.t.Fatal(err)
	}
	held := &runs[0]
	if held.State != syncer.StateNeedsConfirmation {
		held = b.run(syncer.RunOptions{})
	}
	if held.State != syncer.StateNeedsConfirmation || held.PendingGroupDeletes != pending {
		b.t.Fatalf("run %s: state %s, pending group deletes %d (want %d), notes %v", held.ID, held.State, held.PendingGroupDeletes, pending, held.Notes)
	}
	before := b.groups()
	again := b.run(syncer.RunOptions{})
	if again.State != syncer.StateNeedsConfirmation || len(b.groups()) != len(before) {
		b.t.Fatalf("a second run went past the guard: %s, groups %d -> %d", again.State, len(before), len(b.groups()))
	}
	r, err := b.eng.Confirm(b.t.Context(), "default", again.ID, "test")
	if err != nil {
		b.t.Fatal(err)
	}
	b.mustSucceed(r)
	if r.GroupsDeleted != pending {
		b.t.Fatalf("confirmed run deleted %d groups, want %d", r.GroupsDeleted, pending)
	}
	return r
}

func TestGroupSyncCapAndTypes(t *testing.T) {
	backends(t, func(t *testing.T, db func(testing.TB) string) {
		b := newBundle(t, opts{users: 30, groups: 80, db: db(t)})
		us := defaults()
		us.DeleteGuard = loose() // range changes below delete most groups
		b.save(us)
		for i := range 5 {
			if err := b.store.CreateGroup(t.Context(), "default", &directory.Group{Name: fmt.Sprintf("Local %d", i), Source: directory.SourceLocal, Members: []string{}}); err != nil {
				t.Fatal(err)
			}
		}
		gs := syncer.DefaultGroupSettings()
		gs.Enabled = true
		b.saveGroups(gs)
		runs, _ := b.eng.ListRuns(t.Context(), "default")
		r := must(b.eng.GetRun(t.Context(), "default", runs[0].ID))
		all := b.groups()
		synced := 0
		for _, g := range all {
			if g.Synced() {
				synced++
			}
		}
		if len(all) != directory.MaxGroups || synced != 58 {
			t.Fatalf("%d groups, %d synced", len(all), synced)
		}
		capped := 0
		for _, s := range r.Skipped {
			if strings.Contains(s.Reason, "at most 63") {
				capped++
			}
		}
		if capped != 22 {
			t.Fatalf("%d groups reported over the cap, want 22", capped)
		}
		// Stable: the next run keeps the same groups.
		r2 := b.mustSucceed(b.run(syncer.RunOptions{}))
		if r2.GroupsCreated+r2.GroupsDeleted+r2.GroupsReleased != 0 {
			t.Fatalf("second run churned groups: %+v", r2)
		}
		// Range by type: Microsoft 365 groups only.
		gs.Range, gs.GroupTypes, gs.DeleteOutOfRange = syncer.RangeType, []string{"microsoft365"}, true
		b.saveGroups(gs)
		b.mustSucceed(b.run(syncer.RunOptions{}))
		for _, g := range b.groups() {
			if g.Synced() && (strings.HasSuffix(g.Name, "Security") || strings.HasSuffix(g.Name, " DL")) {
				t.Fatalf("group %q synced under range microsoft365", g.Name)
			}
		}
	})
}

func TestGroupSyncPause(t *testing.T) {
	for _, del := range []bool{false, true} {
		t.Run(fmt.Sprintf("deleteGroups=%t", del), func(t *testing.T) {
			backends(t, func(t *testing.T, db func(testing.TB) string) {
				b := newBundle(t, opts{users: 1, db: db(t)})
				u := b.people("gp", 2, nil)
				g := b.group("Pausers", u...)
				b.save(defaults())
				gs := syncer.DefaultGroupSettings()
				gs.Enabled, gs.Range, gs.GroupIDs = true, syncer.RangeGroups, []string{g}
				b.saveGroups(gs)
				if _, err := b.eng.PauseGroups(t.Context(), "default", "test", del); err != nil {
					t.Fatal(err)
				}
				x, ok := b.groups()[g]
				if ok == del {
					t.Fatalf("after pause (delete %t): present %t", del, ok)
				}
				if !del {
					b.assertGroupLocked(x)
				}
				got, paused, _ := b.eng.GroupSettings(t.Context(), "default")
				if !paused || got.Range != syncer.RangeGroups {
					t.Fatalf("paused %t %+v", paused, got)
				}
				gs2 := gs
				gs2.Enabled, gs2.DeleteOutOfRange = false, true
				if _, err := b.eng.SaveGroupSettings(t.Context(), "default", "test", gs2); !errorsIsLocked(err) {
					t.Fatalf("change while paused: %v", err)
				}
				// User sync goes on; the groups do not change while paused.
				b.graphDo(http.MethodPatch, "/groups/"+g, map[string]any{"displayName": "Renamed"})
				b.mustSucceed(b.run(syncer.RunOptions{}))
				if y, ok := b.groups()[g]; ok && y.Name != "Pausers" {
					t.Fatal("a paused group sync renamed the group")
				}
				b.saveGroups(gs) // resume
				if y := b.groups()[g]; y.Name != "Renamed" {
					t.Fatalf("after resume: %+v", b.groups())
				}
			})
		})
	}
}
