package api

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/contactsync"
	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/secret"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// ExtensionView is an extension as the API shows it.
type ExtensionView struct {
	ID                string              `json:"id"`
	Number            string              `json:"number"`
	FirstName         string              `json:"firstName"`
	LastName          string              `json:"lastName"`
	Email             string              `json:"email"`
	Mobile            string              `json:"mobile"`
	JobTitle          string              `json:"jobTitle"`
	CallerIDName      string              `json:"callerIdName"`
	Presence          directory.Presence  `json:"presence"`
	CallState         directory.CallState `json:"callState"`
	Source            directory.Source    `json:"source"`
	EntraID           string              `json:"entraId"`
	Synced            bool                `json:"synced"`
	LockedFields      []string            `json:"lockedFields"`
	HasClientPassword bool                `json:"hasClientPassword"`
	CreatedAt         time.Time           `json:"createdAt"`
	UpdatedAt         time.Time           `json:"updatedAt"`
}

// ViewExtension converts a stored extension for output.
func ViewExtension(e *directory.Extension) ExtensionView {
	v := ExtensionView{ID: e.ID, Number: e.Number, FirstName: e.FirstName, LastName: e.LastName, Email: e.Email,
		Mobile: e.Mobile, JobTitle: e.JobTitle, CallerIDName: e.CallerIDName, Presence: e.Presence, CallState: e.CallState,
		Source: e.Source, EntraID: e.EntraID, Synced: e.Synced(), LockedFields: []string{}, HasClientPassword: e.ClientPasswordHash != "",
		CreatedAt: e.CreatedAt, UpdatedAt: e.UpdatedAt}
	if v.Synced {
		v.LockedFields = directory.SyncedExtensionFields
	}
	return v
}

func (s *Server) listExtensions(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok {
		return
	}
	limit, err := queryInt(r, "limit", 100, 1000)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	q := r.URL.Query()
	src := directory.Source(q.Get("source"))
	if src != "" && src != directory.SourceLocal && src != directory.SourceEntra {
		s.writeError(w, r, &directory.FieldError{Field: "source", Code: "invalid", Reason: "must be local or entra"})
		return
	}
	items, next, err := s.Store.ListExtensions(r.Context(), pbxID, store.ExtensionQuery{Search: q.Get("search"), Source: src, Limit: limit, Cursor: q.Get("cursor")})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]ExtensionView, len(items))
	for i := range items {
		out[i] = ViewExtension(&items[i])
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": out, "nextCursor": next})
}

type extensionInput struct {
	Number         *string `json:"number"`
	FirstName      *string `json:"firstName"`
	LastName       *string `json:"lastName"`
	Email          *string `json:"email"`
	Mobile         *string `json:"mobile"`
	JobTitle       *string `json:"jobTitle"`
	CallerIDName   *string `json:"callerIdName"`
	Presence       *string `json:"presence"`
	ClientPassword *string `json:"clientPassword"`
}

// apply sets the given fields on e and returns the names of those that changed.
func (in *extensionInput) apply(e *directory.Extension) (changed []string, err error) {
	set := func(name string, dst *string, v *string, normalize func(string) string) {
		if v == nil {
			return
		}
		nv := strings.TrimSpace(*v)
		if normalize != nil {
			nv = normalize(nv)
		}
		if nv != *dst {
			changed = append(changed, name)
			*dst = nv
		}
	}
	set("number", &e.Number, in.Number, nil)
	set("firstName", &e.FirstName, in.FirstName, nil)
	set("lastName", &e.LastName, in.LastName, nil)
	set("email", &e.Email, in.Email, directory.NormalizeEmail)
	set("mobile", &e.Mobile, in.Mobile, nil)
	set("jobTitle", &e.JobTitle, in.JobTitle, nil)
	set("callerIdName", &e.CallerIDName, in.CallerIDName, nil)
	if in.Presence != nil && directory.Presence(*in.Presence) != e.Presence {
		e.Presence = directory.Presence(*in.Presence)
		changed = append(changed, "presence")
	}
	if in.ClientPassword != nil {
		if err := validateClientPassword(*in.ClientPassword); err != nil {
			return nil, err
		}
		if *in.ClientPassword == "" {
			e.ClientPasswordHash = ""
		} else {
			e.ClientPasswordHash = secret.HashPassword(*in.ClientPassword)
		}
		changed = append(changed, "clientPassword")
	}
	return changed, nil
}

