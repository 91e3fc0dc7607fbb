package presence

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/switchboard-pbx/switchboard/internal/graph"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// WebhookPath is where Graph posts presence notifications (and lifecycle
// events) under the public URL.
const WebhookPath = "/webhooks/presence"

// maxValidationToken bounds the echoed validation token.
const maxValidationToken = 4096

// Errors of HandleNotification.
var (
	// ErrUnknownSubscription: the notification names no presence subscription of the PBX.
	ErrUnknownSubscription = errors.New("presence: unknown subscription")
	// ErrClientState: the notification's clientState does not match the subscription's.
	ErrClientState = errors.New("presence: clientState mismatch")
)

// Webhook returns the handler to mount at WebhookPath: the validation
// handshake, then notifications checked against the subscription's
// clientState (constant time) and applied before the answer (202).
func (s *Service) Webhook() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if tok, ok := graph.ValidationToken(r); ok {
			if tok == "" || len(tok) > maxValidationToken {
				http.Error(w, "bad validation token", http.StatusBadRequest)
				return
			}
			graph.WriteValidationResponse(w, tok)
			return
		}
		coll, err := graph.DecodeChangeNotifications(r.Body)
		if err != nil {
			http.Error(w, "malformed notification", http.StatusBadRequest)
			return
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), orDur(s.NotificationTimeout, DefaultNotificationTimeout))
		defer cancel()
		byPBX := map[string][]graph.ChangeNotification{}
		for _, n := range coll.Value {
			pbx, err := s.verify(ctx, n)
			if err != nil {
				s.log().WarnContext(ctx, "presence notification refused", "subscription", n.SubscriptionID, "err", err)
				s.m().notifications.WithLabelValues("refused").Inc()
				continue
			}
			s.m().notifications.WithLabelValues("accepted").Inc()
			byPBX[pbx] = append(byPBX[pbx], n)
		}
		failed := false
		for pbx, ns := range byPBX {
			if err := s.handle(ctx, pbx, ns); err != nil {
				s.log().WarnContext(ctx, "presence notification not applied", "pbx", pbx, "err", err)
				failed = true
			}
		}
		if failed {
			// Graph retries on 5xx.
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
}

// verify finds the notification's PBX and checks its clientState.
func (s *Service) verify(ctx context.Context, n graph.ChangeNotification) (string, error) {
	s.mu.Lock()
	e, ok := s.subs[n.SubscriptionID]
	s.mu.Unlock()
	if !ok {
		// Another instance (or an earlier run) made it: look it up in the store.
		pbxs, err := s.Store.ListPBXs(ctx)
		if err != nil {
			return "", err
		}
		for _, p := range pbxs {
			if rec, err := s.loadSub(ctx, p.ID); err == nil && rec != nil && rec.ID == n.SubscriptionID {
				s.mu.Lock()
				s.register(p.ID, rec)
				e, ok = s.subs[rec.ID]
				s.mu.Unlock()
				break
			}
		}
		if !ok {
			return "", ErrUnknownSubscription
		}
	}
	got := sha256.Sum256([]byte(n.ClientState))
	if subtle.ConstantTimeCompare(got[:], e.hash[:]) != 1 {
		return "", ErrClientState
	}
	return e.pbx, nil
}

// HandleNotification applies one presence change notification (or lifecycle
// event) of the PBX's subscription after checking its clientState.
func (s *Service) HandleNotification(ctx context.Context, pbx string, n graph.ChangeNotification) error {
	got, err := s.verify(ctx, n)
	if err != nil {
		return err
	}
	if got != pbx {
		return ErrUnknownSubscription
	}
	return s.handle(ctx, pbx, []graph.ChangeNotification{n})
}

