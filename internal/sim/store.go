package sim

import (
	"sort"
	"strings"
	"sync"
)

// store holds the tenant's directory. Every change bumps ver; objects record the version of
// their last change, which is what delta queries compare against.
type store struct {
	mu        sync.RWMutex
	ver, seq  uint64
	users     []*user // by seq, soft-deleted users included (deleted flag)
	userEnts  []entry // the same users as entries
	groupEnts []entry
	userByID  map[string]*user
	userByUPN map[string]*user // lower-case UPN
	groups    []*group
	groupByID map[string]*group
	mailboxes map[string]*mailbox // materialised contacts (after the first write)
	presence  map[string]*presenceInfo
	subs      map[string]*subscription
}

func newStore() *store {
	return &store{
		userByID:  map[string]*user{},
		userByUPN: map[string]*user{},
		groupByID: map[string]*group{},
		mailboxes: map[string]*mailbox{},
		presence:  map[string]*presenceInfo{},
		subs:      map[string]*subscription{},
	}
}

// bump returns a fresh version number. Callers hold mu.
func (s *store) bump() uint64 { s.ver++; return s.ver }

func (s *store) insertUser(u *user, ver uint64) {
	s.seq++
	u.seq, u.ver, u.cver = s.seq, ver, ver
	s.users = append(s.users, u)
	s.userEnts = append(s.userEnts, entry{u: u})
	s.userByID[u.id] = u
	s.userByUPN[strings.ToLower(u.upn)] = u
}

func (s *store) insertGroup(g *group, ver uint64) {
	s.seq++
	g.seq, g.ver, g.cver = s.seq, ver, ver
	s.groups = append(s.groups, g)
	s.groupEnts = append(s.groupEnts, entry{g: g})
	s.groupByID[g.id] = g
}

// lookupUser finds a live user by id or userPrincipalName.
func (s *store) lookupUser(key string) *user {
	u := s.userByID[key]
	if u == nil {
		u = s.userByUPN[strings.ToLower(key)]
	}
	if u == nil || u.deleted {
		return nil
	}
	return u
}

func (s *store) lookupGroup(id string) *group {
	g := s.groupByID[id]
	if g == nil || g.deleted {
		return nil
	}
	return g
}

// usersFrom returns the index in s.users of the first user with seq > after.
func (s *store) usersFrom(after uint64) int {
	return sort.Search(len(s.users), func(i int) bool { return s.users[i].seq > after })
}

func (s *store) groupsFrom(after uint64) int {
	return sort.Search(len(s.groups), func(i int) bool { return s.groups[i].seq > after })
}

// liveUsers counts users not soft-deleted.
func (s *store) liveUsers() int {
	n := 0
	for _, u := range s.users {
		if !u.deleted {
			n++
		}
	}
	return n
}

// diffProps records in pver, at version v, the properties whose JSON differs between
// before and after; it returns how many changed.
func diffProps(pver *map[string]uint64, props []string, val func(p string) []byte, before func(p string) []byte, v uint64) int {
	n := 0
	for _, p := range props {
		if string(val(p)) != string(before(p)) {
			if *pver == nil {
				*pver = map[string]uint64{}
			}
			(*pver)[p] = v
			n++
		}
	}
	return n
}
