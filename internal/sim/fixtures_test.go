package sim

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

const fixtureDir = "../../testdata/graph-fixtures"

func loadFixture(t *testing.T, name string) any {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(fixtureDir, name))
	if err != nil {
		t.Fatalf("fixture: %v", err)
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("fixture %s: %v", name, err)
	}
	return v
}

var (
	knownOnce sync.Once
	known     map[string]bool
)

// knownKeys are the property names documented somewhere we trust: any word of
// graph-facts.md and any key of any fixture. A key the sim writes that a fixture item lacks
// must be one of these.
func knownKeys(t *testing.T) map[string]bool {
	knownOnce.Do(func() {
		known = map[string]bool{}
		facts, err := os.ReadFile(filepath.Join(fixtureDir, "..", "graph-facts.md"))
		if err != nil {
			t.Fatalf("graph-facts: %v", err)
		}
		for _, w := range regexp.MustCompile(`[@A-Za-z0-9_.#-]+`).FindAllString(string(facts), -1) {
			known[strings.Trim(w, ".")] = true
		}
		_ = filepath.WalkDir(fixtureDir, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".json") {
				return err
			}
			raw, _ := os.ReadFile(p)
			var v any
			if json.Unmarshal(raw, &v) == nil {
				collectKeys(v, known)
			}
			return nil
		})
	})
	return known
}

func collectKeys(v any, into map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		for k, vv := range x {
			into[k] = true
			collectKeys(vv, into)
		}
	case []any:
		for _, vv := range x {
			collectKeys(vv, into)
		}
	}
}

// shapeOpts lists what a fixture comparison tolerates, each with the MANIFEST note or
// graph-facts line that justifies it.
type shapeOpts struct {
	missingOK map[string]bool // keys the fixture has that the sim may omit
	freeForm  map[string]bool // keys whose object content is not compared (e.g. headers)
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "boolean"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// compareShape compares got against the documented want: key names, JSON types (null is
// compatible with any type: Graph properties are nullable) and annotations. Array items
// are compared against want's first item.
func compareShape(t *testing.T, path string, want, got any, o shapeOpts) []string {
	var errs []string
	wt, gt := jsonType(want), jsonType(got)
	if wt == "null" || gt == "null" {
		return nil
	}
	if wt != gt {
		return []string{fmt.Sprintf("%s: type %s, documented %s", path, gt, wt)}
	}
	switch w := want.(type) {
	case map[string]any:
		g := got.(map[string]any)
		for k, wv := range w {
			gv, ok := g[k]
			if !ok && k == "@odata.nextLink" && g["@odata.deltaLink"] != nil {
				continue // a state link: the sim's round simply ended on this page
			}
			if !ok {
				if !o.missingOK[k] {
					errs = append(errs, fmt.Sprintf("%s: missing %q", path, k))
				}
				continue
			}
			if o.freeForm[k] {
				continue
			}
			errs = append(errs, compareShape(t, path+"."+k, wv, gv, o)...)
		}
		known := knownKeys(t)
		for k := range g {
			if _, ok := w[k]; !ok && !known[k] {
				errs = append(errs, fmt.Sprintf("%s: undocumented key %q", path, k))
			}
		}
	case []any:
		g := got.([]any)
		if len(w) == 0 {
			return nil
		}
		if len(g) == 0 && strings.HasSuffix(path, "$.value") {
			return []string{fmt.Sprintf("%s: empty collection, documented example has items", path)}
		}
		for i, gv := range g {
			errs = append(errs, compareShape(t, fmt.Sprintf("%s[%d]", path, i), w[0], gv, o)...)
		}
	}
	return errs
}

func checkShape(t *testing.T, fixture string, got []byte, o shapeOpts) {
	t.Helper()
	want := loadFixture(t, fixture)
	var g any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: response is not JSON: %v\n%s", fixture, err, got)
	}
	if errs := compareShape(t, "$", want, g, o); len(errs) > 0 {
		sort.Strings(errs)
		if len(errs) > 15 {
			errs = append(errs[:15], "...")
		}
		t.Errorf("%s: shape differs:\n  %s\nbody: %.600s", fixture, strings.Join(errs, "\n  "), got)
	}
}

