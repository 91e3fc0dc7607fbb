//go:build e2e

package contactsync_test

import (
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/contactsync"
	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// TestScale syncs the personal contacts of every user of a large simulated
// tenant (CONTACTS_SCALE_USERS, default 1,000 so the CI run stays short; the
// recorded benchmark uses 10,000; each with exactly
// CONTACTS_SCALE_PER_USER contacts, default 50; 0 = the sim's default mix)
// and reports time, Graph requests, memory and bytes written to disk for the
// first (full) run and the second (delta) run. The delta run finds nothing
// changed: it must write no contacts and no folder state (only its report),
// and its heap must not grow much more than the full run's.
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
	io0 := procIO(t)
	dbPath := filepath.Join(t.TempDir(), "sb.db")
	e := newSizedEnv(t, "sqlite:"+dbPath, users, -1, slog.LevelWarn, true)
	io1 := procIO(t)
	t.Logf("setup: %d users (%d contacts each, 0 = default mix), %d synced extensions in %v; wrote %.1f MB to disk",
		users, simContactsPerUser, len(e.synced), time.Since(start), float64(io1.writeBytes-io0.writeBytes)/1e6)
	e.put(map[string]any{"personal": map[string]any{"enabled": true, "range": "all"}})
	e.cs.DisableBatch = os.Getenv("CONTACTS_SCALE_NOBATCH") != ""
	t.Logf("sim latency %v, $batch %v", simLatency, !e.cs.DisableBatch)

	// CONTACTS_SCALE_HEAPPROFILE=dir writes dir/full.heap and dir/delta.heap,
	// heap profiles taken at each run's peak (go tool pprof -sample_index=inuse_space).
	prof := os.Getenv("CONTACTS_SCALE_HEAPPROFILE")
	var fullGrowth float64 // MB the full run's heap grew by at its peak
	w := &writeCounter{Store: e.cs.Store}
	e.cs.Store = w
	for i, name := range []string{"full", "delta"} {
		w.reset()
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
					if prof != "" && m.HeapInuse > peak.Load()+2e6 {
						writeHeapProfile(t, filepath.Join(prof, name+".heap"))
					}
					peak.Store(m.HeapInuse)
				}
				select {
				case <-stop:
					return
				case <-tk.C:
				}
			}
		}()
		io0 := procIO(t)
		t0 := time.Now()
		rep, err := e.cs.Run(t.Context(), directory.DefaultPBX)
		el := time.Since(t0)
		close(stop)
		<-done
		io1 := procIO(t)
		if err != nil {
			t.Fatal(err)
		}
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		st := e.tenant.Stats()
		t.Logf("%s run: %v, state %s, created %d updated %d deleted %d unchanged %d skipped %d failed %d mailboxes %d; graphRequests %d (sim served %d, in %d $batch calls); heap in use peak %.1f MB (before %.1f MB), allocated %.1f MB; wrote %.1f MB to disk",
			name, el.Round(time.Millisecond), rep.State, rep.Created, rep.Updated, rep.Deleted, rep.Unchanged, len(rep.Skipped), rep.Failed, rep.Mailboxes,
			rep.GraphRequests, st.Total, st.ByEndpoint["POST /v1.0/$batch"], float64(peak.Load())/1e6, float64(before.HeapInuse)/1e6, float64(after.TotalAlloc-before.TotalAlloc)/1e6,
			float64(io1.writeBytes-io0.writeBytes)/1e6)
		lastRun, _ := e.store.GetSetting(t.Context(), directory.DefaultPBX, contactsync.LastRunKey)
		t.Logf("%s run: database %.1f MB, WAL %.1f MB; the run's report %.1f MB", name, fileMB(dbPath), fileMB(dbPath+"-wal"), float64(len(lastRun))/1e6)
		if rep.State != "succeeded" {
			t.Fatalf("%s run: %+v", name, rep.State)
		}
		if i == 1 && rep.Created+rep.Updated+rep.Deleted != 0 {
			t.Fatalf("delta run changed contacts: %+v", rep)
		}
		// The delta run holds no more than the full run: it does not keep
		// every folder state of the tenant in memory.
		growth := float64(peak.Load())/1e6 - float64(before.HeapInuse)/1e6
		if i == 0 {
			fullGrowth = growth
		} else if growth > 1.2*fullGrowth+4 {
			t.Fatalf("delta run: heap grew by %.1f MB at its peak, the full run's by %.1f MB", growth, fullGrowth)
		}
		// Nothing changed in Outlook: no contacts and no folder state are
		// rewritten, only the run's report is stored.
		if i == 1 && (len(w.contacts) != 0 || len(w.other) != 0 || len(w.settings) != 1 || w.settings[contactsync.LastRunKey] != 1) {
			t.Fatalf("delta run without changes wrote contacts of %d owners, %d settings, %v", len(w.contacts), len(w.settings), w.other)
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

// ioStats are the process's I/O counters (/proc/self/io).
type ioStats struct{ writeBytes int64 }

// procIO reads /proc/self/io: write_bytes counts what the process caused to
// be written to storage (through the page cache; sockets are not counted).
// Without /proc (not Linux) every count is 0.
func procIO(t testing.TB) ioStats {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Logf("no I/O counters: %v", err)
		return ioStats{}
	}
	var s ioStats
	for line := range strings.Lines(string(b)) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), ": ")
		n, _ := strconv.ParseInt(v, 10, 64)
		if k == "write_bytes" {
			s.writeBytes = n
		}
	}
	return s
}

func fileMB(path string) float64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return float64(fi.Size()) / 1e6
}

func writeHeapProfile(t testing.TB, path string) {
	f, err := os.Create(path)
	if err != nil {
		t.Error(err)
		return
	}
	defer f.Close()
	if err := pprof.WriteHeapProfile(f); err != nil {
		t.Error(err)
	}
}
