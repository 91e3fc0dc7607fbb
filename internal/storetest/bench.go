package storetest

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// Extensions returns n synced extensions numbered from 'from', shaped like
// the sync engine's creates (names, email, mobile, Entra id, sealed secret).
func Extensions(from, n int) []*directory.Extension {
	out := make([]*directory.Extension, n)
	for i := range out {
		num := strconv.Itoa(from + i)
		out[i] = &directory.Extension{
			Number: num, FirstName: "First" + num, LastName: "Last" + num,
			Email: "user" + num + "@contoso.example", Mobile: "+1 555 " + num, JobTitle: "Engineer",
			CallerIDName: "User " + num, Source: directory.SourceEntra,
			EntraID: fmt.Sprintf("00000000-0000-0000-0000-%012d", from+i), SIPSecret: []byte("sealed-secret-" + num),
		}
	}
	return out
}

// BenchApplyExtensions measures one ApplyExtensions call creating n
// extensions in a fresh PBX and reports extensions/s.
func BenchApplyExtensions(b *testing.B, s store.Store, n int) {
	ctx := b.Context()
	var total time.Duration
	for b.Loop() {
		b.StopTimer()
		pbx := "bench-" + randHex(6)
		if _, err := s.EnsurePBX(ctx, directory.PBX{ID: pbx, MaxExtensions: n}); err != nil {
			b.Fatal(err)
		}
		exts := Extensions(1000, n)
		b.StartTimer()
		start := time.Now()
		if err := s.ApplyExtensions(ctx, pbx, store.ExtensionChanges{Create: exts}); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		b.StopTimer()
		if c, err := s.CountExtensions(ctx, pbx); err != nil || c != n {
			b.Fatalf("count = %d, %v", c, err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "extensions/s")
}

// BenchListExtensions measures reading one page of 100 extensions (a page in
// the middle, reached by cursor, and optionally with a search) in a PBX of n.
func BenchListExtensions(b *testing.B, s store.Store, n int, search string) {
	ctx := b.Context()
	pbx := "bench-" + randHex(6)
	if _, err := s.EnsurePBX(ctx, directory.PBX{ID: pbx}); err != nil {
		b.Fatal(err)
	}
	if err := s.ApplyExtensions(ctx, pbx, store.ExtensionChanges{Create: Extensions(1000, n)}); err != nil {
		b.Fatal(err)
	}
	// a cursor half-way
	q := store.ExtensionQuery{Limit: 1000}
	for range n / 2000 {
		_, next, err := s.ListExtensions(ctx, pbx, q)
		if err != nil {
			b.Fatal(err)
		}
		q.Cursor = next
	}
	q.Limit, q.Search = 100, search
	for b.Loop() {
		items, _, err := s.ListExtensions(ctx, pbx, q)
		if err != nil {
			b.Fatal(err)
		}
		if len(items) == 0 {
			b.Fatal("empty page")
		}
	}
}

// BenchUpdateExtensions measures one ApplyExtensions call updating every one
// of n extensions (a field-mapping change in the sync), reporting extensions/s.
func BenchUpdateExtensions(b *testing.B, s store.Store, n int) {
	ctx := b.Context()
	pbx := "bench-" + randHex(6)
	if _, err := s.EnsurePBX(ctx, directory.PBX{ID: pbx}); err != nil {
		b.Fatal(err)
	}
	exts := Extensions(1000, n)
	if err := s.ApplyExtensions(ctx, pbx, store.ExtensionChanges{Create: exts}); err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	round := 0
	for b.Loop() {
		round++
		for _, e := range exts {
			e.JobTitle = "Engineer " + strconv.Itoa(round)
		}
		start := time.Now()
		if err := s.ApplyExtensions(ctx, pbx, store.ExtensionChanges{Update: exts}); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
	}
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "extensions/s")
}

// BenchDeleteExtensions measures one ApplyExtensions call deleting n
// extensions (each in a group, with a personal contact), reporting extensions/s.
func BenchDeleteExtensions(b *testing.B, s store.Store, n int) {
	ctx := b.Context()
	var total time.Duration
	for b.Loop() {
		b.StopTimer()
		pbx := "bench-" + randHex(6)
		if _, err := s.EnsurePBX(ctx, directory.PBX{ID: pbx}); err != nil {
			b.Fatal(err)
		}
		exts := Extensions(1000, n)
		if err := s.ApplyExtensions(ctx, pbx, store.ExtensionChanges{Create: exts}); err != nil {
			b.Fatal(err)
		}
		ids := make([]string, n)
		for i, e := range exts {
			ids[i] = e.ID
		}
		if err := s.CreateGroup(ctx, pbx, &directory.Group{Name: "All", Members: ids}); err != nil {
			b.Fatal(err)
		}
		if err := s.ReplaceSyncedContacts(ctx, pbx, store.ContactOwner{ExtensionID: ids[0]}, []directory.Contact{{FirstName: "A", Mobile: "1"}}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		if err := s.ApplyExtensions(ctx, pbx, store.ExtensionChanges{Delete: ids}); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		b.StopTimer()
		if c, _ := s.CountExtensions(ctx, pbx); c != 0 {
			b.Fatalf("%d left", c)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "extensions/s")
}