func tolerate(keys ...string) shapeOpts {
	m := map[string]bool{}
	for _, k := range keys {
		m[k] = true
	}
	return shapeOpts{missingOK: m}
}

// fixtureUser picks a user with contacts in a named folder (for the /me contact fixtures).
func fixtureUser(t *testing.T, b *bundle) (UserInfo, ContactInfo) {
	for _, u := range b.ten.UserList() {
		if u.UserType != "Member" || u.Shared {
			continue
		}
		cs, _ := b.ten.Contacts(u.ID)
		folders := map[string]int{}
		for _, c := range cs {
			folders[c.FolderID]++
		}
		if len(folders) == 2 && len(cs) >= 4 {
			return u, cs[0]
		}
	}
	t.Fatal("no user with two contact folders")
	return UserInfo{}, ContactInfo{}
}

func TestFixtureShapes(t *testing.T) {
	b := newBundle(t, nil)
	users := b.ten.UserList()
	me, _ := fixtureUser(t, b)
	del := "del:" + me.ID
	ev := []string{"ConsistencyLevel", "eventual"}

	// A group with nested groups and members whose names start with "a" and "Pr".
	groups := b.ten.GroupList()
	var sec GroupInfo
	for _, g := range groups {
		if g.SecurityEnabled && !g.MailEnabled && len(g.GroupTypes) == 0 {
			sec = g
			break
		}
	}
	for _, u := range users {
		dn := strings.ToLower(u.DisplayName)
		if (strings.HasPrefix(dn, "a") || strings.Contains(" "+dn, " pr")) && !contains(sec.Members, u.ID) && !u.Shared {
			ref := map[string]string{"@odata.id": "https://graph.microsoft.com/v1.0/directoryObjects/" + u.ID}
			mustStatus(t, b.do("POST", "/v1.0/groups/"+sec.ID+"/members/$ref", "app", ref), 204)
			sec.Members = append(sec.Members, u.ID)
		}
	}
	var nested GroupInfo
	for _, g := range groups {
		if g.SecurityEnabled && !g.MailEnabled && g.ID != sec.ID && len(g.GroupTypes) == 0 {
			nested = g
			break
		}
	}
	ref := map[string]string{"@odata.id": "https://graph.microsoft.com/v1.0/directoryObjects/" + sec.ID}
	mustStatus(t, b.do("POST", "/v1.0/groups/"+nested.ID+"/members/$ref", "app", ref), 204)

	folderList := b.do("GET", "/v1.0/me/contactFolders", del, nil)
	mustStatus(t, folderList, 200)
	folderID := folderList.json(t)["value"].([]any)[0].(map[string]any)["id"].(string)
	def := b.do("GET", "/v1.0/me/contactFolders/contacts", del, nil)
	mustStatus(t, def, 200)
	defaultFolder := def.json(t)["id"].(string)

	cases := []struct {
		fixture, method, url, token string
		hdr                         []string
		opts                        shapeOpts
	}{
		{"users/user-list-01-all-users.json", "GET", "/v1.0/users", "app", nil, shapeOpts{}},
		// graph-facts 2: mailNickname is not in the default property set; the doc example shows it.
		{"users/user-list-04-startswith-top-count.json", "GET", "/v1.0/users?$filter=startswith(displayName,'a')&$orderby=displayName&$count=true&$top=1", "app", ev, tolerate("mailNickname")},
		{"users/user-list-05-endswith-count.json", "GET", "/v1.0/users?$filter=endswith(mail,'a@contoso.com')&$orderby=userPrincipalName&$count=true", "app", ev, shapeOpts{}},
		{"users/user-list-06-search-count.json", "GET", `/v1.0/users?$search="displayName:wa"&$orderby=displayName&$count=true`, "app", ev, shapeOpts{}},
		{"users/user-list-07-search-or-count.json", "GET", `/v1.0/users?$search="displayName:wa" OR "displayName:ad"&$orderby=displayName&$count=true`, "app", ev, shapeOpts{}},
		// MANIFEST 18/19: no @odata.context in the doc sample (ours has it; it is an annotation Graph writes).
		{"users/user-get-01-by-id.json", "GET", "/v1.0/users/" + users[3].ID, "app", nil, shapeOpts{}},
		{"users/user-get-02-me.json", "GET", "/v1.0/me", del, nil, shapeOpts{}},
		{"groups/group-list-01-all-groups.json", "GET", "/v1.0/groups", "app", nil, shapeOpts{}},
		{"groups/group-list-04-startswith-top-count.json", "GET", "/v1.0/groups?$filter=startswith(displayName, 'a')&$count=true&$top=1&$orderby=displayName", "app", ev, shapeOpts{}},
		{"groups/group-list-05-search-count.json", "GET", `/v1.0/groups?$search="displayName:Video" OR "description:prod"&$orderby=displayName&$count=true`, "app", ev, shapeOpts{}},
		{"groups/group-list-members-01-direct.json", "GET", "/v1.0/groups/" + sec.ID + "/members", "app", nil, shapeOpts{}},
		{"groups/group-list-members-04-cast-user-search-count.json", "GET", "/v1.0/groups/" + sec.ID + `/members/microsoft.graph.user?$count=true&$orderby=displayName&$search="displayName:Pr"&$select=displayName,id`, "app", ev, shapeOpts{}},
		{"groups/group-list-members-05-filter-startswith-count.json", "GET", "/v1.0/groups/" + sec.ID + "/members?$count=true&$filter=startswith(displayName, 'a')", "app", ev, shapeOpts{}},
		{"groups/group-list-transitivemembers-01.json", "GET", "/v1.0/groups/" + nested.ID + "/transitiveMembers", "app", nil, shapeOpts{}},
		{"groups/group-list-transitivemembers-04-cast-user-search-count.json", "GET", "/v1.0/groups/" + nested.ID + `/transitiveMembers/microsoft.graph.user?$count=true&$orderBy=displayName&$search="displayName:Pr"&$select=displayName,id`, "app", ev, shapeOpts{}},
		{"groups/group-list-transitivemembers-05-cast-user-filter-count.json", "GET", "/v1.0/groups/" + nested.ID + "/transitiveMembers/microsoft.graph.user?$count=true&$orderBy=displayName&$filter=startswith(displayName, 'a')", "app", ev, shapeOpts{}},
		{"delta/user-delta-api-01-default-properties.json", "GET", "/v1.0/users/delta", "app", nil, shapeOpts{}},
		{"delta/user-delta-api-02-select-three.json", "GET", "/v1.0/users/delta?$select=displayName,jobTitle,mobilePhone", "app", nil, shapeOpts{}},
		{"delta/group-delta-api-01-default-properties.json", "GET", "/v1.0/groups/delta", "app", nil, shapeOpts{}},
		{"delta/group-delta-api-02-select-three.json", "GET", "/v1.0/groups/delta?$select=displayName,description,mailNickname", "app", nil, shapeOpts{}},
		// MANIFEST 5: the doc sample returns properties beyond its $select=displayName.
		{"delta/contact-delta-api-01-select-maxpagesize.json", "GET", "/v1.0/me/contactFolders/" + defaultFolder + "/contacts/delta?$select=displayName", del, []string{"Prefer", "odata.maxpagesize=2"}, tolerate("parentFolderId", "birthday", "fileAs", "givenName", "initials")},
		{"contacts/user-list-contacts-01.json", "GET", "/v1.0/me/contacts", del, nil, shapeOpts{}},
		{"contacts/contactfolder-list-contacts-01.json", "GET", "/v1.0/me/contactFolders/" + folderID + "/contacts", del, nil, shapeOpts{}},
		{"contacts/user-list-contactfolders-01.json", "GET", "/v1.0/me/contactFolders", del, nil, shapeOpts{}},
		{"presence/presence-get-01-me.json", "GET", "/v1.0/me/presence", del, nil, shapeOpts{}},
		{"presence/presence-get-02-user.json", "GET", "/v1.0/users/" + users[4].ID + "/presence", "app", nil, shapeOpts{}},
		{"presence/getpresencesbyuserid-01.json", "POST", "/v1.0/communications/getPresencesByUserId", "app", nil, shapeOpts{}},
	}
	for _, c := range cases {
		t.Run(c.fixture, func(t *testing.T) {
			var body any
			if c.method == "POST" {
				body = map[string]any{"ids": []string{users[1].ID, users[2].ID}}
			}
			r := b.do(c.method, c.url, c.token, body, c.hdr...)
			mustStatus(t, r, 200)
			checkShape(t, c.fixture, r.body, c.opts)
		})
	}
}

