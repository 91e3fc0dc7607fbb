package schedule

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/graph"
)

// Paths of the webhook endpoints under the public URL.
const (
	WebhookPath   = "/webhooks/graph"
	LifecyclePath = "/webhooks/graph/lifecycle"
)

// maxWebhookBody bounds a notification POST (Graph batches stay far below).
const maxWebhookBody = 1 << 20

// maxValidationToken bounds the echoed validation token.
const maxValidationToken = 4096

// Stats counts what the webhook endpoint saw (since start).
type Stats struct {
	Validations int64 // validation handshakes answered
	Accepted    int64 // notifications with a known subscription and matching clientState
	Rejected    int64 // notifications refused: unknown subscription or wrong clientState
	Malformed   int64 // bodies that were not a notification collection
	Triggers    int64 // syncs asked of the Runner
}

type stats struct {
	validations, accepted, rejected, malformed, triggers atomic.Int64
}

// Stats returns the webhook and trigger counters.
func (s *Service) Stats() Stats {
	return Stats{Validations: s.stats.validations.Load(), Accepted: s.stats.accepted.Load(),
		Rejected: s.stats.rejected.Load(), Malformed: s.stats.malformed.Load(), Triggers: s.stats.triggers.Load()}
}

// ---- registry: subscription id -> PBX and clientState hash ----

type regEntry struct {
	pbx  string
	hash [sha256.Size]byte
}

type registry struct {
	mu   sync.RWMutex
	byID map[string]regEntry
}

func (r *registry) put(id, pbx string, hash [sha256.Size]byte) {
	r.mu.Lock()
	r.byID[id] = regEntry{pbx: pbx, hash: hash}
	r.mu.Unlock()
}

func (r *registry) remove(id string) {
	r.mu.Lock()
	delete(r.byID, id)
	r.mu.Unlock()
}

// replacePBX makes the PBX's entries exactly ids.
func (r *registry) replacePBX(pbx string, entries map[string][sha256.Size]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, e := range r.byID {
		if e.pbx == pbx {
			delete(r.byID, id)
		}
	}
	for id, h := range entries {
		r.byID[id] = regEntry{pbx: pbx, hash: h}
	}
}

// verify returns the PBX of a subscription when clientState matches, in
// constant time in the clientState (and the same work for unknown ids).
func (r *registry) verify(id, clientState string) (string, bool) {
	r.mu.RLock()
	e, found := r.byID[id]
	r.mu.RUnlock()
	h := sha256.Sum256([]byte(clientState))
	match := subtle.ConstantTimeCompare(h[:], e.hash[:]) == 1
	return e.pbx, found && match
}

// ---- the work queue: coalesced per PBX, so its size is bounded by the
// number of PBXs with subscriptions, whatever the flood ----

type pending struct {
	changes int                 // change events since the last sync request
	timer   *time.Timer         // debounce timer, running while changes > 0
	reason  string              // sync requested ("" = none)
	check   map[string]struct{} // subscription ids to renew, or recreate when gone
}

type queue struct {
	mu     sync.Mutex
	m      map[string]*pending
	ready  map[string]struct{}
	signal chan struct{}
	closed bool
}

func newQueue() *queue {
	return &queue{m: map[string]*pending{}, ready: map[string]struct{}{}, signal: make(chan struct{}, 1)}
}

func (q *queue) get(pbx string) *pending {
	p := q.m[pbx]
	if p == nil {
		p = &pending{}
		q.m[pbx] = p
	}
	return p
}

