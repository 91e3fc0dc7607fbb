package syncer_test

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/graph"
	"github.com/switchboard-pbx/switchboard/internal/pbx"
	"github.com/switchboard-pbx/switchboard/internal/secret"
	"github.com/switchboard-pbx/switchboard/internal/syncer"
)

// tenants gives every PBX its own Graph client (so its own per-tenant
// request gate, as separate Entra tenants would have); all of them talk to
// one simulated tenant. Until on is set every PBX reads as unreachable.
type tenants struct {
	on      atomic.Bool
	clients map[string]*graph.Client
}

func (t *tenants) AppClient(_ context.Context, pbx string) (*graph.Client, error) {
	if !t.on.Load() {
		return nil, errors.New("bench: tenant not reachable yet")
	}
	return t.clients[pbx], nil
}

// BenchmarkManyPBXs measures 200 PBXs of 500 users each whose scheduled
// runs fall due at the same moment, run by one instance with bounded
// concurrency (the schedule's per-instance setting; 4 is its default): the
// time until every PBX is synced, Graph requests, and peak memory.
func BenchmarkManyPBXs(b *testing.B) {
	const pbxs, users = 200, 500
	for _, lat := range []time.Duration{20 * time.Millisecond} {
		for _, conc := range []int{4, 16} {
			b.Run(fmt.Sprintf("pbxs=%d/users=%d/latency=%s/concurrency=%d", pbxs, users, lat, conc), func(b *testing.B) {
				simURL, _ := simProcess(b, users, lat)
				for b.Loop() {
					b.StopTimer()
					st := openStore(b, benchDB(b), 1000)
					keys, _ := secret.NewKeyring(secret.NewKey())
					src := &tenants{clients: map[string]*graph.Client{}}
					eng := &syncer.Engine{Store: st, PBX: &pbx.Service{Store: st, Keys: keys, Logger: testLogger(b)}, Graph: src}
					ctx := context.Background()
					ids := make([]string, pbxs)
					s := syncer.DefaultUserSettings()
					s.Enabled = true
					for i := range ids {
						ids[i] = fmt.Sprintf("pbx-%03d", i)
						if _, err := st.EnsurePBX(ctx, directory.PBX{ID: ids[i], MaxExtensions: 1000}); err != nil {
							b.Fatal(err)
						}
						c, err := graph.New(graph.Config{GraphURL: simURL, LoginURL: simURL, TenantID: tenantID, ClientID: clientID, ClientSecret: clientSecret})
						if err != nil {
							b.Fatal(err)
						}
						src.clients[ids[i]] = c
						// Switching user sync on starts an initial run; with the
						// tenant unreachable it fails at once and leaves nothing.
						if _, _, err := eng.SaveUserSettings(ctx, ids[i], "bench", s); err != nil {
							b.Fatal(err)
						}
					}
					eng.Wait()
					src.on.Store(true)
					base := liveHeap()
					resetSimStats(b, simURL)
					debug.FreeOSMemory()
					resetPeakRSS()
					b.StartTimer()
					start := time.Now()
					stop := heapPeak()
					// Every PBX is due now; conc workers take them in turn,
					// as the schedule's per-instance semaphore does.
					work := make(chan string)
					var wg sync.WaitGroup
					var failed atomic.Int64
					var slowest atomic.Int64
					for range conc {
						wg.Go(func() {
							for id := range work {
								t0 := time.Now()
								r, err := eng.Run(ctx, id, syncer.RunOptions{Trigger: "schedule"})
								if err != nil || r.State != syncer.StateSucceeded || r.Created != users {
									failed.Add(1)
								}
								if d := int64(time.Since(t0)); d > slowest.Load() {
									slowest.Store(d)
								}
							}
						})
					}
					for _, id := range ids {
						work <- id
					}
					close(work)
					wg.Wait()
					peak := stop()
					elapsed := time.Since(start)
					b.StopTimer()
					if n := failed.Load(); n > 0 {
						b.Fatalf("%d of %d runs did not create %d extensions", n, pbxs, users)
					}
					rss := peakRSS()
					_, by := simStats(b, simURL)
					b.ReportMetric(elapsed.Seconds(), "s/all-pbxs")
					b.ReportMetric(time.Duration(slowest.Load()).Seconds(), "s/slowest-run")
					b.ReportMetric(float64(pbxs*users)/elapsed.Seconds(), "users/s")
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
}
