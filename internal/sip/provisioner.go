package sip

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite"
)

// Sentinel errors; match them with errors.Is.
var (
	// ErrNoSubscriberTable: the database has no readable Kamailio `subscriber` table. It
	// is created from Kamailio's shipped DDL, never by this package.
	ErrNoSubscriberTable = errors.New("sip: kamailio subscriber table missing or unreadable")
	// ErrRegistrar: the registrar's control socket failed (down, refused, timed out,
	// answered an error). Database writes made before it stand.
	ErrRegistrar = errors.New("sip: registrar control socket")
	// ErrInvalid: a subscriber or configuration value that cannot be provisioned.
	ErrInvalid = errors.New("sip: invalid value")
)

// expectedSubscriberVersion is the `version` row Kamailio 5.6's auth_db requires.
const expectedSubscriberVersion = 7

// Subscriber is one SIP account. Password is plain only in memory: the table receives the
// HA1/HA1B digests and an empty `password` column.
type Subscriber struct {
	Username string // the SIP auth user; the extension number
	Domain   string // the SIP domain and digest realm; "" means Config.Domain
	Password string
}

// Config configures a Provisioner.
type Config struct {
	// DBURL is Kamailio's database: "postgres://..." (or "postgresql://...") or
	// "sqlite:PATH" (also "sqlite://PATH", as Kamailio writes it).
	DBURL string
	// Domain is the SIP domain (and digest realm, the To domain of a REGISTER).
	Domain string
	// CtlAddr is Kamailio's control socket, used to drop live registrations (ul.rm):
	//   - "unix:PATH" (or a bare absolute PATH): the ctl module's binrpc socket, as kamcmd
	//     uses (Debian: /run/kamailio/kamailio_ctl), or the jsonrpcs datagram socket
	//     (/run/kamailio/kamailio_rpc.sock); the kind is detected;
	//   - "tcp:HOST:PORT": binrpc over TCP (ctl's binrpc "tcp:..." listener);
	//   - "udp:HOST:PORT": jsonrpcs over UDP (its dgram_socket "udp:...").
	// Empty: no RPC is sent (registrations then live until they expire).
	CtlAddr string
	// RemoveUnknown makes Reconcile delete rows of the domain the directory does not know.
	// Off, they are only reported.
	RemoveUnknown bool
	Logger        *slog.Logger
}

// Report is what a Reconcile did.
type Report struct {
	Added, Updated, Unchanged int
	// Unknown lists the table's accounts the directory does not know (usernames; accounts
	// of another domain than Config.Domain as "user@domain"), sorted.
	Unknown []string
	// Removed lists the unknown accounts deleted (RemoveUnknown), sorted.
	Removed []string
}

// Provisioner writes Kamailio subscriber rows. It is safe for concurrent use.
type Provisioner struct {
	db     *sql.DB
	domain string
	ctl    *ctlClient // nil without CtlAddr
	remove bool
	log    *slog.Logger
}

