package contactsync_test

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/contactsync"
	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// writeCounter is the store with the writes of the contacts sync recorded.
type writeCounter struct {
	store.Store
	mu       sync.Mutex
	settings map[string]int // UpdateSetting calls by key
	contacts map[string]int // ReplaceSyncedContacts calls by owner
	other    []string       // phonebook and audit writes
}

func (w *writeCounter) reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.settings, w.contacts, w.other = map[string]int{}, map[string]int{}, nil
}

func (w *writeCounter) UpdateSetting(ctx context.Context, pbx, key string, fn func([]byte) ([]byte, error)) error {
	w.mu.Lock()
	if key != contactsync.LeaseKey { // the run's lease (take, release) is coordination, not synced data
		w.settings[key]++
	}
	w.mu.Unlock()
	return w.Store.UpdateSetting(ctx, pbx, key, fn)
}

func (w *writeCounter) ReplaceSyncedContacts(ctx context.Context, pbx string, o store.ContactOwner, cs []directory.Contact) error {
	w.mu.Lock()
	w.contacts[o.ExtensionID+o.PhonebookID]++
	w.mu.Unlock()
	return w.Store.ReplaceSyncedContacts(ctx, pbx, o, cs)
}

func (w *writeCounter) note(what string) {
	w.mu.Lock()
	w.other = append(w.other, what)
	w.mu.Unlock()
}

func (w *writeCounter) CreatePhonebook(ctx context.Context, pbx string, p *directory.Phonebook) error {
	w.note("create phonebook " + p.Name)
	return w.Store.CreatePhonebook(ctx, pbx, p)
}

func (w *writeCounter) UpdatePhonebook(ctx context.Context, pbx, id string, fn func(*directory.Phonebook) error) (*directory.Phonebook, error) {
	w.note("update phonebook " + id)
	return w.Store.UpdatePhonebook(ctx, pbx, id, fn)
}

func (w *writeCounter) DeletePhonebook(ctx context.Context, pbx, id string, check func(*directory.Phonebook) error) error {
	w.note("delete phonebook " + id)
	return w.Store.DeletePhonebook(ctx, pbx, id, check)
}

func (w *writeCounter) AppendAudit(ctx context.Context, e store.AuditEntry) error {
	w.note("audit " + e.Action)
	return w.Store.AppendAudit(ctx, e)
}

// A run that finds nothing changed in Outlook writes nothing but its
// report: no contacts, no folder states. A change rewrites only the owner
// and the folder it is in, and the stored delta links are renewed once a
// day even when nothing changes.
func TestUnchangedRunWritesNothing(t *testing.T) {
	e := newEnv(t, "sqlite:"+filepath.Join(t.TempDir(), "sb.db"), 6)
	e.put(map[string]any{
		"personal":        map[string]any{"enabled": true, "range": "all"},
		"sharedMailboxes": map[string]any{"enabled": true, "range": "all", "phonebook": "Shared contacts"},
	})
	var mu sync.Mutex
	now := time.Now().UTC()
	e.cs.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	w := &writeCounter{Store: e.cs.Store}
	e.cs.Store = w
	w.reset()

	r1 := e.run()
	if r1.State != "succeeded" || r1.Created == 0 || len(r1.Phonebooks) != 1 {
		t.Fatalf("first run: %+v", r1)
	}
	states := e.statesOf(t)
	if len(states) <= len(e.synced) || len(w.contacts) == 0 {
		t.Fatalf("first run: %d folder states, %d owners written", len(states), len(w.contacts))
	}

	onlyReport := func(what string) {
		t.Helper()
		if len(w.contacts) != 0 || len(w.other) != 0 || !maps.Equal(w.settings, map[string]int{contactsync.LastRunKey: 1}) {
			t.Fatalf("%s: contacts written for %v, settings %v, other writes %v", what, w.contacts, w.settings, w.other)
		}
	}
	advance(time.Hour)
	w.reset()
	r2 := e.run()
	if r2.State != "succeeded" || r2.Created+r2.Updated+r2.Deleted != 0 || r2.Unchanged != r1.Created {
		t.Fatalf("second run: %+v", r2)
	}
	onlyReport("a run without changes")
	if after := e.statesOf(t); !maps.EqualFunc(after, states, func(a, b []byte) bool { return string(a) == string(b) }) {
		t.Fatal("the folder states changed in a run without changes")
	}

	// One contact renamed in Outlook: that owner and that folder only.
	u := withContacts(e, e.synced)[0]
	valid, _ := e.want(u.ID)
	id := slices.Sorted(maps.Keys(valid))[0]
	gc, err := e.svc.AppClient(t.Context(), directory.DefaultPBX)
	if err != nil {
		t.Fatal(err)
	}
	if err := gc.Do(t.Context(), "PATCH", "/users/"+u.ID+"/contacts/"+id, nil, map[string]any{"givenName": "Renamed"}, nil); err != nil {
		t.Fatal(err)
	}
	advance(time.Hour)
	w.reset()
	r3 := e.run()
	if r3.Updated != 1 || r3.Created+r3.Deleted != 0 {
		t.Fatalf("after one change: %+v", r3)
	}
	if !maps.Equal(w.contacts, map[string]int{e.exts[u.ID]: 1}) || len(w.other) != 0 {
		t.Fatalf("after one change: contacts written for %v (want only %s), other writes %v", w.contacts, e.exts[u.ID], w.other)
	}
	stateKey := contactsync.DeltaPrefix + u.ID + ".contacts"
	if !maps.Equal(w.settings, map[string]int{contactsync.LastRunKey: 1, stateKey: 1}) {
		t.Fatalf("after one change: settings written %v, want the report and %s", w.settings, stateKey)
	}

	// A day later every link is renewed once (no contacts written), and the
	// run after that writes nothing again.
	advance(25 * time.Hour)
	w.reset()
	if r := e.run(); r.State != "succeeded" || r.Created+r.Updated+r.Deleted != 0 {
		t.Fatalf("a day later: %+v", r)
	}
	renewed := 0
	for k := range w.settings {
		if strings.HasPrefix(k, contactsync.DeltaPrefix) {
			renewed++
		}
	}
	if len(w.contacts) != 0 || renewed != len(states) {
		t.Fatalf("a day later: contacts written for %v, %d of %d folder states renewed", w.contacts, renewed, len(states))
	}
	advance(time.Hour)
	w.reset()
	e.run()
	onlyReport("the run after the links were renewed")
}

