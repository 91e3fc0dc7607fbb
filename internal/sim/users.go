package sim

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

var (
	pUsersRead  = perm{app: []string{"User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}, del: []string{"User.ReadBasic.All", "User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}}
	pUsersWrite = perm{app: []string{"User.ReadWrite.All", "Directory.ReadWrite.All"}, del: []string{"User.ReadWrite.All", "Directory.ReadWrite.All"}}
	pMe         = perm{del: []string{"User.Read", "User.ReadWrite", "User.ReadBasic.All", "User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}, meOnly: true}
	pMailbox    = perm{app: []string{"MailboxSettings.Read", "MailboxSettings.ReadWrite"}, del: []string{"MailboxSettings.Read", "MailboxSettings.ReadWrite"}}
	pMemberOf   = perm{app: []string{"GroupMember.Read.All", "Group.Read.All", "Directory.Read.All", "Directory.ReadWrite.All", "User.Read.All"}, del: []string{"GroupMember.Read.All", "Group.Read.All", "Directory.Read.All", "User.Read", "User.Read.All"}}
)

func (t *Tenant) userRoutes() {
	t.route("GET /v1.0/users", pUsersRead, t.listUsers)
	t.route("GET /v1.0/users/$count", pUsersRead, t.countUsers)
	t.route("GET /v1.0/users/{id}", pUsersRead, t.getUser)
	t.route("GET /v1.0/me", pMe, t.getUser)
	t.route("POST /v1.0/users", pUsersWrite, t.createUser)
	t.route("PATCH /v1.0/users/{id}", pUsersWrite, t.patchUser)
	t.route("DELETE /v1.0/users/{id}", pUsersWrite, t.deleteUser)
	t.route("GET /v1.0/users/{id}/memberOf", pMemberOf, t.memberOf)
	t.route("GET /v1.0/me/memberOf", pMe, t.memberOf)
	t.route("GET /v1.0/users/{id}/mailboxSettings", pMailbox, t.mailboxSettings)
	t.route("GET /v1.0/me/mailboxSettings", perm{del: pMailbox.del, meOnly: true}, t.mailboxSettings)
}

// userKey returns the addressed user key: the path id or, on /me routes, the caller.
func userKey(r *http.Request) string {
	if id := r.PathValue("id"); id != "" {
		return id
	}
	if c := claimsOf(r); c != nil {
		return c.ObjectID
	}
	return ""
}

func (t *Tenant) listUsers(w http.ResponseWriter, r *http.Request) {
	q, e := parseQuery(r, userKind, true)
	if e != nil {
		t.fail(w, r, e)
		return
	}
	t.st.mu.RLock()
	defer t.st.mu.RUnlock()
	t.listPage(w, r, q, t.st.userEnts, userKind, "users", false)
}

func (t *Tenant) countUsers(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("ConsistencyLevel"), "eventual") {
		t.fail(w, r, badRequest("Request_BadRequest", "Count is not currently supported."))
		return
	}
	q, e := parseQuery(r, userKind, true)
	if e != nil {
		t.fail(w, r, e)
		return
	}
	t.st.mu.RLock()
	n := 0
	for _, u := range t.st.userEnts {
		if q.match(u) {
			n++
		}
	}
	t.st.mu.RUnlock()
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, strconv.Itoa(n))
}

func (t *Tenant) getUser(w http.ResponseWriter, r *http.Request) {
	q, e := parseQuery(r, userKind, false)
	if e != nil {
		t.fail(w, r, e)
		return
	}
	key := userKey(r)
	t.st.mu.RLock()
	defer t.st.mu.RUnlock()
	u := t.st.lookupUser(key)
	if u == nil {
		t.fail(w, r, notFound(key))
		return
	}
	props := q.sel
	if props == nil {
		props = defaultUserProps
	}
	b := append([]byte(nil), `{"@odata.context":`...)
	b = appendString(b, t.contextURL(r, "users", q.sel, true))
	body := appendEntry(nil, entry{u: u}, props, false)
	if len(body) > 2 {
		b = append(b, ',')
		b = append(b, body[1:len(body)-1]...)
	}
	for _, p := range q.sel {
		if p == "mailboxSettings" {
			b = append(b, `,"mailboxSettings":`...)
			b = appendJSON(b, mailboxSettingsObj(u))
		}
	}
	b = append(b, '}')
	writeRaw(w, http.StatusOK, b)
}

