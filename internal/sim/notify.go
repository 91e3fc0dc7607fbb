package sim

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync"
	"time"
)

// delivery is one POST of a notification collection.
type delivery struct {
	url     string
	payload []byte
	first   time.Time
	attempt int
}

// notifier delivers change and lifecycle notifications asynchronously: a bounded queue,
// one worker, exponential-backoff retries for NotifyRetryFor.
type notifier struct {
	t     *Tenant
	queue chan delivery
	stop  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
}

func newNotifier(t *Tenant) *notifier {
	n := &notifier{t: t, queue: make(chan delivery, t.cfg.NotifyQueue), stop: make(chan struct{})}
	n.wg.Add(1)
	go n.run()
	return n
}

func (n *notifier) close() {
	n.once.Do(func() { close(n.stop) })
	n.wg.Wait()
}

func (n *notifier) stopped() bool {
	select {
	case <-n.stop:
		return true
	default:
		return false
	}
}

func (n *notifier) enqueue(d delivery) {
	select {
	case <-n.stop:
	case n.queue <- d:
	default:
		n.t.stats.add("notification dropped (queue full)")
		n.t.log.Warn("sim: notification queue full, dropping", "url", d.url)
	}
}

func (n *notifier) run() {
	defer n.wg.Done()
	for {
		select {
		case <-n.stop:
			return
		case d := <-n.queue:
			n.send(d)
		}
	}
}

func (n *notifier) send(d delivery) {
	// Graph's retry timeout is 10 s; Close aborts a delivery in flight.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		select {
		case <-n.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(d.payload))
	if err != nil {
		return
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	res, err := n.t.cfg.HTTPClient.Do(req)
	ok := err == nil && res.StatusCode >= 200 && res.StatusCode < 300
	if res != nil {
		res.Body.Close()
	}
	if ok {
		n.t.stats.add("notification delivered")
		return
	}
	n.t.stats.add("notification failed")
	if n.stopped() {
		return
	}
	d.attempt++
	wait := n.t.cfg.NotifyBackoff << min(d.attempt-1, 16)
	if time.Since(d.first)+wait > n.t.cfg.NotifyRetryFor {
		n.t.log.Warn("sim: giving up on notification", "url", d.url, "attempts", d.attempt)
		return
	}
	time.AfterFunc(wait, func() { n.enqueue(d) })
}

// changed notifies subscriptions matching a change of a user, group or contact.
// resource is "users", "groups" or "users/{id}/contacts".
func (n *notifier) changed(resource, id, changeType string) {
	t := n.t
	now := t.now()
	t.st.mu.RLock()
	var items map[string][]obj // by notificationUrl
	for _, s := range t.st.subs {
		if !now.Before(s.expires) || !strings.Contains(","+s.changeType+",", ","+changeType+",") || !s.matches(resource, id) {
			continue
		}
		var res string
		var data obj
		switch {
		case resource == "users":
			res = "Users/" + id
			data = obj{{"@odata.type", "#Microsoft.Graph.User"}, {"@odata.id", res}, {"id", id}, {"organizationId", t.cfg.TenantID}}
		case resource == "groups":
			res = "Groups/" + id
			data = obj{{"@odata.type", "#Microsoft.Graph.Group"}, {"@odata.id", res}, {"id", id}, {"organizationId", t.cfg.TenantID}}
		default:
			owner := strings.TrimSuffix(strings.TrimPrefix(resource, "users/"), "/contacts")
			res = "Users/" + owner + "/Contacts/" + id
			data = obj{{"@odata.type", "#Microsoft.Graph.Contact"}, {"@odata.id", res}, {"id", id}}
		}
		item := obj{{"subscriptionId", s.id}, {"subscriptionExpirationDateTime", graphTime7(s.expires)},
			{"changeType", changeType}, {"resource", res}, {"resourceData", data}, {"clientState", nstr(s.clientState)},
			{"tenantId", t.cfg.TenantID}}
		if s.rich != nil && s.kind == "contacts" {
			if m := t.st.mailboxes[s.target]; m != nil {
				if c := m.contact(id); c != nil {
					plain := appendContact(nil, c, contactProps)
					plain = append([]byte(`{"@odata.type":"#microsoft.graph.contact","@odata.id":`+string(appendString(nil, res))+`,`), plain[1:]...)
					if enc, err := s.rich.encryptedContent(plain); err == nil {
						item = append(item, kv{"encryptedContent", enc})
					}
				}
			}
		}
		if items == nil {
			items = map[string][]obj{}
		}
		items[s.notificationURL] = append(items[s.notificationURL], item)
	}
	t.st.mu.RUnlock()
	n.post(items)
}

func (n *notifier) post(items map[string][]obj) {
	for u, list := range items {
		n.enqueue(delivery{url: u, payload: appendJSON(nil, obj{{"value", list}}), first: time.Now()})
	}
}

// presenceChanged notifies presence subscriptions that include the user.
func (n *notifier) presenceChanged(id string, p presenceState) {
	t := n.t
	now := t.now()
	t.st.mu.RLock()
	var items map[string][]obj
	for _, s := range t.st.subs {
		if s.kind != "presence" || !now.Before(s.expires) || !s.matches("presence", id) {
			continue
		}
		item := obj{{"subscriptionId", s.id}, {"clientState", nstr(s.clientState)}, {"changeType", "updated"},
			{"tenantId", t.cfg.TenantID}, {"resource", "communications/presences/" + id},
			{"subscriptionExpirationDateTime", graphTime7(s.expires)},
			{"resourceData", obj{{"@odata.id", "users/" + id + "/presence"}, {"@odata.type", "#microsoft.graph.presence"}, {"id", id}}},
			{"organizationId", t.cfg.TenantID}}
		if s.rich != nil {
			plain := appendJSON(nil, obj{{"@odata.id", "users/" + id + "/presence"}, {"@odata.type", "#microsoft.graph.presence"},
				{"id", id}, {"availability", p.availability}, {"activity", p.activity}})
			if enc, err := s.rich.encryptedContent(plain); err == nil {
				item = append(item, kv{"encryptedContent", enc})
			}
		}
		if items == nil {
			items = map[string][]obj{}
		}
		items[s.notificationURL] = append(items[s.notificationURL], item)
	}
	t.st.mu.RUnlock()
	n.post(items)
}
