package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/api"
	"github.com/switchboard-pbx/switchboard/internal/contactsync"
	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/graph"
	"github.com/switchboard-pbx/switchboard/internal/integration"
	"github.com/switchboard-pbx/switchboard/internal/pbx"
	"github.com/switchboard-pbx/switchboard/internal/presence"
	"github.com/switchboard-pbx/switchboard/internal/schedule"
	"github.com/switchboard-pbx/switchboard/internal/secret"
	"github.com/switchboard-pbx/switchboard/internal/sim"
	"github.com/switchboard-pbx/switchboard/internal/sqlstore"
	"github.com/switchboard-pbx/switchboard/internal/sso"
	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/syncer"
)

type nopRunner struct{}

func (nopRunner) Trigger(context.Context, string, string) error { return nil }

// newFullEnv serves the admin API with every feature wired as the service
// wires it (integration, sync engine, schedule, presence, SSO, contacts);
// the sync engine reads a small simulated tenant.
func newFullEnv(t *testing.T) (*env, *api.Server) {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	st, err := sqlstore.Open(t.Context(), "sqlite:"+filepath.Join(t.TempDir(), "sb.db"), logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.EnsurePBX(t.Context(), directory.PBX{ID: directory.DefaultPBX, Name: "Default", TimeZone: "UTC"}); err != nil {
		t.Fatal(err)
	}
	const clientID = "66666666-7777-4888-8999-000000000000"
	tn, err := sim.New(sim.Config{TenantID: "11111111-2222-4333-8444-555555555555", ClientID: clientID, ClientSecret: "s", Users: 6, Groups: 2, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	simSrv := httptest.NewServer(tn.Handler())
	t.Cleanup(func() { simSrv.Close(); tn.Close() })
	gc, err := graph.New(graph.Config{GraphURL: simSrv.URL, LoginURL: simSrv.URL, TenantID: tn.TenantID(), ClientID: clientID,
		ClientSecret: "s", BackoffBase: time.Millisecond, BackoffMax: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := secret.NewKeyring(secret.NewKey())
	ps := &pbx.Service{Store: st, Keys: keys, Logger: logger}
	integ := &integration.Service{Store: st, PBX: ps, Keys: keys, Logger: logger, BaseURL: "http://switchboard.test",
		GraphURL: simSrv.URL, LoginURL: simSrv.URL}
	eng := &syncer.Engine{Store: st, PBX: ps, Graph: &syncSource{c: gc}, Logger: logger}
	t.Cleanup(eng.Wait)
	s := &api.Server{Store: st, PBX: ps, Keys: keys, Logger: logger, AdminToken: token, SIPDomain: "pbx.test",
		Sessions: &api.Sessions{Key: []byte("k"), Store: st}, Integration: integ, Syncer: eng,
		Schedule: &schedule.Service{Store: st, Integration: integ, Runner: nopRunner{}, Logger: logger},
		Presence: &presence.Service{Store: st, Graph: integ, Logger: logger},
		SSO:      &sso.Service{Store: st, Keys: keys, Integration: integ, PBX: ps, Logger: logger, LoginURL: simSrv.URL},
		Contacts: &contactsync.Service{Store: st, Graph: integ, Logger: logger},
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, store: st, keys: keys}, s
}

// tenantData are the ids of one PBX's records.
type tenantData struct {
	pbx, ext, ext2, personal, group, book, bookContact, run, entraID string
}

func (e *env) mustDo(method, path string, body any, want int) resp {
	e.t.Helper()
	r := e.do(method, path, body)
	if r.status != want {
		e.t.Fatalf("%s %s: %d %s", method, path, r.status, r.raw)
	}
	return r
}

// seed fills a PBX with local records named after marker, and settings.
func (e *env) seed(pbxID, marker string, withSync bool) tenantData {
	e.t.Helper()
	q := "?pbx=" + pbxID
	d := tenantData{pbx: pbxID}
	d.ext = e.mustDo("POST", "/api/v1/extensions"+q, map[string]any{"number": "100", "firstName": marker + "Ext", "email": strings.ToLower(marker) + "@example.com", "clientPassword": "secret-pw-1"}, 201).body["id"].(string)
	d.ext2 = e.mustDo("POST", "/api/v1/extensions"+q, map[string]any{"number": "101", "firstName": marker + "Two"}, 201).body["id"].(string)
	d.personal = e.mustDo("POST", "/api/v1/extensions/"+d.ext+"/contacts"+q, map[string]any{"firstName": marker + "Personal", "mobile": "+4930123456"}, 201).body["id"].(string)
	d.group = e.mustDo("POST", "/api/v1/extension-groups"+q, map[string]any{"name": marker + "Group", "members": []string{d.ext}}, 201).body["id"].(string)
	d.book = e.mustDo("POST", "/api/v1/phonebooks"+q, map[string]any{"name": marker + "Book"}, 201).body["id"].(string)
	d.bookContact = e.mustDo("POST", "/api/v1/phonebooks/"+d.book+"/contacts"+q, map[string]any{"firstName": marker + "Contact", "business": "+4930654321"}, 201).body["id"].(string)
	e.mustDo("PUT", "/api/v1/phonebooks/"+d.book+"/visibility"+q, map[string]any{"items": []map[string]any{{"kind": "group", "targetId": d.group}}}, 200)
	e.mustDo("PUT", "/api/v1/integration/schedule"+q, map[string]any{"frequency": "daily", "time": "03:15", "timeZone": "Europe/Berlin"}, 200)
	e.mustDo("PUT", "/api/v1/smtp"+q, map[string]any{"host": "smtp." + strings.ToLower(marker) + ".test", "port": 25, "from": "pbx@" + strings.ToLower(marker) + ".test", "tls": "none"}, 200)
	if withSync {
		p := e.mustDo("PUT", "/api/v1/integration/user-sync"+q, map[string]any{"enabled": true, "range": "all",
			"numbering": map[string]any{"mode": "auto", "start": "1000"}, "deleteWhen": []string{"deleted"}}, 200)
		d.run, _ = p.body["initialRunId"].(string)
		if d.run == "" {
			e.t.Fatalf("no initial run: %s", p.raw)
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			r := e.mustDo("GET", "/api/v1/sync/runs/"+d.run+q, nil, 200)
			if r.body["state"] != "running" {
				if r.body["state"] != "succeeded" {
					e.t.Fatalf("initial run: %s", r.raw)
				}
				break
			}
			if time.Now().After(deadline) {
				e.t.Fatal("initial run still running")
			}
			time.Sleep(20 * time.Millisecond) // polling with a deadline
		}
		err := e.store.ListAllExtensions(e.t.Context(), pbxID, func(x *directory.Extension) error {
			if x.EntraID != "" && d.entraID == "" {
				d.entraID = x.EntraID
			}
			return nil
		})
		if err != nil || d.entraID == "" {
			e.t.Fatalf("no synced extension in %s: %v", pbxID, err)
		}
	}
	return d
}

// snapshot is everything the store holds for a PBX, as JSON.
func (e *env) snapshot(pbxID string) string {
	e.t.Helper()
	ctx := e.t.Context()
	var out []any
	add := func(v any, err error) {
		if err != nil {
			e.t.Fatalf("snapshot %s: %v", pbxID, err)
		}
		out = append(out, v)
	}
	add(e.store.GetPBX(ctx, pbxID))
	var exts []directory.Extension
	add(nil, e.store.ListAllExtensions(ctx, pbxID, func(x *directory.Extension) error { exts = append(exts, *x); return nil }))
	out = append(out, exts)
	for _, x := range exts {
		cs, _, err := e.store.ListContacts(ctx, pbxID, store.ContactQuery{ExtensionID: x.ID, Limit: 1000})
		add(cs, err)
	}
	add(e.store.ListGroups(ctx, pbxID))
	books, err := e.store.ListPhonebooks(ctx, pbxID)
	add(books, err)
	for _, b := range books {
		cs, _, err := e.store.ListContacts(ctx, pbxID, store.ContactQuery{PhonebookID: b.ID, Limit: 1000})
		add(cs, err)
		add(e.store.ListVisibility(ctx, pbxID, b.ID))
	}
	set, err := e.store.ListSettings(ctx, pbxID, "")
	// Session revocations (sign-out) are kept under the default PBX for every
	// instance to see; they belong to no PBX and no API shows them.
	maps.DeleteFunc(set, func(k string, _ []byte) bool { return strings.HasPrefix(k, "session.revoked.") })
	add(set, err)
	add(e.store.ListAudit(ctx, pbxID, 0, 1000))
	b, err := json.Marshal(out)
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b)
}

// fill substitutes the wildcards of a route pattern: parent ids from one
// tenant, child ids ({cid}) from another.
func fill(pattern string, parent, child tenantData) string {
	path := pattern[strings.Index(pattern, " ")+1:]
	id := ""
	switch {
	case strings.HasPrefix(path, "/api/v1/extensions/"):
		id = parent.ext
	case strings.HasPrefix(path, "/api/v1/extension-groups/"):
		id = parent.group
	case strings.HasPrefix(path, "/api/v1/phonebooks/"):
		id = parent.book
	case strings.HasPrefix(path, "/api/v1/sync/runs/"):
		id = parent.run
	case strings.HasPrefix(path, "/api/v1/pbxs/"):
		id = parent.pbx
	}
	cid := child.personal
	if strings.HasPrefix(path, "/api/v1/phonebooks/") {
		cid = child.bookContact
	}
	return strings.NewReplacer("{id}", id, "{cid}", cid, "{entraId}", child.entraID).Replace(path)
}

const (
	bravoApp    = "0b0b0b0b-1111-4222-8333-444444444444"
	bravoTenant = "0b0b0b0b-5555-4666-8777-888888888888"
)

// attackBody is a request body that would change PBX B's data if the
// request reached it.
func attackBody(pattern string, n int) any {
	method, path, _ := strings.Cut(pattern, " ")
	if method == "GET" || method == "DELETE" {
		return nil
	}
	switch {
	case path == "/api/v1/admins":
		return map[string]any{"username": fmt.Sprintf("intruder%d", n), "password": "intruder-password", "pbx": "b"}
	case strings.HasSuffix(path, "/call-state"):
		return map[string]any{"state": "busy"}
	case strings.HasSuffix(path, "/visibility"):
		return map[string]any{"items": []map[string]any{{"kind": "everyone"}}}
	case strings.Contains(path, "/contacts"):
		return map[string]any{"firstName": "Hacked", "mobile": "+4930999999"}
	case path == "/api/v1/extensions":
		return map[string]any{"number": fmt.Sprintf("9%03d", n)}
	case strings.HasPrefix(path, "/api/v1/extensions/"):
		return map[string]any{"firstName": "Hacked"}
	case strings.HasPrefix(path, "/api/v1/extension-groups"), strings.HasPrefix(path, "/api/v1/phonebooks"):
		return map[string]any{"name": fmt.Sprintf("Hacked %d", n)}
	case path == "/api/v1/integration/schedule":
		return map[string]any{"frequency": "hourly"}
	case path == "/api/v1/smtp":
		return map[string]any{"host": "evil.test", "port": 25, "from": "x@evil.test", "tls": "none"}
	case path == "/api/v1/integration/user-sync", path == "/api/v1/integration/group-sync":
		return map[string]any{"enabled": false}
	case path == "/api/v1/integration/connect":
		// B's application: the refusal must not name PBX B.
		return map[string]any{"clientId": bravoApp, "tenantId": bravoTenant, "clientSecret": "Qx8Q~abcdefghijklmnopqrstuvwxyz0123456789"}
	case path == "/api/v1/pbxs/{id}", path == "/api/v1/pbxs":
		return map[string]any{"id": "b", "maxExtensions": 1}
	}
	return map[string]any{}
}

// An administrator of PBX A can neither read nor change PBX B's data (nor
// the default PBX's) through any admin route: every route the server has
// is tried with B's record ids, addressed to B (query and header) and to A.
func TestPBXIsolation(t *testing.T) {
	e, s := newFullEnv(t)
	e.mustDo("POST", "/api/v1/pbxs", map[string]any{"id": "a", "name": "Alpha"}, 201)
	e.mustDo("POST", "/api/v1/pbxs", map[string]any{"id": "b", "name": "Bravo", "maxExtensions": 50}, 201)
	dataA := e.seed("a", "Alpha", false)
	dataB := e.seed("b", "Bravo", true)
	e.seed(directory.DefaultPBX, "Charlie", false)
	// B's Microsoft integration is connected with its own Entra application.
	if err := e.store.UpdateSetting(t.Context(), "b", "integration", func([]byte) ([]byte, error) {
		return json.Marshal(map[string]any{"status": "connected", "clientId": bravoApp, "tenantId": bravoTenant})
	}); err != nil {
		t.Fatal(err)
	}
	// Creating A's administrator and its sign-in leave the other PBXs' data
	// (their audit logs included) alone.
	beforeB, beforeDefault := e.snapshot("b"), e.snapshot(directory.DefaultPBX)
	tok := e.adminToken("alpha-admin", "a")
	if e.snapshot("b") != beforeB || e.snapshot(directory.DefaultPBX) != beforeDefault {
		t.Fatal("creating or signing in PBX a's administrator changed another PBX's data")
	}

	// An administrator of A can create administrators of A only.
	if r := e.doAs(tok, "POST", "/api/v1/admins", map[string]any{"username": "alpha-2", "password": "alpha-password", "pbx": ""}); r.status != 201 || r.body["pbx"] != "a" {
		t.Fatalf("a PBX admin created a provider-wide admin: %d %s", r.status, r.raw)
	}

	check := func(what string, r resp) {
		t.Helper()
		for _, m := range []string{"Bravo", "bravo", "Charlie", "charlie"} {
			if strings.Contains(string(r.raw), m) {
				t.Errorf("%s: the answer shows another PBX's data (%q): %.300s", what, m, r.raw)
			}
		}
		if got := e.snapshot("b"); got != beforeB {
			t.Fatalf("%s: changed PBX b's data (status %d %.200s)", what, r.status, r.raw)
		}
		if got := e.snapshot(directory.DefaultPBX); got != beforeDefault {
			t.Fatalf("%s: changed the default PBX's data (status %d %.200s)", what, r.status, r.raw)
		}
	}
	deniedStatus := func(what string, r resp) {
		t.Helper()
		if r.status != http.StatusNotFound && r.status != http.StatusForbidden {
			t.Errorf("%s: status %d, want 404 or 403: %.300s", what, r.status, r.raw)
		}
	}

	routes := s.Routes()
	// Signing out revokes the token the rest uses: last.
	slices.SortStableFunc(routes, func(x, y string) int {
		xl, yl := x == "DELETE /api/v1/sessions/current", y == "DELETE /api/v1/sessions/current"
		switch {
		case xl && !yl:
			return 1
		case yl && !xl:
			return -1
		}
		return 0
	})
	n, tried := 0, 0
	for _, pattern := range routes {
		method, _, _ := strings.Cut(pattern, " ")
		// Public routes (no administrator needed) are not admin routes.
		if r := e.doAs("", method, fill(pattern, dataB, dataB), attackBody(pattern, 0)); r.status != http.StatusUnauthorized || r.errCode() != "unauthorized" {
			continue
		}
		tried++
		wild := strings.Contains(pattern, "{")
		pathB := fill(pattern, dataB, dataB)
		sep := "?"
		if strings.Contains(pathB, "?") {
			sep = "&"
		}
		n++
		what := pattern + " ?pbx=b"
		r := e.doAs(tok, method, pathB+sep+"pbx=b", attackBody(pattern, n))
		if pattern == "POST /api/v1/admins" {
			// Tolerated: the account is created in A, never in B.
			if r.status == 201 && r.body["pbx"] != "a" {
				t.Errorf("%s: created an admin of %v", what, r.body["pbx"])
			}
		} else if pattern != "DELETE /api/v1/sessions/current" {
			deniedStatus(what, r)
		}
		check(what, r)

		n++
		what = pattern + " X-Switchboard-PBX: b"
		r = e.doAs(tok, method, pathB, attackBody(pattern, n), "X-Switchboard-PBX", "b")
		if pattern == "POST /api/v1/admins" {
			if r.status == 201 && r.body["pbx"] != "a" {
				t.Errorf("%s: created an admin of %v", what, r.body["pbx"])
			}
		} else if pattern != "DELETE /api/v1/sessions/current" {
			deniedStatus(what, r)
		}
		check(what, r)

		if pattern == "DELETE /api/v1/sessions/current" {
			continue
		}
		// Addressed to A (its own PBX) with B's record ids.
		n++
		what = pattern + " in A with B's ids"
		r = e.doAs(tok, method, pathB, attackBody(pattern, n))
		if wild && !strings.Contains(pattern, "{entraId}") && r.status/100 == 2 {
			t.Errorf("%s: status %d: %.300s", what, r.status, r.raw)
		}
		check(what, r)
		if strings.Contains(pattern, "{cid}") {
			// A's own parent record with B's contact.
			n++
			what = pattern + " A's parent, B's contact"
			r = e.doAs(tok, method, fill(pattern, dataA, dataB), attackBody(pattern, n))
			if r.status/100 == 2 {
				t.Errorf("%s: status %d: %.300s", what, r.status, r.raw)
			}
			check(what, r)
		}
	}
	if tried < 60 {
		t.Fatalf("only %d admin routes tried", tried)
	}
	t.Logf("%d admin routes, %d requests as PBX a's administrator", tried, n)
}

// A PBX whose integration is set up is deleted only with ?force=true.
func TestPBXDeleteConnected(t *testing.T) {
	e, _ := newFullEnv(t)
	e.mustDo("POST", "/api/v1/pbxs", map[string]any{"id": "c"}, 201)
	if err := e.store.UpdateSetting(t.Context(), "c", "integration", func([]byte) ([]byte, error) {
		return []byte(`{"status":"disabled"}`), nil
	}); err != nil {
		t.Fatal(err)
	}
	if r := e.do("GET", "/api/v1/pbxs/c", nil); r.status != 200 || r.body["integration"] != "disabled" {
		t.Fatalf("get: %d %s", r.status, r.raw)
	}
	if r := e.do("DELETE", "/api/v1/pbxs/c", nil); r.status != 409 || r.errCode() != "connected" {
		t.Fatalf("delete connected: %d %s", r.status, r.raw)
	}
	if r := e.do("DELETE", "/api/v1/pbxs/c?force=true", nil); r.status != 204 {
		t.Fatalf("forced delete: %d %s", r.status, r.raw)
	}
	if _, err := e.store.GetSetting(t.Context(), "c", "integration"); err == nil {
		t.Fatal("the deleted PBX's settings remain")
	}
}
