package presence

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/graph"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// richKey is the key pair whose certificate Graph encrypts presence resource
// data with (graph-facts.md 7.6). It lives in memory: a subscription made with
// another process's certificate is kept until its renewal falls due, then
// recreated, and a notification this process cannot decrypt is answered by
// reading the presence instead.
type richKey struct {
	key    *rsa.PrivateKey
	certB6 string
	id     string
}

func (s *Service) richKey() (*richKey, error) {
	s.keyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			s.keyErr = err
			return
		}
		tpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "Switchboard presence notifications"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(2, 0, 0), KeyUsage: x509.KeyUsageKeyEncipherment}
		der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &k.PublicKey, k)
		if err != nil {
			s.keyErr = err
			return
		}
		sum := sha1.Sum(der)
		s.rich = &richKey{key: k, certB6: base64.StdEncoding.EncodeToString(der), id: "switchboard-presence-" + hex.EncodeToString(sum[:8])}
	})
	return s.rich, s.keyErr
}

// subRecord is the stored presence subscription of a PBX.
type subRecord struct {
	ID              string    `json:"id"`
	ClientStateHash string    `json:"clientStateHash"` // hex sha256; the clientState itself is not kept
	Expires         time.Time `json:"expires"`
	UserIDs         []string  `json:"userIds"`
	CertID          string    `json:"certId,omitempty"`
}

type subEntry struct {
	pbx  string
	hash [sha256.Size]byte
}

func (s *Service) loadSub(ctx context.Context, pbx string) (*subRecord, error) {
	b, err := s.Store.GetSetting(ctx, pbx, subscriptionKey)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r subRecord
	if err := json.Unmarshal(b, &r); err != nil || r.ID == "" {
		return nil, nil
	}
	return &r, nil
}

