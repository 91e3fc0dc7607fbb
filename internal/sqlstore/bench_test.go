package sqlstore_test

import (
	"path/filepath"
	"testing"

	"github.com/switchboard-pbx/switchboard/internal/storetest"
)

// go test ./internal/sqlstore -run '^$' -bench . -benchtime 3x
// (PostgreSQL runs when TEST_DATABASE_URL is set.)

func BenchmarkApplyExtensions100k(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) {
		storetest.BenchApplyExtensions(b, openSQLite(b, filepath.Join(b.TempDir(), "bench.db")), 100_000)
	})
	b.Run("postgres", func(b *testing.B) {
		storetest.BenchApplyExtensions(b, openPG(b, pgDatabase(b)), 100_000)
	})
}

func BenchmarkUpdateExtensions100k(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) {
		storetest.BenchUpdateExtensions(b, openSQLite(b, filepath.Join(b.TempDir(), "bench.db")), 100_000)
	})
	b.Run("postgres", func(b *testing.B) {
		storetest.BenchUpdateExtensions(b, openPG(b, pgDatabase(b)), 100_000)
	})
}

func BenchmarkDeleteExtensions100k(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) {
		storetest.BenchDeleteExtensions(b, openSQLite(b, filepath.Join(b.TempDir(), "bench.db")), 100_000)
	})
	b.Run("postgres", func(b *testing.B) {
		storetest.BenchDeleteExtensions(b, openPG(b, pgDatabase(b)), 100_000)
	})
}

func BenchmarkListExtensions100k(b *testing.B) {
	for _, search := range []string{"", "user1", "last99"} {
		name := "page"
		if search != "" {
			name = "search=" + search
		}
		b.Run("sqlite/"+name, func(b *testing.B) {
			storetest.BenchListExtensions(b, openSQLite(b, filepath.Join(b.TempDir(), "bench.db")), 100_000, search)
		})
		b.Run("postgres/"+name, func(b *testing.B) {
			storetest.BenchListExtensions(b, openPG(b, pgDatabase(b)), 100_000, search)
		})
	}
}
