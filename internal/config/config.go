// Package config turns command-line flags and SWITCHBOARD_* environment
// variables into one Config. Load is a pure function of its arguments; every
// flag has an env twin (upper case, dashes as underscores), and secrets can
// also come from a file named by SWITCHBOARD_<NAME>_FILE.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"time"
)

// Config is the service's whole configuration.
type Config struct {
	Addr          string
	PublicURL     string
	DB            string
	DataDir       string
	GraphURL      string
	LoginURL      string
	AdminToken    string
	SecretKey     string
	MaxExtensions int
	TimeZone      string
	LogLevel      string
	LogFormat     string

	KamailioDB     string
	SIPDomain      string
	KamailioCtl    string
	KamailioEvents string
	// KamailioRemoveUnknown removes subscriber rows the directory does not know at start.
	KamailioRemoveUnknown bool

	// SyncWorkers bounds the sync runs one instance works at once (0: 4 on
	// PostgreSQL, 2 on SQLite, whose single writer the runs would only queue on).
	SyncWorkers int

	ShutdownTimeout time.Duration
}

// secretFlags may be given through SWITCHBOARD_<NAME>_FILE.
var secretFlags = map[string]bool{"admin-token": true, "secret-key": true}

// Defaults returns the configuration with every default filled in.
func Defaults() Config {
	return Config{
		Addr:            "127.0.0.1:8080",
		DB:              "sqlite:./data/switchboard.db",
		DataDir:         "./data",
		GraphURL:        "https://graph.microsoft.com",
		LoginURL:        "https://login.microsoftonline.com",
		MaxExtensions:   10000,
		TimeZone:        "UTC",
		LogLevel:        "info",
		LogFormat:       "text",
		SIPDomain:       "pbx.local",
		ShutdownTimeout: 20 * time.Second,
	}
}

// FlagSet binds c's fields to a new FlagSet named name.
func (c *Config) FlagSet(name string, output io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(output)
	fs.StringVar(&c.Addr, "addr", c.Addr, "listen address `host:port`")
	fs.StringVar(&c.PublicURL, "public-url", c.PublicURL, "public base `URL` of this service (redirect URIs, webhooks); default http://<addr>")
	fs.StringVar(&c.DB, "db", c.DB, "database: sqlite:PATH or a postgres:// URL")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "folder for the generated secret key and the SQLite database")
	fs.StringVar(&c.GraphURL, "graph-url", c.GraphURL, "Microsoft Graph base `URL`")
	fs.StringVar(&c.LoginURL, "login-url", c.LoginURL, "Microsoft identity platform base `URL`")
	fs.StringVar(&c.AdminToken, "admin-token", c.AdminToken, "bearer `token` accepted by the admin API (also SWITCHBOARD_ADMIN_TOKEN_FILE)")
	fs.StringVar(&c.SecretKey, "secret-key", c.SecretKey, "key for secrets at rest: 64 hex digits or base64 of 32 bytes; generated into <data-dir>/secret.key if unset (also SWITCHBOARD_SECRET_KEY_FILE)")
	fs.IntVar(&c.MaxExtensions, "max-extensions", c.MaxExtensions, "licensed extension capacity of the default PBX")
	fs.StringVar(&c.TimeZone, "time-zone", c.TimeZone, "IANA time zone of the default PBX (schedules)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "text or json")
	fs.StringVar(&c.KamailioDB, "kamailio-db", c.KamailioDB, "Kamailio database (postgres:// or sqlite:PATH) whose subscriber table is provisioned")
	fs.StringVar(&c.SIPDomain, "sip-domain", c.SIPDomain, "SIP domain (realm) of the provisioned subscribers")
	fs.StringVar(&c.KamailioCtl, "kamailio-ctl", c.KamailioCtl, "Kamailio control socket (drops registrations of deleted extensions)")
	fs.StringVar(&c.KamailioEvents, "kamailio-events", c.KamailioEvents, "Kamailio evapi address `host:port` streaming call events")
	fs.BoolVar(&c.KamailioRemoveUnknown, "kamailio-remove-unknown", c.KamailioRemoveUnknown, "at start, remove subscriber rows that match no extension (otherwise they are only reported)")
	fs.IntVar(&c.SyncWorkers, "sync-workers", c.SyncWorkers, "sync runs this instance works at once (0: 4 on PostgreSQL, 2 on SQLite)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "how long a graceful shutdown waits for in-flight requests")
	return fs
}

// Load parses args over defaults with env twins applied first: flags given
// on the command line win over the environment.
func Load(name string, args []string, getenv func(string) string, output io.Writer) (Config, error) {
	c := Defaults()
	fs := c.FlagSet(name, output)
	var envErrs []error
	fs.VisitAll(func(f *flag.Flag) {
		env := EnvName(f.Name)
		v := getenv(env)
		if v == "" && secretFlags[f.Name] {
			if path := getenv(env + "_FILE"); path != "" {
				b, err := os.ReadFile(path)
				if err != nil {
					envErrs = append(envErrs, fmt.Errorf("%s_FILE: %w", env, err))
					return
				}
				v = strings.TrimSpace(string(b))
			}
		}
		if v != "" {
			if err := f.Value.Set(v); err != nil {
				envErrs = append(envErrs, fmt.Errorf("%s: %w", env, err))
			}
		}
	})
	if err := errors.Join(envErrs...); err != nil {
		return c, err
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return c, c.Validate()
}

// EnvName is the environment twin of a flag.
func EnvName(flagName string) string {
	return "SWITCHBOARD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Validate returns every problem of the configuration at once.
func (c *Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("addr: %w", err))
	}
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, errors.New("public-url: must be an absolute http(s) URL"))
		}
	}
	if !strings.HasPrefix(c.DB, "sqlite:") && !strings.HasPrefix(c.DB, "postgres://") && !strings.HasPrefix(c.DB, "postgresql://") {
		errs = append(errs, errors.New("db: must be sqlite:PATH or a postgres:// URL"))
	}
	for name, v := range map[string]string{"graph-url": c.GraphURL, "login-url": c.LoginURL} {
		if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("%s: must be an absolute http(s) URL", name))
		}
	}
	if c.MaxExtensions < 1 || c.MaxExtensions > 1_000_000 {
		errs = append(errs, errors.New("max-extensions: must be between 1 and 1000000"))
	}
	if c.SyncWorkers < 0 || c.SyncWorkers > 256 {
		errs = append(errs, errors.New("sync-workers: must be between 0 (the default) and 256"))
	}
	if _, err := time.LoadLocation(c.TimeZone); err != nil {
		errs = append(errs, fmt.Errorf("time-zone: unknown IANA time zone %q", c.TimeZone))
	}
	if c.AdminToken != "" && len(c.AdminToken) < 16 {
		errs = append(errs, errors.New("admin-token: must be at least 16 characters"))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, errors.New("log-level: must be debug, info, warn or error"))
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, errors.New("log-format: must be text or json"))
	}
	if c.KamailioDB != "" && !strings.HasPrefix(c.KamailioDB, "sqlite:") && !strings.HasPrefix(c.KamailioDB, "postgres") {
		errs = append(errs, errors.New("kamailio-db: must be sqlite:PATH or a postgres:// URL"))
	}
	return errors.Join(errs...)
}

// BaseURL is the public base URL without a trailing slash.
func (c *Config) BaseURL() string {
	if c.PublicURL != "" {
		return strings.TrimRight(c.PublicURL, "/")
	}
	return "http://" + c.Addr
}
