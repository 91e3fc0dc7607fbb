package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/switchboard-pbx/switchboard/internal/directory"
)

// doAs sends a request with the given bearer token (and extra headers).
func (e *env) doAs(tok, method, path string, body any, hdr ...string) resp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = strings.NewReader(string(j))
	}
	req, _ := http.NewRequestWithContext(e.t.Context(), method, e.srv.URL+path, rd)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
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

// adminToken creates an administrator (bound to pbxID, "" = provider-wide)
// with the provider token and signs it in.
func (e *env) adminToken(username, pbxID string) string {
	e.t.Helper()
	const pw = "correct-horse-battery"
	if r := e.do("POST", "/api/v1/admins", map[string]any{"username": username, "password": pw, "pbx": pbxID}); r.status != 201 {
		e.t.Fatalf("create admin: %d %s", r.status, r.raw)
	}
	r := e.do("POST", "/api/v1/sessions", map[string]any{"username": username, "password": pw})
	if r.status != 201 {
		e.t.Fatalf("login: %d %s", r.status, r.raw)
	}
	return r.body["token"].(string)
}

func TestPBXLifecycle(t *testing.T) {
	e := newEnv(t, 0)
	r := e.do("POST", "/api/v1/pbxs", map[string]any{"id": "acme-1", "name": "Acme", "maxExtensions": 2, "timeZone": "Europe/Berlin"})
	if r.status != 201 || r.body["id"] != "acme-1" || r.body["name"] != "Acme" || num(r.body["maxExtensions"]) != 2 ||
		r.body["timeZone"] != "Europe/Berlin" || r.body["integration"] != "not_connected" {
		t.Fatalf("create: %d %s", r.status, r.raw)
	}
	// Defaults: name = id, UTC, no limit.
	if r := e.do("POST", "/api/v1/pbxs", map[string]any{"id": "b"}); r.status != 201 || r.body["name"] != "b" || r.body["timeZone"] != "UTC" || num(r.body["maxExtensions"]) != 0 {
		t.Fatalf("create with defaults: %d %s", r.status, r.raw)
	}
	if r := e.do("POST", "/api/v1/pbxs", map[string]any{"id": "acme-1"}); r.status != 409 || r.errCode() != "duplicate" || r.errField() != "id" {
		t.Fatalf("duplicate id: %d %s", r.status, r.raw)
	}
	l := e.do("GET", "/api/v1/pbxs", nil)
	items, _ := l.body["items"].([]any)
	if l.status != 200 || len(items) != 3 || l.body["nextCursor"] != "" {
		t.Fatalf("list: %d %s", l.status, l.raw)
	}
	// Paged by id.
	var seen []string
	for cursor, pages := "", 0; ; pages++ {
		l := e.do("GET", "/api/v1/pbxs?limit=2&cursor="+cursor, nil)
		items, _ := l.body["items"].([]any)
		for _, it := range items {
			seen = append(seen, it.(map[string]any)["id"].(string))
		}
		cursor, _ = l.body["nextCursor"].(string)
		if cursor == "" || pages > 3 {
			break
		}
	}
	if strings.Join(seen, ",") != "acme-1,b,default" {
		t.Fatalf("pages: %v", seen)
	}
	if r := e.do("GET", "/api/v1/pbxs?limit=0", nil); r.status != 400 || r.errField() != "limit" {
		t.Fatalf("limit 0: %d %s", r.status, r.raw)
	}

	// The PBX is addressable and its capacity holds.
	for _, n := range []string{"100", "101"} {
		if r := e.do("POST", "/api/v1/extensions?pbx=acme-1", map[string]any{"number": n}); r.status != 201 {
			t.Fatalf("extension in acme-1: %d %s", r.status, r.raw)
		}
	}
	if r := e.do("POST", "/api/v1/extensions?pbx=acme-1", map[string]any{"number": "102"}); r.status != 409 || r.errCode() != "capacity_reached" {
		t.Fatalf("capacity: %d %s", r.status, r.raw)
	}
	if g := e.do("GET", "/api/v1/pbxs/acme-1", nil); g.status != 200 || num(g.body["extensions"]) != 2 {
		t.Fatalf("get: %d %s", g.status, g.raw)
	}

	// PATCH: the fields present; a GET body can be sent back.
	if r := e.do("PATCH", "/api/v1/pbxs/acme-1", map[string]any{"maxExtensions": 1}); r.status != 400 || r.errCode() != "below_usage" || r.errField() != "maxExtensions" {
		t.Fatalf("capacity below usage: %d %s", r.status, r.raw)
	}
	p := e.do("PATCH", "/api/v1/pbxs/acme-1", map[string]any{"maxExtensions": 5, "name": " Acme GmbH "})
	if p.status != 200 || p.body["name"] != "Acme GmbH" || num(p.body["maxExtensions"]) != 5 || p.body["timeZone"] != "Europe/Berlin" {
		t.Fatalf("patch: %d %s", p.status, p.raw)
	}
	if r := e.do("PATCH", "/api/v1/pbxs/acme-1", p.body); r.status != 200 {
		t.Fatalf("GET body sent back: %d %s", r.status, r.raw)
	}
	if got, _ := e.store.GetPBX(t.Context(), "acme-1"); got.MaxExtensions != 5 || got.Name != "Acme GmbH" {
		t.Fatalf("stored: %+v", got)
	}

	// The PBX's own audit log records the provider's changes; the default
	// PBX's log (read by its administrators) does not.
	a := e.do("GET", "/api/v1/audit?pbx=acme-1", nil)
	for _, action := range []string{"pbx.create", "pbx.update"} {
		if !strings.Contains(string(a.raw), `"`+action+`"`) {
			t.Errorf("audit of acme-1 lacks %s: %s", action, a.raw)
		}
	}
	if d := e.do("GET", "/api/v1/audit", nil); strings.Contains(string(d.raw), "acme-1") {
		t.Errorf("the default PBX's audit log shows another PBX: %s", d.raw)
	}

	// DELETE removes the PBX and its data; the default PBX stays.
	if r := e.do("DELETE", "/api/v1/pbxs/default", nil); r.status != 409 || r.errCode() != "default_pbx" {
		t.Fatalf("delete default: %d %s", r.status, r.raw)
	}
	if r := e.do("DELETE", "/api/v1/pbxs/acme-1", nil); r.status != 204 {
		t.Fatalf("delete: %d %s", r.status, r.raw)
	}
	if r := e.do("GET", "/api/v1/pbxs/acme-1", nil); r.status != 404 {
		t.Fatalf("get deleted: %d %s", r.status, r.raw)
	}
	if r := e.do("GET", "/api/v1/extensions?pbx=acme-1", nil); r.status != 404 {
		t.Fatalf("deleted PBX still addressable: %d %s", r.status, r.raw)
	}
	if n, err := e.store.CountExtensions(t.Context(), "acme-1"); err != nil || n != 0 {
		t.Fatalf("extensions left: %d %v", n, err)
	}
	if r := e.do("DELETE", "/api/v1/pbxs/acme-1", nil); r.status != 404 {
		t.Fatalf("delete twice: %d %s", r.status, r.raw)
	}
}

