// Package storetest is the conformance suite of store.Store: every backend
// runs the same tests through Run. Each test works in its own PBX (random
// id), so the tests run in parallel against one store.
package storetest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// Run runs every conformance test against the store newStore returns (one
// store for the whole run; it is closed by newStore's cleanup, not here).
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	s := newStore(t)
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"PBX", testPBX},
		{"ExtensionCRUD", testExtensionCRUD},
		{"ExtensionDuplicateNumber", testDuplicateNumber},
		{"ExtensionDuplicateEmailOtherCase", testDuplicateEmail},
		{"ExtensionValidation", testExtensionValidation},
		{"ExtensionCapacityCreate", testCapacityCreate},
		{"ExtensionCapacityApply", testCapacityApply},
		{"ApplyExtensions", testApplyExtensions},
		{"ApplyExtensionsAllOrNothing", testApplyAllOrNothing},
		{"ApplyExtensionsBulk", testApplyBulk},
		{"ApplyExtensionsFence", testApplyFence},
		{"FenceSerialisesWithUpdateSetting", testFenceSerialises},
		{"UpdateSettingFenced", testUpdateSettingFenced},
		{"ContextFence", testContextFence},
		{"Lease", testLease},
		{"ApplyExtensionsSettings", testApplySettings},
		{"ClosureErrorsAbort", testClosureErrorsAbort},
		{"TenantIsolation", testTenantIsolation},
		{"ExtensionPagination", testExtensionPagination},
		{"ListAllExtensions", testListAllExtensions},
		{"Groups", testGroups},
		{"GroupLimit", testGroupLimit},
		{"DeleteCascades", testDeleteCascades},
		{"Phonebooks", testPhonebooks},
		{"Contacts", testContacts},
		{"ContactDialForms", testContactDialForms},
		{"ContactPagination", testContactPagination},
		{"ReplaceSyncedContacts", testReplaceSyncedContacts},
		{"Visibility", testVisibility},
		{"Settings", testSettings},
		{"Audit", testAudit},
		{"Admins", testAdmins},
		{"ConcurrentExtensionUpdates", testConcurrentExtensionUpdates},
		{"ConcurrentSettingUpdates", testConcurrentSettingUpdates},
		{"ConcurrentCreatesRespectCapacity", testConcurrentCapacity},
		{"DeletePBX", testDeletePBX},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, s)
		})
	}
}

// --- helpers ---

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newPBX creates a PBX with a fresh id and the given capacity (0 = unlimited).
func newPBX(t *testing.T, s store.Store, maxExt int) string {
	t.Helper()
	id := "t-" + randHex(6)
	p, err := s.EnsurePBX(t.Context(), directory.PBX{ID: id, Name: "Test " + id, MaxExtensions: maxExt, TimeZone: "Europe/Berlin"})
	if err != nil {
		t.Fatalf("EnsurePBX: %v", err)
	}
	if p.ID != id || p.MaxExtensions != maxExt {
		t.Fatalf("EnsurePBX returned %+v", p)
	}
	return id
}

func ext(number, first, last, email string) *directory.Extension {
	return &directory.Extension{Number: number, FirstName: first, LastName: last, Email: email}
}

func mustCreateExt(t *testing.T, s store.Store, pbx string, e *directory.Extension) *directory.Extension {
	t.Helper()
	if err := s.CreateExtension(t.Context(), pbx, e); err != nil {
		t.Fatalf("CreateExtension(%s): %v", e.Number, err)
	}
	return e
}

func mustCount(t *testing.T, s store.Store, pbx string, want int) {
	t.Helper()
	n, err := s.CountExtensions(t.Context(), pbx)
	if err != nil {
		t.Fatalf("CountExtensions: %v", err)
	}
	if n != want {
		t.Fatalf("CountExtensions = %d, want %d", n, want)
	}
}

func wantNotFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("%s: err = %v, want store.ErrNotFound", what, err)
	}
}

func wantConflict(t *testing.T, what string, err error, field string) {
	t.Helper()
	var ce *store.ConflictError
	if !errors.As(err, &ce) || !errors.Is(err, store.ErrConflict) {
		t.Fatalf("%s: err = %v, want *store.ConflictError", what, err)
	}
	if ce.Field != field {
		t.Fatalf("%s: conflict on %q, want %q (%v)", what, ce.Field, field, err)
	}
}

func wantFieldError(t *testing.T, what string, err error, field string) {
	t.Helper()
	var fe *directory.FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("%s: err = %v, want *directory.FieldError", what, err)
	}
	if fe.Field != field {
		t.Fatalf("%s: field error on %q, want %q (%v)", what, fe.Field, field, err)
	}
}

var errBoom = errors.New("boom from the closure")

// --- PBX ---

func testPBX(t *testing.T, s store.Store) {
	ctx := t.Context()
	id := newPBX(t, s, 50)
	again, err := s.EnsurePBX(ctx, directory.PBX{ID: id, Name: "other name", MaxExtensions: 1})
	if err != nil {
		t.Fatal(err)
	}
	if again.Name != "Test "+id || again.MaxExtensions != 50 || again.TimeZone != "Europe/Berlin" || again.CreatedAt.IsZero() {
		t.Fatalf("EnsurePBX on an existing PBX changed or lost it: %+v", again)
	}
	got, err := s.GetPBX(ctx, id)
	if err != nil || got.Name != again.Name || !got.CreatedAt.Equal(again.CreatedAt) {
		t.Fatalf("GetPBX = %+v, %v", got, err)
	}
	all, err := s.ListPBXs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(all, func(p directory.PBX) bool { return p.ID == id }) {
		t.Fatalf("ListPBXs lacks %s", id)
	}
	up, err := s.UpdatePBX(ctx, id, func(p *directory.PBX) error {
		p.Name, p.MaxExtensions, p.ID = "Renamed", 75, "hijack"
		return nil
	})
	if err != nil || up.Name != "Renamed" || up.MaxExtensions != 75 || up.ID != id {
		t.Fatalf("UpdatePBX = %+v, %v", up, err)
	}
	if _, err := s.UpdatePBX(ctx, id, func(p *directory.PBX) error { p.MaxExtensions = -1; return nil }); err == nil {
		t.Fatal("UpdatePBX accepted a negative capacity")
	}
	_, err = s.GetPBX(ctx, "no-such-pbx-"+randHex(4))
	wantNotFound(t, "GetPBX(missing)", err)
	_, err = s.UpdatePBX(ctx, "no-such-pbx-"+randHex(4), func(*directory.PBX) error { return nil })
	wantNotFound(t, "UpdatePBX(missing)", err)
	if _, err := s.EnsurePBX(ctx, directory.PBX{}); err == nil {
		t.Fatal("EnsurePBX accepted an empty id")
	}
	err = s.CreateExtension(ctx, "no-such-pbx-"+randHex(4), ext("100", "A", "B", ""))
	wantNotFound(t, "CreateExtension in a missing PBX", err)
}

