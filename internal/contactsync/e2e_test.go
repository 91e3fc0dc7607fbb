package contactsync_test

// End-to-end tests: the admin API over real HTTP, a PBX connected to the
// simulated tenant through the real connect flow, SQLite (and PostgreSQL when
// TEST_DATABASE_URL is set).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/switchboard-pbx/switchboard/internal/api"
	"github.com/switchboard-pbx/switchboard/internal/apitest"
	"github.com/switchboard-pbx/switchboard/internal/contactsync"
	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/integration"
	"github.com/switchboard-pbx/switchboard/internal/pbx"
	"github.com/switchboard-pbx/switchboard/internal/secret"
	"github.com/switchboard-pbx/switchboard/internal/sim"
	"github.com/switchboard-pbx/switchboard/internal/sim/idp"
	"github.com/switchboard-pbx/switchboard/internal/sqlstore"
	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/storetest"
)

const (
	tenantID     = "6b1a0a54-8f0e-4c7c-9d1b-2f0e8c1d9a01"
	clientID     = "0f4e6c2a-3b5d-4e7f-8a9b-1c2d3e4f5a6b"
	clientSecret = "sim~Secret.Value_0123456789abcdef"
	adminToken   = "contacts-test-admin-token"
)

// backends runs fn on SQLite, and on PostgreSQL when TEST_DATABASE_URL is set.
func backends(t *testing.T, fn func(t *testing.T, dsn func(t *testing.T) string)) {
	t.Run("sqlite", func(t *testing.T) {
		fn(t, func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "sb.db") })
	})
	t.Run("postgres", func(t *testing.T) {
		if os.Getenv("TEST_DATABASE_URL") == "" {
			t.Skip("TEST_DATABASE_URL is not set")
		}
		fn(t, pgDatabase)
	})
}

func pgDatabase(t *testing.T) string {
	t.Helper()
	return storetest.PostgresDB(t, "switchboard_contacts_")
}

// blocker answers 403 ErrorAccessDenied for the contacts of chosen mailboxes,
// the way Exchange answers for a folder that is not shared.
type blocker struct {
	mu      sync.Mutex
	blocked map[string]bool
	broken  map[string]bool // answered 400 (a failure that is not about access)
	next    http.Handler
}

func (b *blocker) breakBox(id string, on bool) {
	b.mu.Lock()
	if on {
		b.broken[id] = true
	} else {
		delete(b.broken, id)
	}
	b.mu.Unlock()
}

func (b *blocker) block(id string, on bool) {
	b.mu.Lock()
	if on {
		b.blocked[id] = true
	} else {
		delete(b.blocked, id)
	}
	b.mu.Unlock()
}

// refusal returns the status and error body the path gets, or 0.
func (b *blocker) refusal(path string) (int, string) {
	rest, ok := strings.CutPrefix(path, "/users/")
	if !ok {
		return 0, ""
	}
	id, tail, _ := strings.Cut(rest, "/")
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case !strings.HasPrefix(tail, "contact"):
	case b.broken[id]:
		return http.StatusBadRequest, `{"error":{"code":"ErrorInternalServerTransientError","message":"An internal server transient error occurred."}}`
	case b.blocked[id]:
		return http.StatusForbidden, `{"error":{"code":"ErrorAccessDenied","message":"Access is denied. Check credentials and try again."}}`
	}
	return 0, ""
}

func (b *blocker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	idle := len(b.blocked) == 0 && len(b.broken) == 0
	b.mu.Unlock()
	if idle {
		b.next.ServeHTTP(w, r)
		return
	}
	if r.URL.Path == "/v1.0/$batch" {
		b.batch(w, r)
		return
	}
	if code, body := b.refusal(strings.TrimPrefix(r.URL.Path, "/v1.0")); code != 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		io.WriteString(w, body)
		return
	}
	b.next.ServeHTTP(w, r)
}

