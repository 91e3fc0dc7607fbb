package sim

import (
	"net/http"
	"slices"
	"strings"
)

func (t *Tenant) deletedItemRoutes() {
	t.route("GET /v1.0/directory/deletedItems/{cast}", pUsersRead, t.listDeleted)
	t.route("POST /v1.0/directory/deletedItems/{id}/restore", perm{app: []string{"User.ReadWrite.All", "Group.ReadWrite.All", "Directory.ReadWrite.All"}, del: []string{"User.ReadWrite.All", "Group.ReadWrite.All", "Directory.ReadWrite.All"}}, t.restoreDeleted)
	t.route("DELETE /v1.0/directory/deletedItems/{id}", perm{app: []string{"User.ReadWrite.All", "Group.ReadWrite.All", "Directory.ReadWrite.All"}, del: []string{"User.ReadWrite.All", "Group.ReadWrite.All", "Directory.ReadWrite.All"}}, t.purgeDeleted)
}

// listDeleted lists soft-deleted users (microsoft.graph.user) or Microsoft 365 groups
// (microsoft.graph.group).
func (t *Tenant) listDeleted(w http.ResponseWriter, r *http.Request) {
	cast := strings.ToLower(r.PathValue("cast"))
	if cast != "microsoft.graph.user" && cast != "microsoft.graph.group" {
		t.fail(w, r, badRequest("Request_BadRequest", "The OData cast '%s' is not supported on deletedItems.", r.PathValue("cast")))
		return
	}
	k := userKind
	if cast == "microsoft.graph.group" {
		k = groupKind
	}
	q, e := parseQuery(r, k, true)
	if e != nil {
		t.fail(w, r, e)
		return
	}
	t.st.mu.RLock()
	defer t.st.mu.RUnlock()
	var items []entry
	if k.name == "user" {
		for _, u := range t.st.users {
			if u.deleted && !u.purged {
				cp := *u
				cp.deleted = false // listPage skips deleted entries
				items = append(items, entry{u: &cp})
			}
		}
	} else {
		for _, g := range t.st.groups {
			if g.deleted && g.deletedAt >= 0 && slices.Contains(g.groupTypes, "Unified") {
				cp := *g
				cp.deleted = false
				items = append(items, entry{g: &cp})
			}
		}
	}
	t.listPage(w, r, q, items, k, "directory/deletedItems/"+cast, false)
}

func (t *Tenant) restoreDeleted(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	t.st.mu.Lock()
	if u := t.st.userByID[id]; u != nil && u.deleted && !u.purged {
		if t.st.userByUPN[strings.ToLower(u.upn)] != nil {
			t.st.mu.Unlock()
			t.fail(w, r, badRequest("Request_BadRequest", "Another object with the same value for property userPrincipalName already exists."))
			return
		}
		u.deleted, u.ver, u.deletedAt = false, t.st.bump(), 0
		u.cver = u.ver
		t.st.userByUPN[strings.ToLower(u.upn)] = u
		b := append([]byte(nil), `{"@odata.context":`...)
		b = appendString(b, t.contextURL(r, "directoryObjects", nil, true))
		body := appendEntry(nil, entry{u: u}, defaultUserProps, true)
		b = append(b, ',')
		b = append(b, body[1:]...)
		t.st.mu.Unlock()
		t.hooks.changed("users", id, "updated")
		writeRaw(w, http.StatusOK, b)
		return
	}
	if g := t.st.groupByID[id]; g != nil && g.deleted && slices.Contains(g.groupTypes, "Unified") {
		g.deleted, g.ver, g.deletedAt = false, t.st.bump(), 0
		g.cver = g.ver
		b := append([]byte(nil), `{"@odata.context":`...)
		b = appendString(b, t.contextURL(r, "directoryObjects", nil, true))
		body := appendEntry(nil, entry{g: g}, groupProps, true)
		b = append(b, ',')
		b = append(b, body[1:]...)
		t.st.mu.Unlock()
		t.hooks.changed("groups", id, "updated")
		writeRaw(w, http.StatusOK, b)
		return
	}
	t.st.mu.Unlock()
	t.fail(w, r, notFound(id))
}

// purgeDeleted deletes a soft-deleted user permanently: delta then reports
// @removed {"reason":"deleted"}.
func (t *Tenant) purgeDeleted(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	t.st.mu.Lock()
	u := t.st.userByID[id]
	if u == nil || !u.deleted || u.purged {
		t.st.mu.Unlock()
		t.fail(w, r, notFound(id))
		return
	}
	u.purged, u.ver = true, t.st.bump()
	t.st.mu.Unlock()
	t.hooks.changed("users", id, "deleted")
	w.WriteHeader(http.StatusNoContent)
}
