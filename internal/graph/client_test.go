package graph

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRetryAfterHonoured(t *testing.T) {
	for _, tc := range []struct {
		header string
		want   time.Duration
	}{
		{"2.128", 2128 * time.Millisecond},
		{"7", 7 * time.Second},
	} {
		t.Run(tc.header, func(t *testing.T) {
			f := newFakeTenant(t)
			var calls atomic.Int32
			f.mux.HandleFunc("GET /v1.0/users/u1", func(w http.ResponseWriter, r *http.Request) {
				if calls.Add(1) <= 2 {
					w.Header().Set("Retry-After", tc.header)
					graphError(w, 429, "TooManyRequests", "Please retry again later.")
					return
				}
				writeJSON(w, 200, map[string]string{"id": "u1"})
			})
			c, s := newTestClient(t, f)
			u, err := c.GetUser(t.Context(), "u1", nil)
			if err != nil {
				t.Fatal(err)
			}
			eq(t, "id", u.ID, "u1")
			if got := s.got(); !slices.Equal(got, []time.Duration{tc.want, tc.want}) {
				t.Errorf("sleeps = %v, want 2x %v", got, tc.want)
			}
		})
	}
}

func TestThrottledExhaustedReturnsErrorWithRetryAfter(t *testing.T) {
	f := newFakeTenant(t)
	var calls atomic.Int32
	f.mux.HandleFunc("GET /v1.0/users/u1", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Retry-After", "3")
		graphError(w, 429, "TooManyRequests", "slow down")
	})
	c, s := newTestClient(t, f, func(c *Config) { c.MaxRetries = 2 })
	_, err := c.GetUser(t.Context(), "u1", nil)
	var ge *Error
	if !errors.As(err, &ge) || !errors.Is(err, ErrThrottled) {
		t.Fatalf("err = %v", err)
	}
	eq(t, "retryAfter", ge.RetryAfter, 3*time.Second)
	eq(t, "calls", calls.Load(), 3)
	eq(t, "sleeps", len(s.got()), 2)
}

func TestRetryAfterTooLongIsReturnedNotWaited(t *testing.T) {
	f := newFakeTenant(t)
	f.mux.HandleFunc("GET /v1.0/users/u1", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "600")
		graphError(w, 503, "ServiceUnavailable", "maintenance")
	})
	c, s := newTestClient(t, f)
	_, err := c.GetUser(t.Context(), "u1", nil)
	var ge *Error
	if !errors.As(err, &ge) || ge.RetryAfter != 10*time.Minute {
		t.Fatalf("err = %v", err)
	}
	eq(t, "sleeps", len(s.got()), 0)
}

func Test503RetriedWithBackoff(t *testing.T) {
	f := newFakeTenant(t)
	var calls atomic.Int32
	f.mux.HandleFunc("GET /v1.0/users/u1", func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			graphError(w, 503, "serviceNotAvailable", "try later")
			return
		}
		writeJSON(w, 200, map[string]string{"id": "u1"})
	})
	c, s := newTestClient(t, f)
	if _, err := c.GetUser(t.Context(), "u1", nil); err != nil {
		t.Fatal(err)
	}
	got := s.got()
	if len(got) != 1 || got[0] < 0 || got[0] > 500*time.Millisecond {
		t.Errorf("sleeps = %v, want one in [0, 500ms]", got)
	}
}

func Test5xxBackoffBounded(t *testing.T) {
	f := newFakeTenant(t)
	var calls atomic.Int32
	f.mux.HandleFunc("GET /v1.0/users/u1", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		graphError(w, 500, "generalException", "boom")
	})
	c, s := newTestClient(t, f, func(c *Config) {
		c.MaxRetries = 6
		c.BackoffBase = 100 * time.Millisecond
		c.BackoffMax = 1 * time.Second
	})
	_, err := c.GetUser(t.Context(), "u1", nil)
	var ge *Error
	if !errors.As(err, &ge) || ge.Status != 500 || ge.Code != "generalException" || ge.RequestID != "req-generalException" {
		t.Fatalf("err = %v", err)
	}
	eq(t, "attempts", calls.Load(), 7)
	got := s.got()
	eq(t, "sleeps", len(got), 6)
	for i, d := range got {
		limit := min(time.Second, 100*time.Millisecond<<i)
		if d < 0 || d > limit {
			t.Errorf("sleep %d = %v, want within [0, %v]", i, d, limit)
		}
	}
}

