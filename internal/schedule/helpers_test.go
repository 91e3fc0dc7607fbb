package schedule

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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

func (m *memStore) UpdateSettingFenced(ctx context.Context, pbx, key string, _ *store.Fence, fn func(old []byte) ([]byte, error)) error {
	return m.UpdateSetting(ctx, pbx, key, fn)
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

// queueRunner is a Runner with the optional parts (like jobs.Runner): it
// records triggers, subscription checks and slot jobs (one per PBX, grid
// and bucket); err fails every call; block makes calls wait for ctx.
type queueRunner struct {
	mu       sync.Mutex
	triggers []call
	checks   []string
	slots    map[string]call // pbx/grid/bucket -> the job (At = when it starts)
	order    []string        // slot keys in insertion order
	err      error
	block    bool
}

func (r *queueRunner) wait(ctx context.Context) error {
	r.mu.Lock()
	block, err := r.block, r.err
	r.mu.Unlock()
	if block {
		<-ctx.Done()
		return ctx.Err()
	}
	return err
}

func (r *queueRunner) Trigger(ctx context.Context, pbx, reason string) error {
	if err := r.wait(ctx); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.triggers = append(r.triggers, call{pbx, reason, time.Now()})
	return nil
}

func (r *queueRunner) TriggerAt(ctx context.Context, pbx, reason string, bucket, at time.Time) error {
	if err := r.wait(ctx); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.slots == nil {
		r.slots = map[string]call{}
	}
	k := pbx + "/" + reason + "/" + bucket.UTC().Format(time.RFC3339Nano)
	if _, ok := r.slots[k]; !ok {
		r.slots[k] = call{pbx, reason, at}
		r.order = append(r.order, k)
	}
	return nil
}

func (r *queueRunner) CheckSubscription(ctx context.Context, pbx, id string) error {
	if err := r.wait(ctx); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checks = append(r.checks, pbx+"/"+id)
	return nil
}

func (r *queueRunner) setErr(err error) {
	r.mu.Lock()
	r.err = err
	r.mu.Unlock()
}

func (r *queueRunner) reset() {
	r.mu.Lock()
	r.triggers, r.checks, r.slots, r.order = nil, nil, nil, nil
	r.mu.Unlock()
}

func (r *queueRunner) triggerList() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.triggers)
}

func (r *queueRunner) checkList() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.checks)
}

// slotJobs returns the slot jobs of the grid (reason) in insertion order.
func (r *queueRunner) slotJobs(pbx, reason string) []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []call
	for _, k := range r.order {
		if c := r.slots[k]; c.PBX == pbx && c.Reason == reason {
			out = append(out, c)
		}
	}
	return out
}

// countingRunner counts triggers and keeps nothing.
type countingRunner struct{ n atomic.Int64 }

func (r *countingRunner) Trigger(context.Context, string, string) error {
	r.n.Add(1)
	return nil
}
