//go:build e2e

package syncer_test

import (
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/sim"
	"github.com/switchboard-pbx/switchboard/internal/syncer"
)

// Throttling (429 with Retry-After) and 503s are waited out: the run completes.
func TestThrottledReadCompletes(t *testing.T) {
	backends(t, func(t *testing.T, db func(testing.TB) string) {
		b := newBundle(t, opts{users: 3000, seed: 11, db: db(t)})
		b.tenant.SetFaults(sim.Faults{Throttle: 0.2, Unavailable: 0.2, RetryAfter: time.Second, Routes: []string{"GET /v1.0/users/delta"}})
		id := b.save(defaults())
		r := b.mustSucceed(must(b.eng.GetRun(t.Context(), "default", id)))
		if r.Created != 3000 {
			t.Fatalf("created %d", r.Created)
		}
		if st := b.tenant.Stats(); st.ByEndpoint["fault 429"]+st.ByEndpoint["fault 503"] == 0 {
			t.Fatalf("no fault was injected: %v", st.ByEndpoint)
		}
		// A later delta round under throttling still advances correctly.
		b.patchUser(b.tenant.UserList()[10].ID, map[string]any{"jobTitle": "Throttled"})
		r = b.mustSucceed(b.run(syncer.RunOptions{}))
		if r.Read != "delta" || r.Updated != 1 {
			t.Fatalf("delta under throttling: %+v", r)
		}
	})
}

// A 20,000-user tenant at 20 ms latency: full sync, then 100 changes by delta.
func TestLargeTenantFullThenDelta(t *testing.T) {
	backends(t, func(t *testing.T, db func(testing.TB) string) {
		b := newBundle(t, opts{users: 20000, latency: 20 * time.Millisecond, capacity: 50000, db: db(t)})
		id := b.save(defaults())
		r := b.mustSucceed(must(b.eng.GetRun(t.Context(), "default", id)))
		if r.Created != 20000 {
			t.Fatalf("created %d", r.Created)
		}
		users := b.tenant.UserList()
		for i := range 100 {
			b.patchUser(users[i*7].ID, map[string]any{"jobTitle": "Changed"})
		}
		b.tenant.ResetStats()
		start := time.Now()
		r = b.mustSucceed(b.run(syncer.RunOptions{}))
		if r.Read != "delta" || r.Updated != 100 || time.Since(start) > 2*time.Second {
			t.Fatalf("delta run: %s, read %s updated %d", time.Since(start), r.Read, r.Updated)
		}
		if n := b.tenant.Stats().ByEndpoint["GET /v1.0/users/delta"]; n > 3 {
			t.Fatalf("delta run made %d delta requests", n)
		}
	})
}
