package syncer_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/graph"
	"github.com/switchboard-pbx/switchboard/internal/sim"
	"github.com/switchboard-pbx/switchboard/internal/syncer"
)

// fastClient points the bundle's engine at a Graph client for the tenant
// that retries without waiting (Retry-After is honoured in count, not in
// time), behind handler wrap (nil: the tenant as is).
func (b *bundle) fastClient(wrap func(http.Handler) http.Handler) {
	b.t.Helper()
	h := b.tenant.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	b.t.Cleanup(srv.Close)
	c, err := graph.New(graph.Config{GraphURL: srv.URL, LoginURL: srv.URL, TenantID: tenantID, ClientID: clientID,
		ClientSecret: clientSecret, MaxRetries: 3, MaxRetryAfter: time.Minute,
		Sleep: func(context.Context, time.Duration) error { return nil }})
	if err != nil {
		b.t.Fatal(err)
	}
	b.src.c = c
}

// failAfter answers Graph's user delta requests with status from the nth
// on (pages before it are served): a tenant that revokes the app mid-read.
func failAfter(n int32, status int, code string) func(http.Handler) http.Handler {
	var seen atomic.Int32
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/users/delta") && seen.Add(1) >= n {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(status)
				fmt.Fprintf(w, `{"error":{"code":%q,"message":"refused by the test","innerError":{"request-id":"r-1"}}}`, code)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// A Graph failure that outlasts the client's retries is classified by what
// Graph answered: throttled (with Graph's Retry-After) or unauthorized; the
// run writes nothing and the next healthy run completes.
func TestGraphFailureClassified(t *testing.T) {
	cases := []struct {
		name       string
		faults     sim.Faults
		wrap       func(http.Handler) http.Handler
		code       string
		retryAfter time.Duration
	}{
		{name: "429 with Retry-After", faults: sim.Faults{Throttle: 1, RetryAfter: 7 * time.Second, Routes: []string{"GET /v1.0/users/delta"}},
			code: "throttled", retryAfter: 7 * time.Second},
		{name: "429 beyond MaxRetryAfter", faults: sim.Faults{Throttle: 1, RetryAfter: 10 * time.Minute, Routes: []string{"GET /v1.0/users/delta"}},
			code: "throttled", retryAfter: 10 * time.Minute},
		{name: "503 with Retry-After", faults: sim.Faults{Unavailable: 1, Routes: []string{"GET /v1.0/users/delta"}},
			code: "throttled", retryAfter: time.Second},
		{name: "429 without Retry-After mid-read", wrap: failAfter(2, http.StatusTooManyRequests, "TooManyRequests"),
			code: "throttled", retryAfter: 0},
		{name: "403 mid-read", wrap: failAfter(2, http.StatusForbidden, "Authorization_RequestDenied"), code: "unauthorized"},
		{name: "401 mid-read", wrap: failAfter(2, http.StatusUnauthorized, "InvalidAuthenticationToken"), code: "unauthorized"},
		{name: "503 without Retry-After", wrap: failAfter(1, http.StatusServiceUnavailable, "serviceNotAvailable"), code: "read_failed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := newBundle(t, opts{users: 1000}) // 2 delta pages (999 a page)
			b.fastClient(tc.wrap)
			b.tenant.SetFaults(tc.faults)
			id := b.save(defaults())
			r := must(b.eng.GetRun(t.Context(), "default", id))
			if r.State != syncer.StateFailed || r.ErrorCode != tc.code || r.RetryAfter != tc.retryAfter {
				t.Fatalf("run: state %s, code %q, retryAfter %v, error %q; want failed, %q, %v",
					r.State, r.ErrorCode, r.RetryAfter, r.Error, tc.code, tc.retryAfter)
			}
			if tc.wrap != nil && tc.code != "read_failed" && !strings.Contains(r.Error, "refused by the test") {
				t.Fatalf("the error does not carry Graph's answer: %q", r.Error)
			}
			if n := len(b.extensions()); n != 0 {
				t.Fatalf("a failed read wrote %d extensions", n)
			}
			// Graph recovers: the next run completes.
			b.tenant.SetFaults(sim.Faults{})
			b.fastClient(nil)
			r = b.mustSucceed(b.run(syncer.RunOptions{}))
			if r.ErrorCode != "" || r.RetryAfter != 0 || r.Created != 1000 {
				t.Fatalf("recovery run: code %q, retryAfter %v, created %d", r.ErrorCode, r.RetryAfter, r.Created)
			}
		})
	}
}
