package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// --- admins ---

const adminCols = `id, pbx_id, username, password_hash, must_change, created_at`

func scanAdmin(r rowScanner) (*store.Admin, error) {
	var a store.Admin
	err := r.Scan(&a.ID, &a.PBXID, &a.Username, &a.PasswordHash, &a.MustChange, timeCol{&a.CreatedAt})
	return &a, err
}

func validateAdmin(a *store.Admin) error {
	if strings.TrimSpace(a.Username) == "" {
		return &directory.FieldError{Field: "username", Code: "required", Reason: "is required"}
	}
	if len(a.Username) > 128 || strings.ContainsAny(a.Username, "\x00\r\n\t ") {
		return &directory.FieldError{Field: "username", Code: "invalid", Reason: "must be at most 128 characters without spaces or control characters"}
	}
	return nil
}

func checkUsername(ctx context.Context, tx *sql.Tx, a *store.Admin) error {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM admin WHERE username_lower = $1 AND id <> $2`, strings.ToLower(a.Username), a.ID).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return &store.ConflictError{Field: "username", Reason: fmt.Sprintf("username %q is already taken", a.Username)}
	}
	return nil
}

// CreateAdmin assigns ID and CreatedAt and stores a; usernames are unique
// case-insensitively across all PBXs (*store.ConflictError).
func (s *Store) CreateAdmin(ctx context.Context, a *store.Admin) error {
	c := *a
	if err := validateAdmin(&c); err != nil {
		return err
	}
	c.ID, c.CreatedAt = uuid.NewString(), now()
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := checkUsername(ctx, tx, &c); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO admin (id, pbx_id, username, username_lower, password_hash, must_change, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			c.ID, c.PBXID, c.Username, strings.ToLower(c.Username), c.PasswordHash, c.MustChange, s.fl.ts(c.CreatedAt))
		return err
	})
	if err != nil {
		return err
	}
	*a = c
	return nil
}

// GetAdminByUsername finds an admin by username (case-insensitive) or store.ErrNotFound.
func (s *Store) GetAdminByUsername(ctx context.Context, username string) (*store.Admin, error) {
	a, err := scanAdmin(s.r.QueryRowContext(ctx, `SELECT `+adminCols+` FROM admin WHERE username_lower = $1`, strings.ToLower(username)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("admin", username)
	}
	if err != nil {
		return nil, err
	}
	return a, nil
}

// UpdateAdmin changes an admin through fn (ID and CreatedAt are kept).
func (s *Store) UpdateAdmin(ctx context.Context, id string, fn func(*store.Admin) error) (*store.Admin, error) {
	var out *store.Admin
	err := s.tx(ctx, func(tx *sql.Tx) error {
		old, err := scanAdmin(tx.QueryRowContext(ctx, `SELECT `+adminCols+` FROM admin WHERE id = $1`+s.fl.forUpdate, id))
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("admin", id)
		}
		if err != nil {
			return err
		}
		a := *old
		if err := fn(&a); err != nil {
			return err
		}
		a.ID, a.CreatedAt = old.ID, old.CreatedAt
		if err := validateAdmin(&a); err != nil {
			return err
		}
		if err := checkUsername(ctx, tx, &a); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE admin SET pbx_id = $2, username = $3, username_lower = $4, password_hash = $5, must_change = $6 WHERE id = $1`,
			a.ID, a.PBXID, a.Username, strings.ToLower(a.Username), a.PasswordHash, a.MustChange); err != nil {
			return err
		}
		out = &a
		return nil
	})
	return out, err
}

// CountAdmins counts every admin account.
func (s *Store) CountAdmins(ctx context.Context) (int, error) {
	var n int
	err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM admin`).Scan(&n)
	return n, err
}

// --- audit ---

// AppendAudit appends an entry (At defaults to now; the id is assigned).
func (s *Store) AppendAudit(ctx context.Context, e store.AuditEntry) error {
	if e.At.IsZero() {
		e.At = now()
	}
	if e.Action == "" {
		return &directory.FieldError{Field: "action", Code: "required", Reason: "is required"}
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO audit_log (pbx_id, at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5, $6)`,
			e.PBXID, s.fl.ts(e.At), e.Actor, e.Action, e.Target, e.Detail)
		return err
	})
}

