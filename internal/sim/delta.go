package sim

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// deltaState is what a $skiptoken or $deltatoken carries. Graph treats tokens as opaque;
// ours are base64url JSON.
type deltaState struct {
	Kind   string   `json:"k"`           // "users", "groups", "contacts"
	Since  uint64   `json:"v"`           // changes after this version (0: initial round)
	Round  uint64   `json:"r"`           // version when the round started
	Cursor uint64   `json:"c,omitempty"` // last seq returned in this round
	Select []string `json:"s,omitempty"`
	IDs    []string `json:"f,omitempty"`
	Owner  string   `json:"o,omitempty"` // contacts: mailbox user id
	Folder string   `json:"d,omitempty"` // contacts: folder id
	Epoch  uint64   `json:"e"`
	Issued int64    `json:"t"`
	Page   int      `json:"p,omitempty"` // page size (contacts: Prefer odata.maxpagesize)
	// A large group's members@delta continues on the next page from MemberOff.
	MemberGroup string `json:"mg,omitempty"`
	MemberOff   int    `json:"mo,omitempty"`
}

func encodeState(s deltaState) string {
	raw, _ := json.Marshal(s)
	return base64.RawURLEncoding.EncodeToString(raw)
}

func decodeState(tok string) (deltaState, bool) {
	var s deltaState
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || json.Unmarshal(raw, &s) != nil || s.Kind == "" {
		return s, false
	}
	return s, true
}

// ExpireDeltaTokens invalidates every delta and skip token issued so far (users, groups and
// contacts): following one answers 410 Gone.
func (t *Tenant) ExpireDeltaTokens() {
	t.tokenMu.Lock()
	t.tokenEpoch++
	t.tokenMu.Unlock()
}

// SetDeltaTokenTTL changes how long users/groups delta tokens stay valid.
func (t *Tenant) SetDeltaTokenTTL(d time.Duration) {
	t.tokenMu.Lock()
	t.deltaTTL = d
	t.tokenMu.Unlock()
}

func (t *Tenant) epoch() (uint64, time.Duration) {
	t.tokenMu.Lock()
	defer t.tokenMu.Unlock()
	return t.tokenEpoch, t.deltaTTL
}

var pDeltaUsers, pDeltaGroups = pUsersRead, pGroupsRead

func (t *Tenant) deltaRoutes() {
	t.route("GET /v1.0/users/delta", pDeltaUsers, t.directoryDelta("users"))
	t.route("GET /v1.0/groups/delta", pDeltaGroups, t.directoryDelta("groups"))
}

// gone answers 410 for an expired or unknown state token.
func (t *Tenant) gone(w http.ResponseWriter, r *http.Request, restart string) {
	w.Header().Set("Location", restart)
	t.graphError(w, r, http.StatusGone, "syncStateNotFound", "The sync state generation is not found or has expired. Please do a full resync (restart the delta query without a token).")
}

// resumeState reads $skiptoken/$deltatoken; ok false means the handler already answered.
func (t *Tenant) resumeState(w http.ResponseWriter, r *http.Request, kind string, ttl bool) (st deltaState, fresh, ok bool) {
	q := r.URL.Query()
	restart := t.baseURL(r) + r.URL.Path
	tok := q.Get("$skiptoken")
	if tok == "" {
		tok = q.Get("$deltatoken")
	}
	if tok == "" {
		return deltaState{}, true, true
	}
	epoch, maxAge := t.epoch()
	if tok == "latest" {
		return deltaState{Kind: "latest"}, false, true
	}
	st, valid := decodeState(tok)
	if !valid || st.Kind != kind || st.Epoch != epoch || (ttl && t.now().Sub(time.Unix(st.Issued, 0)) > maxAge) {
		t.gone(w, r, restart)
		return st, false, false
	}
	if q.Get("$select") != "" && q.Get("$skiptoken") != "" {
		t.fail(w, r, badRequest("Request_BadRequest", "$select is not supported together with $skiptoken; change $select only with a deltaLink."))
		return st, false, false
	}
	return st, false, true
}

