package sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// mailbox is a user's contacts: generated from the seed on every read until the first write
// materialises it in store.mailboxes.
type mailbox struct {
	owner    string
	folders  []*cfolder // [0] is the default Contacts folder
	contacts []*contact // by seq, deleted ones kept as tombstones
	seq      uint64
}

type cfolder struct {
	id, name string
}

type emailAddr struct{ name, address string }

type contact struct {
	seq, ver                                              uint64
	id, folder, changeKey                                 string
	created, modified                                     int64
	givenName, surname, middleName, displayName, nickName string
	title, company, department, jobTitle, office          string
	mobile, birthday, notes, initials                     string
	home, business, categories                            []string
	emails                                                []emailAddr
	deleted                                               bool
}

func (m *mailbox) folder(id string) *cfolder {
	if strings.EqualFold(id, "contacts") {
		return m.folders[0]
	}
	for _, f := range m.folders {
		if f.id == id {
			return f
		}
	}
	return nil
}

func (m *mailbox) contact(id string) *contact {
	for _, c := range m.contacts {
		if c.id == id && !c.deleted {
			return c
		}
	}
	return nil
}

func (m *mailbox) add(c *contact) {
	m.seq++
	c.seq = m.seq
	m.contacts = append(m.contacts, c)
}

// genMailbox derives u's contacts from the seed; perUser > 0 is Config.ContactsPerUser.
func genMailbox(seed int64, u *user, perUser int) *mailbox {
	r := newRNG(seed, "contacts/"+u.id)
	m := &mailbox{owner: u.id}
	m.folders = []*cfolder{{id: r.outlookID("F0"), name: "Contacts"}}
	var n, extra int
	switch {
	case u.apiCreated: // created through the API: an empty mailbox
		return m
	case u.shared:
		n, extra = 20+r.IntN(40), 5+r.IntN(10)
		m.folders = append(m.folders, &cfolder{id: r.outlookID("F1"), name: "Partners"})
	case u.userType == "Guest":
		return m
	case perUser > 0:
		n = perUser
		m.contacts = make([]*contact, 0, n)
	case r.chance(0.6):
		n = 3 + r.IntN(18)
		if r.chance(0.3) {
			extra = 1 + r.IntN(6)
			m.folders = append(m.folders, &cfolder{id: r.outlookID("F1"), name: r.pick([]string{"Suppliers", "Family", "Kunden", "客户", "Партнёры"})})
		}
	}
	base := time.Date(2022, 5, 3, 8, 0, 0, 0, time.UTC).Unix()
	for i := range n + extra {
		f := m.folders[0]
		if i >= n {
			f = m.folders[1]
		}
		m.add(genContact(r, f.id, base+int64(i)*7919))
	}
	return m
}

func genContact(r *rng, folder string, created int64) *contact {
	loc := locales[r.IntN(len(locales))].loc
	gn := loc.given[r.IntN(len(loc.given))]
	sn := loc.surnames[r.IntN(len(loc.surnames))]
	c := &contact{id: r.outlookID("C"), folder: folder, created: created, modified: created, changeKey: r.outlookID("K")[6:30]}
	kind := r.IntN(100)
	switch {
	case kind < 4: // invalid on purpose: no name, no phone
		c.emails = []emailAddr{{"", fmt.Sprintf("noreply%d@%s", r.IntN(1000), r.pick(extDomains))}}
		return c
	case kind < 7: // name but no phone
		c.givenName, c.surname = gn.native, sn.native
	default:
		c.givenName, c.surname = gn.native, sn.native
		c.mobile = loc.phone(r)
		if r.chance(0.5) {
			c.business = []string{loc.phone(r)}
		}
		if r.chance(0.2) {
			c.home = []string{loc.phone(r)}
		}
	}
	if loc.surnameFirst {
		c.displayName = c.surname + c.givenName
	} else {
		c.displayName = strings.TrimSpace(c.givenName + " " + c.surname)
	}
	c.initials = initials(gn.native, sn.native)
	if r.chance(0.7) {
		c.company = r.pick(companies)
		dom := strings.ToLower(fold(strings.ReplaceAll(c.company, " ", ""))) + ".com"
		c.emails = []emailAddr{{c.displayName, strings.ToLower(gn.ascii+"."+fold(sn.ascii)) + "@" + dom}}
		c.jobTitle = r.pick(jobTitles)
	}
	if r.chance(0.1) {
		c.birthday = fmt.Sprintf("19%02d-%02d-%02dT11:59:00Z", 50+r.IntN(50), 1+r.IntN(12), 1+r.IntN(28))
	}
	return c
}

