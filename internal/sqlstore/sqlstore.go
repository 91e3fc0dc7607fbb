// Package sqlstore is the one SQL implementation of store.Store. It runs on
// SQLite (modernc.org/sqlite, pure Go) and PostgreSQL (pgx through
// database/sql) with the same SQL text: $1 placeholders, ON CONFLICT and
// RETURNING work on both; the few differences (column types, row locks,
// advisory locks, timestamp encoding) sit in a small flavour hook and in
// per-flavour migration files.
//
// Every write runs in one transaction. On SQLite all writes go through a
// pool of one connection with BEGIN IMMEDIATE (one writer, no SQLITE_BUSY
// between writers of this process; busy_timeout covers other processes),
// while reads use their own pool (WAL lets them run beside the writer). On
// PostgreSQL, read-modify-write locks the row (SELECT ... FOR NO KEY UPDATE,
// which foreign-key checks do not wait for), anything that counts toward a
// PBX limit locks the PBX row first, and large bulk creates use COPY.
//
// Migrations are embedded (migrations/*.sql) and applied by Open; see
// migrate.go for the file naming and locking.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/switchboard-pbx/switchboard/internal/store"
)

var _ store.Store = (*Store)(nil)

// Store keeps Switchboard's data in SQLite or PostgreSQL.
type Store struct {
	w      *sql.DB // writes (SQLite: one connection)
	r      *sql.DB // reads (may be w)
	fl     flavour
	logger *slog.Logger
}

// flavour names the SQL dialect and holds the few differences between them.
type flavour struct {
	name      string // "sqlite" or "postgres"
	forUpdate string // row lock suffix for read-modify-write selects
}

const (
	flavourSQLite   = "sqlite"
	flavourPostgres = "postgres"
)

// tsLayout is how timestamps are stored on SQLite: fixed width, so text order is time order.
const tsLayout = "2006-01-02T15:04:05.000000Z"

// ts encodes a timestamp for a query parameter.
func (f flavour) ts(t time.Time) any {
	t = t.UTC()
	if f.name == flavourSQLite {
		return t.Format(tsLayout)
	}
	return t
}

// lockKey takes a transaction-scoped lock on an arbitrary key (PostgreSQL
// advisory lock). SQLite needs none: its writes are serialised.
func (f flavour) lockKey(ctx context.Context, tx *sql.Tx, key string) error {
	if f.name != flavourPostgres {
		return nil
	}
	_, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, key)
	return err
}

// Open opens the store named by url and applies pending migrations:
// "sqlite:PATH" (the parent directory is created; "sqlite::memory:" is a
// private in-memory database on a single connection, for tests: there a
// closure passed to an Update method must not call the store) or
// "postgres://..." / "postgresql://...". A nil logger discards.
func Open(ctx context.Context, url string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var s *Store
	var err error
	switch {
	case strings.HasPrefix(url, "sqlite:"):
		s, err = openSQLite(strings.TrimPrefix(url, "sqlite:"), logger)
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		s, err = openPostgres(url, logger)
	default:
		return nil, fmt.Errorf("sqlstore: unsupported database url (want sqlite:PATH or postgres://...)")
	}
	if err != nil {
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func openSQLite(path string, logger *slog.Logger) (*Store, error) {
	if path == "" {
		return nil, errors.New("sqlstore: sqlite url needs a path")
	}
	if strings.ContainsRune(path, '?') {
		return nil, errors.New("sqlstore: sqlite path must not contain '?'")
	}
	const pragmas = "_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)"
	fl := flavour{name: flavourSQLite}
	if path == ":memory:" {
		db, err := sql.Open("sqlite", ":memory:?"+pragmas+"&_txlock=immediate")
		if err != nil {
			return nil, fmt.Errorf("sqlstore: open sqlite: %w", err)
		}
		// Every connection would be its own database: keep exactly one, forever.
		db.SetMaxOpenConns(1)
		db.SetMaxIdleConns(1)
		db.SetConnMaxLifetime(0)
		db.SetConnMaxIdleTime(0)
		return &Store{w: db, r: db, fl: fl, logger: logger}, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("sqlstore: create database folder: %w", err)
	}
	dsn := path + "?" + pragmas + "&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)"
	// The writer gets a large page cache (64 MiB) and in-memory temp
	// storage: a bulk sync then does not spill dirty pages mid-transaction.
	w, err := sql.Open("sqlite", dsn+"&_pragma=cache_size(-65536)&_pragma=temp_store(MEMORY)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlstore: open sqlite: %w", err)
	}
	// One writer: database/sql queues writers on this single connection
	// instead of letting SQLite answer SQLITE_BUSY.
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxIdleTime(0)
	w.SetConnMaxLifetime(0)
	r, err := sql.Open("sqlite", dsn+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlstore: open sqlite: %w", err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	return &Store{w: w, r: r, fl: fl, logger: logger}, nil
}

func openPostgres(url string, logger *slog.Logger) (*Store, error) {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: open postgres: %w", err)
	}
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(8)
	db.SetConnMaxIdleTime(5 * time.Minute)
	return &Store{w: db, r: db, fl: flavour{name: flavourPostgres, forUpdate: " FOR NO KEY UPDATE"}, logger: logger}, nil
}

// Flavour reports the SQL dialect in use: "sqlite" or "postgres".
func (s *Store) Flavour() string { return s.fl.name }

// DB returns the write pool, for tests and maintenance commands.
func (s *Store) DB() *sql.DB { return s.w }

// Close closes the database pools.
func (s *Store) Close() error {
	err := s.w.Close()
	if s.r != s.w {
		err = errors.Join(err, s.r.Close())
	}
	return err
}

// tx runs fn in one write transaction; fn's error rolls back and is returned
// (unique violations mapped to *store.ConflictError).
func (s *Store) tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlstore: begin: %w", err)
	}
	if pbx, f := store.FenceFrom(ctx); f != nil {
		if err := s.checkFence(ctx, tx, pbx, f); err != nil {
			_ = tx.Rollback()
			return err
		}
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return s.mapErr(err)
	}
	if err := tx.Commit(); err != nil {
		return s.mapErr(fmt.Errorf("sqlstore: commit: %w", err))
	}
	return nil
}

