package schedule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/graph"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// Runner starts a directory sync of a PBX now, or joins the one running.
// The job queue (jobs.Runner) implements it; reason says why ("schedule",
// "change", "poll", "missed", "resubscribed"). A nil error from a durable
// Runner means the request survives a crash: the webhook acknowledges a
// notification only then.
type Runner interface {
	Trigger(ctx context.Context, pbx string, reason string) error
}

// SlotRunner is the optional part of a Runner that asks for a sync
// idempotently: one job per PBX, grid (reason: "schedule" or "poll") and
// bucket, however many ticks or instances ask, starting at at (jobs.Runner
// implements it). With it a scheduled slot is recorded as fired only after
// its job exists, so a crash cannot lose it, and instances polling one PBX
// give one job per poll. Without it the loop claims the slot, then triggers.
type SlotRunner interface {
	TriggerAt(ctx context.Context, pbx, reason string, bucket, at time.Time) error
}

// SubscriptionChecker is the optional part of a Runner that queues the
// check of a subscription after a lifecycle notification (jobs.Runner
// implements it; its worker calls Service.Check). Without it the webhook
// checks in a goroutine.
type SubscriptionChecker interface {
	CheckSubscription(ctx context.Context, pbx, subscriptionID string) error
}

// Integration is what this package needs of the integration service
// (*integration.Service implements it).
type Integration interface {
	AppClient(ctx context.Context, pbx string) (*graph.Client, error)
	Connected(ctx context.Context, pbx string) bool
}

// Store is what this package keeps and reads (store.Store implements it).
type Store interface {
	store.Settings
	GetPBX(ctx context.Context, id string) (directory.PBX, error)
	ListPBXs(ctx context.Context) ([]directory.PBX, error)
}

// Trigger reasons.
const (
	ReasonSchedule     = "schedule"
	ReasonChange       = "change"
	ReasonPoll         = "poll"
	ReasonMissed       = "missed"
	ReasonResubscribed = "resubscribed"
)

// Settings keys.
const (
	settingsKey = "schedule"               // Settings (the administrator's)
	stateKey    = "schedule.state"         // last fired slot
	subsKey     = "schedule.subscriptions" // change-notification subscriptions and mode
)

// Defaults of the Service's tunables.
const (
	DefaultPollInterval  = 5 * time.Minute
	DefaultSpread        = 5 * time.Minute
	DefaultConcurrency   = 4
	DefaultTick          = time.Minute
	DefaultMaintainEvery = time.Hour
	// DefaultLifetime is how far ahead subscriptions are created and renewed:
	// under the 41,760-minute maximum for users and groups (graph-facts 7.2).
	DefaultLifetime = 41000 * time.Minute
	// DefaultRenewBefore: a subscription expiring sooner than this is renewed.
	DefaultRenewBefore = 72 * time.Hour
)

// Service schedules syncs and receives change notifications for every PBX.
// Set the fields, then call Run (once) and mount Handler. Zero tunables get
// the defaults above.
type Service struct {
	Store       Store
	Integration Integration
	Runner      Runner
	Logger      *slog.Logger
	// PublicURL is the service's public base URL (--public-url); the webhook
	// URLs are PublicURL + WebhookPath / LifecyclePath. Empty: polling.
	PublicURL string
	// AllowLocalURL accepts a loopback or private-network PublicURL (tests,
	// the simulated tenant); otherwise such a URL means Graph cannot reach
	// us: polling.
	AllowLocalURL bool
	Now           func() time.Time

	PollInterval  time.Duration // delta polling period where notifications are off
	Spread        time.Duration // scheduled runs spread over [slot, slot+Spread); negative: no spread
	Concurrency   int           // triggers in flight at once
	Tick          time.Duration // the loop looks at every PBX at least this often
	MaintainEvery time.Duration // subscriptions checked (created, renewed) this often
	Lifetime      time.Duration // subscription lifetime asked for
	RenewBefore   time.Duration

	initOnce sync.Once
	sem      chan struct{}
	reg      registry
	wg       sync.WaitGroup
	stats    stats

	mu          sync.Mutex
	lastPoll    map[string]time.Time
	lastMaint   map[string]time.Time
	maintaining map[string]bool
	waiting     map[string]bool
	subMu       map[string]*sync.Mutex
	instance    string // this process in subscription leases
	kick        chan struct{}
	regLoaded   time.Time // loop goroutine only
}

