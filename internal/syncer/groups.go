package syncer

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/graph"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// Setting keys of group sync.
const (
	keyGroupSettings = "sync.group-settings"
	keyGroupState    = "sync.group-state"
)

// Group types of the group range "type" (graph-facts section 4).
const (
	GroupTypeSecurity     = "security"     // security groups: not mail-enabled, not Microsoft 365
	GroupTypeMicrosoft365 = "microsoft365" // groupTypes contains Unified
)

// Group plan operations.
const (
	OpGroupCreate  = "group.create"
	OpGroupUpdate  = "group.update"
	OpGroupRelease = "group.release"
	OpGroupDelete  = "group.delete"
)

// GroupSettings are the group-sync settings (PUT /api/v1/integration/group-sync).
type GroupSettings struct {
	Enabled          bool     `json:"enabled"`
	Range            string   `json:"range"` // all | type | groups
	GroupTypes       []string `json:"groupTypes"`
	GroupIDs         []string `json:"groupIds"`
	GroupMembers     string   `json:"groupMembers,omitempty"` // direct (default) | transitive
	DeleteOutOfRange bool     `json:"deleteOutOfRange"`
}

// DefaultGroupSettings are what GET returns before the first save.
func DefaultGroupSettings() GroupSettings {
	return GroupSettings{Range: RangeAll, GroupTypes: []string{}, GroupIDs: []string{}, GroupMembers: MembersDirect}
}

func (g *GroupSettings) normalize() error {
	switch g.Range {
	case RangeAll, RangeType, RangeGroups:
	case "":
		return fe("range", "required", "is required: all, type or groups")
	default:
		return fe("range", "invalid", "must be all, type or groups")
	}
	if g.GroupTypes == nil {
		g.GroupTypes = []string{}
	}
	for i, t := range g.GroupTypes {
		switch strings.ToLower(t) {
		case GroupTypeSecurity, GroupTypeMicrosoft365:
			g.GroupTypes[i] = strings.ToLower(t)
		default:
			return fe(fmt.Sprintf("groupTypes[%d]", i), "invalid", "must be security or microsoft365")
		}
	}
	g.GroupTypes = dedupe(g.GroupTypes)
	if g.Range == RangeType && len(g.GroupTypes) == 0 {
		return fe("groupTypes", "required", "choose at least one group type for range type")
	}
	if g.GroupIDs == nil {
		g.GroupIDs = []string{}
	}
	for i, id := range g.GroupIDs {
		if !validID(id) {
			return fe(fmt.Sprintf("groupIds[%d]", i), "invalid", "must be a group object id")
		}
	}
	g.GroupIDs = dedupe(g.GroupIDs)
	if g.Range == RangeGroups && len(g.GroupIDs) == 0 {
		return fe("groupIds", "required", "choose at least one group for range groups")
	}
	switch g.GroupMembers {
	case "":
		g.GroupMembers = MembersDirect
	case MembersDirect, MembersTransitive:
	default:
		return fe("groupMembers", "invalid", "must be direct or transitive")
	}
	return nil
}

func (e *Engine) loadGroupSettings(ctx context.Context, pbx string) (GroupSettings, bool, error) {
	b, err := e.Store.GetSetting(ctx, pbx, keyGroupSettings)
	if errors.Is(err, store.ErrNotFound) {
		return DefaultGroupSettings(), false, nil
	}
	if err != nil {
		return GroupSettings{}, false, err
	}
	var g GroupSettings
	if err := json.Unmarshal(b, &g); err != nil {
		return GroupSettings{}, false, fmt.Errorf("syncer: stored group settings: %w", err)
	}
	if err := g.normalize(); err != nil {
		return GroupSettings{}, false, fmt.Errorf("syncer: stored group settings: %w", err)
	}
	return g, true, nil
}