func initials(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		for _, r := range p {
			b.WriteRune(r)
			b.WriteByte('.')
			break
		}
	}
	return b.String()
}

// contactProps lists a contact's properties in Graph's order.
var contactProps = []string{
	"id", "createdDateTime", "lastModifiedDateTime", "changeKey", "categories", "parentFolderId",
	"birthday", "fileAs", "displayName", "givenName", "initials", "middleName", "nickName", "surname",
	"title", "imAddresses", "jobTitle", "companyName", "department", "officeLocation",
	"homePhones", "mobilePhone", "businessPhones", "personalNotes", "emailAddresses",
	"homeAddress", "businessAddress", "otherAddress",
}

var canonContact = canon(contactProps)

func contactValue(c *contact, p string) any {
	switch p {
	case "id":
		return c.id
	case "createdDateTime":
		return graphTime(unix(c.created))
	case "lastModifiedDateTime":
		return graphTime(unix(c.modified))
	case "changeKey":
		return c.changeKey
	case "categories":
		return strs(c.categories)
	case "imAddresses":
		return []string{}
	case "parentFolderId":
		return c.folder
	case "birthday":
		return nstr(c.birthday)
	case "fileAs":
		return c.displayName
	case "displayName":
		return c.displayName
	case "givenName":
		return nstr(c.givenName)
	case "initials":
		return nstr(c.initials)
	case "middleName":
		return nstr(c.middleName)
	case "nickName":
		return nstr(c.nickName)
	case "surname":
		return nstr(c.surname)
	case "title":
		return nstr(c.title)
	case "jobTitle":
		return nstr(c.jobTitle)
	case "companyName":
		return nstr(c.company)
	case "department":
		return nstr(c.department)
	case "officeLocation":
		return nstr(c.office)
	case "homePhones":
		return strs(c.home)
	case "mobilePhone":
		return nstr(c.mobile)
	case "businessPhones":
		return strs(c.business)
	case "personalNotes":
		return c.notes
	case "emailAddresses":
		out := make([]any, len(c.emails))
		for i, e := range c.emails {
			out[i] = obj{{"name", e.name}, {"address", e.address}}
		}
		return out
	case "homeAddress", "businessAddress", "otherAddress":
		return obj{}
	}
	return nil
}

func (c *contact) get(prop string) any {
	if strings.EqualFold(prop, "emailAddresses") {
		out := make([]string, len(c.emails))
		for i, e := range c.emails {
			out[i] = e.address
		}
		return out
	}
	return contactValue(c, canonContact[strings.ToLower(prop)])
}

func appendContact(b []byte, c *contact, props []string) []byte {
	b = append(b, `{"@odata.etag":`...)
	b = appendString(b, `W/"`+c.changeKey+`"`)
	for _, p := range props {
		b = append(b, ',')
		b = appendString(b, p)
		b = append(b, ':')
		b = appendJSON(b, contactValue(c, p))
	}
	return append(b, '}')
}

var (
	pContactsRead  = perm{app: []string{"Contacts.Read", "Contacts.ReadWrite"}, del: []string{"Contacts.Read", "Contacts.ReadWrite", "Contacts.Read.Shared", "Contacts.ReadWrite.Shared"}}
	pContactsWrite = perm{app: []string{"Contacts.ReadWrite"}, del: []string{"Contacts.ReadWrite", "Contacts.ReadWrite.Shared"}}
)

