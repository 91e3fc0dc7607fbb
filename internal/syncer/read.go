package syncer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/switchboard-pbx/switchboard/internal/graph"
)

// entraUser is the compact form of a Graph user the plan needs: the raw JSON
// is dropped as soon as a page is decoded, so that a 100,000-user read stays small.
type entraUser struct {
	ID      string
	Subject string // userPrincipalName, else displayName, else id
	Type    string // Member | Guest
	Enabled bool
	InRange bool
	Vals    [5]string // mapped values: firstName, lastName, email, mobile, jobTitle
	NumRaw  string    // numbering property value (property mode)
}

// Field indexes into entraUser.Vals.
const (
	fFirst = iota
	fLast
	fEmail
	fMobile
	fJob
)

func (s *UserSettings) fieldProps() [5]string {
	f := s.Fields
	return [5]string{f.FirstName, f.LastName, f.Email, f.Mobile, f.JobTitle}
}

// userSelect is the $select for reads: the defaults plus every mapped property.
func userSelect(s *UserSettings) []string {
	sel := slices.Clone(graph.UserSelect)
	add := func(p string) {
		if p == "" {
			return
		}
		top, _, _ := strings.Cut(p, ".")
		l := strings.ToLower(top)
		if strings.HasPrefix(l, "extensionattribute") {
			top = "onPremisesExtensionAttributes"
		}
		for _, x := range sel {
			if strings.EqualFold(x, top) {
				return
			}
		}
		sel = append(sel, top)
	}
	for _, p := range s.fieldProps() {
		add(p)
	}
	if s.Numbering.Mode == NumberingProperty {
		add(s.Numbering.Property)
	}
	return sel
}

func compact(s *UserSettings, u graph.User) entraUser {
	x := entraUser{ID: u.ID, Type: u.UserType, Enabled: u.Enabled()}
	if x.Type == "" {
		x.Type = "Member"
	}
	switch {
	case u.UserPrincipalName != "":
		x.Subject = u.UserPrincipalName
	case u.DisplayName != "":
		x.Subject = u.DisplayName
	default:
		x.Subject = u.ID
	}
	for i, p := range s.fieldProps() {
		if p != "" {
			x.Vals[i], _ = u.Property(p)
			x.Vals[i] = strings.TrimSpace(x.Vals[i])
		}
	}
	if s.Numbering.Mode == NumberingProperty {
		x.NumRaw, _ = u.Property(s.Numbering.Property)
	}
	switch s.Range {
	case RangeAll:
		x.InRange = true
	case RangeType:
		x.InRange = slices.ContainsFunc(s.UserTypes, func(t string) bool { return strings.EqualFold(t, x.Type) })
	}
	return x
}

// readResult is what the read phase learnt from Entra.
type readResult struct {
	users []entraUser     // users seen (in range or not), in read order
	gone  map[string]bool // ids known to be deleted in Entra
	// complete: users holds every existing user, so a synced extension whose
	// user is absent belongs to a deleted user.
	complete  bool
	deltaLink string // set by full and delta reads of range all/type
	nextHint  int64  // delta reads: the auto numbering position the last run stored
	mode      string // full | delta | groups | users
	requests  int
}

func (r *readResult) add(u entraUser, idx map[string]int) {
	delete(r.gone, u.ID)
	if i, ok := idx[u.ID]; ok {
		r.users[i] = u
		return
	}
	idx[u.ID] = len(r.users)
	r.users = append(r.users, u)
}

// readDelta reads users through /users/delta: from scratch (link "") or from a deltaLink.
func readDelta(ctx context.Context, c *graph.Client, s *UserSettings, link string) (*readResult, error) {
	res := &readResult{gone: map[string]bool{}, mode: "full", complete: link == ""}
	if link != "" {
		res.mode = "delta"
	}
	idx := map[string]int{}
	dl, err := c.UsersDelta(ctx, link, userSelect(s), func(p graph.DeltaPage[graph.User]) error {
		res.requests++
		for _, u := range p.Items {
			if u.ID == "" {
				continue
			}
			if u.IsRemoved() {
				if i, ok := idx[u.ID]; ok { // replayed: drop the earlier state
					res.users[i].InRange, res.users[i].ID = false, ""
					delete(idx, u.ID)
				}
				res.gone[u.ID] = true
				continue
			}
			res.add(compact(s, u), idx)
		}
		return nil
	}, graph.WithMaxPageSize(999))
	if err != nil {
		return nil, err
	}
	res.users = slices.DeleteFunc(res.users, func(u entraUser) bool { return u.ID == "" })
	res.deltaLink = dl
	return res, nil
}

