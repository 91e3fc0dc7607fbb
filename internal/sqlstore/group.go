package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

const groupCols = `id, pbx_id, name, source, entra_id, created_at, updated_at`

func scanGroup(r rowScanner) (*directory.Group, error) {
	var g directory.Group
	var source string
	if err := r.Scan(&g.ID, &g.PBXID, &g.Name, &source, &g.EntraID, timeCol{&g.CreatedAt}, timeCol{&g.UpdatedAt}); err != nil {
		return nil, err
	}
	g.Source = directory.Source(source)
	g.Members = []string{}
	return &g, nil
}

// prepareGroup fills defaults, validates, and sorts and de-duplicates members.
func prepareGroup(g *directory.Group) error {
	if g.Source == "" {
		g.Source = directory.SourceLocal
	}
	if err := directory.ValidateName("name", g.Name); err != nil {
		return err
	}
	if g.Source != directory.SourceLocal && g.Source != directory.SourceEntra {
		return &directory.FieldError{Field: "source", Code: "invalid", Reason: "must be local or entra"}
	}
	m := slices.Clone(g.Members)
	slices.Sort(m)
	g.Members = slices.Compact(m)
	if g.Members == nil {
		g.Members = []string{}
	}
	return nil
}

// checkGroupName refuses a name another group of the PBX has (case-insensitive).
func checkGroupName(ctx context.Context, tx *sql.Tx, pbx string, g *directory.Group) error {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM ext_group WHERE pbx_id = $1 AND name_lower = $2 AND id <> $3`,
		pbx, strings.ToLower(g.Name), g.ID).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return &store.ConflictError{Field: "name", Reason: fmt.Sprintf("an extension group named %q already exists", g.Name)}
	}
	return nil
}

// checkMembers refuses member ids that are not extensions of the PBX. The
// ids are looked up by primary key and the PBX compared here, which keeps
// the lookup on the primary key for any planner.
func (s *Store) checkMembers(ctx context.Context, tx *sql.Tx, pbx string, ids []string) error {
	const chunk = 500
	for start := 0; start < len(ids); start += chunk {
		part := ids[start:min(start+chunk, len(ids))]
		args := make([]any, 0, len(part))
		for _, id := range part {
			args = append(args, id)
		}
		rows, err := tx.QueryContext(ctx, `SELECT id, pbx_id FROM extension WHERE id IN (`+s.fl.params(1, len(part))+`)`, args...)
		if err != nil {
			return err
		}
		found := make(map[string]bool, len(part))
		for rows.Next() {
			var id, owner string
			if err := rows.Scan(&id, &owner); err != nil {
				rows.Close()
				return err
			}
			found[id] = owner == pbx
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, id := range part {
			if !found[id] {
				return &directory.FieldError{Field: "members", Code: "invalid", Reason: fmt.Sprintf("%q is not an extension of this PBX", id)}
			}
		}
	}
	return nil
}

// addMembers inserts memberships, up to 300 rows per statement.
func (s *Store) addMembers(ctx context.Context, tx *sql.Tx, pbx, groupID string, ids []string) error {
	const chunk = 300
	for start := 0; start < len(ids); start += chunk {
		part := ids[start:min(start+chunk, len(ids))]
		args := make([]any, 0, 3*len(part))
		for _, id := range part {
			args = append(args, groupID, id, pbx)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO ext_group_member (group_id, extension_id, pbx_id) VALUES `+s.fl.rows(1, len(part), 3), args...); err != nil {
			return err
		}
	}
	return nil
}

// CreateGroup assigns ID and timestamps and stores g: at most
// directory.MaxGroups per PBX (directory.ErrGroupLimit), a unique name
// (case-insensitive, *store.ConflictError) and members that are extensions
// of the PBX (*directory.FieldError on "members").
func (s *Store) CreateGroup(ctx context.Context, pbx string, g *directory.Group) error {
	c := *g
	if err := prepareGroup(&c); err != nil {
		return err
	}
	c.ID, c.PBXID = uuid.NewString(), pbx
	c.CreatedAt = now()
	c.UpdatedAt = c.CreatedAt
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := lockPBX(ctx, tx, s.fl, pbx); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM ext_group WHERE pbx_id = $1`, pbx).Scan(&n); err != nil {
			return err
		}
		if n >= directory.MaxGroups {
			return fmt.Errorf("%w: a PBX holds at most %d extension groups", directory.ErrGroupLimit, directory.MaxGroups)
		}
		if err := checkGroupName(ctx, tx, pbx, &c); err != nil {
			return err
		}
		if err := s.checkMembers(ctx, tx, pbx, c.Members); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO ext_group (id, pbx_id, name, name_lower, source, entra_id, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			c.ID, pbx, c.Name, strings.ToLower(c.Name), string(c.Source), c.EntraID, s.fl.ts(c.CreatedAt), s.fl.ts(c.UpdatedAt)); err != nil {
			return err
		}
		return s.addMembers(ctx, tx, pbx, c.ID, c.Members)
	})
	if err != nil {
		return err
	}
	*g = c
	return nil
}

// loadMembers returns the sorted member ids of a group.
func loadMembers(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, pbx, groupID string) ([]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT extension_id FROM ext_group_member WHERE pbx_id = $1 AND group_id = $2`, pbx, groupID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	slices.Sort(out)
	return out, rows.Err()
}

