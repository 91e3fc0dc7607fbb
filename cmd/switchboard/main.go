// Command switchboard is the PBX directory service with its Microsoft Entra
// ID integration. Subcommands: serve (the service), demo (everything on this
// machine with a simulated tenant), sim (the simulated Entra tenant alone)
// and version.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/switchboard-pbx/switchboard/internal/app"
	"github.com/switchboard-pbx/switchboard/internal/config"
)

const usage = `switchboard: a PBX directory service with Microsoft Entra ID integration.

Usage:
  switchboard serve   [flags]   run the service (flags: switchboard serve -h)
  switchboard demo    [flags]   run the whole product here: SQLite, a simulated tenant, connected and synced
  switchboard sim     [flags]   run the simulated Microsoft Entra tenant (Graph + identity platform)
  switchboard version           print the version

Every serve flag can also be set as SWITCHBOARD_<FLAG> (upper case, dashes as underscores).
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "switchboard:", err)
		}
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("missing subcommand")
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], getenv, stdout, stderr)
	case "demo":
		return demo(ctx, args[1:], getenv, stdout, stderr)
	case "sim":
		return runSim(ctx, args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "switchboard", app.Version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown subcommand %q", args[0])
}

func serve(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := config.Load("serve", args, getenv, stderr)
	if err != nil {
		return err
	}
	logger := app.NewLogger(cfg, stderr)
	a, err := app.New(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer a.Close()
	if pw, err := a.BootstrapAdmin(ctx, "admin"); err != nil {
		return err
	} else if pw != "" {
		fmt.Fprintf(stdout, "Created the first administrator: username admin, one-time password %s (change it after signing in)\n", pw)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	logger.Info("switchboard serving", "addr", ln.Addr().String(), "public_url", cfg.BaseURL(), "version", app.Version)
	return a.Serve(ctx, ln)
}