// handle applies verified notifications: decrypted resource data where this
// process holds the certificate's key, else one getPresencesByUserId read.
func (s *Service) handle(ctx context.Context, pbx string, ns []graph.ChangeNotification) error {
	var fetch []string
	hold := s.holdFor(ctx, pbx)
	var errs []error
	for _, n := range ns {
		if n.LifecycleEvent != "" {
			s.lifecycle(ctx, pbx, n)
			continue
		}
		id := userOf(n)
		if id == "" {
			continue
		}
		if p, ok := s.decrypt(n); ok && p.Availability != "" {
			if p.ID == "" {
				p.ID = id
			}
			errs = append(errs, s.applyUser(ctx, pbx, p, "notification", hold))
			continue
		}
		fetch = append(fetch, id)
	}
	if len(fetch) > 0 {
		gc, err := s.appClient(ctx, pbx)
		if err != nil {
			return err
		}
		ps, err := gc.GetPresencesByUserID(ctx, fetch)
		s.countRequests(pbx, "read", (len(fetch)+graph.MaxPresenceIDs-1)/graph.MaxPresenceIDs)
		if err != nil {
			return fmt.Errorf("reading notified presence: %w", err)
		}
		for _, p := range ps {
			errs = append(errs, s.applyUser(ctx, pbx, p, "notification", hold))
		}
	}
	return errors.Join(errs...)
}

// applyUser applies a presence to the user's eligible extension, if any.
func (s *Service) applyUser(ctx context.Context, pbx string, p graph.Presence, via string, hold bool) error {
	t, err := s.targetByUser(ctx, pbx, p.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil // not synced or presence sync off for this user
	}
	if err != nil {
		return err
	}
	return s.apply(ctx, pbx, *t, p, via, hold)
}

// userOf returns the user id a presence notification is about.
func userOf(n graph.ChangeNotification) string {
	if n.ResourceData != nil && n.ResourceData.ID != "" {
		return n.ResourceData.ID
	}
	r := strings.TrimPrefix(n.Resource, "/")
	for _, pre := range []string{"communications/presences/", "users/"} {
		if rest, ok := strings.CutPrefix(strings.ToLower(r), pre); ok {
			id := r[len(r)-len(rest):]
			id, _, _ = strings.Cut(id, "/")
			return strings.Trim(id, "'()")
		}
	}
	return ""
}

// decrypt opens a rich notification's resource data.
func (s *Service) decrypt(n graph.ChangeNotification) (graph.Presence, bool) {
	var p graph.Presence
	if n.EncryptedContent == nil {
		return p, false
	}
	rk, err := s.richKey()
	if err != nil || n.EncryptedContent.EncryptionCertificateID != rk.id {
		return p, false
	}
	plain, err := graph.DecryptResourceData(rk.key, *n.EncryptedContent)
	if err != nil {
		s.log().Warn("presence notification: undecryptable resource data", "err", err)
		return p, false
	}
	if err := json.Unmarshal(plain, &p); err != nil {
		return p, false
	}
	return p, true
}

// lifecycle answers a lifecycle event: reauthorize by renewing, recreate when removed.
func (s *Service) lifecycle(ctx context.Context, pbx string, n graph.ChangeNotification) {
	s.log().InfoContext(ctx, "presence subscription lifecycle event", "pbx", pbx, "event", n.LifecycleEvent)
	switch n.LifecycleEvent {
	case graph.LifecycleSubscriptionRemoved:
		_ = s.saveSub(ctx, pbx, nil)
	case graph.LifecycleReauthorizationRequired:
		if dc, err := s.Graph.DelegatedClient(ctx, pbx); err == nil {
			rec, _ := s.loadSub(ctx, pbx)
			if rec != nil && rec.ID == n.SubscriptionID {
				if sub, err := dc.RenewSubscription(ctx, rec.ID, s.now().Add(s.lifetime())); err == nil {
					rec.Expires = sub.ExpirationDateTime.Time
					_ = s.saveSub(ctx, pbx, rec)
					return
				}
			}
		}
	}
	s.kick(ctx, pbx)
}
