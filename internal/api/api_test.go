package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchboard-pbx/switchboard/internal/api"
	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/pbx"
	"github.com/switchboard-pbx/switchboard/internal/secret"
	"github.com/switchboard-pbx/switchboard/internal/sqlstore"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

const token = "test-admin-token-0123456789"

type env struct {
	t     *testing.T
	srv   *httptest.Server
	store store.Store
	keys  *secret.Keyring
}

func newEnv(t *testing.T, maxExt int) *env {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := sqlstore.Open(t.Context(), "sqlite:"+filepath.Join(t.TempDir(), "sb.db"), logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.EnsurePBX(t.Context(), directory.PBX{ID: directory.DefaultPBX, Name: "Default", MaxExtensions: maxExt, TimeZone: "UTC"}); err != nil {
		t.Fatal(err)
	}
	keys, _ := secret.NewKeyring(secret.NewKey())
	s := &api.Server{Store: st, PBX: &pbx.Service{Store: st, Keys: keys, Logger: logger}, Keys: keys, Logger: logger,
		AdminToken: token, SIPDomain: "pbx.test", Sessions: &api.Sessions{Key: []byte("k"), Store: st}}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, store: st, keys: keys}
}

type resp struct {
	status int
	body   map[string]any
	raw    []byte
}

