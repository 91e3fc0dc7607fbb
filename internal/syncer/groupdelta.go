package syncer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/graph"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// keyDeltaGroups holds the group mirror and the /groups/delta link it is current to.
const keyDeltaGroups = "sync.delta.groups"

// The group mirror.
//
// Group runs read /groups/delta with members@delta. The first run (and any
// run after a change of the group range or member mode, or after Graph
// answered that the delta token expired) reads a full round; later runs
// follow the stored deltaLink and get only the groups that changed, with
// members@delta listing the members that joined or left.
//
// members@delta only carries differences, so the engine keeps what it needs
// to apply them: a mirror, stored with the link in one setting
// (keyDeltaGroups), of
//   - every group's name and type (small: needed to apply the range and the
//     63-group cap, and to choose a replacement when a synced group goes), and
//   - the direct members (user ids and nested group ids) of the groups that
//     matter: the groups chosen for sync, and, when members are transitive,
//     every group nested under them (at any depth).
//
// Transitive membership is computed locally from the mirror: the effective
// users of a chosen group are the users of the group and of every group
// reachable through nested groups (cycles are cut). When a nested group's
// members change, its members@delta updates its entry in the mirror and every
// parent's effective members are recomputed on the same run: no
// /transitiveMembers call is needed. A group that becomes needed while its
// members are not in the mirror (newly in range, room freed under the cap, a
// group newly nested under a chosen one) gets its direct members read once
// with GET /groups/{id}/members (one request per 999 members).
//
// The extension group's members are then the synced extensions among the
// effective users, recomputed from the PBX's extensions on every run: users
// join and leave groups as they are synced and unsynced without any Graph
// request.
//
// The link and the mirror are stored together, and only after the group
// changes are applied (a failed or held run reads the same changes again).
// The plan compares the mirror with the PBX's groups on every run, so a
// change that could not be applied (a name clash, the cap) is retried.

// groupMeta is what the range and the cap need to know of a group.
type groupMeta struct {
	Name     string `json:"n"`
	Unified  bool   `json:"u,omitempty"` // groupTypes contains Unified (Microsoft 365)
	Mail     bool   `json:"m,omitempty"` // mailEnabled
	Security bool   `json:"s,omitempty"` // securityEnabled
}

func (g *groupMeta) merge(x graph.Group) {
	if x.DisplayName != "" {
		g.Name = x.DisplayName
	}
	if x.GroupTypes != nil {
		g.Unified = x.IsUnified()
	}
	if x.MailEnabled != nil {
		g.Mail = *x.MailEnabled
	}
	if x.SecurityEnabled != nil {
		g.Security = *x.SecurityEnabled
	}
}

// groupMembers are a group's direct members (ids of users and of nested groups).
type groupMembers struct {
	Users  map[string]struct{}
	Groups map[string]struct{}
}

func newGroupMembers() *groupMembers {
	return &groupMembers{Users: map[string]struct{}{}, Groups: map[string]struct{}{}}
}

type groupMembersJSON struct {
	Users  []string `json:"u,omitempty"`
	Groups []string `json:"g,omitempty"`
}

func (m *groupMembers) MarshalJSON() ([]byte, error) {
	return json.Marshal(groupMembersJSON{Users: slices.Sorted(maps.Keys(m.Users)), Groups: slices.Sorted(maps.Keys(m.Groups))})
}

func (m *groupMembers) UnmarshalJSON(b []byte) error {
	var j groupMembersJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*m = *newGroupMembers()
	for _, id := range j.Users {
		m.Users[id] = struct{}{}
	}
	for _, id := range j.Groups {
		m.Groups[id] = struct{}{}
	}
	return nil
}

