package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/sim"
)

type flagT = flag.Flag

// Demo identities of the simulated tenant (any GUIDs work).
const (
	simTenantID     = "7e0b3c4d-1a2b-4c5d-8e9f-0a1b2c3d4e5f"
	simClientID     = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
	simClientSecret = "sim-client-secret-change-me"
)

type simFlags struct {
	addr, tenantID, clientID, clientSecret, domain, redirects string
	users, groups                                             int
	seed                                                      int64
	latency                                                   time.Duration
}

func (f *simFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&f.addr, "addr", "127.0.0.1:9090", "listen address")
	fs.StringVar(&f.tenantID, "tenant-id", simTenantID, "tenant ID (GUID)")
	fs.StringVar(&f.clientID, "client-id", simClientID, "application (client) ID of the registered app")
	fs.StringVar(&f.clientSecret, "client-secret", simClientSecret, "the app's client secret")
	fs.StringVar(&f.domain, "domain", "contoso.com", "the tenant's mail domain")
	fs.StringVar(&f.redirects, "redirect-uri", "http://127.0.0.1:8080/api/v1/integration/callback,http://127.0.0.1:8080/client/v1/sso/callback", "comma-separated redirect URIs registered on the app")
	fs.IntVar(&f.users, "users", 300, "number of users")
	fs.IntVar(&f.groups, "groups", 20, "number of groups")
	fs.Int64Var(&f.seed, "seed", 1, "seed of the generated directory (same seed, same data)")
	fs.DurationVar(&f.latency, "latency", 0, "delay added to every request, e.g. 50ms")
}

func (f *simFlags) config(logger *slog.Logger) sim.Config {
	var redirects []string
	for _, r := range strings.Split(f.redirects, ",") {
		if r = strings.TrimSpace(r); r != "" {
			redirects = append(redirects, r)
		}
	}
	return sim.Config{TenantID: f.tenantID, ClientID: f.clientID, ClientSecret: f.clientSecret, Domain: f.domain,
		Users: f.users, Groups: f.groups, Seed: f.seed, Latency: f.latency, RedirectURIs: redirects, Logger: logger}
}

// runSim runs the simulated Entra tenant on its own.
func runSim(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f simFlags
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f.bind(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	start := time.Now()
	t, err := sim.New(f.config(logger))
	if err != nil {
		return err
	}
	defer t.Close()
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		return err
	}
	base := "http://" + ln.Addr().String()
	fmt.Fprintf(stdout, "Simulated Microsoft Entra tenant (%d users, %d groups, seed %d, built in %s)\n", t.Users(), f.groups, f.seed, time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(stdout, "  Graph:     %s/v1.0\n  Login:     %s/%s/oauth2/v2.0/authorize\n  Tenant ID: %s\n  Client ID: %s\n  Stats:     %s/sim/stats\n",
		base, base, f.tenantID, f.tenantID, f.clientID, base)
	fmt.Fprintf(stdout, "  Point switchboard at it: --graph-url %s --login-url %s\n", base, base)
	return serveHandler(ctx, ln, t.Handler())
}

// serveHandler serves h on ln until ctx ends, then shuts down gracefully.
func serveHandler(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