// batch answers the refused items of a $batch itself and passes the others on.
func (b *blocker) batch(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Requests []map[string]any `json:"requests"`
	}
	raw, _ := io.ReadAll(r.Body)
	if err := json.Unmarshal(raw, &in); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	var pass []map[string]any
	var own []any
	for _, q := range in.Requests {
		u, _ := q["url"].(string)
		if code, body := b.refusal(u); code != 0 {
			own = append(own, map[string]any{"id": q["id"], "status": code, "headers": map[string]string{"Content-Type": "application/json"}, "body": json.RawMessage(body)})
			continue
		}
		pass = append(pass, q)
	}
	out := map[string]any{"responses": own}
	if len(pass) > 0 {
		body, _ := json.Marshal(map[string]any{"requests": pass})
		rec := httptest.NewRecorder()
		req := r.Clone(r.Context())
		req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		b.next.ServeHTTP(rec, req)
		if rec.Code != 200 {
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			w.Write(rec.Body.Bytes())
			return
		}
		var got struct {
			Responses []any `json:"responses"`
		}
		json.Unmarshal(rec.Body.Bytes(), &got)
		out["responses"] = append(own, got.Responses...)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

type env struct {
	t      testing.TB
	tenant *sim.Tenant
	block  *blocker
	srv    *httptest.Server
	store  store.Store
	svc    *integration.Service
	cs     *contactsync.Service
	synced []sim.UserInfo    // users bound to extensions
	exts   map[string]string // Entra id -> extension id
	nums   map[string]string // Entra id -> extension number
	others []sim.UserInfo    // regular users not synced
}

// simLatency is added to every request the sim serves (the scale test sets it).
var simLatency time.Duration

// simContactsPerUser is sim.Config.ContactsPerUser (the scale test sets it; 0 = the default data).
var simContactsPerUser int

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// newEnv connects a PBX to a fresh simulated tenant (delegated scopes
// include Contacts.Read.Shared, as the guide's setup grants) and binds the
// first nSynced regular users to extensions as user sync would.
func newEnv(t *testing.T, dsn string, nSynced int) *env {
	t.Helper()
	return newSizedEnv(t, dsn, 40, nSynced, slog.LevelInfo, true)
}

// newSizedEnv is newEnv with a tenant of users users; nSynced < 0 binds every
// regular user; sharedScope grants the delegated Contacts.Read.Shared.
func newSizedEnv(t testing.TB, dsn string, users, nSynced int, level slog.Level, sharedScope bool) *env {
	t.Helper()
	e := &env{t: t, exts: map[string]string{}, nums: map[string]string{}}
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
	var err error
	e.tenant, err = sim.New(sim.Config{TenantID: tenantID, ClientID: clientID, ClientSecret: clientSecret, Users: users, Groups: 4, Seed: 11, Latency: simLatency, ContactsPerUser: simContactsPerUser})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.tenant.Close)
	if sharedScope {
		if err := e.tenant.IDP().UpdateApp(clientID, func(a *idp.App) {
			a.DelegatedScopes = append(a.DelegatedScopes, "Contacts.Read.Shared")
		}); err != nil {
			t.Fatal(err)
		}
	}
	e.block = &blocker{blocked: map[string]bool{}, broken: map[string]bool{}, next: e.tenant.Handler()}
	simSrv := httptest.NewServer(e.block)
	t.Cleanup(simSrv.Close)

	st, err := sqlstore.Open(t.Context(), dsn, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.store = st
	if _, err := st.EnsurePBX(t.Context(), directory.PBX{ID: directory.DefaultPBX, Name: "PBX", MaxExtensions: users + 10, TimeZone: "UTC"}); err != nil {
		t.Fatal(err)
	}
	keys, _ := secret.NewKeyring(secret.NewKey())
	ps := &pbx.Service{Store: st, Keys: keys, Logger: logger}
	e.svc = &integration.Service{Store: st, PBX: ps, Keys: keys, Logger: logger, GraphURL: simSrv.URL, LoginURL: simSrv.URL}
	e.cs = &contactsync.Service{Store: st, Graph: e.svc, Logger: logger}
	s := &api.Server{Store: st, PBX: ps, Keys: keys, Logger: logger, AdminToken: adminToken, Integration: e.svc, Contacts: e.cs}
	e.srv = httptest.NewServer(s.Handler())
	t.Cleanup(e.srv.Close)
	e.svc.BaseURL = e.srv.URL
	if err := e.tenant.AddRedirectURI(e.svc.RedirectURI()); err != nil {
		t.Fatal(err)
	}
	e.connect()

	// Bind users to extensions the way user sync does (one bulk write).
	var create []*directory.Extension
	for _, u := range e.tenant.UserList() {
		if u.Shared || u.UserType == "Guest" || !u.AccountEnabled {
			continue
		}
		if len(e.synced) == nSynced {
			e.others = append(e.others, u)
			continue
		}
		create = append(create, &directory.Extension{Number: fmt.Sprint(1000 + len(e.synced)), FirstName: u.GivenName,
			LastName: u.Surname, Source: directory.SourceEntra, EntraID: u.ID})
		e.synced = append(e.synced, u)
	}
	if err := ps.ApplyExtensions(t.Context(), directory.DefaultPBX, store.ExtensionChanges{Create: create}); err != nil {
		t.Fatal(err)
	}
	for i, x := range create {
		e.exts[e.synced[i].ID], e.nums[e.synced[i].ID] = x.ID, x.Number
	}
	return e
}

func (e *env) connect() {
	e.t.Helper()
	code, out := e.api("POST", "/api/v1/integration/connect", map[string]any{"clientId": clientID, "tenantId": tenantID, "clientSecret": clientSecret})
	if code != 200 {
		e.t.Fatalf("connect: %d %v", code, out)
	}
	jar, _ := cookiejar.New(nil)
	res, err := (&http.Client{Jar: jar}).Get(out["authorizeUrl"].(string))
	if err != nil {
		e.t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(b), "Connected") {
		e.t.Fatalf("callback: %d %s", res.StatusCode, b)
	}
}

func (e *env) api(method, path string, body any) (int, map[string]any) {
	e.t.Helper()
	code, out, _ := apitest.Call(e.t, e.srv.URL, adminToken, method, path, body)
	return code, out
}

func (e *env) put(set map[string]any) {
	e.t.Helper()
	if code, out := e.api("PUT", "/api/v1/integration/contacts-sync", set); code != 200 {
		e.t.Fatalf("PUT contacts-sync: %d %v", code, out)
	}
}

// report is the JSON of a run.
type report struct {
	State                                string
	Created, Updated, Deleted, Unchanged int
	Failed, Mailboxes                    int
	GraphRequests                        int64
	Skipped                              []contactsync.Skip
	Phonebooks                           []contactsync.PhonebookRef
	Error                                string
}

func (e *env) run() report {
	e.t.Helper()
	req, _ := http.NewRequestWithContext(e.t.Context(), "POST", e.srv.URL+"/api/v1/integration/contacts-sync/run", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		e.t.Fatalf("run: %d %s", res.StatusCode, raw)
	}
	var r report
	if err := json.Unmarshal(raw, &r); err != nil {
		e.t.Fatal(err)
	}
	e.t.Logf("run: state %s created %d updated %d deleted %d unchanged %d skipped %d failed %d mailboxes %d graphRequests %d",
		r.State, r.Created, r.Updated, r.Deleted, r.Unchanged, len(r.Skipped), r.Failed, r.Mailboxes, r.GraphRequests)
	return r
}

// want is what the sim holds for a mailbox: valid contacts by id, and the
// ids of the invalid ones.
func (e *env) want(mailbox string) (valid map[string]sim.ContactInfo, invalid []string) {
	cs, ok := e.tenant.Contacts(mailbox)
	if !ok {
		e.t.Fatalf("no mailbox %s", mailbox)
	}
	valid = map[string]sim.ContactInfo{}
	for _, c := range cs {
		hasPhone := c.MobilePhone != "" || len(c.BusinessPhones) > 0 || len(c.HomePhones) > 0
		if (c.GivenName != "" || c.Surname != "") && hasPhone {
			valid[c.ID] = c
		} else {
			invalid = append(invalid, c.ID)
		}
	}
	return valid, invalid
}

// personal returns the extension's contacts through the admin API.
func (e *env) personal(userID string) []map[string]any {
	e.t.Helper()
	code, out := e.api("GET", "/api/v1/extensions/"+e.exts[userID]+"/contacts?limit=1000", nil)
	if code != 200 {
		e.t.Fatalf("contacts: %d %v", code, out)
	}
	var items []map[string]any
	for _, it := range out["items"].([]any) {
		items = append(items, it.(map[string]any))
	}
	return items
}

func (e *env) checkPersonal(userID string) int {
	e.t.Helper()
	valid, _ := e.want(userID)
	got := e.personal(userID)
	if len(got) != len(valid) {
		e.t.Fatalf("user %s: %d contacts stored, the sim holds %d valid", userID, len(got), len(valid))
	}
	for _, c := range got {
		w, ok := valid[c["entraId"].(string)]
		if !ok || c["source"] != "entra" || c["firstName"] != w.GivenName || c["lastName"] != w.Surname || c["mobile"] != w.MobilePhone {
			e.t.Fatalf("user %s: stored %v, sim %+v", userID, c, w)
		}
	}
	return len(got)
}

func withContacts(e *env, us []sim.UserInfo) []sim.UserInfo {
	var out []sim.UserInfo
	for _, u := range us {
		if v, _ := e.want(u.ID); len(v) > 0 {
			out = append(out, u)
		}
	}
	return out
}

func TestPersonalContacts(t *testing.T) {
	backends(t, func(t *testing.T, dsn func(t *testing.T) string) {
		e := newEnv(t, dsn(t), 12)
		e.put(map[string]any{"personal": map[string]any{"enabled": true, "range": "all"}})
		r := e.run()
		if r.State != "succeeded" || r.Created == 0 || r.Updated != 0 || r.Deleted != 0 || r.GraphRequests == 0 {
			t.Fatalf("first run: %+v", r)
		}
		total, invalid := 0, 0
		for _, u := range e.synced {
			total += e.checkPersonal(u.ID)
			_, bad := e.want(u.ID)
			invalid += len(bad)
		}
		if total != r.Created {
			t.Fatalf("created %d, stored %d", r.Created, total)
		}
		// Every invalid contact is listed with its reason.
		reasons := 0
		for _, s := range r.Skipped {
			if strings.Contains(s.Reason, "has no first or last name") || strings.Contains(s.Reason, "has no mobile, home or business phone") {
				reasons++
				if s.Mailbox == "" || s.Subject == "" {
					t.Fatalf("skip without subject or mailbox: %+v", s)
				}
			}
		}
		if invalid == 0 || reasons != invalid {
			t.Fatalf("%d invalid contacts in the sim, %d skipped with a reason: %+v", invalid, reasons, r.Skipped)
		}
		// Unsynced users get nothing: they have no extension, and none was created.
		if n, _ := e.store.CountExtensions(t.Context(), directory.DefaultPBX); n != len(e.synced) {
			t.Fatalf("%d extensions", n)
		}
		// Synced contacts are read-only through the admin API.
		u := withContacts(e, e.synced)[0]
		c := e.personal(u.ID)[0]
		if code, out := e.api("PATCH", "/api/v1/extensions/"+e.exts[u.ID]+"/contacts/"+c["id"].(string), map[string]any{"firstName": "X"}); code != 409 {
			t.Fatalf("edit synced contact: %d %v", code, out)
		}
		if code, _ := e.api("DELETE", "/api/v1/extensions/"+e.exts[u.ID]+"/contacts/"+c["id"].(string), nil); code != 409 {
			t.Fatalf("delete synced contact: %d", code)
		}

		// A second run reads only changes and changes nothing; the invalid
		// contacts are still listed.
		r2 := e.run()
		if r2.Created+r2.Updated+r2.Deleted != 0 || r2.Unchanged != total || len(r2.Skipped) != len(r.Skipped) {
			t.Fatalf("second run: %+v", r2)
		}

		// Changes in Outlook follow on the next run (contacts delta).
		gc, err := e.svc.AppClient(t.Context(), directory.DefaultPBX)
		if err != nil {
			t.Fatal(err)
		}
		valid, _ := e.want(u.ID)
		ids := slices.Sorted(func(yield func(string) bool) {
			for id := range valid {
				if !yield(id) {
					return
				}
			}
		})
		changed := ids[0]
		base := "/users/" + u.ID + "/contacts/"
		if err := gc.Do(t.Context(), "PATCH", base+changed, nil, map[string]any{"givenName": "Renamed", "mobilePhone": "+49 30 5550100"}, nil); err != nil {
			t.Fatal(err)
		}
		if len(ids) > 1 {
			if err := gc.Do(t.Context(), "DELETE", base+ids[1], nil, nil, nil); err != nil {
				t.Fatal(err)
			}
		}
		var created map[string]any
		if err := gc.Do(t.Context(), "POST", "/users/"+u.ID+"/contacts", nil, map[string]any{"givenName": "Nova", "surname": "Lind", "businessPhones": []string{"+46 8 123 456 78"}}, &created); err != nil {
			t.Fatal(err)
		}
		r3 := e.run()
		wantDeleted := 0
		if len(ids) > 1 {
			wantDeleted = 1
		}
		if r3.Created != 1 || r3.Updated != 1 || r3.Deleted != wantDeleted {
			t.Fatalf("after changes in Outlook: %+v", r3)
		}
		e.checkPersonal(u.ID)
		found := false
		for _, c := range e.personal(u.ID) {
			if c["entraId"] == changed && c["firstName"] == "Renamed" && c["mobile"] == "+49 30 5550100" {
				found = true
			}
		}
		if !found {
			t.Fatal("the update did not follow")
		}
		// A contact edited into an invalid one leaves and is listed.
		if err := gc.Do(t.Context(), "PATCH", base+changed, nil, map[string]any{"mobilePhone": "", "businessPhones": []string{}, "homePhones": []string{}}, nil); err != nil {
			t.Fatal(err)
		}
		r4 := e.run()
		if r4.Deleted != 1 || !slices.ContainsFunc(r4.Skipped, func(s contactsync.Skip) bool {
			return s.Subject == "Renamed "+valid[changed].Surname && strings.Contains(s.Reason, "no mobile, home or business phone")
		}) {
			t.Fatalf("contact made invalid: %+v", r4)
		}
	})
}

func TestPersonalRanges(t *testing.T) {
	e := newEnv(t, "sqlite:"+filepath.Join(t.TempDir(), "sb.db"), 8)
	picked := withContacts(e, e.synced)[:2]
	unsynced := e.others[0]
	boxes := e.tenant.SharedMailboxes()
	if code, _ := e.api("GET", "/api/v1/integration/contacts-sync/run", nil); code != 404 {
		t.Fatalf("last run before any: %d", code)
	}
	// Defaults: both off.
	if code, out := e.api("GET", "/api/v1/integration/contacts-sync", nil); code != 200 || out["personal"].(map[string]any)["enabled"] != false || out["sharedMailboxes"].(map[string]any)["enabled"] != false {
		t.Fatalf("defaults: %d %v", code, out)
	}

	// Users outside the user-sync range are refused, naming the field.
	code, out := e.api("PUT", "/api/v1/integration/contacts-sync", map[string]any{"personal": map[string]any{
		"enabled": true, "range": "users", "userIds": []string{picked[0].ID, picked[1].ID, unsynced.ID}}})
	errb, _ := out["error"].(map[string]any)
	if code != 400 || errb["field"] != "personal.userIds[2]" || !strings.Contains(errb["message"].(string), "is not a synced user: add the user to user sync first") {
		t.Fatalf("unsynced user: %d %v", code, out)
	}
	for _, c := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{"personal": map[string]any{"enabled": true, "range": "some"}}, "personal.range"},
		{map[string]any{"personal": map[string]any{"enabled": true, "range": "groups"}}, "personal.groupIds"},
		{map[string]any{"personal": map[string]any{"enabled": true, "range": "users", "userIds": []string{"not-a-guid"}}}, "personal.userIds[0]"},
		{map[string]any{"sharedMailboxes": map[string]any{"enabled": true, "range": "all"}}, "sharedMailboxes.phonebook"},
		{map[string]any{"sharedMailboxes": map[string]any{"enabled": true, "range": "mailboxes", "mailboxes": []any{map[string]any{"mailboxId": picked[0].ID}}}}, "sharedMailboxes.mailboxes[0].phonebook"},
		{map[string]any{"sharedMailboxes": map[string]any{"enabled": true, "range": "mailboxes", "mailboxes": []any{
			map[string]any{"mailboxId": boxes[0].ID, "phonebook": "A"}, map[string]any{"mailboxId": boxes[1].ID, "phonebook": "a"}}}}, "sharedMailboxes.mailboxes[1].phonebook"},
		{map[string]any{"sharedMailboxes": map[string]any{"enabled": true, "range": "mailboxes", "mailboxes": []any{
			map[string]any{"mailboxId": boxes[0].ID, "phonebook": "A"}, map[string]any{"mailboxId": boxes[0].ID, "phonebook": "B"}}}}, "sharedMailboxes.mailboxes[1].mailboxId"},
		{map[string]any{"defaultCountry": "Atlantis"}, "defaultCountry"},
		{map[string]any{"sharedMailboxes": map[string]any{"enabled": true, "range": "mailboxes", "mailboxes": []any{
			map[string]any{"mailboxId": picked[0].ID, "phonebook": "Not shared"}}}}, "sharedMailboxes.mailboxes[0].mailboxId"},
		{map[string]any{"sharedMailboxes": map[string]any{"enabled": true, "range": "mailboxes", "mailboxes": []any{
			map[string]any{"mailboxId": "00000000-0000-0000-0000-000000000000", "phonebook": "Nobody"}}}}, "sharedMailboxes.mailboxes[0].mailboxId"},
		{map[string]any{"personal": map[string]any{"enabled": "yes"}}, "personal.enabled"},
	} {
		code, out := e.api("PUT", "/api/v1/integration/contacts-sync", c.body)
		errb, _ := out["error"].(map[string]any)
		if code != 400 || errb["field"] != c.field {
			t.Errorf("%v: %d %v, want 400 on %s", c.body, code, out, c.field)
		}
	}

	// Hand-picked users only.
	e.put(map[string]any{"personal": map[string]any{"enabled": true, "range": "users", "userIds": []string{picked[0].ID, picked[1].ID}}})
	r := e.run()
	for _, u := range e.synced {
		n := len(e.personal(u.ID))
		if u.ID == picked[0].ID || u.ID == picked[1].ID {
			e.checkPersonal(u.ID)
		} else if n != 0 {
			t.Fatalf("user %s out of range has %d contacts", u.ID, n)
		}
	}
	if r.Mailboxes != 2 {
		t.Fatalf("read %d mailboxes for 2 users", r.Mailboxes)
	}

	// "Select all synced users" fills the list with every synced user.
	code, out = e.api("GET", "/api/v1/integration/contacts-sync/synced-users", nil)
	if code != 200 || len(out["items"].([]any)) != len(e.synced) {
		t.Fatalf("synced users: %d %v", code, out)
	}
	e.put(map[string]any{"personal": map[string]any{"enabled": true, "selectAllSynced": true}})
	_, got := e.api("GET", "/api/v1/integration/contacts-sync", nil)
	p := got["personal"].(map[string]any)
	if p["range"] != "users" || len(p["userIds"].([]any)) != len(e.synced) {
		t.Fatalf("select all synced: %v", p)
	}
	e.run()
	for _, u := range e.synced {
		e.checkPersonal(u.ID)
	}

	// Range groups: members of a group that are synced get their contacts;
	// members that are not synced are listed with the reason.
	var group sim.GroupInfo
	syncedIDs := map[string]bool{}
	for _, u := range e.synced {
		syncedIDs[u.ID] = true
	}
	for _, g := range e.tenant.GroupList() {
		in, out := 0, 0
		for _, m := range g.Members {
			if syncedIDs[m] {
				in++
			} else if _, ok := e.tenant.User(m); ok {
				out++
			}
		}
		if in > 0 && out > 0 {
			group = g
			break
		}
	}
	if group.ID == "" {
		t.Fatal("no group with synced and unsynced members in the sim")
	}
	e.put(map[string]any{"personal": map[string]any{"enabled": true, "range": "groups", "groupIds": []string{group.ID}}})
	r = e.run()
	for _, u := range e.synced {
		if slices.Contains(group.Members, u.ID) {
			e.checkPersonal(u.ID)
		} else if n := len(e.personal(u.ID)); n != 0 {
			t.Fatalf("user %s outside the group keeps %d contacts", u.ID, n)
		}
	}
	if !slices.ContainsFunc(r.Skipped, func(s contactsync.Skip) bool { return strings.Contains(s.Reason, "not a synced user") }) {
		t.Fatalf("unsynced group members not reported: %+v", r.Skipped)
	}

	// Switching personal sync off removes what it synced.
	e.put(map[string]any{"personal": map[string]any{"enabled": false}})
	r = e.run()
	for _, u := range e.synced {
		if n := len(e.personal(u.ID)); n != 0 {
			t.Fatalf("personal sync off: %s keeps %d", u.ID, n)
		}
	}
	if r.Deleted == 0 {
		t.Fatalf("personal sync off: %+v", r)
	}
	if code, out := e.api("GET", "/api/v1/integration/contacts-sync/run", nil); code != 200 || out["state"] != "succeeded" || int(out["deleted"].(float64)) != r.Deleted {
		t.Fatalf("last run: %d %v", code, out)
	}
	// A GET body can be sent back as is.
	_, got = e.api("GET", "/api/v1/integration/contacts-sync", nil)
	if code, out := e.api("PUT", "/api/v1/integration/contacts-sync", got); code != 200 {
		t.Fatalf("round trip: %d %v", code, out)
	}
	// Disconnecting removes what the contacts sync wrote (the lead's hook).
	e.put(map[string]any{"personal": map[string]any{"enabled": true}, "sharedMailboxes": map[string]any{"enabled": true, "phonebook": "All"}})
	if r := e.run(); r.Created == 0 || len(phonebooks(e)) != 1 {
		t.Fatalf("before disconnect: %+v", r)
	}
	if code, out := e.api("POST", "/api/v1/integration/disconnect", map[string]any{}); code != 200 {
		t.Fatalf("disconnect: %d %v", code, out)
	}
	if err := e.cs.Disconnected(t.Context(), directory.DefaultPBX); err != nil {
		t.Fatal(err)
	}
	for _, u := range e.synced {
		if n := len(e.personal(u.ID)); n != 0 {
			t.Fatalf("after disconnect %s keeps %d synced contacts", u.ID, n)
		}
	}
	if len(phonebooks(e)) != 0 || len(e.statesOf(t)) != 0 {
		t.Fatalf("after disconnect: phonebooks %v", phonebooks(e))
	}
	// Not connected: the run is refused with the reason.
	e.put(map[string]any{"personal": map[string]any{"enabled": true}})
	code, out = e.api("POST", "/api/v1/integration/contacts-sync/run", nil)
	if errb, _ := out["error"].(map[string]any); code != 409 || errb["code"] != "not_connected" {
		t.Fatalf("run while not connected: %d %v", code, out)
	}
}