// readGroups reads the (direct or transitive) user members of the chosen groups.
func readGroups(ctx context.Context, c *graph.Client, s *UserSettings, r *Run) (*readResult, error) {
	res := &readResult{gone: map[string]bool{}, mode: "groups"}
	idx := map[string]int{}
	sel := userSelect(s)
	for _, gid := range s.GroupIDs {
		n := 0
		for u, err := range c.GroupUserMembers(ctx, gid, s.GroupMembers == MembersTransitive, graph.ListOptions{Top: 999, Select: sel}) {
			if err != nil {
				if errors.Is(err, graph.ErrNotFound) {
					r.note("group %s no longer exists in Entra: it adds no users", gid)
					break
				}
				return nil, fmt.Errorf("reading members of group %s: %w", gid, err)
			}
			n++
			x := compact(s, u)
			x.InRange = true
			res.add(x, idx)
		}
		res.requests += 1 + n/999
	}
	return res, nil
}

// readPicked reads the hand-picked users one by one.
func readPicked(ctx context.Context, c *graph.Client, s *UserSettings) (*readResult, error) {
	res := &readResult{gone: map[string]bool{}, mode: "users"}
	users, gone, n, err := lookupUsers(ctx, c, s, s.UserIDs)
	if err != nil {
		return nil, err
	}
	res.requests += n
	idx := map[string]int{}
	for _, u := range users {
		u.InRange = true
		res.add(u, idx)
	}
	for _, id := range gone {
		res.gone[id] = true
	}
	return res, nil
}

// lookupUsers reads users by id, four at a time; 404s are returned as gone.
func lookupUsers(ctx context.Context, c *graph.Client, s *UserSettings, ids []string) (found []entraUser, gone []string, requests int, err error) {
	sel := userSelect(s)
	type result struct {
		u    entraUser
		gone bool
		err  error
	}
	out := make([]result, len(ids))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i, id := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			u, err := c.GetUser(ctx, id, sel)
			switch {
			case errors.Is(err, graph.ErrNotFound):
				out[i].gone = true
			case err != nil:
				out[i].err = fmt.Errorf("reading user %s: %w", id, err)
			default:
				out[i].u = compact(s, u)
			}
		}()
	}
	wg.Wait()
	for i, r := range out {
		switch {
		case r.err != nil:
			return nil, nil, len(ids), r.err
		case r.gone:
			gone = append(gone, ids[i])
		default:
			found = append(found, r.u)
		}
	}
	return found, gone, len(ids), nil
}

// resolveVanished finds out, for synced users that the range read did not
// return, whether they still exist (then they are out of range) or were deleted.
// Few are looked up one by one; many trigger one full user list instead.
func resolveVanished(ctx context.Context, c *graph.Client, s *UserSettings, res *readResult, vanished []string) error {
	if len(vanished) == 0 {
		return nil
	}
	idx := make(map[string]int, len(res.users))
	for i, u := range res.users {
		idx[u.ID] = i
	}
	if len(vanished) <= 200 {
		found, gone, n, err := lookupUsers(ctx, c, s, vanished)
		res.requests += n
		if err != nil {
			return err
		}
		for _, u := range found {
			u.InRange = false
			res.add(u, idx)
		}
		for _, id := range gone {
			res.gone[id] = true
		}
		return nil
	}
	want := make(map[string]bool, len(vanished))
	for _, id := range vanished {
		want[id] = true
	}
	n := 0
	for u, err := range c.ListUsers(ctx, graph.ListOptions{Top: 999, Select: userSelect(s)}) {
		if err != nil {
			return fmt.Errorf("listing users: %w", err)
		}
		n++
		if want[u.ID] {
			delete(want, u.ID)
			x := compact(s, u)
			x.InRange = false
			res.add(x, idx)
		}
	}
	res.requests += 1 + n/999
	for id := range want {
		res.gone[id] = true
	}
	return nil
}
