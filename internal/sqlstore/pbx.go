package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/switchboard-pbx/switchboard/internal/directory"
)

const pbxCols = `id, name, max_extensions, time_zone, created_at`

type rowScanner interface{ Scan(dest ...any) error }

func scanPBX(r rowScanner) (directory.PBX, error) {
	var p directory.PBX
	err := r.Scan(&p.ID, &p.Name, &p.MaxExtensions, &p.TimeZone, timeCol{&p.CreatedAt})
	return p, err
}

func validatePBX(p *directory.PBX) error {
	if strings.TrimSpace(p.ID) == "" {
		return &directory.FieldError{Field: "id", Code: "required", Reason: "is required"}
	}
	if len(p.ID) > 64 {
		return &directory.FieldError{Field: "id", Code: "invalid", Reason: "must be at most 64 characters"}
	}
	if p.MaxExtensions < 0 {
		return &directory.FieldError{Field: "maxExtensions", Code: "invalid", Reason: "must not be negative (0 = unlimited)"}
	}
	return nil
}

// EnsurePBX creates the PBX if it does not exist and returns the stored one.
// An empty name defaults to the id and an empty time zone to UTC;
// MaxExtensions 0 means no limit.
func (s *Store) EnsurePBX(ctx context.Context, p directory.PBX) (directory.PBX, error) {
	if p.Name == "" {
		p.Name = p.ID
	}
	if p.TimeZone == "" {
		p.TimeZone = "UTC"
	}
	if err := validatePBX(&p); err != nil {
		return directory.PBX{}, err
	}
	var out directory.PBX
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO pbx (`+pbxCols+`) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING`,
			p.ID, p.Name, p.MaxExtensions, p.TimeZone, s.fl.ts(now())); err != nil {
			return fmt.Errorf("sqlstore: ensure pbx: %w", err)
		}
		var err error
		out, err = scanPBX(tx.QueryRowContext(ctx, `SELECT `+pbxCols+` FROM pbx WHERE id = $1`, p.ID))
		return err
	})
	return out, err
}

// GetPBX returns one PBX or store.ErrNotFound.
func (s *Store) GetPBX(ctx context.Context, id string) (directory.PBX, error) {
	p, err := scanPBX(s.r.QueryRowContext(ctx, `SELECT `+pbxCols+` FROM pbx WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return p, notFound("pbx", id)
	}
	return p, err
}

// ListPBXs lists every PBX by id.
func (s *Store) ListPBXs(ctx context.Context) ([]directory.PBX, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+pbxCols+` FROM pbx ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []directory.PBX
	for rows.Next() {
		p, err := scanPBX(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// UpdatePBX changes a PBX through fn in one transaction (ID and CreatedAt are kept).
func (s *Store) UpdatePBX(ctx context.Context, id string, fn func(*directory.PBX) error) (directory.PBX, error) {
	var out directory.PBX
	err := s.tx(ctx, func(tx *sql.Tx) error {
		old, err := lockPBX(ctx, tx, s.fl, id)
		if err != nil {
			return err
		}
		p := old
		if err := fn(&p); err != nil {
			return err
		}
		p.ID, p.CreatedAt = old.ID, old.CreatedAt
		if err := validatePBX(&p); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE pbx SET name = $2, max_extensions = $3, time_zone = $4 WHERE id = $1`,
			p.ID, p.Name, p.MaxExtensions, p.TimeZone); err != nil {
			return err
		}
		out = p
		return nil
	})
	return out, err
}

// DeletePBX removes the PBX and everything it owns (records cascade; the
// settings, audit entries and admins of the PBX are deleted with it).
func (s *Store) DeletePBX(ctx context.Context, id string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := lockPBX(ctx, tx, s.fl, id); err != nil {
			return err
		}
		for _, q := range []string{
			`DELETE FROM setting WHERE pbx_id = $1`,
			`DELETE FROM audit_log WHERE pbx_id = $1`,
			`DELETE FROM admin WHERE pbx_id = $1`,
			`DELETE FROM pbx WHERE id = $1`,
		} {
			if _, err := tx.ExecContext(ctx, q, id); err != nil {
				return fmt.Errorf("sqlstore: delete pbx: %w", err)
			}
		}
		return nil
	})
}

// lockPBX loads the PBX inside tx, locking its row on PostgreSQL so that
// writes counted against its limits (capacity, group cap) are serialised.
func lockPBX(ctx context.Context, tx *sql.Tx, fl flavour, id string) (directory.PBX, error) {
	p, err := scanPBX(tx.QueryRowContext(ctx, `SELECT `+pbxCols+` FROM pbx WHERE id = $1`+fl.forUpdate, id))
	if errors.Is(err, sql.ErrNoRows) {
		return p, notFound("pbx", id)
	}
	return p, err
}