func (t *Tenant) directoryDelta(kind string) http.HandlerFunc {
	k := userKind
	if kind == "groups" {
		k = groupKind
		k.canon = mergeCanon(canonGroup, map[string]string{"members": "members"})
	}
	return func(w http.ResponseWriter, r *http.Request) {
		st, fresh, ok := t.resumeState(w, r, kind, true)
		if !ok {
			return
		}
		epoch, _ := t.epoch()
		now := t.now().Unix()
		path := "/v1.0/" + kind + "/delta"
		t.st.mu.RLock()
		defer t.st.mu.RUnlock()
		if st.Kind == "latest" {
			st = deltaState{Kind: kind, Since: t.st.ver, Round: t.st.ver, Epoch: epoch, Issued: now}
			b := append([]byte(nil), `{"@odata.context":`...)
			b = appendString(b, t.contextURL(r, kind, nil, false))
			b = append(b, `,"@odata.deltaLink":`...)
			b = appendString(b, t.baseURL(r)+path+"?$deltatoken="+encodeState(st))
			b = append(b, `,"value":[]}`...)
			writeRaw(w, http.StatusOK, b)
			return
		}
		if fresh || r.URL.Query().Get("$deltatoken") != "" {
			// Start a round: from scratch, or from a deltaLink (which may change $select).
			q, e := parseQuery(r, k, true)
			if e != nil {
				t.fail(w, r, e)
				return
			}
			if fresh {
				st = deltaState{Kind: kind}
				if q.filter != nil {
					ids, only := filterIDs(q.filter.root)
					if !only || len(ids) > 50 {
						t.fail(w, r, badRequest("Request_UnsupportedQuery", "Delta query only supports $filter on id (up to 50 ids)."))
						return
					}
					st.IDs = ids
				}
			}
			if fresh || q.sel != nil {
				st.Select = nil
				for _, p := range strings.Split(r.URL.Query().Get("$select"), ",") {
					if p = strings.TrimSpace(p); p != "" {
						st.Select = append(st.Select, p)
					}
				}
			}
			st.Round, st.Cursor = t.st.ver, 0
		}
		st.Epoch, st.Issued = epoch, now
		pageSize := 200
		if n := preferMaxPage(r); n > 0 {
			pageSize = n
		}
		ents := t.st.userEnts
		if kind == "groups" {
			ents = t.st.groupEnts
		}
		sel, withMembers := deltaSelect(k, st.Select)
		minimal := preferMinimal(r)
		b := make([]byte, 0, 64<<10)
		b = append(b, `{"@odata.context":`...)
		b = appendString(b, t.contextURL(r, kind, st.Select, false))
		var page []byte
		n := 0
		i := searchSeq(ents, st.Cursor)
		for ; i < len(ents) && n < pageSize; i++ {
			e := ents[i]
			if len(st.IDs) > 0 && !slices.Contains(st.IDs, e.id()) {
				continue
			}
			ver, deleted := entryVer(e)
			props := sel
			memberOff := 0
			if st.MemberGroup != "" && st.MemberGroup == e.id() {
				memberOff, props = st.MemberOff, []string{"id"} // further slice of members@delta
			}
			st.MemberGroup, st.MemberOff = "", 0
			if st.Since == 0 {
				if deleted {
					continue
				}
			} else if ver <= st.Since {
				continue
			} else if !deleted && entryCreated(e) <= st.Since {
				// An update: surface it only when a tracked property or (when selected)
				// the membership changed; with return=minimal write only what changed.
				changed := changedProps(e, sel, st.Since)
				membersChanged := withMembers && e.g != nil && membersChangedSince(e.g, st.Since)
				if len(changed) == 0 && !membersChanged {
					continue
				}
				if minimal && memberOff == 0 {
					props = append(changed, "id")
				}
			}
			if n > 0 {
				page = append(page, ',')
			}
			n++
			st.Cursor = e.seq()
			if deleted {
				reason := "changed"
				if e.u != nil && e.u.purged {
					reason = "deleted"
				}
				if e.g != nil && !slices.Contains(e.g.groupTypes, "Unified") {
					reason = "deleted" // security groups and lists are deleted permanently
				}
				page = append(page, `{"id":`...)
				page = appendString(page, e.id())
				page = append(page, `,"@removed":{"reason":`...)
				page = appendString(page, reason)
				page = append(page, "}}"...)
				continue
			}
			obj := appendEntry(nil, e, props, false)
			page = append(page, obj[:len(obj)-1]...)
			more := false
			if e.g != nil && withMembers {
				var next int
				page, next, more = t.appendMembersDelta(page, e.g, st.Since, memberOff, t.cfg.DeltaMembersPerPage)
				if more {
					// The group recurs on the next page with the rest of its members.
					st.Cursor, st.MemberGroup, st.MemberOff = e.seq()-1, e.id(), next
				}
			}
			page = append(page, '}')
			if more {
				break
			}
		}
		if i < len(ents) {
			b = append(b, `,"@odata.nextLink":`...)
			b = appendString(b, t.baseURL(r)+path+"?$skiptoken="+encodeState(st))
		} else {
			next := deltaState{Kind: kind, Since: st.Round, Round: st.Round, Select: st.Select, IDs: st.IDs, Epoch: epoch, Issued: now}
			b = append(b, `,"@odata.deltaLink":`...)
			b = appendString(b, t.baseURL(r)+path+"?$deltatoken="+encodeState(next))
		}
		b = append(b, `,"value":[`...)
		b = append(b, page...)
		b = append(b, "]}"...)
		writeRaw(w, http.StatusOK, b)
	}
}

