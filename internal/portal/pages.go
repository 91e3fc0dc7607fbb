package portal

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// pageSize is how many rows a list page shows.
const pageSize = 50

// isFragment reports whether htmx asks for the page's results only.
func isFragment(r *http.Request) bool { return r.Header.Get("HX-Request") == "true" }

func (p *Portal) integrationPage(w http.ResponseWriter, r *http.Request, v viewer) {
	p.render(w, r, http.StatusOK, "integration", pageData{Title: "Microsoft 365", Nav: "integration", Viewer: v})
}

// extensionRow is an extension as the list shows it.
type extensionRow struct {
	directory.Extension
	Synced bool
}

type extensionsData struct {
	Search    string
	Source    string
	Items     []extensionRow
	Next      string // cursor of the next page
	Cursor    string // cursor of this page ("" = first)
	Total     int
	Locked    []string // fields a synced extension takes from Entra
	Presences []directory.Presence
}

func (d extensionsData) NextURL() string  { return d.pageURL(d.Next) }
func (d extensionsData) FirstURL() string { return d.pageURL("") }

func (d extensionsData) pageURL(cursor string) string {
	q := make([]string, 0, 3)
	if d.Search != "" {
		q = append(q, "search="+url.QueryEscape(d.Search))
	}
	if d.Source != "" {
		q = append(q, "source="+url.QueryEscape(d.Source))
	}
	if cursor != "" {
		q = append(q, "cursor="+url.QueryEscape(cursor))
	}
	if len(q) == 0 {
		return "/extensions"
	}
	return "/extensions?" + strings.Join(q, "&")
}

func (p *Portal) extensionsPage(w http.ResponseWriter, r *http.Request, v viewer) {
	q := r.URL.Query()
	d := extensionsData{Search: strings.TrimSpace(q.Get("search")), Source: q.Get("source"), Cursor: q.Get("cursor"),
		Locked: directory.SyncedExtensionFields, Presences: directory.Presences}
	if d.Source != string(directory.SourceLocal) && d.Source != string(directory.SourceEntra) {
		d.Source = ""
	}
	items, next, err := p.store.ListExtensions(r.Context(), v.PBXID, store.ExtensionQuery{
		Search: d.Search, Source: directory.Source(d.Source), Limit: pageSize, Cursor: d.Cursor})
	if err != nil {
		// A stale or forged cursor: start over rather than fail.
		if d.Cursor == "" {
			p.serverError(w, r, err)
			return
		}
		http.Redirect(w, r, d.FirstURL(), http.StatusSeeOther)
		return
	}
	d.Next = next
	for _, e := range items {
		d.Items = append(d.Items, extensionRow{Extension: e, Synced: e.Synced()})
	}
	if d.Total, err = p.store.CountExtensions(r.Context(), v.PBXID); err != nil {
		p.serverError(w, r, err)
		return
	}
	w.Header().Set("Vary", "HX-Request")
	if isFragment(r) {
		p.renderTemplate(w, r, http.StatusOK, "extensions", "results", d)
		return
	}
	p.render(w, r, http.StatusOK, "extensions", pageData{Title: "Extensions", Nav: "extensions", Viewer: v, Data: d})
}

type groupRow struct {
	directory.Group
	Synced        bool
	MemberNames   []string // the first few, for the list
	MemberNumbers []string // every member's number (editable groups only)
}

type groupsData struct {
	Items []groupRow
	Max   int
}

