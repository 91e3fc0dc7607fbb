package sim

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
)

var (
	pGroupsRead   = perm{app: []string{"GroupMember.Read.All", "Group.Read.All", "Group.ReadWrite.All", "GroupMember.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}, del: []string{"GroupMember.Read.All", "Group.Read.All", "Group.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}}
	pGroupsWrite  = perm{app: []string{"Group.ReadWrite.All", "Directory.ReadWrite.All"}, del: []string{"Group.ReadWrite.All", "Directory.ReadWrite.All"}}
	pMembersWrite = perm{app: []string{"GroupMember.ReadWrite.All", "Group.ReadWrite.All", "Directory.ReadWrite.All"}, del: []string{"GroupMember.ReadWrite.All", "Group.ReadWrite.All", "Directory.ReadWrite.All"}}
)

func (t *Tenant) groupRoutes() {
	t.route("GET /v1.0/groups", pGroupsRead, t.listGroups)
	t.route("GET /v1.0/groups/{id}", pGroupsRead, t.getGroup)
	t.route("POST /v1.0/groups", pGroupsWrite, t.createGroup)
	t.route("PATCH /v1.0/groups/{id}", pGroupsWrite, t.patchGroup)
	t.route("DELETE /v1.0/groups/{id}", pGroupsWrite, t.deleteGroup)
	for _, rel := range []string{"members", "transitiveMembers"} {
		t.route("GET /v1.0/groups/{id}/"+rel, pGroupsRead, t.listMembers)
		t.route("GET /v1.0/groups/{id}/"+rel+"/{cast}", pGroupsRead, t.listMembers)
	}
	t.route("POST /v1.0/groups/{id}/members/$ref", pMembersWrite, t.addMember)
	t.route("DELETE /v1.0/groups/{id}/members/{mid}/$ref", pMembersWrite, t.removeMember)
}

func (t *Tenant) listGroups(w http.ResponseWriter, r *http.Request) {
	q, e := parseQuery(r, groupKind, true)
	if e != nil {
		t.fail(w, r, e)
		return
	}
	t.st.mu.RLock()
	defer t.st.mu.RUnlock()
	t.listPage(w, r, q, t.st.groupEnts, groupKind, "groups", false)
}

func (t *Tenant) getGroup(w http.ResponseWriter, r *http.Request) {
	q, e := parseQuery(r, groupKind, false)
	if e != nil {
		t.fail(w, r, e)
		return
	}
	id := r.PathValue("id")
	t.st.mu.RLock()
	defer t.st.mu.RUnlock()
	g := t.st.lookupGroup(id)
	if g == nil {
		t.fail(w, r, notFound(id))
		return
	}
	props := q.sel
	if props == nil {
		props = groupProps
	}
	b := append([]byte(nil), `{"@odata.context":`...)
	b = appendString(b, t.contextURL(r, "groups", q.sel, true))
	body := appendEntry(nil, entry{g: g}, props, false)
	if len(body) > 2 {
		b = append(b, ',')
		b = append(b, body[1:]...)
	} else {
		b = append(b, '}')
	}
	writeRaw(w, http.StatusOK, b)
}

// members returns the direct or transitive members of g (users and groups), in the order
// they were added. The caller holds the read lock.
func (t *Tenant) members(g *group, transitive bool) []entry {
	var out []entry
	seen := map[string]bool{g.id: true}
	var walk func(g *group)
	walk = func(g *group) {
		for _, id := range g.members {
			if seen[id] {
				continue
			}
			seen[id] = true
			if u := t.st.userByID[id]; u != nil && !u.deleted {
				out = append(out, entry{u: u})
			} else if sub := t.st.lookupGroup(id); sub != nil {
				out = append(out, entry{g: sub})
				if transitive {
					walk(sub)
				}
			}
		}
	}
	walk(g)
	return out
}

func (t *Tenant) listMembers(w http.ResponseWriter, r *http.Request) {
	cast := r.PathValue("cast")
	k := dirKind
	set := "directoryObjects"
	withType := true
	switch strings.ToLower(cast) {
	case "":
	case "microsoft.graph.user":
		k, set, withType = userKind, "users", false
	case "microsoft.graph.group":
		k, set, withType = groupKind, "groups", false
	default:
		t.fail(w, r, badRequest("Request_UnsupportedQuery", "The specified type cast '%s' is not supported.", cast))
		return
	}
	q, e := parseQuery(r, k, true)
	if e != nil {
		t.fail(w, r, e)
		return
	}
	if cast != "" && (q.filter != nil || q.search != nil || q.orderBy != "") && !(q.eventual && q.count) {
		t.fail(w, r, badRequest("Request_UnsupportedQuery", "The requested query is only supported with 'ConsistencyLevel: eventual' and '$count=true'."))
		return
	}
	id := r.PathValue("id")
	transitive := strings.Contains(r.URL.Path, "/transitiveMembers")
	t.st.mu.RLock()
	defer t.st.mu.RUnlock()
	g := t.st.lookupGroup(id)
	if g == nil {
		t.fail(w, r, notFound(id))
		return
	}
	items := t.members(g, transitive)
	if cast != "" {
		items = slices.DeleteFunc(items, func(e entry) bool { return (k.name == "user") != (e.u != nil) })
	}
	q.byOffset = true // membership order, not creation order
	t.listPage(w, r, q, items, k, set, withType)
}