// deltaSelect returns the properties to write (id always included) and whether group
// members@delta is wanted.
func deltaSelect(k kind, sel []string) ([]string, bool) {
	if len(sel) == 0 {
		return k.defaults, k.name == "group"
	}
	var out []string
	members := false
	for _, p := range sel {
		if strings.EqualFold(p, "members") {
			members = true
			continue
		}
		if c, ok := k.canon[strings.ToLower(p)]; ok && c != "id" {
			out = append(out, c)
		}
	}
	return append(out, "id"), members
}

func entryVer(e entry) (uint64, bool) {
	if e.u != nil {
		return e.u.ver, e.u.deleted
	}
	return e.g.ver, e.g.deleted
}

// appendMembersDelta writes ,"members@delta":[...] for g: every member on an initial round,
// else the membership changes after since (omitted when there are none). It writes at most
// max entries starting at off and reports the next offset and whether more remain.
func (t *Tenant) appendMembersDelta(b []byte, g *group, since uint64, off, max int) ([]byte, int, bool) {
	type m struct {
		id      string
		removed bool
	}
	var list []m
	if since == 0 {
		for _, id := range g.members {
			list = append(list, m{id: id})
		}
	} else {
		last := map[string]int{}
		for _, c := range g.memberLog {
			if c.ver <= since {
				continue
			}
			if i, ok := last[c.id]; ok {
				list[i].removed = c.removed
				continue
			}
			last[c.id] = len(list)
			list = append(list, m{c.id, c.removed})
		}
		if len(list) == 0 {
			return b, 0, false
		}
	}
	off = min(off, len(list))
	end := len(list)
	if max > 0 {
		end = min(off+max, len(list))
	}
	more := end < len(list)
	list = list[off:end]
	b = append(b, `,"members@delta":[`...)
	for i, x := range list {
		if i > 0 {
			b = append(b, ',')
		}
		typ := "#microsoft.graph.user"
		if t.st.groupByID[x.id] != nil {
			typ = "#microsoft.graph.group"
		}
		b = append(b, `{"@odata.type":`...)
		b = appendString(b, typ)
		b = append(b, `,"id":`...)
		b = appendString(b, x.id)
		if x.removed {
			b = append(b, `,"@removed":{"reason":"deleted"}`...)
		}
		b = append(b, '}')
	}
	return append(b, ']'), end, more
}

// preferMaxPage reads Prefer: odata.maxpagesize=N.
func preferMaxPage(r *http.Request) int {
	for _, v := range r.Header.Values("Prefer") {
		for _, part := range strings.Split(v, ",") {
			part = strings.TrimSpace(part)
			if s, ok := strings.CutPrefix(part, "odata.maxpagesize="); ok {
				if n, err := strconv.Atoi(s); err == nil && n > 0 {
					return min(n, 999)
				}
			}
		}
	}
	return 0
}

func entryCreated(e entry) uint64 {
	if e.u != nil {
		return e.u.cver
	}
	return e.g.cver
}

// changedProps returns the properties of sel (id excluded) changed after since.
func changedProps(e entry, sel []string, since uint64) []string {
	pver := e.g.pverOrNil()
	if e.u != nil {
		pver = e.u.pver
	}
	var out []string
	for _, p := range sel {
		if p != "id" && pver[p] > since {
			out = append(out, p)
		}
	}
	return out
}

func (g *group) pverOrNil() map[string]uint64 {
	if g == nil {
		return nil
	}
	return g.pver
}

func membersChangedSince(g *group, since uint64) bool {
	for i := len(g.memberLog) - 1; i >= 0; i-- {
		if g.memberLog[i].ver > since {
			return true
		}
	}
	return false
}

// preferMinimal reads Prefer: return=minimal.
func preferMinimal(r *http.Request) bool {
	for _, v := range r.Header.Values("Prefer") {
		for _, part := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(part), "return=minimal") {
				return true
			}
		}
	}
	return false
}