func TestPBXFieldErrors(t *testing.T) {
	e := newEnv(t, 0)
	long := strings.Repeat("x", 64)
	cases := []struct {
		name  string
		body  any
		code  string
		field string
	}{
		{"missing id", map[string]any{"name": "x"}, "required", "id"},
		{"upper-case id", map[string]any{"id": "Acme"}, "invalid", "id"},
		{"id with a slash", map[string]any{"id": "a/b"}, "invalid", "id"},
		{"id starting with a hyphen", map[string]any{"id": "-a"}, "invalid", "id"},
		{"id too long", map[string]any{"id": long}, "invalid", "id"},
		{"blank name", map[string]any{"id": "a", "name": "  "}, "required", "name"},
		{"name too long", map[string]any{"id": "a", "name": strings.Repeat("n", 101)}, "invalid", "name"},
		{"negative capacity", map[string]any{"id": "a", "maxExtensions": -1}, "invalid", "maxExtensions"},
		{"capacity not a number", `{"id": "a", "maxExtensions": "10"}`, "invalid_type", "maxExtensions"},
		{"unknown time zone", map[string]any{"id": "a", "timeZone": "Mars/Olympus"}, "invalid", "timeZone"},
		{"Local time zone", map[string]any{"id": "a", "timeZone": "Local"}, "invalid", "timeZone"},
		{"unknown field", map[string]any{"id": "a", "colour": "red"}, "unknown_field", "colour"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do("POST", "/api/v1/pbxs", c.body)
			if r.status != 400 || r.errCode() != c.code || r.errField() != c.field {
				t.Fatalf("got %d %s, want 400 %s on %s", r.status, r.raw, c.code, c.field)
			}
		})
	}
	if r := e.do("PATCH", "/api/v1/pbxs/default", map[string]any{"id": "other"}); r.status != 400 || r.errCode() != "read_only" {
		t.Fatalf("patch id: %d %s", r.status, r.raw)
	}
	if r := e.do("PATCH", "/api/v1/pbxs/default", map[string]any{"timeZone": "Nowhere/City"}); r.status != 400 || r.errField() != "timeZone" {
		t.Fatalf("patch time zone: %d %s", r.status, r.raw)
	}
	if r := e.do("PATCH", "/api/v1/pbxs/missing", map[string]any{"name": "x"}); r.status != 404 {
		t.Fatalf("patch missing: %d %s", r.status, r.raw)
	}
	if n, _ := e.store.ListPBXs(t.Context()); len(n) != 1 {
		t.Fatalf("a refused create stored a PBX: %+v", n)
	}
}

