package jobs_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/graph"
	"github.com/switchboard-pbx/switchboard/internal/jobs"
	"github.com/switchboard-pbx/switchboard/internal/mail"
	"github.com/switchboard-pbx/switchboard/internal/pbx"
	"github.com/switchboard-pbx/switchboard/internal/secret"
	"github.com/switchboard-pbx/switchboard/internal/sim"
	"github.com/switchboard-pbx/switchboard/internal/sqlstore"
	"github.com/switchboard-pbx/switchboard/internal/syncer"
)

// Instances in their own processes: the test binary re-executes itself with
// SB_JOBS_CHILD=1 and becomes one `switchboard serve` (its own store
// connections, sync engine and River client on the shared PostgreSQL
// database), so an instance can be SIGKILLed, and two instances use the
// machine's cores as two servers would.

func TestMain(m *testing.M) {
	if os.Getenv("SB_JOBS_CHILD") == "1" {
		os.Exit(childInstance())
	}
	os.Exit(m.Run())
}

// childEnv is how the parent configures a child instance.
type childEnv struct {
	ID         string
	DB, SimURL string
	MaxWorkers int
	ApplyBatch int           // engine's changes per transaction (0: default)
	LeaseTTL   time.Duration // engine's lease TTL (0: default)
	// River timings (0: defaults).
	JobTimeout, RescueAfter, ReapInterval, StuckAfter time.Duration
}

func (c childEnv) environ() []string {
	return append(os.Environ(), "SB_JOBS_CHILD=1",
		"SB_JOBS_ID="+c.ID, "SB_JOBS_DB="+c.DB, "SB_JOBS_SIM="+c.SimURL,
		"SB_JOBS_WORKERS="+strconv.Itoa(c.MaxWorkers), "SB_JOBS_APPLY_BATCH="+strconv.Itoa(c.ApplyBatch),
		"SB_JOBS_LEASE_TTL="+c.LeaseTTL.String(), "SB_JOBS_JOB_TIMEOUT="+c.JobTimeout.String(),
		"SB_JOBS_RESCUE_AFTER="+c.RescueAfter.String(), "SB_JOBS_REAP_INTERVAL="+c.ReapInterval.String(),
		"SB_JOBS_STUCK_AFTER="+c.StuckAfter.String())
}

// perPBX gives every PBX its own Graph client (its own per-tenant request
// gate, as separate Entra tenants would have); all talk to one simulated
// tenant.
type perPBX struct {
	url     string
	mu      sync.Mutex
	clients map[string]*graph.Client
}

func (s *perPBX) AppClient(_ context.Context, pbx string) (*graph.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.clients[pbx]; c != nil {
		return c, nil
	}
	c, err := graph.New(graph.Config{GraphURL: s.url, LoginURL: s.url, TenantID: tenantID, ClientID: clientID,
		ClientSecret: clientSecret, MaxConcurrency: 4, BackoffBase: 10 * time.Millisecond, BackoffMax: 100 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	s.clients[pbx] = c
	return c, nil
}

// childInstance is the child side: run one instance until stdin closes or
// a signal arrives (SIGKILL ends it without any of this code running).
func childInstance() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	dur := func(k string) time.Duration { d, _ := time.ParseDuration(os.Getenv(k)); return d }
	num := func(k string) int { n, _ := strconv.Atoi(os.Getenv(k)); return n }
	id, db := os.Getenv("SB_JOBS_ID"), os.Getenv("SB_JOBS_DB")
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("instance", id)
	fail := func(err error) int { log.Error("child instance", "err", err); return 1 }
	// SB_JOBS_CPUPROFILE=dir writes each instance's CPU profile (dir/ID.prof).
	if dir := os.Getenv("SB_JOBS_CPUPROFILE"); dir != "" {
		f, err := os.Create(filepath.Join(dir, id+".prof"))
		if err != nil {
			return fail(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fail(err)
		}
		defer pprof.StopCPUProfile()
	}
	st, err := sqlstore.Open(ctx, db, log)
	if err != nil {
		return fail(err)
	}
	defer st.Close()
	keys, err := secret.NewKeyring(secret.NewKey())
	if err != nil {
		return fail(err)
	}
	eng := &syncer.Engine{Store: st, PBX: &pbx.Service{Store: st, Keys: keys, Logger: log},
		Graph: &perPBX{url: os.Getenv("SB_JOBS_SIM"), clients: map[string]*graph.Client{}}, Mailer: mail.Sender{},
		Logger: log, ApplyBatch: num("SB_JOBS_APPLY_BATCH"), LeaseTTL: dur("SB_JOBS_LEASE_TTL")}
	r, err := jobs.OpenPostgres(ctx, db, jobs.Config{ID: id, Store: st, Syncer: eng, Logger: log,
		MaxWorkers: num("SB_JOBS_WORKERS"), Window: 500 * time.Millisecond, Snooze: 200 * time.Millisecond,
		FetchPollInterval: 100 * time.Millisecond, JobTimeout: dur("SB_JOBS_JOB_TIMEOUT"),
		RescueStuckJobsAfter: dur("SB_JOBS_RESCUE_AFTER"), ReapInterval: dur("SB_JOBS_REAP_INTERVAL"),
		StuckAfter: dur("SB_JOBS_STUCK_AFTER")})
	if err != nil {
		return fail(err)
	}
	defer r.Close()
	if err := r.Start(ctx); err != nil {
		return fail(err)
	}
	fmt.Println("READY")
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); stop() }() // the parent closes stdin to stop us
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = r.Stop(sctx)
	eng.Wait()
	return 0
}

