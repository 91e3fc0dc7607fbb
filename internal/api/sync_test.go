package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/switchboard-pbx/switchboard/internal/api"
	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/graph"
	"github.com/switchboard-pbx/switchboard/internal/mail"
	"github.com/switchboard-pbx/switchboard/internal/mail/mailtest"
	"github.com/switchboard-pbx/switchboard/internal/pbx"
	"github.com/switchboard-pbx/switchboard/internal/secret"
	"github.com/switchboard-pbx/switchboard/internal/sim"
	"github.com/switchboard-pbx/switchboard/internal/sqlstore"
	"github.com/switchboard-pbx/switchboard/internal/storetest"
	"github.com/switchboard-pbx/switchboard/internal/syncer"
)

// syncSource is the GraphSource of the sync tests: one simulated tenant.
type syncSource struct {
	c   *graph.Client
	err error
}

func (s *syncSource) AppClient(context.Context, string) (*graph.Client, error) { return s.c, s.err }

type syncEnv struct {
	t      *testing.T
	api    *httptest.Server
	tenant *sim.Tenant
	simURL string
	graph  *graph.Client
	src    *syncSource
	eng    *syncer.Engine
}

// newSyncEnv serves the admin API (with the sync engine) and a simulated tenant over HTTP.
func newSyncEnv(t *testing.T, dbURL string, users, groups int) *syncEnv {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	if dbURL == "" {
		dbURL = "sqlite:" + filepath.Join(t.TempDir(), "sb.db")
	}
	st, err := sqlstore.Open(t.Context(), dbURL, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.EnsurePBX(t.Context(), directory.PBX{ID: directory.DefaultPBX, Name: "Contoso", MaxExtensions: 10000, TimeZone: "UTC"}); err != nil {
		t.Fatal(err)
	}
	tn, err := sim.New(sim.Config{TenantID: "11111111-2222-4333-8444-555555555555", ClientID: "66666666-7777-4888-8999-000000000000",
		ClientSecret: "s", Users: users, Groups: groups, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	simSrv := httptest.NewServer(tn.Handler())
	t.Cleanup(func() { simSrv.Close(); tn.Close() })
	gc, err := graph.New(graph.Config{GraphURL: simSrv.URL, LoginURL: simSrv.URL, TenantID: tn.TenantID(),
		ClientID: "66666666-7777-4888-8999-000000000000", ClientSecret: "s", BackoffBase: time.Millisecond, BackoffMax: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := secret.NewKeyring(secret.NewKey())
	ps := &pbx.Service{Store: st, Keys: keys, Logger: logger}
	src := &syncSource{c: gc}
	eng := &syncer.Engine{Store: st, PBX: ps, Graph: src, Mailer: mail.Sender{}, Logger: logger}
	t.Cleanup(eng.Wait)
	s := &api.Server{Store: st, PBX: ps, Keys: keys, Logger: logger, AdminToken: token, SIPDomain: "pbx.test",
		Sessions: &api.Sessions{Key: []byte("k"), Store: st}, Syncer: eng}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &syncEnv{t: t, api: srv, tenant: tn, simURL: simSrv.URL, graph: gc, src: src, eng: eng}
}

type jsonResp struct {
	status int
	body   map[string]any
	raw    string
}

func (e *syncEnv) call(method, path string, body any) jsonResp {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequestWithContext(e.t.Context(), method, e.api.URL+path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	r := jsonResp{status: res.StatusCode, raw: string(raw)}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

func (e *syncEnv) want(r jsonResp, status int) jsonResp {
	e.t.Helper()
	if r.status != status {
		e.t.Fatalf("status %d, want %d: %s", r.status, status, r.raw)
	}
	return r
}

func num(v any) int { f, _ := v.(float64); return int(f) }

// waitRun polls GET /api/v1/sync/runs/{id} until the run has finished.
func (e *syncEnv) waitRun(id string) map[string]any {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := e.want(e.call("GET", "/api/v1/sync/runs/"+id, nil), 200)
		if r.body["state"] != "running" {
			return r.body
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("run %s still running", id)
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
}

func (e *syncEnv) graphDo(method, path string, body, out any) {
	e.t.Helper()
	if err := e.graph.Do(context.Background(), method, path, nil, body, out); err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
}

func (e *syncEnv) newUser(alias string) string {
	var out struct {
		ID string `json:"id"`
	}
	e.graphDo("POST", "/users", map[string]any{"accountEnabled": true, "displayName": alias, "mailNickname": alias, "givenName": alias,
		"userPrincipalName": alias + "@" + e.tenant.Domain(), "passwordProfile": map[string]any{"password": "Xx-12345678"}}, &out)
	return out.ID
}

func syncBackends(t *testing.T, fn func(t *testing.T, dbURL func() string)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, func() string { return "" }) })
	t.Run("postgres", func(t *testing.T) {
		base := os.Getenv("TEST_DATABASE_URL")
		if base == "" {
			t.Skip("TEST_DATABASE_URL is not set (eval \"$(bash .ci/start-postgres.sh)\")")
		}
		fn(t, func() string { return freshPostgres(t, base) })
	})
}

func freshPostgres(t *testing.T, base string) string {
	t.Helper()
	return storetest.PostgresDB(t, "switchboard_api_")
}

func TestUserSyncAPI(t *testing.T) {
	syncBackends(t, func(t *testing.T, dbURL func() string) {
		e := newSyncEnv(t, dbURL(), 40, 3)
		// Defaults before the first save.
		g := e.want(e.call("GET", "/api/v1/integration/user-sync", nil), 200)
		if g.body["enabled"] != false || g.body["range"] != "all" {
			t.Fatalf("defaults: %s", g.raw)
		}
		// Every bad field is named.
		for field, body := range map[string]map[string]any{
			"range":              {"enabled": true, "range": "everyone", "numbering": map[string]any{"mode": "auto", "start": "100"}},
			"numbering.start":    {"enabled": true, "range": "all", "numbering": map[string]any{"mode": "auto", "start": "1x"}},
			"numbering.property": {"enabled": true, "range": "all", "numbering": map[string]any{"mode": "property", "property": "favouriteColour"}},
			"userTypes":          {"enabled": true, "range": "type", "numbering": map[string]any{"mode": "auto", "start": "100"}},
			"deleteWhen[0]":      {"enabled": true, "range": "all", "numbering": map[string]any{"mode": "auto", "start": "100"}, "deleteWhen": []string{"retired"}},
			"fields.mobile":      {"enabled": true, "range": "all", "numbering": map[string]any{"mode": "auto", "start": "100"}, "fields": map[string]any{"mobile": "mobile phone!"}},
			"colour":             {"enabled": true, "range": "all", "colour": "red"},
		} {
			r := e.want(e.call("PUT", "/api/v1/integration/user-sync", body), 400)
			if f, _ := r.body["error"].(map[string]any)["field"].(string); f != field {
				t.Errorf("bad %s: error names %q (%s)", field, f, r.raw)
			}
		}
		// SMTP for welcome emails.
		smtp := mailtest.Start(t)
		e.want(e.call("PUT", "/api/v1/smtp", map[string]any{"host": smtp.Host, "port": smtp.Port, "from": "pbx@contoso.com", "tls": "none"}), 200)
		e.want(e.call("PUT", "/api/v1/smtp", map[string]any{"host": "", "from": "x"}), 400)
		sm := e.want(e.call("GET", "/api/v1/smtp", nil), 200)
		if sm.body["host"] != smtp.Host || sm.body["password"] != nil {
			t.Fatalf("smtp: %s", sm.raw)
		}
		// The first save runs the initial sync at once.
		settings := map[string]any{"enabled": true, "range": "all", "numbering": map[string]any{"mode": "auto", "start": "1000"},
			"deleteWhen": []string{"deleted"}, "welcomeEmail": true, "associateByEmail": true}
		p := e.want(e.call("PUT", "/api/v1/integration/user-sync", settings), 200)
		runID, _ := p.body["initialRunId"].(string)
		if runID == "" {
			t.Fatalf("no initial run: %s", p.raw)
		}
		run := e.waitRun(runID)
		if run["state"] != "succeeded" || num(run["created"]) != 40 || run["trigger"] != "initial" {
			t.Fatalf("initial run: %v", run)
		}
		withMail := 0
		for _, u := range e.tenant.UserList() {
			if u.Mail != "" {
				withMail++
			}
		}
		if got := smtp.WaitFor(withMail, 10*time.Second); len(got) != withMail {
			t.Fatalf("welcome emails: %d, want %d", len(got), withMail)
		}
		ext := e.want(e.call("GET", "/api/v1/extensions?source=entra&limit=1000", nil), 200)
		items := ext.body["items"].([]any)
		if len(items) != 40 {
			t.Fatalf("%d synced extensions listed", len(items))
		}
		first := items[0].(map[string]any)
		// Synced extensions are locked.
		e.want(e.call("DELETE", "/api/v1/extensions/"+first["id"].(string), nil), 409)

		// Dry run: the plan with the new user's number, nothing written.
		e.newUser("previewed")
		d := e.want(e.call("POST", "/api/v1/integration/sync?dryRun=true", nil), 200)
		if d.body["state"] != "dry_run" || num(d.body["created"]) != 1 {
			t.Fatalf("dry run: %s", d.raw)
		}
		plan := d.body["plan"].([]any)
		step := plan[0].(map[string]any)
		if step["op"] != "create" || step["number"] == "" || !strings.HasPrefix(step["subject"].(string), "previewed@") {
			t.Fatalf("plan: %v", plan)
		}
		if n := len(e.want(e.call("GET", "/api/v1/extensions?source=entra&limit=1000", nil), 200).body["items"].([]any)); n != 40 {
			t.Fatalf("dry run wrote: %d", n)
		}
		s := e.want(e.call("POST", "/api/v1/integration/sync", nil), 200)
		if s.body["state"] != "succeeded" || num(s.body["created"]) != 1 || s.body["read"] != "delta" {
			t.Fatalf("sync: %s", s.raw)
		}
		if _, ok := s.body["skipped"].([]any); !ok {
			t.Fatalf("skipped is not a list: %s", s.raw)
		}

		// Deletion guard: deleting 10 of 41 synced users needs a confirmation.
		n := 0
		for _, u := range e.tenant.UserList() {
			if !u.GlobalAdmin && n < 10 {
				e.graphDo("DELETE", "/users/"+u.ID, nil, nil)
				n++
			}
		}
		h := e.want(e.call("POST", "/api/v1/integration/sync", nil), 200)
		if h.body["state"] != "needs_confirmation" || num(h.body["pendingDeletes"]) != 10 || num(h.body["deleted"]) != 0 {
			t.Fatalf("guard: %s", h.raw)
		}
		c := e.want(e.call("POST", "/api/v1/sync/runs/"+h.body["id"].(string)+"/confirm", nil), 200)
		if c.body["state"] != "succeeded" || num(c.body["deleted"]) != 10 {
			t.Fatalf("confirm: %s", c.raw)
		}
		e.want(e.call("POST", "/api/v1/sync/runs/"+h.body["id"].(string)+"/confirm", nil), 409)
		e.want(e.call("GET", "/api/v1/sync/runs/nope", nil), 404)
		runs := e.want(e.call("GET", "/api/v1/sync/runs", nil), 200).body["items"].([]any)
		if len(runs) != 5 || runs[0].(map[string]any)["trigger"] != "confirm" {
			t.Fatalf("runs: %v", runs)
		}

		// Pause: settings locked, runs refused, extensions kept and locked.
		e.want(e.call("POST", "/api/v1/integration/user-sync/pause", map[string]any{"deleteExtensions": false}), 200)
		g = e.want(e.call("GET", "/api/v1/integration/user-sync", nil), 200)
		if g.body["paused"] != true || g.body["enabled"] != false {
			t.Fatalf("paused settings: %s", g.raw)
		}
		g.body["associateByEmail"] = false
		e.want(e.call("PUT", "/api/v1/integration/user-sync", g.body), 409)
		r := e.want(e.call("POST", "/api/v1/integration/sync", nil), 409)
		if r.body["error"].(map[string]any)["code"] != "paused" {
			t.Fatalf("sync while paused: %s", r.raw)
		}
		e.want(e.call("DELETE", "/api/v1/extensions/"+first["id"].(string), nil), 409)
		// Resume and pause with deletion.
		g.body["enabled"] = true
		e.want(e.call("PUT", "/api/v1/integration/user-sync", g.body), 200)
		pz := e.want(e.call("POST", "/api/v1/integration/user-sync/pause", map[string]any{"deleteExtensions": true}), 200)
		if num(pz.body["deleted"]) != 31 {
			t.Fatalf("pause with deletion: %s", pz.raw)
		}
	})
}

func TestUserSyncAPIHandPickedAndPickers(t *testing.T) {
	e := newSyncEnv(t, "", 230, 210)
	// Pickers page past 200.
	seen := map[string]bool{}
	cursor := ""
	for range 10 {
		r := e.want(e.call("GET", "/api/v1/directory/users?cursor="+url.QueryEscape(cursor), nil), 200)
		for _, it := range r.body["items"].([]any) {
			seen[it.(map[string]any)["id"].(string)] = true
		}
		cursor, _ = r.body["nextCursor"].(string)
		if cursor == "" {
			break
		}
	}
	if len(seen) != 230 {
		t.Fatalf("user picker listed %d of 230", len(seen))
	}
	groups, cursor := 0, ""
	for range 10 {
		r := e.want(e.call("GET", "/api/v1/directory/groups?cursor="+url.QueryEscape(cursor), nil), 200)
		groups += len(r.body["items"].([]any))
		cursor, _ = r.body["nextCursor"].(string)
		if cursor == "" {
			break
		}
	}
	if groups != 210 {
		t.Fatalf("group picker listed %d of 210", groups)
	}
	e.want(e.call("GET", "/api/v1/directory/users?cursor="+url.QueryEscape("https://evil.example/v1.0/users"), nil), 400)
	search := e.want(e.call("GET", "/api/v1/directory/users?search=admin", nil), 200)
	if len(search.body["items"].([]any)) == 0 {
		t.Fatalf("search found nothing: %s", search.raw)
	}
	admin := e.tenant.Admin()

	// Hand-picked users: bind to an existing extension, to a new number; unbind.
	loc := e.want(e.call("POST", "/api/v1/extensions", map[string]any{"number": "600", "firstName": "Front", "email": "front@example.com"}), 201)
	e.want(e.call("PUT", "/api/v1/integration/user-sync", map[string]any{"enabled": true, "range": "users", "userIds": []string{},
		"numbering": map[string]any{"mode": "auto", "start": "500"}}), 200)
	e.eng.Wait()
	b := e.want(e.call("POST", "/api/v1/integration/user-sync/users/"+admin.ID+"/bind", map[string]any{"extensionId": loc.body["id"]}), 200)
	if num(b.body["bound"]) != 1 {
		t.Fatalf("bind: %s", b.raw)
	}
	x := e.want(e.call("GET", "/api/v1/extensions/"+loc.body["id"].(string), nil), 200)
	if x.body["entraId"] != admin.ID || x.body["number"] != "600" || x.body["source"] != "entra" {
		t.Fatalf("bound extension: %s", x.raw)
	}
	other := e.tenant.UserList()[5]
	e.want(e.call("POST", "/api/v1/integration/user-sync/users/"+other.ID+"/bind", map[string]any{"number": "600"}), 400)
	e.want(e.call("POST", "/api/v1/integration/user-sync/users/"+other.ID+"/bind", map[string]any{}), 400)
	nb := e.want(e.call("POST", "/api/v1/integration/user-sync/users/"+other.ID+"/bind", map[string]any{"number": "777"}), 200)
	if num(nb.body["created"]) != 1 {
		t.Fatalf("bind new: %s", nb.raw)
	}
	picked := e.want(e.call("GET", "/api/v1/directory/users?search="+url.QueryEscape(other.DisplayName), nil), 200)
	var marked bool
	for _, it := range picked.body["items"].([]any) {
		m := it.(map[string]any)
		if m["id"] == other.ID && m["selected"] == true && m["extensionNumber"] == "777" {
			marked = true
		}
	}
	if !marked {
		t.Fatalf("picker does not show the binding: %s", picked.raw)
	}
	u := e.want(e.call("POST", "/api/v1/integration/user-sync/users/"+admin.ID+"/unbind", nil), 200)
	if u.body["extension"].(map[string]any)["source"] != "local" {
		t.Fatalf("unbind: %s", u.raw)
	}
	e.want(e.call("DELETE", "/api/v1/extensions/"+loc.body["id"].(string), nil), 204)
}

func TestUserSyncAPINotConnected(t *testing.T) {
	e := newSyncEnv(t, "", 3, 0)
	e.want(e.call("POST", "/api/v1/integration/sync", nil), 409)
	e.src.err = fmt.Errorf("pbx default: %w", syncer.ErrNotConnected)
	e.want(e.call("PUT", "/api/v1/integration/user-sync", map[string]any{"enabled": false, "range": "all", "numbering": map[string]any{"mode": "auto", "start": "100"}}), 200)
	e.want(e.call("PUT", "/api/v1/integration/user-sync", map[string]any{"enabled": true, "range": "all", "numbering": map[string]any{"mode": "auto", "start": "100"}}), 200)
	e.eng.Wait()
	r := e.want(e.call("POST", "/api/v1/integration/sync", nil), 409)
	if r.body["error"].(map[string]any)["code"] != "not_connected" {
		t.Fatalf("%s", r.raw)
	}
	e.want(e.call("GET", "/api/v1/directory/users", nil), 409)
}

func TestGroupSyncAPI(t *testing.T) {
	syncBackends(t, func(t *testing.T, dbURL func() string) {
		e := newSyncEnv(t, dbURL(), 20, 0)
		users := e.tenant.UserList()
		var grp struct {
			ID string `json:"id"`
		}
		e.graphDo("POST", "/groups", map[string]any{"displayName": "Night Shift", "mailEnabled": false, "mailNickname": "night", "securityEnabled": true}, &grp)
		for _, u := range users[3:6] {
			e.graphDo("POST", "/groups/"+grp.ID+"/members/$ref", map[string]any{"@odata.id": e.simURL + "/v1.0/directoryObjects/" + u.ID}, nil)
		}
		e.want(e.call("PUT", "/api/v1/integration/user-sync", map[string]any{"enabled": true, "range": "all", "numbering": map[string]any{"mode": "auto", "start": "100"}}), 200)
		e.eng.Wait()
		r := e.want(e.call("PUT", "/api/v1/integration/group-sync", map[string]any{"enabled": true, "range": "type", "groupTypes": []string{"distribution"}}), 400)
		if r.body["error"].(map[string]any)["field"] != "groupTypes[0]" {
			t.Fatalf("%s", r.raw)
		}
		p := e.want(e.call("PUT", "/api/v1/integration/group-sync", map[string]any{"enabled": true, "range": "groups", "groupIds": []string{grp.ID}}), 200)
		run := e.waitRun(p.body["initialRunId"].(string))
		if num(run["groupsCreated"]) != 1 {
			t.Fatalf("group run: %v", run)
		}
		gl := e.want(e.call("GET", "/api/v1/extension-groups", nil), 200).body["items"].([]any)
		if len(gl) != 1 {
			t.Fatalf("groups: %v", gl)
		}
		g := gl[0].(map[string]any)
		if g["name"] != "Night Shift" || g["entraId"] != grp.ID || len(g["members"].([]any)) != 3 {
			t.Fatalf("synced group: %v", g)
		}
		// Locked: name and deletion refused.
		e.want(e.call("PATCH", "/api/v1/extension-groups/"+g["id"].(string), map[string]any{"name": "Day Shift"}), 409)
		e.want(e.call("DELETE", "/api/v1/extension-groups/"+g["id"].(string), nil), 409)
		// Pause with deletion.
		pz := e.want(e.call("POST", "/api/v1/integration/group-sync/pause", map[string]any{"deleteGroups": true}), 200)
		if num(pz.body["groupsDeleted"]) != 1 {
			t.Fatalf("pause: %s", pz.raw)
		}
		gsv := e.want(e.call("GET", "/api/v1/integration/group-sync", nil), 200)
		if gsv.body["paused"] != true {
			t.Fatalf("%s", gsv.raw)
		}
	})
}