func TestFixtureBatch(t *testing.T) {
	b := newBundle(t, nil)
	users := b.ten.UserList()
	var member string
	counts := map[string]int{}
	isUser := map[string]bool{}
	for _, u := range users {
		isUser[u.ID] = true
	}
	for _, g := range b.ten.GroupList() {
		for _, m := range g.Members {
			if !isUser[m] {
				continue
			}
			counts[m]++
			if counts[m] == 2 {
				member = m
			}
		}
	}
	groups := b.ten.GroupList()
	req := map[string]any{"requests": []any{
		map[string]any{"id": "1", "method": "GET", "url": "/users/" + member + "/memberOf?$top=1"},
		map[string]any{"id": "2", "method": "GET", "url": "/users/" + users[9].ID + "/contacts"},
		map[string]any{"id": "3", "method": "DELETE", "url": "/groups/" + groups[0].ID},
		map[string]any{"id": "4", "method": "POST", "url": "/users/" + users[9].ID + "/memberOf", "body": map[string]any{}, "headers": map[string]string{"Content-Type": "application/json"}},
		map[string]any{"id": "5", "method": "GET", "url": "users?$select=id,displayName,userPrincipalName&$filter=city eq null&$count=true", "headers": map[string]string{"ConsistencyLevel": "eventual"}},
	}}
	// The token holds only read permissions for users and group members: 2 and 3 are 403.
	r := b.do("POST", "/v1.0/$batch", "app:User.Read.All,GroupMember.Read.All", req)
	mustStatus(t, r, 200)
	var got struct {
		Responses []map[string]any `json:"responses"`
	}
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	want := loadFixture(t, "batch/json-batching-01-mixed-200-403-405.json").(map[string]any)["responses"].([]any)
	byID := map[string]map[string]any{}
	for _, x := range got.Responses {
		byID[x["id"].(string)] = x
	}
	for _, w := range want {
		wm := w.(map[string]any)
		id := wm["id"].(string)
		g := byID[id]
		if g == nil {
			t.Fatalf("no response %s", id)
		}
		if g["status"].(float64) != wm["status"].(float64) {
			t.Errorf("response %s: status %v, documented %v: %v", id, g["status"], wm["status"], g["body"])
		}
		// headers differ by service (MANIFEST 43); the directoryRole item of request 1 has
		// roleTemplateId, which groups lack.
		o := tolerate("roleTemplateId")
		o.freeForm = map[string]bool{"headers": true}
		if errs := compareShape(t, "responses["+id+"]", wm, g, o); len(errs) > 0 {
			t.Errorf("%s", strings.Join(errs, "\n"))
		}
		if _, ok := g["headers"].(map[string]any)["Content-Type"]; !ok {
			t.Errorf("response %s lacks Content-Type header", id)
		}
	}
}

