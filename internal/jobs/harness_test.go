package jobs_test

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/graph"
	"github.com/switchboard-pbx/switchboard/internal/jobs"
	"github.com/switchboard-pbx/switchboard/internal/mail"
	"github.com/switchboard-pbx/switchboard/internal/pbx"
	"github.com/switchboard-pbx/switchboard/internal/secret"
	"github.com/switchboard-pbx/switchboard/internal/sim"
	"github.com/switchboard-pbx/switchboard/internal/sqlstore"
	"github.com/switchboard-pbx/switchboard/internal/storetest"
	"github.com/switchboard-pbx/switchboard/internal/syncer"
)

const (
	tenantID     = "8f3c2a7e-1b4d-4c5e-9f6a-0d1e2f3a4b5c"
	clientID     = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
	clientSecret = "sim-secret"
	users        = 20
)

// tracker watches every instance's runs: how many hold a PBX at once (from
// the engine taking its Graph client, after the lease, to Finished, after
// the lease is released) and the successful runs per PBX.
type tracker struct {
	mu        sync.Mutex
	active    map[string]int
	all, most int // runs holding a Graph client now, and the most at once
	overlap   []string
	succeeded map[string][]syncer.Run
}

func (k *tracker) enter(pbx string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.active[pbx]++
	k.all++
	k.most = max(k.most, k.all)
	if k.active[pbx] > 1 {
		k.overlap = append(k.overlap, pbx)
	}
}

func (k *tracker) finished(_ context.Context, pbx string, run *syncer.Run, _ error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	switch run.ErrorCode {
	case "not_connected", "paused", "disabled": // never took the Graph client
	default:
		k.active[pbx]--
		k.all--
	}
	if run.State == syncer.StateSucceeded {
		k.succeeded[pbx] = append(k.succeeded[pbx], *run)
	}
}

func (k *tracker) runs(pbx, trigger string) []syncer.Run {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []syncer.Run
	for _, r := range k.succeeded[pbx] {
		if r.Trigger == trigger {
			out = append(out, r)
		}
	}
	return out
}

// mostAtOnce is the most runs (of any PBX) that held a Graph client at once.
func (k *tracker) mostAtOnce() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.most
}

func (k *tracker) overlaps() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.overlap...)
}

// source is the GraphSource of every instance: one simulated tenant; err
// makes it answer "not connected".
type source struct {
	mu    sync.Mutex
	c     *graph.Client
	err   error
	track *tracker
}

func (s *source) AppClient(_ context.Context, pbx string) (*graph.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	s.track.enter(pbx)
	return s.c, nil
}

func (s *source) setErr(err error) {
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
}

// world is one test's simulated tenant and database; instances share it.
type world struct {
	t     *testing.T
	db    string // sqlite:PATH or postgres://...
	src   *source
	track *tracker
	pbxs  []string
}

func newWorld(t *testing.T, db string, pbxs int, latency time.Duration) *world {
	t.Helper()
	tn, err := sim.New(sim.Config{TenantID: tenantID, ClientID: clientID, ClientSecret: clientSecret, Users: users, Seed: 7, Latency: latency})
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
	if db == "" {
		db = "sqlite:" + t.TempDir() + "/switchboard.db"
	}
	k := &tracker{active: map[string]int{}, succeeded: map[string][]syncer.Run{}}
	w := &world{t: t, db: db, src: &source{c: c, track: k}, track: k}
	for i := range pbxs {
		w.pbxs = append(w.pbxs, fmt.Sprintf("pbx-%02d", i))
	}
	return w
}

