package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

var errFenced = errors.New("fenced: the lease is not ours")

// leaseFence passes while the setting "lease" holds want.
func leaseFence(want string, seen *[][]byte) *store.Fence {
	return &store.Fence{Key: "lease", Check: func(v []byte) error {
		if seen != nil {
			*seen = append(*seen, v)
		}
		if string(v) != want {
			return fmt.Errorf("lease %q: %w", v, errFenced)
		}
		return nil
	}}
}

func setLease(t *testing.T, s store.Store, pbx, v string) {
	t.Helper()
	if err := s.UpdateSetting(t.Context(), pbx, "lease", func([]byte) ([]byte, error) { return []byte(v), nil }); err != nil {
		t.Fatalf("UpdateSetting(lease): %v", err)
	}
}

// A fenced ApplyExtensions writes all of its batch when the check passes
// and nothing of it (creates, updates, deletes; small and COPY-sized) when
// it fails, returning the check's error.
func testApplyFence(t *testing.T, s store.Store) {
	ctx := t.Context()
	pbx := newPBX(t, s, 0)
	base := numbered(100, 5)
	if err := s.ApplyExtensions(ctx, pbx, store.ExtensionChanges{Create: base}); err != nil {
		t.Fatal(err)
	}
	var seen [][]byte
	// Unset: the check sees nil and refuses.
	err := s.ApplyExtensions(ctx, pbx, store.ExtensionChanges{Create: numbered(300, 3), Fence: leaseFence("mine", &seen)})
	if !errors.Is(err, errFenced) || len(seen) != 1 || seen[0] != nil {
		t.Fatalf("fence on an unset setting: err %v, check saw %q", err, seen)
	}
	mustCount(t, s, pbx, 5)

	setLease(t, s, pbx, "theirs")
	for _, n := range []int{3, 700} { // 700: past the bulk (COPY) threshold
		upd := *base[1]
		upd.FirstName = "Fenced"
		err := s.ApplyExtensions(ctx, pbx, store.ExtensionChanges{
			Create: numbered(1000, n),
			Update: []*directory.Extension{&upd},
			Delete: []string{base[0].ID},
			Fence:  leaseFence("mine", nil),
		})
		if !errors.Is(err, errFenced) || err.Error() != `lease "theirs": `+errFenced.Error() {
			t.Fatalf("failing fence (%d creates): err %v", n, err)
		}
		mustCount(t, s, pbx, 5)
		if _, err := s.GetExtension(ctx, pbx, base[0].ID); err != nil {
			t.Fatalf("a fenced-off delete was applied: %v", err)
		}
		if got, _ := s.GetExtension(ctx, pbx, base[1].ID); got.FirstName != "User" {
			t.Fatalf("a fenced-off update was applied: %+v", got)
		}
		if _, err := s.FindExtension(ctx, pbx, "number", "1000"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a fenced-off create was applied: %v", err)
		}
	}

	setLease(t, s, pbx, "mine")
	for i, n := range []int{3, 700} {
		upd := *base[1+i]
		upd.FirstName = "Passed"
		seen = nil
		err := s.ApplyExtensions(ctx, pbx, store.ExtensionChanges{
			Create: numbered(1000+1000*i, n),
			Update: []*directory.Extension{&upd},
			Delete: []string{base[i].ID},
			Fence:  leaseFence("mine", &seen),
		})
		if err != nil || len(seen) != 1 || !bytes.Equal(seen[0], []byte("mine")) {
			t.Fatalf("passing fence (%d creates): err %v, check saw %q", n, err, seen)
		}
		if got, _ := s.GetExtension(ctx, pbx, base[1+i].ID); got.FirstName != "Passed" {
			t.Fatalf("the fenced update was not applied: %+v", got)
		}
		if _, err := s.GetExtension(ctx, pbx, base[i].ID); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("the fenced delete was not applied: %v", err)
		}
	}
	mustCount(t, s, pbx, 5-2+3+700)
	// The fence reads its own PBX's setting only.
	other := newPBX(t, s, 0)
	setLease(t, s, other, "mine")
	setLease(t, s, pbx, "theirs")
	if err := s.ApplyExtensions(ctx, pbx, store.ExtensionChanges{Create: numbered(5000, 1), Fence: leaseFence("mine", nil)}); !errors.Is(err, errFenced) {
		t.Fatalf("fence read another PBX's setting: %v", err)
	}
}