func (p *Portal) groupsPage(w http.ResponseWriter, r *http.Request, v viewer) {
	groups, err := p.store.ListGroups(r.Context(), v.PBXID)
	if err != nil {
		p.serverError(w, r, err)
		return
	}
	d := groupsData{Max: directory.MaxGroups}
	exts := map[string]*directory.Extension{} // loaded once per id; nil = deleted
	ext := func(id string) (*directory.Extension, error) {
		if x, ok := exts[id]; ok {
			return x, nil
		}
		x, err := p.store.GetExtension(r.Context(), v.PBXID, id)
		if errors.Is(err, store.ErrNotFound) {
			x, err = nil, nil
		}
		if err != nil {
			return nil, err
		}
		exts[id] = x
		return x, nil
	}
	for _, g := range groups {
		row := groupRow{Group: g, Synced: g.Synced()}
		for i, id := range g.Members {
			// A synced group can be large and is not edited here: name a few.
			if row.Synced && i == 8 {
				break
			}
			x, err := ext(id)
			if err != nil {
				p.serverError(w, r, err)
				return
			}
			if x == nil {
				continue
			}
			if i < 8 {
				row.MemberNames = append(row.MemberNames, strings.TrimSpace(x.Number+" "+x.FirstName+" "+x.LastName))
			}
			if !row.Synced {
				row.MemberNumbers = append(row.MemberNumbers, x.Number)
			}
		}
		slices.SortFunc(row.MemberNumbers, func(a, b string) int {
			if len(a) != len(b) {
				return len(a) - len(b)
			}
			return strings.Compare(a, b)
		})
		if len(g.Members) > 8 {
			row.MemberNames = append(row.MemberNames, "+"+strconv.Itoa(len(g.Members)-8)+" more")
		}
		d.Items = append(d.Items, row)
	}
	slices.SortFunc(d.Items, func(a, b groupRow) int { return strings.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)) })
	p.render(w, r, http.StatusOK, "groups", pageData{Title: "Extension groups", Nav: "groups", Viewer: v, Data: d})
}

type phonebookRow struct {
	directory.Phonebook
	Synced bool
}

func (p *Portal) phonebooksPage(w http.ResponseWriter, r *http.Request, v viewer) {
	books, err := p.store.ListPhonebooks(r.Context(), v.PBXID)
	if err != nil {
		p.serverError(w, r, err)
		return
	}
	rows := make([]phonebookRow, 0, len(books))
	for _, b := range books {
		rows = append(rows, phonebookRow{Phonebook: b, Synced: b.Synced()})
	}
	p.render(w, r, http.StatusOK, "phonebooks", pageData{Title: "Phonebooks", Nav: "phonebooks", Viewer: v, Data: rows})
}

type phonebookData struct {
	Book       phonebookRow
	Search     string
	Items      []directory.Contact
	Next       string
	Cursor     string
	Visibility visibilityData
}

// visibilityData is who sees a phonebook's contacts, as the page's form shows it.
type visibilityData struct {
	Everyone   bool
	Extensions string // numbers of the extensions granted, comma separated
	Groups     []visibilityGroup
	Summary    string
}

type visibilityGroup struct {
	ID, Name string
	Granted  bool
}

// visibility reads a phonebook's visibility grants with the extension
// numbers and extension group names they name.
func (p *Portal) visibility(r *http.Request, pbxID, bookID string) (visibilityData, error) {
	ctx := r.Context()
	grants, err := p.store.ListVisibility(ctx, pbxID, bookID)
	if err != nil {
		return visibilityData{}, err
	}
	groups, err := p.store.ListGroups(ctx, pbxID)
	if err != nil {
		return visibilityData{}, err
	}
	var d visibilityData
	granted := map[string]bool{}
	var numbers []string
	for _, g := range grants {
		switch g.Kind {
		case directory.VisibleToEveryone:
			d.Everyone = true
		case directory.VisibleToGroup:
			granted[g.TargetID] = true
		case directory.VisibleToExtension:
			x, err := p.store.GetExtension(ctx, pbxID, g.TargetID)
			if errors.Is(err, store.ErrNotFound) {
				continue // the extension is gone; the grant goes at the next save
			} else if err != nil {
				return visibilityData{}, err
			}
			numbers = append(numbers, x.Number)
		}
	}
	slices.Sort(numbers)
	d.Extensions = strings.Join(numbers, ", ")
	nGroups := 0
	for _, g := range groups {
		d.Groups = append(d.Groups, visibilityGroup{ID: g.ID, Name: g.Name, Granted: granted[g.ID]})
		if granted[g.ID] {
			nGroups++
		}
	}
	slices.SortFunc(d.Groups, func(a, b visibilityGroup) int {
		return strings.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name))
	})
	d.Summary = visibilitySummary(d.Everyone, len(numbers), nGroups)
	return d, nil
}

