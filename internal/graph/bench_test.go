package graph

import (
	"testing"
)

// BenchmarkListUsers pages 10,000 users from an httptest server in pages of 999
// (11 requests per iteration), decoding every user.
func BenchmarkListUsers(b *testing.B) {
	f := newFakeTenantTB(b)
	up := newUserPages(b, f, 10000, 999)
	c, err := New(Config{GraphURL: f.srv.URL, LoginURL: f.srv.URL, TenantID: testTenant, ClientID: testClient,
		ClientSecret: testSecret, HTTPClient: f.srv.Client()})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(totalLen(up.pages)))
	for b.Loop() {
		n := 0
		for u, err := range c.ListUsers(b.Context(), ListOptions{Top: 999}) {
			if err != nil {
				b.Fatal(err)
			}
			if u.ID == "" {
				b.Fatal("empty id")
			}
			n++
		}
		if n != 10000 {
			b.Fatalf("got %d users", n)
		}
	}
	b.ReportMetric(float64(up.requests.Load())/float64(b.N), "requests/op")
}

func totalLen(pages [][]byte) int {
	n := 0
	for _, p := range pages {
		n += len(p)
	}
	return n
}
