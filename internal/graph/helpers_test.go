package graph

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	testTenant = "tenant-1"
	testClient = "client-1"
	testSecret = "s3cret-value"
)

// fakeTenant is an httptest server with a token endpoint; tests add Graph handlers on mux.
type fakeTenant struct {
	srv        *httptest.Server
	mux        *http.ServeMux
	tokenCalls atomic.Int32
	tokenTTL   atomic.Int64 // expires_in seconds
	// tokenHandler replaces the default token answer when set.
	tokenHandler http.HandlerFunc
}

func newFakeTenant(t *testing.T) *fakeTenant { return newFakeTenantTB(t) }

func newFakeTenantTB(t testing.TB) *fakeTenant {
	t.Helper()
	f := &fakeTenant{mux: http.NewServeMux()}
	f.tokenTTL.Store(3599)
	f.mux.HandleFunc("POST /"+testTenant+"/oauth2/v2.0/token", func(w http.ResponseWriter, r *http.Request) {
		n := f.tokenCalls.Add(1)
		if f.tokenHandler != nil {
			f.tokenHandler(w, r)
			return
		}
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		if r.PostForm.Get("client_secret") != testSecret || r.PostForm.Get("client_id") != testClient {
			w.WriteHeader(401)
			fmt.Fprint(w, `{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.","error_codes":[7000215]}`)
			return
		}
		writeJSON(w, 200, map[string]any{"token_type": "Bearer", "expires_in": f.tokenTTL.Load(), "access_token": fmt.Sprintf("tok-%d", n)})
	})
	f.srv = httptest.NewServer(f.mux)
	t.Cleanup(f.srv.Close)
	return f
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func graphError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{"code": code, "message": msg,
		"innerError": map[string]any{"request-id": "req-" + code, "date": "2025-02-13T10:17:05"}}})
}

// sleeper records requested sleeps and returns at once (or the ctx error).
type sleeper struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeper) Sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeper) got() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func testConfig(t *testing.T, f *fakeTenant) Config {
	return Config{
		GraphURL:     f.srv.URL,
		LoginURL:     f.srv.URL,
		TenantID:     testTenant,
		ClientID:     testClient,
		ClientSecret: testSecret,
		HTTPClient:   f.srv.Client(),
		Logger:       slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// newTestClient returns a client against f whose sleeps are recorded, not waited.
func newTestClient(t *testing.T, f *fakeTenant, mod ...func(*Config)) (*Client, *sleeper) {
	t.Helper()
	s := &sleeper{}
	cfg := testConfig(t, f)
	cfg.Sleep = s.Sleep
	for _, m := range mod {
		m(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, s
}

type lockedWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func newBufLogger(b *strings.Builder) *slog.Logger {
	return slog.New(slog.NewTextHandler(&lockedWriter{w: b}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