func phonebooks(e *env) map[string]map[string]any {
	_, out := e.api("GET", "/api/v1/phonebooks", nil)
	m := map[string]map[string]any{}
	for _, it := range out["items"].([]any) {
		p := it.(map[string]any)
		m[p["name"].(string)] = p
	}
	return m
}

func visibleCount(e *env, extID string) int {
	e.t.Helper()
	items, _, err := e.store.ListVisibleContacts(e.t.Context(), directory.DefaultPBX, extID, store.ContactQuery{Limit: 1000})
	if err != nil {
		e.t.Fatal(err)
	}
	return len(items)
}

func TestSharedMailboxes(t *testing.T) {
	backends(t, func(t *testing.T, dsn func(t *testing.T) string) {
		e := newEnv(t, dsn(t), 3)
		boxes := e.tenant.SharedMailboxes()
		if len(boxes) < 2 {
			t.Fatalf("the sim has %d shared mailboxes", len(boxes))
		}
		// The picker finds exactly the shared mailboxes.
		code, out := e.api("GET", "/api/v1/directory/shared-mailboxes", nil)
		if code != 200 || len(out["items"].([]any)) != len(boxes) {
			t.Fatalf("picker: %d %v", code, out)
		}
		validOf := func(id string) int { v, _ := e.want(id); return len(v) }

		// One phonebook per mailbox, named by the admin.
		e.put(map[string]any{"sharedMailboxes": map[string]any{"enabled": true, "range": "mailboxes", "mailboxes": []any{
			map[string]any{"mailboxId": boxes[0].ID, "phonebook": "Sales contacts"},
			map[string]any{"mailboxId": boxes[1].ID, "phonebook": "Support contacts"}}}})
		r := e.run()
		pbs := phonebooks(e)
		sales, support := pbs["Sales contacts"], pbs["Support contacts"]
		if r.State != "succeeded" || sales == nil || support == nil || sales["source"] != "entra" || sales["entraId"] != boxes[0].ID ||
			int(sales["contactCount"].(float64)) != validOf(boxes[0].ID) || int(support["contactCount"].(float64)) != validOf(boxes[1].ID) {
			t.Fatalf("phonebooks %v after %+v", pbs, r)
		}
		// Hidden by default; visible after a grant.
		ext := e.exts[e.synced[0].ID]
		if n := visibleCount(e, ext); n != 0 {
			t.Fatalf("synced phonebook visible by default: %d contacts", n)
		}
		salesID := sales["id"].(string)
		if code, out := e.api("PUT", "/api/v1/phonebooks/"+salesID+"/visibility", map[string]any{"items": []any{map[string]any{"kind": "extension", "targetId": ext}}}); code != 200 {
			t.Fatalf("grant: %d %v", code, out)
		}
		if n := visibleCount(e, ext); n != validOf(boxes[0].ID) {
			t.Fatalf("after the grant %d visible, want %d", n, validOf(boxes[0].ID))
		}
		if n := visibleCount(e, e.exts[e.synced[1].ID]); n != 0 {
			t.Fatalf("grant leaked to another extension: %d", n)
		}
		// Read-only: no hand edits, no deletion.
		_, cl := e.api("GET", "/api/v1/phonebooks/"+salesID+"/contacts", nil)
		cid := cl["items"].([]any)[0].(map[string]any)["id"].(string)
		if code, _ := e.api("PATCH", "/api/v1/phonebooks/"+salesID+"/contacts/"+cid, map[string]any{"firstName": "X"}); code != 409 {
			t.Fatalf("edit: %d", code)
		}
		if code, _ := e.api("POST", "/api/v1/phonebooks/"+salesID+"/contacts", map[string]any{"firstName": "X", "mobile": "123"}); code != 409 {
			t.Fatalf("add: %d", code)
		}
		if code, _ := e.api("DELETE", "/api/v1/phonebooks/"+salesID, nil); code != 409 {
			t.Fatalf("delete phonebook: %d", code)
		}
		// A rename in the settings renames the phonebook and keeps its grants.
		e.put(map[string]any{"sharedMailboxes": map[string]any{"enabled": true, "range": "mailboxes", "mailboxes": []any{
			map[string]any{"mailboxId": boxes[0].ID, "phonebook": "Sales"},
			map[string]any{"mailboxId": boxes[1].ID, "phonebook": "Support contacts"}}}})
		e.run()
		if p := phonebooks(e)["Sales"]; p == nil || p["id"] != salesID || visibleCount(e, ext) != validOf(boxes[0].ID) {
			t.Fatalf("rename: %v", phonebooks(e))
		}

		// One phonebook for all: the per-mailbox ones go.
		e.put(map[string]any{"sharedMailboxes": map[string]any{"enabled": true, "range": "all", "phonebook": "Company"}})
		r = e.run()
		pbs = phonebooks(e)
		want := 0
		for _, b := range boxes {
			want += validOf(b.ID)
		}
		if len(pbs) != 1 || pbs["Company"] == nil || int(pbs["Company"]["contactCount"].(float64)) != want || pbs["Company"]["entraId"] != contactsync.AllMailboxesEntraID {
			t.Fatalf("range all: %v after %+v", pbs, r)
		}
		// A mailbox the authorization account loses access to leaves the
		// phonebook, the others stay.
		e.block.block(boxes[0].ID, true)
		if err := e.tenant.SetAppRoles(slices.DeleteFunc(slices.Clone(sim.AppRoles), func(s string) bool { return strings.HasPrefix(s, "Contacts.") })); err != nil {
			t.Fatal(err)
		}
		r = e.run()
		if got := int(phonebooks(e)["Company"]["contactCount"].(float64)); got != want-validOf(boxes[0].ID) {
			t.Fatalf("after losing %s: %d contacts, %+v", boxes[0].ID, got, r)
		}
		if !slices.ContainsFunc(r.Skipped, func(s contactsync.Skip) bool { return strings.Contains(s.Reason, "add it as a member") }) {
			t.Fatalf("lost mailbox not reported: %+v", r.Skipped)
		}
		// Shared-mailbox sync off: the synced phonebooks go.
		e.put(map[string]any{"sharedMailboxes": map[string]any{"enabled": false}})
		e.run()
		if pbs := phonebooks(e); len(pbs) != 0 {
			t.Fatalf("sync off: %v", pbs)
		}
	})
}