func TestNotRetried4xx(t *testing.T) {
	f := newFakeTenant(t)
	var calls atomic.Int32
	f.mux.HandleFunc("GET /v1.0/users/missing", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		graphError(w, 404, "Request_ResourceNotFound", "Resource 'missing' does not exist")
	})
	f.mux.HandleFunc("GET /v1.0/users/secret", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		graphError(w, 403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
	})
	c, s := newTestClient(t, f)
	_, err := c.GetUser(t.Context(), "missing", nil)
	if !errors.Is(err, ErrNotFound) || errors.Is(err, ErrForbidden) {
		t.Errorf("err = %v, want ErrNotFound", err)
	}
	_, err = c.GetUser(t.Context(), "secret", nil)
	if !errors.Is(err, ErrForbidden) {
		t.Errorf("err = %v, want ErrForbidden", err)
	}
	eq(t, "calls", calls.Load(), 2)
	eq(t, "sleeps", len(s.got()), 0)
}

// Network tests use POST: Go's transport itself silently retries idempotent requests
// once on a reused connection, which would hide the client's own retry.
func TestNetworkErrorRetried(t *testing.T) {
	f := newFakeTenant(t)
	var calls atomic.Int32
	f.mux.HandleFunc("POST /v1.0/communications/getPresencesByUserId", func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			// Close the connection without an answer (the client sees EOF / reset).
			conn, _, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			conn.Close()
			return
		}
		writeJSON(w, 200, map[string]any{"value": []map[string]string{{"id": "u1", "availability": "Busy"}}})
	})
	c, s := newTestClient(t, f)
	ps, err := c.GetPresencesByUserID(t.Context(), []string{"u1"})
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "presence", ps[0].Availability, "Busy")
	eq(t, "calls", calls.Load(), 2)
	eq(t, "sleeps", len(s.got()), 1)
}

func TestNetworkErrorExhausted(t *testing.T) {
	f := newFakeTenant(t)
	var calls atomic.Int32
	f.mux.HandleFunc("POST /v1.0/communications/getPresencesByUserId", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close()
	})
	c, s := newTestClient(t, f, func(c *Config) { c.MaxRetries = 2 })
	_, err := c.GetPresencesByUserID(t.Context(), []string{"u1"})
	if err == nil {
		t.Fatal("want error")
	}
	var ge *Error
	if errors.As(err, &ge) {
		t.Errorf("transport failure reported as Graph error: %v", err)
	}
	eq(t, "calls", calls.Load(), 3)
	eq(t, "sleeps", len(s.got()), 2)
}

func TestCancelDuringBackoffReturnsPromptly(t *testing.T) {
	f := newFakeTenant(t)
	reached := make(chan struct{}, 1)
	f.mux.HandleFunc("GET /v1.0/users/u1", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "60")
		graphError(w, 429, "TooManyRequests", "later")
		select {
		case reached <- struct{}{}:
		default:
		}
	})
	cfg := testConfig(t, f) // real Sleep
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := c.GetUser(ctx, "u1", nil)
		done <- err
	}()
	<-reached
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("took %v after cancel", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("did not return after cancel")
	}
}

func TestCancelDuringRequestReturnsPromptly(t *testing.T) {
	f := newFakeTenant(t)
	arrived := make(chan struct{})
	release := make(chan struct{})
	defer close(release)
	f.mux.HandleFunc("GET /v1.0/users/u1", func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	c, s := newTestClient(t, f)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := c.GetUser(ctx, "u1", nil)
		done <- err
	}()
	<-arrived
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("did not return after cancel")
	}
	eq(t, "no retry after cancel", len(s.got()), 0)
}

func TestCancelledBeforeStart(t *testing.T) {
	f := newFakeTenant(t)
	c, _ := newTestClient(t, f)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := c.GetUser(ctx, "u1", nil)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v", err)
	}
	eq(t, "no token call", f.tokenCalls.Load(), 0)
}

func Test401RefreshesTokenOnce(t *testing.T) {
	f := newFakeTenant(t)
	var calls atomic.Int32
	f.mux.HandleFunc("GET /v1.0/users/u1", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Header.Get("Authorization") == "Bearer tok-1" {
			graphError(w, 401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid.")
			return
		}
		writeJSON(w, 200, map[string]string{"id": "u1"})
	})
	f.mux.HandleFunc("GET /v1.0/users/never", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		graphError(w, 401, "InvalidAuthenticationToken", "nope")
	})
	c, s := newTestClient(t, f)
	if _, err := c.GetUser(t.Context(), "u1", nil); err != nil {
		t.Fatal(err)
	}
	eq(t, "token calls", f.tokenCalls.Load(), 2)
	eq(t, "graph calls", calls.Load(), 2)
	eq(t, "sleeps", len(s.got()), 0)

	// Always 401: one refresh, then the error.
	calls.Store(0)
	_, err := c.GetUser(t.Context(), "never", nil)
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("err = %v", err)
	}
	eq(t, "token calls", f.tokenCalls.Load(), 3)
	eq(t, "graph calls", calls.Load(), 2)
}

