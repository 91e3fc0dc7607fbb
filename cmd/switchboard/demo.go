package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"

	"github.com/switchboard-pbx/switchboard/internal/app"
	"github.com/switchboard-pbx/switchboard/internal/config"
)

// demo runs the service on embedded SQLite in a data folder with a known
// administrator, so a newcomer can look around at once.
func demo(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg := config.Defaults()
	cfg.DataDir = "./switchboard-demo"
	fs := cfg.FlagSet("demo", stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !isSet(fs, "db") {
		cfg.DB = "sqlite:" + filepath.Join(cfg.DataDir, "switchboard.db")
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	logger := app.NewLogger(cfg, stderr)
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
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Switchboard demo\n  portal:   http://%s/\n  login:    admin / %s\n  data:     %s\n  Ctrl-C stops it.\n", ln.Addr(), pw, cfg.DataDir)
	return a.Serve(ctx, ln)
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
