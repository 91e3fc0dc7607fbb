package sqlstore_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"sync"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/sqlstore"
	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/storetest"
)

// pgDatabase creates a fresh database on the server TEST_DATABASE_URL points
// at (dropped when the test ends) and returns its url. It skips only when
// TEST_DATABASE_URL is empty; CI always sets it (.ci/start-postgres.sh).
func pgDatabase(t testing.TB) string {
	t.Helper()
	base := os.Getenv("TEST_DATABASE_URL")
	if base == "" {
		t.Skip("TEST_DATABASE_URL is not set (eval \"$(bash .ci/start-postgres.sh)\")")
	}
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "switchboard_test_" + hex.EncodeToString(b)
	if _, err := admin.ExecContext(context.Background(), `CREATE DATABASE `+name); err != nil {
		admin.Close()
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		defer admin.Close()
		if _, err := admin.ExecContext(context.Background(), `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

func openPG(t testing.TB, dbURL string) *sqlstore.Store {
	t.Helper()
	s, err := sqlstore.Open(context.Background(), dbURL, testLogger(t))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestPostgresConformance(t *testing.T) {
	dbURL := pgDatabase(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		s := openPG(t, dbURL)
		if s.Flavour() != "postgres" {
			t.Fatalf("flavour %s", s.Flavour())
		}
		return s
	})
}

// TestPostgresConcurrentOpen starts several stores on one empty database at
// once: the advisory lock lets exactly one run the migrations.
func TestPostgresConcurrentOpen(t *testing.T) {
	dbURL := pgDatabase(t)
	var wg sync.WaitGroup
	stores := make([]*sqlstore.Store, 4)
	errs := make([]error, 4)
	for i := range stores {
		wg.Go(func() { stores[i], errs[i] = sqlstore.Open(t.Context(), dbURL, testLogger(t)) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Open %d: %v", i, err)
		}
		defer stores[i].Close()
	}
	var n int
	if err := stores[0].DB().QueryRowContext(t.Context(), `SELECT COUNT(*) FROM schema_migrations`).Scan(&n); err != nil || n != sqlstore.SchemaVersion() {
		t.Fatalf("schema_migrations rows = %d, %v; want %d", n, err, sqlstore.SchemaVersion())
	}
	if _, err := stores[1].EnsurePBX(t.Context(), directory.PBX{ID: "p"}); err != nil {
		t.Fatal(err)
	}
}
