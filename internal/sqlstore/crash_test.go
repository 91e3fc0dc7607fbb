package sqlstore_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/sqlstore"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// The crash tests run a writer in a child process (this test binary again,
// running TestHelperProcess), SIGKILL it in the middle of its bulk writes and
// check that the database is intact and holds only whole batches.

const (
	crashEnvURL  = "SWITCHBOARD_CRASH_HELPER_URL"
	crashPBX     = "crash"
	crashBatch   = 400 // extensions per ApplyExtensions
	markerNumber = "1" // updated by every batch, in the same transaction
)

// TestHelperProcess is the child of the crash tests: it applies batches
// until it is killed. It does nothing in a normal test run.
func TestHelperProcess(t *testing.T) {
	dbURL := os.Getenv(crashEnvURL)
	if dbURL == "" {
		return
	}
	ctx := context.Background()
	s, err := sqlstore.Open(ctx, dbURL, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper: open:", err)
		os.Exit(2)
	}
	marker, err := s.FindExtension(ctx, crashPBX, "number", markerNumber)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper: marker:", err)
		os.Exit(2)
	}
	start, _ := strconv.Atoi(marker.JobTitle) // batches already done by killed predecessors
	for b := start; ; b++ {
		creates := make([]*directory.Extension, crashBatch)
		for i := range creates {
			n := strconv.Itoa(1_000_000 + b*crashBatch + i)
			creates[i] = &directory.Extension{Number: n, FirstName: "Batch", LastName: strconv.Itoa(b),
				Email: "u" + n + "@example.com", JobTitle: "batch-" + strconv.Itoa(b), Source: directory.SourceEntra, EntraID: "e" + n}
		}
		m := *marker
		m.JobTitle = strconv.Itoa(b + 1) // batches completed once this commits
		if err := s.ApplyExtensions(ctx, crashPBX, store.ExtensionChanges{Create: creates, Update: []*directory.Extension{&m}}); err != nil {
			fmt.Fprintln(os.Stderr, "helper: apply:", err)
			os.Exit(2)
		}
	}
}