// apply merges one members@delta (or expanded members) list.
func (m *groupMembers) apply(refs []graph.MemberRef) {
	for _, r := range refs {
		if r.ID == "" {
			continue
		}
		if r.Removed != nil {
			delete(m.Users, r.ID)
			delete(m.Groups, r.ID)
			continue
		}
		switch {
		case r.IsUser():
			m.Users[r.ID] = struct{}{}
		case strings.EqualFold(r.ODataType, "#microsoft.graph.group"):
			m.Groups[r.ID] = struct{}{}
		}
		// Contacts, devices and service principals never become extension group members.
	}
}

// groupDoc is the stored mirror and its delta link.
type groupDoc struct {
	Link        string                   `json:"link"`
	Fingerprint string                   `json:"fingerprint"`
	SavedAt     time.Time                `json:"savedAt"`
	Groups      map[string]*groupMeta    `json:"groups"`
	Members     map[string]*groupMembers `json:"members"`
}

// fingerprint covers what decides which groups' members the mirror
// holds: a change starts over with a full read.
func (g *GroupSettings) fingerprint() string {
	x := struct {
		V    int // mirror format
		R    string
		T, I []string
		M    string
	}{1, g.Range, slices.Sorted(slices.Values(g.GroupTypes)), slices.Sorted(slices.Values(g.GroupIDs)), g.GroupMembers}
	b, _ := json.Marshal(x)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// groupRead is the outcome of reading groups from Entra.
type groupRead struct {
	doc      *groupDoc
	mode     string // full | delta
	requests int
}

// loadGroupDoc returns the stored mirror when it was made for these settings.
func (e *Engine) loadGroupDoc(ctx context.Context, pbx string, gs *GroupSettings) (*groupDoc, error) {
	b, err := e.Store.GetSetting(ctx, pbx, keyDeltaGroups)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var d groupDoc
	if json.Unmarshal(b, &d) != nil || d.Link == "" || d.Fingerprint != gs.fingerprint() || d.Groups == nil {
		return nil, nil
	}
	if d.Members == nil {
		d.Members = map[string]*groupMembers{}
	}
	return &d, nil
}

// saveGroupDoc stores the mirror with its link, keeping only the members the
// chosen groups need; only while run holds the PBX's lease.
func (e *Engine) saveGroupDoc(ctx context.Context, pbx, run string, d *groupDoc, needed map[string]bool) error {
	for id := range d.Members {
		if !needed[id] {
			delete(d.Members, id)
		}
	}
	d.SavedAt = e.now()
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	return e.Store.UpdateSettingFenced(ctx, pbx, keyDeltaGroups, e.leaseFence(run), func([]byte) ([]byte, error) { return b, nil })
}

// readGroupsDelta brings the mirror up to date: a delta round from the stored
// link, or a full round when there is none or it expired.
func (e *Engine) readGroupsDelta(ctx context.Context, pbx string, c *graph.Client, gs *GroupSettings, w *Run) (*groupRead, error) {
	old, err := e.loadGroupDoc(ctx, pbx, gs)
	if err != nil {
		return nil, err
	}
	if old == nil {
		w.note("groups: full read (first run, or the group range or member mode changed)")
		return roundGroups(ctx, c, gs, nil)
	}
	rd, err := roundGroups(ctx, c, gs, old)
	if errors.Is(err, graph.ErrResyncRequired) {
		w.note("groups: the delta token expired (%v): full read instead", err)
		w.GraphRequests++ // the refused request
		return roundGroups(ctx, c, gs, nil)
	}
	return rd, err
}

// roundGroups runs one /groups/delta round over old (nil: a full round into
// a new mirror that, for the round, holds the members of every group that
// may be needed).
func roundGroups(ctx context.Context, c *graph.Client, gs *GroupSettings, old *groupDoc) (*groupRead, error) {
	rd := &groupRead{mode: "delta", doc: old}
	full := old == nil
	link := ""
	if full {
		rd.mode = "full"
		rd.doc = &groupDoc{Fingerprint: gs.fingerprint(), Groups: map[string]*groupMeta{}, Members: map[string]*groupMembers{}}
	} else {
		link = old.Link
	}
	d := rd.doc
	transitive := gs.GroupMembers == MembersTransitive
	sel := append(slices.Clone(graph.GroupSelect), "members")
	dl, err := c.GroupsDelta(ctx, link, sel, func(p graph.DeltaPage[graph.Group]) error {
		rd.requests++
		for _, x := range p.Items {
			if x.ID == "" {
				continue
			}
			if x.IsRemoved() {
				delete(d.Groups, x.ID)
				delete(d.Members, x.ID)
				continue
			}
			m := d.Groups[x.ID]
			if m == nil {
				m = &groupMeta{}
				d.Groups[x.ID] = m
			}
			m.merge(x)
			ms := d.Members[x.ID]
			if ms == nil {
				// Not in the mirror on a delta round: members@delta is a
				// difference to a list we do not hold; the list is read in
				// full if the group becomes needed. On a full round, members
				// are kept for the groups in range, and for every group when
				// members are transitive (any group may be nested).
				if !full || (!transitive && !groupInRange(gs, x.ID, m)) {
					continue
				}
				ms = newGroupMembers()
				d.Members[x.ID] = ms
			}
			ms.apply(x.MembersDelta)
		}
		return nil
	}, graph.WithMaxPageSize(999))
	if err != nil {
		return nil, err
	}
	d.Link = dl
	return rd, nil
}

// closeMembers returns the chosen groups plus, for transitive members, every
// group nested under them; members missing from the mirror are read with
// GET /groups/{id}/members. It returns the number of Graph requests made.
func closeMembers(ctx context.Context, c *graph.Client, d *groupDoc, chosen []string, transitive bool) (map[string]bool, int, error) {
	needed := map[string]bool{}
	requests := 0
	queue := slices.Clone(chosen)
	for len(queue) > 0 {
		id := queue[0]
		queue = queue[1:]
		if needed[id] {
			continue
		}
		needed[id] = true
		ms := d.Members[id]
		if ms == nil {
			var n int
			var err error
			ms, n, err = readDirectMembers(ctx, c, id)
			requests += n
			if errors.Is(err, graph.ErrNotFound) {
				// Gone since the round: it has no members; the next round removes it.
				ms, err = newGroupMembers(), nil
			}
			if err != nil {
				return nil, requests, err
			}
			d.Members[id] = ms
		}
		if transitive {
			for _, g := range slices.Sorted(maps.Keys(ms.Groups)) {
				if !needed[g] {
					queue = append(queue, g)
				}
			}
		}
	}
	return needed, requests, nil
}

func readDirectMembers(ctx context.Context, c *graph.Client, id string) (*groupMembers, int, error) {
	ms := newGroupMembers()
	n := 0
	for o, err := range c.GroupMembers(ctx, id, false, graph.ListOptions{Top: 999, Select: []string{"id"}}) {
		if err != nil {
			return nil, 1 + n/999, fmt.Errorf("reading members of group %s: %w", id, err)
		}
		n++
		switch {
		case o.IsUser():
			ms.Users[o.ID] = struct{}{}
		case o.IsGroup():
			ms.Groups[o.ID] = struct{}{}
		}
	}
	return ms, 1 + n/999, nil
}

// effectiveUsers returns the Entra user ids that are members of group id:
// direct, or through nested groups at any depth.
func effectiveUsers(d *groupDoc, id string, transitive bool) []string {
	ms := d.Members[id]
	if ms == nil {
		return nil
	}
	if !transitive {
		return slices.Sorted(maps.Keys(ms.Users))
	}
	users := map[string]struct{}{}
	seen := map[string]bool{id: true}
	stack := []*groupMembers{ms}
	for len(stack) > 0 {
		m := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for u := range m.Users {
			users[u] = struct{}{}
		}
		for g := range m.Groups {
			if !seen[g] && d.Members[g] != nil {
				seen[g] = true
				stack = append(stack, d.Members[g])
			}
		}
	}
	return slices.Sorted(maps.Keys(users))
}