// child is a running child instance.
type child struct {
	id     string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *syncBuffer
	done   chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// readyWriter closes ready at the child's READY line.
type readyWriter struct {
	once  sync.Once
	ready chan struct{}
}

func (w *readyWriter) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("READY")) {
		w.once.Do(func() { close(w.ready) })
	}
	return len(p), nil
}

// startChild starts a child instance and waits until its River client runs.
// At the end of the test it is stopped gracefully (stdin closed) unless it
// was killed.
func startChild(tb testing.TB, env childEnv) *child {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = env.environ()
	rw := &readyWriter{ready: make(chan struct{})}
	c := &child{id: env.ID, cmd: cmd, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = rw, c.stderr
	var err error
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(c.done) }()
	tb.Cleanup(func() {
		_ = c.stdin.Close()
		select {
		case <-c.done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-c.done
		}
		if tb.Failed() {
			tb.Logf("instance %s output:\n%s", c.id, c.stderr.String())
		}
	})
	select {
	case <-rw.ready:
	case <-c.done:
		tb.Fatalf("instance %s exited before it was ready: %s", env.ID, c.stderr.String())
	case <-time.After(30 * time.Second):
		tb.Fatalf("instance %s not ready after 30 s: %s", env.ID, c.stderr.String())
	}
	return c
}

// kill SIGKILLs the child: nothing of it runs any more, its jobs stay
// "running" in river_job and its leases stay until they expire.
func (c *child) kill(tb testing.TB) {
	tb.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		tb.Fatal(err)
	}
	<-c.done
}

// startSim serves a simulated tenant of n users with the given latency in
// this process and returns its URL.
func startSim(tb testing.TB, n int, latency time.Duration) string {
	tb.Helper()
	tn, err := sim.New(sim.Config{TenantID: tenantID, ClientID: clientID, ClientSecret: clientSecret, Users: n, Seed: 7, Latency: latency})
	if err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewServer(tn.Handler())
	tb.Cleanup(func() { srv.Close(); tn.Close() })
	return srv.URL
}

// notConnected is the GraphSource used while creating PBXs: the initial run
// each settings save starts finds the integration not connected and changes
// nothing, so extensions appear only through jobs.
type notConnected struct{}

func (notConnected) AppClient(context.Context, string) (*graph.Client, error) {
	return nil, syncer.ErrNotConnected
}

// control is the test's own view of the shared database: the store, an
// engine to read run records, and an insert-only River client to trigger.
type control struct {
	st     *sqlstore.Store
	eng    *syncer.Engine
	runner *jobs.Runner
}

// newControl creates the PBXs (user sync enabled, nothing synced yet) and an
// insert-only River client (never started) on the database at db.
func newControl(tb testing.TB, db string, ids []string) *control {
	tb.Helper()
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, db, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	keys, err := secret.NewKeyring(secret.NewKey())
	if err != nil {
		tb.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	eng := &syncer.Engine{Store: st, PBX: &pbx.Service{Store: st, Keys: keys, Logger: log}, Graph: notConnected{}, Mailer: mail.Sender{}, Logger: log}
	s := syncer.DefaultUserSettings()
	s.Enabled = true
	for _, id := range ids {
		if _, err := st.EnsurePBX(ctx, directory.PBX{ID: id, Name: id, MaxExtensions: 1000, TimeZone: "UTC"}); err != nil {
			tb.Fatal(err)
		}
		if _, _, err := eng.SaveUserSettings(ctx, id, "test", s); err != nil {
			tb.Fatal(err)
		}
	}
	eng.Wait()
	r, err := jobs.OpenPostgres(ctx, db, jobs.Config{ID: "control", Store: st, Syncer: eng, Logger: log, Window: 500 * time.Millisecond})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(r.Close)
	return &control{st: st, eng: eng, runner: r}
}

// db is the store's *sql.DB (for river_job queries).
func (c *control) db() *sql.DB { return c.st.DB() }

// succeeded returns the PBX's successful runs with the trigger, from the run records.
func (c *control) succeeded(tb testing.TB, pbx, trigger string) []syncer.Run {
	tb.Helper()
	runs, err := c.eng.ListRuns(context.Background(), pbx)
	if err != nil {
		tb.Fatal(err)
	}
	var out []syncer.Run
	for _, r := range runs {
		if r.Trigger == trigger && r.State == syncer.StateSucceeded {
			out = append(out, r)
		}
	}
	return out
}

// syncJobs counts sync jobs by state.
func (c *control) syncJobs(tb testing.TB) map[string]int {
	tb.Helper()
	rows, err := c.db().QueryContext(context.Background(), `SELECT state, count(*) FROM river_job WHERE kind = 'sync' GROUP BY state`)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			tb.Fatal(err)
		}
		out[s] = n
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

// waitFor polls cond every 50 ms until it holds or the timeout passes.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond) // polling with a deadline
	}
}

// leader returns the River leader's instance id ("" when none).
func (c *control) leader(tb testing.TB) string {
	tb.Helper()
	var id string
	err := c.db().QueryRowContext(context.Background(), `SELECT leader_id FROM river_leader WHERE expires_at > now()`).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return ""
	}
	if err != nil && !strings.Contains(err.Error(), "does not exist") {
		tb.Fatal(err)
	}
	return id
}