func mailboxSettingsObj(u *user) obj {
	purpose := "user"
	if u.shared {
		purpose = "shared"
	}
	return obj{
		{"archiveFolder", nil}, {"timeZone", "UTC"}, {"delegateMeetingMessageDeliveryOptions", "sendToDelegateOnly"},
		{"dateFormat", "M/d/yyyy"}, {"timeFormat", "h:mm tt"}, {"userPurpose", purpose},
		{"automaticRepliesSetting", obj{{"status", "disabled"}, {"externalAudience", "all"}, {"internalReplyMessage", ""}, {"externalReplyMessage", ""}}},
		{"language", obj{{"locale", "en-US"}, {"displayName", "English (United States)"}}},
		{"workingHours", obj{{"daysOfWeek", []string{"monday", "tuesday", "wednesday", "thursday", "friday"}}, {"startTime", "08:00:00.0000000"}, {"endTime", "17:00:00.0000000"}, {"timeZone", obj{{"name", "UTC"}}}}},
	}
}

func (t *Tenant) mailboxSettings(w http.ResponseWriter, r *http.Request) {
	key := userKey(r)
	t.st.mu.RLock()
	u := t.st.lookupUser(key)
	var o obj
	if u != nil {
		o = mailboxSettingsObj(u)
	}
	t.st.mu.RUnlock()
	if u == nil {
		t.fail(w, r, notFound(key))
		return
	}
	if u.userType == "Guest" {
		t.fail(w, r, &gerr{http.StatusNotFound, "MailboxNotEnabledForRESTAPI", "The mailbox is either inactive, soft-deleted, or is hosted on-premise."})
		return
	}
	o = append(obj{{"@odata.context", t.baseURL(r) + "/v1.0/$metadata#users('" + u.id + "')/mailboxSettings"}}, o...)
	writeJSON(w, http.StatusOK, o)
}

// readBody decodes a JSON object body into raw members.
func readBody(r *http.Request) (map[string]json.RawMessage, *gerr) {
	var m map[string]json.RawMessage
	dec := json.NewDecoder(io.LimitReader(r.Body, 4<<20))
	if err := dec.Decode(&m); err != nil {
		return nil, badRequest("BadRequest", "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.")
	}
	return m, nil
}

func rawString(m map[string]json.RawMessage, k string) (string, bool, *gerr) {
	v, ok := m[k]
	if !ok {
		return "", false, nil
	}
	if string(v) == "null" {
		return "", true, nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", true, badRequest("Request_BadRequest", "Invalid value specified for property '%s' of resource 'User'.", k)
	}
	return s, true, nil
}

// applyUser sets the writable properties in m on u.
func (t *Tenant) applyUser(u *user, m map[string]json.RawMessage, creating bool) *gerr {
	strFields := map[string]*string{
		"displayName": &u.displayName, "givenName": &u.givenName, "surname": &u.surname, "mail": &u.mail,
		"mobilePhone": &u.mobilePhone, "jobTitle": &u.jobTitle, "department": &u.department,
		"companyName": &u.companyName, "officeLocation": &u.office, "preferredLanguage": &u.preferredLanguage,
		"employeeId": &u.employeeID, "employeeType": &u.employeeType, "userPrincipalName": &u.upn,
		"mailNickname": &u.nick, "userType": &u.userType,
	}
	ignored := set("passwordProfile", "usageLocation", "city", "country", "otherMails", "passwordPolicies", "streetAddress", "postalCode", "state", "ageGroup", "consentProvidedForMinor", "employeeHireDate", "onPremisesImmutableId", "showInAddressList", "@odata.type")
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
		case "accountEnabled":
			var b bool
			if err := json.Unmarshal(v, &b); err != nil {
				return badRequest("Request_BadRequest", "Invalid value specified for property 'accountEnabled' of resource 'User'.")
			}
			u.accountEnabled = b
		case "businessPhones":
			var ps []string
			if err := json.Unmarshal(v, &ps); err != nil {
				return badRequest("Request_BadRequest", "Invalid value specified for property 'businessPhones' of resource 'User'.")
			}
			if len(ps) > 1 {
				return badRequest("Request_BadRequest", "Only one business phone number can be set.")
			}
			u.businessPhones = ps
		case "onPremisesExtensionAttributes":
			var ext map[string]*string
			if err := json.Unmarshal(v, &ext); err != nil {
				return badRequest("Request_BadRequest", "Invalid value specified for property 'onPremisesExtensionAttributes' of resource 'User'.")
			}
			for name, val := range ext {
				i, err := strconv.Atoi(strings.TrimPrefix(name, "extensionAttribute"))
				if err != nil || i < 1 || i > 15 || !strings.HasPrefix(name, "extensionAttribute") {
					return badRequest("Request_BadRequest", "Property '%s' does not exist on type 'microsoft.graph.onPremisesExtensionAttributes'.", name)
				}
				if u.ext == nil {
					u.ext = make([]string, 15)
				}
				u.ext[i-1] = ""
				if val != nil {
					u.ext[i-1] = *val
				}
			}
		default:
			if !ignored[strings.ToLower(k)] {
				return badRequest("Request_BadRequest", "Property '%s' does not exist on type 'microsoft.graph.user'.", k)
			}
		}
	}
	if u.userType != "Member" && u.userType != "Guest" {
		return badRequest("Request_BadRequest", "Invalid value specified for property 'userType' of resource 'User'.")
	}
	return nil
}