func validateClientPassword(p string) error {
	if p == "" {
		return nil // clears the password: client login disabled
	}
	if len(p) < 8 || len(p) > 128 {
		return &directory.FieldError{Field: "clientPassword", Code: "invalid", Reason: "must be 8 to 128 characters"}
	}
	return nil
}

func (s *Server) createExtension(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok {
		return
	}
	var in extensionInput
	if err := decode(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	if in.Number == nil {
		s.writeError(w, r, &directory.FieldError{Field: "number", Code: "required", Reason: "is required"})
		return
	}
	e := &directory.Extension{Source: directory.SourceLocal}
	if _, err := in.apply(e); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.PBX.CreateExtension(r.Context(), pbxID, actor(r), e); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, ViewExtension(e))
}

func (s *Server) getExtension(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok {
		return
	}
	e, err := s.Store.GetExtension(r.Context(), pbxID, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ViewExtension(e))
}

func (s *Server) patchExtension(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok {
		return
	}
	var in extensionInput
	if err := decode(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	e, err := s.PBX.UpdateExtension(r.Context(), pbxID, actor(r), r.PathValue("id"), func(e *directory.Extension) error {
		before := *e
		changed, err := in.apply(e)
		if err != nil {
			return err
		}
		return directory.CheckManualExtensionEdit(&before, changed)
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ViewExtension(e))
}

func (s *Server) deleteExtension(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok {
		return
	}
	if err := s.PBX.DeleteExtension(r.Context(), pbxID, actor(r), r.PathValue("id"), directory.CheckManualExtensionDelete); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) sipCredentials(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok {
		return
	}
	e, err := s.Store.GetExtension(r.Context(), pbxID, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if len(e.SIPSecret) == 0 {
		// Imported without a SIP secret: give it one now rather than fail.
		s.rotateSIP(w, r)
		return
	}
	pw, err := s.PBX.SIPPassword(e)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("open SIP secret: %w", err))
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	s.PBX.Audit(r.Context(), pbxID, actor(r), "extension.sip_credentials.read", e.Number, "")
	writeJSON(w, http.StatusOK, map[string]string{"username": e.Number, "password": pw, "domain": s.SIPDomain})
}

func (s *Server) rotateSIP(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok {
		return
	}
	e, pw, err := s.PBX.RotateSIPSecret(r.Context(), pbxID, actor(r), r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]string{"username": e.Number, "password": pw, "domain": s.SIPDomain})
}

func (s *Server) setCallState(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok {
		return
	}
	var in struct {
		State directory.CallState `json:"state"`
	}
	if err := decode(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	if !in.State.Valid() {
		s.writeError(w, r, &directory.FieldError{Field: "state", Code: "invalid", Reason: "must be idle, ringing or busy"})
		return
	}
	e, err := s.Store.UpdateExtension(r.Context(), pbxID, r.PathValue("id"), func(e *directory.Extension) error {
		e.CallState = in.State
		return nil
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if s.Presence != nil {
		if err := s.Presence.OnCallState(r.Context(), pbxID, e.ID, in.State); err != nil {
			s.Logger.ErrorContext(r.Context(), "presence: call state", "extension", e.Number, "err", err)
		}
	}
	writeJSON(w, http.StatusOK, ViewExtension(e))
}

// ---- contacts ----

type contactInput struct {
	FirstName *string `json:"firstName"`
	LastName  *string `json:"lastName"`
	Company   *string `json:"company"`
	Mobile    *string `json:"mobile"`
	Home      *string `json:"home"`
	Business  *string `json:"business"`
	Email     *string `json:"email"`
}

func (in *contactInput) apply(c *directory.Contact) {
	for _, f := range []struct {
		dst *string
		v   *string
	}{{&c.FirstName, in.FirstName}, {&c.LastName, in.LastName}, {&c.Company, in.Company}, {&c.Mobile, in.Mobile},
		{&c.Home, in.Home}, {&c.Business, in.Business}, {&c.Email, in.Email}} {
		if f.v != nil {
			*f.dst = strings.TrimSpace(*f.v)
		}
	}
}

func (s *Server) listContacts(w http.ResponseWriter, r *http.Request, pbxID string, q store.ContactQuery) {
	limit, err := queryInt(r, "limit", 100, 1000)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	q.Limit, q.Search, q.Cursor = limit, r.URL.Query().Get("search"), r.URL.Query().Get("cursor")
	items, next, err := s.Store.ListContacts(r.Context(), pbxID, q)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if items == nil {
		items = []directory.Contact{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items, "nextCursor": next})
}

func (s *Server) listPersonalContacts(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok {
		return
	}
	if _, err := s.Store.GetExtension(r.Context(), pbxID, r.PathValue("id")); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.listContacts(w, r, pbxID, store.ContactQuery{ExtensionID: r.PathValue("id")})
}

func (s *Server) createContact(w http.ResponseWriter, r *http.Request, pbxID string, c *directory.Contact) {
	var in contactInput
	if err := decode(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	in.apply(c)
	c.Source = directory.SourceLocal
	if err := directory.ValidateContact(c); err != nil {
		s.writeError(w, r, err)
		return
	}
	country, err := s.dialCountry(r.Context(), pbxID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	contactsync.SetDialForms(c, country)
	if err := s.Store.CreateContact(r.Context(), pbxID, c); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, c)
}

func (s *Server) createPersonalContact(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok {
		return
	}
	if _, err := s.Store.GetExtension(r.Context(), pbxID, r.PathValue("id")); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.createContact(w, r, pbxID, &directory.Contact{ExtensionID: r.PathValue("id")})
}

var errSyncedContact = &directory.LockedError{Reason: "contact is synced from Outlook and is read-only"}

// patchContact edits a contact of the given owner; synced contacts are read-only.
func (s *Server) patchContact(w http.ResponseWriter, r *http.Request, pbxID string, owner func(*directory.Contact) bool) {
	var in contactInput
	if err := decode(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	country, err := s.dialCountry(r.Context(), pbxID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	c, err := s.Store.UpdateContact(r.Context(), pbxID, r.PathValue("cid"), func(c *directory.Contact) error {
		if !owner(c) {
			return store.ErrNotFound
		}
		if c.Source == directory.SourceEntra {
			return errSyncedContact
		}
		in.apply(c)
		contactsync.SetDialForms(c, country)
		return directory.ValidateContact(c)
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

// dialCountry is the country national numbers are read in for the dialling
// forms: the contacts sync's default country ("" without the contacts sync).
func (s *Server) dialCountry(ctx context.Context, pbxID string) (string, error) {
	if s.Contacts == nil {
		return "", nil
	}
	return s.Contacts.DefaultCountry(ctx, pbxID)
}

func (s *Server) deleteContact(w http.ResponseWriter, r *http.Request, pbxID string, owner func(*directory.Contact) bool) {
	err := s.Store.DeleteContact(r.Context(), pbxID, r.PathValue("cid"), func(c *directory.Contact) error {
		if !owner(c) {
			return store.ErrNotFound
		}
		if c.Source == directory.SourceEntra {
			return errSyncedContact
		}
		return nil
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) patchPersonalContact(w http.ResponseWriter, r *http.Request) {
	if pbxID, ok := s.pbxOf(w, r); ok {
		id := r.PathValue("id")
		s.patchContact(w, r, pbxID, func(c *directory.Contact) bool { return c.ExtensionID == id })
	}
}

func (s *Server) deletePersonalContact(w http.ResponseWriter, r *http.Request) {
	if pbxID, ok := s.pbxOf(w, r); ok {
		id := r.PathValue("id")
		s.deleteContact(w, r, pbxID, func(c *directory.Contact) bool { return c.ExtensionID == id })
	}
}

// ---- groups ----

type groupInput struct {
	Name    *string   `json:"name"`
	Members *[]string `json:"members"`
}

func (s *Server) listGroups(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok {
		return
	}
	gs, err := s.Store.ListGroups(r.Context(), pbxID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	for i := range gs {
		if gs[i].Members == nil {
			gs[i].Members = []string{}
		}
	}
	if gs == nil {
		gs = []directory.Group{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": gs, "limit": directory.MaxGroups})
}

func normalizeMembers(m []string) []string {
	out := append([]string{}, m...)
	sort.Strings(out)
	return compactStrings(out)
}

func compactStrings(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

func (s *Server) createGroup(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok {
		return
	}
	var in groupInput
	if err := decode(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	g := &directory.Group{Source: directory.SourceLocal, Members: []string{}}
	if in.Name != nil {
		g.Name = strings.TrimSpace(*in.Name)
	}
	if in.Members != nil {
		g.Members = normalizeMembers(*in.Members)
	}
	if err := directory.ValidateName("name", g.Name); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.Store.CreateGroup(r.Context(), pbxID, g); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.PBX.Audit(r.Context(), pbxID, actor(r), "group.create", g.Name, "")
	writeJSON(w, http.StatusCreated, g)
}

func (s *Server) getGroup(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok {
		return
	}
	g, err := s.Store.GetGroup(r.Context(), pbxID, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, g)
}

func (s *Server) patchGroup(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok {
		return
	}
	var in groupInput
	if err := decode(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	g, err := s.Store.UpdateGroup(r.Context(), pbxID, r.PathValue("id"), func(g *directory.Group) error {
		if err := directory.CheckManualGroupEdit(g); err != nil {
			return err
		}
		if in.Name != nil {
			g.Name = strings.TrimSpace(*in.Name)
		}
		if in.Members != nil {
			g.Members = normalizeMembers(*in.Members)
		}
		return directory.ValidateName("name", g.Name)
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.PBX.Audit(r.Context(), pbxID, actor(r), "group.update", g.Name, "")
	writeJSON(w, http.StatusOK, g)
}

func (s *Server) deleteGroup(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok {
		return
	}
	var name string
	err := s.Store.DeleteGroup(r.Context(), pbxID, r.PathValue("id"), func(g *directory.Group) error {
		name = g.Name
		return directory.CheckManualGroupDelete(g)
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.PBX.Audit(r.Context(), pbxID, actor(r), "group.delete", name, "")
	w.WriteHeader(http.StatusNoContent)
}

// ---- phonebooks ----

type phonebookInput struct {
	Name *string `json:"name"`
}

func (s *Server) listPhonebooks(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok {
		return
	}
	ps, err := s.Store.ListPhonebooks(r.Context(), pbxID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if ps == nil {
		ps = []directory.Phonebook{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": ps})
}

func (s *Server) createPhonebook(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok {
		return
	}
	var in phonebookInput
	if err := decode(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	p := &directory.Phonebook{Source: directory.SourceLocal}
	if in.Name != nil {
		p.Name = strings.TrimSpace(*in.Name)
	}
	if err := directory.ValidateName("name", p.Name); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.Store.CreatePhonebook(r.Context(), pbxID, p); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.PBX.Audit(r.Context(), pbxID, actor(r), "phonebook.create", p.Name, "")
	writeJSON(w, http.StatusCreated, p)
}

func (s *Server) getPhonebook(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok {
		return
	}
	p, err := s.Store.GetPhonebook(r.Context(), pbxID, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (s *Server) patchPhonebook(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok {
		return
	}
	var in phonebookInput
	if err := decode(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	p, err := s.Store.UpdatePhonebook(r.Context(), pbxID, r.PathValue("id"), func(p *directory.Phonebook) error {
		if in.Name != nil {
			p.Name = strings.TrimSpace(*in.Name) // a synced phonebook's name is the admin's choice too
		}
		return directory.ValidateName("name", p.Name)
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (s *Server) deletePhonebook(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok {
		return
	}
	err := s.Store.DeletePhonebook(r.Context(), pbxID, r.PathValue("id"), func(p *directory.Phonebook) error {
		if p.Synced() {
			return &directory.LockedError{Reason: "phonebook is synced from a shared mailbox; remove it from the contacts sync settings instead"}
		}
		return nil
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) phonebookFor(w http.ResponseWriter, r *http.Request) (string, *directory.Phonebook, bool) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok {
		return "", nil, false
	}
	p, err := s.Store.GetPhonebook(r.Context(), pbxID, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return "", nil, false
	}
	return pbxID, p, true
}

func (s *Server) listPhonebookContacts(w http.ResponseWriter, r *http.Request) {
	if pbxID, p, ok := s.phonebookFor(w, r); ok {
		s.listContacts(w, r, pbxID, store.ContactQuery{PhonebookID: p.ID})
	}
}

func (s *Server) createPhonebookContact(w http.ResponseWriter, r *http.Request) {
	pbxID, p, ok := s.phonebookFor(w, r)
	if !ok {
		return
	}
	if err := directory.CheckManualPhonebookEdit(p); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.createContact(w, r, pbxID, &directory.Contact{PhonebookID: p.ID})
}

func (s *Server) patchPhonebookContact(w http.ResponseWriter, r *http.Request) {
	if pbxID, p, ok := s.phonebookFor(w, r); ok {
		s.patchContact(w, r, pbxID, func(c *directory.Contact) bool { return c.PhonebookID == p.ID })
	}
}

func (s *Server) deletePhonebookContact(w http.ResponseWriter, r *http.Request) {
	if pbxID, p, ok := s.phonebookFor(w, r); ok {
		s.deleteContact(w, r, pbxID, func(c *directory.Contact) bool { return c.PhonebookID == p.ID })
	}
}

func (s *Server) getVisibility(w http.ResponseWriter, r *http.Request) {
	pbxID, p, ok := s.phonebookFor(w, r)
	if !ok {
		return
	}
	v, err := s.Store.ListVisibility(r.Context(), pbxID, p.ID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if v == nil {
		v = []directory.Visibility{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": v})
}

func (s *Server) putVisibility(w http.ResponseWriter, r *http.Request) {
	pbxID, p, ok := s.phonebookFor(w, r)
	if !ok {
		return
	}
	var in struct {
		Items []directory.Visibility `json:"items"`
	}
	if err := decode(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	for i := range in.Items {
		v := &in.Items[i]
		v.PhonebookID = p.ID
		field := "items[" + strconv.Itoa(i) + "]"
		switch v.Kind {
		case directory.VisibleToEveryone:
			v.TargetID = ""
		case directory.VisibleToExtension, directory.VisibleToGroup:
			if v.TargetID == "" {
				s.writeError(w, r, &directory.FieldError{Field: field + ".targetId", Code: "required", Reason: "is required for kind " + string(v.Kind)})
				return
			}
		default:
			s.writeError(w, r, &directory.FieldError{Field: field + ".kind", Code: "invalid", Reason: "must be everyone, extension or group"})
			return
		}
	}
	if err := s.Store.SetVisibility(r.Context(), pbxID, p.ID, in.Items); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.PBX.Audit(r.Context(), pbxID, actor(r), "phonebook.visibility", p.Name, "")
	s.getVisibility(w, r)
}

func parseInt64(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) }
