package sip

import (
	"database/sql"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestDigestVectors(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, got, want string }{
		// RFC 2617 §3.5: HA1 of Mufasa / testrealm@host.com / "Circle Of Life".
		{"rfc2617", HA1("Mufasa", "testrealm@host.com", "Circle Of Life"), "939e7578ed9e3c518a452acee763bce9"},
		// pbx-target.md §2, the values Kamailio 5.6.3 accepted (md5sum of the same strings).
		{"ha1", HA1("1001", "pbx.local", "S3cret-1001"), "fef9f6ed1a8f883077ee66b72b1c8976"},
		{"ha1b", HA1B("1001", "pbx.local", "pbx.local", "S3cret-1001"), "a7c8d5048237f9de8a1f0da715e400aa"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %s, want %s", tt.name, tt.got, tt.want)
		}
	}
}

// dbFactory creates an empty Kamailio database (shipped DDL) and returns its DBURL and a
// direct handle for assertions.
type dbFactory func(t *testing.T) (dbURL string, raw *sql.DB)

func TestProvisionerSQLite(t *testing.T) {
	t.Parallel()
	testProvisioner(t, func(t *testing.T) (string, *sql.DB) {
		u, _, raw := newSQLiteDB(t)
		return u, raw
	})
}

func TestProvisionerPostgres(t *testing.T) {
	t.Parallel()
	testDatabaseURL(t)
	testProvisioner(t, newPostgresSchemaT)
}

func newPostgresSchemaT(t *testing.T) (string, *sql.DB) { return newPostgresSchema(t) }

const dom = "pbx.local"

type storedRow struct {
	id                                    int64
	username, domain, password, ha1, ha1b string
}