// crashAndCheck kills a child writer mid-write several times over; after
// each kill it reopens the store and checks that it holds only whole batches
// (the marker, updated in each batch's transaction, counts them) and still
// takes writes. check runs flavour-specific integrity checks.
func crashAndCheck(t *testing.T, dbURL string, check func(s *sqlstore.Store)) {
	ctx := t.Context()
	setup, err := sqlstore.Open(ctx, dbURL, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := setup.EnsurePBX(ctx, directory.PBX{ID: crashPBX}); err != nil {
		t.Fatal(err)
	}
	if err := setup.CreateExtension(ctx, crashPBX, &directory.Extension{Number: markerNumber, JobTitle: "0"}); err != nil {
		t.Fatal(err)
	}
	setup.Close()
	done := 0
	for round := range 3 {
		done = crashOnce(t, dbURL, done+2)
		s, err := sqlstore.Open(ctx, dbURL, testLogger(t))
		if err != nil {
			t.Fatalf("reopen after crash %d: %v", round, err)
		}
		check(s)
		checkWholeBatches(t, s, done)
		s.Close()
		t.Logf("crash %d: killed after %d complete batches of %d", round, done, crashBatch)
	}
	// The store still takes writes, including the numbers the killed batch was writing.
	s, err := sqlstore.Open(ctx, dbURL, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	next := make([]*directory.Extension, crashBatch)
	for i := range next {
		next[i] = &directory.Extension{Number: strconv.Itoa(1_000_000 + done*crashBatch + i)}
	}
	if err := s.ApplyExtensions(ctx, crashPBX, store.ExtensionChanges{Create: next}); err != nil {
		t.Fatalf("write after the crash: %v", err)
	}
	marker, err := s.FindExtension(ctx, crashPBX, "number", markerNumber)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateExtension(ctx, crashPBX, marker.ID, func(e *directory.Extension) error { e.JobTitle = "after"; return nil }); err != nil {
		t.Fatalf("update after the crash: %v", err)
	}
	if n, _ := s.CountExtensions(ctx, crashPBX); n != 1+(done+1)*crashBatch {
		t.Fatalf("count after the post-crash write = %d", n)
	}
}

// crashOnce starts the child, waits (with a deadline) until at least
// minBatches batches are committed, SIGKILLs it and returns the number of
// batches the marker reports.
func crashOnce(t *testing.T, dbURL string, minBatches int) int {
	ctx := t.Context()
	watch, err := sqlstore.Open(ctx, dbURL, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnvURL+"="+dbURL)
	cmd.Stderr = t.Output()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		n, err := watch.CountExtensions(ctx, crashPBX)
		if err != nil {
			cmd.Process.Kill()
			t.Fatal(err)
		}
		if n >= 1+minBatches*crashBatch {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("helper exited early: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no progress: %d extensions after 60 s", n)
		}
		time.Sleep(2 * time.Millisecond) // polling interval
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL, in the middle of the next batch
		t.Fatal(err)
	}
	if err := <-exited; err == nil {
		t.Fatal("helper exited cleanly; it should have been killed")
	}
	marker, err := watch.FindExtension(ctx, crashPBX, "number", markerNumber)
	if err != nil {
		t.Fatal(err)
	}
	done, err := strconv.Atoi(marker.JobTitle)
	if err != nil || done < minBatches {
		t.Fatalf("marker says %q batches, saw at least %d before the kill", marker.JobTitle, minBatches)
	}
	return done
}

// checkWholeBatches checks that the store holds exactly done whole batches.
func checkWholeBatches(t *testing.T, s *sqlstore.Store, done int) {
	t.Helper()
	perBatch := map[string]int{}
	total := 0
	err := s.ListAllExtensions(t.Context(), crashPBX, func(e *directory.Extension) error {
		total++
		if e.Number != markerNumber {
			perBatch[e.JobTitle]++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(perBatch) != done || total != 1+done*crashBatch {
		t.Fatalf("marker says %d batches; found %d batch labels and %d extensions (want %d)", done, len(perBatch), total, 1+done*crashBatch)
	}
	for b := range done {
		if n := perBatch["batch-"+strconv.Itoa(b)]; n != crashBatch {
			t.Fatalf("batch %d has %d of %d extensions: a batch was half-written", b, n, crashBatch)
		}
	}
	if n, _ := s.CountExtensions(t.Context(), crashPBX); n != total {
		t.Fatalf("CountExtensions %d != listed %d", n, total)
	}
}

func TestCrashSafetySQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crash.db")
	crashAndCheck(t, "sqlite:"+path, func(s *sqlstore.Store) {
		var res string
		if err := s.DB().QueryRowContext(t.Context(), `PRAGMA integrity_check`).Scan(&res); err != nil || res != "ok" {
			t.Fatalf("integrity_check = %q, %v", res, err)
		}
		var fk int
		if err := s.DB().QueryRowContext(t.Context(), `SELECT COUNT(*) FROM pragma_foreign_key_check`).Scan(&fk); err != nil || fk != 0 {
			t.Fatalf("foreign_key_check: %d violations, %v", fk, err)
		}
	})
}

func TestCrashSafetyPostgres(t *testing.T) {
	crashAndCheck(t, pgDatabase(t), func(s *sqlstore.Store) {
		// The indexes must agree with the table after the crash.
		var n int
		if err := s.DB().QueryRowContext(t.Context(), `SELECT COUNT(*) FROM (SELECT pbx_id, sort_key FROM extension GROUP BY pbx_id, sort_key HAVING COUNT(*) > 1) d`).Scan(&n); err != nil || n != 0 {
			t.Fatalf("duplicate numbers after the crash: %d, %v", n, err)
		}
	})
}
