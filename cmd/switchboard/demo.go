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
	"path/filepath"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/app"
	"github.com/switchboard-pbx/switchboard/internal/config"
	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/integration"
	"github.com/switchboard-pbx/switchboard/internal/presence"
	"github.com/switchboard-pbx/switchboard/internal/secret"
	"github.com/switchboard-pbx/switchboard/internal/sim"
	"github.com/switchboard-pbx/switchboard/internal/sso"
	"github.com/switchboard-pbx/switchboard/internal/syncer"
)

// demo runs the whole product on this machine: the service on embedded
// SQLite in a data folder, a simulated Entra tenant beside it, connected
// and synced, and prints the portal URL and the admin login.
func demo(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg := config.Defaults()
	cfg.DataDir = "./switchboard-demo"
	fs := cfg.FlagSet("demo", stderr)
	var sf simFlags
	sfs := flag.NewFlagSet("", flag.ContinueOnError)
	sf.bind(sfs)
	fs.IntVar(&sf.users, "users", 300, "users in the simulated tenant")
	fs.IntVar(&sf.groups, "groups", 20, "groups in the simulated tenant")
	fs.Int64Var(&sf.seed, "seed", 1, "seed of the simulated tenant")
	fs.DurationVar(&sf.latency, "latency", 0, "latency added to every simulated Graph request")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !isSet(fs, "db") {
		cfg.DB = "sqlite:" + filepath.Join(cfg.DataDir, "switchboard.db")
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	defer ln.Close()
	base := "http://" + ln.Addr().String()
	if cfg.PublicURL == "" {
		cfg.PublicURL = base
	}
	simLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	simBase := "http://" + simLn.Addr().String()
	cfg.GraphURL, cfg.LoginURL = simBase, simBase
	if err := cfg.Validate(); err != nil {
		return err
	}
	if cfg.AdminToken == "" {
		cfg.AdminToken = "demo-" + secret.RandomToken(18)
	}
	logger := app.NewLogger(cfg, stderr)

	sf.redirects = cfg.BaseURL() + integration.CallbackPath + "," + cfg.BaseURL() + integration.SSOCallbackPath
	tenant, err := sim.New(sf.config(logger.With("component", "sim")))
	if err != nil {
		return err
	}
	defer tenant.Close()
	go func() { _ = serveHandler(ctx, simLn, tenant.Handler()) }()

	a, err := app.New(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer a.Close()
	if _, err := a.BootstrapAdmin(ctx, "admin"); err != nil {
		return err
	}
	pw, err := a.ResetAdminPassword(ctx, "admin")
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx, ln) }()

	if err := demoConnect(ctx, a, sf, logger); err != nil {
		return fmt.Errorf("demo: connecting to the simulated tenant: %w", err)
	}
	synced, err := demoSync(ctx, a)
	if err != nil {
		return fmt.Errorf("demo: first sync: %w", err)
	}
	fmt.Fprintf(stdout, `Switchboard demo
  portal:            %s/
  login:             admin / %s
  admin API token:   %s (Authorization: Bearer ...)
  simulated tenant:  %s  (%d users, %d groups; tenant %s)
  synced:            %s
  web client (SSO):  %s/client/
  data:              %s
Ctrl-C stops it.
`, base, pw, demoToken(a), simBase, tenant.Users(), sf.groups, sf.tenantID, synced, base, cfg.DataDir)
	return <-served
}

func demoToken(a *app.App) string { return a.Config.AdminToken }

// demoConnect connects the default PBX to the simulated tenant the way an
// administrator would: the sim's authorize endpoint signs in at once.
func demoConnect(ctx context.Context, a *app.App, sf simFlags, logger *slog.Logger) error {
	if a.Integration.Connected(ctx, directory.DefaultPBX) {
		return nil
	}
	u, err := a.Integration.StartConnect(ctx, directory.DefaultPBX, "demo", "demo", integration.ConnectInput{
		ClientID: sf.clientID, TenantID: sf.tenantID, ClientSecret: sf.clientSecret}, "")
	if err != nil {
		return err
	}
	c := &http.Client{Timeout: 30 * time.Second}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	res, err := c.Do(req)
	if err != nil {
		return err
	}
	res.Body.Close()
	if !a.Integration.Connected(ctx, directory.DefaultPBX) {
		st, _ := a.Integration.GetStatus(ctx, directory.DefaultPBX)
		return errors.New("not connected after sign-in: " + st.StatusReason)
	}
	logger.Info("demo: connected to the simulated tenant")
	return nil
}

// demoSync turns on user sync for all members and guests (its first save
// runs the initial sync), Microsoft sign-in for the clients and two-way
// presence, and waits for the sync to finish.
func demoSync(ctx context.Context, a *app.App) (string, error) {
	on := true
	if _, err := a.SSO.UpdateSettings(ctx, directory.DefaultPBX, "demo", sso.SettingsInput{Enabled: &on}); err != nil {
		return "", err
	}
	twoWay := "two-way"
	if _, err := a.Presence.PutSettings(ctx, directory.DefaultPBX, "demo", presence.SettingsInput{Enabled: &on, Direction: &twoWay}); err != nil {
		return "", err
	}
	runID := ""
	if _, saved, err := a.Syncer.UserSettings(ctx, directory.DefaultPBX); err != nil {
		return "", err
	} else if !saved {
		st := syncer.DefaultUserSettings()
		st.Enabled = true
		st.DeleteWhen = []string{syncer.DeleteWhenDisabled, syncer.DeleteWhenDeleted}
		if _, runID, err = a.Syncer.SaveUserSettings(ctx, directory.DefaultPBX, "demo", st); err != nil {
			return "", err
		}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for runID != "" && time.Now().Before(deadline) {
		run, err := a.Syncer.GetRun(ctx, directory.DefaultPBX, runID)
		if err == nil && run.State != "running" {
			break
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	n, err := a.Store.CountExtensions(ctx, directory.DefaultPBX)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d extensions", n), nil
}

func isSet(fs interface{ Visit(func(*flagT)) }, name string) bool {
	found := false
	fs.Visit(func(f *flagT) {
		if f.Name == name {
			found = true
		}
	})
	return found
}
