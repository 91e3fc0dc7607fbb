package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
)

// Migrations are embedded SQL files named NNNN_name.sql (both flavours) or
// NNNN_name.FLAVOUR.sql (FLAVOUR is sqlite or postgres). For each version the
// flavour's own file wins over the shared one; a version with files for the
// other flavour only is a no-op here but is still recorded, so versions stay
// one sequence. Each migration runs in its own transaction together with its
// row in schema_migrations; on PostgreSQL a session advisory lock keeps
// instances that start together from racing.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationLockKey is the pg_advisory_lock key of the migration runner.
const migrationLockKey = 0x5357_4244_4d49_4752 // "SWBDMIGR"

type migration struct {
	version int
	name    string
	sql     string // "" = nothing to do in this flavour
}

// migrations lists the migrations of one flavour in version order.
func migrations(flavourName string) ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	type pick struct {
		m        migration
		specific bool
	}
	byVersion := map[int]*pick{}
	for _, e := range entries {
		base := strings.TrimSuffix(e.Name(), ".sql")
		num, rest, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("sqlstore: migration file %q: want NNNN_name[.flavour].sql", e.Name())
		}
		name, fl, hasFlavour := strings.Cut(rest, ".")
		if hasFlavour && fl != flavourSQLite && fl != flavourPostgres {
			return nil, fmt.Errorf("sqlstore: migration file %q: unknown flavour %q", e.Name(), fl)
		}
		p := byVersion[v]
		if p == nil {
			p = &pick{m: migration{version: v, name: name}}
			byVersion[v] = p
		}
		if p.m.name != name {
			return nil, fmt.Errorf("sqlstore: migration %d has two names: %q and %q", v, p.m.name, name)
		}
		if hasFlavour && fl != flavourName {
			continue
		}
		if p.specific && hasFlavour {
			return nil, fmt.Errorf("sqlstore: migration %d: two files for %s", v, flavourName)
		}
		if p.specific && !hasFlavour {
			continue // the flavour's own file wins
		}
		b, err := migrationFiles.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		p.m.sql = string(b)
		p.specific = hasFlavour
	}
	out := make([]migration, 0, len(byVersion))
	for _, p := range byVersion {
		out = append(out, p.m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("sqlstore: migration versions must be 1..n without gaps; missing %d", i+1)
		}
	}
	return out, nil
}

// migrate applies every migration not yet recorded in schema_migrations.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := migrations(s.fl.name)
	if err != nil {
		return err
	}
	conn, err := s.w.Conn(ctx)
	if err != nil {
		return fmt.Errorf("sqlstore: migrate: %w", err)
	}
	defer conn.Close()
	if s.fl.name == flavourPostgres {
		if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, int64(migrationLockKey)); err != nil {
			return fmt.Errorf("sqlstore: migrate: lock: %w", err)
		}
		defer func() {
			// A fresh context: the lock must go even when ctx is done.
			_, _ = conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, int64(migrationLockKey))
		}()
	}
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at TEXT NOT NULL
	)`); err != nil {
		return fmt.Errorf("sqlstore: migrate: create schema_migrations: %w", err)
	}
	var newest sql.NullInt64
	if err := conn.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&newest); err != nil {
		return fmt.Errorf("sqlstore: migrate: %w", err)
	}
	if newest.Valid && int(newest.Int64) > len(ms) {
		return fmt.Errorf("sqlstore: database schema version %d is newer than this binary knows (%d); upgrade Switchboard", newest.Int64, len(ms))
	}
	for _, m := range ms {
		applied, err := s.applyMigration(ctx, conn, m)
		if err != nil {
			return err
		}
		if applied {
			s.logger.InfoContext(ctx, "applied database migration", "version", m.version, "name", m.name, "flavour", s.fl.name)
		}
	}
	return nil
}

// applyMigration runs one migration in its own transaction unless it is
// already recorded (checked inside the transaction, under the write lock).
func (s *Store) applyMigration(ctx context.Context, conn *sql.Conn, m migration) (bool, error) {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("sqlstore: migration %d: begin: %w", m.version, err)
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = $1`, m.version).Scan(&n); err != nil {
		return false, fmt.Errorf("sqlstore: migration %d: %w", m.version, err)
	}
	if n > 0 {
		return false, nil
	}
	if strings.TrimSpace(m.sql) != "" {
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return false, fmt.Errorf("sqlstore: migration %d (%s): %w", m.version, m.name, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
		m.version, m.name, now().Format(tsLayout)); err != nil {
		return false, fmt.Errorf("sqlstore: migration %d: record: %w", m.version, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("sqlstore: migration %d: commit: %w", m.version, err)
	}
	return true, nil
}

// SchemaVersion is the newest migration version this binary knows.
func SchemaVersion() int {
	ms, err := migrations(flavourSQLite)
	if err != nil {
		return 0
	}
	return len(ms)
}