func (e *env) do(method, path string, body any) resp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequestWithContext(e.t.Context(), method, e.srv.URL+path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	r := resp{status: res.StatusCode, raw: raw}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

func (r resp) errCode() string {
	e, _ := r.body["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

func (r resp) errField() string {
	e, _ := r.body["error"].(map[string]any)
	s, _ := e["field"].(string)
	return s
}

func (e *env) count() int {
	n, err := e.store.CountExtensions(e.t.Context(), directory.DefaultPBX)
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *env) mustCreate(body map[string]any) string {
	e.t.Helper()
	r := e.do("POST", "/api/v1/extensions", body)
	if r.status != 201 {
		e.t.Fatalf("create %v: %d %s", body, r.status, r.raw)
	}
	return r.body["id"].(string)
}

func TestExtensionRefusals(t *testing.T) {
	e := newEnv(t, 3)
	e.mustCreate(map[string]any{"number": "100", "firstName": "Ann", "email": "Ann@Example.com"})
	cases := []struct {
		name   string
		body   any
		status int
		code   string
		field  string
	}{
		{"duplicate number", map[string]any{"number": "100"}, 409, "duplicate", "number"},
		{"duplicate email in another case", map[string]any{"number": "101", "email": "ANN@example.COM"}, 409, "duplicate", "email"},
		{"non-numeric number", map[string]any{"number": "10a"}, 400, "invalid", "number"},
		{"number too long", map[string]any{"number": "1234567890123"}, 400, "invalid", "number"},
		{"missing number", map[string]any{"firstName": "x"}, 400, "required", "number"},
		{"bad email", map[string]any{"number": "102", "email": "nope"}, 400, "invalid", "email"},
		{"bad presence", map[string]any{"number": "102", "presence": "sleeping"}, 400, "invalid", "presence"},
		{"unknown field", map[string]any{"number": "102", "nickname": "x"}, 400, "unknown_field", "nickname"},
		{"wrong type", `{"number": 102}`, 400, "invalid_type", "number"},
		{"malformed JSON", `{"number": "102"`, 400, "invalid_json", "body"},
		{"trailing data", `{"number": "102"} {}`, 400, "invalid_json", "body"},
		{"empty body", ``, 400, "invalid_json", "body"},
		{"too large", `{"firstName": "` + strings.Repeat("a", 2<<20) + `"}`, 413, "too_large", "body"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do("POST", "/api/v1/extensions", c.body)
			if r.status != c.status || r.errCode() != c.code || r.errField() != c.field {
				t.Fatalf("got %d %q field %q (%s), want %d %q field %q", r.status, r.errCode(), r.errField(), r.raw, c.status, c.code, c.field)
			}
			if n := e.count(); n != 1 {
				t.Fatalf("refused create stored something: %d extensions", n)
			}
		})
	}
	e.mustCreate(map[string]any{"number": "101"})
	e.mustCreate(map[string]any{"number": "102"})
	r := e.do("POST", "/api/v1/extensions", map[string]any{"number": "103"})
	if r.status != 409 || r.errCode() != "capacity_reached" {
		t.Fatalf("capacity: %d %s", r.status, r.raw)
	}
	if n := e.count(); n != 3 {
		t.Fatalf("count after capacity refusal = %d", n)
	}
}

func TestExtensionLifecycle(t *testing.T) {
	e := newEnv(t, 100)
	id := e.mustCreate(map[string]any{"number": "200", "firstName": "Bo", "lastName": "Li", "email": "bo@x.test", "mobile": "+1 555 0100"})
	r := e.do("GET", "/api/v1/extensions/"+id, nil)
	if r.status != 200 || r.body["number"] != "200" || r.body["source"] != "local" || r.body["presence"] != "available" {
		t.Fatalf("get: %d %s", r.status, r.raw)
	}
	if bytes.Contains(r.raw, []byte("sipSecret")) || bytes.Contains(r.raw, []byte("password\"")) {
		t.Fatalf("extension JSON leaks a secret: %s", r.raw)
	}
	r = e.do("PATCH", "/api/v1/extensions/"+id, map[string]any{"jobTitle": "Engineer", "number": "201"})
	if r.status != 200 || r.body["jobTitle"] != "Engineer" || r.body["number"] != "201" {
		t.Fatalf("patch: %d %s", r.status, r.raw)
	}
	c1 := e.do("GET", "/api/v1/extensions/"+id+"/sip-credentials", nil)
	if c1.status != 200 || c1.body["username"] != "201" || c1.body["domain"] != "pbx.test" || len(c1.body["password"].(string)) < 16 {
		t.Fatalf("sip credentials: %d %s", c1.status, c1.raw)
	}
	c2 := e.do("POST", "/api/v1/extensions/"+id+"/sip-credentials/rotate", nil)
	if c2.status != 200 || c2.body["password"] == c1.body["password"] {
		t.Fatalf("rotate did not change the password: %s", c2.raw)
	}
	if c3 := e.do("GET", "/api/v1/extensions/"+id+"/sip-credentials", nil); c3.body["password"] != c2.body["password"] {
		t.Fatal("rotated password not stored")
	}
	stored, _ := e.store.GetExtension(t.Context(), directory.DefaultPBX, id)
	if bytes.Contains(stored.SIPSecret, []byte(c2.body["password"].(string))) {
		t.Fatal("SIP secret stored in plain text")
	}
	if r := e.do("DELETE", "/api/v1/extensions/"+id, nil); r.status != 204 {
		t.Fatalf("delete: %d %s", r.status, r.raw)
	}
	if r := e.do("GET", "/api/v1/extensions/"+id, nil); r.status != 404 || r.errCode() != "not_found" {
		t.Fatalf("after delete: %d", r.status)
	}
}

func TestLockedRecords(t *testing.T) {
	e := newEnv(t, 100)
	ctx := t.Context()
	ext := &directory.Extension{Number: "300", FirstName: "Syn", LastName: "Ced", Email: "syn@x.test", Source: directory.SourceEntra, EntraID: "e-1",
		Presence: directory.PresenceAvailable, CallState: directory.CallIdle, SIPSecret: e.keys.Seal([]byte("pw"))}
	if err := e.store.CreateExtension(ctx, directory.DefaultPBX, ext); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"firstName", "lastName", "email", "mobile", "jobTitle"} {
		val := "changed"
		if f == "email" {
			val = "other@x.test"
		}
		if f == "mobile" {
			val = "+1 555 0199"
		}
		r := e.do("PATCH", "/api/v1/extensions/"+ext.ID, map[string]any{f: val})
		if r.status != 409 || r.errCode() != "locked" {
			t.Fatalf("edit synced %s: %d %s", f, r.status, r.raw)
		}
	}
	got, _ := e.store.GetExtension(ctx, directory.DefaultPBX, ext.ID)
	if got.FirstName != "Syn" || got.Email != "syn@x.test" {
		t.Fatalf("locked edit stored: %+v", got)
	}
	// Unchanged synced values and unsynced fields are fine.
	if r := e.do("PATCH", "/api/v1/extensions/"+ext.ID, map[string]any{"firstName": "Syn", "callerIdName": "Reception", "clientPassword": "s3cret-pass"}); r.status != 200 || r.body["callerIdName"] != "Reception" || r.body["hasClientPassword"] != true {
		t.Fatalf("edit unlocked field: %d %s", r.status, r.raw)
	}
	if r := e.do("DELETE", "/api/v1/extensions/"+ext.ID, nil); r.status != 409 || r.errCode() != "locked" {
		t.Fatalf("delete synced: %d %s", r.status, r.raw)
	}
	if n := e.count(); n != 1 {
		t.Fatal("synced extension deleted")
	}
	g := &directory.Group{Name: "Sales", Source: directory.SourceEntra, EntraID: "g-1", Members: []string{ext.ID}}
	if err := e.store.CreateGroup(ctx, directory.DefaultPBX, g); err != nil {
		t.Fatal(err)
	}
	if r := e.do("PATCH", "/api/v1/extension-groups/"+g.ID, map[string]any{"name": "Other"}); r.status != 409 || r.errCode() != "locked" {
		t.Fatalf("rename synced group: %d %s", r.status, r.raw)
	}
	if r := e.do("PATCH", "/api/v1/extension-groups/"+g.ID, map[string]any{"members": []string{}}); r.status != 409 {
		t.Fatalf("edit synced group members: %d", r.status)
	}
	if r := e.do("DELETE", "/api/v1/extension-groups/"+g.ID, nil); r.status != 409 || r.errCode() != "locked" {
		t.Fatalf("delete synced group: %d %s", r.status, r.raw)
	}
	gg, _ := e.store.GetGroup(ctx, directory.DefaultPBX, g.ID)
	if gg.Name != "Sales" || len(gg.Members) != 1 {
		t.Fatalf("locked group changed: %+v", gg)
	}
}

func TestGroupLimitAndMembers(t *testing.T) {
	e := newEnv(t, 100)
	a := e.mustCreate(map[string]any{"number": "400"})
	for i := range directory.MaxGroups {
		r := e.do("POST", "/api/v1/extension-groups", map[string]any{"name": fmt.Sprintf("G%02d", i), "members": []string{a}})
		if r.status != 201 {
			t.Fatalf("group %d: %d %s", i, r.status, r.raw)
		}
	}
	r := e.do("POST", "/api/v1/extension-groups", map[string]any{"name": "G64"})
	if r.status != 409 || r.errCode() != "group_limit" {
		t.Fatalf("64th group: %d %s", r.status, r.raw)
	}
	l := e.do("GET", "/api/v1/extension-groups", nil)
	if items := l.body["items"].([]any); len(items) != directory.MaxGroups {
		t.Fatalf("groups stored = %d", len(items))
	}
	if r := e.do("POST", "/api/v1/extension-groups", map[string]any{"name": ""}); r.status != 400 || r.errField() != "name" {
		t.Fatalf("empty name: %d %s", r.status, r.raw)
	}
}

func TestPaginationAndSearch(t *testing.T) {
	e := newEnv(t, 1000)
	for i := 1; i <= 25; i++ {
		e.mustCreate(map[string]any{"number": fmt.Sprint(i * 7), "firstName": fmt.Sprintf("User%d", i)})
	}
	seen := map[string]bool{}
	var order []string
	cursor := ""
	for {
		r := e.do("GET", "/api/v1/extensions?limit=10&cursor="+cursor, nil)
		if r.status != 200 {
			t.Fatalf("list: %d %s", r.status, r.raw)
		}
		for _, it := range r.body["items"].([]any) {
			n := it.(map[string]any)["number"].(string)
			if seen[n] {
				t.Fatalf("number %s seen twice", n)
			}
			seen[n] = true
			order = append(order, n)
		}
		cursor, _ = r.body["nextCursor"].(string)
		if cursor == "" {
			break
		}
	}
	if len(seen) != 25 || order[0] != "7" || order[1] != "14" || order[24] != "175" {
		t.Fatalf("paging order %v", order)
	}
	r := e.do("GET", "/api/v1/extensions?search=user1", nil)
	if n := len(r.body["items"].([]any)); n != 11 { // User1, User10..User19
		t.Fatalf("search user1: %d items", n)
	}
	if r := e.do("GET", "/api/v1/extensions?limit=0", nil); r.status != 400 || r.errField() != "limit" {
		t.Fatalf("limit=0: %d", r.status)
	}
}

func TestAuth(t *testing.T) {
	e := newEnv(t, 10)
	res, err := http.Get(e.srv.URL + "/api/v1/extensions")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 401 {
		t.Fatalf("no token: %d", res.StatusCode)
	}
	req, _ := http.NewRequest("GET", e.srv.URL+"/api/v1/extensions", nil)
	req.Header.Set("Authorization", "Bearer wrong-token-wrong-token")
	res, _ = http.DefaultClient.Do(req)
	res.Body.Close()
	if res.StatusCode != 401 {
		t.Fatalf("wrong token: %d", res.StatusCode)
	}
	if r := e.do("POST", "/api/v1/admins", map[string]any{"username": "ops", "password": "short"}); r.status != 400 || r.errField() != "password" {
		t.Fatalf("short admin password: %d %s", r.status, r.raw)
	}
	if r := e.do("POST", "/api/v1/admins", map[string]any{"username": "ops", "password": "a-long-password"}); r.status != 201 {
		t.Fatalf("create admin: %d %s", r.status, r.raw)
	}
	if r := e.do("POST", "/api/v1/admins", map[string]any{"username": "ops", "password": "a-long-password"}); r.status != 409 || r.errField() != "username" {
		t.Fatalf("duplicate admin: %d %s", r.status, r.raw)
	}
	login := func(pw string) (int, string) {
		b, _ := json.Marshal(map[string]string{"username": "ops", "password": pw})
		res, err := http.Post(e.srv.URL+"/api/v1/sessions", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var out struct{ Token string }
		json.NewDecoder(res.Body).Decode(&out)
		return res.StatusCode, out.Token
	}
	if code, _ := login("wrong-password"); code != 401 {
		t.Fatalf("wrong password: %d", code)
	}
	code, tok := login("a-long-password")
	if code != 201 || tok == "" {
		t.Fatalf("login: %d", code)
	}
	get := func() int {
		req, _ := http.NewRequest("GET", e.srv.URL+"/api/v1/extensions", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if c := get(); c != 200 {
		t.Fatalf("session token: %d", c)
	}
	req, _ = http.NewRequest("DELETE", e.srv.URL+"/api/v1/sessions/current", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	res, _ = http.DefaultClient.Do(req)
	res.Body.Close()
	if c := get(); c != 401 {
		t.Fatalf("revoked session still works: %d", c)
	}
	// Guessing is rate limited.
	limited := false
	for range 10 {
		if c, _ := login("guess"); c == 429 {
			limited = true
			break
		}
	}
	if !limited {
		t.Fatal("login guessing not rate limited")
	}
}

func TestContactsAndVisibility(t *testing.T) {
	e := newEnv(t, 10)
	a := e.mustCreate(map[string]any{"number": "500"})
	pb := e.do("POST", "/api/v1/phonebooks", map[string]any{"name": "Suppliers"})
	if pb.status != 201 {
		t.Fatalf("phonebook: %d %s", pb.status, pb.raw)
	}
	pid := pb.body["id"].(string)
	if r := e.do("POST", "/api/v1/phonebooks/"+pid+"/contacts", map[string]any{"company": "Acme"}); r.status != 400 || r.errField() != "firstName" {
		t.Fatalf("nameless contact: %d %s", r.status, r.raw)
	}
	if r := e.do("POST", "/api/v1/phonebooks/"+pid+"/contacts", map[string]any{"firstName": "Zed"}); r.status != 400 || r.errField() != "mobile" {
		t.Fatalf("phoneless contact: %d %s", r.status, r.raw)
	}
	c := e.do("POST", "/api/v1/phonebooks/"+pid+"/contacts", map[string]any{"firstName": "Zed", "business": "+44 20 7946 0000"})
	if c.status != 201 {
		t.Fatalf("contact: %d %s", c.status, c.raw)
	}
	if r := e.do("GET", "/api/v1/phonebooks/"+pid+"/contacts", nil); len(r.body["items"].([]any)) != 1 {
		t.Fatalf("contacts: %s", r.raw)
	}
	if r := e.do("PUT", "/api/v1/phonebooks/"+pid+"/visibility", map[string]any{"items": []map[string]any{{"kind": "extension"}}}); r.status != 400 || r.errField() != "items[0].targetId" {
		t.Fatalf("visibility without target: %d %s", r.status, r.raw)
	}
	if r := e.do("PUT", "/api/v1/phonebooks/"+pid+"/visibility", map[string]any{"items": []map[string]any{{"kind": "extension", "targetId": a}}}); r.status != 200 {
		t.Fatalf("visibility: %d %s", r.status, r.raw)
	}
	if r := e.do("POST", "/api/v1/extensions/"+a+"/contacts", map[string]any{"lastName": "Mum", "home": "0123"}); r.status != 201 {
		t.Fatalf("personal contact: %d %s", r.status, r.raw)
	}
	// A synced personal contact is read-only.
	sc := directory.Contact{ExtensionID: a, FirstName: "Out", LastName: "Look", Mobile: "1", Source: directory.SourceEntra, EntraID: "c-1"}
	if err := e.store.ReplaceSyncedContacts(t.Context(), directory.DefaultPBX, store.ContactOwner{ExtensionID: a}, []directory.Contact{sc}); err != nil {
		t.Fatal(err)
	}
	items, _, _ := e.store.ListContacts(t.Context(), directory.DefaultPBX, store.ContactQuery{ExtensionID: a, Search: "look"})
	if len(items) != 1 {
		t.Fatalf("synced contact not found: %v", items)
	}
	if r := e.do("DELETE", "/api/v1/extensions/"+a+"/contacts/"+items[0].ID, nil); r.status != 409 || r.errCode() != "locked" {
		t.Fatalf("delete synced contact: %d %s", r.status, r.raw)
	}
	vis, _, err := e.store.ListVisibleContacts(t.Context(), directory.DefaultPBX, a, store.ContactQuery{Limit: 100})
	if err != nil || len(vis) != 3 {
		t.Fatalf("visible contacts = %d (%v)", len(vis), err)
	}
}

func TestMetricsAndHealth(t *testing.T) {
	e := newEnv(t, 10)
	e.do("GET", "/api/v1/extensions", nil)
	for path, want := range map[string]string{"/healthz": `"ok"`, "/metrics": "switchboard_http_requests_total"} {
		res, err := http.Get(e.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Fatalf("%s: %d %.200s", path, res.StatusCode, b)
		}
	}
}
