package pbx_test

import (
	"context"
	"log/slog"
	"maps"
	"path/filepath"
	"sync"
	"testing"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/pbx"
	"github.com/switchboard-pbx/switchboard/internal/secret"
	"github.com/switchboard-pbx/switchboard/internal/sqlstore"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// fakeRegistrar keeps the subscribers: number -> password.
type fakeRegistrar struct {
	mu   sync.Mutex
	subs map[string]string
}

func (r *fakeRegistrar) Upsert(_ context.Context, username, password string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.subs[username] = password
	return nil
}

func (r *fakeRegistrar) Remove(_ context.Context, username string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.subs, username)
	return nil
}

func newService(t *testing.T) (*pbx.Service, *fakeRegistrar) {
	t.Helper()
	st, err := sqlstore.Open(t.Context(), "sqlite:"+filepath.Join(t.TempDir(), "sb.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.EnsurePBX(t.Context(), directory.PBX{ID: directory.DefaultPBX, Name: "Default PBX", MaxExtensions: 100}); err != nil {
		t.Fatal(err)
	}
	keys, err := secret.NewKeyring(secret.NewKey())
	if err != nil {
		t.Fatal(err)
	}
	reg := &fakeRegistrar{subs: map[string]string{}}
	return &pbx.Service{Store: st, Keys: keys, Registrar: reg, Logger: testLogger(t)}, reg
}

func testLogger(t *testing.T) *slog.Logger { return slog.New(slog.NewTextHandler(t.Output(), nil)) }

// The registrar follows the bulk path: a renumbered extension moves to its new number with
// its secret, and a number freed and taken again in one batch stays provisioned.
func TestApplyExtensionsRegistrar(t *testing.T) {
	s, reg := newService(t)
	ctx := t.Context()
	p := directory.DefaultPBX
	a := &directory.Extension{Number: "1001", FirstName: "A"}
	b := &directory.Extension{Number: "1002", FirstName: "B"}
	if err := s.ApplyExtensions(ctx, p, store.ExtensionChanges{Create: []*directory.Extension{a, b}}); err != nil {
		t.Fatal(err)
	}
	pw := func(id string) string {
		t.Helper()
		e, err := s.Store.GetExtension(ctx, p, id)
		if err != nil {
			t.Fatal(err)
		}
		v, err := s.SIPPassword(e)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	ids := map[string]string{}
	for _, n := range []string{"1001", "1002"} {
		e, err := s.Store.FindExtension(ctx, p, "number", n)
		if err != nil {
			t.Fatal(err)
		}
		ids[n] = e.ID
	}
	if want := map[string]string{"1001": pw(ids["1001"]), "1002": pw(ids["1002"])}; !maps.Equal(reg.subs, want) {
		t.Fatalf("after create: %v, want %v", reg.subs, want)
	}

	// Renumber A 1001 -> 1003.
	ea, err := s.Store.GetExtension(ctx, p, ids["1001"])
	if err != nil {
		t.Fatal(err)
	}
	ea.Number = "1003"
	if err := s.ApplyExtensions(ctx, p, store.ExtensionChanges{Update: []*directory.Extension{ea}}); err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"1003": pw(ids["1001"]), "1002": pw(ids["1002"])}; !maps.Equal(reg.subs, want) {
		t.Fatalf("after renumbering 1001 -> 1003: %v, want %v", reg.subs, want)
	}

	// Delete B (1002) and create C on 1002 in one batch.
	c := &directory.Extension{Number: "1002", FirstName: "C"}
	if err := s.ApplyExtensions(ctx, p, store.ExtensionChanges{Create: []*directory.Extension{c}, Delete: []string{ids["1002"]}}); err != nil {
		t.Fatal(err)
	}
	ec, err := s.Store.FindExtension(ctx, p, "number", "1002")
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"1003": pw(ids["1001"]), "1002": pw(ec.ID)}; !maps.Equal(reg.subs, want) {
		t.Fatalf("after deleting 1002 and creating a new 1002: %v, want %v", reg.subs, want)
	}
}
