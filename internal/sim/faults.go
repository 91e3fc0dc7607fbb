package sim

import (
	"math"
	"math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/sim/idp"
)

// Faults configures fault injection on the Graph endpoints. Shares are probabilities
// between 0 and 1, drawn independently per request.
type Faults struct {
	// Throttle is the share of requests answered 429 TooManyRequests with Retry-After.
	Throttle float64 `json:"throttle"`
	// RetryAfter is the Retry-After of injected 429s (default 2 s; whole seconds are written).
	RetryAfter time.Duration `json:"retryAfter"`
	// Unavailable is the share of requests answered 503 ServiceUnavailable.
	Unavailable float64 `json:"unavailable"`
	// Drop is the share of connections closed without an answer (inside $batch: 503).
	Drop float64 `json:"drop"`
	// RealLimits approximates Graph's documented limits (graph-facts 9): identity
	// resource units per app and tenant (3,500 / 5,000 / 8,000 per 10 s by tenant size),
	// 3,000 writes per 150 s, Outlook 10,000 requests per 10 min per mailbox, presence
	// 1,500 requests per 30 s.
	RealLimits bool `json:"realLimits"`
	// Routes limits injection to these route patterns ("GET /v1.0/users"); empty: all.
	Routes []string `json:"routes,omitempty"`
}

type faultState struct {
	mu       sync.Mutex
	f        Faults
	r        *rand.Rand
	buckets  map[string]*bucket
	inflight map[string]int // Outlook requests in progress per app and mailbox
}

func newFaultState(seed int64, f Faults) *faultState {
	return &faultState{f: f, r: rand.New(rand.NewPCG(uint64(seed), 0x5eed)), buckets: map[string]*bucket{}, inflight: map[string]int{}}
}

// SetFaults replaces the fault-injection settings.
func (t *Tenant) SetFaults(f Faults) {
	t.fault.mu.Lock()
	t.fault.f = f
	t.fault.buckets = map[string]*bucket{}
	t.fault.mu.Unlock()
}

// Faults returns the current fault-injection settings.
func (t *Tenant) Faults() Faults {
	t.fault.mu.Lock()
	defer t.fault.mu.Unlock()
	return t.fault.f
}

// inject applies random faults; it reports whether it answered the request.
func (fs *faultState) inject(w http.ResponseWriter, r *http.Request, t *Tenant, pattern string) bool {
	fs.mu.Lock()
	f := fs.f
	if len(f.Routes) > 0 && !contains(f.Routes, pattern) {
		fs.mu.Unlock()
		return false
	}
	x := fs.r.Float64()
	fs.mu.Unlock()
	switch {
	case x < f.Throttle:
		ra := f.RetryAfter
		if ra <= 0 {
			ra = 2 * time.Second
		}
		t.stats.add("fault 429")
		t.throttled(w, r, ra, "")
		return true
	case x < f.Throttle+f.Unavailable:
		t.stats.add("fault 503")
		w.Header().Set("Retry-After", "1")
		t.graphError(w, r, http.StatusServiceUnavailable, "serviceNotAvailable", "The service is temporarily unavailable. Please retry later.")
		return true
	case x < f.Throttle+f.Unavailable+f.Drop:
		t.stats.add("fault drop")
		if hj, ok := w.(http.Hijacker); ok && !isInner(r) {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				return true
			}
		}
		t.graphError(w, r, http.StatusServiceUnavailable, "serviceNotAvailable", "The service is temporarily unavailable.")
		return true
	}
	return false
}

// throttled writes Graph's documented 429 body (graph-facts 9.1).
func (t *Tenant) throttled(w http.ResponseWriter, r *http.Request, ra time.Duration, scope string) {
	secs := int(math.Ceil(ra.Seconds()))
	w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
	if scope != "" {
		w.Header().Set("x-ms-throttle-scope", scope)
		w.Header().Set("x-ms-throttle-information", "ResourceUnitLimitExceeded")
	}
	rid := requestID(w, r)
	body := obj{{"error", obj{
		{"code", "TooManyRequests"},
		{"innerError", obj{{"code", "429"}, {"date", t.now().UTC().Format("2006-01-02T15:04:05")}, {"message", "Please retry after"}, {"request-id", rid}, {"status", "429"}}},
		{"message", "Please retry again later."},
	}}}
	writeJSON(w, http.StatusTooManyRequests, body)
}

// bucket is a token bucket refilled continuously.
type bucket struct {
	capacity, tokens float64
	per              time.Duration
	last             time.Time
}

func (b *bucket) take(now time.Time, cost float64) (time.Duration, bool) {
	if b.last.IsZero() {
		b.tokens, b.last = b.capacity, now
	}
	if el := now.Sub(b.last); el > 0 {
		b.tokens = math.Min(b.capacity, b.tokens+b.capacity*float64(el)/float64(b.per))
		b.last = now
	}
	if b.tokens >= cost {
		b.tokens -= cost
		return 0, true
	}
	need := cost - b.tokens
	return time.Duration(need / b.capacity * float64(b.per)), false
}