func (t *Tenant) contactRoutes() {
	for _, pre := range []string{"/v1.0/users/{id}", "/v1.0/me"} {
		rd, wr := pContactsRead, pContactsWrite
		if pre == "/v1.0/me" {
			rd.meOnly, wr.meOnly = true, true
		}
		t.route("GET "+pre+"/contacts", rd, t.listContacts)
		t.route("GET "+pre+"/contacts/{cid}", rd, t.getContact)
		t.route("POST "+pre+"/contacts", wr, t.createContact)
		t.route("PATCH "+pre+"/contacts/{cid}", wr, t.patchContact)
		t.route("DELETE "+pre+"/contacts/{cid}", wr, t.deleteContact)
		t.route("GET "+pre+"/contactFolders", rd, t.listFolders)
		t.route("GET "+pre+"/contactFolders/{fid}", rd, t.getFolder)
		t.route("GET "+pre+"/contactFolders/{fid}/contacts", rd, t.listContacts)
		t.route("GET "+pre+"/contactFolders/{fid}/contacts/{cid}", rd, t.getContact)
		t.route("POST "+pre+"/contactFolders/{fid}/contacts", wr, t.createContact)
		t.route("PATCH "+pre+"/contactFolders/{fid}/contacts/{cid}", wr, t.patchContact)
		t.route("DELETE "+pre+"/contactFolders/{fid}/contacts/{cid}", wr, t.deleteContact)
		t.route("GET "+pre+"/contactFolders/{fid}/contacts/delta", rd, t.contactsDelta)
		t.route("GET "+pre+"/contacts/delta", rd, t.contactsDelta)
	}
}

// mailboxFor resolves the addressed mailbox for reading (generated or materialised).
// The caller holds the store lock; write asks for a materialised mailbox.
func (t *Tenant) mailboxFor(r *http.Request, write bool) (*user, *mailbox, *gerr) {
	key := userKey(r)
	u := t.st.lookupUser(key)
	if u == nil {
		return nil, nil, notFound(key)
	}
	if c := claimsOf(r); c != nil && c.Delegated && u.id != c.ObjectID {
		shared := false
		for _, s := range c.Scopes {
			if strings.HasSuffix(strings.ToLower(s), ".shared") {
				shared = true
			}
		}
		if !shared {
			return nil, nil, &gerr{http.StatusForbidden, "ErrorAccessDenied", "Access is denied. Check credentials and try again."}
		}
	}
	if u.userType == "Guest" {
		return nil, nil, &gerr{http.StatusNotFound, "MailboxNotEnabledForRESTAPI", "The mailbox is either inactive, soft-deleted, or is hosted on-premise."}
	}
	if m := t.st.mailboxes[u.id]; m != nil {
		return u, m, nil
	}
	m := genMailbox(t.cfg.Seed, u, t.cfg.ContactsPerUser)
	if write {
		t.st.mailboxes[u.id] = m
	}
	return u, m, nil
}

func folderOf(r *http.Request, m *mailbox) (*cfolder, *gerr) {
	fid := r.PathValue("fid")
	if fid == "" {
		return m.folders[0], nil
	}
	f := m.folder(fid)
	if f == nil {
		return nil, &gerr{http.StatusNotFound, "ErrorItemNotFound", "The specified object was not found in the store."}
	}
	return f, nil
}

func (t *Tenant) contactsContext(r *http.Request, u *user, f *cfolder, sel []string) string {
	s := t.baseURL(r) + "/v1.0/$metadata#users('" + u.id + "')"
	if r.PathValue("fid") != "" {
		s += "/contactFolders('" + f.id + "')"
	}
	s += "/contacts"
	if len(sel) > 0 {
		s += "(" + strings.Join(sel, ",") + ")"
	}
	return s
}

func contactSelect(r *http.Request) ([]string, *gerr) {
	s := r.URL.Query().Get("$select")
	if s == "" {
		return nil, nil
	}
	var out []string
	for _, p := range strings.Split(s, ",") {
		c, ok := canonContact[strings.ToLower(strings.TrimSpace(p))]
		if !ok {
			return nil, badRequest("RequestBroker--ParseUri", "Could not find a property named '%s' on type 'Microsoft.OutlookServices.Contact'.", strings.TrimSpace(p))
		}
		if c != "id" {
			out = append(out, c)
		}
	}
	return append([]string{"id"}, out...), nil
}