// Only provider-wide principals manage PBXs.
func TestPBXProviderOnly(t *testing.T) {
	e := newEnv(t, 0)
	if r := e.do("POST", "/api/v1/pbxs", map[string]any{"id": "a"}); r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.raw)
	}
	provider := e.adminToken("provider", "")
	tenant := e.adminToken("tenant-a", "a")
	if r := e.doAs(provider, "POST", "/api/v1/pbxs", map[string]any{"id": "b"}); r.status != 201 {
		t.Fatalf("provider-wide admin: %d %s", r.status, r.raw)
	}
	for _, c := range []struct{ method, path string }{
		{"GET", "/api/v1/pbxs"}, {"POST", "/api/v1/pbxs"}, {"GET", "/api/v1/pbxs/a"},
		{"PATCH", "/api/v1/pbxs/a"}, {"DELETE", "/api/v1/pbxs/a"}, {"DELETE", "/api/v1/pbxs/b"},
	} {
		var body any
		if c.method == "POST" || c.method == "PATCH" {
			body = map[string]any{"id": "c", "maxExtensions": 1}
		}
		if r := e.doAs(tenant, c.method, c.path, body); r.status != 403 || r.errCode() != "forbidden" {
			t.Errorf("%s %s as a PBX admin: %d %s", c.method, c.path, r.status, r.raw)
		}
	}
	ps, _ := e.store.ListPBXs(t.Context())
	if len(ps) != 3 {
		t.Fatalf("PBXs changed by a PBX admin: %+v", ps)
	}
	if p, _ := e.store.GetPBX(t.Context(), "a"); p.MaxExtensions != 0 {
		t.Fatalf("PBX a changed: %+v", p)
	}
	// The PBX admin still works in its own PBX.
	if r := e.doAs(tenant, "POST", "/api/v1/extensions", map[string]any{"number": "200"}); r.status != 201 {
		t.Fatalf("own PBX: %d %s", r.status, r.raw)
	}
	if n, _ := e.store.CountExtensions(t.Context(), "a"); n != 1 {
		t.Fatalf("extension went elsewhere: %d in a", n)
	}
	if n, _ := e.store.CountExtensions(t.Context(), directory.DefaultPBX); n != 0 {
		t.Fatalf("extension went to the default PBX")
	}
}

// A session of an administrator whose PBX was deleted ends at once, even if
// a PBX with the same id is created again.
func TestSessionEndsWithItsPBX(t *testing.T) {
	e := newEnv(t, 10)
	if r := e.do("POST", "/api/v1/pbxs", map[string]any{"id": "gone", "name": "Gone"}); r.status != 201 {
		t.Fatalf("create PBX: %d %s", r.status, r.raw)
	}
	if r := e.do("POST", "/api/v1/admins", map[string]any{"username": "gone-admin", "password": "a-long-password", "pbx": "gone"}); r.status != 201 {
		t.Fatalf("create admin: %d %s", r.status, r.raw)
	}
	b, _ := json.Marshal(map[string]string{"username": "gone-admin", "password": "a-long-password"})
	res, err := http.Post(e.srv.URL+"/api/v1/sessions", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var out struct{ Token string }
	json.NewDecoder(res.Body).Decode(&out)
	res.Body.Close()
	get := func() int {
		req, _ := http.NewRequest("GET", e.srv.URL+"/api/v1/extensions", nil)
		req.Header.Set("Authorization", "Bearer "+out.Token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if c := get(); c != 200 {
		t.Fatalf("session before delete: %d", c)
	}
	if r := e.do("DELETE", "/api/v1/pbxs/gone", nil); r.status != 204 {
		t.Fatalf("delete PBX: %d %s", r.status, r.raw)
	}
	if r := e.do("POST", "/api/v1/pbxs", map[string]any{"id": "gone", "name": "Gone again"}); r.status != 201 {
		t.Fatalf("re-create PBX: %d %s", r.status, r.raw)
	}
	if c := get(); c != 401 {
		t.Fatalf("session of a deleted PBX's admin still works: %d", c)
	}
}
