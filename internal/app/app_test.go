package app

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/config"
)

func testConfig(t *testing.T) config.Config {
	c := config.Defaults()
	dir := t.TempDir()
	c.DataDir = dir
	c.DB = "sqlite:" + filepath.Join(dir, "db", "sb.db")
	c.AdminToken = "app-test-admin-token"
	return c
}

func TestBootstrapAdminOnce(t *testing.T) {
	a, err := New(t.Context(), testConfig(t), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	pw, err := a.BootstrapAdmin(t.Context(), "admin")
	if err != nil || len(pw) < 12 {
		t.Fatalf("bootstrap: %q %v", pw, err)
	}
	if pw2, err := a.BootstrapAdmin(t.Context(), "admin"); err != nil || pw2 != "" {
		t.Fatalf("second bootstrap created another admin: %q %v", pw2, err)
	}
	ad, err := a.Store.GetAdminByUsername(t.Context(), "admin")
	if err != nil || !ad.MustChange || ad.PasswordHash == pw {
		t.Fatalf("admin: %+v %v", ad, err)
	}
}

func TestSecretKeyGeneratedAndStable(t *testing.T) {
	c := testConfig(t)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := New(t.Context(), c, logger)
	if err != nil {
		t.Fatal(err)
	}
	sealed := a.Keys.SealString("x")
	a.Close()
	b, err := New(t.Context(), c, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if got, err := b.Keys.OpenString(sealed); err != nil || got != "x" {
		t.Fatalf("restart could not open a sealed value: %v", err)
	}
	c.SecretKey = "not-a-key"
	if _, err := New(t.Context(), c, logger); err == nil {
		t.Fatal("a malformed --secret-key was accepted")
	}
}

// A graceful shutdown lets an in-flight request finish.
func TestGracefulShutdown(t *testing.T) {
	a, err := New(t.Context(), testConfig(t), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	started, release := make(chan struct{}), make(chan struct{})
	a.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		w.Write([]byte("finished"))
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx, ln) }()
	got := make(chan string, 1)
	go func() {
		res, err := http.Get("http://" + ln.Addr().String() + "/slow")
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		got <- string(b)
	}()
	<-started
	cancel() // shutdown begins while the request is in flight
	select {
	case err := <-served:
		t.Fatalf("Serve returned before the in-flight request finished: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if body := <-got; body != "finished" {
		t.Fatalf("in-flight request: %q", body)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Fatal("still accepting connections after shutdown")
	}
}