func (t *Tenant) listContacts(w http.ResponseWriter, r *http.Request) {
	sel, e := contactSelect(r)
	if e != nil {
		t.fail(w, r, e)
		return
	}
	q := r.URL.Query()
	top, skip := 10, 0
	if s := q.Get("$top"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.fail(w, r, badRequest("ErrorInvalidUrlQuery", "The value of $top is invalid."))
			return
		}
		top = min(n, 1000)
	}
	if s := q.Get("$skip"); s != "" {
		skip, _ = strconv.Atoi(s)
	}
	var flt *filter
	if s := q.Get("$filter"); s != "" {
		f, err := parseFilter(s, set("emailAddresses", "displayName", "givenName", "surname", "companyName", "id", "parentFolderId"))
		if err != nil {
			t.fail(w, r, badRequest("ErrorInvalidUrlQueryFilter", "The query filter contains one or more invalid nodes."))
			return
		}
		flt = f
	}
	t.st.mu.RLock()
	defer t.st.mu.RUnlock()
	u, m, e := t.mailboxFor(r, false)
	if e != nil {
		t.fail(w, r, e)
		return
	}
	f, e := folderOf(r, m)
	if e != nil {
		t.fail(w, r, e)
		return
	}
	var all []*contact
	for _, c := range m.contacts {
		if !c.deleted && c.folder == f.id && (flt == nil || flt.root.eval(c.get)) {
			all = append(all, c)
		}
	}
	props := sel
	if props == nil {
		props = contactProps
	}
	b := append([]byte(nil), `{"@odata.context":`...)
	b = appendString(b, t.contactsContext(r, u, f, sel))
	if skip+top < len(all) {
		v := r.URL.Query()
		v.Set("$skip", strconv.Itoa(skip+top))
		b = append(b, `,"@odata.nextLink":`...)
		b = appendString(b, t.baseURL(r)+r.URL.Path+"?"+encodeQuery(v))
	}
	b = append(b, `,"value":[`...)
	for i := skip; i < min(skip+top, len(all)); i++ {
		if i > skip {
			b = append(b, ',')
		}
		b = appendContact(b, all[i], props)
	}
	b = append(b, "]}"...)
	writeRaw(w, http.StatusOK, b)
}

func (t *Tenant) getContact(w http.ResponseWriter, r *http.Request) {
	sel, e := contactSelect(r)
	if e != nil {
		t.fail(w, r, e)
		return
	}
	t.st.mu.RLock()
	defer t.st.mu.RUnlock()
	u, m, e := t.mailboxFor(r, false)
	if e != nil {
		t.fail(w, r, e)
		return
	}
	f, e := folderOf(r, m)
	if e != nil {
		t.fail(w, r, e)
		return
	}
	c := m.contact(r.PathValue("cid"))
	if c == nil || (r.PathValue("fid") != "" && c.folder != f.id) {
		t.fail(w, r, &gerr{http.StatusNotFound, "ErrorItemNotFound", "The specified object was not found in the store."})
		return
	}
	props := sel
	if props == nil {
		props = contactProps
	}
	body := appendContact(nil, c, props)
	b := append([]byte(nil), `{"@odata.context":`...)
	b = appendString(b, t.contactsContext(r, u, f, sel)+"/$entity")
	b = append(b, ',')
	b = append(b, body[1:]...)
	writeRaw(w, http.StatusOK, b)
}

