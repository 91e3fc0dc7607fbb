package presence

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/graph"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// Clients hands out Graph clients for a PBX's connected tenant
// (*integration.Service implements it).
type Clients interface {
	// AppClient acts with the application's token (polling, setPresence).
	AppClient(ctx context.Context, pbx string) (*graph.Client, error)
	// DelegatedClient acts as the authorization account (presence subscriptions).
	DelegatedClient(ctx context.Context, pbx string) (*graph.Client, error)
}

// Defaults of the tunables on Service.
const (
	DefaultMinPollInterval      = 10 * time.Second
	DefaultPollBudget           = 150 // requests per 30 s: a tenth of Graph's 1,500
	DefaultSubscriptionCapacity = graph.MaxPresenceIDs
	DefaultSubscriptionLifetime = 59 * time.Minute
	DefaultRenewBefore          = 15 * time.Minute
	DefaultRetryAfter           = time.Minute
	DefaultTick                 = time.Second
	DefaultSessionExpiry        = 30 * time.Minute
	DefaultClientTTL            = 5 * time.Minute
	DefaultNotificationTimeout  = 2500 * time.Millisecond
	// PresenceLimit is Graph's presence request limit per application and tenant
	// per PresenceWindow (the lower documented figure).
	PresenceLimit  = 1500
	PresenceWindow = 30 * time.Second
)

// Service runs Teams presence sync for every PBX. Zero tunables take the defaults above.
type Service struct {
	Store   store.Store
	Graph   Clients
	Logger  *slog.Logger
	BaseURL string // public base URL; notifications go to BaseURL + WebhookPath ("" = polling only)
	Now     func() time.Time

	MinPollInterval time.Duration
	PollBudget      int // polling requests allowed per 30 s
	// SubscriptionCapacity is how many users the delegated subscription covers
	// (at most 650; negative: no subscription, everyone is polled).
	SubscriptionCapacity int
	SubscriptionLifetime time.Duration // at most 60 minutes
	RenewBefore          time.Duration // renew this long before expiry
	RetryAfter           time.Duration // wait after a failed subscription create
	Tick                 time.Duration // granularity of Run
	SessionExpiry        time.Duration // setPresence expirationDuration (PT5M..PT4H), refreshed at half
	ClientTTL            time.Duration // how long an app Graph client is reused
	NotificationTimeout  time.Duration // processing budget of one notification POST
	// LeaseTTL is how long a PBX's presence lease lasts unless renewed (renewed
	// at half): with several instances on one database only the holder
	// reconciles the PBX, and another takes over within about LeaseTTL after
	// the holder dies.
	LeaseTTL time.Duration
	// Instance names this process in presence leases ("" = a random id).
	Instance string

	// Applied, when set, is called after an extension's presence was changed
	// from Teams (for pushes to clients, metrics, benchmarks). It must not block.
	Applied func(ctx context.Context, pbx string, e *directory.Extension, via string)

	mu      sync.Mutex
	pbxs    map[string]*pbxState
	calls   map[callKey]*callRun
	clients map[string]cachedClient
	subs    map[string]subEntry // subscription id -> PBX and clientState hash
	// sessions marks users whose Busy/InACall session we hold (sessionKey).
	sessions map[string]bool

	instanceID string

	keyOnce sync.Once
	rich    *richKey
	keyErr  error
}

type cachedClient struct {
	c   *graph.Client
	exp time.Time
}

// teamsState is the latest Teams presence seen for a user.
type teamsState struct {
	Availability string    `json:"availability"`
	Activity     string    `json:"activity"`
	At           time.Time `json:"at"`
	Via          string    `json:"via"` // notification, polling, call-end
}

// pbxState is the runtime state of one PBX.
type pbxState struct {
	nextRun    time.Time
	interval   time.Duration
	kicked     bool
	fullPoll   bool
	lastPoll   time.Time
	lastErr    string
	subErr     string
	subRetryAt time.Time
	notified   map[string]bool // entra ids on the notification path
	polled     []string        // entra ids on the polling path
	latest     map[string]teamsState
	requests   int64     // presence requests made (polling + fetches + writes)
	mappings   [32]byte  // fingerprint of the mappings last applied in full
	leaseExp   time.Time // expiry of this instance's lease on the PBX (zero: not held)
	leaseRead  time.Time // when the lease was last read
	kickSeen   int64     // the lease's kick counter, as last read
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now().UTC()
}