func (t *Tenant) applyGroup(g *group, m map[string]json.RawMessage) *gerr {
	strFields := map[string]*string{"displayName": &g.displayName, "description": &g.description, "mailNickname": &g.nick, "visibility": &g.visib}
	for k, v := range m {
		if p, ok := strFields[k]; ok {
			s, _, e := rawString(m, k)
			if e != nil {
				return e
			}
			*p = s
			continue
		}
		switch k {
		case "mailEnabled", "securityEnabled":
			var b bool
			if err := json.Unmarshal(v, &b); err != nil {
				return badRequest("Request_BadRequest", "Invalid value specified for property '%s' of resource 'Group'.", k)
			}
			if k == "mailEnabled" {
				g.mailEnabled = b
			} else {
				g.securityEnabled = b
			}
		case "groupTypes":
			var gt []string
			if err := json.Unmarshal(v, &gt); err != nil {
				return badRequest("Request_BadRequest", "Invalid value specified for property 'groupTypes' of resource 'Group'.")
			}
			g.groupTypes = gt
		case "members@odata.bind", "owners@odata.bind", "@odata.type", "isAssignableToRole", "classification", "preferredLanguage", "theme":
		default:
			return badRequest("Request_BadRequest", "Property '%s' does not exist on type 'microsoft.graph.group'.", k)
		}
	}
	return nil
}

func (t *Tenant) createGroup(w http.ResponseWriter, r *http.Request) {
	m, e := readBody(r)
	if e != nil {
		t.fail(w, r, e)
		return
	}
	for _, req := range []string{"displayName", "mailEnabled", "mailNickname", "securityEnabled"} {
		if _, ok := m[req]; !ok {
			t.fail(w, r, badRequest("Request_BadRequest", "Property '%s' is required when creating the object.", req))
			return
		}
	}
	g := &group{memberSet: map[string]struct{}{}, groupTypes: []string{}}
	if e := t.applyGroup(g, m); e != nil {
		t.fail(w, r, e)
		return
	}
	unified := slices.Contains(g.groupTypes, "Unified")
	if g.mailEnabled && !unified {
		t.fail(w, r, badRequest("Request_BadRequest", "Creating mail-enabled security groups and distribution groups is not supported through Microsoft Graph."))
		return
	}
	var binds []string
	if raw, ok := m["members@odata.bind"]; ok {
		if err := json.Unmarshal(raw, &binds); err != nil {
			t.fail(w, r, badRequest("Request_BadRequest", "Invalid value for 'members@odata.bind'."))
			return
		}
	}
	t.st.mu.Lock()
	g.id = newID()
	g.created = t.now().Unix()
	if g.mailEnabled {
		g.mail = g.nick + "@" + t.cfg.Domain
	}
	v := t.st.bump()
	for _, b := range binds {
		id := b[strings.LastIndex(b, "/")+1:]
		if t.st.lookupUser(id) == nil && t.st.lookupGroup(id) == nil {
			t.st.mu.Unlock()
			t.fail(w, r, notFound(id))
			return
		}
		g.addMember(id, v)
	}
	t.st.insertGroup(g, v)
	b := append([]byte(nil), `{"@odata.context":`...)
	b = appendString(b, t.contextURL(r, "groups", nil, true))
	body := appendEntry(nil, entry{g: g}, groupProps, false)
	b = append(b, ',')
	b = append(b, body[1:]...)
	t.st.mu.Unlock()
	t.hooks.changed("groups", g.id, "updated")
	writeRaw(w, http.StatusCreated, b)
}

