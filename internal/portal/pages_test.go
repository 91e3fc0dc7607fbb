package portal_test

import (
	"fmt"
	"html"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// seed stores n local extensions (numbers 1000...) and one synced one (999).
func (e *env) seed(n int) (synced *directory.Extension) {
	e.t.Helper()
	ctx := e.t.Context()
	var c store.ExtensionChanges
	for i := range n {
		c.Create = append(c.Create, &directory.Extension{Number: fmt.Sprint(1000 + i), FirstName: fmt.Sprintf("User%d", i), LastName: "Local",
			Email: fmt.Sprintf("user%d@example.test", i), Source: directory.SourceLocal, Presence: directory.PresenceAvailable, CallState: directory.CallIdle})
	}
	synced = &directory.Extension{Number: "999", FirstName: "Syd", LastName: "Synced", Email: "syd@contoso.test", JobTitle: "Engineer",
		Source: directory.SourceEntra, EntraID: "entra-user-1", Presence: directory.PresenceAvailable, CallState: directory.CallIdle}
	c.Create = append(c.Create, synced)
	if err := e.store.ApplyExtensions(ctx, directory.DefaultPBX, c); err != nil {
		e.t.Fatal(err)
	}
	return synced
}

var rowRE = regexp.MustCompile(`<tr data-id="[^"]+" data-number="(\d+)">`)

func numbers(body string) []string {
	var out []string
	for _, m := range rowRE.FindAllStringSubmatch(body, -1) {
		out = append(out, m[1])
	}
	return out
}

var nextRE = regexp.MustCompile(`href="(/extensions\?[^"]*cursor=[^"]+)" id="ext-next"`)

func TestExtensionsListPagesAndSearches(t *testing.T) {
	e := newEnv(t)
	synced := e.seed(120)
	c := e.signedIn()

	p := e.do(c, "GET", "/extensions", nil, nil)
	got := numbers(p.body)
	if p.status != 200 || len(got) != 50 || got[0] != "999" || got[1] != "1000" {
		t.Fatalf("first page: %d, %d rows, starts %v", p.status, len(got), got[:min(3, len(got))])
	}
	if !strings.Contains(p.body, "121 extensions on this PBX") {
		t.Error("the total is not shown")
	}
	// The synced extension carries the mark and cannot be deleted from the list.
	row := p.body[strings.Index(p.body, `data-number="999"`):]
	row = row[:strings.Index(row, "</tr>")]
	if !strings.Contains(row, "tag-synced") || !strings.Contains(row, "disabled") || strings.Contains(row, "data-delete=") {
		t.Errorf("synced row:\n%s", row)
	}
	if !strings.Contains(row, `data-edit="`+synced.ID+`"`) {
		t.Error("synced row has no edit button")
	}

	// Walk every page by cursor: each extension once, in number order.
	seen := map[string]bool{}
	pages := 0
	for {
		pages++
		for _, n := range numbers(p.body) {
			if seen[n] {
				t.Fatalf("extension %s on two pages", n)
			}
			seen[n] = true
		}
		m := nextRE.FindStringSubmatch(p.body)
		if m == nil {
			break
		}
		p = e.do(c, "GET", html.UnescapeString(m[1]), nil, nil)
		if p.status != 200 {
			t.Fatalf("page %d: %d", pages+1, p.status)
		}
	}
	if len(seen) != 121 || pages != 3 {
		t.Fatalf("walked %d pages, %d extensions", pages, len(seen))
	}

	// Search: htmx asks for the results region only.
	p = e.do(c, "GET", "/extensions?search=user11", nil, map[string]string{"HX-Request": "true"})
	got = numbers(p.body)
	if p.status != 200 || strings.Contains(p.body, "<html") || !strings.HasPrefix(strings.TrimSpace(p.body), `<div id="ext-results"`) {
		t.Fatalf("fragment: %d\n%.300s", p.status, p.body)
	}
	if strings.Join(got, ",") != "1011,1110,1111,1112,1113,1114,1115,1116,1117,1118,1119" {
		t.Fatalf("search user11: %v", got)
	}
	if !strings.Contains(p.header.Get("Vary"), "HX-Request") {
		t.Error("fragment and page share a cache key")
	}
	// Source filter and an empty result.
	if got := numbers(e.do(c, "GET", "/extensions?source=entra", nil, nil).body); strings.Join(got, ",") != "999" {
		t.Fatalf("source=entra: %v", got)
	}
	if p := e.do(c, "GET", "/extensions?search=nobody-like-this", nil, nil); !strings.Contains(p.body, "No extension matches") {
		t.Fatal("no empty-result message")
	}
	// A forged cursor starts over instead of failing.
	if p := e.do(c, "GET", "/extensions?cursor=%%%garbage", nil, nil); p.status != http.StatusSeeOther && p.status != 200 {
		t.Fatalf("forged cursor: %d", p.status)
	}
}

func TestDirectoryPagesRender(t *testing.T) {
	e := newEnv(t)
	synced := e.seed(3)
	ctx := t.Context()
	local, err := e.store.FindExtension(ctx, directory.DefaultPBX, "number", "1000")
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range []*directory.Group{
		{Name: "Sales", Source: directory.SourceEntra, EntraID: "g-1", Members: []string{synced.ID, local.ID}},
		{Name: "Front desk", Source: directory.SourceLocal, Members: []string{local.ID}},
	} {
		if err := e.store.CreateGroup(ctx, directory.DefaultPBX, g); err != nil {
			t.Fatal(err)
		}
	}
	book := &directory.Phonebook{Name: "Suppliers", Source: directory.SourceLocal}
	if err := e.store.CreatePhonebook(ctx, directory.DefaultPBX, book); err != nil {
		t.Fatal(err)
	}
	if err := e.store.CreateContact(ctx, directory.DefaultPBX, &directory.Contact{PhonebookID: book.ID, FirstName: "Zed", LastName: "Parts", Mobile: "+15550100", Source: directory.SourceLocal}); err != nil {
		t.Fatal(err)
	}
	c := e.signedIn()
	for _, tc := range []struct {
		path string
		want []string
	}{
		{"/extension-groups", []string{"Sales", "Front desk", "Managed in Entra", "999 Syd Synced", "of at most 63 groups", "Edit group Front desk", `data-value-members="1000"`}},
		{"/phonebooks", []string{"Suppliers", `href="/phonebooks/` + book.ID + `"`}},
		{"/phonebooks/" + book.ID, []string{"Zed Parts", "+15550100", "Add contact", "Who sees these contacts", "phonebook.js"}},
		{"/audit", []string{"admin.login", adminUser}},
		{"/integrations/microsoft", []string{"Redirect URI", "Web client SSO redirect URI", "Application (client) ID", "Delete the PBX extensions in sync with the users", "Delete the PBX extension groups in sync with the groups", "Update client secret",
			// Outlook contacts: the three pickers, a phonebook name per mailbox, Run now and the report.
			`data-picker-url="/api/v1/directory/groups" data-picker-field="personal.groupIds"`,
			`data-picker-url="/api/v1/integration/contacts-sync/synced-users" data-picker-field="personal.userIds"`, "Select all synced users",
			`data-picker-url="/api/v1/directory/shared-mailboxes" data-picker-field="sharedMailboxes.mailboxes"`, `data-picker-name="phonebook"`,
			`id="contacts-run-btn"`, `id="contacts-report"`,
			// Teams presence: the status of each user's path.
			`id="presence-status"`, "Follows Teams by", "contacts.js", "presence.js"}},
		{"/extensions", []string{`class="row-select"`, `id="ext-select-page"`, `id="bulk-presence-dialog"`, `id="ext-presence"`, `id="ps-enabled"`,
			`id="ext-sip"`, `id="sip-show"`, `id="sip-rotate"`, "Generate new password"}},
	} {
		p := e.do(c, "GET", tc.path, nil, nil)
		if p.status != 200 {
			t.Errorf("%s: %d", tc.path, p.status)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(html.UnescapeString(p.body), w) {
				t.Errorf("%s: missing %q", tc.path, w)
			}
		}
		if p.header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: Cache-Control %q", tc.path, p.header.Get("Cache-Control"))
		}
	}
	if p := e.do(c, "GET", "/phonebooks/no-such-book", nil, nil); p.status != 404 {
		t.Errorf("unknown phonebook: %d", p.status)
	}
}

