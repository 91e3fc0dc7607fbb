package portal_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/api"
	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/pbx"
	"github.com/switchboard-pbx/switchboard/internal/portal"
	"github.com/switchboard-pbx/switchboard/internal/secret"
	"github.com/switchboard-pbx/switchboard/internal/session"
	"github.com/switchboard-pbx/switchboard/internal/sqlstore"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

const (
	adminUser = "alice"
	adminPass = "correct horse battery"
)

// env is the service as the lead composes it: the portal at "/" next to
// the admin API, on one root mux, with a real SQLite store.
type env struct {
	t     testing.TB
	srv   *httptest.Server
	store store.Store
	pbx   *pbx.Service
}

type envOption func(*portal.Config, *api.Server)

func newEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	st, err := sqlstore.Open(t.Context(), "sqlite:"+filepath.Join(t.TempDir(), "sb.db"), logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.EnsurePBX(t.Context(), directory.PBX{ID: directory.DefaultPBX, Name: "Default", MaxExtensions: 1_000_000, TimeZone: "UTC"}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateAdmin(t.Context(), &store.Admin{Username: adminUser, PasswordHash: secret.HashPassword(adminPass), CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	keys, _ := secret.NewKeyring(secret.NewKey())
	ps := &pbx.Service{Store: st, Keys: keys, Logger: logger}
	sessions := &session.Sessions{Key: []byte("test session key"), Store: st}
	s := &api.Server{Store: st, PBX: ps, Keys: keys, Logger: logger, SIPDomain: "pbx.test", Sessions: sessions}
	cfg := portal.Config{Sessions: sessions, Store: st, Logger: logger}
	for _, o := range opts {
		o(&cfg, s)
	}
	p, err := portal.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	root := http.NewServeMux()
	apiHandler := s.Handler()
	root.Handle("/api/", apiHandler)
	root.Handle("/healthz", apiHandler)
	root.Handle("/metrics", apiHandler)
	root.Handle("/", p.Handler())
	srv := httptest.NewServer(root)
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, store: st, pbx: ps}
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// client is a browser-like client: a cookie jar, no redirect following.
func (e *env) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

type page struct {
	status int
	header http.Header
	body   string
}

func (e *env) do(c *http.Client, method, path string, form url.Values, hdr map[string]string) page {
	e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(e.t.Context(), method, e.srv.URL+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return page{status: res.StatusCode, header: res.Header, body: string(b)}
}

// sameOrigin is what a browser sends with a form post from the portal itself.
func (e *env) sameOrigin() map[string]string {
	return map[string]string{"Origin": e.srv.URL, "Sec-Fetch-Site": "same-origin"}
}

func (e *env) login(c *http.Client, user, pass string) page {
	e.t.Helper()
	return e.do(c, "POST", "/login", url.Values{"username": {user}, "password": {pass}}, e.sameOrigin())
}

// signedIn returns a client holding a session cookie.
func (e *env) signedIn() *http.Client {
	e.t.Helper()
	c := e.client()
	if p := e.login(c, adminUser, adminPass); p.status != http.StatusSeeOther {
		e.t.Fatalf("login: %d %s", p.status, p.body)
	}
	return c
}

func (e *env) sessionCookie(c *http.Client) *http.Cookie {
	u, _ := url.Parse(e.srv.URL)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == portal.SessionCookie {
			return ck
		}
	}
	return nil
}
