package schedule

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/graph"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// Change-detection modes (Mode).
const (
	ModeNotifications = "notifications" // Graph change notifications reach the webhook
	ModePolling       = "polling"       // delta polling every PollInterval
	ModeOff           = "off"           // the integration is not connected
)

// Resources subscribed to, with the change types Graph allows for them
// (users and groups: updated and deleted only; "updated" covers creation).
var subscribedResources = []struct{ resource, changeType string }{
	{"users", "updated,deleted"},
	{"groups", "updated,deleted"},
}

// subsState is the PBX's change-notification state (Settings subsKey).
type subsState struct {
	Mode      string      `json:"mode"`
	Reason    string      `json:"reason,omitempty"`
	Subs      []subRecord `json:"subscriptions"`
	CheckedAt time.Time   `json:"checkedAt"`
}

type subRecord struct {
	ID              string    `json:"id"`
	Resource        string    `json:"resource"`
	NotificationURL string    `json:"notificationUrl"`
	ClientStateHash string    `json:"clientStateHash"` // hex SHA-256; the clientState itself is never stored
	Expires         time.Time `json:"expires"`
}

func (r subRecord) hash() [sha256.Size]byte {
	var h [sha256.Size]byte
	b, err := hex.DecodeString(r.ClientStateHash)
	if err == nil && len(b) == sha256.Size {
		copy(h[:], b)
	}
	return h
}

func (s *Service) loadSubs(ctx context.Context, pbx string) (subsState, error) {
	var st subsState
	b, err := s.Store.GetSetting(ctx, pbx, subsKey)
	if errors.Is(err, store.ErrNotFound) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("schedule subscriptions: %w", err)
	}
	return st, nil
}

func (s *Service) saveSubs(ctx context.Context, pbx string, st subsState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := s.Store.UpdateSetting(ctx, pbx, subsKey, func([]byte) ([]byte, error) { return b, nil }); err != nil {
		return err
	}
	m := map[string][sha256.Size]byte{}
	for _, r := range st.Subs {
		m[r.ID] = r.hash()
	}
	s.reg.replacePBX(pbx, m)
	return nil
}