func (t *Tenant) validUPN(upn string) bool {
	_, dom, ok := strings.Cut(upn, "@")
	return ok && (strings.EqualFold(dom, t.cfg.Domain) || strings.EqualFold(dom, t.cfg.tenantDomain()))
}

func (t *Tenant) createUser(w http.ResponseWriter, r *http.Request) {
	m, e := readBody(r)
	if e != nil {
		t.fail(w, r, e)
		return
	}
	for _, req := range []string{"accountEnabled", "displayName", "mailNickname", "userPrincipalName", "passwordProfile"} {
		if _, ok := m[req]; !ok {
			t.fail(w, r, badRequest("Request_BadRequest", "Property '%s' is required when creating the object.", req))
			return
		}
	}
	u := &user{userType: "Member", accountEnabled: true, apiCreated: true}
	if e := t.applyUser(u, m, true); e != nil {
		t.fail(w, r, e)
		return
	}
	if !t.validUPN(u.upn) {
		t.fail(w, r, badRequest("Request_BadRequest", "The domain portion of the userPrincipalName property is invalid. You must use one of the verified domain names in your organization."))
		return
	}
	t.st.mu.Lock()
	if t.st.userByUPN[strings.ToLower(u.upn)] != nil {
		t.st.mu.Unlock()
		t.fail(w, r, badRequest("Request_BadRequest", "Another object with the same value for property userPrincipalName already exists."))
		return
	}
	u.id = newID()
	u.created = t.now().Unix()
	u.presence = uint8(len(presenceStates) - 3) // Offline/Offline: no Teams session yet
	if u.mail == "" && u.userType == "Member" && strings.EqualFold(strings.SplitN(u.upn, "@", 2)[1], t.cfg.Domain) {
		u.mail = u.upn
	}
	t.st.insertUser(u, t.st.bump())
	b := append([]byte(nil), `{"@odata.context":`...)
	b = appendString(b, t.contextURL(r, "users", nil, true))
	body := appendEntry(nil, entry{u: u}, defaultUserProps, false)
	b = append(b, ',')
	b = append(b, body[1:]...)
	t.st.mu.Unlock()
	t.hooks.changed("users", u.id, "updated")
	w.Header().Set("Location", t.baseURL(r)+"/v1.0/directoryObjects/"+u.id+"/Microsoft.DirectoryServices.User")
	writeRaw(w, http.StatusCreated, b)
}

func (t *Tenant) patchUser(w http.ResponseWriter, r *http.Request) {
	m, e := readBody(r)
	if e != nil {
		t.fail(w, r, e)
		return
	}
	key := r.PathValue("id")
	t.st.mu.Lock()
	u := t.st.lookupUser(key)
	if u == nil {
		t.st.mu.Unlock()
		t.fail(w, r, notFound(key))
		return
	}
	cp := *u
	cp.ext = slices.Clone(u.ext)
	if e := t.applyUser(&cp, m, false); e != nil {
		t.st.mu.Unlock()
		t.fail(w, r, e)
		return
	}
	if cp.upn != u.upn {
		if !t.validUPN(cp.upn) && cp.userType != "Guest" {
			t.st.mu.Unlock()
			t.fail(w, r, badRequest("Request_BadRequest", "The domain portion of the userPrincipalName property is invalid. You must use one of the verified domain names in your organization."))
			return
		}
		if o := t.st.userByUPN[strings.ToLower(cp.upn)]; o != nil && o != u {
			t.st.mu.Unlock()
			t.fail(w, r, badRequest("Request_BadRequest", "Another object with the same value for property userPrincipalName already exists."))
			return
		}
		delete(t.st.userByUPN, strings.ToLower(u.upn))
		t.st.userByUPN[strings.ToLower(cp.upn)] = u
	}
	v := t.st.ver + 1
	n := diffProps(&cp.pver, userProps, func(p string) []byte { return appendUserValue(nil, &cp, p) },
		func(p string) []byte { return appendUserValue(nil, u, p) }, v)
	if n == 0 {
		t.st.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
		return
	}
	cp.ver = t.st.bump()
	*u = cp
	t.st.mu.Unlock()
	t.hooks.changed("users", u.id, "updated")
	w.WriteHeader(http.StatusNoContent)
}

