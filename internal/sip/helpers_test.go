package sip

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// ddl reads the Kamailio DDL shipped in testdata ("sqlite" or "postgres"), standard first
// (it creates the version table), as single statements.
func ddl(t testing.TB, flavour string) []string {
	t.Helper()
	var out []string
	for _, f := range []string{"standard-create.sql", "auth_db-create.sql"} {
		b, err := os.ReadFile(filepath.Join("testdata", flavour+"-"+f))
		if err != nil {
			t.Fatal(err)
		}
		for stmt := range strings.SplitSeq(string(b), ";") {
			if s := strings.TrimSpace(stmt); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

func execAll(t testing.TB, db *sql.DB, stmts []string) {
	t.Helper()
	for _, s := range stmts {
		if _, err := db.ExecContext(context.Background(), s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// newSQLiteDB creates a Kamailio SQLite database from the shipped DDL and returns its
// DBURL, its file and a direct handle for assertions.
func newSQLiteDB(t testing.TB) (dbURL, path string, raw *sql.DB) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "kamailio.sqlite")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	execAll(t, db, ddl(t, "sqlite"))
	return "sqlite:" + path, path, db
}

func randName(prefix string) string {
	var b [6]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// testDatabaseURL returns TEST_DATABASE_URL or skips: CI always sets it.
func testDatabaseURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("TEST_DATABASE_URL")
	if u == "" {
		t.Skip("TEST_DATABASE_URL is empty; the PostgreSQL variant needs a throwaway cluster")
	}
	return u
}

// withQuery returns u with query parameter k=v set.
func withQuery(t testing.TB, u, k, v string) string {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	q := pu.Query()
	q.Set(k, v)
	pu.RawQuery = q.Encode()
	return pu.String()
}

// newPostgresSchema creates the Kamailio tables in a fresh schema of TEST_DATABASE_URL and
// returns a DBURL whose search_path points at it; the schema is dropped afterwards.
func newPostgresSchema(t testing.TB) (dbURL string, raw *sql.DB) {
	t.Helper()
	base := testDatabaseURL(t)
	schema := randName("sip_test_")
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	if _, err := admin.Exec(`CREATE SCHEMA ` + schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, `DROP SCHEMA `+schema+` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	dbURL = withQuery(t, base, "search_path", schema)
	raw, err = sql.Open("pgx", dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	execAll(t, raw, ddl(t, "postgres"))
	return dbURL, raw
}

// fakeCtl is a jsonrpcs datagram server that records requests and answers {}.
type fakeCtl struct {
	addr string
	mu   sync.Mutex
	reqs []rpcRequest
}

func newFakeCtl(t testing.TB) *fakeCtl {
	t.Helper()
	dir, err := os.MkdirTemp("", "sbctl") // short: unix socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "rpc.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	f := &fakeCtl{addr: "unix:" + path}
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := conn.ReadFromUnix(buf)
			if err != nil {
				return
			}
			var req rpcRequest
			if err := json.Unmarshal(buf[:n], &req); err != nil {
				continue
			}
			f.mu.Lock()
			f.reqs = append(f.reqs, req)
			f.mu.Unlock()
			resp, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "result": map[string]any{}, "id": req.ID})
			conn.WriteToUnix(resp, from)
		}
	}()
	return f
}

// calls returns the requests seen so far as "method param param".
func (f *fakeCtl) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, r := range f.reqs {
		s := r.Method
		for _, p := range r.Params {
			s += " " + p
		}
		out = append(out, s)
	}
	return out
}