// limit enforces RealLimits; it reports whether it answered the request.
// limit enforces RealLimits; it reports whether it answered the request, and returns a
// release func to call when the request is done (Outlook's 4 concurrent requests per
// mailbox).
func (fs *faultState) limit(w http.ResponseWriter, r *http.Request, t *Tenant, pattern string, c *idp.AccessClaims) (bool, func()) {
	nop := func() {}
	fs.mu.Lock()
	on := fs.f.RealLimits
	fs.mu.Unlock()
	if !on {
		return false, nop
	}
	mailboxKey := ""
	now := t.now()
	app := c.AppID
	type charge struct {
		key  string
		cap  float64
		per  time.Duration
		cost float64
		what string
	}
	var charges []charge
	path := pattern[strings.Index(pattern, " ")+1:]
	write := r.Method != http.MethodGet
	switch {
	case strings.Contains(path, "/contacts") || strings.Contains(path, "/contactFolders") || strings.Contains(path, "mailboxSettings"):
		box := r.PathValue("id")
		if box == "" {
			box = c.ObjectID
		}
		mailboxKey = app + "/" + strings.ToLower(box)
		charges = append(charges, charge{"outlook/" + mailboxKey, 10000, 10 * time.Minute, 1, "Application"})
	case strings.Contains(path, "presence") || strings.Contains(path, "getPresencesByUserId"):
		charges = append(charges, charge{"presence/" + app, 1500, 30 * time.Second, 1, "Tenant_Application"})
	case strings.HasPrefix(path, "/v1.0/users") || strings.HasPrefix(path, "/v1.0/groups") || strings.HasPrefix(path, "/v1.0/me"):
		t.st.mu.RLock()
		users := len(t.st.users)
		t.st.mu.RUnlock()
		capRU := 8000.0
		if users < 50 {
			capRU = 3500
		} else if users <= 500 {
			capRU = 5000
		}
		cost := 1.0
		switch {
		case write:
			cost = 1
		case path == "/v1.0/users":
			cost = 2
		case strings.HasSuffix(path, "/members") || strings.Contains(path, "/members/"):
			cost = 3
		case strings.Contains(path, "transitiveMembers"):
			cost = 5
		}
		q := r.URL.Query()
		if q.Get("$select") != "" {
			cost--
		}
		if q.Get("$expand") != "" {
			cost++
		}
		if top, err := strconv.Atoi(q.Get("$top")); err == nil && top < 20 {
			cost--
		}
		cost = math.Max(cost, 1)
		w.Header().Set("x-ms-resource-unit", strconv.Itoa(int(cost)))
		charges = append(charges, charge{"ru/" + app, capRU, 10 * time.Second, cost, "Tenant_Application/ReadWrite"})
		if write {
			charges = append(charges, charge{"write/" + app, 3000, 150 * time.Second, 1, "Tenant_Application/Write"})
		}
	}
	fs.mu.Lock()
	for _, ch := range charges {
		b := fs.buckets[ch.key]
		if b == nil {
			b = &bucket{capacity: ch.cap, per: ch.per}
			fs.buckets[ch.key] = b
		}
		if wait, ok := b.take(now, ch.cost); !ok {
			fs.mu.Unlock()
			t.stats.add("limit 429")
			t.throttled(w, r, wait, ch.what+"/"+app+"/"+t.cfg.TenantID)
			return true, nop
		}
	}
	if mailboxKey == "" {
		fs.mu.Unlock()
		return false, nop
	}
	if fs.inflight[mailboxKey] >= 4 {
		fs.mu.Unlock()
		t.stats.add("limit 429")
		w.Header().Set("Retry-After", "1")
		t.graphError(w, r, http.StatusTooManyRequests, "ApplicationThrottled", "Application is over its MailboxConcurrency limit.")
		return true, nop
	}
	fs.inflight[mailboxKey]++
	fs.mu.Unlock()
	return false, func() {
		fs.mu.Lock()
		fs.inflight[mailboxKey]--
		fs.mu.Unlock()
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// stats counts requests by route pattern.
type stats struct {
	mu     sync.Mutex
	counts map[string]int64
	total  int64
	since  time.Time
}

func newStats() *stats { return &stats{counts: map[string]int64{}, since: time.Now()} }

func (s *stats) add(key string) {
	s.mu.Lock()
	s.counts[key]++
	if m, _, _ := strings.Cut(key, " "); m == "GET" || m == "POST" || m == "PATCH" || m == "DELETE" || m == "PUT" {
		s.total++
	}
	s.mu.Unlock()
}

// Stats is a snapshot of the requests served, by "METHOD /route/{pattern}".
type Stats struct {
	Total      int64            `json:"total"`
	ByEndpoint map[string]int64 `json:"byEndpoint"`
	Since      time.Time        `json:"since"`
}

// Endpoints lists the keys of ByEndpoint in order.
func (s Stats) Endpoints() []string {
	keys := make([]string, 0, len(s.ByEndpoint))
	for k := range s.ByEndpoint {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Stats returns request counts by endpoint. Total counts Graph and identity requests
// (each $batch inner request counts too). Other keys are informational and not in Total:
// "fault 429", "fault 503", "fault drop", "limit 429", "notification delivered|failed|dropped
// (queue full)" and "admin METHOD /sim/...".
func (t *Tenant) Stats() Stats {
	t.stats.mu.Lock()
	defer t.stats.mu.Unlock()
	m := make(map[string]int64, len(t.stats.counts))
	for k, v := range t.stats.counts {
		m[k] = v
	}
	return Stats{Total: t.stats.total, ByEndpoint: m, Since: t.stats.since}
}

// ResetStats zeroes the request counts.
func (t *Tenant) ResetStats() {
	t.stats.mu.Lock()
	t.stats.counts = map[string]int64{}
	t.stats.total = 0
	t.stats.since = time.Now()
	t.stats.mu.Unlock()
}
