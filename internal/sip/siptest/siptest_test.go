//go:build e2e

package siptest_test

import (
	"slices"
	"testing"

	"github.com/switchboard-pbx/switchboard/internal/sip"
	"github.com/switchboard-pbx/switchboard/internal/sip/siptest"
)

// The harness itself: a row written by hand registers, a wrong password and an unknown
// user are refused, and the bindings show in ul.lookup and ul.dump; on both databases.
func TestHarness(t *testing.T) {
	for _, tc := range []struct {
		name  string
		newDB func(testing.TB) *siptest.DB
	}{{"SQLite", siptest.NewSQLiteDB}, {"Postgres", siptest.NewPostgresDB}} {
		t.Run(tc.name, func(t *testing.T) {
			db := tc.newDB(t)
			k := siptest.Start(t, db)
			d := siptest.Domain
			if _, err := db.Raw.ExecContext(t.Context(),
				`INSERT INTO subscriber (username, domain, password, ha1, ha1b) VALUES ($1, $2, '', $3, $4)`,
				"4001", d, sip.HA1("4001", d, "pw-4001"), sip.HA1B("4001", d, d, "pw-4001")); err != nil {
				t.Fatal(err)
			}
			if got := k.Contacts(t, "4001"); len(got) != 0 {
				t.Fatalf("bindings before REGISTER: %q", got)
			}
			if code := k.Register(t, "4001", "pw-4001"); code != 200 {
				t.Fatalf("REGISTER = %d, want 200", code)
			}
			if got := k.Contacts(t, "4001"); len(got) != 1 {
				t.Fatalf("bindings after REGISTER: %q", got)
			}
			if aors := k.Dump(t); !slices.Contains(aors, "4001@"+d) {
				t.Fatalf("ul.dump AoRs %q lack 4001@%s", aors, d)
			}
			if code := k.Register(t, "4001", "wrong"); code != 403 {
				t.Fatalf("wrong password: REGISTER = %d, want 403", code)
			}
			if code := k.Register(t, "4999", "pw"); code != 403 {
				t.Fatalf("unknown user: REGISTER = %d, want 403", code)
			}
		})
	}
}
