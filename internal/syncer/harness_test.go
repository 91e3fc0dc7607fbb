package syncer_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/graph"
	"github.com/switchboard-pbx/switchboard/internal/mail"
	"github.com/switchboard-pbx/switchboard/internal/pbx"
	"github.com/switchboard-pbx/switchboard/internal/secret"
	"github.com/switchboard-pbx/switchboard/internal/sim"
	"github.com/switchboard-pbx/switchboard/internal/sqlstore"
	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/storetest"
	"github.com/switchboard-pbx/switchboard/internal/syncer"
)

const (
	tenantID     = "8f3c2a7e-1b4d-4c5e-9f6a-0d1e2f3a4b5c"
	clientID     = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
	clientSecret = "sim-secret"
)

// source is a GraphSource for one simulated tenant.
type source struct {
	c   *graph.Client
	err error
}

func (s *source) AppClient(context.Context, string) (*graph.Client, error) { return s.c, s.err }

// bundle is one test's world: a simulated tenant served over HTTP, a store,
// the PBX write path and the engine.
type bundle struct {
	t      testing.TB
	tenant *sim.Tenant
	srv    *httptest.Server
	graph  *graph.Client
	store  store.Store
	pbx    *pbx.Service
	eng    *syncer.Engine
	src    *source
}

type opts struct {
	users, groups int
	seed          int64
	latency       time.Duration
	capacity      int
	db            string // "" = a fresh SQLite file
	// membersPerPage caps members@delta entries per group per delta page
	// (sim.Config.DeltaMembersPerPage; 0: the sim's default).
	membersPerPage int
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.DiscardHandler)
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func newTenant(t testing.TB, o opts) (*sim.Tenant, *httptest.Server, *graph.Client) {
	t.Helper()
	if o.seed == 0 {
		o.seed = 7
	}
	tn, err := sim.New(sim.Config{TenantID: tenantID, ClientID: clientID, ClientSecret: clientSecret,
		Users: o.users, Groups: o.groups, Seed: o.seed, Latency: o.latency, DeltaMembersPerPage: o.membersPerPage})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(tn.Handler())
	t.Cleanup(func() { srv.Close(); tn.Close() })
	c, err := graph.New(graph.Config{GraphURL: srv.URL, LoginURL: srv.URL, TenantID: tenantID, ClientID: clientID,
		ClientSecret: clientSecret, MaxConcurrency: 4, BackoffBase: 10 * time.Millisecond, BackoffMax: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return tn, srv, c
}

func openStore(t testing.TB, db string, capacity int) store.Store {
	t.Helper()
	if db == "" {
		db = "sqlite:" + t.TempDir() + "/switchboard.db"
	}
	st, err := sqlstore.Open(context.Background(), db, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if capacity == 0 {
		capacity = 10000
	}
	if _, err := st.EnsurePBX(context.Background(), directory.PBX{ID: directory.DefaultPBX, Name: "Contoso PBX", MaxExtensions: capacity, TimeZone: "UTC"}); err != nil {
		t.Fatal(err)
	}
	return st
}

func newBundle(t testing.TB, o opts) *bundle {
	t.Helper()
	tn, srv, c := newTenant(t, o)
	st := openStore(t, o.db, o.capacity)
	keys, err := secret.NewKeyring(secret.NewKey())
	if err != nil {
		t.Fatal(err)
	}
	log := testLogger(t)
	ps := &pbx.Service{Store: st, Keys: keys, Logger: log}
	src := &source{c: c}
	eng := &syncer.Engine{Store: st, PBX: ps, Graph: src, Mailer: mail.Sender{}, Logger: log}
	t.Cleanup(eng.Wait)
	return &bundle{t: t, tenant: tn, srv: srv, graph: c, store: st, pbx: ps, eng: eng, src: src}
}

// pgDatabase creates a fresh database on TEST_DATABASE_URL's server (dropped
// at the end) and returns its url; it skips when TEST_DATABASE_URL is unset.
func pgDatabase(t testing.TB) string {
	t.Helper()
	return storetest.PostgresDB(t, "switchboard_sync_")
}

// backends runs fn on SQLite, and on PostgreSQL when TEST_DATABASE_URL is set.
func backends(t *testing.T, fn func(t *testing.T, db func(t testing.TB) string)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, func(testing.TB) string { return "" }) })
	t.Run("postgres", func(t *testing.T) {
		if os.Getenv("TEST_DATABASE_URL") == "" {
			t.Skip("TEST_DATABASE_URL is not set (eval \"$(bash .ci/start-postgres.sh)\")")
		}
		fn(t, func(t testing.TB) string { return pgDatabase(t) })
	})
}