func (e *Engine) loadGroupState(ctx context.Context, pbx string) (userState, error) {
	var st userState
	b, err := e.Store.GetSetting(ctx, pbx, keyGroupState)
	if errors.Is(err, store.ErrNotFound) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

func (e *Engine) setGroupPaused(ctx context.Context, pbx string, paused bool) error {
	return e.Store.UpdateSetting(ctx, pbx, keyGroupState, func([]byte) ([]byte, error) {
		return json.Marshal(userState{Paused: paused})
	})
}

// ErrGroupsPaused: group sync is paused; its settings are locked until it is switched on again.
var ErrGroupsPaused = &directory.LockedError{Reason: "group sync is paused: its settings are kept and locked; switch it on again (enabled: true) to change them"}

// GroupSettings returns the stored group-sync settings and whether group sync is paused.
func (e *Engine) GroupSettings(ctx context.Context, pbx string) (GroupSettings, bool, error) {
	g, _, err := e.loadGroupSettings(ctx, pbx)
	if err != nil {
		return g, false, err
	}
	st, err := e.loadGroupState(ctx, pbx)
	return g, st.Paused, err
}

// SaveGroupSettings validates and stores the group-sync settings; a save that
// switches group sync on starts a sync at once (its run id is returned).
func (e *Engine) SaveGroupSettings(ctx context.Context, pbx, actor string, g GroupSettings) (string, error) {
	if err := g.normalize(); err != nil {
		return "", err
	}
	st, err := e.loadGroupState(ctx, pbx)
	if err != nil {
		return "", err
	}
	if st.Paused && !g.Enabled {
		return "", ErrGroupsPaused
	}
	var wasEnabled bool
	if err := e.Store.UpdateSetting(ctx, pbx, keyGroupSettings, func(old []byte) ([]byte, error) {
		var prev GroupSettings
		if old != nil && json.Unmarshal(old, &prev) == nil {
			wasEnabled = prev.Enabled
		}
		return json.Marshal(g)
	}); err != nil {
		return "", err
	}
	switch {
	case g.Enabled && st.Paused:
		if err := e.setGroupPaused(ctx, pbx, false); err != nil {
			return "", err
		}
	case !g.Enabled && wasEnabled:
		if err := e.setGroupPaused(ctx, pbx, true); err != nil {
			return "", err
		}
	}
	e.PBX.Audit(ctx, pbx, actor, "sync.group_settings.save", "group-sync", fmt.Sprintf("range=%s enabled=%t", g.Range, g.Enabled))
	if wasEnabled || !g.Enabled {
		return "", nil
	}
	r, err := e.Start(ctx, pbx, RunOptions{Trigger: TriggerInitial, Actor: actor})
	if err != nil {
		return "", err
	}
	return r.ID, nil
}

// PauseGroups pauses group sync: settings kept and locked; with deleteGroups
// the synced extension groups are deleted, otherwise they stay (locked).
func (e *Engine) PauseGroups(ctx context.Context, pbx, actor string, deleteGroups bool) (*Run, error) {
	return e.exclusive(ctx, pbx, RunOptions{Trigger: TriggerPause}, func(w *Run) error {
		w.Read = "none"
		if err := e.Store.UpdateSetting(ctx, pbx, keyGroupSettings, func(old []byte) ([]byte, error) {
			if old == nil {
				return nil, ErrDisabled
			}
			var g GroupSettings
			if err := json.Unmarshal(old, &g); err != nil {
				return nil, err
			}
			g.Enabled = false
			return json.Marshal(g)
		}); err != nil {
			return err
		}
		if err := e.setGroupPaused(ctx, pbx, true); err != nil {
			return err
		}
		e.PBX.Audit(ctx, pbx, actor, "sync.group.pause", "group-sync", fmt.Sprintf("deleteGroups=%t", deleteGroups))
		if !deleteGroups {
			w.note("group sync paused; synced extension groups kept (still locked)")
			return nil
		}
		groups, err := e.Store.ListGroups(ctx, pbx)
		if err != nil {
			return err
		}
		fctx := store.WithFence(ctx, pbx, e.leaseFence(w.ID)) // deletes land only while this run holds the lease
		for _, g := range groups {
			if g.Synced() {
				if err := e.Store.DeleteGroup(fctx, pbx, g.ID, nil); err != nil && !errors.Is(err, store.ErrNotFound) {
					return err
				}
				w.GroupsDeleted++
			}
		}
		w.note("group sync paused; %d synced extension groups deleted", w.GroupsDeleted)
		return nil
	})
}

// groupInRange applies the group range to a group of the mirror. Range
// "type" tells the kinds apart as graph-facts section 4 does: security means
// security-enabled, not mail-enabled and not Microsoft 365, so distribution
// lists and mail-enabled security groups are in neither type (they are synced
// only under range all, or when picked by hand).
func groupInRange(g *GroupSettings, id string, m *groupMeta) bool {
	switch g.Range {
	case RangeAll:
		return true
	case RangeType:
		for _, t := range g.GroupTypes {
			switch {
			case t == GroupTypeMicrosoft365 && m.Unified:
				return true
			case t == GroupTypeSecurity && m.Security && !m.Mail && !m.Unified:
				return true
			}
		}
		return false
	case RangeGroups:
		return slices.Contains(g.GroupIDs, id)
	}
	return false
}

// syncGroups is the group phase of a run: every Entra group in range becomes
// an extension group whose members are the group's synced users.
//
// Groups are read through the group mirror (groupdelta.go): a /groups/delta
// round, plus a direct member read for a group newly needed. At most
// directory.MaxGroups groups exist on a PBX (local ones count); the groups
// that fit are chosen in a stable order (groups already synced first, then
// by name, then by id), and the others are skipped by name.
//
// Deleting extension groups goes through the same deletion guard as deleting
// extensions (the user-sync settings' deleteGuard, counted against the synced
// extension groups): a run that would delete more than maxPercent of them (or
// more than maxCount) applies no group change and waits for confirmation.
// Releases (auto-delete off) are not guarded: nothing is lost.
func (e *Engine) syncGroups(ctx context.Context, pbx string, opt RunOptions, w *Run, gs GroupSettings, guard UserSettings, c *graph.Client) error {
	rd, err := e.readGroupsDelta(ctx, pbx, c, &gs, w)
	if err != nil {
		return &stepError{code: "read_failed", err: fmt.Errorf("reading groups from Entra failed, no group was changed: %w", err)}
	}
	w.GroupsRead = rd.mode
	w.GraphRequests += rd.requests
	d := rd.doc
	local, err := e.Store.ListGroups(ctx, pbx)
	if err != nil {
		return err
	}
	synced := map[string]*directory.Group{}
	localNames := map[string]bool{}
	localCount := 0
	for i := range local {
		g := &local[i]
		if g.Synced() {
			synced[g.EntraID] = g
		} else {
			localCount++
			localNames[strings.ToLower(g.Name)] = true
		}
	}
	var inRange []string
	for id, m := range d.Groups {
		if groupInRange(&gs, id, m) {
			inRange = append(inRange, id)
		}
	}
	slices.SortFunc(inRange, func(a, b string) int {
		_, sa := synced[a]
		_, sb := synced[b]
		switch {
		case sa && !sb:
			return -1
		case sb && !sa:
			return 1
		}
		return cmp.Or(cmp.Compare(strings.ToLower(d.Groups[a].Name), strings.ToLower(d.Groups[b].Name)), cmp.Compare(a, b))
	})
	room := max(directory.MaxGroups-localCount, 0)
	var chosen []string
	for _, id := range inRange {
		name := d.Groups[id].Name
		switch {
		case synced[id] == nil && localNames[strings.ToLower(name)]:
			w.skip(name, id, "not synced: a PBX extension group with this name already exists")
		case len(chosen) < room:
			chosen = append(chosen, id)
		default:
			w.skip(name, id, fmt.Sprintf("not synced: a PBX holds at most %d extension groups (%d are local PBX groups)", directory.MaxGroups, localCount))
		}
	}
	transitive := gs.GroupMembers == MembersTransitive
	needed, n, err := closeMembers(ctx, c, d, chosen, transitive)
	w.GraphRequests += n
	if err != nil {
		return &stepError{code: "read_failed", err: fmt.Errorf("reading group members from Entra failed, no group was changed: %w", err)}
	}
	// Members: the synced users among each chosen group's (effective) members.
	extByEntra := map[string]string{}
	if err := e.Store.ListAllExtensions(ctx, pbx, func(x *directory.Extension) error {
		if x.Synced() {
			extByEntra[x.EntraID] = x.ID
		}
		return nil
	}); err != nil {
		return err
	}
	want := map[string]bool{}
	type change struct {
		g    *directory.Group
		a    Action
		kind string
	}
	var changes []change
	for _, id := range chosen {
		want[id] = true
		name := d.Groups[id].Name
		members := []string{}
		for _, u := range effectiveUsers(d, id, transitive) {
			if x, ok := extByEntra[u]; ok {
				members = append(members, x)
			}
		}
		slices.Sort(members)
		members = slices.Compact(members)
		if old := synced[id]; old != nil {
			var what []string
			if old.Name != name {
				what = append(what, "name")
			}
			if !slices.Equal(old.Members, members) {
				what = append(what, "members")
			}
			if len(what) == 0 {
				w.GroupsUnchanged++
				continue
			}
			ng := *old
			ng.Name, ng.Members = name, members
			a := Action{Op: OpGroupUpdate, Subject: name, EntraID: id, ExtensionID: old.ID, Changes: what}
			changes = append(changes, change{g: &ng, a: a, kind: "update"})
			continue
		}
		ng := &directory.Group{Name: name, Source: directory.SourceEntra, EntraID: id, Members: members}
		changes = append(changes, change{g: ng, a: Action{Op: OpGroupCreate, Subject: name, EntraID: id}, kind: "create"})
	}
	deletes := 0
	for _, id := range slices.Sorted(maps.Keys(synced)) {
		old := synced[id]
		if want[id] {
			continue
		}
		var reason string
		switch m := d.Groups[id]; {
		case m == nil:
			reason = "deleted in Entra"
		case !groupInRange(&gs, id, m):
			reason = "no longer in the group sync range"
		default:
			reason = fmt.Sprintf("over the %d-group limit", directory.MaxGroups)
		}
		if gs.DeleteOutOfRange {
			deletes++
			changes = append(changes, change{g: old, a: Action{Op: OpGroupDelete, Subject: old.Name, EntraID: id, ExtensionID: old.ID, Reason: reason}, kind: "delete"})
		} else {
			changes = append(changes, change{g: old, a: Action{Op: OpGroupRelease, Subject: old.Name, EntraID: id, ExtensionID: old.ID, Reason: reason + ": now an ordinary PBX group"}, kind: "release"})
		}
	}
	// Deletions and releases first (they free room and names), then updates, then creations.
	order := map[string]int{"delete": 0, "release": 1, "update": 2, "create": 3}
	slices.SortStableFunc(changes, func(a, b change) int { return order[a.kind] - order[b.kind] })
	acts := make([]Action, 0, len(changes))
	for _, ch := range changes {
		acts = append(acts, ch.a)
	}
	keepPlan := func() {
		w.Plan = append(w.Plan, acts[:min(len(acts), maxPlanKept)]...)
		w.PlanTotal += len(acts)
	}

	pct := guard.guardPercent()
	trips := deletes > 0 && (deletes*100 > pct*len(synced) || (guard.DeleteGuard.MaxCount > 0 && deletes > guard.DeleteGuard.MaxCount))
	if trips && opt.ConfirmDeletes && deletes <= opt.AllowGroupDeletes {
		trips = false
	}
	guardText := fmt.Sprintf("it deletes %d of %d synced extension groups (guard: more than %d%%%s)", deletes, len(synced), pct, groupCountLimit(guard))
	if w.DryRun {
		for _, ch := range changes {
			w.countGroup(ch.kind)
		}
		keepPlan()
		if trips {
			w.PendingGroupDeletes = deletes
			w.note("a real run would stop for confirmation before changing groups: %s", guardText)
		}
		return nil
	}
	if trips {
		keepPlan()
		w.PendingGroupDeletes = deletes
		w.State = StateNeedsConfirmation
		w.note("stopped before changing any extension group: %s; confirm the run to apply it (user changes, if any, were applied)", guardText)
		return nil
	}
	// Every group write checks the run's lease in its own transaction.
	fctx := store.WithFence(ctx, pbx, e.leaseFence(w.ID))
	for _, ch := range changes {
		var err error
		switch ch.kind {
		case "delete":
			err = e.Store.DeleteGroup(fctx, pbx, ch.g.ID, nil)
		case "release":
			_, err = e.Store.UpdateGroup(fctx, pbx, ch.g.ID, func(g *directory.Group) error {
				g.Source, g.EntraID = directory.SourceLocal, ""
				return nil
			})
		case "update":
			_, err = e.Store.UpdateGroup(fctx, pbx, ch.g.ID, func(g *directory.Group) error {
				g.Name, g.Members = ch.g.Name, ch.g.Members
				return nil
			})
		case "create":
			err = e.Store.CreateGroup(fctx, pbx, ch.g)
		}
		if err != nil {
			if !itemError(err) && !errors.Is(err, directory.ErrGroupLimit) {
				return &stepError{code: "apply_failed", err: fmt.Errorf("group %s (committed group steps stay; the next run completes the rest): %w", ch.a.Subject, err)}
			}
			w.skip(ch.a.Subject, ch.a.EntraID, "not applied ("+ch.a.Op+"): "+err.Error())
			continue
		}
		w.countGroup(ch.kind)
	}
	// The mirror and its delta link advance only now that the changes are applied.
	if err := e.saveGroupDoc(ctx, pbx, w.ID, d, needed); err != nil {
		return fmt.Errorf("storing the groups delta link: %w", err)
	}
	return nil
}

func (w *Run) countGroup(kind string) {
	switch kind {
	case "create":
		w.GroupsCreated++
	case "update":
		w.GroupsUpdated++
	case "release":
		w.GroupsReleased++
	case "delete":
		w.GroupsDeleted++
	}
}

func groupCountLimit(s UserSettings) string {
	if s.DeleteGuard.MaxCount > 0 {
		return fmt.Sprintf(" or more than %d groups", s.DeleteGuard.MaxCount)
	}
	return ""
}
