package sqlstore_test

import (
	"context"
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
	return storetest.PostgresDB(t, "switchboard_test_")
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