func testDeletePBX(t *testing.T, s store.Store) {
	ctx := t.Context()
	pbx := newPBX(t, s, 0)
	e := mustCreateExt(t, s, pbx, ext("100", "A", "B", "a@example.com"))
	g := &directory.Group{Name: "G", Members: []string{e.ID}}
	if err := s.CreateGroup(ctx, pbx, g); err != nil {
		t.Fatal(err)
	}
	pb := &directory.Phonebook{Name: "P"}
	if err := s.CreatePhonebook(ctx, pbx, pb); err != nil {
		t.Fatal(err)
	}
	c := &directory.Contact{PhonebookID: pb.ID, FirstName: "X", Mobile: "+1 555"}
	if err := s.CreateContact(ctx, pbx, c); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateSetting(ctx, pbx, "k", func([]byte) ([]byte, error) { return []byte("v"), nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAudit(ctx, store.AuditEntry{PBXID: pbx, Actor: "t", Action: "x"}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeletePBX(ctx, pbx); err != nil {
		t.Fatal(err)
	}
	_, err := s.GetPBX(ctx, pbx)
	wantNotFound(t, "GetPBX after delete", err)
	_, err = s.GetExtension(ctx, pbx, e.ID)
	wantNotFound(t, "GetExtension after DeletePBX", err)
	_, err = s.GetGroup(ctx, pbx, g.ID)
	wantNotFound(t, "GetGroup after DeletePBX", err)
	_, err = s.GetContact(ctx, pbx, c.ID)
	wantNotFound(t, "GetContact after DeletePBX", err)
	_, err = s.GetSetting(ctx, pbx, "k")
	wantNotFound(t, "GetSetting after DeletePBX", err)
	if a, _ := s.ListAudit(ctx, pbx, 0, 10); len(a) != 0 {
		t.Fatalf("audit survived DeletePBX: %v", a)
	}
	wantNotFound(t, "DeletePBX again", s.DeletePBX(ctx, pbx))
}

// --- extensions ---

func testExtensionCRUD(t *testing.T, s store.Store) {
	ctx := t.Context()
	pbx := newPBX(t, s, 0)
	e := &directory.Extension{Number: "101", FirstName: "Ada", LastName: "Lovelace", Email: "Ada@Example.com",
		Mobile: "+44 20 7946 0000", JobTitle: "Analyst", CallerIDName: "Ada L", Source: directory.SourceEntra,
		EntraID: "entra-ada", ClientPasswordHash: "hash", SIPSecret: []byte{0, 1, 2, 0xff}}
	mustCreateExt(t, s, pbx, e)
	if e.ID == "" || e.PBXID != pbx || e.CreatedAt.IsZero() || !e.UpdatedAt.Equal(e.CreatedAt) {
		t.Fatalf("CreateExtension did not assign id/timestamps: %+v", e)
	}
	if e.Presence != directory.PresenceAvailable || e.CallState != directory.CallIdle {
		t.Fatalf("defaults: presence %q call state %q", e.Presence, e.CallState)
	}
	got, err := s.GetExtension(ctx, pbx, e.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !sameExt(got, e) {
		t.Fatalf("GetExtension = %+v\nwant %+v", got, e)
	}
	for _, f := range []struct{ by, v string }{{"number", "101"}, {"email", "ada@EXAMPLE.com"}, {"entraId", "entra-ada"}} {
		got, err := s.FindExtension(ctx, pbx, f.by, f.v)
		if err != nil || got.ID != e.ID {
			t.Fatalf("FindExtension(%s, %s) = %v, %v", f.by, f.v, got, err)
		}
	}
	_, err = s.FindExtension(ctx, pbx, "number", "999")
	wantNotFound(t, "FindExtension(missing number)", err)
	_, err = s.FindExtension(ctx, pbx, "email", "")
	wantNotFound(t, "FindExtension(empty email)", err)
	if _, err := s.FindExtension(ctx, pbx, "shoeSize", "1"); err == nil {
		t.Fatal("FindExtension accepted an unknown key")
	}

	up, err := s.UpdateExtension(ctx, pbx, e.ID, func(x *directory.Extension) error {
		x.JobTitle, x.Presence, x.Number = "Lead", directory.PresenceAway, "102"
		x.ID, x.CreatedAt = "hijack", x.CreatedAt.Add(-1000000000)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if up.ID != e.ID || !up.CreatedAt.Equal(e.CreatedAt) || up.UpdatedAt.Before(e.UpdatedAt) || up.JobTitle != "Lead" || up.Number != "102" {
		t.Fatalf("UpdateExtension = %+v", up)
	}
	got, _ = s.GetExtension(ctx, pbx, e.ID)
	if !sameExt(got, up) {
		t.Fatalf("after update Get = %+v\nwant %+v", got, up)
	}
	if _, err := s.FindExtension(ctx, pbx, "number", "101"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("old number still found: %v", err)
	}
	_, err = s.UpdateExtension(ctx, pbx, e.ID, func(x *directory.Extension) error { x.Presence = "sleeping"; return nil })
	wantFieldError(t, "UpdateExtension(bad presence)", err, "presence")

	if err := s.DeleteExtension(ctx, pbx, e.ID, nil); err != nil {
		t.Fatal(err)
	}
	_, err = s.GetExtension(ctx, pbx, e.ID)
	wantNotFound(t, "GetExtension after delete", err)
	wantNotFound(t, "DeleteExtension again", s.DeleteExtension(ctx, pbx, e.ID, nil))
	_, err = s.UpdateExtension(ctx, pbx, e.ID, func(*directory.Extension) error { return nil })
	wantNotFound(t, "UpdateExtension(deleted)", err)

	// The synced-record lock is the caller's check, run inside the transaction.
	synced := mustCreateExt(t, s, pbx, &directory.Extension{Number: "103", Source: directory.SourceEntra, EntraID: "x"})
	err = s.DeleteExtension(ctx, pbx, synced.ID, directory.CheckManualExtensionDelete)
	if !errors.Is(err, directory.ErrLocked) {
		t.Fatalf("DeleteExtension with lock check: %v", err)
	}
	mustCount(t, s, pbx, 1)
}

func sameExt(a, b *directory.Extension) bool {
	return a.ID == b.ID && a.PBXID == b.PBXID && a.Number == b.Number && a.FirstName == b.FirstName &&
		a.LastName == b.LastName && a.Email == b.Email && a.Mobile == b.Mobile && a.JobTitle == b.JobTitle &&
		a.CallerIDName == b.CallerIDName && a.Presence == b.Presence && a.CallState == b.CallState &&
		a.Source == b.Source && a.EntraID == b.EntraID && a.ClientPasswordHash == b.ClientPasswordHash &&
		string(a.SIPSecret) == string(b.SIPSecret) && a.CreatedAt.Equal(b.CreatedAt) && a.UpdatedAt.Equal(b.UpdatedAt)
}

func testDuplicateNumber(t *testing.T, s store.Store) {
	ctx := t.Context()
	pbx := newPBX(t, s, 0)
	mustCreateExt(t, s, pbx, ext("200", "A", "", ""))
	b := mustCreateExt(t, s, pbx, ext("201", "B", "", ""))
	wantConflict(t, "CreateExtension(dup number)", s.CreateExtension(ctx, pbx, ext("200", "C", "", "")), "number")
	_, err := s.UpdateExtension(ctx, pbx, b.ID, func(e *directory.Extension) error { e.Number = "200"; return nil })
	wantConflict(t, "UpdateExtension(dup number)", err, "number")
	// "0200" is a different number (it dials differently) and is allowed.
	mustCreateExt(t, s, pbx, ext("0200", "D", "", ""))
	mustCount(t, s, pbx, 3)
}

func testDuplicateEmail(t *testing.T, s store.Store) {
	ctx := t.Context()
	pbx := newPBX(t, s, 0)
	mustCreateExt(t, s, pbx, ext("300", "A", "", "Jane.Doe@Example.com"))
	b := mustCreateExt(t, s, pbx, ext("301", "B", "", "b@example.com"))
	mustCreateExt(t, s, pbx, ext("302", "C", "", ""))
	mustCreateExt(t, s, pbx, ext("303", "D", "", "")) // empty emails never collide
	wantConflict(t, "CreateExtension(dup email)", s.CreateExtension(ctx, pbx, ext("304", "E", "", "jane.doe@EXAMPLE.COM")), "email")
	_, err := s.UpdateExtension(ctx, pbx, b.ID, func(e *directory.Extension) error { e.Email = "JANE.DOE@example.com"; return nil })
	wantConflict(t, "UpdateExtension(dup email)", err, "email")
	// Keeping one's own email (in another case) is fine.
	if _, err := s.UpdateExtension(ctx, pbx, b.ID, func(e *directory.Extension) error { e.Email = "B@EXAMPLE.COM"; return nil }); err != nil {
		t.Fatal(err)
	}
	mustCount(t, s, pbx, 4)
}

func testExtensionValidation(t *testing.T, s store.Store) {
	ctx := t.Context()
	pbx := newPBX(t, s, 0)
	for _, tc := range []struct {
		e     *directory.Extension
		field string
	}{
		{ext("12a", "A", "", ""), "number"},
		{ext("", "A", "", ""), "number"},
		{ext("1234567890123", "A", "", ""), "number"},
		{ext("100", "A", "", "not-an-email"), "email"},
		{&directory.Extension{Number: "101", Mobile: "call me"}, "mobile"},
		{&directory.Extension{Number: "102", Source: "ldap"}, "source"},
		{&directory.Extension{Number: "103", FirstName: "a\nb"}, "firstName"},
	} {
		wantFieldError(t, "CreateExtension("+tc.e.Number+")", s.CreateExtension(ctx, pbx, tc.e), tc.field)
	}
	err := s.ApplyExtensions(ctx, pbx, store.ExtensionChanges{Create: []*directory.Extension{ext("1", "", "", ""), ext("x1", "", "", "")}})
	wantFieldError(t, "ApplyExtensions(non-numeric)", err, "number")
	mustCount(t, s, pbx, 0)
}

func testCapacityCreate(t *testing.T, s store.Store) {
	ctx := t.Context()
	pbx := newPBX(t, s, 3)
	for _, n := range []string{"1", "2", "3"} {
		mustCreateExt(t, s, pbx, ext(n, "", "", ""))
	}
	err := s.CreateExtension(ctx, pbx, ext("4", "", "", ""))
	if !errors.Is(err, directory.ErrCapacity) {
		t.Fatalf("4th extension in a PBX of 3: %v", err)
	}
	mustCount(t, s, pbx, 3)
	// Raising the capacity lets it in.
	if _, err := s.UpdatePBX(ctx, pbx, func(p *directory.PBX) error { p.MaxExtensions = 4; return nil }); err != nil {
		t.Fatal(err)
	}
	mustCreateExt(t, s, pbx, ext("4", "", "", ""))
}

func numbered(from, n int) []*directory.Extension {
	out := make([]*directory.Extension, n)
	for i := range out {
		num := strconv.Itoa(from + i)
		out[i] = &directory.Extension{Number: num, FirstName: "User", LastName: num, Email: "u" + num + "@example.com",
			Source: directory.SourceEntra, EntraID: "entra-" + num}
	}
	return out
}

func testCapacityApply(t *testing.T, s store.Store) {
	ctx := t.Context()
	pbx := newPBX(t, s, 10)
	if err := s.ApplyExtensions(ctx, pbx, store.ExtensionChanges{Create: numbered(1000, 5)}); err != nil {
		t.Fatal(err)
	}
	var existing []string
	_ = s.ListAllExtensions(ctx, pbx, func(e *directory.Extension) error { existing = append(existing, e.ID); return nil })

	// 5 + 6 > 10: refused, and nothing of the batch (not even its update and delete) stays.
	err := s.ApplyExtensions(ctx, pbx, store.ExtensionChanges{
		Create: numbered(2000, 6),
		Update: []*directory.Extension{{ID: existing[0], Number: "1000", FirstName: "Changed", Source: directory.SourceLocal}},
	})
	if !errors.Is(err, directory.ErrCapacity) {
		t.Fatalf("ApplyExtensions over capacity: %v", err)
	}
	mustCount(t, s, pbx, 5)
	got, _ := s.GetExtension(ctx, pbx, existing[0])
	if got.FirstName != "User" {
		t.Fatalf("the refused batch's update was stored: %+v", got)
	}
	if _, err := s.FindExtension(ctx, pbx, "number", "2000"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an extension of the refused batch was stored: %v", err)
	}
	// The count after the batch is what counts: one delete makes room for six creates.
	if err := s.ApplyExtensions(ctx, pbx, store.ExtensionChanges{Create: numbered(2000, 6), Delete: existing[:1]}); err != nil {
		t.Fatalf("ApplyExtensions to exactly the capacity: %v", err)
	}
	mustCount(t, s, pbx, 10)
}

func testApplyExtensions(t *testing.T, s store.Store) {
	ctx := t.Context()
	pbx := newPBX(t, s, 0)
	creates := numbered(500, 250) // more than one multi-row batch
	if err := s.ApplyExtensions(ctx, pbx, store.ExtensionChanges{Create: creates}); err != nil {
		t.Fatal(err)
	}
	for _, e := range creates {
		if e.ID == "" || e.PBXID != pbx || e.CreatedAt.IsZero() {
			t.Fatalf("ApplyExtensions did not assign id/timestamps: %+v", e)
		}
	}
	mustCount(t, s, pbx, 250)
	got, err := s.GetExtension(ctx, pbx, creates[100].ID)
	if err != nil || !sameExt(got, creates[100]) {
		t.Fatalf("GetExtension = %+v, %v\nwant %+v", got, err, creates[100])
	}

	upd := *creates[1]
	upd.FirstName, upd.Email = "Updated", "NEW@example.com"
	upd.CreatedAt = upd.CreatedAt.AddDate(-1, 0, 0) // the store keeps the stored CreatedAt
	err = s.ApplyExtensions(ctx, pbx, store.ExtensionChanges{
		Create: []*directory.Extension{ext("900", "New", "", "u500@example.com")}, // the deleted one's email
		Update: []*directory.Extension{&upd},
		Delete: []string{creates[0].ID, "no-such-id"},
	})
	if err != nil {
		t.Fatal(err)
	}
	mustCount(t, s, pbx, 250)
	_, err = s.GetExtension(ctx, pbx, creates[0].ID)
	wantNotFound(t, "deleted by ApplyExtensions", err)
	got, _ = s.GetExtension(ctx, pbx, creates[1].ID)
	if got.FirstName != "Updated" || got.Email != "NEW@example.com" || !got.CreatedAt.Equal(creates[1].CreatedAt) {
		t.Fatalf("updated by ApplyExtensions: %+v", got)
	}
	if e, err := s.FindExtension(ctx, pbx, "email", "new@EXAMPLE.com"); err != nil || e.ID != creates[1].ID {
		t.Fatalf("FindExtension(updated email) = %v, %v", e, err)
	}
	if err := s.ApplyExtensions(ctx, pbx, store.ExtensionChanges{}); err != nil {
		t.Fatalf("empty ApplyExtensions: %v", err)
	}
}

func testApplyAllOrNothing(t *testing.T, s store.Store) {
	ctx := t.Context()
	pbx := newPBX(t, s, 0)
	base := numbered(100, 3)
	if err := s.ApplyExtensions(ctx, pbx, store.ExtensionChanges{Create: base}); err != nil {
		t.Fatal(err)
	}
	check := func(what string) {
		t.Helper()
		mustCount(t, s, pbx, 3)
		for _, e := range base {
			got, err := s.GetExtension(ctx, pbx, e.ID)
			if err != nil || !sameExt(got, e) {
				t.Fatalf("%s: extension changed: %+v, %v", what, got, err)
			}
		}
	}
	changed := *base[0]
	changed.FirstName = "Changed"
	for _, tc := range []struct {
		name  string
		c     store.ExtensionChanges
		field string
	}{
		{"duplicate number in the batch", store.ExtensionChanges{Create: []*directory.Extension{ext("700", "", "", ""), ext("700", "", "", "")}, Update: []*directory.Extension{&changed}}, "number"},
		{"duplicate email in the batch", store.ExtensionChanges{Create: []*directory.Extension{ext("701", "", "", "x@y.z"), ext("702", "", "", "X@Y.Z")}}, "email"},
		{"number taken in the store", store.ExtensionChanges{Create: append(numbered(600, 150), ext("101", "", "", "")), Delete: []string{base[2].ID}}, "number"},
		{"email taken in the store", store.ExtensionChanges{Create: []*directory.Extension{ext("703", "", "", "U100@example.com")}, Update: []*directory.Extension{&changed}}, "email"},
		{"update takes another's number", store.ExtensionChanges{Update: []*directory.Extension{{ID: base[1].ID, Number: "100", Source: directory.SourceLocal}}, Delete: []string{base[2].ID}}, "number"},
	} {
		wantConflict(t, tc.name, s.ApplyExtensions(ctx, pbx, tc.c), tc.field)
		check(tc.name)
	}
	err := s.ApplyExtensions(ctx, pbx, store.ExtensionChanges{
		Update: []*directory.Extension{&changed, {ID: "no-such-id", Number: "800", Source: directory.SourceLocal}},
		Delete: []string{base[2].ID},
	})
	wantNotFound(t, "ApplyExtensions(update of a missing id)", err)
	check("update of a missing id")
}

// testApplyBulk runs batches big enough for the backends' bulk paths (COPY on PostgreSQL).
func testApplyBulk(t *testing.T, s store.Store) {
	ctx := t.Context()
	pbx := newPBX(t, s, 0)
	exts := numbered(10000, 1200)
	if err := s.ApplyExtensions(ctx, pbx, store.ExtensionChanges{Create: exts}); err != nil {
		t.Fatal(err)
	}
	other := mustCreateExt(t, s, pbx, ext("5", "Other", "", "other@example.com"))
	snapshot := func() map[string]directory.Extension {
		m := map[string]directory.Extension{}
		if err := s.ListAllExtensions(ctx, pbx, func(e *directory.Extension) error { m[e.ID] = *e; return nil }); err != nil {
			t.Fatal(err)
		}
		return m
	}
	before := snapshot()
	updates := func(n int, f func(i int, e *directory.Extension)) []*directory.Extension {
		out := make([]*directory.Extension, n)
		for i := range out {
			c := *exts[i]
			f(i, &c)
			out[i] = &c
		}
		return out
	}
	unchanged := func(what string) {
		t.Helper()
		after := snapshot()
		if len(after) != len(before) {
			t.Fatalf("%s: %d extensions, want %d", what, len(after), len(before))
		}
		for id, e := range before {
			a := after[id]
			if !sameExt(&a, &e) {
				t.Fatalf("%s: extension %s changed: %+v", what, e.Number, a)
			}
		}
	}
	err := s.ApplyExtensions(ctx, pbx, store.ExtensionChanges{Update: updates(700, func(i int, e *directory.Extension) {
		e.JobTitle = "bulk"
		if i == 650 {
			e.ID = "no-such-id"
		}
	})})
	wantNotFound(t, "bulk update with a missing id", err)
	unchanged("bulk update with a missing id")
	err = s.ApplyExtensions(ctx, pbx, store.ExtensionChanges{Update: updates(700, func(i int, e *directory.Extension) {
		if i == 699 {
			e.Number = other.Number
		}
	})})
	wantConflict(t, "bulk update onto another's number", err, "number")
	unchanged("bulk update onto another's number")
	err = s.ApplyExtensions(ctx, pbx, store.ExtensionChanges{Update: updates(700, func(i int, e *directory.Extension) {
		if i == 10 {
			e.Email = "OTHER@example.com"
		}
	})})
	wantConflict(t, "bulk update onto another's email", err, "email")
	unchanged("bulk update onto another's email")

	ups := updates(1200, func(i int, e *directory.Extension) {
		e.JobTitle, e.Email, e.SIPSecret = "bulk", fmt.Sprintf("Renamed%d@example.com", i), []byte{byte(i)}
		e.CreatedAt = e.CreatedAt.AddDate(-1, 0, 0)
	})
	if err := s.ApplyExtensions(ctx, pbx, store.ExtensionChanges{Update: ups}); err != nil {
		t.Fatal(err)
	}
	after := snapshot()
	for i, u := range ups {
		a := after[u.ID]
		if !sameExt(&a, u) || !a.CreatedAt.Equal(exts[i].CreatedAt) || a.UpdatedAt.Before(exts[i].UpdatedAt) {
			t.Fatalf("after bulk update: %+v\nwant %+v (created %v)", a, u, exts[i].CreatedAt)
		}
	}
	if e, err := s.FindExtension(ctx, pbx, "email", "renamed7@EXAMPLE.com"); err != nil || e.ID != exts[7].ID {
		t.Fatalf("FindExtension after bulk update: %v, %v", e, err)
	}
	del := make([]string, 0, 600)
	for _, e := range exts[:600] {
		del = append(del, e.ID)
	}
	if err := s.ApplyExtensions(ctx, pbx, store.ExtensionChanges{Delete: del, Create: numbered(10000, 600)}); err != nil {
		t.Fatalf("bulk delete and re-create of the same numbers: %v", err)
	}
	mustCount(t, s, pbx, 1201)
	if _, err := s.GetExtension(ctx, pbx, exts[0].ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("bulk-deleted extension still there: %v", err)
	}
}

func testClosureErrorsAbort(t *testing.T, s store.Store) {
	ctx := t.Context()
	pbx := newPBX(t, s, 0)
	e := mustCreateExt(t, s, pbx, ext("100", "Keep", "Me", "keep@example.com"))
	_, err := s.UpdateExtension(ctx, pbx, e.ID, func(x *directory.Extension) error {
		x.FirstName = "Lost"
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("UpdateExtension returned %v, want the closure's error", err)
	}
	if err := s.DeleteExtension(ctx, pbx, e.ID, func(*directory.Extension) error { return errBoom }); !errors.Is(err, errBoom) {
		t.Fatalf("DeleteExtension returned %v", err)
	}
	got, err := s.GetExtension(ctx, pbx, e.ID)
	if err != nil || !sameExt(got, e) {
		t.Fatalf("extension changed by an aborted closure: %+v, %v", got, err)
	}

	g := &directory.Group{Name: "Sales", Members: []string{e.ID}}
	if err := s.CreateGroup(ctx, pbx, g); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateGroup(ctx, pbx, g.ID, func(x *directory.Group) error { x.Name, x.Members = "Lost", nil; return errBoom }); !errors.Is(err, errBoom) {
		t.Fatalf("UpdateGroup returned %v", err)
	}
	if err := s.DeleteGroup(ctx, pbx, g.ID, func(*directory.Group) error { return errBoom }); !errors.Is(err, errBoom) {
		t.Fatalf("DeleteGroup returned %v", err)
	}
	gg, err := s.GetGroup(ctx, pbx, g.ID)
	if err != nil || gg.Name != "Sales" || !slices.Equal(gg.Members, []string{e.ID}) {
		t.Fatalf("group changed by an aborted closure: %+v, %v", gg, err)
	}

	pb := &directory.Phonebook{Name: "Book"}
	if err := s.CreatePhonebook(ctx, pbx, pb); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdatePhonebook(ctx, pbx, pb.ID, func(x *directory.Phonebook) error { x.Name = "Lost"; return errBoom }); !errors.Is(err, errBoom) {
		t.Fatalf("UpdatePhonebook returned %v", err)
	}
	c := &directory.Contact{PhonebookID: pb.ID, FirstName: "Carl", Mobile: "123"}
	if err := s.CreateContact(ctx, pbx, c); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateContact(ctx, pbx, c.ID, func(x *directory.Contact) error { x.FirstName = "Lost"; return errBoom }); !errors.Is(err, errBoom) {
		t.Fatalf("UpdateContact returned %v", err)
	}
	if err := s.DeleteContact(ctx, pbx, c.ID, func(*directory.Contact) error { return errBoom }); !errors.Is(err, errBoom) {
		t.Fatalf("DeleteContact returned %v", err)
	}
	if err := s.DeletePhonebook(ctx, pbx, pb.ID, func(*directory.Phonebook) error { return errBoom }); !errors.Is(err, errBoom) {
		t.Fatalf("DeletePhonebook returned %v", err)
	}
	if p, err := s.GetPhonebook(ctx, pbx, pb.ID); err != nil || p.Name != "Book" || p.ContactCount != 1 {
		t.Fatalf("phonebook changed by an aborted closure: %+v, %v", p, err)
	}
	if cc, err := s.GetContact(ctx, pbx, c.ID); err != nil || cc.FirstName != "Carl" {
		t.Fatalf("contact changed by an aborted closure: %+v, %v", cc, err)
	}

	if err := s.UpdateSetting(ctx, pbx, "k", func([]byte) ([]byte, error) { return []byte("v1"), nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateSetting(ctx, pbx, "k", func([]byte) ([]byte, error) { return []byte("lost"), errBoom }); !errors.Is(err, errBoom) {
		t.Fatalf("UpdateSetting returned %v", err)
	}
	if v, err := s.GetSetting(ctx, pbx, "k"); err != nil || string(v) != "v1" {
		t.Fatalf("setting changed by an aborted closure: %q, %v", v, err)
	}
	if _, err := s.UpdatePBX(ctx, pbx, func(p *directory.PBX) error { p.Name = "Lost"; return errBoom }); !errors.Is(err, errBoom) {
		t.Fatalf("UpdatePBX returned %v", err)
	}
	if p, _ := s.GetPBX(ctx, pbx); p.Name == "Lost" {
		t.Fatal("PBX changed by an aborted closure")
	}
	a := &store.Admin{Username: "closure-" + randHex(4), PasswordHash: "h"}
	if err := s.CreateAdmin(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateAdmin(ctx, a.ID, func(x *store.Admin) error { x.PasswordHash = "lost"; return errBoom }); !errors.Is(err, errBoom) {
		t.Fatalf("UpdateAdmin returned %v", err)
	}
	if got, _ := s.GetAdminByUsername(ctx, a.Username); got.PasswordHash != "h" {
		t.Fatal("admin changed by an aborted closure")
	}
}

func testTenantIsolation(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, b := newPBX(t, s, 0), newPBX(t, s, 0)
	// The same number and email may exist in two PBXs.
	ea := mustCreateExt(t, s, a, ext("100", "In", "A", "same@example.com"))
	eb := mustCreateExt(t, s, b, ext("100", "In", "B", "same@example.com"))
	gb := &directory.Group{Name: "B group", Members: []string{eb.ID}}
	if err := s.CreateGroup(ctx, b, gb); err != nil {
		t.Fatal(err)
	}
	pb := &directory.Phonebook{Name: "B book"}
	if err := s.CreatePhonebook(ctx, b, pb); err != nil {
		t.Fatal(err)
	}
	cb := &directory.Contact{ExtensionID: eb.ID, FirstName: "Private", Mobile: "1"}
	if err := s.CreateContact(ctx, b, cb); err != nil {
		t.Fatal(err)
	}
	noop := func(*directory.Extension) error { return nil }

	_, err := s.GetExtension(ctx, a, eb.ID)
	wantNotFound(t, "GetExtension(other PBX)", err)
	_, err = s.UpdateExtension(ctx, a, eb.ID, noop)
	wantNotFound(t, "UpdateExtension(other PBX)", err)
	wantNotFound(t, "DeleteExtension(other PBX)", s.DeleteExtension(ctx, a, eb.ID, nil))
	err = s.ApplyExtensions(ctx, a, store.ExtensionChanges{Update: []*directory.Extension{{ID: eb.ID, Number: "555", Source: directory.SourceLocal}}})
	wantNotFound(t, "ApplyExtensions update(other PBX)", err)
	if err := s.ApplyExtensions(ctx, a, store.ExtensionChanges{Delete: []string{eb.ID}}); err != nil {
		t.Fatalf("ApplyExtensions delete of another PBX's id: %v", err)
	}
	if got, err := s.GetExtension(ctx, b, eb.ID); err != nil || got.LastName != "B" || got.Number != "100" {
		t.Fatalf("PBX B's extension was touched: %+v, %v", got, err)
	}
	if e, err := s.FindExtension(ctx, a, "email", "same@example.com"); err != nil || e.ID != ea.ID {
		t.Fatalf("FindExtension crossed PBXs: %+v, %v", e, err)
	}
	items, _, err := s.ListExtensions(ctx, a, store.ExtensionQuery{})
	if err != nil || len(items) != 1 || items[0].ID != ea.ID {
		t.Fatalf("ListExtensions(A) = %v, %v", items, err)
	}

	_, err = s.GetGroup(ctx, a, gb.ID)
	wantNotFound(t, "GetGroup(other PBX)", err)
	_, err = s.UpdateGroup(ctx, a, gb.ID, func(*directory.Group) error { return nil })
	wantNotFound(t, "UpdateGroup(other PBX)", err)
	wantNotFound(t, "DeleteGroup(other PBX)", s.DeleteGroup(ctx, a, gb.ID, nil))
	err = s.CreateGroup(ctx, a, &directory.Group{Name: "steal", Members: []string{eb.ID}})
	wantFieldError(t, "CreateGroup with another PBX's member", err, "members")

	_, err = s.GetPhonebook(ctx, a, pb.ID)
	wantNotFound(t, "GetPhonebook(other PBX)", err)
	_, err = s.UpdatePhonebook(ctx, a, pb.ID, func(*directory.Phonebook) error { return nil })
	wantNotFound(t, "UpdatePhonebook(other PBX)", err)
	wantNotFound(t, "DeletePhonebook(other PBX)", s.DeletePhonebook(ctx, a, pb.ID, nil))
	wantNotFound(t, "SetVisibility(other PBX)", s.SetVisibility(ctx, a, pb.ID, []directory.Visibility{{Kind: directory.VisibleToEveryone}}))
	_, err = s.ListVisibility(ctx, a, pb.ID)
	wantNotFound(t, "ListVisibility(other PBX)", err)
	err = s.CreateContact(ctx, a, &directory.Contact{PhonebookID: pb.ID, FirstName: "X", Mobile: "1"})
	wantNotFound(t, "CreateContact in another PBX's phonebook", err)
	err = s.ReplaceSyncedContacts(ctx, a, store.ContactOwner{ExtensionID: eb.ID}, nil)
	wantNotFound(t, "ReplaceSyncedContacts(other PBX's extension)", err)

	_, err = s.GetContact(ctx, a, cb.ID)
	wantNotFound(t, "GetContact(other PBX)", err)
	_, err = s.UpdateContact(ctx, a, cb.ID, func(*directory.Contact) error { return nil })
	wantNotFound(t, "UpdateContact(other PBX)", err)
	wantNotFound(t, "DeleteContact(other PBX)", s.DeleteContact(ctx, a, cb.ID, nil))
	cs, _, err := s.ListContacts(ctx, a, store.ContactQuery{ExtensionID: eb.ID})
	if err != nil || len(cs) != 0 {
		t.Fatalf("ListContacts(A, B's extension) = %v, %v", cs, err)
	}
	_, _, err = s.ListVisibleContacts(ctx, a, eb.ID, store.ContactQuery{})
	wantNotFound(t, "ListVisibleContacts(other PBX's extension)", err)

	if err := s.UpdateSetting(ctx, b, "secret", func([]byte) ([]byte, error) { return []byte("b"), nil }); err != nil {
		t.Fatal(err)
	}
	_, err = s.GetSetting(ctx, a, "secret")
	wantNotFound(t, "GetSetting(other PBX)", err)
	if m, _ := s.ListSettings(ctx, a, ""); len(m) != 0 {
		t.Fatalf("ListSettings(A) = %v", m)
	}
	if g, err := s.GetGroup(ctx, b, gb.ID); err != nil || len(g.Members) != 1 {
		t.Fatalf("PBX B's group was touched: %+v, %v", g, err)
	}
	if c, err := s.GetContact(ctx, b, cb.ID); err != nil || c.FirstName != "Private" {
		t.Fatalf("PBX B's contact was touched: %+v, %v", c, err)
	}
}

// numericLess orders extension numbers numerically, ties (leading zeros) by text.
func numericLess(a, b string) bool {
	x, _ := new(big.Int).SetString(a, 10)
	y, _ := new(big.Int).SetString(b, 10)
	if c := x.Cmp(y); c != 0 {
		return c < 0
	}
	return a < b
}

func testExtensionPagination(t *testing.T, s store.Store) {
	ctx := t.Context()
	pbx := newPBX(t, s, 0)
	// Numbers of every length, a few with leading zeros, created in a scrambled order.
	var numbers []string
	for i := range 230 {
		n := strconv.Itoa((i*7919)%100000 + 1)
		if i%10 == 0 {
			n = strconv.Itoa(i*1000003) + "7"
		}
		numbers = append(numbers, n)
	}
	numbers = append(numbers, "7", "007", "999999999999", "0")
	slices.Sort(numbers)
	numbers = slices.Compact(numbers)
	var batch []*directory.Extension
	for i, n := range numbers {
		e := &directory.Extension{Number: n, FirstName: "Person", LastName: "Num" + n, Source: directory.SourceLocal}
		if i%3 == 0 {
			e.LastName, e.Email = "Smith"+n, "smith"+n+"@Example.com"
			e.Source, e.EntraID = directory.SourceEntra, "entra-"+n
		}
		batch = append(batch, e)
	}
	// create half by hand, half in bulk
	for _, e := range batch[:20] {
		mustCreateExt(t, s, pbx, e)
	}
	if err := s.ApplyExtensions(ctx, pbx, store.ExtensionChanges{Create: batch[20:]}); err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(numbers)
	sort.Slice(want, func(i, j int) bool { return numericLess(want[i], want[j]) })

	collect := func(q store.ExtensionQuery) []string {
		t.Helper()
		var got []string
		seen := map[string]bool{}
		for pages := 0; ; pages++ {
			if pages > 1000 {
				t.Fatal("pagination does not end")
			}
			items, next, err := s.ListExtensions(ctx, pbx, q)
			if err != nil {
				t.Fatal(err)
			}
			if len(items) > max(q.Limit, 1) && q.Limit > 0 {
				t.Fatalf("page of %d > limit %d", len(items), q.Limit)
			}
			for _, e := range items {
				if seen[e.ID] {
					t.Fatalf("extension %s seen twice", e.Number)
				}
				seen[e.ID] = true
				got = append(got, e.Number)
			}
			if next == "" {
				return got
			}
			if len(items) == 0 {
				t.Fatal("empty page with a next cursor")
			}
			q.Cursor = next
		}
	}
	if got := collect(store.ExtensionQuery{Limit: 7}); !slices.Equal(got, want) {
		t.Fatalf("paging visited\n%v\nwant\n%v", got, want)
	}
	if got := collect(store.ExtensionQuery{}); !slices.Equal(got, want) {
		t.Fatalf("default page size visited %d, want %d", len(got), len(want))
	}
	var wantSmith, wantLocal []string
	for _, n := range want {
		i, _ := slices.BinarySearch(numbers, n)
		if i%3 == 0 {
			wantSmith = append(wantSmith, n)
		} else {
			wantLocal = append(wantLocal, n)
		}
	}
	if got := collect(store.ExtensionQuery{Limit: 5, Search: "SMI"}); !slices.Equal(got, wantSmith) {
		t.Fatalf("search SMI visited\n%v\nwant\n%v", got, wantSmith)
	}
	if got := collect(store.ExtensionQuery{Limit: 9, Search: "example.COM"}); !slices.Equal(got, wantSmith) {
		t.Fatalf("search by email domain visited %v", got)
	}
	if got := collect(store.ExtensionQuery{Limit: 9, Search: "person smith"}); !slices.Equal(got, wantSmith) {
		t.Fatalf("search by full name visited %v", got)
	}
	if got := collect(store.ExtensionQuery{Limit: 11, Source: directory.SourceLocal}); !slices.Equal(got, wantLocal) {
		t.Fatalf("source filter visited %v", got)
	}
	if got := collect(store.ExtensionQuery{Search: "%"}); len(got) != 0 {
		t.Fatalf("search %% matched %v (LIKE wildcards must be literal)", got)
	}
	if got := collect(store.ExtensionQuery{Search: "999999999999"}); !slices.Equal(got, []string{"999999999999"}) {
		t.Fatalf("search by number visited %v", got)
	}
	if got := collect(store.ExtensionQuery{EntraID: "entra-" + wantSmith[3]}); !slices.Equal(got, []string{wantSmith[3]}) {
		t.Fatalf("entra id filter visited %v", got)
	}
	items, next, err := s.ListExtensions(ctx, pbx, store.ExtensionQuery{Limit: 5000})
	if err != nil || len(items) != len(want) || next != "" {
		t.Fatalf("limit above the maximum: %d items, next %q, %v", len(items), next, err)
	}
	_, _, err = s.ListExtensions(ctx, pbx, store.ExtensionQuery{Cursor: "!!not a cursor!!"})
	if err == nil {
		t.Fatal("a garbage cursor was accepted")
	}
	empty := newPBX(t, s, 0)
	items, next, err = s.ListExtensions(ctx, empty, store.ExtensionQuery{})
	if err != nil || len(items) != 0 || next != "" {
		t.Fatalf("empty PBX: %v %q %v", items, next, err)
	}
}

func testListAllExtensions(t *testing.T, s store.Store) {
	ctx := t.Context()
	pbx := newPBX(t, s, 0)
	if err := s.ApplyExtensions(ctx, pbx, store.ExtensionChanges{Create: numbered(1, 1500)}); err != nil {
		t.Fatal(err)
	}
	var got []string
	err := s.ListAllExtensions(ctx, pbx, func(e *directory.Extension) error {
		got = append(got, e.Number)
		if e.Number == "700" { // the callback may use the store
			if _, err := s.UpdateExtension(ctx, pbx, e.ID, func(x *directory.Extension) error { x.JobTitle = "seen"; return nil }); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1500 || !sort.SliceIsSorted(got, func(i, j int) bool { return numericLess(got[i], got[j]) }) {
		t.Fatalf("ListAllExtensions visited %d, sorted %v", len(got), sort.SliceIsSorted(got, func(i, j int) bool { return numericLess(got[i], got[j]) }))
	}
	n := 0
	err = s.ListAllExtensions(ctx, pbx, func(*directory.Extension) error {
		if n++; n == 3 {
			return errBoom
		}
		return nil
	})
	if !errors.Is(err, errBoom) || n != 3 {
		t.Fatalf("ListAllExtensions did not stop at the callback's error: %v after %d", err, n)
	}
}

// --- groups ---

func testGroups(t *testing.T, s store.Store) {
	ctx := t.Context()
	pbx := newPBX(t, s, 0)
	e1 := mustCreateExt(t, s, pbx, ext("1", "", "", ""))
	e2 := mustCreateExt(t, s, pbx, ext("2", "", "", ""))
	e3 := mustCreateExt(t, s, pbx, ext("3", "", "", ""))
	g := &directory.Group{Name: "Support", Members: []string{e2.ID, e1.ID, e2.ID}}
	if err := s.CreateGroup(ctx, pbx, g); err != nil {
		t.Fatal(err)
	}
	wantMembers := []string{e1.ID, e2.ID}
	slices.Sort(wantMembers)
	if g.ID == "" || g.Source != directory.SourceLocal || !slices.Equal(g.Members, wantMembers) {
		t.Fatalf("CreateGroup = %+v", g)
	}
	got, err := s.GetGroup(ctx, pbx, g.ID)
	if err != nil || got.Name != "Support" || !slices.Equal(got.Members, wantMembers) || !got.CreatedAt.Equal(g.CreatedAt) {
		t.Fatalf("GetGroup = %+v, %v", got, err)
	}
	wantConflict(t, "CreateGroup(dup name other case)", s.CreateGroup(ctx, pbx, &directory.Group{Name: "SUPPORT"}), "name")
	wantFieldError(t, "CreateGroup(no name)", s.CreateGroup(ctx, pbx, &directory.Group{Name: "  "}), "name")
	wantFieldError(t, "CreateGroup(unknown member)", s.CreateGroup(ctx, pbx, &directory.Group{Name: "X", Members: []string{"nope"}}), "members")
	empty := &directory.Group{Name: "Empty", Source: directory.SourceEntra, EntraID: "g-1"}
	if err := s.CreateGroup(ctx, pbx, empty); err != nil {
		t.Fatal(err)
	}
	_, err = s.UpdateGroup(ctx, pbx, empty.ID, func(x *directory.Group) error { x.Name = "support"; return nil })
	wantConflict(t, "UpdateGroup(dup name)", err, "name")

	up, err := s.UpdateGroup(ctx, pbx, g.ID, func(x *directory.Group) error {
		x.Name, x.Members = "Support Team", []string{e3.ID, e2.ID}
		return nil
	})
	wantMembers = []string{e2.ID, e3.ID}
	slices.Sort(wantMembers)
	if err != nil || up.Name != "Support Team" || !slices.Equal(up.Members, wantMembers) {
		t.Fatalf("UpdateGroup = %+v, %v", up, err)
	}
	_, err = s.UpdateGroup(ctx, pbx, g.ID, func(x *directory.Group) error { x.Members = append(x.Members, "nope"); return nil })
	wantFieldError(t, "UpdateGroup(unknown member)", err, "members")
	if err := s.DeleteGroup(ctx, pbx, empty.ID, directory.CheckManualGroupDelete); !errors.Is(err, directory.ErrLocked) {
		t.Fatalf("DeleteGroup of a synced group with the lock check: %v", err)
	}
	list, err := s.ListGroups(ctx, pbx)
	if err != nil || len(list) != 2 || list[0].Name != "Empty" || list[1].Name != "Support Team" ||
		!slices.Equal(list[1].Members, wantMembers) || len(list[0].Members) != 0 || !list[0].Synced() {
		t.Fatalf("ListGroups = %+v, %v", list, err)
	}
	if err := s.DeleteGroup(ctx, pbx, g.ID, nil); err != nil {
		t.Fatal(err)
	}
	_, err = s.GetGroup(ctx, pbx, g.ID)
	wantNotFound(t, "GetGroup after delete", err)
	// deleting a group keeps its extensions
	mustCount(t, s, pbx, 3)
}

func testGroupLimit(t *testing.T, s store.Store) {
	ctx := t.Context()
	pbx := newPBX(t, s, 0)
	for i := range directory.MaxGroups {
		if err := s.CreateGroup(ctx, pbx, &directory.Group{Name: fmt.Sprintf("Group %02d", i)}); err != nil {
			t.Fatalf("group %d: %v", i+1, err)
		}
	}
	err := s.CreateGroup(ctx, pbx, &directory.Group{Name: "One too many"})
	if !errors.Is(err, directory.ErrGroupLimit) {
		t.Fatalf("64th group: %v", err)
	}
	list, _ := s.ListGroups(ctx, pbx)
	if len(list) != directory.MaxGroups {
		t.Fatalf("%d groups stored", len(list))
	}
	// Another PBX has its own 63.
	if err := s.CreateGroup(ctx, newPBX(t, s, 0), &directory.Group{Name: "One too many"}); err != nil {
		t.Fatal(err)
	}
	// After a delete there is room again.
	if err := s.DeleteGroup(ctx, pbx, list[0].ID, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateGroup(ctx, pbx, &directory.Group{Name: "One too many"}); err != nil {
		t.Fatal(err)
	}
}

func testDeleteCascades(t *testing.T, s store.Store) {
	ctx := t.Context()
	pbx := newPBX(t, s, 0)
	gone := mustCreateExt(t, s, pbx, ext("10", "Gone", "", ""))
	stays := mustCreateExt(t, s, pbx, ext("11", "Stays", "", ""))
	g := &directory.Group{Name: "G", Members: []string{gone.ID, stays.ID}}
	if err := s.CreateGroup(ctx, pbx, g); err != nil {
		t.Fatal(err)
	}
	pc := &directory.Contact{ExtensionID: gone.ID, FirstName: "Mum", Mobile: "123"}
	if err := s.CreateContact(ctx, pbx, pc); err != nil {
		t.Fatal(err)
	}
	if err := s.ReplaceSyncedContacts(ctx, pbx, store.ContactOwner{ExtensionID: gone.ID}, []directory.Contact{{FirstName: "Synced", Mobile: "1", EntraID: "c1"}}); err != nil {
		t.Fatal(err)
	}
	pb := &directory.Phonebook{Name: "P"}
	if err := s.CreatePhonebook(ctx, pbx, pb); err != nil {
		t.Fatal(err)
	}
	if err := s.SetVisibility(ctx, pbx, pb.ID, []directory.Visibility{{Kind: directory.VisibleToExtension, TargetID: gone.ID}, {Kind: directory.VisibleToGroup, TargetID: g.ID}}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteExtension(ctx, pbx, gone.ID, nil); err != nil {
		t.Fatal(err)
	}
	got, _ := s.GetGroup(ctx, pbx, g.ID)
	if !slices.Equal(got.Members, []string{stays.ID}) {
		t.Fatalf("group members after delete: %v", got.Members)
	}
	_, err := s.GetContact(ctx, pbx, pc.ID)
	wantNotFound(t, "personal contact of a deleted extension", err)
	cs, _, _ := s.ListContacts(ctx, pbx, store.ContactQuery{ExtensionID: gone.ID})
	if len(cs) != 0 {
		t.Fatalf("personal contacts survived: %v", cs)
	}
	vs, _ := s.ListVisibility(ctx, pbx, pb.ID)
	if len(vs) != 1 || vs[0].Kind != directory.VisibleToGroup {
		t.Fatalf("visibility after extension delete: %v", vs)
	}

	// Bulk deletes cascade the same way.
	g2 := &directory.Group{Name: "G2", Members: []string{stays.ID}}
	if err := s.CreateGroup(ctx, pbx, g2); err != nil {
		t.Fatal(err)
	}
	if err := s.ApplyExtensions(ctx, pbx, store.ExtensionChanges{Delete: []string{stays.ID}}); err != nil {
		t.Fatal(err)
	}
	got, _ = s.GetGroup(ctx, pbx, g2.ID)
	if len(got.Members) != 0 {
		t.Fatalf("group members after bulk delete: %v", got.Members)
	}
	// Deleting the group drops its visibility grant; deleting the phonebook its contacts.
	if err := s.DeleteGroup(ctx, pbx, g.ID, nil); err != nil {
		t.Fatal(err)
	}
	if vs, _ := s.ListVisibility(ctx, pbx, pb.ID); len(vs) != 0 {
		t.Fatalf("visibility after group delete: %v", vs)
	}
	bc := &directory.Contact{PhonebookID: pb.ID, FirstName: "B", Business: "1"}
	if err := s.CreateContact(ctx, pbx, bc); err != nil {
		t.Fatal(err)
	}
	if err := s.DeletePhonebook(ctx, pbx, pb.ID, nil); err != nil {
		t.Fatal(err)
	}
	_, err = s.GetContact(ctx, pbx, bc.ID)
	wantNotFound(t, "contact of a deleted phonebook", err)
}

// --- phonebooks and contacts ---

func testPhonebooks(t *testing.T, s store.Store) {
	ctx := t.Context()
	pbx := newPBX(t, s, 0)
	p := &directory.Phonebook{Name: "Suppliers"}
	if err := s.CreatePhonebook(ctx, pbx, p); err != nil {
		t.Fatal(err)
	}
	if p.ID == "" || p.Source != directory.SourceLocal || p.CreatedAt.IsZero() {
		t.Fatalf("CreatePhonebook = %+v", p)
	}
	wantFieldError(t, "CreatePhonebook(no name)", s.CreatePhonebook(ctx, pbx, &directory.Phonebook{}), "name")
	shared := &directory.Phonebook{Name: "Shared mailbox", Source: directory.SourceEntra, EntraID: "mbx"}
	if err := s.CreatePhonebook(ctx, pbx, shared); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := s.CreateContact(ctx, pbx, &directory.Contact{PhonebookID: p.ID, FirstName: fmt.Sprint("C", i), Home: "1"}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.GetPhonebook(ctx, pbx, p.ID)
	if err != nil || got.ContactCount != 3 || got.Name != "Suppliers" {
		t.Fatalf("GetPhonebook = %+v, %v", got, err)
	}
	up, err := s.UpdatePhonebook(ctx, pbx, p.ID, func(x *directory.Phonebook) error { x.Name, x.ContactCount = "Vendors", 99; return nil })
	if err != nil || up.Name != "Vendors" || up.ContactCount != 3 {
		t.Fatalf("UpdatePhonebook = %+v, %v", up, err)
	}
	list, err := s.ListPhonebooks(ctx, pbx)
	if err != nil || len(list) != 2 || list[0].Name != "Shared mailbox" || list[1].ContactCount != 3 || !list[0].Synced() {
		t.Fatalf("ListPhonebooks = %+v, %v", list, err)
	}
	if err := s.DeletePhonebook(ctx, pbx, p.ID, nil); err != nil {
		t.Fatal(err)
	}
	_, err = s.GetPhonebook(ctx, pbx, p.ID)
	wantNotFound(t, "GetPhonebook after delete", err)
	wantNotFound(t, "DeletePhonebook again", s.DeletePhonebook(ctx, pbx, p.ID, nil))
}

func testContacts(t *testing.T, s store.Store) {
	ctx := t.Context()
	pbx := newPBX(t, s, 0)
	e := mustCreateExt(t, s, pbx, ext("100", "", "", ""))
	pb := &directory.Phonebook{Name: "Book"}
	if err := s.CreatePhonebook(ctx, pbx, pb); err != nil {
		t.Fatal(err)
	}
	c := &directory.Contact{PhonebookID: pb.ID, FirstName: "Grace", LastName: "Hopper", Company: "Navy",
		Mobile: "+1 555 0100", Home: "", Business: "(555) 0101", Email: "grace@navy.mil"}
	if err := s.CreateContact(ctx, pbx, c); err != nil {
		t.Fatal(err)
	}
	if c.ID == "" || c.PBXID != pbx || c.Source != directory.SourceLocal {
		t.Fatalf("CreateContact = %+v", c)
	}
	got, err := s.GetContact(ctx, pbx, c.ID)
	if err != nil || *got != *c {
		t.Fatalf("GetContact = %+v, %v\nwant %+v", got, err, c)
	}
	wantFieldError(t, "contact without name", s.CreateContact(ctx, pbx, &directory.Contact{PhonebookID: pb.ID, Mobile: "1"}), "firstName")
	wantFieldError(t, "contact without phone", s.CreateContact(ctx, pbx, &directory.Contact{PhonebookID: pb.ID, FirstName: "A"}), "mobile")
	wantFieldError(t, "contact with two owners", s.CreateContact(ctx, pbx, &directory.Contact{PhonebookID: pb.ID, ExtensionID: e.ID, FirstName: "A", Mobile: "1"}), "phonebookId")
	wantNotFound(t, "contact of a missing phonebook", s.CreateContact(ctx, pbx, &directory.Contact{PhonebookID: "nope", FirstName: "A", Mobile: "1"}))
	wantNotFound(t, "contact of a missing extension", s.CreateContact(ctx, pbx, &directory.Contact{ExtensionID: "nope", FirstName: "A", Mobile: "1"}))

	up, err := s.UpdateContact(ctx, pbx, c.ID, func(x *directory.Contact) error {
		x.Company, x.PhonebookID, x.ExtensionID = "Yale", "", e.ID // the owner cannot change
		return nil
	})
	if err != nil || up.Company != "Yale" || up.PhonebookID != pb.ID || up.ExtensionID != "" {
		t.Fatalf("UpdateContact = %+v, %v", up, err)
	}
	_, err = s.UpdateContact(ctx, pbx, c.ID, func(x *directory.Contact) error { x.Mobile, x.Business = "", ""; return nil })
	wantFieldError(t, "UpdateContact(no phone left)", err, "mobile")
	personal := &directory.Contact{ExtensionID: e.ID, LastName: "Only", Home: "42"}
	if err := s.CreateContact(ctx, pbx, personal); err != nil {
		t.Fatal(err)
	}
	cs, next, err := s.ListContacts(ctx, pbx, store.ContactQuery{ExtensionID: e.ID})
	if err != nil || len(cs) != 1 || cs[0].ID != personal.ID || next != "" {
		t.Fatalf("ListContacts(extension) = %v, %q, %v", cs, next, err)
	}
	if _, _, err := s.ListContacts(ctx, pbx, store.ContactQuery{}); err == nil {
		t.Fatal("ListContacts without an owner was accepted")
	}
	if err := s.DeleteContact(ctx, pbx, c.ID, nil); err != nil {
		t.Fatal(err)
	}
	_, err = s.GetContact(ctx, pbx, c.ID)
	wantNotFound(t, "GetContact after delete", err)
	wantNotFound(t, "DeleteContact again", s.DeleteContact(ctx, pbx, c.ID, nil))
}

// testContactDialForms checks that the dialling forms are stored next to the
// numbers as entered by every write path and come back from every read path.
func testContactDialForms(t *testing.T, s store.Store) {
	ctx := t.Context()
	pbx := newPBX(t, s, 0)
	e := mustCreateExt(t, s, pbx, ext("100", "", "", ""))
	pb := &directory.Phonebook{Name: "Book"}
	if err := s.CreatePhonebook(ctx, pbx, pb); err != nil {
		t.Fatal(err)
	}
	if err := s.SetVisibility(ctx, pbx, pb.ID, []directory.Visibility{{Kind: directory.VisibleToEveryone}}); err != nil {
		t.Fatal(err)
	}
	c := &directory.Contact{PhonebookID: pb.ID, FirstName: "Ada", Mobile: "0171 1234567", Home: "030 123456",
		Business: "+44 (0)20 7946 0000", MobileDial: "+491711234567", HomeDial: "+4930123456", BusinessDial: "+442079460000"}
	if err := s.CreateContact(ctx, pbx, c); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetContact(ctx, pbx, c.ID)
	if err != nil || *got != *c {
		t.Fatalf("GetContact = %+v, %v\nwant %+v", got, err, c)
	}
	up, err := s.UpdateContact(ctx, pbx, c.ID, func(x *directory.Contact) error {
		x.Home, x.HomeDial, x.MobileDial = "", "", "01711234567" // dialling forms are stored as given
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetContact(ctx, pbx, c.ID); err != nil || *got != *up || got.HomeDial != "" || got.MobileDial != "01711234567" || got.BusinessDial != "+442079460000" {
		t.Fatalf("GetContact after update = %+v, %v\nwant %+v", got, err, up)
	}
	synced := []directory.Contact{{FirstName: "Synced", Mobile: "(425) 555-0100", MobileDial: "+14255550100", Business: "12", BusinessDial: "12", EntraID: "s1"}}
	if err := s.ReplaceSyncedContacts(ctx, pbx, store.ContactOwner{ExtensionID: e.ID}, synced); err != nil {
		t.Fatal(err)
	}
	cs, _, err := s.ListContacts(ctx, pbx, store.ContactQuery{ExtensionID: e.ID})
	if err != nil || len(cs) != 1 || cs[0].MobileDial != "+14255550100" || cs[0].BusinessDial != "12" || cs[0].HomeDial != "" {
		t.Fatalf("ListContacts(synced) = %+v, %v", cs, err)
	}
	vis, _, err := s.ListVisibleContacts(ctx, pbx, e.ID, store.ContactQuery{})
	if err != nil || len(vis) != 2 {
		t.Fatalf("ListVisibleContacts = %+v, %v", vis, err)
	}
	for _, v := range vis {
		want := cs[0]
		if v.ID == c.ID {
			want = *up
		}
		if v != want {
			t.Fatalf("ListVisibleContacts item = %+v\nwant %+v", v, want)
		}
	}
}

func contactName(c directory.Contact) string {
	return strings.ToLower(strings.TrimSpace(c.FirstName + " " + c.LastName))
}

func testContactPagination(t *testing.T, s store.Store) {
	ctx := t.Context()
	pbx := newPBX(t, s, 0)
	pb := &directory.Phonebook{Name: "Big"}
	if err := s.CreatePhonebook(ctx, pbx, pb); err != nil {
		t.Fatal(err)
	}
	firsts := []string{"anna", "Bob", "carl", "Dora", "emil", "Anna"}
	var cs []directory.Contact
	for i := range 60 {
		cs = append(cs, directory.Contact{FirstName: firsts[i%len(firsts)], LastName: fmt.Sprintf("L%02d", i%7), Mobile: fmt.Sprint(1000 + i), EntraID: fmt.Sprint("e", i)})
	}
	if err := s.ReplaceSyncedContacts(ctx, pbx, store.ContactOwner{PhonebookID: pb.ID}, cs); err != nil {
		t.Fatal(err)
	}
	walk := func(q store.ContactQuery) []directory.Contact {
		var out []directory.Contact
		seen := map[string]bool{}
		for range 100 {
			items, next, err := s.ListContacts(ctx, pbx, q)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range items {
				if seen[c.ID] {
					t.Fatalf("contact %s twice", c.ID)
				}
				seen[c.ID] = true
			}
			out = append(out, items...)
			if next == "" {
				return out
			}
			q.Cursor = next
		}
		t.Fatal("contact pagination does not end")
		return nil
	}
	got := walk(store.ContactQuery{PhonebookID: pb.ID, Limit: 7})
	if len(got) != 60 || !sort.SliceIsSorted(got, func(i, j int) bool { return contactName(got[i]) < contactName(got[j]) }) {
		t.Fatalf("paged %d contacts, sorted by name: %v", len(got), sort.SliceIsSorted(got, func(i, j int) bool { return contactName(got[i]) < contactName(got[j]) }))
	}
	got = walk(store.ContactQuery{PhonebookID: pb.ID, Limit: 4, Search: "ANNA L03"})
	n := 0
	for _, c := range cs {
		if strings.EqualFold(c.FirstName, "anna") && c.LastName == "L03" {
			n++
		}
	}
	if len(got) != n || n == 0 {
		t.Fatalf("search found %d, want %d", len(got), n)
	}
	if got := walk(store.ContactQuery{PhonebookID: pb.ID, Search: "1042"}); len(got) != 1 || got[0].Mobile != "1042" {
		t.Fatalf("search by phone: %v", got)
	}
}

func testReplaceSyncedContacts(t *testing.T, s store.Store) {
	ctx := t.Context()
	pbx := newPBX(t, s, 0)
	e := mustCreateExt(t, s, pbx, ext("100", "", "", ""))
	owner := store.ContactOwner{ExtensionID: e.ID}
	local := &directory.Contact{ExtensionID: e.ID, FirstName: "Local", Mobile: "1"}
	if err := s.CreateContact(ctx, pbx, local); err != nil {
		t.Fatal(err)
	}
	first := []directory.Contact{
		{FirstName: "Alice", Mobile: "10", EntraID: "a"},
		{FirstName: "Bob", Mobile: "11", EntraID: "b"},
	}
	if err := s.ReplaceSyncedContacts(ctx, pbx, owner, first); err != nil {
		t.Fatal(err)
	}
	all := func() map[string]directory.Contact {
		cs, _, err := s.ListContacts(ctx, pbx, store.ContactQuery{ExtensionID: e.ID})
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]directory.Contact{}
		for _, c := range cs {
			m[c.FirstName] = c
		}
		return m
	}
	m := all()
	if len(m) != 3 || m["Alice"].Source != directory.SourceEntra || m["Local"].Source != directory.SourceLocal {
		t.Fatalf("after first replace: %+v", m)
	}
	aliceID := m["Alice"].ID
	second := []directory.Contact{
		{FirstName: "Alice", LastName: "Renamed", Mobile: "10", EntraID: "a"},
		{FirstName: "Carol", Mobile: "12", EntraID: "c", Source: directory.SourceLocal}, // forced to entra
	}
	if err := s.ReplaceSyncedContacts(ctx, pbx, owner, second); err != nil {
		t.Fatal(err)
	}
	m = all()
	if len(m) != 3 || m["Bob"].ID != "" || m["Carol"].Source != directory.SourceEntra || m["Local"].ID != local.ID {
		t.Fatalf("after second replace: %+v", m)
	}
	if m["Alice"].ID != aliceID || m["Alice"].LastName != "Renamed" {
		t.Fatalf("a contact with the same Entra id should keep its id: %+v (was %s)", m["Alice"], aliceID)
	}
	// An invalid contact refuses the whole replace.
	err := s.ReplaceSyncedContacts(ctx, pbx, owner, []directory.Contact{{FirstName: "Dan", Mobile: "13"}, {FirstName: "NoPhone"}})
	wantFieldError(t, "ReplaceSyncedContacts(invalid)", err, "mobile")
	if len(all()) != 3 {
		t.Fatal("a refused replace changed contacts")
	}
	if err := s.ReplaceSyncedContacts(ctx, pbx, owner, nil); err != nil {
		t.Fatal(err)
	}
	if m = all(); len(m) != 1 || m["Local"].ID != local.ID {
		t.Fatalf("after emptying: %+v", m)
	}
}

func testVisibility(t *testing.T, s store.Store) {
	ctx := t.Context()
	pbx := newPBX(t, s, 0)
	e1 := mustCreateExt(t, s, pbx, ext("1", "", "", ""))
	e2 := mustCreateExt(t, s, pbx, ext("2", "", "", ""))
	e3 := mustCreateExt(t, s, pbx, ext("3", "", "", ""))
	g := &directory.Group{Name: "Team", Members: []string{e2.ID}}
	if err := s.CreateGroup(ctx, pbx, g); err != nil {
		t.Fatal(err)
	}
	books := map[string]*directory.Phonebook{}
	for _, name := range []string{"Everyone", "ForE1", "ForTeam", "Hidden"} {
		p := &directory.Phonebook{Name: name, Source: directory.SourceEntra}
		if err := s.CreatePhonebook(ctx, pbx, p); err != nil {
			t.Fatal(err)
		}
		books[name] = p
		if err := s.ReplaceSyncedContacts(ctx, pbx, store.ContactOwner{PhonebookID: p.ID}, []directory.Contact{
			{FirstName: name, LastName: "One", Business: "1"}, {FirstName: name, LastName: "Two", Business: "2"},
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateContact(ctx, pbx, &directory.Contact{ExtensionID: e1.ID, FirstName: "Personal", LastName: "E1", Mobile: "9"}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateContact(ctx, pbx, &directory.Contact{ExtensionID: e2.ID, FirstName: "Personal", LastName: "E2", Mobile: "9"}); err != nil {
		t.Fatal(err)
	}
	set := func(book string, vs ...directory.Visibility) {
		t.Helper()
		if err := s.SetVisibility(ctx, pbx, books[book].ID, vs); err != nil {
			t.Fatal(err)
		}
	}
	set("Everyone", directory.Visibility{Kind: directory.VisibleToEveryone, TargetID: "ignored"})
	set("ForE1", directory.Visibility{Kind: directory.VisibleToExtension, TargetID: e1.ID})
	set("ForTeam", directory.Visibility{Kind: directory.VisibleToGroup, TargetID: g.ID}, directory.Visibility{Kind: directory.VisibleToGroup, TargetID: g.ID})
	vs, err := s.ListVisibility(ctx, pbx, books["ForTeam"].ID)
	if err != nil || len(vs) != 1 || vs[0].TargetID != g.ID || vs[0].PhonebookID != books["ForTeam"].ID {
		t.Fatalf("ListVisibility = %+v, %v", vs, err)
	}
	if vs, _ := s.ListVisibility(ctx, pbx, books["Everyone"].ID); len(vs) != 1 || vs[0].TargetID != "" {
		t.Fatalf("everyone grant = %+v", vs)
	}
	err = s.SetVisibility(ctx, pbx, books["Hidden"].ID, []directory.Visibility{{Kind: directory.VisibleToExtension, TargetID: "nope"}})
	wantFieldError(t, "SetVisibility(unknown extension)", err, "visibility[0].targetId")
	err = s.SetVisibility(ctx, pbx, books["Hidden"].ID, []directory.Visibility{{Kind: "planet"}})
	wantFieldError(t, "SetVisibility(unknown kind)", err, "visibility[0].kind")

	visible := func(e *directory.Extension, limit int) []string {
		t.Helper()
		var names []string
		q := store.ContactQuery{Limit: limit}
		for range 50 {
			cs, next, err := s.ListVisibleContacts(ctx, pbx, e.ID, q)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range cs {
				names = append(names, c.FirstName+" "+c.LastName)
			}
			if next == "" {
				return names
			}
			q.Cursor = next
		}
		t.Fatal("visible contact pagination does not end")
		return nil
	}
	for _, tc := range []struct {
		e    *directory.Extension
		want []string
	}{
		{e1, []string{"Everyone One", "Everyone Two", "ForE1 One", "ForE1 Two", "Personal E1"}},
		{e2, []string{"Everyone One", "Everyone Two", "ForTeam One", "ForTeam Two", "Personal E2"}},
		{e3, []string{"Everyone One", "Everyone Two"}},
	} {
		if got := visible(tc.e, 2); !slices.Equal(got, tc.want) {
			t.Fatalf("extension %s sees %v, want %v", tc.e.Number, got, tc.want)
		}
	}
	cs, _, err := s.ListVisibleContacts(ctx, pbx, e1.ID, store.ContactQuery{Search: "two"})
	if err != nil || len(cs) != 2 {
		t.Fatalf("visible search: %v, %v", cs, err)
	}
	// Group membership drives visibility: moving e3 into the team shows the team's book.
	if _, err := s.UpdateGroup(ctx, pbx, g.ID, func(x *directory.Group) error { x.Members = append(x.Members, e3.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	if got := visible(e3, 100); !slices.Equal(got, []string{"Everyone One", "Everyone Two", "ForTeam One", "ForTeam Two"}) {
		t.Fatalf("after joining the group e3 sees %v", got)
	}
	set("Everyone") // no grants: hidden
	if got := visible(e3, 100); !slices.Equal(got, []string{"ForTeam One", "ForTeam Two"}) {
		t.Fatalf("after revoking everyone e3 sees %v", got)
	}
	_, _, err = s.ListVisibleContacts(ctx, pbx, "nope", store.ContactQuery{})
	wantNotFound(t, "ListVisibleContacts(missing extension)", err)
}

// --- settings, audit, admins ---

func testSettings(t *testing.T, s store.Store) {
	ctx := t.Context()
	pbx := newPBX(t, s, 0)
	_, err := s.GetSetting(ctx, pbx, "sync.users")
	wantNotFound(t, "GetSetting(unset)", err)
	var sawOld []byte
	sawOld = []byte("sentinel")
	if err := s.UpdateSetting(ctx, pbx, "sync.users", func(old []byte) ([]byte, error) {
		sawOld = old
		return []byte(`{"enabled":true}`), nil
	}); err != nil {
		t.Fatal(err)
	}
	if sawOld != nil {
		t.Fatalf("UpdateSetting passed %q for an unset key, want nil", sawOld)
	}
	if err := s.UpdateSetting(ctx, pbx, "sync.users", func(old []byte) ([]byte, error) {
		sawOld = old
		return append(old, '!'), nil
	}); err != nil {
		t.Fatal(err)
	}
	if string(sawOld) != `{"enabled":true}` {
		t.Fatalf("UpdateSetting passed %q", sawOld)
	}
	v, err := s.GetSetting(ctx, pbx, "sync.users")
	if err != nil || string(v) != `{"enabled":true}!` {
		t.Fatalf("GetSetting = %q, %v", v, err)
	}
	bin := []byte{0, 0xff, 0x10}
	for _, kv := range []struct {
		k string
		v []byte
	}{{"sync.groups", []byte("g")}, {"delta.users", bin}, {"empty", []byte{}}} {
		if err := s.UpdateSetting(ctx, pbx, kv.k, func([]byte) ([]byte, error) { return kv.v, nil }); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := s.GetSetting(ctx, pbx, "empty"); err != nil || v == nil || len(v) != 0 {
		t.Fatalf("empty value: %v, %v", v, err)
	}
	m, err := s.ListSettings(ctx, pbx, "sync.")
	if err != nil || len(m) != 2 || string(m["sync.groups"]) != "g" {
		t.Fatalf("ListSettings(sync.) = %v, %v", m, err)
	}
	if m, _ := s.ListSettings(ctx, pbx, "SYNC."); len(m) != 0 {
		t.Fatalf("prefixes are case-sensitive: %v", m)
	}
	m, _ = s.ListSettings(ctx, pbx, "")
	if len(m) != 4 || string(m["delta.users"]) != string(bin) {
		t.Fatalf("ListSettings() = %v", m)
	}
	if err := s.UpdateSetting(ctx, pbx, "sync.groups", func([]byte) ([]byte, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	_, err = s.GetSetting(ctx, pbx, "sync.groups")
	wantNotFound(t, "GetSetting after delete", err)
	// Deleting an unset key is fine.
	if err := s.UpdateSetting(ctx, pbx, "never", func([]byte) ([]byte, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
}

func testAudit(t *testing.T, s store.Store) {
	ctx := t.Context()
	pbx, other := newPBX(t, s, 0), newPBX(t, s, 0)
	for i := range 5 {
		if err := s.AppendAudit(ctx, store.AuditEntry{PBXID: pbx, Actor: "admin", Action: fmt.Sprint("action-", i), Target: "ext", Detail: "d"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AppendAudit(ctx, store.AuditEntry{PBXID: other, Actor: "x", Action: "elsewhere"}); err != nil {
		t.Fatal(err)
	}
	all, err := s.ListAudit(ctx, pbx, 0, 0)
	if err != nil || len(all) != 5 {
		t.Fatalf("ListAudit = %v, %v", all, err)
	}
	for i, e := range all {
		if e.Action != fmt.Sprint("action-", 4-i) || e.PBXID != pbx || e.At.IsZero() || e.Actor != "admin" {
			t.Fatalf("entry %d = %+v (want newest first)", i, e)
		}
	}
	page, err := s.ListAudit(ctx, pbx, 0, 2)
	if err != nil || len(page) != 2 || page[0].ID != all[0].ID {
		t.Fatalf("first page = %v, %v", page, err)
	}
	page, err = s.ListAudit(ctx, pbx, page[1].ID, 2)
	if err != nil || len(page) != 2 || page[0].ID != all[2].ID || page[1].ID != all[3].ID {
		t.Fatalf("second page = %v, %v", page, err)
	}
}

func testAdmins(t *testing.T, s store.Store) {
	ctx := t.Context()
	before, err := s.CountAdmins(ctx)
	if err != nil {
		t.Fatal(err)
	}
	name := "Admin-" + randHex(4)
	a := &store.Admin{Username: name, PasswordHash: "h1", MustChange: true}
	if err := s.CreateAdmin(ctx, a); err != nil {
		t.Fatal(err)
	}
	if a.ID == "" || a.CreatedAt.IsZero() {
		t.Fatalf("CreateAdmin = %+v", a)
	}
	wantConflict(t, "CreateAdmin(dup username other case)", s.CreateAdmin(ctx, &store.Admin{Username: strings.ToUpper(name), PasswordHash: "x"}), "username")
	wantFieldError(t, "CreateAdmin(no username)", s.CreateAdmin(ctx, &store.Admin{PasswordHash: "x"}), "username")
	got, err := s.GetAdminByUsername(ctx, strings.ToLower(name))
	if err != nil || got.ID != a.ID || got.Username != name || !got.MustChange || got.PasswordHash != "h1" || !got.CreatedAt.Equal(a.CreatedAt) {
		t.Fatalf("GetAdminByUsername = %+v, %v", got, err)
	}
	_, err = s.GetAdminByUsername(ctx, "nobody-"+randHex(4))
	wantNotFound(t, "GetAdminByUsername(missing)", err)
	up, err := s.UpdateAdmin(ctx, a.ID, func(x *store.Admin) error { x.PasswordHash, x.MustChange = "h2", false; return nil })
	if err != nil || up.PasswordHash != "h2" || up.MustChange {
		t.Fatalf("UpdateAdmin = %+v, %v", up, err)
	}
	other := &store.Admin{Username: "other-" + randHex(4), PBXID: newPBX(t, s, 0)}
	if err := s.CreateAdmin(ctx, other); err != nil {
		t.Fatal(err)
	}
	_, err = s.UpdateAdmin(ctx, other.ID, func(x *store.Admin) error { x.Username = name; return nil })
	wantConflict(t, "UpdateAdmin(dup username)", err, "username")
	_, err = s.UpdateAdmin(ctx, "nope", func(*store.Admin) error { return nil })
	wantNotFound(t, "UpdateAdmin(missing)", err)
	after, _ := s.CountAdmins(ctx)
	if after < before+2 {
		t.Fatalf("CountAdmins %d -> %d", before, after)
	}
}

// --- concurrency ---

func testConcurrentExtensionUpdates(t *testing.T, s store.Store) {
	ctx := t.Context()
	pbx := newPBX(t, s, 0)
	e := mustCreateExt(t, s, pbx, &directory.Extension{Number: "100", JobTitle: "0"})
	const workers, each = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for range workers {
		wg.Go(func() {
			for range each {
				_, err := s.UpdateExtension(ctx, pbx, e.ID, func(x *directory.Extension) error {
					n, err := strconv.Atoi(x.JobTitle)
					if err != nil {
						return err
					}
					x.JobTitle = strconv.Itoa(n + 1)
					return nil
				})
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent UpdateExtension: %v", err)
	}
	got, _ := s.GetExtension(ctx, pbx, e.ID)
	if got.JobTitle != strconv.Itoa(workers*each) {
		t.Fatalf("counter = %s after %d increments: updates were lost", got.JobTitle, workers*each)
	}
}

func testConcurrentSettingUpdates(t *testing.T, s store.Store) {
	ctx := t.Context()
	pbx := newPBX(t, s, 0)
	const workers, each = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for range workers {
		wg.Go(func() {
			for range each {
				// The key is unset at first: creating it must not race either.
				err := s.UpdateSetting(ctx, pbx, "counter", func(old []byte) ([]byte, error) {
					n := 0
					if old != nil {
						var err error
						if n, err = strconv.Atoi(string(old)); err != nil {
							return nil, err
						}
					}
					return []byte(strconv.Itoa(n + 1)), nil
				})
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent UpdateSetting: %v", err)
	}
	v, _ := s.GetSetting(ctx, pbx, "counter")
	if string(v) != strconv.Itoa(workers*each) {
		t.Fatalf("counter = %s after %d increments", v, workers*each)
	}
}

func testConcurrentCapacity(t *testing.T, s store.Store) {
	ctx := t.Context()
	pbx := newPBX(t, s, 5)
	var wg sync.WaitGroup
	results := make(chan error, 12)
	for i := range 12 {
		wg.Go(func() {
			results <- s.CreateExtension(ctx, pbx, ext(strconv.Itoa(100+i), "", "", ""))
		})
	}
	wg.Wait()
	close(results)
	ok := 0
	for err := range results {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, directory.ErrCapacity):
		default:
			t.Fatalf("concurrent CreateExtension: %v", err)
		}
	}
	if ok != 5 {
		t.Fatalf("%d creates succeeded in a PBX of 5", ok)
	}
	mustCount(t, s, pbx, 5)
}