func (t *Tenant) applyContact(c *contact, m map[string]json.RawMessage) *gerr {
	strFields := map[string]*string{"givenName": &c.givenName, "surname": &c.surname, "middleName": &c.middleName,
		"displayName": &c.displayName, "nickName": &c.nickName, "title": &c.title, "companyName": &c.company,
		"department": &c.department, "jobTitle": &c.jobTitle, "officeLocation": &c.office, "mobilePhone": &c.mobile,
		"birthday": &c.birthday, "personalNotes": &c.notes, "initials": &c.initials}
	nameChanged := false
	for k, v := range m {
		if p, ok := strFields[k]; ok {
			s, _, e := rawString(m, k)
			if e != nil {
				return e
			}
			*p = s
			if k == "givenName" || k == "surname" {
				nameChanged = true
			}
			continue
		}
		switch k {
		case "homePhones", "businessPhones", "categories":
			var ps []string
			if err := json.Unmarshal(v, &ps); err != nil {
				return badRequest("ErrorInvalidProperty", "Invalid value for '%s'.", k)
			}
			switch k {
			case "homePhones":
				c.home = ps
			case "businessPhones":
				c.business = ps
			default:
				c.categories = ps
			}
		case "emailAddresses":
			var es []struct{ Name, Address string }
			if err := json.Unmarshal(v, &es); err != nil {
				return badRequest("ErrorInvalidProperty", "Invalid value for 'emailAddresses'.")
			}
			c.emails = nil
			for _, e := range es {
				c.emails = append(c.emails, emailAddr{e.Name, e.Address})
			}
		case "@odata.type", "fileAs", "homeAddress", "businessAddress", "otherAddress", "imAddresses", "children", "spouseName", "profession", "manager", "assistantName", "businessHomePage", "generation", "yomiGivenName", "yomiSurname", "yomiCompanyName":
		default:
			return badRequest("RequestBroker--ParseUri", "Could not find a property named '%s' on type 'Microsoft.OutlookServices.Contact'.", k)
		}
	}
	if _, set := m["displayName"]; !set && nameChanged {
		c.displayName = strings.TrimSpace(c.givenName + " " + c.surname)
	}
	return nil
}

func (t *Tenant) createContact(w http.ResponseWriter, r *http.Request) {
	body, e := readBody(r)
	if e != nil {
		t.fail(w, r, e)
		return
	}
	t.st.mu.Lock()
	u, m, e := t.mailboxFor(r, true)
	if e != nil {
		t.st.mu.Unlock()
		t.fail(w, r, e)
		return
	}
	f, e := folderOf(r, m)
	if e != nil {
		t.st.mu.Unlock()
		t.fail(w, r, e)
		return
	}
	now := t.now().Unix()
	c := &contact{id: "AAMkAD" + strings.ReplaceAll(newID(), "-", "") + "=", folder: f.id, created: now, modified: now, changeKey: strings.ReplaceAll(newID(), "-", "")[:24]}
	if e := t.applyContact(c, body); e != nil {
		t.st.mu.Unlock()
		t.fail(w, r, e)
		return
	}
	c.ver = t.st.bump()
	m.add(c)
	out := appendContact(nil, c, contactProps)
	b := append([]byte(nil), `{"@odata.context":`...)
	b = appendString(b, t.contactsContext(r, u, f, nil)+"/$entity")
	b = append(b, ',')
	b = append(b, out[1:]...)
	t.st.mu.Unlock()
	t.hooks.changed("users/"+u.id+"/contacts", c.id, "created")
	writeRaw(w, http.StatusCreated, b)
}

func (t *Tenant) patchContact(w http.ResponseWriter, r *http.Request) {
	body, e := readBody(r)
	if e != nil {
		t.fail(w, r, e)
		return
	}
	t.st.mu.Lock()
	u, m, e := t.mailboxFor(r, true)
	if e != nil {
		t.st.mu.Unlock()
		t.fail(w, r, e)
		return
	}
	c := m.contact(r.PathValue("cid"))
	if c == nil {
		t.st.mu.Unlock()
		t.fail(w, r, &gerr{http.StatusNotFound, "ErrorItemNotFound", "The specified object was not found in the store."})
		return
	}
	cp := *c
	if e := t.applyContact(&cp, body); e != nil {
		t.st.mu.Unlock()
		t.fail(w, r, e)
		return
	}
	cp.ver, cp.modified = t.st.bump(), t.now().Unix()
	cp.changeKey = strings.ReplaceAll(newID(), "-", "")[:24]
	*c = cp
	out := appendContact(nil, c, contactProps)
	b := append([]byte(nil), `{"@odata.context":`...)
	b = appendString(b, t.baseURL(r)+"/v1.0/$metadata#users('"+u.id+"')/contacts/$entity")
	b = append(b, ',')
	b = append(b, out[1:]...)
	t.st.mu.Unlock()
	t.hooks.changed("users/"+u.id+"/contacts", c.id, "updated")
	writeRaw(w, http.StatusOK, b)
}