func (s *Service) log() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func orDur(v, def time.Duration) time.Duration {
	if v > 0 {
		return v
	}
	return def
}

func (s *Service) capacity() int {
	switch {
	case s.SubscriptionCapacity < 0:
		return 0
	case s.SubscriptionCapacity == 0 || s.SubscriptionCapacity > graph.MaxPresenceIDs:
		return DefaultSubscriptionCapacity
	}
	return s.SubscriptionCapacity
}

// PollInterval is the polling interval for n users on the polling path (see
// the package doc): max(MinPollInterval, ceil(n/650) * 30 s / PollBudget).
func (s *Service) PollInterval(n int) time.Duration {
	budget := s.PollBudget
	if budget <= 0 {
		budget = DefaultPollBudget
	}
	budget = min(budget, PresenceLimit)
	reqs := (n + graph.MaxPresenceIDs - 1) / graph.MaxPresenceIDs
	iv := time.Duration(reqs) * PresenceWindow / time.Duration(budget)
	return max(orDur(s.MinPollInterval, DefaultMinPollInterval), iv)
}

// state returns the PBX's runtime state; the caller holds s.mu.
func (s *Service) state(pbx string) *pbxState {
	if s.pbxs == nil {
		s.pbxs = map[string]*pbxState{}
	}
	st := s.pbxs[pbx]
	if st == nil {
		st = &pbxState{notified: map[string]bool{}, latest: map[string]teamsState{}, fullPoll: true}
		s.pbxs[pbx] = st
	}
	return st
}

// kick makes the PBX's next Run round happen at once (settings changed):
// here when this instance holds the PBX's lease, else on the holder, which
// sees the lease's kick counter move at its next tick.
func (s *Service) kick(ctx context.Context, pbx string) {
	s.mu.Lock()
	st := s.state(pbx)
	st.kicked, st.fullPoll = true, true
	s.mu.Unlock()
	if s.ownsLease(pbx) {
		return
	}
	if err := s.bumpKick(context.WithoutCancel(ctx), pbx); err != nil {
		s.log().WarnContext(ctx, "presence: telling the lease holder about a settings change", "pbx", pbx, "err", err)
	}
}

func (s *Service) countRequests(pbx, kind string, n int) {
	s.m().requests.WithLabelValues(kind).Add(float64(n))
	s.mu.Lock()
	s.state(pbx).requests += int64(n)
	s.mu.Unlock()
}

func (s *Service) audit(ctx context.Context, pbx, actor, action, target, detail string) {
	if actor == "" {
		actor = "system"
	}
	if err := s.Store.AppendAudit(ctx, store.AuditEntry{PBXID: pbx, At: s.now(), Actor: actor, Action: action, Target: target, Detail: detail}); err != nil {
		s.log().ErrorContext(ctx, "audit write failed", "action", action, "err", err)
	}
}

