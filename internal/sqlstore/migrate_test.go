package sqlstore

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

func TestMigrationsParse(t *testing.T) {
	lite, err := migrations(flavourSQLite)
	if err != nil {
		t.Fatal(err)
	}
	pg, err := migrations(flavourPostgres)
	if err != nil {
		t.Fatal(err)
	}
	if len(lite) == 0 || len(lite) != len(pg) {
		t.Fatalf("sqlite has %d migrations, postgres %d", len(lite), len(pg))
	}
	for i := range lite {
		if lite[i].version != i+1 || pg[i].version != i+1 || lite[i].name != pg[i].name {
			t.Fatalf("migration %d: sqlite %d %s, postgres %d %s", i, lite[i].version, lite[i].name, pg[i].version, pg[i].name)
		}
	}
	if strings.Contains(lite[0].sql, "TIMESTAMPTZ") || !strings.Contains(pg[0].sql, "TIMESTAMPTZ") {
		t.Fatal("each flavour must get its own 0001 file")
	}
	if SchemaVersion() != len(lite) {
		t.Fatalf("SchemaVersion = %d", SchemaVersion())
	}
}

func TestMigrateIdempotentAndRefusesNewerSchema(t *testing.T) {
	ctx := context.Background()
	url := "sqlite:" + filepath.Join(t.TempDir(), "m.db")
	s, err := Open(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(ctx, url, nil) // again: nothing to apply
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.w.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations`).Scan(&n); err != nil || n != SchemaVersion() {
		t.Fatalf("schema_migrations has %d rows, %v", n, err)
	}
	if _, err := s.w.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 'x')`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err := Open(ctx, url, nil); err == nil || !strings.Contains(err.Error(), "newer") {
		if s != nil {
			s.Close()
		}
		t.Fatalf("Open of a newer schema: %v", err)
	}
}

// TestQueryPlansUseIndexes keeps the hot queries on their indexes (SQLite).
func TestQueryPlansUseIndexes(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "p.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tc := range []struct{ query, index string }{
		{`SELECT id FROM extension WHERE pbx_id = $1 AND sort_key > $2 ORDER BY sort_key LIMIT 101`, "extension_number_uq"},
		{`SELECT id FROM extension WHERE pbx_id = $1 AND search LIKE $2 ESCAPE '\' ORDER BY sort_key LIMIT 101`, "extension_number_uq"},
		{`SELECT id FROM extension WHERE pbx_id = $1 AND email_lower = $2 AND email_lower <> ''`, "extension_email_uq"},
		{`SELECT id FROM extension WHERE pbx_id = $1 AND entra_id = $2 AND entra_id <> ''`, "extension_entra_idx"},
		{`SELECT id FROM contact WHERE pbx_id = $1 AND phonebook_id = $2 AND (sort_key > $3 OR (sort_key = $3 AND id > $4)) ORDER BY sort_key, id LIMIT 101`, "contact_phonebook_idx"},
		{`SELECT m.group_id FROM ext_group_member m JOIN ext_group g ON g.id = m.group_id WHERE g.pbx_id = $1`, "ext_group_name_uq"},
		{`SELECT id FROM contact WHERE pbx_id = $1 AND (extension_id = $2 OR phonebook_id IN (SELECT v.phonebook_id FROM phonebook_visibility v WHERE v.pbx_id = $1 AND (v.kind = 'everyone' OR (v.kind = 'extension' AND v.target_id = $2) OR (v.kind = 'group' AND v.target_id IN (SELECT m.group_id FROM ext_group_member m WHERE m.extension_id = $2))))) AND (sort_key > $3 OR (sort_key = $3 AND id > $4)) ORDER BY sort_key, id LIMIT 101`, "contact_pbx_idx"},
		{`SELECT id FROM extension WHERE pbx_id = $1 AND id = $2`, "sqlite_autoindex_extension_1"},
		{`DELETE FROM extension WHERE id = $2 AND pbx_id = $1`, "sqlite_autoindex_extension_1"},
		{`SELECT id FROM contact WHERE pbx_id = $1 AND id = $2`, "sqlite_autoindex_contact_1"},
		{`SELECT number FROM extension WHERE pbx_id = $1 AND sort_key IN (?,?,?) LIMIT 1`, "extension_number_uq"},
		{`SELECT id, pbx_id FROM extension WHERE id IN (?,?,?)`, "sqlite_autoindex_extension_1"},
		{`SELECT id FROM audit_log WHERE pbx_id = $1 AND id < $2 ORDER BY id DESC LIMIT 100`, "audit_log_pbx_idx"},
	} {
		var args []any
		for i := range 9 {
			if strings.Contains(tc.query, fmt.Sprintf("$%d", i+1)) {
				args = append(args, "x")
			}
		}
		for range strings.Count(tc.query, "?") {
			args = append(args, "x")
		}
		rows, err := s.w.QueryContext(ctx, `EXPLAIN QUERY PLAN `+tc.query, args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		p := strings.Join(plan, "; ")
		if !strings.Contains(p, tc.index) || strings.Contains(p, "TEMP B-TREE") {
			t.Errorf("%s\nplan: %s\nwant index %s without a sort", tc.query, p, tc.index)
		}
	}
}