func (t *Tenant) deleteUser(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("id")
	t.st.mu.Lock()
	u := t.st.lookupUser(key)
	if u == nil {
		t.st.mu.Unlock()
		t.fail(w, r, notFound(key))
		return
	}
	v := t.st.bump()
	u.deleted, u.ver, u.deletedAt = true, v, t.now().Unix()
	delete(t.st.userByUPN, strings.ToLower(u.upn))
	var groups []string
	for _, g := range t.st.groups {
		if !g.deleted && g.removeMember(u.id, v) {
			g.ver = v
			groups = append(groups, g.id)
		}
	}
	t.st.mu.Unlock()
	t.hooks.changed("users", u.id, "updated") // soft delete: Graph sends "updated"
	for _, g := range groups {
		t.hooks.changed("groups", g, "updated")
	}
	w.WriteHeader(http.StatusNoContent)
}

func (t *Tenant) memberOf(w http.ResponseWriter, r *http.Request) {
	q, e := parseQuery(r, dirKind, true)
	if e != nil {
		t.fail(w, r, e)
		return
	}
	key := userKey(r)
	t.st.mu.RLock()
	defer t.st.mu.RUnlock()
	u := t.st.lookupUser(key)
	if u == nil {
		t.fail(w, r, notFound(key))
		return
	}
	var items []entry
	for _, g := range t.st.groups {
		if !g.deleted && g.hasMember(u.id) {
			items = append(items, entry{g: g})
		}
	}
	t.listPage(w, r, q, items, dirKind, "directoryObjects", true)
}

// Users returns the number of live (not deleted) users.
func (t *Tenant) Users() int {
	t.st.mu.RLock()
	defer t.st.mu.RUnlock()
	return t.st.liveUsers()
}

// UserInfo is a read-only view of a user for tests and tools.
type UserInfo struct {
	ID, UserPrincipalName, Mail, DisplayName, GivenName, Surname, UserType string
	MobilePhone, JobTitle, Department, EmployeeID                          string
	BusinessPhones, ExtensionAttributes                                    []string
	AccountEnabled, Shared, GlobalAdmin                                    bool
}

func (u *user) info() UserInfo {
	return UserInfo{ID: u.id, UserPrincipalName: u.upn, Mail: u.mail, DisplayName: u.displayName,
		GivenName: u.givenName, Surname: u.surname, UserType: u.userType, MobilePhone: u.mobilePhone,
		JobTitle: u.jobTitle, Department: u.department, EmployeeID: u.employeeID,
		BusinessPhones: append([]string(nil), u.businessPhones...), ExtensionAttributes: append([]string(nil), u.ext...),
		AccountEnabled: u.accountEnabled, Shared: u.shared, GlobalAdmin: u.globalAdmin}
}

// UserList returns a snapshot of the live users in creation order.
func (t *Tenant) UserList() []UserInfo {
	t.st.mu.RLock()
	defer t.st.mu.RUnlock()
	out := make([]UserInfo, 0, len(t.st.users))
	for _, u := range t.st.users {
		if !u.deleted {
			out = append(out, u.info())
		}
	}
	return out
}

// User returns one live user by id or userPrincipalName.
func (t *Tenant) User(key string) (UserInfo, bool) {
	t.st.mu.RLock()
	defer t.st.mu.RUnlock()
	u := t.st.lookupUser(key)
	if u == nil {
		return UserInfo{}, false
	}
	return u.info(), true
}

// Admin returns the tenant's first Global Administrator (user 0).
func (t *Tenant) Admin() UserInfo {
	t.st.mu.RLock()
	defer t.st.mu.RUnlock()
	for _, u := range t.st.users {
		if u.globalAdmin && !u.deleted {
			return u.info()
		}
	}
	return UserInfo{}
}
