// Package app assembles the service from its configuration: store, keys,
// the PBX write path, the HTTP handlers, and the background workers. The
// binary (cmd/switchboard) stays thin: flags in, App out.
package app

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-pbx/switchboard/internal/api"
	"github.com/switchboard-pbx/switchboard/internal/config"
	"github.com/switchboard-pbx/switchboard/internal/contactsync"
	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/integration"
	"github.com/switchboard-pbx/switchboard/internal/jobs"
	"github.com/switchboard-pbx/switchboard/internal/mail"
	"github.com/switchboard-pbx/switchboard/internal/pbx"
	"github.com/switchboard-pbx/switchboard/internal/portal"
	"github.com/switchboard-pbx/switchboard/internal/presence"
	"github.com/switchboard-pbx/switchboard/internal/schedule"
	"github.com/switchboard-pbx/switchboard/internal/secret"
	"github.com/switchboard-pbx/switchboard/internal/session"
	"github.com/switchboard-pbx/switchboard/internal/sqlstore"
	"github.com/switchboard-pbx/switchboard/internal/sso"
	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/syncer"
)

// Version is set at build time with -ldflags "-X .../internal/app.Version=...".
var Version = "dev"

// App is a running Switchboard service.
type App struct {
	Config config.Config
	Logger *slog.Logger
	Store  store.Store
	Keys   *secret.Keyring
	PBX    *pbx.Service
	API    *api.Server

	Integration *integration.Service
	Syncer      *syncer.Engine
	Jobs        *jobs.Runner // sync runs asked by schedules, notifications and polling, as River jobs
	Schedule    *schedule.Service
	SSO         *sso.Service
	Portal      *portal.Portal
	Presence    *presence.Service
	Contacts    *contactsync.Service
	Handler     http.Handler

	workers []func(ctx context.Context) error // background loops started by Serve

	closers []func() error
	bg      sync.WaitGroup // follow-up work started by callbacks (contacts after a user sync)
}