// The fence's setting stays locked for the write's whole transaction: a
// takeover (UpdateSetting of that key) started while a fenced write is
// inside its transaction lands after the write commits, and the next fenced
// write is refused.
func testFenceSerialises(t *testing.T, s store.Store) {
	ctx := t.Context()
	pbx := newPBX(t, s, 0)
	setLease(t, s, pbx, "mine")
	takeover := make(chan error, 1)
	var during bool // the takeover finished while the write held the fence
	fence := &store.Fence{Key: "lease", Check: func(v []byte) error {
		if string(v) != "mine" {
			return errFenced
		}
		go func() {
			takeover <- s.UpdateSetting(ctx, pbx, "lease", func([]byte) ([]byte, error) { return []byte("theirs"), nil })
		}()
		// Give a broken lock every chance to let the takeover through.
		select {
		case err := <-takeover:
			during = true
			takeover <- err
		case <-time.After(150 * time.Millisecond):
		}
		return nil
	}}
	if err := s.ApplyExtensions(ctx, pbx, store.ExtensionChanges{Create: numbered(100, 3), Fence: fence}); err != nil {
		t.Fatalf("fenced write: %v", err)
	}
	if during {
		t.Fatal("the lease changed hands while a fenced write was in its transaction")
	}
	select {
	case err := <-takeover:
		if err != nil {
			t.Fatalf("takeover: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the takeover never completed after the fenced write committed")
	}
	mustCount(t, s, pbx, 3)
	if err := s.ApplyExtensions(ctx, pbx, store.ExtensionChanges{Create: numbered(200, 3), Fence: leaseFence("mine", nil)}); !errors.Is(err, errFenced) {
		t.Fatalf("a write after the takeover: %v", err)
	}
	mustCount(t, s, pbx, 3)
}

// UpdateSettingFenced stores only when its fence passes; fn does not run otherwise.
func testUpdateSettingFenced(t *testing.T, s store.Store) {
	ctx := t.Context()
	pbx := newPBX(t, s, 0)
	setLease(t, s, pbx, "theirs")
	ran := false
	err := s.UpdateSettingFenced(ctx, pbx, "delta", leaseFence("mine", nil), func([]byte) ([]byte, error) { ran = true; return []byte("link"), nil })
	if !errors.Is(err, errFenced) || ran {
		t.Fatalf("failing fence: err %v, fn ran %v", err, ran)
	}
	if _, err := s.GetSetting(ctx, pbx, "delta"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a fenced-off setting was stored: %v", err)
	}
	setLease(t, s, pbx, "mine")
	if err := s.UpdateSettingFenced(ctx, pbx, "delta", leaseFence("mine", nil), func([]byte) ([]byte, error) { return []byte("link"), nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateSettingFenced(ctx, pbx, "delta", nil, func(old []byte) ([]byte, error) { return append(old, '2'), nil }); err != nil {
		t.Fatal(err)
	}
	if v, err := s.GetSetting(ctx, pbx, "delta"); err != nil || string(v) != "link2" {
		t.Fatalf("GetSetting = %q, %v", v, err)
	}
}

// The settings of an ApplyExtensions land if and only if its batch does.
func testApplySettings(t *testing.T, s store.Store) {
	ctx := t.Context()
	pbx := newPBX(t, s, 4)
	get := func(k string) string {
		t.Helper()
		v, err := s.GetSetting(ctx, pbx, k)
		if errors.Is(err, store.ErrNotFound) {
			return "<unset>"
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(v)
	}
	if err := s.ApplyExtensions(ctx, pbx, store.ExtensionChanges{Create: numbered(100, 2),
		Settings: map[string][]byte{"outbox.1": []byte("a"), "outbox.2": []byte("b")}}); err != nil {
		t.Fatal(err)
	}
	if get("outbox.1") != "a" || get("outbox.2") != "b" {
		t.Fatalf("settings of a committed batch: %q %q", get("outbox.1"), get("outbox.2"))
	}
	// Refused over capacity: the settings (a write and a delete) roll back with it.
	err := s.ApplyExtensions(ctx, pbx, store.ExtensionChanges{Create: numbered(200, 3),
		Settings: map[string][]byte{"outbox.1": nil, "outbox.3": []byte("c")}})
	if !errors.Is(err, directory.ErrCapacity) {
		t.Fatalf("over capacity: %v", err)
	}
	// Refused by its fence.
	setLease(t, s, pbx, "theirs")
	err = s.ApplyExtensions(ctx, pbx, store.ExtensionChanges{Create: numbered(300, 1), Fence: leaseFence("mine", nil),
		Settings: map[string][]byte{"outbox.1": nil, "outbox.3": []byte("c")}})
	if !errors.Is(err, errFenced) {
		t.Fatalf("fenced: %v", err)
	}
	if get("outbox.1") != "a" || get("outbox.3") != "<unset>" {
		t.Fatalf("settings of refused batches were written: %q %q", get("outbox.1"), get("outbox.3"))
	}
	mustCount(t, s, pbx, 2)
	// A batch of settings only; nil deletes.
	if err := s.ApplyExtensions(ctx, pbx, store.ExtensionChanges{Settings: map[string][]byte{"outbox.1": nil, "outbox.3": []byte("c")}}); err != nil {
		t.Fatal(err)
	}
	if get("outbox.1") != "<unset>" || get("outbox.2") != "b" || get("outbox.3") != "c" {
		t.Fatalf("settings after delete/write: %q %q %q", get("outbox.1"), get("outbox.2"), get("outbox.3"))
	}
	// ListSettings by prefix (characters, not bytes).
	setLease(t, s, pbx, "x")
	if err := s.ApplyExtensions(ctx, pbx, store.ExtensionChanges{Settings: map[string][]byte{"öutbox.1": []byte("d"), "outbox": []byte("e")}}); err != nil {
		t.Fatal(err)
	}
	for prefix, want := range map[string]string{"outbox.": "outbox.2=b outbox.3=c", "ö": "öutbox.1=d", "outbox": "outbox=e outbox.2=b outbox.3=c"} {
		m, err := s.ListSettings(ctx, pbx, prefix)
		var got []string
		for _, k := range slices.Sorted(maps.Keys(m)) {
			got = append(got, k+"="+string(m[k]))
		}
		if err != nil || strings.Join(got, " ") != want {
			t.Fatalf("ListSettings(%q) = %v, %v; want %s", prefix, got, err, want)
		}
	}
}

// Under store.WithFence every write transaction checks the fence first:
// group writes land while it passes and none does when it fails.
func testContextFence(t *testing.T, s store.Store) {
	pbx := newPBX(t, s, 0)
	fctx := store.WithFence(t.Context(), pbx, leaseFence("mine", nil))
	setLease(t, s, pbx, "mine")
	g := &directory.Group{Name: "Sales"}
	if err := s.CreateGroup(fctx, pbx, g); err != nil {
		t.Fatalf("CreateGroup with a passing fence: %v", err)
	}
	setLease(t, s, pbx, "theirs")
	if err := s.CreateGroup(fctx, pbx, &directory.Group{Name: "Support"}); !errors.Is(err, errFenced) {
		t.Fatalf("CreateGroup with a failing fence: %v, want the fence's error", err)
	}
	if _, err := s.UpdateGroup(fctx, pbx, g.ID, func(g *directory.Group) error { g.Name = "Fenced"; return nil }); !errors.Is(err, errFenced) {
		t.Fatalf("UpdateGroup with a failing fence: %v", err)
	}
	if err := s.DeleteGroup(fctx, pbx, g.ID, nil); !errors.Is(err, errFenced) {
		t.Fatalf("DeleteGroup with a failing fence: %v", err)
	}
	gs, err := s.ListGroups(t.Context(), pbx)
	if err != nil {
		t.Fatal(err)
	}
	if len(gs) != 1 || gs[0].Name != "Sales" {
		t.Fatalf("groups after fenced-off writes: %+v, want only the unchanged Sales", gs)
	}
	// The context without the fence writes as usual.
	if err := s.DeleteGroup(t.Context(), pbx, g.ID, nil); err != nil {
		t.Fatal(err)
	}
}

// store.TakeLease and ReleaseLease over the store's settings: one owner at a
// time until the lease expires; only the owner releases it.
func testLease(t *testing.T, s store.Store) {
	ctx := t.Context()
	pbx := newPBX(t, s, 0)
	now := time.Now()
	if err := store.TakeLease(ctx, s, pbx, "l", "a", now, now.Add(time.Minute)); err != nil {
		t.Fatalf("a takes a free lease: %v", err)
	}
	if err := store.TakeLease(ctx, s, pbx, "l", "b", now, now.Add(time.Minute)); !errors.Is(err, store.ErrLeaseHeld) {
		t.Fatalf("b takes a's live lease: %v, want ErrLeaseHeld", err)
	}
	if err := store.TakeLease(ctx, s, pbx, "l", "a", now, now.Add(2*time.Minute)); err != nil {
		t.Fatalf("a renews: %v", err)
	}
	later := now.Add(3 * time.Minute)
	if err := store.TakeLease(ctx, s, pbx, "l", "b", later, later.Add(time.Minute)); err != nil {
		t.Fatalf("b takes a's expired lease: %v", err)
	}
	if err := store.ReleaseLease(ctx, s, pbx, "l", "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetSetting(ctx, pbx, "l"); err != nil {
		t.Fatalf("a's release removed b's lease: %v", err)
	}
	if err := store.ReleaseLease(ctx, s, pbx, "l", "b"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetSetting(ctx, pbx, "l"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after b's release: %v, want no lease", err)
	}
}
