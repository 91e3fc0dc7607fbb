package sim

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"
	"time"
)

var (
	bigOnce sync.Once
	big     *Tenant
	bigErr  error
	bigNew  time.Duration
	bigHeap uint64
)

// bigTenant builds one 100,000-user tenant shared by the scale test and benchmarks.
func bigTenant(tb testing.TB) *Tenant {
	bigOnce.Do(func() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		start := time.Now()
		big, bigErr = New(Config{TenantID: testTenant, ClientID: testClient, ClientSecret: "x", Users: 100_000, Groups: 500, Seed: 1, Validator: fakeValidator{}})
		bigNew = time.Since(start)
		runtime.GC()
		runtime.ReadMemStats(&after)
		bigHeap = after.HeapAlloc - before.HeapAlloc
	})
	if bigErr != nil {
		tb.Fatal(bigErr)
	}
	return big
}

func servePage(tb testing.TB, h http.Handler, url string) *httptest.ResponseRecorder {
	req := httptest.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer app")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		tb.Fatalf("%s: %d %s", url, rec.Code, rec.Body.String())
	}
	return rec
}

func TestScale100k(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	ten := bigTenant(t)
	t.Logf("New(100,000 users, 500 groups): %v, live heap %.1f MB", bigNew, float64(bigHeap)/(1<<20))
	if bigHeap > 400<<20 {
		t.Fatalf("heap %d MB", bigHeap>>20)
	}
	h := ten.Handler()
	start := time.Now()
	rec := servePage(t, h, "/v1.0/users?$top=999&$select=id,displayName,mail,mobilePhone,businessPhones,onPremisesExtensionAttributes")
	t.Logf("first $top=999 page: %v, %d bytes", time.Since(start), rec.Body.Len())
	// Contacts of the last user are generated on demand.
	u := ten.UserList()[99_999]
	servePage(t, h, "/v1.0/users/"+u.ID+"/contacts?$top=50")
}

// BenchmarkUsersPage999 serves GET /v1.0/users?$top=999 (default properties) from a
// 100,000-user tenant through the full handler (auth, stats, routing, encoding).
func BenchmarkUsersPage999(b *testing.B) {
	ten := bigTenant(b)
	h := ten.Handler()
	first := servePage(b, h, "/v1.0/users?$top=999")
	b.SetBytes(int64(first.Body.Len()))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		servePage(b, h, "/v1.0/users?$top=999")
	}
}

func BenchmarkUsersPage999Select(b *testing.B) {
	ten := bigTenant(b)
	h := ten.Handler()
	const url = "/v1.0/users?$top=999&$select=id,userPrincipalName,displayName,givenName,surname,mail,mobilePhone,businessPhones,jobTitle,department,accountEnabled,userType,employeeId,onPremisesExtensionAttributes"
	b.ReportAllocs()
	for b.Loop() {
		servePage(b, h, url)
	}
}

func BenchmarkUsersDeltaPage(b *testing.B) {
	ten := bigTenant(b)
	h := ten.Handler()
	b.ReportAllocs()
	for b.Loop() {
		servePage(b, h, "/v1.0/users/delta?$select=displayName,mail")
	}
}
