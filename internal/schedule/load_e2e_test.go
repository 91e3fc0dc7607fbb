//go:build e2e

package schedule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestWebhookLoad posts 20,000 notifications in a burst to the webhook over
// loopback (16 concurrent senders, half of them forged) and reports the
// acknowledgement latency; every genuine notification must be accepted and
// the rare PBX among the flood must still get its sync.
//
//	go test -tags e2e -run WebhookLoad -v ./internal/schedule
func TestWebhookLoad(t *testing.T) {
	r := &fakeRunner{}
	s := newWebhookService(t, r, "a", "b")
	s.Debounce = 200 * time.Millisecond
	addSub(t, s, "a", "sub-a", "state-a")
	addSub(t, s, "b", "sub-b", "state-b")
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	defer func() { cancel(); <-done }()

	const total, senders = 20_000, 16
	body := func(i int) (string, bool) {
		switch {
		case i%2000 == 1000:
			return `{"value":[` + notification("sub-b", "state-b") + `]}`, true
		case i%2 == 0:
			return `{"value":[` + notification("sub-a", "forged-"+strings.Repeat("x", i%7)) + `]}`, false
		default:
			return `{"value":[` + notification("sub-a", "state-a") + `]}`, true
		}
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
	if st.Accepted != int64(genuine) || st.Rejected != int64(total-genuine) {
		t.Errorf("stats %+v, want %d accepted", st, genuine)
	}
	deadline := time.Now().Add(5 * time.Second)
	for r.count("b", ReasonChange) == 0 || r.count("a", ReasonChange) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the genuine changes did not all lead to a sync: %d for a, %d for b", r.count("a", ReasonChange), r.count("b", ReasonChange))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if p(0.99) > 100*time.Millisecond {
		t.Errorf("p99 acknowledgement %s, want well under Graph's 3 s", p(0.99))
	}
}