func (t *Tenant) patchGroup(w http.ResponseWriter, r *http.Request) {
	m, e := readBody(r)
	if e != nil {
		t.fail(w, r, e)
		return
	}
	id := r.PathValue("id")
	t.st.mu.Lock()
	g := t.st.lookupGroup(id)
	if g == nil {
		t.st.mu.Unlock()
		t.fail(w, r, notFound(id))
		return
	}
	cp := *g
	if e := t.applyGroup(&cp, m); e != nil {
		t.st.mu.Unlock()
		t.fail(w, r, e)
		return
	}
	v := t.st.ver + 1
	n := diffProps(&cp.pver, groupProps, func(p string) []byte { return appendJSON(nil, groupValue(&cp, p)) },
		func(p string) []byte { return appendJSON(nil, groupValue(g, p)) }, v)
	if n == 0 {
		t.st.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
		return
	}
	cp.ver = t.st.bump()
	*g = cp
	t.st.mu.Unlock()
	t.hooks.changed("groups", id, "updated")
	w.WriteHeader(http.StatusNoContent)
}

func (t *Tenant) deleteGroup(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	t.st.mu.Lock()
	g := t.st.lookupGroup(id)
	if g == nil {
		t.st.mu.Unlock()
		t.fail(w, r, notFound(id))
		return
	}
	v := t.st.bump()
	g.deleted, g.ver, g.deletedAt = true, v, t.now().Unix()
	for _, p := range t.st.groups {
		if !p.deleted && p.removeMember(id, v) {
			p.ver = v
		}
	}
	soft := slices.Contains(g.groupTypes, "Unified") // Microsoft 365 groups go to deletedItems
	t.st.mu.Unlock()
	if soft {
		t.hooks.changed("groups", id, "updated")
	} else {
		t.hooks.changed("groups", id, "deleted")
	}
	w.WriteHeader(http.StatusNoContent)
}

func (t *Tenant) addMember(w http.ResponseWriter, r *http.Request) {
	m, e := readBody(r)
	if e != nil {
		t.fail(w, r, e)
		return
	}
	ref, _, _ := rawString(m, "@odata.id")
	if ref == "" {
		t.fail(w, r, badRequest("Request_BadRequest", "Missing property '@odata.id' in the request body."))
		return
	}
	mid := strings.TrimRight(ref, "/")
	mid = mid[strings.LastIndex(mid, "/")+1:]
	id := r.PathValue("id")
	t.st.mu.Lock()
	g := t.st.lookupGroup(id)
	if g == nil {
		t.st.mu.Unlock()
		t.fail(w, r, notFound(id))
		return
	}
	u := t.st.lookupUser(mid)
	sub := t.st.lookupGroup(mid)
	switch {
	case u == nil && sub == nil:
		t.st.mu.Unlock()
		t.fail(w, r, notFound(mid))
		return
	case sub != nil && slices.Contains(g.groupTypes, "Unified"):
		t.st.mu.Unlock()
		t.fail(w, r, badRequest("Request_BadRequest", "Microsoft 365 groups can only contain users."))
		return
	case g.hasMember(mid) || (u != nil && g.hasMember(u.id)):
		t.st.mu.Unlock()
		t.fail(w, r, badRequest("Request_BadRequest", "One or more added object references already exist for the following modified properties: 'members'."))
		return
	}
	if u != nil {
		mid = u.id
	}
	v := t.st.bump()
	g.addMember(mid, v)
	g.ver = v
	t.st.mu.Unlock()
	t.hooks.changed("groups", id, "updated")
	w.WriteHeader(http.StatusNoContent)
}

func (t *Tenant) removeMember(w http.ResponseWriter, r *http.Request) {
	id, mid := r.PathValue("id"), r.PathValue("mid")
	t.st.mu.Lock()
	g := t.st.lookupGroup(id)
	if g == nil {
		t.st.mu.Unlock()
		t.fail(w, r, notFound(id))
		return
	}
	v := t.st.ver + 1
	if !g.removeMember(mid, v) {
		t.st.mu.Unlock()
		t.fail(w, r, notFound(mid))
		return
	}
	t.st.bump()
	g.ver = v
	t.st.mu.Unlock()
	t.hooks.changed("groups", id, "updated")
	w.WriteHeader(http.StatusNoContent)
}

// GroupInfo is a read-only view of a group.
type GroupInfo struct {
	ID, DisplayName, Mail        string
	GroupTypes, Members          []string
	MailEnabled, SecurityEnabled bool
}

// GroupList returns a snapshot of the live groups with their direct member ids.
func (t *Tenant) GroupList() []GroupInfo {
	t.st.mu.RLock()
	defer t.st.mu.RUnlock()
	var out []GroupInfo
	for _, g := range t.st.groups {
		if !g.deleted {
			out = append(out, GroupInfo{ID: g.id, DisplayName: g.displayName, Mail: g.mail,
				GroupTypes: slices.Clone(g.groupTypes), Members: slices.Clone(g.members),
				MailEnabled: g.mailEnabled, SecurityEnabled: g.securityEnabled})
		}
	}
	return out
}