// txConn is tx with the connection the transaction runs on, for driver
// features database/sql does not expose (COPY on PostgreSQL, via conn.Raw).
func (s *Store) txConn(ctx context.Context, fn func(conn *sql.Conn, tx *sql.Tx) error) error {
	conn, err := s.w.Conn(ctx)
	if err != nil {
		return fmt.Errorf("sqlstore: connection: %w", err)
	}
	defer conn.Close()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlstore: begin: %w", err)
	}
	if pbx, f := store.FenceFrom(ctx); f != nil {
		if err := s.checkFence(ctx, tx, pbx, f); err != nil {
			_ = tx.Rollback()
			return err
		}
	}
	if err := fn(conn, tx); err != nil {
		_ = tx.Rollback()
		return s.mapErr(err)
	}
	if err := tx.Commit(); err != nil {
		return s.mapErr(fmt.Errorf("sqlstore: commit: %w", err))
	}
	return nil
}

// mapErr turns a unique violation the database reported into a
// *store.ConflictError naming the field (the pre-checks catch the usual
// cases; this catches races between transactions).
func (s *Store) mapErr(err error) error {
	var ce *store.ConflictError
	if errors.As(err, &ce) {
		return err
	}
	name, ok := uniqueViolation(err)
	if !ok {
		return err
	}
	field := "id"
	switch {
	case strings.Contains(name, "sort_key"), strings.Contains(name, "number"):
		field = "number"
	case strings.Contains(name, "email"):
		field = "email"
	case strings.Contains(name, "username"):
		field = "username"
	case strings.Contains(name, "name"):
		field = "name"
	}
	return &store.ConflictError{Field: field, Reason: "is already in use"}
}

// uniqueViolation reports whether err is a unique-constraint violation and
// which constraint (PostgreSQL) or columns (SQLite) it names.
func uniqueViolation(err error) (string, bool) {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.ConstraintName, pe.Code == "23505"
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		c := se.Code()
		if c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY {
			return se.Error(), true
		}
	}
	return "", false
}

// notFound wraps store.ErrNotFound with what was missing.
func notFound(kind, id string) error {
	return fmt.Errorf("%s %q: %w", kind, id, store.ErrNotFound)
}

// timeCol scans a timestamp from either flavour.
type timeCol struct{ t *time.Time }

func (c timeCol) Scan(v any) error {
	switch x := v.(type) {
	case time.Time:
		*c.t = x.UTC()
	case string:
		return c.parse(x)
	case []byte:
		return c.parse(string(x))
	case nil:
		*c.t = time.Time{}
	default:
		return fmt.Errorf("sqlstore: cannot scan %T as a timestamp", v)
	}
	return nil
}

func (c timeCol) parse(s string) error {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("sqlstore: bad timestamp %q: %w", s, err)
	}
	*c.t = t.UTC()
	return nil
}

// now is the store's clock: UTC, microsecond precision (what both databases keep).
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// likePattern turns a search text into a lower-cased LIKE substring pattern (escape '\').
func likePattern(s string) string {
	s = strings.ToLower(s)
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return "%" + r.Replace(s) + "%"
}

// params returns n placeholders numbered from start: "$start,...". On
// SQLite it returns anonymous "?" placeholders instead (they take the next
// number, so start must follow the statement's highest $N): SQLite looks
// named parameters up in a linear list, which makes binding a statement of
// thousands of "$N" quadratic.
func (f flavour) params(start, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		if f.name == flavourSQLite {
			b.WriteByte('?')
		} else {
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(start + i))
		}
	}
	return b.String()
}

// rows returns "(...),(...)" for rows rows of cols placeholders from $start.
func (f flavour) rows(start, rows, cols int) string {
	var b strings.Builder
	for i := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('(')
		b.WriteString(f.params(start+i*cols, cols))
		b.WriteByte(')')
	}
	return b.String()
}

// clampLimit applies the default and maximum page size.
func clampLimit(n int) int {
	if n <= 0 {
		return 100
	}
	return min(n, 1000)
}
