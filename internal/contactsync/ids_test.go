package contactsync

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/graph"
)

func TestIDSums(t *testing.T) {
	ids := []string{"AAMkADRjEE4jxP4T0hgDElLnlcyEu-a", "AAMkADRjEE4jxP4T0hgDElLnlcyEu-b", "AAMkADRjEE4jxP4T0hgDElLnlcyEu-a", "x"}
	s := sumsOf(ids)
	if len(s) != 3 || !slices.IsSorted(s) {
		t.Fatalf("sumsOf: %v", s)
	}
	// FNV-1a 64 of "a" (the published test vector).
	if got := idSum("a"); got != 0xaf63dc4c8601ec8c {
		t.Fatalf("idSum(a) = %#x", got)
	}
	st := folderState{Owner: "extension:1", Folder: defaultFolder, Sums: s}
	raw, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), `"ids"`) || !strings.Contains(string(raw), `"sums":"`) {
		t.Fatalf("stored form: %s", raw)
	}
	var back folderState
	if err := json.Unmarshal(raw, &back); err != nil || !slices.Equal(back.Sums, s) {
		t.Fatalf("round trip: %v %v", back.Sums, err)
	}
	// 11 characters a contact, not the ids.
	if n := len(raw) - len(`{"owner":"extension:1","mailbox":"","folder":"contacts","deltaLink":"","sums":""}`); n != (8*3*4+2)/3 {
		t.Fatalf("%d characters for 3 sums: %s", n, raw)
	}
	empty, _ := json.Marshal(folderState{})
	if strings.Contains(string(empty), "sums") {
		t.Fatalf("empty sums stored: %s", empty)
	}
	for _, bad := range []string{`{"sums":"AAAA"}`, `{"sums":"!!"}`, `{"sums":3}`} {
		if err := json.Unmarshal([]byte(bad), &back); err == nil {
			t.Fatalf("%s accepted", bad)
		}
	}
}

func TestOwnedDrop(t *testing.T) {
	before := map[string]directory.Contact{"a": {FirstName: "A"}, "b": {FirstName: "B"}, "c": {FirstName: "C"}}
	o := &owned{cur: map[string]directory.Contact{"a": {}, "b": {}, "new": {}}, before: before}
	// c is no longer in cur, zzz was never stored: only a is dropped.
	if n := o.drop(sumsOf([]string{"a", "c", "zzz"})); n != 1 {
		t.Fatalf("dropped %d", n)
	}
	if _, ok := o.cur["a"]; ok || len(o.cur) != 2 {
		t.Fatalf("cur after drop: %v", o.cur)
	}
	if n := o.drop(nil); n != 0 {
		t.Fatalf("nil sums dropped %d", n)
	}
}

// A contact moved from one folder to another keeps its id (immutable ids):
// the folder it left reports it removed, the folder it joined reports it
// new, in whichever order the folders are read. It stays.
func TestMovedContactStays(t *testing.T) {
	x := graph.Contact{ID: "X", GivenName: "Xena", MobilePhone: "+49 30 123456"}
	gone := graph.Contact{ID: "X", Removed: &graph.Removed{Reason: "deleted"}}
	mb := mailboxRef{id: "m", label: "m"}
	for _, tc := range []struct {
		name string
		left *folderRead // the folder the contact left, read second
	}{
		{"removed in a delta round", &folderRead{items: []graph.Contact{gone}}},
		{"missing from a full read", &folderRead{full: true}},
	} {
		before := map[string]directory.Contact{"X": {FirstName: "Xena"}}
		own := &owned{cur: maps.Clone(before), before: before}
		joined := &folderRead{st: &folderState{Folder: "B"}, prev: &folderState{Folder: "B"}, items: []graph.Contact{x}}
		joined.apply(own, mb)
		tc.left.st, tc.left.prev = &folderState{Folder: "A"}, &folderState{Folder: "A", DeltaLink: "l", Sums: sumsOf([]string{"X"})}
		tc.left.apply(own, mb)
		if _, ok := own.cur["X"]; !ok {
			t.Fatalf("%s: the moved contact was dropped", tc.name)
		}
		if len(tc.left.st.Sums) != 0 || !slices.Equal(joined.st.Sums, sumsOf([]string{"X"})) {
			t.Fatalf("%s: sums %v (left) %v (joined)", tc.name, tc.left.st.Sums, joined.st.Sums)
		}
	}
}
