package schedule

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"slices"
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
	Unqueued    int64 // notification collections answered 503: the Runner could not queue their work
}

type stats struct {
	validations, accepted, rejected, malformed, triggers, unqueued atomic.Int64
}

// Stats returns the webhook and trigger counters.
func (s *Service) Stats() Stats {
	return Stats{Validations: s.stats.validations.Load(), Accepted: s.stats.accepted.Load(),
		Rejected: s.stats.rejected.Load(), Malformed: s.stats.malformed.Load(), Triggers: s.stats.triggers.Load(),
		Unqueued: s.stats.unqueued.Load()}
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

// ---- HTTP ----

// ackTimeout bounds the work done before answering a notification: Graph
// wants an answer within 3 s and marks a slow endpoint (graph-facts 7.4);
// past it the handler answers 503 and Graph delivers again.
const ackTimeout = 2 * time.Second

// Handler serves the public webhook endpoints (POST WebhookPath and
// LifecyclePath; no admin authentication: each notification is checked
// against its subscription's clientState). It answers Graph's validation
// handshake; for notifications it hands the work to the Runner (a durable
// job queue: jobs.Runner) and only then acknowledges with 202. When the
// Runner fails it answers 503, so that Graph delivers the notification
// again (it never resends one acknowledged).
func (s *Service) Handler() http.Handler {
	s.init()
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+WebhookPath, s.serveNotifications)
	mux.HandleFunc("POST "+LifecyclePath, s.serveNotifications)
	return mux
}

// pbxWork is what one notification collection asks for one PBX.
type pbxWork struct {
	changes bool
	reason  string   // a lifecycle event's catch-up sync ("" = none)
	checks  []string // subscriptions to renew, or create again when gone
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
	work := map[string]*pbxWork{} // bounded by the items of one (size-limited) body
	for _, n := range c.Value {
		pbx, ok := s.reg.verify(n.SubscriptionID, n.ClientState)
		if !ok {
			rejected++
			continue
		}
		accepted++
		pw := work[pbx]
		if pw == nil {
			pw = &pbxWork{}
			work[pbx] = pw
		}
		switch n.LifecycleEvent {
		case "":
			pw.changes = true
		case graph.LifecycleSubscriptionRemoved:
			pw.addCheck(n.SubscriptionID) // renewing a removed subscription finds it gone: it is created again
			pw.reason = ReasonResubscribed
		case graph.LifecycleMissed:
			pw.addCheck(n.SubscriptionID)
			if pw.reason == "" {
				pw.reason = ReasonMissed
			}
		case graph.LifecycleReauthorizationRequired:
			pw.addCheck(n.SubscriptionID)
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
	ctx, cancel := context.WithTimeout(r.Context(), ackTimeout)
	defer cancel()
	for pbx, pw := range work {
		if err := s.enqueue(ctx, pbx, pw); err != nil {
			s.stats.unqueued.Add(1)
			s.Logger.WarnContext(ctx, "schedule: could not queue the work of a notification; asking Graph to deliver it again",
				"pbx", pbx, "err", err)
			w.Header().Set("Retry-After", "10")
			http.Error(w, "notification not queued; retry later", http.StatusServiceUnavailable)
			return
		}
	}
	w.WriteHeader(http.StatusAccepted)
}

func (p *pbxWork) addCheck(id string) {
	if len(p.checks) < 16 && !slices.Contains(p.checks, id) { // a PBX has two subscriptions; more is noise
		p.checks = append(p.checks, id)
	}
}

// enqueue hands one PBX's work to the Runner; nil means it is queued
// (durably, with jobs.Runner).
func (s *Service) enqueue(ctx context.Context, pbx string, pw *pbxWork) error {
	if len(pw.checks) > 0 {
		if sc, ok := s.Runner.(SubscriptionChecker); ok {
			for _, id := range pw.checks {
				if err := sc.CheckSubscription(ctx, pbx, id); err != nil {
					return err
				}
			}
		} else {
			// A Runner without a queue for checks: do them here, in the background.
			checks := pw.checks
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
				defer cancel()
				for _, id := range checks {
					if err := s.Check(bctx, pbx, id); err != nil {
						s.Logger.WarnContext(bctx, "schedule: renewing a subscription", "pbx", pbx, "subscription", id, "err", err)
					}
				}
			}()
		}
	}
	reason := pw.reason
	if reason == "" && pw.changes {
		reason = ReasonChange
	}
	if reason == "" {
		return nil
	}
	s.stats.triggers.Add(1)
	return s.Runner.Trigger(ctx, pbx, reason)
}