// appClient returns a cached app-token client for the PBX.
func (s *Service) appClient(ctx context.Context, pbx string) (*graph.Client, error) {
	now := s.now()
	s.mu.Lock()
	if c, ok := s.clients[pbx]; ok && now.Before(c.exp) {
		s.mu.Unlock()
		return c.c, nil
	}
	s.mu.Unlock()
	gc, err := s.Graph.AppClient(ctx, pbx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.clients == nil {
		s.clients = map[string]cachedClient{}
	}
	s.clients[pbx] = cachedClient{gc, now.Add(orDur(s.ClientTTL, DefaultClientTTL))}
	s.mu.Unlock()
	return gc, nil
}

func (s *Service) dropClient(pbx string) {
	s.mu.Lock()
	delete(s.clients, pbx)
	s.mu.Unlock()
}

// target is an extension whose presence follows Teams.
type target struct {
	extID, number, userID string
	presence              directory.Presence
	callState             directory.CallState
	mapping               Mapping
}

// targets lists the PBX's eligible extensions: synced, with presence sync enabled.
func (s *Service) targets(ctx context.Context, pbx string) ([]target, error) {
	docs, err := s.Store.ListSettings(ctx, pbx, extKeyPrefix)
	if err != nil {
		return nil, err
	}
	enabled := make(map[string]Mapping, len(docs))
	for k, b := range docs {
		if d := parseExtDoc(b); d.Enabled {
			enabled[strings.TrimPrefix(k, extKeyPrefix)] = d.Mapping.full()
		}
	}
	var out []target
	if len(enabled) == 0 {
		return nil, nil
	}
	err = s.Store.ListAllExtensions(ctx, pbx, func(e *directory.Extension) error {
		if m, ok := enabled[e.ID]; ok && e.Synced() {
			out = append(out, target{extID: e.ID, number: e.Number, userID: e.EntraID, presence: e.Presence, callState: e.CallState, mapping: m})
		}
		return nil
	})
	return out, err
}

// target looks up one eligible extension by Entra user id.
func (s *Service) targetByUser(ctx context.Context, pbx, userID string) (*target, error) {
	e, err := s.Store.FindExtension(ctx, pbx, "entraId", userID)
	if err != nil {
		return nil, err
	}
	return s.targetOf(ctx, pbx, e)
}

func (s *Service) targetOf(ctx context.Context, pbx string, e *directory.Extension) (*target, error) {
	if !e.Synced() {
		return nil, store.ErrNotFound
	}
	b, err := s.Store.GetSetting(ctx, pbx, ExtensionKey(e.ID))
	if err != nil {
		return nil, err
	}
	d := parseExtDoc(b)
	if !d.Enabled {
		return nil, store.ErrNotFound
	}
	return &target{extID: e.ID, number: e.Number, userID: e.EntraID, presence: e.Presence, callState: e.CallState, mapping: d.Mapping.full()}, nil
}

func sessionKey(pbx, userID string) string { return pbx + "\x00" + userID }

func inCall(c directory.CallState) bool { return c == directory.CallRinging || c == directory.CallBusy }

var (
	errUnchanged = errors.New("unchanged")
	errHeld      = errors.New("held by a call")
	errGone      = errors.New("no longer eligible")
)

// apply records the user's Teams presence and moves the extension to its
// mapped presence, unless hold is set and the extension is in a call. t is a
// snapshot: when it already shows the wanted presence (and no call to hold
// for), nothing is written.
func (s *Service) apply(ctx context.Context, pbx string, t target, p graph.Presence, via string, hold bool) error {
	s.mu.Lock()
	s.state(pbx).latest[t.userID] = teamsState{Availability: p.Availability, Activity: p.Activity, At: s.now(), Via: via}
	echo := s.sessions[sessionKey(pbx, t.userID)] && strings.EqualFold(p.Availability, CallAvailability) && strings.EqualFold(p.Activity, CallActivity)
	s.mu.Unlock()
	if echo {
		// Our own Busy/InACall session, seen while it is held (possibly just
		// after the call ended, before the session is cleared): not the user's.
		return nil
	}
	want := t.mapping.For(p.Availability)
	if t.presence == want {
		return nil
	}
	if hold && inCall(t.callState) {
		return nil
	}
	x, err := s.Store.UpdateExtension(ctx, pbx, t.extID, func(e *directory.Extension) error {
		switch {
		case !e.Synced() || e.EntraID != t.userID:
			return errGone
		case hold && inCall(e.CallState):
			return errHeld
		case e.Presence == want:
			return errUnchanged
		}
		e.Presence = want
		return nil
	})
	switch {
	case err == nil:
		s.log().DebugContext(ctx, "presence applied", "pbx", pbx, "extension", t.number, "availability", p.Availability, "presence", want, "via", via)
		s.m().applied.WithLabelValues(via).Inc()
		if s.Applied != nil {
			s.Applied(ctx, pbx, x, via)
		}
		return nil
	case errors.Is(err, errUnchanged), errors.Is(err, errHeld), errors.Is(err, errGone), errors.Is(err, store.ErrNotFound):
		return nil
	}
	return err
}

// holdFor reports whether Teams changes are held during calls (two-way).
func (s *Service) holdFor(ctx context.Context, pbx string) bool {
	st, err := s.GetSettings(ctx, pbx)
	return err == nil && st.Enabled && st.Direction == TwoWay
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