// ---- helpers ----

func (b *bundle) save(s syncer.UserSettings) string {
	b.t.Helper()
	_, id, err := b.eng.SaveUserSettings(b.t.Context(), directory.DefaultPBX, "test", s)
	if err != nil {
		b.t.Fatalf("SaveUserSettings: %v", err)
	}
	b.eng.Wait()
	return id
}

func (b *bundle) run(o syncer.RunOptions) *syncer.Run {
	b.t.Helper()
	r, err := b.eng.Run(b.t.Context(), directory.DefaultPBX, o)
	if err != nil {
		b.t.Fatalf("Run: %v", err)
	}
	return r
}

func (b *bundle) mustSucceed(r *syncer.Run) *syncer.Run {
	b.t.Helper()
	if r.State != syncer.StateSucceeded {
		b.t.Fatalf("run %s: state %s, error %q, notes %v", r.ID, r.State, r.Error, r.Notes)
	}
	return r
}

func (b *bundle) extensions() []directory.Extension {
	b.t.Helper()
	var out []directory.Extension
	if err := b.store.ListAllExtensions(context.Background(), directory.DefaultPBX, func(e *directory.Extension) error {
		out = append(out, *e)
		return nil
	}); err != nil {
		b.t.Fatal(err)
	}
	return out
}

func (b *bundle) byEntra() map[string]directory.Extension {
	m := map[string]directory.Extension{}
	for _, e := range b.extensions() {
		if e.Synced() {
			m[e.EntraID] = e
		}
	}
	return m
}

// graphDo sends a Graph write to the simulated tenant, as an administrator would.
func (b *bundle) graphDo(method, path string, body any) {
	b.t.Helper()
	if err := b.graph.Do(context.Background(), method, path, nil, body, nil); err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
}

func (b *bundle) patchUser(id string, body map[string]any) {
	b.graphDo(http.MethodPatch, "/users/"+id, body)
}
func (b *bundle) deleteUser(id string) { b.graphDo(http.MethodDelete, "/users/"+id, nil) }

// createUser creates a user and returns its id.
func (b *bundle) createUser(alias string, extra map[string]any) string {
	b.t.Helper()
	body := map[string]any{"accountEnabled": true, "displayName": alias, "mailNickname": alias,
		"userPrincipalName": alias + "@" + b.tenant.Domain(), "passwordProfile": map[string]any{"password": "P@ssw0rd!x"}}
	for k, v := range extra {
		body[k] = v
	}
	var out struct {
		ID string `json:"id"`
	}
	if err := b.graph.Do(context.Background(), http.MethodPost, "/users", nil, body, &out); err != nil {
		b.t.Fatalf("create user %s: %v", alias, err)
	}
	return out.ID
}

func defaults() syncer.UserSettings {
	s := syncer.DefaultUserSettings()
	s.Enabled = true
	return s
}

func pct(n int) *int { return &n }

func skipsFor(r *syncer.Run, id string) []string {
	var out []string
	for _, s := range r.Skipped {
		if s.EntraID == id {
			out = append(out, s.Reason)
		}
	}
	return out
}

func fatalf(t testing.TB, format string, args ...any) { t.Helper(); t.Fatalf(format, args...) }

var _ = fmt.Sprintf