func rowsOf(t *testing.T, raw *sql.DB) []storedRow {
	t.Helper()
	rs, err := raw.QueryContext(t.Context(),
		`SELECT id, username, domain, password, ha1, ha1b FROM subscriber ORDER BY domain, username`)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	var out []storedRow
	for rs.Next() {
		var r storedRow
		if err := rs.Scan(&r.id, &r.username, &r.domain, &r.password, &r.ha1, &r.ha1b); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func insertRaw(t *testing.T, raw *sql.DB, user, domain, password, ha1, ha1b string) {
	t.Helper()
	if _, err := raw.ExecContext(t.Context(),
		`INSERT INTO subscriber (username, domain, password, ha1, ha1b) VALUES ($1, $2, $3, $4, $5)`,
		user, domain, password, ha1, ha1b); err != nil {
		t.Fatal(err)
	}
}

func testLogger(t *testing.T) *slog.Logger { return slog.New(slog.NewTextHandler(t.Output(), nil)) }

func openP(t *testing.T, cfg Config) *Provisioner {
	t.Helper()
	if cfg.Domain == "" {
		cfg.Domain = dom
	}
	cfg.Logger = testLogger(t)
	p, err := Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// noPlaintext fails when any stored column holds a secret.
func noPlaintext(t *testing.T, raw *sql.DB, secrets ...string) {
	t.Helper()
	for _, r := range rowsOf(t, raw) {
		if r.password != "" {
			t.Errorf("%s@%s: password column = %q, want empty", r.username, r.domain, r.password)
		}
		for _, s := range secrets {
			if strings.Contains(r.ha1+r.ha1b+r.username+r.domain, s) {
				t.Errorf("%s@%s: a secret is stored in clear", r.username, r.domain)
			}
		}
	}
}

// testProvisioner is the conformance suite every database flavour runs.
func testProvisioner(t *testing.T, newDB dbFactory) {
	t.Run("UpsertIdempotentAndRotation", func(t *testing.T) {
		t.Parallel()
		u, raw := newDB(t)
		p := openP(t, Config{DBURL: u})
		s := Subscriber{Username: "1001", Password: "S3cret-1001"}
		for range 3 {
			if err := p.Upsert(t.Context(), s); err != nil {
				t.Fatal(err)
			}
		}
		rows := rowsOf(t, raw)
		if len(rows) != 1 {
			t.Fatalf("rows = %+v, want one", rows)
		}
		first := rows[0]
		if first.username != "1001" || first.domain != dom ||
			first.ha1 != "fef9f6ed1a8f883077ee66b72b1c8976" || first.ha1b != "a7c8d5048237f9de8a1f0da715e400aa" {
			t.Fatalf("row = %+v", first)
		}

		s.Password = "N3w-secret-1001"
		if err := p.Upsert(t.Context(), s); err != nil {
			t.Fatal(err)
		}
		rows = rowsOf(t, raw)
		if len(rows) != 1 || rows[0].id != first.id {
			t.Fatalf("rotation rewrote the row set: %+v", rows)
		}
		if rows[0].ha1 != HA1("1001", dom, "N3w-secret-1001") || rows[0].ha1 == first.ha1 ||
			rows[0].ha1b != HA1B("1001", dom, dom, "N3w-secret-1001") || rows[0].ha1b == first.ha1b {
			t.Fatalf("digests after rotation = %+v", rows[0])
		}
		noPlaintext(t, raw, "S3cret-1001", "N3w-secret-1001")
	})

	t.Run("UpsertClearsPlainPassword", func(t *testing.T) {
		t.Parallel()
		u, raw := newDB(t)
		insertRaw(t, raw, "1001", dom, "pw-1001-x", HA1("1001", dom, "pw-1001-x"), HA1B("1001", dom, dom, "pw-1001-x"))
		p := openP(t, Config{DBURL: u})
		if err := p.Upsert(t.Context(), Subscriber{Username: "1001", Password: "pw-1001-x"}); err != nil {
			t.Fatal(err)
		}
		noPlaintext(t, raw, "pw-1001-x")
	})

	t.Run("UpsertInvalid", func(t *testing.T) {
		t.Parallel()
		u, raw := newDB(t)
		p := openP(t, Config{DBURL: u})
		for _, s := range []Subscriber{
			{Username: "", Password: "x"},
			{Username: "10:01", Password: "x"},
			{Username: "1001@pbx.local", Password: "x"},
			{Username: "1001", Password: ""},
			{Username: "1001", Domain: "a b", Password: "x"},
		} {
			if err := p.Upsert(t.Context(), s); !errors.Is(err, ErrInvalid) {
				t.Errorf("Upsert(%+v) = %v, want ErrInvalid", s, err)
			}
		}
		if rows := rowsOf(t, raw); len(rows) != 0 {
			t.Errorf("rows = %+v", rows)
		}
	})

	t.Run("RemoveDropsRegistrations", func(t *testing.T) {
		t.Parallel()
		u, raw := newDB(t)
		ctl := newFakeCtl(t)
		p := openP(t, Config{DBURL: u, CtlAddr: ctl.addr})
		for _, n := range []string{"1001", "1002"} {
			if err := p.Upsert(t.Context(), Subscriber{Username: n, Password: "pw-" + n}); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.Remove(t.Context(), "1001"); err != nil {
			t.Fatal(err)
		}
		if rows := rowsOf(t, raw); len(rows) != 1 || rows[0].username != "1002" {
			t.Fatalf("rows after Remove = %+v", rows)
		}
		// Removing again is fine and still drops any binding left.
		if err := p.Remove(t.Context(), "1001"); err != nil {
			t.Fatal(err)
		}
		want := []string{"ul.rm location 1001@pbx.local", "ul.rm location 1001@pbx.local"}
		if got := ctl.calls(); !slices.Equal(got, want) {
			t.Fatalf("rpc calls = %q, want %q", got, want)
		}
	})

	t.Run("RemoveRegistrarDown", func(t *testing.T) {
		t.Parallel()
		u, raw := newDB(t)
		down := "unix:" + filepath.Join(t.TempDir(), "nobody.sock")
		p := openP(t, Config{DBURL: u, CtlAddr: down})
		if err := p.Upsert(t.Context(), Subscriber{Username: "1001", Password: "pw-1001"}); err != nil {
			t.Fatal(err)
		}
		err := p.Remove(t.Context(), "1001")
		if !errors.Is(err, ErrRegistrar) {
			t.Fatalf("Remove = %v, want ErrRegistrar", err)
		}
		if rows := rowsOf(t, raw); len(rows) != 0 {
			t.Fatalf("row removal must stand, rows = %+v", rows)
		}
	})

	t.Run("Reconcile", func(t *testing.T) {
		t.Parallel()
		u, raw := newDB(t)
		insertRaw(t, raw, "1001", dom, "", HA1("1001", dom, "old"), HA1B("1001", dom, dom, "old"))
		insertRaw(t, raw, "1002", dom, "", HA1("1002", dom, "pw-1002"), HA1B("1002", dom, dom, "pw-1002"))
		insertRaw(t, raw, "9999", dom, "", "x", "y")
		insertRaw(t, raw, "alice", "other.example", "", "x", "y") // another domain: not ours
		want := []Subscriber{
			{Username: "1001", Password: "pw-1001"},
			{Username: "1002", Password: "pw-1002"},
			{Username: "1003", Password: "pw-1003"},
		}

		ctl := newFakeCtl(t)
		p := openP(t, Config{DBURL: u, CtlAddr: ctl.addr})
		rep, err := p.Reconcile(t.Context(), want)
		if err != nil {
			t.Fatal(err)
		}
		wantRep := Report{Added: 1, Updated: 1, Unchanged: 1, Unknown: []string{"9999"}}
		if !reportEqual(rep, wantRep) {
			t.Fatalf("first report = %+v, want %+v", rep, wantRep)
		}
		rep, err = p.Reconcile(t.Context(), want)
		if err != nil {
			t.Fatal(err)
		}
		wantRep = Report{Unchanged: 3, Unknown: []string{"9999"}}
		if !reportEqual(rep, wantRep) {
			t.Fatalf("second report = %+v, want %+v", rep, wantRep)
		}
		if got := ctl.calls(); len(got) != 0 {
			t.Fatalf("rpc calls without RemoveUnknown = %q", got)
		}
		for _, r := range rowsOf(t, raw) {
			if r.domain == dom && r.username != "9999" {
				pw := "pw-" + r.username
				if r.ha1 != HA1(r.username, dom, pw) || r.ha1b != HA1B(r.username, dom, dom, pw) {
					t.Errorf("row %s has stale digests", r.username)
				}
			}
		}

		p2 := openP(t, Config{DBURL: u, CtlAddr: ctl.addr, RemoveUnknown: true})
		rep, err = p2.Reconcile(t.Context(), want)
		if err != nil {
			t.Fatal(err)
		}
		wantRep = Report{Unchanged: 3, Unknown: []string{"9999"}, Removed: []string{"9999"}}
		if !reportEqual(rep, wantRep) {
			t.Fatalf("report with RemoveUnknown = %+v, want %+v", rep, wantRep)
		}
		if got, w := ctl.calls(), []string{"ul.rm location 9999@pbx.local"}; !slices.Equal(got, w) {
			t.Fatalf("rpc calls = %q, want %q", got, w)
		}
		var names []string
		for _, r := range rowsOf(t, raw) {
			names = append(names, r.username+"@"+r.domain)
		}
		if w := []string{"alice@other.example", "1001@pbx.local", "1002@pbx.local", "1003@pbx.local"}; !slices.Equal(names, w) {
			t.Fatalf("rows = %q, want %q", names, w)
		}
		noPlaintext(t, raw, "pw-1001", "pw-1002", "pw-1003")
	})

	t.Run("ReconcileRejectsDuplicates", func(t *testing.T) {
		t.Parallel()
		u, raw := newDB(t)
		p := openP(t, Config{DBURL: u})
		_, err := p.Reconcile(t.Context(), []Subscriber{
			{Username: "1001", Password: "a"}, {Username: "1001", Domain: dom, Password: "b"},
		})
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("Reconcile = %v, want ErrInvalid", err)
		}
		if rows := rowsOf(t, raw); len(rows) != 0 {
			t.Fatalf("nothing may be written, rows = %+v", rows)
		}
	})

	t.Run("ReconcileRegistrarDown", func(t *testing.T) {
		t.Parallel()
		u, raw := newDB(t)
		insertRaw(t, raw, "9999", dom, "", "x", "y")
		down := "unix:" + filepath.Join(t.TempDir(), "nobody.sock")
		p := openP(t, Config{DBURL: u, CtlAddr: down, RemoveUnknown: true})
		rep, err := p.Reconcile(t.Context(), []Subscriber{{Username: "1001", Password: "pw"}})
		if !errors.Is(err, ErrRegistrar) {
			t.Fatalf("Reconcile = %v, want ErrRegistrar", err)
		}
		if !reportEqual(rep, Report{Added: 1, Unknown: []string{"9999"}, Removed: []string{"9999"}}) {
			t.Fatalf("report = %+v", rep)
		}
		if rows := rowsOf(t, raw); len(rows) != 1 || rows[0].username != "1001" {
			t.Fatalf("rows = %+v", rows)
		}
	})
}

func reportEqual(a, b Report) bool {
	return a.Added == b.Added && a.Updated == b.Updated && a.Unchanged == b.Unchanged &&
		slices.Equal(a.Unknown, b.Unknown) && slices.Equal(a.Removed, b.Removed)
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	empty := "sqlite:" + filepath.Join(t.TempDir(), "empty.sqlite")
	_, err := Open(t.Context(), Config{DBURL: empty, Domain: dom})
	if !errors.Is(err, ErrNoSubscriberTable) {
		t.Errorf("Open(empty db) = %v, want ErrNoSubscriberTable", err)
	}
	u, _, _ := newSQLiteDB(t)
	for _, cfg := range []Config{
		{DBURL: u},
		{DBURL: "mysql://x", Domain: dom},
		{DBURL: "sqlite:", Domain: dom},
		{DBURL: u, Domain: dom, CtlAddr: "tcp:1.2.3.4"},
		{DBURL: u, Domain: dom, CtlAddr: "udp:nohostport"},
	} {
		if _, err := Open(t.Context(), cfg); !errors.Is(err, ErrInvalid) {
			t.Errorf("Open(%+v) = %v, want ErrInvalid", cfg, err)
		}
	}
}

// BenchmarkReconcile measures a steady-state Reconcile of 10,000 extensions (all
// unchanged) and logs the initial one (10,000 added):
//
//	go test -run '^$' -bench Reconcile -benchtime 5x ./internal/sip
func BenchmarkReconcile(b *testing.B) {
	for _, flavour := range []string{"sqlite", "postgres"} {
		b.Run(flavour, func(b *testing.B) {
			var u string
			if flavour == "sqlite" {
				u, _, _ = newSQLiteDB(b)
			} else {
				u, _ = newPostgresSchema(b)
			}
			p, err := Open(b.Context(), Config{DBURL: u, Domain: dom})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			want := make([]Subscriber, 10000)
			for i := range want {
				n := strconv.Itoa(100000 + i)
				want[i] = Subscriber{Username: n, Password: "pw-" + n}
			}
			begin := time.Now()
			rep, err := p.Reconcile(b.Context(), want)
			if err != nil || rep.Added != len(want) {
				b.Fatalf("initial: %+v %v", rep, err)
			}
			b.Logf("initial Reconcile of %d: %v", len(want), time.Since(begin))
			for b.Loop() {
				rep, err := p.Reconcile(b.Context(), want)
				if err != nil || rep.Unchanged != len(want) {
					b.Fatalf("%+v %v", rep, err)
				}
			}
		})
	}
}