// loadRegistry fills the in-memory subscription registry from the store.
func (s *Service) loadRegistry(ctx context.Context) error {
	pbxs, err := s.Store.ListPBXs(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range pbxs {
		st, err := s.loadSubs(ctx, p.ID)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		m := map[string][sha256.Size]byte{}
		for _, r := range st.Subs {
			m[r.ID] = r.hash()
		}
		s.reg.replacePBX(p.ID, m)
	}
	return errors.Join(errs...)
}

// lockPBX serializes subscription changes of one PBX.
// subsLeaseKey keeps one instance at a time creating or renewing a PBX's
// subscriptions: instances sharing one database would otherwise both find
// none and both create one. The in-process lock (lockPBX) orders this
// process's own callers.
const subsLeaseKey = "schedule.subs.lease"

// subsLeaseTTL bounds how long a stopped instance's lease blocks the others.
const subsLeaseTTL = 2 * time.Minute

// takeSubsLease takes the PBX's subscription lease for this instance, or
// returns store.ErrLeaseHeld while another instance holds it.
func (s *Service) takeSubsLease(ctx context.Context, pbx string) (release func(), err error) {
	now := s.now()
	if err := store.TakeLease(ctx, s.Store, pbx, subsLeaseKey, s.instance, now, now.Add(subsLeaseTTL)); err != nil {
		return nil, err
	}
	return func() {
		if err := store.ReleaseLease(context.WithoutCancel(ctx), s.Store, pbx, subsLeaseKey, s.instance); err != nil {
			s.Logger.WarnContext(ctx, "schedule: releasing the subscription lease", "pbx", pbx, "err", err)
		}
	}, nil
}

func (s *Service) lockPBX(pbx string) func() {
	s.mu.Lock()
	if s.subMu == nil {
		s.subMu = map[string]*sync.Mutex{}
	}
	m := s.subMu[pbx]
	if m == nil {
		m = &sync.Mutex{}
		s.subMu[pbx] = m
	}
	s.mu.Unlock()
	m.Lock()
	return m.Unlock
}

// webhookURLs returns the notification and lifecycle URLs, or why Graph
// cannot reach this service.
func (s *Service) webhookURLs() (notify, lifecycle, reason string) {
	if strings.TrimSpace(s.PublicURL) == "" {
		return "", "", "no public URL is configured (--public-url), so Microsoft Graph cannot deliver change notifications"
	}
	u, err := url.Parse(s.PublicURL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return "", "", fmt.Sprintf("the public URL %q is not an absolute http(s) URL", s.PublicURL)
	}
	if !s.AllowLocalURL && isLocalHost(u.Hostname()) {
		return "", "", fmt.Sprintf("the public URL %s points at this machine or a private network, which Microsoft Graph cannot reach", u.Host)
	}
	base := strings.TrimRight(s.PublicURL, "/")
	return base + WebhookPath, base + LifecyclePath, ""
}

func isLocalHost(h string) bool {
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && (ip.IsLoopback() || ip.IsUnspecified() || ip.IsPrivate() || ip.IsLinkLocalUnicast())
}

// Mode says how the PBX learns of changes in Entra ID, and why: ModeNotifications,
// ModePolling (reason says what keeps notifications off) or ModeOff.
func (s *Service) Mode(ctx context.Context, pbx string) (mode, reason string) {
	s.init()
	if !s.Integration.Connected(ctx, pbx) {
		return ModeOff, "the integration is not connected"
	}
	if _, _, why := s.webhookURLs(); why != "" {
		return ModePolling, why
	}
	st, err := s.loadSubs(ctx, pbx)
	if err != nil {
		return ModePolling, "the change-notification state could not be read"
	}
	if st.Mode == "" {
		return ModePolling, "change notifications are being set up"
	}
	return st.Mode, st.Reason
}

// EnsureSubscriptions makes the PBX's change-notification subscriptions
// exist and live (created when missing, renewed when they expire within
// RenewBefore) and records the mode: notifications when both exist,
// polling (with the reason) when the URL is unusable or Graph refused.
// Run calls it every MaintainEvery; call it after connecting to switch to
// notifications at once.
func (s *Service) EnsureSubscriptions(ctx context.Context, pbx string) error {
	s.init()
	if !s.Integration.Connected(ctx, pbx) {
		return nil
	}
	defer s.lockPBX(pbx)()
	release, err := s.takeSubsLease(ctx, pbx)
	if errors.Is(err, store.ErrLeaseHeld) {
		return nil // another instance is at it; its result is in the store
	} else if err != nil {
		return err
	}
	defer release()
	st, err := s.loadSubs(ctx, pbx)
	if err != nil {
		return err
	}
	now := s.now()
	st.CheckedAt = now.UTC()
	notifyURL, lifeURL, why := s.webhookURLs()
	if why != "" {
		st.Mode, st.Reason = ModePolling, why
		return s.saveSubs(ctx, pbx, st)
	}
	gc, err := s.Integration.AppClient(ctx, pbx)
	if err != nil {
		st.Mode, st.Reason = ModePolling, "no Graph client for change notifications: "+err.Error()
		return errors.Join(err, s.saveSubs(ctx, pbx, st))
	}
	var kept []subRecord
	problems := map[string]string{} // resource -> reason
	var errs []error
	for _, want := range subscribedResources {
		i := slices.IndexFunc(st.Subs, func(r subRecord) bool { return r.Resource == want.resource })
		if i >= 0 {
			rec := st.Subs[i]
			switch {
			case rec.NotificationURL != notifyURL: // public URL changed: replace
				if err := gc.DeleteSubscription(ctx, rec.ID); err != nil && !errors.Is(err, graph.ErrNotFound) {
					s.Logger.WarnContext(ctx, "schedule: deleting a subscription to an old URL", "pbx", pbx, "subscription", rec.ID, "err", err)
				}
			case rec.Expires.After(now.Add(s.RenewBefore)):
				kept = append(kept, rec)
				continue
			default:
				sub, err := gc.RenewSubscription(ctx, rec.ID, now.Add(s.Lifetime))
				if err == nil {
					rec.Expires = expiryOf(sub, now.Add(s.Lifetime))
					kept = append(kept, rec)
					s.Logger.InfoContext(ctx, "schedule: subscription renewed", "pbx", pbx, "subscription", rec.ID, "expires", rec.Expires)
					continue
				}
				if !errors.Is(err, graph.ErrNotFound) {
					kept = append(kept, rec) // keep it: maybe it still works; retried next time
					problems[want.resource] = "renewing failed: " + hint(err)
					errs = append(errs, err)
					continue
				}
				// Gone: create it again.
			}
		}
		rec, err := s.create(ctx, gc, pbx, want.resource, want.changeType, notifyURL, lifeURL)
		if err != nil {
			problems[want.resource] = "creating the subscription failed: " + hint(err)
			errs = append(errs, err)
			continue
		}
		kept = append(kept, rec)
	}
	st.Subs = kept
	if len(problems) == 0 {
		st.Mode, st.Reason = ModeNotifications, ""
	} else {
		st.Mode, st.Reason = ModePolling, joinProblems(problems)
	}
	return errors.Join(errors.Join(errs...), s.saveSubs(ctx, pbx, st))
}

// hint is an administrator-facing reason for a failed Graph call.
func hint(err error) string {
	if h := graph.Hint(err); h != "" {
		return h
	}
	var ge *graph.Error
	if errors.As(err, &ge) && ge.Message != "" {
		return fmt.Sprintf("Microsoft Graph answered %d %s: %s", ge.Status, ge.Code, ge.Message)
	}
	return err.Error()
}

// joinProblems words the per-resource problems, once when they agree.
func joinProblems(problems map[string]string) string {
	var resources, reasons []string
	for _, r := range subscribedResources {
		if p, ok := problems[r.resource]; ok {
			resources = append(resources, r.resource)
			if !slices.Contains(reasons, p) {
				reasons = append(reasons, p)
			}
		}
	}
	if len(reasons) == 1 {
		return fmt.Sprintf("change notifications for %s could not be set up: %s", strings.Join(resources, " and "), reasons[0])
	}
	var parts []string
	for _, r := range resources {
		parts = append(parts, r+": "+problems[r])
	}
	return "change notifications could not be set up (" + strings.Join(parts, "; ") + ")"
}

func expiryOf(sub graph.Subscription, asked time.Time) time.Time {
	if t := sub.ExpirationDateTime.Time; !t.IsZero() {
		return t.UTC()
	}
	return asked.UTC()
}

// create makes one subscription with a fresh random clientState; a
// duplicate left behind by lost state (409) is deleted and created again.
func (s *Service) create(ctx context.Context, gc *graph.Client, pbx, resource, changeType, notifyURL, lifeURL string) (subRecord, error) {
	var raw [32]byte
	_, _ = rand.Read(raw[:])
	clientState := base64.RawURLEncoding.EncodeToString(raw[:])
	hash := sha256.Sum256([]byte(clientState))
	exp := s.now().Add(s.Lifetime)
	req := graph.Subscription{ChangeType: changeType, NotificationURL: notifyURL, LifecycleNotificationURL: lifeURL,
		Resource: resource, ExpirationDateTime: graph.NewDateTime(exp.UTC()), ClientState: clientState,
		LatestSupportedTLSVersion: "v1_2"}
	sub, err := gc.CreateSubscription(ctx, req)
	if errors.Is(err, graph.ErrConflict) {
		for old, lerr := range gc.ListSubscriptions(ctx) {
			if lerr != nil {
				break
			}
			if strings.EqualFold(old.Resource, resource) && old.NotificationURL == notifyURL {
				_ = gc.DeleteSubscription(ctx, old.ID)
			}
		}
		sub, err = gc.CreateSubscription(ctx, req)
	}
	if err != nil {
		return subRecord{}, err
	}
	s.reg.put(sub.ID, pbx, hash) // before anything else: notifications may follow at once
	s.Logger.InfoContext(ctx, "schedule: subscription created", "pbx", pbx, "resource", resource, "subscription", sub.ID)
	return subRecord{ID: sub.ID, Resource: resource, NotificationURL: notifyURL,
		ClientStateHash: hex.EncodeToString(hash[:]), Expires: expiryOf(sub, exp)}, nil
}

// Check renews (and so reauthorizes) one of the PBX's subscriptions after a
// lifecycle notification; one that Graph no longer has is created again.
// Nothing happens when the integration is not connected or the
// subscription is not the PBX's (any more). It is the work of jobs'
// "subscription.check" job (jobs.Subscriptions).
func (s *Service) Check(ctx context.Context, pbx, subscriptionID string) error {
	s.init()
	if !s.Integration.Connected(ctx, pbx) {
		return nil
	}
	return s.renewOne(ctx, pbx, subscriptionID)
}

// renewOne renews (and so reauthorizes) one subscription after a lifecycle
// event; one that no longer exists is created again.
func (s *Service) renewOne(ctx context.Context, pbx, id string) error {
	unlock := s.lockPBX(pbx)
	release, err := s.takeSubsLease(ctx, pbx)
	if err != nil {
		unlock()
		return err // busy: the job is retried, by then the other instance is done
	}
	defer release()
	st, err := s.loadSubs(ctx, pbx)
	if err != nil {
		unlock()
		return err
	}
	i := slices.IndexFunc(st.Subs, func(r subRecord) bool { return r.ID == id })
	if i < 0 {
		unlock()
		return nil
	}
	gc, err := s.Integration.AppClient(ctx, pbx)
	if err != nil {
		unlock()
		return err
	}
	exp := s.now().Add(s.Lifetime)
	sub, err := gc.RenewSubscription(ctx, id, exp)
	if err == nil {
		st.Subs[i].Expires = expiryOf(sub, exp)
		err = s.saveSubs(ctx, pbx, st)
		unlock()
		return err
	}
	if !errors.Is(err, graph.ErrNotFound) {
		unlock()
		return err
	}
	st.Subs = slices.Delete(st.Subs, i, i+1)
	if err := s.saveSubs(ctx, pbx, st); err != nil {
		unlock()
		return err
	}
	unlock()
	return s.EnsureSubscriptions(ctx, pbx)
}

// Unsubscribe deletes the PBX's subscriptions at Graph (best effort) and
// forgets them. Call it before the integration's credentials are removed
// (disconnect); the schedule itself is kept.
func (s *Service) Unsubscribe(ctx context.Context, pbx string) error {
	s.init()
	defer s.lockPBX(pbx)()
	st, err := s.loadSubs(ctx, pbx)
	if err != nil {
		return err
	}
	var errs []error
	if len(st.Subs) > 0 {
		gc, err := s.Integration.AppClient(ctx, pbx)
		if err != nil {
			errs = append(errs, fmt.Errorf("subscriptions left at Graph (they expire by themselves): %w", err))
		} else {
			for _, r := range st.Subs {
				if err := gc.DeleteSubscription(ctx, r.ID); err != nil && !errors.Is(err, graph.ErrNotFound) {
					errs = append(errs, fmt.Errorf("deleting subscription %s: %w", r.ID, err))
				}
			}
		}
	}
	s.reg.replacePBX(pbx, nil)
	if err := s.Store.UpdateSetting(ctx, pbx, subsKey, func([]byte) ([]byte, error) { return nil, nil }); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
