//go:build e2e

package presence_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/presence"
	"github.com/switchboard-pbx/switchboard/internal/sim"
)

// TestLoad10000 syncs the presence of 10,000 users with the production
// defaults (650 on the subscription, the rest polled at the computed
// interval) against a tenant enforcing Graph's limits, changes the Teams
// presence of users on both paths, and reports the propagation latency and
// the Graph requests used.
//
//	go test -tags e2e -run Load10000 -v ./internal/presence/
func TestLoad10000(t *testing.T) {
	const users = 10000
	var mu sync.Mutex
	applied := map[string]time.Time{} // extension id -> when its presence changed
	e := newEnv(t, opts{users: users + 1, tune: func(s *presence.Service) {
		s.MinPollInterval, s.Tick = 0, 50*time.Millisecond
		s.Applied = func(_ context.Context, _ string, x *directory.Extension, _ string) {
			mu.Lock()
			applied[x.ID] = time.Now()
			mu.Unlock()
		}
	}})
	e.tenant.SetFaults(sim.Faults{RealLimits: true})
	start := time.Now()
	e.mustAPI("PUT", "/api/v1/integration/presence-sync", map[string]any{"enabled": true})
	ids := make([]string, 0, users)
	for _, u := range e.users {
		ids = append(ids, e.exts[u.ID])
	}
	e.mustAPI("PUT", "/api/v1/presence-sync/extensions", map[string]any{"extensionIds": ids, "enabled": true})
	t.Logf("bulk enable of %d extensions: %v", len(ids), time.Since(start))
	e.run()
	st := e.waitStatus(60*time.Second, func(st presence.Status) bool { return st.NotificationUsers == 650 && st.PollingUsers == users-650 })
	interval := time.Duration(st.PollIntervalSeconds * float64(time.Second))
	t.Logf("paths: %d notification, %d polling, interval %v, first round after %v", st.NotificationUsers, st.PollingUsers, interval, time.Since(start))

	path := map[string]string{}
	for _, u := range st.Users {
		path[u.EntraID] = u.Path
	}
	var notif, polled []string
	for _, u := range e.users {
		if path[u.ID] == presence.PathNotification {
			notif = append(notif, u.ID)
		} else {
			polled = append(polled, u.ID)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	r.Shuffle(len(notif), func(i, j int) { notif[i], notif[j] = notif[j], notif[i] })
	r.Shuffle(len(polled), func(i, j int) { polled[i], polled[j] = polled[j], polled[i] })
	changes := append(append([]string(nil), notif[:100]...), polled[:300]...)
	r.Shuffle(len(changes), func(i, j int) { changes[i], changes[j] = changes[j], changes[i] })

	e.tenant.ResetStats()
	window := time.Now()
	changed := map[string]time.Time{}
	for _, u := range changes { // 400 changes spread over about 20 s
		changed[u] = time.Now()
		if err := e.tenant.SetTeamsPresence(u, "DoNotDisturb", "DoNotDisturb"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond) // pacing the load generator, not waiting for a result
	}
	deadline := time.Now().Add(2*interval + 5*time.Second)
	for {
		mu.Lock()
		done := 0
		for _, u := range changes {
			if at, ok := applied[e.exts[u]]; ok && at.After(changed[u]) {
				done++
			}
		}
		mu.Unlock()
		if done == len(changes) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d changes reached their extensions", done, len(changes))
		}
		time.Sleep(50 * time.Millisecond)
	}
	elapsed := time.Since(window)
	lat := func(us []string) (p50, p99, maxv time.Duration) {
		var ds []time.Duration
		mu.Lock()
		for _, u := range us {
			ds = append(ds, applied[e.exts[u]].Sub(changed[u]))
		}
		mu.Unlock()
		slices.Sort(ds)
		return ds[len(ds)/2], ds[len(ds)*99/100], ds[len(ds)-1]
	}
	n50, n99, nmax := lat(notif[:100])
	p50, p99, pmax := lat(polled[:300])
	t.Logf("notification path (100 changes): p50 %v p99 %v max %v", n50, n99, nmax)
	t.Logf("polling path (300 changes, interval %v): p50 %v p99 %v max %v", interval, p50, p99, pmax)
	if n99 > 2*time.Second {
		t.Errorf("notification p99 %v over 2 s", n99)
	}
	if pmax > interval+2*time.Second {
		t.Errorf("polling max %v over one interval (%v) plus a round's work", pmax, interval)
	}
	stats := e.tenant.Stats()
	reqs := stats.ByEndpoint["POST /v1.0/communications/getPresencesByUserId"] + stats.ByEndpoint["GET /v1.0/users/{id}/presence"]
	per30 := float64(reqs) * float64(30*time.Second) / float64(elapsed)
	t.Logf("Graph over %v: %d presence requests (%.1f per 30 s; limit 1,500), throttled %d, all requests %v",
		elapsed.Round(time.Second), reqs, per30, stats.ByEndpoint["limit 429"], stats.ByEndpoint)
	if per30 > 150 || stats.ByEndpoint["limit 429"] > 0 {
		t.Errorf("presence requests %.1f per 30 s, throttled %d", per30, stats.ByEndpoint["limit 429"])
	}
}