func TestAuditPages(t *testing.T) {
	e := newEnv(t)
	for i := range 60 {
		if err := e.store.AppendAudit(t.Context(), store.AuditEntry{PBXID: directory.DefaultPBX, Actor: "robot", Action: fmt.Sprintf("test.%02d", i), Target: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	c := e.signedIn()
	p := e.do(c, "GET", "/audit", nil, nil)
	m := regexp.MustCompile(`href="(/audit\?before=\d+)" id="audit-older"`).FindStringSubmatch(p.body)
	if m == nil || strings.Count(p.body, "<code>") != 50 {
		t.Fatalf("first audit page: %d entries, older link %v", strings.Count(p.body, "<code>"), m)
	}
	p = e.do(c, "GET", m[1], nil, nil)
	if n := strings.Count(p.body, "<code>"); n != 11 || !strings.Contains(p.body, "test.00") || strings.Contains(p.body, `id="audit-older"`) {
		t.Fatalf("second audit page: %d entries", n)
	}
}

// TestPhonebookVisibilityRenders: the phonebook page names who sees its
// contacts, with the granted extensions by number and the groups ticked.
func TestPhonebookVisibilityRenders(t *testing.T) {
	e := newEnv(t)
	e.seed(3)
	ctx := t.Context()
	x, err := e.store.FindExtension(ctx, directory.DefaultPBX, "number", "1001")
	if err != nil {
		t.Fatal(err)
	}
	g := &directory.Group{Name: "Front desk", Source: directory.SourceLocal}
	if err := e.store.CreateGroup(ctx, directory.DefaultPBX, g); err != nil {
		t.Fatal(err)
	}
	book := &directory.Phonebook{Name: "Suppliers", Source: directory.SourceLocal}
	if err := e.store.CreatePhonebook(ctx, directory.DefaultPBX, book); err != nil {
		t.Fatal(err)
	}
	c := e.signedIn()
	body := func() string {
		p := e.do(c, "GET", "/phonebooks/"+book.ID, nil, nil)
		if p.status != 200 {
			t.Fatalf("phonebook page: %d", p.status)
		}
		return html.UnescapeString(p.body)
	}
	if b := body(); !strings.Contains(b, "Nobody sees these contacts yet") || !strings.Contains(b, `value="chosen" id="vis-chosen" checked`) {
		t.Error("a phonebook without grants is not shown as hidden")
	}
	grants := []directory.Visibility{{Kind: directory.VisibleToExtension, TargetID: x.ID}, {Kind: directory.VisibleToGroup, TargetID: g.ID}}
	if err := e.store.SetVisibility(ctx, directory.DefaultPBX, book.ID, grants); err != nil {
		t.Fatal(err)
	}
	b := body()
	for _, w := range []string{"Visible to 1 extension and the members of 1 extension group.", `id="vis-extensions" name="extensions" value="1001"`, `value="` + g.ID + `" checked`} {
		if !strings.Contains(b, w) {
			t.Errorf("missing %q", w)
		}
	}
	if err := e.store.SetVisibility(ctx, directory.DefaultPBX, book.ID, []directory.Visibility{{Kind: directory.VisibleToEveryone}}); err != nil {
		t.Fatal(err)
	}
	if b := body(); !strings.Contains(b, "Every extension on this PBX sees these contacts.") || !strings.Contains(b, `value="everyone" id="vis-everyone" checked`) {
		t.Error("a phonebook granted to everyone is not shown so")
	}
}