// markReady hands the PBX to the worker; q.mu held.
func (q *queue) markReady(pbx string, p *pending) {
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	q.ready[pbx] = struct{}{}
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

// change records one change event: the Burst-th since the last request
// syncs at once, the first starts the Debounce window.
func (q *queue) change(pbx string, burst int, debounce time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	p := q.get(pbx)
	p.changes++
	switch {
	case p.changes >= burst:
		p.changes, p.reason = 0, ReasonChange
		q.markReady(pbx, p)
	case p.timer == nil:
		p.timer = time.AfterFunc(debounce, func() { q.expire(pbx) })
	}
}

func (q *queue) expire(pbx string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	p := q.m[pbx]
	if p == nil || q.closed {
		return
	}
	p.timer = nil
	if p.changes > 0 {
		p.changes = 0
		if p.reason == "" {
			p.reason = ReasonChange
		}
		q.markReady(pbx, p)
	}
}

// lifecycle records a lifecycle event of one of the PBX's subscriptions.
func (q *queue) lifecycle(pbx, subID, event string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	p := q.get(pbx)
	switch event {
	case graph.LifecycleSubscriptionRemoved:
		p.addCheck(subID) // renewing a removed subscription finds it gone: it is created again
		p.reason = ReasonResubscribed
	case graph.LifecycleMissed:
		p.addCheck(subID)
		p.reason = ReasonMissed
	case graph.LifecycleReauthorizationRequired:
		p.addCheck(subID)
	default:
		return
	}
	// Keep the pending change count: a burst still counts after a lifecycle event.
	q.ready[pbx] = struct{}{}
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

func (p *pending) addCheck(id string) {
	if p.check == nil {
		p.check = map[string]struct{}{}
	}
	if len(p.check) < 16 { // a PBX has two subscriptions; more is noise
		p.check[id] = struct{}{}
	}
}

// job is the work taken for one PBX.
type job struct {
	pbx, reason string
	check       []string
}

// take empties the ready set.
func (q *queue) take() []job {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []job
	for pbx := range q.ready {
		p := q.m[pbx]
		j := job{pbx: pbx, reason: p.reason}
		for id := range p.check {
			j.check = append(j.check, id)
		}
		p.reason, p.check = "", nil
		if p.changes == 0 && p.timer == nil {
			delete(q.m, pbx)
		}
		out = append(out, j)
	}
	clear(q.ready)
	return out
}

func (q *queue) drop(pbx string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if p := q.m[pbx]; p != nil && p.timer != nil {
		p.timer.Stop()
	}
	delete(q.m, pbx)
	delete(q.ready, pbx)
}

func (q *queue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	for _, p := range q.m {
		if p.timer != nil {
			p.timer.Stop()
		}
	}
}

// size is the number of PBXs with queued work (tests).
func (q *queue) size() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.m)
}

// work runs the queued jobs until ctx ends.
func (s *Service) work(ctx context.Context) {
	defer s.q.close()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.q.signal:
		}
		for _, j := range s.q.take() {
			s.do(ctx, j)
		}
	}
}

func (s *Service) do(ctx context.Context, j job) {
	if !s.Integration.Connected(ctx, j.pbx) {
		return
	}
	for _, id := range j.check {
		if err := s.renewOne(ctx, j.pbx, id); err != nil {
			s.Logger.WarnContext(ctx, "schedule: renewing a subscription", "pbx", j.pbx, "subscription", id, "err", err)
		}
	}
	if j.reason != "" {
		s.fire(ctx, j.pbx, j.reason)
	}
}

// ---- HTTP ----

// Handler serves the public webhook endpoints (POST WebhookPath and
// LifecyclePath; no admin authentication: each notification is checked
// against its subscription's clientState). It answers Graph's validation
// handshake, acknowledges notifications with 202 at once and leaves the
// work to Run.
func (s *Service) Handler() http.Handler {
	s.init()
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+WebhookPath, s.serveNotifications)
	mux.HandleFunc("POST "+LifecyclePath, s.serveNotifications)
	return mux
}

func (s *Service) serveNotifications(w http.ResponseWriter, r *http.Request) {
	if tok, ok := graph.ValidationToken(r); ok {
		if len(tok) > maxValidationToken {
			http.Error(w, "validation token too long", http.StatusBadRequest)
			return
		}
		s.stats.validations.Add(1)
		graph.WriteValidationResponse(w, tok)
		return
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	body := http.MaxBytesReader(w, r.Body, maxWebhookBody)
	c, err := graph.DecodeChangeNotifications(body)
	if err != nil {
		s.stats.malformed.Add(1)
		http.Error(w, "malformed notification collection", http.StatusBadRequest)
		return
	}
	accepted, rejected := 0, 0
	for _, n := range c.Value {
		pbx, ok := s.reg.verify(n.SubscriptionID, n.ClientState)
		if !ok {
			rejected++
			continue
		}
		accepted++
		if n.LifecycleEvent != "" {
			s.q.lifecycle(pbx, n.SubscriptionID, n.LifecycleEvent)
		} else {
			s.q.change(pbx, s.Burst, s.Debounce)
		}
	}
	s.stats.accepted.Add(int64(accepted))
	s.stats.rejected.Add(int64(rejected))
	if rejected > 0 {
		s.Logger.DebugContext(r.Context(), "schedule: notifications rejected (unknown subscription or wrong clientState)",
			"rejected", rejected, "accepted", accepted, "remote", r.RemoteAddr)
	}
	if accepted == 0 && rejected > 0 {
		http.Error(w, "unknown subscription or clientState", http.StatusForbidden)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}
