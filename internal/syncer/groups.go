package syncer

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
		for _, g := range groups {
			if g.Synced() {
				if err := e.Store.DeleteGroup(ctx, pbx, g.ID, nil); err != nil && !errors.Is(err, store.ErrNotFound) {
					return err
				}
				w.GroupsDeleted++
			}
		}
		w.note("group sync paused; %d synced extension groups deleted", w.GroupsDeleted)
		return nil
	})
}

func groupInRange(g *GroupSettings, x graph.Group) bool {
	switch g.Range {
	case RangeAll:
		return true
	case RangeType:
		mail := x.MailEnabled != nil && *x.MailEnabled
		for _, t := range g.GroupTypes {
			switch {
			case t == GroupTypeMicrosoft365 && x.IsUnified():
				return true
			case t == GroupTypeSecurity && x.IsSecurity() && !mail:
				return true
			}
		}
		return false
	case RangeGroups:
		return slices.Contains(g.GroupIDs, x.ID)
	}
	return false
}

// syncGroups is the group phase of a run: every synced Entra group in range
// becomes an extension group whose members are the group's synced users.
// At most directory.MaxGroups groups exist on a PBX (local ones count); the
// groups that fit are chosen in a stable order (groups already synced first,
// then by name), and the others are skipped by name.
func (e *Engine) syncGroups(ctx context.Context, pbx string, w *Run, gs GroupSettings, c *graph.Client) error {
	var inRange []graph.Group
	n := 0
	for x, err := range c.ListGroups(ctx, graph.ListOptions{Top: 999}) {
		if err != nil {
			return &stepError{code: "read_failed", err: fmt.Errorf("reading groups from Entra failed, no group was changed: %w", err)}
		}
		n++
		if groupInRange(&gs, x) {
			inRange = append(inRange, x)
		}
	}
	w.GraphRequests += 1 + n/999
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
	slices.SortFunc(inRange, func(a, b graph.Group) int {
		_, sa := synced[a.ID]
		_, sb := synced[b.ID]
		switch {
		case sa && !sb:
			return -1
		case sb && !sa:
			return 1
		}
		return cmp.Or(cmp.Compare(strings.ToLower(a.DisplayName), strings.ToLower(b.DisplayName)), cmp.Compare(a.ID, b.ID))
	})
	room := max(directory.MaxGroups-localCount, 0)
	var chosen []graph.Group
	for _, x := range inRange {
		switch {
		case synced[x.ID] == nil && localNames[strings.ToLower(x.DisplayName)]:
			w.skip(x.DisplayName, x.ID, "not synced: a PBX extension group with this name already exists")
		case len(chosen) < room:
			chosen = append(chosen, x)
		default:
			w.skip(x.DisplayName, x.ID, fmt.Sprintf("not synced: a PBX holds at most %d extension groups (%d are local PBX groups)", directory.MaxGroups, localCount))
		}
	}
	// Members: the synced users among each chosen group's members.
	extByEntra := map[string]string{}
	if err := e.Store.ListAllExtensions(ctx, pbx, func(x *directory.Extension) error {
		if x.Synced() {
			extByEntra[x.EntraID] = x.ID
		}
		return nil
	}); err != nil {
		return err
	}
	var acts []Action
	want := map[string]bool{}
	type change struct {
		g    *directory.Group
		a    Action
		kind string
	}
	var changes []change
	for _, x := range chosen {
		want[x.ID] = true
		members := []string{}
		m := 0
		for o, err := range c.GroupMembers(ctx, x.ID, gs.GroupMembers == MembersTransitive, graph.ListOptions{Top: 999, Select: []string{"id"}}) {
			if err != nil {
				return &stepError{code: "read_failed", err: fmt.Errorf("reading members of group %s failed, no group was changed: %w", x.DisplayName, err)}
			}
			m++
			if id, ok := extByEntra[o.ID]; ok && o.IsUser() {
				members = append(members, id)
			}
		}
		w.GraphRequests += 1 + m/999
		slices.Sort(members)
		members = slices.Compact(members)
		if old := synced[x.ID]; old != nil {
			var what []string
			if old.Name != x.DisplayName {
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
			ng.Name, ng.Members = x.DisplayName, members
			a := Action{Op: OpGroupUpdate, Subject: x.DisplayName, EntraID: x.ID, ExtensionID: old.ID, Changes: what}
			changes = append(changes, change{g: &ng, a: a, kind: "update"})
			continue
		}
		ng := &directory.Group{Name: x.DisplayName, Source: directory.SourceEntra, EntraID: x.ID, Members: members}
		changes = append(changes, change{g: ng, a: Action{Op: OpGroupCreate, Subject: x.DisplayName, EntraID: x.ID}, kind: "create"})
	}
	for id, old := range synced {
		if want[id] {
			continue
		}
		reason := "no longer in the group sync range (or deleted in Entra, or over the 63-group limit)"
		if gs.DeleteOutOfRange {
			changes = append(changes, change{g: old, a: Action{Op: OpGroupDelete, Subject: old.Name, EntraID: id, ExtensionID: old.ID, Reason: reason}, kind: "delete"})
		} else {
			changes = append(changes, change{g: old, a: Action{Op: OpGroupRelease, Subject: old.Name, EntraID: id, ExtensionID: old.ID, Reason: reason + ": now an ordinary PBX group"}, kind: "release"})
		}
	}
	// Deletions and releases first (they free room and names), then updates, then creations.
	order := map[string]int{"delete": 0, "release": 1, "update": 2, "create": 3}
	slices.SortStableFunc(changes, func(a, b change) int { return order[a.kind] - order[b.kind] })
	for _, ch := range changes {
		acts = append(acts, ch.a)
		if w.DryRun {
			switch ch.kind {
			case "create":
				w.GroupsCreated++
			case "update":
				w.GroupsUpdated++
			case "release":
				w.GroupsReleased++
			case "delete":
				w.GroupsDeleted++
			}
			continue
		}
		var err error
		switch ch.kind {
		case "delete":
			err = e.Store.DeleteGroup(ctx, pbx, ch.g.ID, nil)
			if err == nil {
				w.GroupsDeleted++
			}
		case "release":
			_, err = e.Store.UpdateGroup(ctx, pbx, ch.g.ID, func(g *directory.Group) error {
				g.Source, g.EntraID = directory.SourceLocal, ""
				return nil
			})
			if err == nil {
				w.GroupsReleased++
			}
		case "update":
			_, err = e.Store.UpdateGroup(ctx, pbx, ch.g.ID, func(g *directory.Group) error {
				g.Name, g.Members = ch.g.Name, ch.g.Members
				return nil
			})
			if err == nil {
				w.GroupsUpdated++
			}
		case "create":
			err = e.Store.CreateGroup(ctx, pbx, ch.g)
			if err == nil {
				w.GroupsCreated++
			}
		}
		if err != nil {
			if !itemError(err) && !errors.Is(err, directory.ErrGroupLimit) {
				return &stepError{code: "apply_failed", err: fmt.Errorf("group %s: %w", ch.a.Subject, err)}
			}
			w.skip(ch.a.Subject, ch.a.EntraID, "not applied ("+ch.a.Op+"): "+err.Error())
		}
	}
	if w.DryRun {
		w.Plan = append(w.Plan, acts[:min(len(acts), maxPlanKept)]...)
		w.PlanTotal += len(acts)
	}
	return nil
}