// instance is one `switchboard serve`: its own store connections, engine and River client.
type instance struct {
	st     *sqlstore.Store
	eng    *syncer.Engine
	runner *jobs.Runner
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

// testConfig is a jobs.Config with test timings.
func testConfig(id string) jobs.Config {
	return jobs.Config{ID: id, Window: 500 * time.Millisecond, Snooze: 200 * time.Millisecond,
		FetchPollInterval: 100 * time.Millisecond, MaxWorkers: 4}
}

// start opens an instance on the world's database (not started: call
// runner.Start). The first instance creates the PBXs and saves their sync
// settings (enabled).
func (w *world) instance(cfg jobs.Config) *instance {
	t := w.t
	t.Helper()
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, w.db, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	keys, err := secret.NewKeyring(secret.NewKey())
	if err != nil {
		t.Fatal(err)
	}
	log := testLogger(t).With("instance", cfg.ID)
	ps := &pbx.Service{Store: st, Keys: keys, Logger: log}
	eng := &syncer.Engine{Store: st, PBX: ps, Graph: w.src, Mailer: mail.Sender{}, Logger: log, Finished: w.track.finished}
	t.Cleanup(eng.Wait)
	cfg.Store, cfg.Syncer, cfg.Logger = st, eng, log
	var r *jobs.Runner
	if st.Flavour() == "postgres" {
		r, err = jobs.OpenPostgres(ctx, w.db, cfg)
	} else {
		r, err = jobs.OpenSQLite(ctx, st.DB(), cfg)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = r.StopAndCancel(sctx)
		r.Close()
	})
	return &instance{st: st, eng: eng, runner: r}
}

// setup creates the world's PBXs with user sync enabled. The initial run
// each save starts finds the integration "not connected" and changes
// nothing, so extensions appear only through jobs.
func (w *world) setup(in *instance) {
	t := w.t
	t.Helper()
	w.src.setErr(syncer.ErrNotConnected)
	defer w.src.setErr(nil)
	for _, id := range w.pbxs {
		if _, err := in.st.EnsurePBX(t.Context(), directory.PBX{ID: id, Name: id, MaxExtensions: 1000, TimeZone: "UTC"}); err != nil {
			t.Fatal(err)
		}
		s := syncer.DefaultUserSettings()
		s.Enabled = true
		if _, _, err := in.eng.SaveUserSettings(t.Context(), id, "test", s); err != nil {
			t.Fatal(err)
		}
	}
	in.eng.Wait()
}

// jobCounts returns the number of sync jobs for the PBX and how many are not
// finished yet (a finished job is completed, cancelled or discarded).
func (w *world) jobCounts(db *sql.DB, pbx string) (total, open int) {
	w.t.Helper()
	rows, err := db.QueryContext(w.t.Context(), `SELECT state, args->>'pbx' FROM river_job WHERE kind = 'sync'`)
	if err != nil {
		w.t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var state, args string
		if err := rows.Scan(&state, &args); err != nil {
			w.t.Fatal(err)
		}
		if pbx != "" && args != pbx {
			continue
		}
		total++
		switch state {
		case "completed", "cancelled", "discarded":
		default:
			open++
		}
	}
	if err := rows.Err(); err != nil {
		w.t.Fatal(err)
	}
	return total, open
}

// waitIdle polls until every sync job (of every PBX) is finished.
func (w *world) waitIdle(db *sql.DB, timeout time.Duration) {
	w.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		total, open := w.jobCounts(db, "")
		if total > 0 && open == 0 {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("sync jobs still open after %v: %d of %d", timeout, open, total)
		}
		time.Sleep(50 * time.Millisecond) // polling the queue, with a deadline
	}
}

// pgDatabase creates a fresh database on TEST_DATABASE_URL's server (dropped
// at the end) and returns its url; it skips when TEST_DATABASE_URL is unset.
func pgDatabase(t testing.TB) string {
	t.Helper()
	return storetest.PostgresDB(t, "switchboard_jobs_")
}

// backends runs fn on SQLite, and on PostgreSQL when TEST_DATABASE_URL is set.
func backends(t *testing.T, fn func(t *testing.T, db string)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, "") })
	t.Run("postgres", func(t *testing.T) { fn(t, pgDatabase(t)) })
}
