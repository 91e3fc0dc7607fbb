package schedule

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/graph"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// memStore is an in-memory Store (no goroutines, safe inside synctest bubbles).
type memStore struct {
	mu       sync.Mutex
	pbxs     map[string]directory.PBX
	settings map[string][]byte // pbx + "\x00" + key
}

func newMemStore(pbxs ...directory.PBX) *memStore {
	m := &memStore{pbxs: map[string]directory.PBX{}, settings: map[string][]byte{}}
	for _, p := range pbxs {
		m.pbxs[p.ID] = p
	}
	return m
}

func (m *memStore) GetSetting(_ context.Context, pbx, key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.settings[pbx+"\x00"+key]
	if !ok {
		return nil, store.ErrNotFound
	}
	return slices.Clone(b), nil
}

func (m *memStore) UpdateSetting(_ context.Context, pbx, key string, fn func(old []byte) ([]byte, error)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := pbx + "\x00" + key
	old, ok := m.settings[k]
	if !ok {
		old = nil
	}
	nb, err := fn(slices.Clone(old))
	if err != nil {
		return err
	}
	if nb == nil {
		delete(m.settings, k)
	} else {
		m.settings[k] = slices.Clone(nb)
	}
	return nil
}

func (m *memStore) ListSettings(_ context.Context, pbx, prefix string) (map[string][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string][]byte{}
	for k, v := range m.settings {
		p, key, _ := strings.Cut(k, "\x00")
		if p == pbx && strings.HasPrefix(key, prefix) {
			out[key] = slices.Clone(v)
		}
	}
	return out, nil
}

func (m *memStore) GetPBX(_ context.Context, id string) (directory.PBX, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.pbxs[id]
	if !ok {
		return p, store.ErrNotFound
	}
	return p, nil
}

func (m *memStore) ListPBXs(context.Context) ([]directory.PBX, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := slices.Collect(maps.Values(m.pbxs))
	slices.SortFunc(out, func(a, b directory.PBX) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// fakeIntegration: every PBX listed is connected; AppClient returns client (or an error).
type fakeIntegration struct {
	mu        sync.Mutex
	connected map[string]bool
	client    *graph.Client
}

func newFakeIntegration(pbxs ...string) *fakeIntegration {
	f := &fakeIntegration{connected: map[string]bool{}}
	for _, p := range pbxs {
		f.connected[p] = true
	}
	return f
}

func (f *fakeIntegration) AppClient(_ context.Context, pbx string) (*graph.Client, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.connected[pbx] || f.client == nil {
		return nil, errors.New("not connected")
	}
	return f.client, nil
}

func (f *fakeIntegration) Connected(_ context.Context, pbx string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.connected[pbx]
}

func (f *fakeIntegration) set(pbx string, on bool) {
	f.mu.Lock()
	f.connected[pbx] = on
	f.mu.Unlock()
}

// call is one Runner.Trigger.
type call struct {
	PBX, Reason string
	At          time.Time
}

// fakeRunner records triggers.
type fakeRunner struct {
	mu    sync.Mutex
	calls []call
	ch    chan call // optional: every call is also sent here (non-blocking)
}

func (r *fakeRunner) Trigger(_ context.Context, pbx, reason string) error {
	r.mu.Lock()
	r.calls = append(r.calls, call{pbx, reason, time.Now()})
	ch := r.ch
	r.mu.Unlock()
	if ch != nil {
		select {
		case ch <- call{pbx, reason, time.Now()}:
		default:
		}
	}
	return nil
}

func (r *fakeRunner) list() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// count returns how many triggers had the reason (and pbx, when not empty).
func (r *fakeRunner) count(pbx, reason string) int {
	n := 0
	for _, c := range r.list() {
		if c.Reason == reason && (pbx == "" || c.PBX == pbx) {
			n++
		}
	}
	return n
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}
