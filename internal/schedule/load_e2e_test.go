//go:build e2e

package schedule

import (
	"database/sql"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/jobs"
	"github.com/switchboard-pbx/switchboard/internal/storetest"
)

// TestWebhookLoad posts 20,000 notifications in a burst to the webhook over
// loopback (16 concurrent senders, half of them forged) and reports the
// acknowledgement latency; every genuine notification must be accepted (202
// only after its sync is queued) and every PBX, the rare one among the flood
// too, must get its sync. Three runners: a fake (the handler alone), the
// River job queue on PostgreSQL with 2 PBXs (most notifications fall into a
// window whose job is already inserted), and with 1,000 PBXs (a database
// insert for each PBX's first notification of each window).
//
//	eval "$(bash .ci/start-postgres.sh)"; go test -tags e2e -run WebhookLoad -v ./internal/schedule
func TestWebhookLoad(t *testing.T) {
	t.Run("fake", func(t *testing.T) {
		r := &fakeRunner{}
		ids := webhookLoad(t, r, 2)
		for _, id := range ids {
			if r.count(id, ReasonChange) == 0 {
				t.Errorf("%s: no sync asked for", id)
			}
		}
	})
	for _, n := range []int{2, 1000} {
		t.Run(fmt.Sprintf("river-postgres-%d-pbxs", n), func(t *testing.T) {
			url := storetest.PostgresDB(t, "switchboard_schedule_")
			r, err := jobs.OpenPostgres(t.Context(), url, jobs.Config{ID: "load", Window: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			ids := webhookLoad(t, r, n)
			db, err := sql.Open("pgx", url)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var jobsN, pbxs int
			if err := db.QueryRowContext(t.Context(), `SELECT count(*), count(DISTINCT args->>'pbx') FROM river_job WHERE kind = 'sync'`).Scan(&jobsN, &pbxs); err != nil {
				t.Fatal(err)
			}
			t.Logf("%d sync jobs in the queue for %d PBXs", jobsN, pbxs)
			if pbxs != len(ids) {
				t.Errorf("sync jobs for %d PBXs, want %d", pbxs, len(ids))
			}
		})
	}
}

// webhookLoad runs the burst against a Service with n PBXs and the runner;
// it returns the PBX ids.
func webhookLoad(t *testing.T, runner Runner, n int) []string {
	var ps []directory.PBX
	var ids []string
	for i := range n {
		id := fmt.Sprintf("p%04d", i)
		ids = append(ids, id)
		ps = append(ps, directory.PBX{ID: id, TimeZone: "UTC"})
	}
	s := &Service{Store: newMemStore(ps...), Integration: newFakeIntegration(ids...), Runner: runner, Logger: testLogger(t),
		PublicURL: "https://pbx.example.com", PollInterval: 24 * time.Hour}
	s.init()
	for _, id := range ids {
		addSub(t, s, id, "sub-"+id, "state-"+id)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()

	const total, senders = 20_000, 16
	body := func(i int) (string, bool) {
		id := ids[(i/2)%n]
		switch {
		case n == 2 && i%2000 == 1000:
			return `{"value":[` + notification("sub-"+ids[1], "state-"+ids[1]) + `]}`, true
		case i%2 == 0:
			return `{"value":[` + notification("sub-"+ids[0], "forged-"+strings.Repeat("x", i%7)) + `]}`, false
		case n == 2:
			id = ids[0]
		}
		return `{"value":[` + notification("sub-"+id, "state-"+id) + `]}`, true
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: senders}}
	lat := make([]time.Duration, total)
	var wg sync.WaitGroup
	var mu sync.Mutex
	genuine, bad := 0, 0
	start := time.Now()
	for w := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < total; i += senders {
				b, ok := body(i)
				t0 := time.Now()
				res, err := client.Post(srv.URL+WebhookPath, "application/json", strings.NewReader(b))
				if err != nil {
					t.Error(err)
					return
				}
				res.Body.Close()
				lat[i] = time.Since(t0)
				want := http.StatusForbidden
				if ok {
					want = http.StatusAccepted
				}
				mu.Lock()
				if ok {
					genuine++
				}
				if res.StatusCode != want {
					bad++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(lat)
	p := func(q float64) time.Duration { return lat[int(q*float64(total-1))] }
	t.Logf("%d notifications (%d genuine) in %s (%.0f/s); ack latency p50 %s p99 %s max %s",
		total, genuine, elapsed.Round(time.Millisecond), total/elapsed.Seconds(), p(0.50), p(0.99), lat[total-1])
	if bad != 0 {
		t.Errorf("%d answers with the wrong status", bad)
	}
	st := s.Stats()
	if st.Accepted != int64(genuine) || st.Rejected != int64(total-genuine) || st.Unqueued != 0 {
		t.Errorf("stats %+v, want %d accepted", st, genuine)
	}
	if p(0.99) > 100*time.Millisecond {
		t.Errorf("p99 acknowledgement %s, want well under Graph's 3 s", p(0.99))
	}
	return ids
}