// Open connects to Kamailio's database and checks that the subscriber table is there.
func Open(ctx context.Context, cfg Config) (*Provisioner, error) {
	if cfg.Domain == "" {
		return nil, fmt.Errorf("%w: Domain is empty", ErrInvalid)
	}
	if err := checkName("domain", cfg.Domain); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var ctl *ctlClient
	if cfg.CtlAddr != "" {
		c, err := newCtlClient(cfg.CtlAddr)
		if err != nil {
			return nil, err
		}
		ctl = c
	}
	db, err := openDB(cfg.DBURL)
	if err != nil {
		return nil, err
	}
	p := &Provisioner{db: db, domain: cfg.Domain, ctl: ctl, remove: cfg.RemoveUnknown, log: log}
	if err := p.check(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return p, nil
}

// openDB opens the database named by a DBURL without touching it.
func openDB(dbURL string) (*sql.DB, error) {
	switch {
	case strings.HasPrefix(dbURL, "postgres://"), strings.HasPrefix(dbURL, "postgresql://"):
		db, err := sql.Open("pgx", dbURL)
		if err != nil {
			return nil, fmt.Errorf("sip: open postgres: %w", err)
		}
		return db, nil
	case strings.HasPrefix(dbURL, "sqlite:"):
		path := strings.TrimPrefix(dbURL, "sqlite:")
		path = strings.TrimPrefix(path, "//") // sqlite:///abs/path, sqlite://./rel
		if path == "" {
			return nil, fmt.Errorf("%w: DBURL %q names no file", ErrInvalid, dbURL)
		}
		// WAL + busy timeout: Kamailio is a second user of the file (pbx-target.md §2).
		q := url.Values{"_pragma": {"busy_timeout(5000)", "journal_mode(WAL)"}}
		db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
		if err != nil {
			return nil, fmt.Errorf("sip: open sqlite: %w", err)
		}
		db.SetMaxOpenConns(1) // one writer from our side; readers (Kamailio) use WAL snapshots
		return db, nil
	default:
		return nil, fmt.Errorf("%w: DBURL must start with postgres:// or sqlite:", ErrInvalid)
	}
}

func (p *Provisioner) check(ctx context.Context) error {
	if err := p.db.PingContext(ctx); err != nil {
		return fmt.Errorf("sip: connect to kamailio database: %w", err)
	}
	var n int
	if err := p.db.QueryRowContext(ctx, `SELECT count(*) FROM subscriber WHERE 1 = 0`).Scan(&n); err != nil {
		return fmt.Errorf("%w: %w", ErrNoSubscriberTable, err)
	}
	var v int
	err := p.db.QueryRowContext(ctx,
		`SELECT table_version FROM version WHERE table_name = $1`, "subscriber").Scan(&v)
	switch {
	case err != nil:
		p.log.DebugContext(ctx, "kamailio version table not readable", "err", err)
	case v != expectedSubscriberVersion:
		p.log.WarnContext(ctx, "kamailio subscriber table version differs; auth_db may refuse to start",
			"version", v, "expected", expectedSubscriberVersion)
	}
	return nil
}

// Close closes the database.
func (p *Provisioner) Close() error { return p.db.Close() }

// checkName refuses values that would break a digest string or an AOR.
func checkName(field, v string) error {
	if v == "" {
		return fmt.Errorf("%w: %s is empty", ErrInvalid, field)
	}
	if len(v) > 64 {
		return fmt.Errorf("%w: %s longer than 64 bytes", ErrInvalid, field)
	}
	if strings.ContainsAny(v, ":@ \t\r\n\"'<>;") {
		return fmt.Errorf("%w: %s %q contains a character not allowed in a SIP account", ErrInvalid, field, v)
	}
	return nil
}

// row is one subscriber row as stored.
type row struct {
	username, domain, password, ha1, ha1b string
}

// want returns the row a subscriber should have, after validation.
func (p *Provisioner) want(s Subscriber) (row, error) {
	d := s.Domain
	if d == "" {
		d = p.domain
	}
	if err := checkName("username", s.Username); err != nil {
		return row{}, err
	}
	if err := checkName("domain", d); err != nil {
		return row{}, err
	}
	if s.Password == "" {
		return row{}, fmt.Errorf("%w: password of %s@%s is empty", ErrInvalid, s.Username, d)
	}
	return row{
		username: s.Username,
		domain:   d,
		ha1:      HA1(s.Username, d, s.Password),
		ha1b:     HA1B(s.Username, d, d, s.Password),
	}, nil
}

type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

const upsertSQL = `INSERT INTO subscriber (username, domain, password, ha1, ha1b)
VALUES ($1, $2, '', $3, $4)
ON CONFLICT (username, domain) DO UPDATE SET password = '', ha1 = excluded.ha1, ha1b = excluded.ha1b`

func writeRow(ctx context.Context, q querier, r row) error {
	if _, err := q.ExecContext(ctx, upsertSQL, r.username, r.domain, r.ha1, r.ha1b); err != nil {
		return fmt.Errorf("sip: upsert subscriber %s@%s: %w", r.username, r.domain, err)
	}
	return nil
}

func deleteRow(ctx context.Context, q querier, username, domain string) error {
	if _, err := q.ExecContext(ctx, `DELETE FROM subscriber WHERE username = $1 AND domain = $2`,
		username, domain); err != nil {
		return fmt.Errorf("sip: delete subscriber %s@%s: %w", username, domain, err)
	}
	return nil
}

// Upsert creates or updates the account. It writes only when the stored digests differ
// (new account, rotated secret, or a plain password found in the row), so it is idempotent.
func (p *Provisioner) Upsert(ctx context.Context, s Subscriber) error {
	w, err := p.want(s)
	if err != nil {
		return err
	}
	var cur row
	err = p.db.QueryRowContext(ctx,
		`SELECT ha1, ha1b, password FROM subscriber WHERE username = $1 AND domain = $2`,
		w.username, w.domain).Scan(&cur.ha1, &cur.ha1b, &cur.password)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return fmt.Errorf("sip: read subscriber %s@%s: %w", w.username, w.domain, err)
	case cur.ha1 == w.ha1 && cur.ha1b == w.ha1b && cur.password == "":
		return nil
	}
	if err := writeRow(ctx, p.db, w); err != nil {
		return err
	}
	p.log.InfoContext(ctx, "sip subscriber provisioned", "username", w.username, "domain", w.domain)
	return nil
}

// Remove deletes the account of Config.Domain, then drops its live registrations with
// `ul.rm` (when CtlAddr is set). A registrar that cannot be reached yields an error wrapping
// ErrRegistrar; the row deletion stands. Removing an unknown account is not an error.
func (p *Provisioner) Remove(ctx context.Context, username string) error {
	if err := checkName("username", username); err != nil {
		return err
	}
	if err := deleteRow(ctx, p.db, username, p.domain); err != nil {
		return err
	}
	p.log.InfoContext(ctx, "sip subscriber removed", "username", username, "domain", p.domain)
	return p.dropRegistrations(ctx, username, p.domain)
}