// A mailbox that Graph refuses (403) does not fail the others; a folder no
// longer shared empties that user's synced contacts and says why.
func TestUnsharedFolder(t *testing.T) {
	e := newEnv(t, "sqlite:"+filepath.Join(t.TempDir(), "sb.db"), 8)
	// Without the application permission only the delegated client reads:
	// what users shared with the authorization account.
	if err := e.tenant.SetAppRoles(slices.DeleteFunc(slices.Clone(sim.AppRoles), func(s string) bool { return strings.HasPrefix(s, "Contacts.") })); err != nil {
		t.Fatal(err)
	}
	e.put(map[string]any{"personal": map[string]any{"enabled": true, "range": "all"}})
	users := withContacts(e, e.synced)
	if r := e.run(); r.State != "succeeded" {
		t.Fatalf("first run: %+v", r)
	}
	for _, u := range users {
		e.checkPersonal(u.ID)
	}
	victim := users[0]
	e.block.block(victim.ID, true)
	r := e.run()
	if n := len(e.personal(victim.ID)); n != 0 {
		t.Fatalf("unshared folder kept %d contacts", n)
	}
	if !slices.ContainsFunc(r.Skipped, func(s contactsync.Skip) bool {
		return strings.HasPrefix(s.Subject, e.nums[victim.ID]+" ") && strings.Contains(s.Reason, "not shared with the authorization account")
	}) {
		t.Fatalf("no reason for the unshared folder: %+v", r.Skipped)
	}
	for _, u := range users[1:] {
		e.checkPersonal(u.ID)
	}
	// Shared again: the contacts come back.
	e.block.block(victim.ID, false)
	e.run()
	e.checkPersonal(victim.ID)

	// A mailbox that fails for another reason keeps its contacts; the run
	// says partial and the others are synced.
	e.block.breakBox(victim.ID, true)
	r = e.run()
	if r.State != "partial" || r.Failed != 1 || !slices.ContainsFunc(r.Skipped, func(s contactsync.Skip) bool {
		return strings.HasPrefix(s.Subject, e.nums[victim.ID]+" ") && strings.Contains(s.Reason, "kept as they were")
	}) {
		t.Fatalf("failing mailbox: %+v", r)
	}
	e.checkPersonal(victim.ID)
	e.block.breakBox(victim.ID, false)
	if r := e.run(); r.State != "succeeded" {
		t.Fatalf("after recovery: %+v", r)
	}
}