// GetGroup returns one group of the PBX with its members, or store.ErrNotFound.
func (s *Store) GetGroup(ctx context.Context, pbx, id string) (*directory.Group, error) {
	g, err := scanGroup(s.r.QueryRowContext(ctx, `SELECT `+groupCols+` FROM ext_group WHERE pbx_id = $1 AND id = $2`, pbx, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("extension group", id)
	}
	if err != nil {
		return nil, err
	}
	g.Members, err = loadMembers(ctx, s.r, pbx, id)
	return g, err
}

// ListGroups lists the PBX's groups by name, with members.
func (s *Store) ListGroups(ctx context.Context, pbx string) ([]directory.Group, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+groupCols+` FROM ext_group WHERE pbx_id = $1 ORDER BY name_lower, id`, pbx)
	if err != nil {
		return nil, err
	}
	var out []directory.Group
	idx := map[string]int{}
	for rows.Next() {
		g, err := scanGroup(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		idx[g.ID] = len(out)
		out = append(out, *g)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return out, nil
	}
	mrows, err := s.r.QueryContext(ctx, `SELECT m.group_id, m.extension_id FROM ext_group_member m JOIN ext_group g ON g.id = m.group_id WHERE g.pbx_id = $1`, pbx)
	if err != nil {
		return nil, err
	}
	defer mrows.Close()
	for mrows.Next() {
		var gid, eid string
		if err := mrows.Scan(&gid, &eid); err != nil {
			return nil, err
		}
		if i, ok := idx[gid]; ok {
			out[i].Members = append(out[i].Members, eid)
		}
	}
	for i := range out {
		slices.Sort(out[i].Members)
	}
	return out, mrows.Err()
}

func (s *Store) lockGroup(ctx context.Context, tx *sql.Tx, pbx, id string) (*directory.Group, error) {
	g, err := scanGroup(tx.QueryRowContext(ctx, `SELECT `+groupCols+` FROM ext_group WHERE pbx_id = $1 AND id = $2`+s.fl.forUpdate, pbx, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("extension group", id)
	}
	if err != nil {
		return nil, err
	}
	g.Members, err = loadMembers(ctx, tx, pbx, id)
	return g, err
}

// UpdateGroup changes a group through fn in one transaction, with the rules
// of CreateGroup; member changes are applied as a difference.
func (s *Store) UpdateGroup(ctx context.Context, pbx, id string, fn func(*directory.Group) error) (*directory.Group, error) {
	var out *directory.Group
	err := s.tx(ctx, func(tx *sql.Tx) error {
		old, err := s.lockGroup(ctx, tx, pbx, id)
		if err != nil {
			return err
		}
		g := *old
		g.Members = slices.Clone(old.Members)
		if err := fn(&g); err != nil {
			return err
		}
		g.ID, g.PBXID, g.CreatedAt = old.ID, old.PBXID, old.CreatedAt
		if err := prepareGroup(&g); err != nil {
			return err
		}
		if err := checkGroupName(ctx, tx, pbx, &g); err != nil {
			return err
		}
		was := make(map[string]bool, len(old.Members))
		for _, m := range old.Members {
			was[m] = true
		}
		var added []string
		for _, m := range g.Members {
			if !was[m] {
				added = append(added, m)
			}
			delete(was, m)
		}
		if err := s.checkMembers(ctx, tx, pbx, added); err != nil {
			return err
		}
		g.UpdatedAt = now()
		if _, err := tx.ExecContext(ctx, `UPDATE ext_group SET name = $3, name_lower = $4, source = $5, entra_id = $6, updated_at = $7
			WHERE pbx_id = $1 AND id = $2`, pbx, id, g.Name, strings.ToLower(g.Name), string(g.Source), g.EntraID, s.fl.ts(g.UpdatedAt)); err != nil {
			return err
		}
		if len(was) > 0 {
			stmt, err := tx.PrepareContext(ctx, `DELETE FROM ext_group_member WHERE group_id = $1 AND extension_id = $2`)
			if err != nil {
				return err
			}
			defer stmt.Close()
			for m := range was {
				if _, err := stmt.ExecContext(ctx, id, m); err != nil {
					return err
				}
			}
		}
		if err := s.addMembers(ctx, tx, pbx, id, added); err != nil {
			return err
		}
		out = &g
		return nil
	})
	return out, err
}

// DeleteGroup deletes a group after check (may be nil) accepts it; its
// memberships and visibility grants go with it.
func (s *Store) DeleteGroup(ctx context.Context, pbx, id string, check func(*directory.Group) error) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		g, err := s.lockGroup(ctx, tx, pbx, id)
		if err != nil {
			return err
		}
		if check != nil {
			if err := check(g); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM phonebook_visibility WHERE pbx_id = $1 AND kind = 'group' AND target_id = $2`, pbx, id); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM ext_group WHERE pbx_id = $1 AND id = $2`, pbx, id)
		return err
	})
}