func TestAppTokenCachedAndRefreshedEarly(t *testing.T) {
	f := newFakeTenant(t)
	f.mux.HandleFunc("GET /v1.0/users/u1", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]string{"id": "u1", "displayName": r.Header.Get("Authorization")})
	})
	clk := &fakeClock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	c, _ := newTestClient(t, f, func(c *Config) { c.Now = clk.Now })
	get := func() string {
		u, err := c.GetUser(t.Context(), "u1", nil)
		if err != nil {
			t.Fatal(err)
		}
		return u.DisplayName
	}
	eq(t, "first", get(), "Bearer tok-1")
	eq(t, "cached", get(), "Bearer tok-1")
	clk.Advance(54 * time.Minute) // 3599 s token: still more than 5 min left
	eq(t, "still cached", get(), "Bearer tok-1")
	clk.Advance(90 * time.Second) // under 5 min left: renew early
	eq(t, "renewed", get(), "Bearer tok-2")
	eq(t, "token calls", f.tokenCalls.Load(), 2)
}

func TestTokenSingleFlight(t *testing.T) {
	f := newFakeTenant(t)
	f.mux.HandleFunc("GET /v1.0/users/u1", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]string{"id": "u1"})
	})
	c, _ := newTestClient(t, f)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := c.GetUser(t.Context(), "u1", nil); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	eq(t, "token calls", f.tokenCalls.Load(), 1)
}

func TestTokenEndpoint5xxRetried(t *testing.T) {
	f := newFakeTenant(t)
	var n atomic.Int32
	f.tokenHandler = func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			w.WriteHeader(503)
			fmt.Fprint(w, `{"error":"temporarily_unavailable","error_description":"AADSTS90055: busy"}`)
			return
		}
		writeJSON(w, 200, map[string]any{"token_type": "Bearer", "expires_in": 3599, "access_token": "ok"})
	}
	c, s := newTestClient(t, f)
	if err := c.CheckCredentials(t.Context()); err != nil {
		t.Fatal(err)
	}
	eq(t, "sleeps", len(s.got()), 1)
}

func TestConcurrencyLimit(t *testing.T) {
	f := newFakeTenant(t)
	var inFlight, maxSeen atomic.Int32
	release := make(chan struct{})
	f.mux.HandleFunc("GET /v1.0/users/{id}", func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		for {
			m := maxSeen.Load()
			if n <= m || maxSeen.CompareAndSwap(m, n) {
				break
			}
		}
		<-release
		inFlight.Add(-1)
		writeJSON(w, 200, map[string]string{"id": r.PathValue("id")})
	})
	c, _ := newTestClient(t, f, func(c *Config) { c.MaxConcurrency = 2 })
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			if _, err := c.GetUser(t.Context(), fmt.Sprint(i), nil); err != nil {
				t.Error(err)
			}
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for inFlight.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // polling for a condition, with a deadline
	}
	eq(t, "in flight", inFlight.Load(), 2)
	close(release)
	wg.Wait()
	eq(t, "max in flight", maxSeen.Load(), 2)
}

func TestForeignNextLinkRefused(t *testing.T) {
	f := newFakeTenant(t)
	f.mux.HandleFunc("GET /v1.0/users", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"value": []any{map[string]string{"id": "a"}},
			"@odata.nextLink": "https://evil.example.com/v1.0/users?$skiptoken=x"})
	})
	c, _ := newTestClient(t, f)
	var n int
	var gotErr error
	for _, err := range c.ListUsers(t.Context(), ListOptions{}) {
		if err != nil {
			gotErr = err
			break
		}
		n++
	}
	eq(t, "items", n, 1)
	if !errors.Is(gotErr, ErrForeignLink) {
		t.Errorf("err = %v", gotErr)
	}
}

func TestQueryEncoding(t *testing.T) {
	q := url.Values{"$select": {"id,displayName"}, "$filter": {"startswith(displayName,'a b')"}, "$search": {`"displayName:wa"`}}
	got := encodeQuery(q)
	want := `$filter=startswith%28displayName%2C%27a%20b%27%29&$search=%22displayName%3Awa%22&$select=id%2CdisplayName`
	eq(t, "query", got, want)
	// Round trip through the standard parser (what Graph and the simulator do).
	back, err := url.ParseQuery(got)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "filter", back.Get("$filter"), "startswith(displayName,'a b')")
	eq(t, "search", back.Get("$search"), `"displayName:wa"`)
}

func TestNewValidates(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("empty config accepted")
	}
	if _, err := New(Config{GraphURL: "::", TenantID: "t", ClientID: "c", ClientSecret: "s"}); err == nil {
		t.Error("bad URL accepted")
	}
	c, err := New(Config{TenantID: "t", ClientID: "c", ClientSecret: "s"})
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "token url", c.tokenURL, "https://login.microsoftonline.com/t/oauth2/v2.0/token")
	full, _, _ := c.resolve("/users", nil)
	eq(t, "graph url", full, "https://graph.microsoft.com/v1.0/users")
}