func (t *Tenant) deleteContact(w http.ResponseWriter, r *http.Request) {
	t.st.mu.Lock()
	u, m, e := t.mailboxFor(r, true)
	if e != nil {
		t.st.mu.Unlock()
		t.fail(w, r, e)
		return
	}
	c := m.contact(r.PathValue("cid"))
	if c == nil {
		t.st.mu.Unlock()
		t.fail(w, r, &gerr{http.StatusNotFound, "ErrorItemNotFound", "The specified object was not found in the store."})
		return
	}
	c.deleted, c.ver = true, t.st.bump()
	t.st.mu.Unlock()
	t.hooks.changed("users/"+u.id+"/contacts", c.id, "deleted")
	w.WriteHeader(http.StatusNoContent)
}

func (t *Tenant) appendFolder(b []byte, m *mailbox, f *cfolder) []byte {
	parent := m.folders[0].id
	if f == m.folders[0] {
		parent = "AQMkAD" + strings.TrimPrefix(f.id, "AAMkAD")[:20] + "AAAIBCAAAAA=="
	}
	return appendJSON(b, obj{{"id", f.id}, {"displayName", f.name}, {"parentFolderId", parent}})
}

func (t *Tenant) listFolders(w http.ResponseWriter, r *http.Request) {
	t.st.mu.RLock()
	defer t.st.mu.RUnlock()
	u, m, e := t.mailboxFor(r, false)
	if e != nil {
		t.fail(w, r, e)
		return
	}
	b := append([]byte(nil), `{"@odata.context":`...)
	b = appendString(b, t.baseURL(r)+"/v1.0/$metadata#users('"+u.id+"')/contactFolders")
	b = append(b, `,"value":[`...)
	for i, f := range m.folders[1:] {
		if i > 0 {
			b = append(b, ',')
		}
		b = t.appendFolder(b, m, f)
	}
	b = append(b, "]}"...)
	writeRaw(w, http.StatusOK, b)
}

func (t *Tenant) getFolder(w http.ResponseWriter, r *http.Request) {
	t.st.mu.RLock()
	defer t.st.mu.RUnlock()
	u, m, e := t.mailboxFor(r, false)
	if e != nil {
		t.fail(w, r, e)
		return
	}
	f, e := folderOf(r, m)
	if e != nil {
		t.fail(w, r, e)
		return
	}
	body := t.appendFolder(nil, m, f)
	b := append([]byte(nil), `{"@odata.context":`...)
	b = appendString(b, t.baseURL(r)+"/v1.0/$metadata#users('"+u.id+"')/contactFolders/$entity")
	b = append(b, ',')
	b = append(b, body[1:]...)
	writeRaw(w, http.StatusOK, b)
}

