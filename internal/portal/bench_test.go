package portal_test

import (
	"fmt"
	"html"
	"regexp"
	"testing"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// BenchmarkExtensionsPage100k renders the extensions page (as htmx asks for
// it) of a PBX with 100,000 extensions: the first page, a later page by
// cursor, a search, and a search that matches nothing (the worst case).
//
//	go test -run '^$' -bench ExtensionsPage100k -benchtime 20x ./internal/portal/
func BenchmarkExtensionsPage100k(b *testing.B) {
	const n = 100_000
	e := newEnv(b)
	seedMany(b, e.store, n)
	c := e.signedIn()
	frag := map[string]string{"HX-Request": "true"}
	first := e.do(c, "GET", "/extensions", nil, frag)
	m := regexp.MustCompile(`href="([^"]*cursor=[^"]+)" id="ext-next"`).FindStringSubmatch(first.body)
	if m == nil {
		b.Fatal("no next page")
	}
	for _, bc := range []struct{ name, path string }{
		{"first-page", "/extensions"},
		{"next-page", html.UnescapeString(m[1])},
		{"search-hit", "/extensions?search=user99999"},
		{"search-miss", "/extensions?search=nobody-here"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if p := e.do(c, "GET", bc.path, nil, frag); p.status != 200 {
					b.Fatalf("%s: %d", bc.path, p.status)
				}
			}
		})
	}
}

func seedMany(tb testing.TB, st store.Store, n int) {
	tb.Helper()
	const batch = 5000
	for start := 0; start < n; start += batch {
		var c store.ExtensionChanges
		for i := start; i < min(n, start+batch); i++ {
			c.Create = append(c.Create, &directory.Extension{Number: fmt.Sprint(100000 + i), FirstName: fmt.Sprintf("User%d", i), LastName: "Bench",
				Email: fmt.Sprintf("user%d@bench.test", i), Source: directory.SourceLocal, Presence: directory.PresenceAvailable, CallState: directory.CallIdle})
		}
		if err := st.ApplyExtensions(tb.Context(), directory.DefaultPBX, c); err != nil {
			tb.Fatal(err)
		}
	}
}