func (s *Service) saveSub(ctx context.Context, pbx string, r *subRecord) error {
	err := s.Store.UpdateSetting(ctx, pbx, subscriptionKey, func([]byte) ([]byte, error) {
		if r == nil {
			return nil, nil
		}
		return json.Marshal(r)
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, e := range s.subs {
		if e.pbx == pbx {
			delete(s.subs, id)
		}
	}
	if r != nil {
		s.register(pbx, r)
	}
	return err
}

// register adds r to the webhook registry; the caller holds s.mu.
func (s *Service) register(pbx string, r *subRecord) {
	h, err := hex.DecodeString(r.ClientStateHash)
	if err != nil || len(h) != sha256.Size {
		return
	}
	if s.subs == nil {
		s.subs = map[string]subEntry{}
	}
	var e subEntry
	e.pbx = pbx
	copy(e.hash[:], h)
	s.subs[r.ID] = e
}

// presenceResource is the subscription resource for ids (graph-facts.md 6.4).
func presenceResource(ids []string) string {
	if len(ids) == 1 {
		return "/communications/presences/" + ids[0]
	}
	q := make([]string, len(ids))
	for i, id := range ids {
		q[i] = "'" + id + "'"
	}
	return "/communications/presences?$filter=id in (" + strings.Join(q, ",") + ")"
}

// chooseSubscribed keeps the current members still eligible and fills up to
// capacity in target order, so membership churns as little as possible.
func chooseSubscribed(current []string, ts []target, capacity int) []string {
	eligible := make(map[string]bool, len(ts))
	for _, t := range ts {
		eligible[t.userID] = true
	}
	var out []string
	in := map[string]bool{}
	for _, id := range current {
		if eligible[id] && !in[id] && len(out) < capacity {
			out = append(out, id)
			in[id] = true
		}
	}
	for _, t := range ts {
		if len(out) >= capacity {
			break
		}
		if !in[t.userID] {
			out = append(out, t.userID)
			in[t.userID] = true
		}
	}
	slices.Sort(out)
	return out
}

// ensureSubscription drives the PBX's presence subscription toward want (the
// users it should cover): create, recreate on a membership or certificate
// change, renew before expiry, delete when want is empty. It returns the
// users actually covered.
func (s *Service) ensureSubscription(ctx context.Context, pbx string, want []string) ([]string, error) {
	cur, err := s.loadSub(ctx, pbx)
	if err != nil {
		return nil, err
	}
	now := s.now()
	rk, kerr := s.richKey()
	if cur != nil {
		s.mu.Lock()
		s.register(pbx, cur)
		s.mu.Unlock()
		certOK := kerr == nil && cur.CertID == rk.id
		renewDue := cur.Expires.Sub(now) <= orDur(s.RenewBefore, DefaultRenewBefore)
		if len(want) > 0 && slices.Equal(cur.UserIDs, want) && now.Before(cur.Expires) && !renewDue {
			// Possibly made by another instance (or an earlier run), with its
			// certificate: kept, so that a takeover makes no second
			// subscription; its notifications are answered by reading the
			// presence, and it is remade with this process's certificate when
			// its renewal falls due.
			return cur.UserIDs, nil
		}
		if len(want) > 0 && slices.Equal(cur.UserIDs, want) && certOK && now.Before(cur.Expires) {
			dc, err := s.Graph.DelegatedClient(ctx, pbx)
			if err != nil {
				return nil, err
			}
			sub, err := dc.RenewSubscription(ctx, cur.ID, now.Add(s.lifetime()))
			if err == nil {
				cur.Expires = sub.ExpirationDateTime.Time
				if cur.Expires.IsZero() {
					cur.Expires = now.Add(s.lifetime())
				}
				s.log().InfoContext(ctx, "presence subscription renewed", "pbx", pbx, "subscription", cur.ID, "expires", cur.Expires)
				return cur.UserIDs, s.saveSub(ctx, pbx, cur)
			}
			if !errors.Is(err, graph.ErrNotFound) {
				return nil, fmt.Errorf("renewing the presence subscription: %w", err)
			}
			// Gone at Graph: fall through and create a new one.
		} else if now.Before(cur.Expires) {
			if dc, err := s.Graph.DelegatedClient(ctx, pbx); err == nil {
				if err := dc.DeleteSubscription(ctx, cur.ID); err != nil && !errors.Is(err, graph.ErrNotFound) {
					s.log().WarnContext(ctx, "deleting the presence subscription", "pbx", pbx, "subscription", cur.ID, "err", err)
				}
			}
		}
		if err := s.saveSub(ctx, pbx, nil); err != nil {
			return nil, err
		}
	}
	if len(want) == 0 {
		return nil, nil
	}
	if kerr != nil {
		return nil, kerr
	}
	dc, err := s.Graph.DelegatedClient(ctx, pbx)
	if err != nil {
		return nil, fmt.Errorf("the authorization account's delegated token: %w", err)
	}
	cs := make([]byte, 32)
	_, _ = rand.Read(cs)
	clientState := base64.RawURLEncoding.EncodeToString(cs)
	sum := sha256.Sum256([]byte(clientState))
	u := strings.TrimRight(s.BaseURL, "/") + WebhookPath + "?pbx=" + pbx
	req := graph.Subscription{
		ChangeType: "updated", Resource: presenceResource(want), NotificationURL: u, LifecycleNotificationURL: u,
		ExpirationDateTime: graph.NewDateTime(now.Add(s.lifetime())), ClientState: clientState,
		LatestSupportedTLSVersion: "v1_2", IncludeResourceData: true,
		EncryptionCertificate: rk.certB6, EncryptionCertificateID: rk.id,
	}
	rec := &subRecord{ClientStateHash: hex.EncodeToString(sum[:]), UserIDs: want, CertID: rk.id}
	sub, err := dc.CreateSubscription(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("creating the presence subscription: %w", err)
	}
	rec.ID, rec.Expires = sub.ID, sub.ExpirationDateTime.Time
	if rec.Expires.IsZero() {
		rec.Expires = now.Add(s.lifetime())
	}
	if err := s.saveSub(ctx, pbx, rec); err != nil {
		return nil, err
	}
	s.log().InfoContext(ctx, "presence subscription created", "pbx", pbx, "subscription", rec.ID, "users", len(want), "expires", rec.Expires)
	return want, nil
}

func (s *Service) lifetime() time.Duration {
	return min(orDur(s.SubscriptionLifetime, DefaultSubscriptionLifetime), 60*time.Minute)
}