// ListAudit lists the PBX's entries newest first, starting below id before
// (0 = from the newest); limit defaults to 100, at most 1000.
func (s *Store) ListAudit(ctx context.Context, pbx string, before int64, limit int) ([]store.AuditEntry, error) {
	limit = clampLimit(limit)
	query := `SELECT id, pbx_id, at, actor, action, target, detail FROM audit_log WHERE pbx_id = $1`
	args := []any{pbx}
	if before > 0 {
		query += ` AND id < $2`
		args = append(args, before)
	}
	args = append(args, limit)
	query += fmt.Sprintf(` ORDER BY id DESC LIMIT $%d`, len(args))
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []store.AuditEntry{}
	for rows.Next() {
		var e store.AuditEntry
		if err := rows.Scan(&e.ID, &e.PBXID, timeCol{&e.At}, &e.Actor, &e.Action, &e.Target, &e.Detail); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// --- settings ---

// GetSetting returns a stored value or store.ErrNotFound.
func (s *Store) GetSetting(ctx context.Context, pbx, key string) ([]byte, error) {
	var v []byte
	err := s.r.QueryRowContext(ctx, `SELECT value FROM setting WHERE pbx_id = $1 AND key = $2`, pbx, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("setting", key)
	}
	if v == nil && err == nil {
		v = []byte{}
	}
	return v, err
}

// UpdateSetting calls fn with the stored value (nil when unset) and stores
// what it returns (nil deletes), in one transaction serialised per key.
func (s *Store) UpdateSetting(ctx context.Context, pbx, key string, fn func(old []byte) ([]byte, error)) error {
	return s.UpdateSettingFenced(ctx, pbx, key, nil, fn)
}

// UpdateSettingFenced is UpdateSetting under a fence (nil: none): the
// fence's setting is locked and checked first, in the same transaction.
func (s *Store) UpdateSettingFenced(ctx context.Context, pbx, key string, fence *store.Fence, fn func(old []byte) ([]byte, error)) error {
	if key == "" {
		return &directory.FieldError{Field: "key", Code: "required", Reason: "is required"}
	}
	if fence != nil && fence.Key == key {
		return errors.New("sqlstore: a setting cannot fence itself")
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.checkFence(ctx, tx, pbx, fence); err != nil {
			return err
		}
		old, err := s.lockedSetting(ctx, tx, pbx, key)
		if err != nil {
			return err
		}
		v, err := fn(old)
		if err != nil {
			return err
		}
		return s.putSetting(ctx, tx, pbx, key, v)
	})
}

// putSetting stores v under key (nil deletes); the caller holds the key's lock.
func (s *Store) putSetting(ctx context.Context, tx *sql.Tx, pbx, key string, v []byte) error {
	if v == nil {
		_, err := tx.ExecContext(ctx, `DELETE FROM setting WHERE pbx_id = $1 AND key = $2`, pbx, key)
		return err
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO setting (pbx_id, key, value, updated_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (pbx_id, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
		pbx, key, v, s.fl.ts(now()))
	return err
}

// writeSettings stores a bulk write's settings in its transaction, in key
// order (so two writers lock shared keys in the same order).
func (s *Store) writeSettings(ctx context.Context, tx *sql.Tx, pbx string, m map[string][]byte) error {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if k == "" {
			return &directory.FieldError{Field: "key", Code: "required", Reason: "is required"}
		}
		if err := s.fl.lockKey(ctx, tx, "setting/"+pbx+"/"+k); err != nil {
			return err
		}
		if err := s.putSetting(ctx, tx, pbx, k, m[k]); err != nil {
			return err
		}
	}
	return nil
}

// lockedSetting takes the setting's transaction lock (the one UpdateSetting
// serialises on; SQLite's writes are serialised already) and returns its
// value as committed now: nil when unset, never shared with the driver.
// Under READ COMMITTED the SELECT after the lock sees every write of the
// key that committed before it.
func (s *Store) lockedSetting(ctx context.Context, tx *sql.Tx, pbx, key string) ([]byte, error) {
	if err := s.fl.lockKey(ctx, tx, "setting/"+pbx+"/"+key); err != nil {
		return nil, err
	}
	var v []byte
	err := tx.QueryRowContext(ctx, `SELECT value FROM setting WHERE pbx_id = $1 AND key = $2`, pbx, key).Scan(&v)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, err
	case v == nil:
		return []byte{}, nil
	}
	return slices.Clone(v), nil
}

// checkFence runs a write's fence (nil: none) inside its transaction: the
// fence's setting stays locked until the write commits or rolls back, so an
// UpdateSetting of that key (a lease taken over) lands before or after the
// whole write, never in between.
func (s *Store) checkFence(ctx context.Context, tx *sql.Tx, pbx string, f *store.Fence) error {
	if f == nil {
		return nil
	}
	if f.Key == "" || f.Check == nil {
		return errors.New("sqlstore: a fence needs a key and a check")
	}
	v, err := s.lockedSetting(ctx, tx, pbx, f.Key)
	if err != nil {
		return err
	}
	return f.Check(v)
}

// ListSettings returns the PBX's settings whose key starts with prefix.
func (s *Store) ListSettings(ctx context.Context, pbx, prefix string) (map[string][]byte, error) {
	// The prefix is matched in SQL (substr counts characters on both
	// flavours): the values of other keys (run records) never travel.
	rows, err := s.r.QueryContext(ctx, `SELECT key, value FROM setting WHERE pbx_id = $1 AND substr(key, 1, $2) = $3`,
		pbx, utf8.RuneCountInString(prefix), prefix)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		var k string
		var v []byte
		if err := rows.Scan(&k, &v); err != nil {
			return nil, err
		}
		if strings.HasPrefix(k, prefix) {
			if v == nil {
				v = []byte{}
			}
			out[k] = v
		}
	}
	return out, rows.Err()
}