func (s *Service) init() {
	s.initOnce.Do(func() {
		s.instance = store.NewLeaseOwner()
		if s.Logger == nil {
			s.Logger = slog.New(slog.DiscardHandler)
		}
		if s.PollInterval <= 0 {
			s.PollInterval = DefaultPollInterval
		}
		if s.Spread < 0 {
			s.Spread = 0
		} else if s.Spread == 0 {
			s.Spread = DefaultSpread
		}
		if s.Concurrency <= 0 {
			s.Concurrency = DefaultConcurrency
		}
		if s.Tick <= 0 {
			s.Tick = DefaultTick
		}
		if s.MaintainEvery <= 0 {
			s.MaintainEvery = DefaultMaintainEvery
		}
		if s.Lifetime <= 0 {
			s.Lifetime = DefaultLifetime
		}
		if s.RenewBefore <= 0 {
			s.RenewBefore = DefaultRenewBefore
		}
		s.sem = make(chan struct{}, s.Concurrency)
		s.reg.byID = map[string]regEntry{}
		s.lastPoll = map[string]time.Time{}
		s.lastMaint = map[string]time.Time{}
		s.maintaining = map[string]bool{}
		s.kick = make(chan struct{}, 1)
	})
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// ---- settings ----

// GetSettings returns the PBX's schedule with TimeZone filled in (the PBX's
// zone when the administrator set none).
func (s *Service) GetSettings(ctx context.Context, pbx string) (Settings, error) {
	set, err := s.load(ctx, pbx)
	if err != nil {
		return Settings{}, err
	}
	if set.TimeZone == "" {
		p, err := s.Store.GetPBX(ctx, pbx)
		if err != nil {
			return Settings{}, err
		}
		set.TimeZone = p.TimeZone
		if _, err := loadLocation(set.TimeZone); err != nil {
			set.TimeZone = "UTC"
		}
	}
	return set, nil
}

// load returns the stored settings (TimeZone possibly empty) or the default.
func (s *Service) load(ctx context.Context, pbx string) (Settings, error) {
	b, err := s.Store.GetSetting(ctx, pbx, settingsKey)
	if errors.Is(err, store.ErrNotFound) {
		return DefaultSettings(), nil
	}
	if err != nil {
		return Settings{}, err
	}
	var set Settings
	if err := json.Unmarshal(b, &set); err != nil {
		return Settings{}, fmt.Errorf("schedule settings: %w", err)
	}
	if set.Days == nil {
		set.Days = []string{}
	}
	return set, nil
}

// PutSettings validates and stores the PBX's schedule (errors name the
// field, see Settings.Normalize) and returns what was stored, TimeZone
// filled in. The new schedule counts from now: a slot that passed before
// the change does not fire.
func (s *Service) PutSettings(ctx context.Context, pbx string, in Settings) (Settings, error) {
	s.init()
	set, err := in.Normalize()
	if err != nil {
		return Settings{}, err
	}
	b, err := json.Marshal(set)
	if err != nil {
		return Settings{}, err
	}
	if err := s.Store.UpdateSetting(ctx, pbx, settingsKey, func([]byte) ([]byte, error) { return b, nil }); err != nil {
		return Settings{}, err
	}
	now := s.now()
	if err := s.updateState(ctx, pbx, func(st *runState) bool {
		if st.LastSlot.Before(now) {
			st.LastSlot = now.UTC()
			return true
		}
		return false
	}); err != nil {
		return Settings{}, err
	}
	s.wake()
	return s.GetSettings(ctx, pbx)
}

// runState is what the scheduler remembers per PBX (Settings stateKey).
type runState struct {
	// LastSlot is the last slot fired, or the moment the schedule was armed:
	// the next slot is NextRun(settings, LastSlot).
	LastSlot time.Time `json:"lastSlot"`
}

func (s *Service) loadState(ctx context.Context, pbx string) (runState, bool, error) {
	var st runState
	b, err := s.Store.GetSetting(ctx, pbx, stateKey)
	if errors.Is(err, store.ErrNotFound) {
		return st, false, nil
	}
	if err != nil {
		return st, false, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, false, fmt.Errorf("schedule state: %w", err)
	}
	return st, true, nil
}

// updateState changes the run state in one transaction; fn returns false to
// leave it unchanged.
func (s *Service) updateState(ctx context.Context, pbx string, fn func(*runState) bool) error {
	return s.Store.UpdateSetting(ctx, pbx, stateKey, func(old []byte) ([]byte, error) {
		var st runState
		if old != nil {
			if err := json.Unmarshal(old, &st); err != nil {
				return nil, err
			}
		}
		if !fn(&st) {
			return old, nil
		}
		return json.Marshal(st)
	})
}

// offset is the PBX's fixed place in the spread window, so that many PBXs
// scheduled at 00:30 do not all start at once.
func (s *Service) offset(pbx string) time.Duration {
	if s.Spread <= 0 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(pbx))
	return time.Duration(h.Sum64() % uint64(s.Spread))
}

// NextSyncAt is when the PBX's next scheduled sync starts (nil when the
// integration is not connected), for the integration status.
func (s *Service) NextSyncAt(ctx context.Context, pbx string) (*time.Time, error) {
	s.init()
	if !s.Integration.Connected(ctx, pbx) {
		return nil, nil
	}
	set, err := s.GetSettings(ctx, pbx)
	if err != nil {
		return nil, err
	}
	st, ok, err := s.loadState(ctx, pbx)
	if err != nil {
		return nil, err
	}
	now := s.now()
	from := st.LastSlot
	if !ok {
		from = now
	}
	next := NextRun(set, from).Add(s.offset(pbx))
	if next.Before(now) { // overdue: the loop fires it on its next look
		next = now
	}
	next = next.UTC()
	return &next, nil
}