func (t *Tenant) contactsDelta(w http.ResponseWriter, r *http.Request) {
	st, fresh, ok := t.resumeState(w, r, "contacts", false)
	if !ok {
		return
	}
	if st.Kind == "latest" {
		fresh = true
	}
	latest := st.Kind == "latest"
	sel, e := contactSelect(r)
	if e != nil {
		t.fail(w, r, e)
		return
	}
	epoch, _ := t.epoch()
	t.st.mu.RLock()
	defer t.st.mu.RUnlock()
	u, m, e := t.mailboxFor(r, false)
	if e != nil {
		t.fail(w, r, e)
		return
	}
	f, e := folderOf(r, m)
	if e != nil {
		t.fail(w, r, e)
		return
	}
	restart := t.baseURL(r) + r.URL.Path
	if !fresh && (st.Owner != u.id || st.Folder != f.id) {
		t.gone(w, r, restart)
		return
	}
	if fresh {
		st = deltaState{Kind: "contacts", Owner: u.id, Folder: f.id, Select: sel}
	} else if sel != nil && r.URL.Query().Get("$deltatoken") != "" {
		st.Select = sel
	}
	if fresh || r.URL.Query().Get("$deltatoken") != "" {
		st.Round, st.Cursor = t.st.ver, 0
	}
	st.Epoch, st.Issued = epoch, t.now().Unix()
	size := 10
	if n := preferMaxPage(r); n > 0 {
		size = n
	}
	props := st.Select
	if props == nil {
		props = contactProps
	}
	b := append([]byte(nil), `{"@odata.context":`...)
	b = appendString(b, t.contactsContext(r, u, f, st.Select)+"/$delta")
	var page []byte
	n, i := 0, 0
	if !latest {
		for i = 0; i < len(m.contacts) && m.contacts[i].seq <= st.Cursor; i++ {
		}
		for ; i < len(m.contacts) && n < size; i++ {
			c := m.contacts[i]
			if c.folder != f.id {
				continue
			}
			if st.Since == 0 && c.deleted || st.Since > 0 && c.ver <= st.Since {
				continue
			}
			if n > 0 {
				page = append(page, ',')
			}
			n++
			st.Cursor = c.seq
			if c.deleted {
				page = append(page, `{"@odata.type":"#microsoft.graph.contact","id":`...)
				page = appendString(page, c.id)
				page = append(page, `,"@removed":{"reason":"deleted"}}`...)
				continue
			}
			page = appendContact(page, c, props)
		}
	} else {
		i = len(m.contacts)
	}
	if i < len(m.contacts) {
		b = append(b, `,"@odata.nextLink":`...)
		b = appendString(b, restart+"?$skiptoken="+encodeState(st))
	} else {
		next := st
		next.Since, next.Cursor = st.Round, 0
		b = append(b, `,"@odata.deltaLink":`...)
		b = appendString(b, restart+"?$deltatoken="+encodeState(next))
	}
	b = append(b, `,"value":[`...)
	b = append(b, page...)
	b = append(b, "]}"...)
	writeRaw(w, http.StatusOK, b)
}

// SharedMailbox describes a shared mailbox (a user with mailboxSettings.userPurpose "shared").
type SharedMailbox struct {
	ID                string `json:"id"`
	UserPrincipalName string `json:"userPrincipalName"`
	Mail              string `json:"mail"`
	DisplayName       string `json:"displayName"`
	Contacts          int    `json:"contacts"`
}

// SharedMailboxes lists the tenant's shared mailboxes with their contact counts.
func (t *Tenant) SharedMailboxes() []SharedMailbox {
	t.st.mu.RLock()
	defer t.st.mu.RUnlock()
	var out []SharedMailbox
	for _, u := range t.st.users {
		if u.shared && !u.deleted {
			out = append(out, SharedMailbox{u.id, u.upn, u.mail, u.displayName, t.contactCount(u)})
		}
	}
	return out
}

func (t *Tenant) contactCount(u *user) int {
	m := t.st.mailboxes[u.id]
	if m == nil {
		m = genMailbox(t.cfg.Seed, u, t.cfg.ContactsPerUser)
	}
	n := 0
	for _, c := range m.contacts {
		if !c.deleted {
			n++
		}
	}
	return n
}

// ContactInfo is a read-only view of a contact.
type ContactInfo struct {
	ID, FolderID, DisplayName, GivenName, Surname, MobilePhone string
	BusinessPhones, HomePhones, Emails                         []string
}

// Contacts returns the contacts of a user's mailbox (all folders) by user id or UPN.
func (t *Tenant) Contacts(userKey string) ([]ContactInfo, bool) {
	t.st.mu.RLock()
	defer t.st.mu.RUnlock()
	u := t.st.lookupUser(userKey)
	if u == nil {
		return nil, false
	}
	m := t.st.mailboxes[u.id]
	if m == nil {
		m = genMailbox(t.cfg.Seed, u, t.cfg.ContactsPerUser)
	}
	var out []ContactInfo
	for _, c := range m.contacts {
		if c.deleted {
			continue
		}
		ci := ContactInfo{ID: c.id, FolderID: c.folder, DisplayName: c.displayName, GivenName: c.givenName,
			Surname: c.surname, MobilePhone: c.mobile, BusinessPhones: slices.Clone(c.business), HomePhones: slices.Clone(c.home)}
		for _, e := range c.emails {
			ci.Emails = append(ci.Emails, e.address)
		}
		out = append(out, ci)
	}
	return out, true
}