// NewLogger builds the structured logger the config asks for.
func NewLogger(c config.Config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// New opens the store, applies migrations, loads keys and builds the handlers.
func New(ctx context.Context, c config.Config, logger *slog.Logger) (*App, error) {
	a := &App{Config: c, Logger: logger}
	key, err := loadKey(c)
	if err != nil {
		return nil, err
	}
	a.Keys, err = secret.NewKeyring(key)
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(c.DB, "sqlite:") {
		if err := os.MkdirAll(filepath.Dir(strings.TrimPrefix(c.DB, "sqlite:")), 0o700); err != nil {
			return nil, fmt.Errorf("db: %w", err)
		}
	}
	st, err := sqlstore.Open(ctx, c.DB, logger)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	a.Store = st
	a.closers = append(a.closers, st.Close)
	if _, err := st.EnsurePBX(ctx, directory.PBX{ID: directory.DefaultPBX, Name: "Default PBX", MaxExtensions: c.MaxExtensions, TimeZone: c.TimeZone}); err != nil {
		a.Close()
		return nil, fmt.Errorf("default PBX: %w", err)
	}
	// The command line sets the default PBX's licence and time zone.
	if _, err := st.UpdatePBX(ctx, directory.DefaultPBX, func(p *directory.PBX) error {
		p.MaxExtensions, p.TimeZone = c.MaxExtensions, c.TimeZone
		return nil
	}); err != nil {
		a.Close()
		return nil, err
	}
	a.PBX = &pbx.Service{Store: st, Keys: a.Keys, Logger: logger}
	a.Integration = &integration.Service{Store: st, PBX: a.PBX, Keys: a.Keys, Logger: logger, BaseURL: c.BaseURL(),
		GraphURL: c.GraphURL, LoginURL: c.LoginURL}
	a.Syncer = &syncer.Engine{Store: st, PBX: a.PBX, Graph: a.Integration, Mailer: mail.Sender{}, Logger: logger.With("component", "syncer"),
		PortalURL: c.BaseURL() + "/"}
	a.Syncer.Finished = a.syncFinished
	if err := a.openJobs(ctx, st); err != nil {
		a.Close()
		return nil, err
	}
	a.Schedule = &schedule.Service{Store: st, Integration: a.Integration, Runner: a.Jobs, Logger: logger.With("component", "schedule"),
		PublicURL: c.PublicURL, AllowLocalURL: isLoopbackURL(c.GraphURL)}
	a.Contacts = &contactsync.Service{Store: st, Graph: a.Integration, Logger: logger.With("component", "contacts")}
	a.Integration.OnConnected = func(ctx context.Context, pbxID string) {
		if err := a.Schedule.EnsureSubscriptions(ctx, pbxID); err != nil {
			logger.WarnContext(ctx, "change notifications not set up; polling instead", "pbx", pbxID, "err", err)
		}
	}
	a.Integration.OnDisconnecting = func(ctx context.Context, pbxID string) {
		if err := a.Schedule.Unsubscribe(ctx, pbxID); err != nil {
			logger.WarnContext(ctx, "removing change-notification subscriptions", "pbx", pbxID, "err", err)
		}
		if err := a.Contacts.Disconnected(ctx, pbxID); err != nil {
			logger.WarnContext(ctx, "removing synced contacts", "pbx", pbxID, "err", err)
		}
	}
	a.Presence = &presence.Service{Store: st, Graph: a.Integration, Logger: logger.With("component", "presence"), BaseURL: c.BaseURL()}
	if err := a.openRegistrar(ctx); err != nil {
		a.Close()
		return nil, err
	}
	registry := prometheus.NewRegistry()
	registry.MustRegister(a.Schedule)
	registry.MustRegister(a.Presence.Collectors()...)
	a.SSO = &sso.Service{Store: st, Keys: a.Keys, Integration: a.Integration, PBX: a.PBX, Logger: logger.With("component", "sso"),
		BaseURL: c.BaseURL(), LoginURL: c.LoginURL, Metrics: registry}
	sessKey := sha256.Sum256(append([]byte("switchboard session key\x00"), key...))
	sessions := &session.Sessions{Key: sessKey[:], Store: st}
	a.API = &api.Server{
		Store: st, PBX: a.PBX, Keys: a.Keys, Logger: logger, AdminToken: c.AdminToken, SIPDomain: c.SIPDomain,
		Sessions: sessions, Version: Version, Integration: a.Integration, Registry: registry,
		Syncer: a.Syncer, Schedule: a.Schedule, SSO: a.SSO, Presence: a.Presence, Contacts: a.Contacts,
		StatusDecorators: []api.StatusDecorator{api.ScheduleStatusDecorator(a.Schedule)},
	}
	a.Portal, err = portal.New(portal.Config{Sessions: sessions, Store: st, Logger: logger.With("component", "portal"),
		Secure: strings.HasPrefix(c.BaseURL(), "https://")})
	if err != nil {
		a.Close()
		return nil, err
	}
	a.API.StatusDecorators = append(a.API.StatusDecorators, a.API.SyncStatus())
	a.workers = append(a.workers, a.runJobs, a.Schedule.Run, a.Presence.Run)
	a.Handler = a.routes()
	return a, nil
}

// routes composes the root mux: the API mux (JSON, bearer or cookie auth)
// stays apart from the browser-facing handlers.
func (a *App) routes() http.Handler {
	apiH := a.API.Handler()
	root := http.NewServeMux()
	root.Handle("/api/", apiH)
	root.Handle("/healthz", apiH)
	root.Handle("/metrics", apiH)
	root.Handle("/client/", a.SSO.Handler())
	root.Handle("/webhooks/", a.Schedule.Handler())
	root.Handle(presence.WebhookPath, a.Presence.Webhook())
	root.Handle("/", a.Portal.Handler())
	return root
}

func loadKey(c config.Config) ([]byte, error) {
	if c.SecretKey != "" {
		k, err := secret.ParseKey(c.SecretKey)
		if err != nil {
			return nil, fmt.Errorf("secret-key: %w", err)
		}
		return k, nil
	}
	k, err := secret.LoadOrCreateKeyFile(filepath.Join(c.DataDir, "secret.key"))
	if err != nil {
		return nil, fmt.Errorf("secret-key: %w", err)
	}
	return k, nil
}

// BootstrapAdmin creates the first administrator when there is none and
// returns its one-time password ("" when administrators exist already).
func (a *App) BootstrapAdmin(ctx context.Context, username string) (string, error) {
	n, err := a.Store.CountAdmins(ctx)
	if err != nil || n > 0 {
		return "", err
	}
	pw := secret.RandomToken(12)
	ad := &store.Admin{Username: username, PasswordHash: secret.HashPassword(pw), MustChange: true, CreatedAt: time.Now().UTC()}
	if err := a.Store.CreateAdmin(ctx, ad); err != nil {
		if errors.Is(err, store.ErrConflict) { // another instance bootstrapped at the same moment
			return "", nil
		}
		return "", err
	}
	return pw, nil
}

// ResetAdminPassword sets a new random password for username (demo only).
func (a *App) ResetAdminPassword(ctx context.Context, username string) (string, error) {
	pw := secret.RandomToken(12)
	_, err := a.Store.UpdateAdmin(ctx, a.mustAdminID(ctx, username), func(ad *store.Admin) error {
		ad.PasswordHash = secret.HashPassword(pw)
		return nil
	})
	return pw, err
}

func (a *App) mustAdminID(ctx context.Context, username string) string {
	ad, err := a.Store.GetAdminByUsername(ctx, username)
	if err != nil {
		return ""
	}
	return ad.ID
}

// Serve runs the HTTP server until ctx ends, then shuts down gracefully,
// finishing in-flight requests within the configured timeout.
func (a *App) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           a.Handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      0, // SSE progress streams stay open
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(a.Logger.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	wctx, stopWorkers := context.WithCancel(context.WithoutCancel(ctx))
	var workers sync.WaitGroup
	for _, w := range a.workers {
		workers.Go(func() {
			// A worker that returns its context's error on shutdown has not failed.
			if err := w(wctx); err != nil && (wctx.Err() == nil || !errors.Is(err, wctx.Err())) {
				a.Logger.Error("background worker stopped", "err", err)
			}
		})
	}
	defer func() {
		stopWorkers()
		a.Syncer.Wait() // a running sync finishes its current step
		workers.Wait()
		a.bg.Wait()
	}()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	a.Logger.Info("shutting down", "timeout", a.Config.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), a.Config.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("graceful shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Close releases the store and workers.
func (a *App) Close() error {
	var errs []error
	for i := len(a.closers) - 1; i >= 0; i-- {
		errs = append(errs, a.closers[i]())
	}
	a.closers = nil
	return errors.Join(errs...)
}
