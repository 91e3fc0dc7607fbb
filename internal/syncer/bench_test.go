package syncer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/graph"
	"github.com/switchboard-pbx/switchboard/internal/pbx"
	"github.com/switchboard-pbx/switchboard/internal/secret"
	"github.com/switchboard-pbx/switchboard/internal/syncer"
)

// goPeak is the peak of memory the Go runtime holds from the OS (total minus released), set by heapPeak.
var goPeak uint64

// heapPeak samples the live heap every 5 ms until stopped and returns the peak.
func heapPeak() (stop func() uint64) {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	var mu sync.Mutex
	var peak uint64
	done := make(chan struct{})
	finished := make(chan struct{})
	goPeak = 0
	read := func() {
		metrics.Read(sample)
		if v := sample[0].Value.Uint64(); v > peak {
			peak = v
		}
		if v := sample[1].Value.Uint64() - sample[2].Value.Uint64(); v > goPeak {
			goPeak = v
		}
	}
	go func() {
		defer close(finished)
		tk := time.NewTicker(5 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-done:
				return
			case <-tk.C:
				mu.Lock()
				read()
				mu.Unlock()
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-finished
		mu.Lock()
		defer mu.Unlock()
		read()
		return peak
	}
}

func liveHeap() uint64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// simStats reads GET /sim/stats: the Graph requests the tenant served.
func simStats(b testing.TB, base string) (total int64, by map[string]int64) {
	res, err := http.Get(base + "/sim/stats")
	if err != nil {
		b.Fatal(err)
	}
	defer res.Body.Close()
	var s struct {
		Total      int64            `json:"total"`
		ByEndpoint map[string]int64 `json:"byEndpoint"`
	}
	if err := json.NewDecoder(res.Body).Decode(&s); err != nil {
		b.Fatal(err)
	}
	return s.Total, s.ByEndpoint
}

func resetSimStats(b testing.TB, base string) {
	res, err := http.Post(base+"/sim/stats/reset", "application/json", nil)
	if err != nil {
		b.Fatal(err)
	}
	res.Body.Close()
}

func graphRequests(by map[string]int64) int64 {
	var n int64
	for k, v := range by {
		if len(k) > 10 && k[:10] == "GET /v1.0/" || len(k) > 11 && k[:11] == "POST /v1.0/" {
			n += v
		}
	}
	return n
}

// BenchmarkFullSync measures a first (full) sync into an empty SQLite store.
func BenchmarkFullSync(b *testing.B) {
	for _, size := range []int{1_000, 10_000, 100_000} {
		for _, lat := range []time.Duration{0, 20 * time.Millisecond} {
			b.Run(fmt.Sprintf("users=%d/latency=%s", size, lat), func(b *testing.B) {
				simURL, c := simProcess(b, size, lat)
				for b.Loop() {
					b.StopTimer()
					st := openStore(b, benchDB(b), 200_000)
					keys, _ := secret.NewKeyring(secret.NewKey())
					eng := &syncer.Engine{Store: st, PBX: &pbx.Service{Store: st, Keys: keys, Logger: testLogger(b)}, Graph: &source{c: c}}
					s := syncer.DefaultUserSettings()
					s.Enabled = false
					if _, _, err := eng.SaveUserSettings(context.Background(), directory.DefaultPBX, "bench", s); err != nil {
						b.Fatal(err)
					}
					s.Enabled = true
					base := liveHeap()
					resetSimStats(b, simURL)
					debug.FreeOSMemory()
					resetPeakRSS()
					b.StartTimer()
					start := time.Now()
					stop := heapPeak()
					_, id, err := eng.SaveUserSettings(context.Background(), directory.DefaultPBX, "bench", s)
					if err != nil {
						b.Fatal(err)
					}
					eng.Wait()
					peak := stop()
					elapsed := time.Since(start)
					b.StopTimer()
					r, _ := eng.GetRun(context.Background(), directory.DefaultPBX, id)
					if r.State != syncer.StateSucceeded || r.Created != size {
						b.Fatalf("run: state %s created %d error %q", r.State, r.Created, r.Error)
					}
					rss := peakRSS()
					_, by := simStats(b, simURL)
					b.ReportMetric(elapsed.Seconds(), "s/sync")
					b.ReportMetric(float64(rss)/(1<<20), "peak-rss-MiB")
					b.ReportMetric(float64(goPeak)/(1<<20), "go-runtime-MiB")
					b.ReportMetric(float64(goPeak)/(1<<20), "go-runtime-MiB")
					b.ReportMetric(float64(graphRequests(by)), "graph-requests")
					b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
					b.ReportMetric(float64(peak-min(peak, base))/(1<<20), "sync-heap-MiB")
					b.StartTimer()
				}
			})
		}
	}
}

// BenchmarkIncremental measures a delta run after 100 changes in a
// 100,000-user tenant (20 ms simulated latency).
func BenchmarkIncremental(b *testing.B) {
	for _, lat := range []time.Duration{0, 20 * time.Millisecond} {
		b.Run(fmt.Sprintf("users=100000/changes=100/latency=%s", lat), func(b *testing.B) {
			simURL, c := simProcess(b, 100_000, lat)
			st := openStore(b, benchDB(b), 200_000)
			keys, _ := secret.NewKeyring(secret.NewKey())
			eng := &syncer.Engine{Store: st, PBX: &pbx.Service{Store: st, Keys: keys, Logger: testLogger(b)}, Graph: &source{c: c}}
			s := syncer.DefaultUserSettings()
			s.Enabled = true
			if _, _, err := eng.SaveUserSettings(context.Background(), directory.DefaultPBX, "bench", s); err != nil {
				b.Fatal(err)
			}
			eng.Wait()
			var users []string
			for u, err := range c.ListUsers(context.Background(), graph.ListOptions{Top: 999, Select: []string{"id"}}) {
				if err != nil {
					b.Fatal(err)
				}
				users = append(users, u.ID)
			}
			round := 0
			for b.Loop() {
				b.StopTimer()
				round++
				for i := range 100 {
					id := users[(round*100+i)%len(users)]
					if err := c.Do(context.Background(), http.MethodPatch, "/users/"+id, nil, map[string]any{"jobTitle": fmt.Sprintf("Title %d-%d", round, i)}, nil); err != nil {
						b.Fatal(err)
					}
				}
				resetSimStats(b, simURL)
				base := liveHeap()
				debug.FreeOSMemory()
				resetPeakRSS()
				b.StartTimer()
				start := time.Now()
				stop := heapPeak()
				r, err := eng.Run(context.Background(), directory.DefaultPBX, syncer.RunOptions{})
				peak := stop()
				elapsed := time.Since(start)
				b.StopTimer()
				if err != nil || r.State != syncer.StateSucceeded || r.Read != "delta" || r.Updated != 100 {
					b.Fatalf("run: %v state %s read %s updated %d error %q", err, r.State, r.Read, r.Updated, r.Error)
				}
				rss := peakRSS()
				_, by := simStats(b, simURL)
				b.ReportMetric(elapsed.Seconds(), "s/sync")
				b.ReportMetric(float64(rss)/(1<<20), "peak-rss-MiB")
				b.ReportMetric(float64(goPeak)/(1<<20), "go-runtime-MiB")
				b.ReportMetric(float64(graphRequests(by)), "graph-requests")
				b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
				b.ReportMetric(float64(peak-min(peak, base))/(1<<20), "sync-heap-MiB")
				b.StartTimer()
			}
		})
	}
}

// benchDB is the benchmarks' database: a fresh SQLite file, or a fresh
// PostgreSQL database when BENCH_POSTGRES=1 (with TEST_DATABASE_URL set).
func benchDB(b testing.TB) string {
	if os.Getenv("BENCH_POSTGRES") == "1" {
		return pgDatabase(b)
	}
	return ""
}