// fnv64a is the sum the folder states record per contact id (FNV-1a, 64 bits).
func fnv64a(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// Folder states written before they recorded id sums hold the contact ids
// themselves; a run reads them as before (here: expired tokens make every
// folder a full read, which must drop the contact deleted in Outlook) and
// stores them in the new form.
func TestLegacyFolderStates(t *testing.T) {
	e := newEnv(t, "sqlite:"+filepath.Join(t.TempDir(), "sb.db"), 4)
	e.put(map[string]any{"personal": map[string]any{"enabled": true, "range": "all"}})
	r1 := e.run()
	if r1.State != "succeeded" || r1.Created == 0 {
		t.Fatalf("first run: %+v", r1)
	}
	u := withContacts(e, e.synced)[0]
	var victim string
	for key, raw := range e.statesOf(t) {
		var st map[string]any
		if err := json.Unmarshal(raw, &st); err != nil {
			t.Fatal(err)
		}
		sums := map[uint64]bool{}
		if s, _ := st["sums"].(string); s != "" {
			b, err := base64.RawURLEncoding.DecodeString(s)
			if err != nil || len(b)%8 != 0 {
				t.Fatalf("%s: sums %q: %v", key, s, err)
			}
			for i := 0; i < len(b); i += 8 {
				sums[binary.BigEndian.Uint64(b[i:])] = true
			}
		}
		if _, ok := st["ids"]; ok {
			t.Fatalf("%s: a new state holds ids: %s", key, raw)
		}
		// Back to the old form: the ids of the owner's contacts with those sums.
		ext := strings.TrimPrefix(st["owner"].(string), "extension:")
		items, _, err := e.store.ListContacts(t.Context(), directory.DefaultPBX, store.ContactQuery{ExtensionID: ext, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		ids := []string{}
		for _, c := range items {
			if sums[fnv64a(c.EntraID)] {
				ids = append(ids, c.EntraID)
			}
		}
		if len(ids) != len(sums) {
			t.Fatalf("%s: %d sums, %d stored contacts with them", key, len(sums), len(ids))
		}
		if st["mailbox"] == u.ID && st["folder"] == "contacts" && len(ids) > 0 {
			victim = ids[0]
		}
		delete(st, "sums")
		delete(st, "linkAt")
		st["ids"] = ids
		legacy, _ := json.Marshal(st)
		if err := e.store.UpdateSetting(t.Context(), directory.DefaultPBX, key, func([]byte) ([]byte, error) { return legacy, nil }); err != nil {
			t.Fatal(err)
		}
	}
	if victim == "" {
		t.Fatalf("no contact of %s in its default folder", u.ID)
	}
	gc, err := e.svc.AppClient(t.Context(), directory.DefaultPBX)
	if err != nil {
		t.Fatal(err)
	}
	if err := gc.Do(t.Context(), "DELETE", "/users/"+u.ID+"/contacts/"+victim, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	e.tenant.ExpireDeltaTokens()
	r2 := e.run()
	if r2.State != "succeeded" || r2.Deleted != 1 || r2.Created+r2.Updated != 0 || r2.Unchanged != r1.Created-1 {
		t.Fatalf("run over the old states: %+v", r2)
	}
	for _, su := range e.synced {
		e.checkPersonal(su.ID)
	}
	for key, raw := range e.statesOf(t) {
		if strings.Contains(string(raw), `"ids"`) {
			t.Fatalf("%s still in the old form after a full read: %s", key, raw)
		}
	}
}