// dropRegistrations sends `ul.rm location user@domain`; an AOR with no binding is fine.
func (p *Provisioner) dropRegistrations(ctx context.Context, username, domain string) error {
	if p.ctl == nil {
		return nil
	}
	aor := username + "@" + domain
	_, err := p.ctl.call(ctx, "ul.rm", "location", aor)
	var rerr *RPCError
	if errors.As(err, &rerr) && rerr.Code == 404 {
		return nil // no registration to drop
	}
	if err != nil {
		p.log.WarnContext(ctx, "sip registrar: dropping registrations failed", "aor", aor, "err", err)
		return fmt.Errorf("sip: drop registrations of %s: %w", aor, err)
	}
	p.log.InfoContext(ctx, "sip registrations dropped", "aor", aor)
	return nil
}

// Reconcile makes the table match want for the domains it covers (Config.Domain plus any
// domain named in want): missing accounts are added, accounts whose digests differ are
// updated, accounts the directory does not know are reported and, with RemoveUnknown,
// deleted and their registrations dropped. Database writes happen in one transaction.
// If only the registrar RPCs fail, the report is returned with an error wrapping
// ErrRegistrar.
func (p *Provisioner) Reconcile(ctx context.Context, want []Subscriber) (Report, error) {
	var rep Report
	wanted := make(map[[2]string]row, len(want))
	domains := []string{p.domain}
	for _, s := range want {
		w, err := p.want(s)
		if err != nil {
			return rep, err
		}
		k := [2]string{w.username, w.domain}
		if _, dup := wanted[k]; dup {
			return rep, fmt.Errorf("%w: %s@%s listed twice", ErrInvalid, w.username, w.domain)
		}
		wanted[k] = w
		if !slices.Contains(domains, w.domain) {
			domains = append(domains, w.domain)
		}
	}

	have := make(map[[2]string]row)
	for _, d := range domains {
		if err := p.scan(ctx, d, have); err != nil {
			return rep, err
		}
	}

	var writes []row
	for k, w := range wanted {
		cur, ok := have[k]
		switch {
		case !ok:
			rep.Added++
			writes = append(writes, w)
		case cur.ha1 != w.ha1 || cur.ha1b != w.ha1b || cur.password != "":
			rep.Updated++
			writes = append(writes, w)
		default:
			rep.Unchanged++
		}
	}
	var unknown []row
	for k, r := range have {
		if _, ok := wanted[k]; !ok {
			unknown = append(unknown, r)
		}
	}
	slices.SortFunc(unknown, func(a, b row) int {
		return strings.Compare(a.domain+"\x00"+a.username, b.domain+"\x00"+b.username)
	})
	for _, r := range unknown {
		rep.Unknown = append(rep.Unknown, p.label(r))
	}

	if len(writes) > 0 || (p.remove && len(unknown) > 0) {
		tx, err := p.db.BeginTx(ctx, nil)
		if err != nil {
			return Report{}, fmt.Errorf("sip: begin: %w", err)
		}
		defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
		for _, w := range writes {
			if err := writeRow(ctx, tx, w); err != nil {
				return Report{}, err
			}
		}
		if p.remove {
			for _, r := range unknown {
				if err := deleteRow(ctx, tx, r.username, r.domain); err != nil {
					return Report{}, err
				}
			}
		}
		if err := tx.Commit(); err != nil {
			return Report{}, fmt.Errorf("sip: commit: %w", err)
		}
	}

	var rpcErrs []error
	if p.remove {
		for _, r := range unknown {
			rep.Removed = append(rep.Removed, p.label(r))
			if err := p.dropRegistrations(ctx, r.username, r.domain); err != nil {
				rpcErrs = append(rpcErrs, err)
			}
		}
	}
	p.log.InfoContext(ctx, "sip subscribers reconciled", "added", rep.Added, "updated", rep.Updated,
		"unchanged", rep.Unchanged, "unknown", len(rep.Unknown), "removed", len(rep.Removed))
	return rep, errors.Join(rpcErrs...)
}

func (p *Provisioner) scan(ctx context.Context, domain string, into map[[2]string]row) error {
	rows, err := p.db.QueryContext(ctx,
		`SELECT username, domain, password, ha1, ha1b FROM subscriber WHERE domain = $1`, domain)
	if err != nil {
		return fmt.Errorf("sip: list subscribers: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.username, &r.domain, &r.password, &r.ha1, &r.ha1b); err != nil {
			return fmt.Errorf("sip: list subscribers: %w", err)
		}
		into[[2]string{r.username, r.domain}] = r
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sip: list subscribers: %w", err)
	}
	return nil
}

func (p *Provisioner) label(r row) string {
	if r.domain == p.domain {
		return r.username
	}
	return r.username + "@" + r.domain
}