// Throttling: 429 answers with Retry-After are waited out and the run completes.
func TestThrottled(t *testing.T) {
	e := newEnv(t, "sqlite:"+filepath.Join(t.TempDir(), "sb.db"), 6)
	e.put(map[string]any{"personal": map[string]any{"enabled": true, "range": "all"}})
	e.tenant.SetFaults(sim.Faults{Throttle: 0.3, RetryAfter: time.Second, Routes: []string{"GET /v1.0/users/{id}/contacts/delta"}})
	start := time.Now()
	r := e.run()
	e.tenant.SetFaults(sim.Faults{})
	if r.State != "succeeded" || r.Failed != 0 {
		t.Fatalf("throttled run: %+v", r)
	}
	for _, u := range e.synced {
		e.checkPersonal(u.ID)
	}
	if n := e.tenant.Stats().ByEndpoint["fault 429"]; n == 0 {
		t.Fatal("the sim answered no 429")
	} else if el := time.Since(start); el < time.Second {
		t.Fatalf("%d 429s with Retry-After 1 s waited out in %v", n, el)
	}
}

// Without Contacts.Read.Shared the delegated client reads only the
// authorization account's own mailbox; the application permission reads the
// others, and the delegated client stops being tried after a few refusals.
func TestApplicationPermissionFallback(t *testing.T) {
	e := newSizedEnv(t, "sqlite:"+filepath.Join(t.TempDir(), "sb.db"), 120, 60, slog.LevelInfo, false)
	e.put(map[string]any{"personal": map[string]any{"enabled": true, "range": "all"}})
	r := e.run()
	if r.State != "succeeded" || r.Failed != 0 {
		t.Fatalf("run: %+v", r)
	}
	for _, u := range e.synced {
		e.checkPersonal(u.ID)
	}
	// A second run pays about one request per folder and mailbox (plus the
	// folder lists), not a refused delegated attempt for each mailbox.
	e.tenant.ResetStats()
	r = e.run()
	folders := 0
	for k := range e.statesOf(t) {
		_ = k
		folders++
	}
	if max := int64(folders + len(e.synced) + 10); r.GraphRequests > max {
		t.Fatalf("second run: %d Graph requests for %d folders of %d mailboxes", r.GraphRequests, folders, len(e.synced))
	}
}