func visibilitySummary(everyone bool, exts, groups int) string {
	plural := func(n int, one, many string) string {
		if n == 1 {
			return "1 " + one
		}
		return strconv.Itoa(n) + " " + many
	}
	switch {
	case everyone:
		return "Every extension on this PBX sees these contacts."
	case exts == 0 && groups == 0:
		return "Nobody sees these contacts yet: grant them to everyone, or to chosen extensions and extension groups."
	case groups == 0:
		return "Visible to " + plural(exts, "extension", "extensions") + "."
	case exts == 0:
		return "Visible to the members of " + plural(groups, "extension group", "extension groups") + "."
	}
	return "Visible to " + plural(exts, "extension", "extensions") + " and the members of " + plural(groups, "extension group", "extension groups") + "."
}

func (d phonebookData) pageURL(cursor string) string {
	u := "/phonebooks/" + url.QueryEscape(d.Book.ID) + "?search=" + url.QueryEscape(d.Search)
	if cursor != "" {
		u += "&cursor=" + url.QueryEscape(cursor)
	}
	return u
}

func (d phonebookData) NextURL() string  { return d.pageURL(d.Next) }
func (d phonebookData) FirstURL() string { return d.pageURL("") }

func (p *Portal) phonebookPage(w http.ResponseWriter, r *http.Request, v viewer) {
	b, err := p.store.GetPhonebook(r.Context(), v.PBXID, r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		p.notFound(w, r)
		return
	} else if err != nil {
		p.serverError(w, r, err)
		return
	}
	q := r.URL.Query()
	d := phonebookData{Book: phonebookRow{Phonebook: *b, Synced: b.Synced()}, Search: strings.TrimSpace(q.Get("search")), Cursor: q.Get("cursor")}
	d.Items, d.Next, err = p.store.ListContacts(r.Context(), v.PBXID, store.ContactQuery{PhonebookID: b.ID, Search: d.Search, Limit: pageSize, Cursor: d.Cursor})
	if err != nil {
		if d.Cursor != "" {
			http.Redirect(w, r, d.FirstURL(), http.StatusSeeOther)
			return
		}
		p.serverError(w, r, err)
		return
	}
	w.Header().Set("Vary", "HX-Request")
	if isFragment(r) {
		p.renderTemplate(w, r, http.StatusOK, "phonebook", "results", d)
		return
	}
	if d.Visibility, err = p.visibility(r, v.PBXID, b.ID); err != nil {
		p.serverError(w, r, err)
		return
	}
	p.render(w, r, http.StatusOK, "phonebook", pageData{Title: b.Name, Nav: "phonebooks", Viewer: v, Data: d})
}

type auditData struct {
	Items []store.AuditEntry
	Next  int64 // id to page before; 0 = no older entries
}

func (p *Portal) auditPage(w http.ResponseWriter, r *http.Request, v viewer) {
	before, _ := strconv.ParseInt(r.URL.Query().Get("before"), 10, 64)
	if before < 0 {
		before = 0
	}
	items, err := p.store.ListAudit(r.Context(), v.PBXID, before, pageSize+1)
	if err != nil {
		p.serverError(w, r, err)
		return
	}
	d := auditData{Items: items}
	if len(items) > pageSize {
		d.Items = items[:pageSize]
		d.Next = d.Items[pageSize-1].ID
	}
	p.render(w, r, http.StatusOK, "audit", pageData{Title: "Audit log", Nav: "audit", Viewer: v, Data: d})
}
