//go:build e2e

package contactsync_test

import (
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// TestScale syncs the personal contacts of every user of a large simulated
// tenant (CONTACTS_SCALE_USERS, default 1,000 so the CI run stays short; the
// recorded benchmark uses 10,000; each with exactly
// CONTACTS_SCALE_PER_USER contacts, default 50; 0 = the sim's default mix)
// and reports time, Graph requests and memory for the first (full) run and
// the second (delta) run.
// CONTACTS_SCALE_LATENCY (e.g. 20ms) adds latency to every request the sim
// serves; CONTACTS_SCALE_NOBATCH=1 reads without $batch:
//
//	CONTACTS_SCALE_USERS=10000 go test -tags e2e -run TestScale -v ./internal/contactsync/
func TestScale(t *testing.T) {
	users := 1000
	if v := os.Getenv("CONTACTS_SCALE_USERS"); v != "" {
		users, _ = strconv.Atoi(v)
	}
	simContactsPerUser = 50
	if v := os.Getenv("CONTACTS_SCALE_PER_USER"); v != "" {
		simContactsPerUser, _ = strconv.Atoi(v)
	}
	t.Cleanup(func() { simContactsPerUser = 0 })
	if v := os.Getenv("CONTACTS_SCALE_LATENCY"); v != "" {
		simLatency, _ = time.ParseDuration(v)
		t.Cleanup(func() { simLatency = 0 })
	}
	start := time.Now()
	e := newSizedEnv(t, "sqlite:"+filepath.Join(t.TempDir(), "sb.db"), users, -1, slog.LevelWarn, true)
	t.Logf("setup: %d users (%d contacts each, 0 = default mix), %d synced extensions in %v", users, simContactsPerUser, len(e.synced), time.Since(start))
	e.put(map[string]any{"personal": map[string]any{"enabled": true, "range": "all"}})
	e.cs.DisableBatch = os.Getenv("CONTACTS_SCALE_NOBATCH") != ""
	t.Logf("sim latency %v, $batch %v", simLatency, !e.cs.DisableBatch)

	for i, name := range []string{"full", "delta"} {
		e.tenant.ResetStats()
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		var peak atomic.Uint64
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() { // sample the heap while the run goes
			defer close(done)
			tk := time.NewTicker(50 * time.Millisecond)
			defer tk.Stop()
			for {
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				if m.HeapInuse > peak.Load() {
					peak.Store(m.HeapInuse)
				}
				select {
				case <-stop:
					return
				case <-tk.C:
				}
			}
		}()
		t0 := time.Now()
		rep, err := e.cs.Run(t.Context(), directory.DefaultPBX)
		el := time.Since(t0)
		close(stop)
		<-done
		if err != nil {
			t.Fatal(err)
		}
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		st := e.tenant.Stats()
		t.Logf("%s run: %v, state %s, created %d updated %d deleted %d unchanged %d skipped %d failed %d mailboxes %d; graphRequests %d (sim served %d, in %d $batch calls); heap in use peak %.1f MB (before %.1f MB), allocated %.1f MB",
			name, el.Round(time.Millisecond), rep.State, rep.Created, rep.Updated, rep.Deleted, rep.Unchanged, len(rep.Skipped), rep.Failed, rep.Mailboxes,
			rep.GraphRequests, st.Total, st.ByEndpoint["POST /v1.0/$batch"], float64(peak.Load())/1e6, float64(before.HeapInuse)/1e6, float64(after.TotalAlloc-before.TotalAlloc)/1e6)
		if rep.State != "succeeded" {
			t.Fatalf("%s run: %+v", name, rep.State)
		}
		if i == 1 && rep.Created+rep.Updated+rep.Deleted != 0 {
			t.Fatalf("delta run changed contacts: %+v", rep)
		}
	}
	// Spot check: stored = the sim's valid contacts for some users.
	for _, u := range e.synced[:50] {
		valid, _ := e.want(u.ID)
		items, _, err := e.store.ListContacts(t.Context(), directory.DefaultPBX, store.ContactQuery{ExtensionID: e.exts[u.ID], Limit: 1000})
		if err != nil || len(items) != len(valid) {
			t.Fatalf("user %s: %d stored, %d valid (%v)", u.ID, len(items), len(valid), err)
		}
	}
}