func (e *env) statesOf(t *testing.T) map[string][]byte {
	m, err := e.store.ListSettings(t.Context(), directory.DefaultPBX, contactsync.DeltaPrefix)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// An expired contacts delta token restarts the folder with a full read that
// changes nothing; the lead's hook after a user sync runs the sync.
func TestDeltaExpired(t *testing.T) {
	e := newEnv(t, "sqlite:"+filepath.Join(t.TempDir(), "sb.db"), 6)
	if rep, err := e.cs.AfterUserSync(t.Context(), directory.DefaultPBX); rep != nil || err != nil {
		t.Fatalf("after user sync with contacts sync off: %v %v", rep, err)
	}
	e.put(map[string]any{"personal": map[string]any{"enabled": true, "range": "all"}})
	rep, err := e.cs.AfterUserSync(t.Context(), directory.DefaultPBX)
	if err != nil || rep == nil || rep.Created == 0 {
		t.Fatalf("after user sync: %+v %v", rep, err)
	}
	e.tenant.ExpireDeltaTokens()
	r := e.run()
	if r.State != "succeeded" || r.Created+r.Updated+r.Deleted != 0 || r.Unchanged != rep.Created {
		t.Fatalf("after the tokens expired: %+v", r)
	}
	for _, u := range e.synced {
		e.checkPersonal(u.ID)
	}
}

// TestDialForms: synced contacts are stored with the dialling forms of their
// numbers in the PBX's default country, a changed country rewrites them, and
// the admin API fills them for local contacts.
func TestDialForms(t *testing.T) {
	backends(t, func(t *testing.T, dsn func(t *testing.T) string) {
		e := newEnv(t, dsn(t), 12)
		check := func(country string) (national int) {
			t.Helper()
			n := 0
			for _, u := range e.synced {
				for _, c := range e.personal(u.ID) {
					for _, f := range []string{"mobile", "home", "business"} {
						raw := c[f].(string)
						want, _ := contactsync.Dial(raw, country)
						if c[f+"Dial"] != want {
							t.Fatalf("%s %q in %q: stored %sDial %q, want %q", u.ID, raw, country, f, c[f+"Dial"], want)
						}
						if raw != "" && !strings.HasPrefix(raw, "+") {
							national++
						}
						n++
					}
				}
			}
			if n == 0 {
				t.Fatal("no contacts synced")
			}
			return national
		}
		// The generated numbers are international; add a contact in national form.
		gc, err := e.svc.AppClient(t.Context(), directory.DefaultPBX)
		if err != nil {
			t.Fatal(err)
		}
		if err := gc.Do(t.Context(), "POST", "/users/"+e.synced[0].ID+"/contacts", nil, map[string]any{"givenName": "Nat", "surname": "Ional",
			"mobilePhone": "0171 1234567", "homePhones": []string{"030 123456"}}, nil); err != nil {
			t.Fatal(err)
		}
		e.put(map[string]any{"personal": map[string]any{"enabled": true, "range": "all"}, "defaultCountry": "DE"})
		if r := e.run(); r.State != "succeeded" || r.Created == 0 {
			t.Fatalf("first run: %+v", r)
		}
		if check("DE") == 0 {
			t.Fatal("no national numbers: the test proves nothing")
		}
		if !slices.ContainsFunc(e.personal(e.synced[0].ID), func(c map[string]any) bool {
			return c["mobile"] == "0171 1234567" && c["mobileDial"] == "+491711234567" && c["homeDial"] == "+4930123456"
		}) {
			t.Fatalf("national numbers not normalised: %v", e.personal(e.synced[0].ID))
		}
		// Another country: the contacts whose forms change are rewritten, once.
		changes := 0
		for _, u := range e.synced {
			for _, c := range e.personal(u.ID) {
				for _, f := range []string{"mobile", "home", "business"} {
					de, _ := contactsync.Dial(c[f].(string), "DE")
					gb, _ := contactsync.Dial(c[f].(string), "GB")
					if de != gb {
						changes++
						break
					}
				}
			}
		}
		e.put(map[string]any{"personal": map[string]any{"enabled": true, "range": "all"}, "defaultCountry": "GB"})
		if r := e.run(); r.State != "succeeded" || changes == 0 || r.Updated != changes || r.Created+r.Deleted != 0 {
			t.Fatalf("run after the country changed: %+v, want %d updated", r, changes)
		}
		check("GB")
		if r := e.run(); r.Created+r.Updated+r.Deleted != 0 {
			t.Fatalf("third run changed contacts: %+v", r)
		}

		// Local contacts through the admin API.
		ext := e.exts[e.synced[0].ID]
		code, out := e.api("POST", "/api/v1/extensions/"+ext+"/contacts", map[string]any{"firstName": "Local", "mobile": "07700 900123", "business": "+49 (0)30 1234567", "home": "2345"})
		if code != 201 || out["mobileDial"] != "+447700900123" || out["businessDial"] != "+49301234567" || out["homeDial"] != "2345" {
			t.Fatalf("create local contact: %d %v", code, out)
		}
		code, out = e.api("PATCH", "/api/v1/extensions/"+ext+"/contacts/"+out["id"].(string), map[string]any{"mobile": "", "home": "020 7946 0000"})
		if code != 200 || out["mobileDial"] != "" || out["homeDial"] != "+442079460000" || out["businessDial"] != "+49301234567" || out["mobile"] != "" {
			t.Fatalf("patch local contact: %d %v", code, out)
		}
	})
}