// receiver is an httptest notification endpoint that answers the validation handshake.
type receiver struct {
	srv   *httptest.Server
	mu    sync.Mutex
	posts [][]byte
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tok := r.URL.Query().Get("validationToken"); tok != "" {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, tok)
			return
		}
		raw, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.posts = append(rc.posts, raw)
		rc.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

// wait polls until n posts arrived.
func (rc *receiver) wait(t *testing.T, n int) [][]byte {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		rc.mu.Lock()
		if len(rc.posts) >= n {
			out := append([][]byte(nil), rc.posts...)
			rc.mu.Unlock()
			return out
		}
		rc.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %d notifications", n)
	return nil
}

func TestFixtureNotifications(t *testing.T) {
	b := newBundle(t, nil)
	users := b.ten.UserList()
	rc := newReceiver(t)
	exp := time.Now().Add(2 * time.Hour).UTC().Format(time.RFC3339Nano)
	r := b.do("POST", "/v1.0/subscriptions", "app", map[string]any{
		"changeType": "updated,deleted", "notificationUrl": rc.srv.URL + "/notify", "lifecycleNotificationUrl": rc.srv.URL + "/lifecycle",
		"resource": "users", "expirationDateTime": exp, "clientState": "secretClientValue", "latestSupportedTlsVersion": "v1_2"})
	mustStatus(t, r, 201)
	checkShape(t, "notifications/subscription-post-01-created.json", r.body, shapeOpts{})
	subID := r.json(t)["id"].(string)

	mustStatus(t, b.do("PATCH", "/v1.0/users/"+users[8].ID, "app", map[string]any{"mobilePhone": "+1 206 555 0100"}), 204)
	posts := rc.wait(t, 1)
	// id and @odata.etag belong to Outlook message notifications (MANIFEST 40).
	checkShape(t, "notifications/webhook-01-change-notification-message-created.json", posts[0], tolerate("id", "@odata.etag"))
	var n struct {
		Value []struct {
			ClientState, ChangeType, Resource string
			ResourceData                      struct{ ID string }
		}
	}
	if err := json.Unmarshal(posts[0], &n); err != nil || len(n.Value) != 1 {
		t.Fatalf("notification: %s", posts[0])
	}
	if v := n.Value[0]; v.ClientState != "secretClientValue" || v.ChangeType != "updated" || v.ResourceData.ID != users[8].ID {
		t.Fatalf("notification = %+v", v)
	}

	if err := b.ten.TriggerLifecycle(subID, LifecycleReauthorizationRequired); err != nil {
		t.Fatal(err)
	}
	posts = rc.wait(t, 2)
	checkShape(t, "notifications/lifecycle-01-structure-generic.json", posts[1], shapeOpts{})

	// Presence: delegated token only (graph-facts 6.4).
	pres := map[string]any{"changeType": "updated", "notificationUrl": rc.srv.URL + "/presence",
		"resource":           "/communications/presences?$filter=id in ('" + users[10].ID + "','" + users[11].ID + "')",
		"expirationDateTime": time.Now().Add(50 * time.Minute).UTC().Format(time.RFC3339Nano), "clientState": "p"}
	mustStatus(t, b.do("POST", "/v1.0/subscriptions", "app", pres), 403)
	mustStatus(t, b.do("POST", "/v1.0/subscriptions", "del:"+users[10].ID, pres), 201)
	set := map[string]any{"sessionId": testClient, "availability": "DoNotDisturb", "activity": "Presenting", "expirationDuration": "PT1H"}
	mustStatus(t, b.do("POST", "/v1.0/users/"+users[11].ID+"/presence/setPresence", "app", set), 200)
	posts = rc.wait(t, 3)
	checkShape(t, "notifications/presence-01-basic-notification.json", posts[2], shapeOpts{})
}
