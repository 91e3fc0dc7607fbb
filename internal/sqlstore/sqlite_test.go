package sqlstore_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/sqlstore"
	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/storetest"
)

// testLogger logs to the test.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func openSQLite(t testing.TB, path string) *sqlstore.Store {
	t.Helper()
	s, err := sqlstore.Open(context.Background(), "sqlite:"+path, testLogger(t))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestSQLiteConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openSQLite(t, filepath.Join(t.TempDir(), "sub", "dir", "switchboard.db"))
	})
}

func TestSQLiteMemory(t *testing.T) {
	s, err := sqlstore.Open(t.Context(), "sqlite::memory:", testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.EnsurePBX(t.Context(), directory.PBX{ID: "p"}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateExtension(t.Context(), "p", &directory.Extension{Number: "1"}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.CountExtensions(t.Context(), "p"); err != nil || n != 1 {
		t.Fatalf("count = %d, %v", n, err)
	}
}

// TestSQLiteConcurrentWriters runs writers through two Stores (two pools,
// as two processes would) on one file: none may fail with SQLITE_BUSY.
func TestSQLiteConcurrentWriters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.db")
	a, b := openSQLite(t, path), openSQLite(t, path)
	ctx := t.Context()
	if _, err := a.EnsurePBX(ctx, directory.PBX{ID: "p"}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for w := range 8 {
		s := a
		if w%2 == 1 {
			s = b
		}
		wg.Go(func() {
			for i := range 25 {
				n := strconv.Itoa(w*1000 + i)
				if err := s.CreateExtension(ctx, "p", &directory.Extension{Number: "1" + n}); err != nil {
					errs <- err
					return
				}
				if err := s.ApplyExtensions(ctx, "p", store.ExtensionChanges{Create: []*directory.Extension{{Number: "2" + n}}}); err != nil {
					errs <- err
					return
				}
				if _, _, err := s.ListExtensions(ctx, "p", store.ExtensionQuery{Limit: 10}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent writer: %v", err)
	}
	if n, _ := a.CountExtensions(ctx, "p"); n != 400 {
		t.Fatalf("count = %d, want 400", n)
	}
}

func TestOpenBadURL(t *testing.T) {
	for _, u := range []string{"mysql://x", "sqlite:", "sqlite:/tmp/a?b.db", ""} {
		if s, err := sqlstore.Open(t.Context(), u, nil); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", u)
		}
	}
}
