package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// subscription is a change-notification subscription.
type subscription struct {
	id, resource, changeType, notificationURL, lifecycleURL, clientState string
	tls, appID, creatorID                                                string
	kind                                                                 string // users, user, groups, group, members, contacts, presence
	target                                                               string // user/group id for single-object kinds
	ids                                                                  []string
	expires                                                              time.Time
	includeResourceData                                                  bool
	rich                                                                 *richKey
}

func (s *subscription) matches(resource, id string) bool {
	switch s.kind {
	case "users":
		return resource == "users"
	case "user":
		return resource == "users" && id == s.target
	case "groups":
		return resource == "groups"
	case "group", "members":
		return resource == "groups" && id == s.target
	case "contacts":
		return resource == "users/"+s.target+"/contacts"
	case "presence":
		return resource == "presence" && slices.Contains(s.ids, id)
	}
	return false
}

var (
	reUser     = regexp.MustCompile(`^/?users/([^/]+)$`)
	reGroup    = regexp.MustCompile(`^/?groups/([^/]+)(/members|/owners)?$`)
	reContacts = regexp.MustCompile(`^/?(?:users/([^/]+)|me)/contacts$`)
	rePresence = regexp.MustCompile(`^/?communications/presences/([^/?]+)$`)
	rePresList = regexp.MustCompile(`^/?communications/presences\?\$filter=id in \((.*)\)$`)
)

// maxExpiry is the longest subscription lifetime per kind (graph-facts 7.2).
func maxExpiry(kind string, rich bool) time.Duration {
	switch kind {
	case "contacts":
		if rich {
			return 1440 * time.Minute
		}
		return 10080 * time.Minute
	case "presence":
		return 60 * time.Minute
	}
	return 41760 * time.Minute
}

func (t *Tenant) subscriptionRoutes() {
	any := perm{any: true}
	t.route("POST /v1.0/subscriptions", any, t.createSubscription)
	t.route("GET /v1.0/subscriptions", any, t.listSubscriptions)
	t.route("GET /v1.0/subscriptions/{sid}", any, t.getSubscription)
	t.route("PATCH /v1.0/subscriptions/{sid}", any, t.patchSubscription)
	t.route("DELETE /v1.0/subscriptions/{sid}", any, t.deleteSubscription)
	t.route("POST /v1.0/subscriptions/{sid}/reauthorize", any, t.reauthorizeSubscription)
}

// parseResource classifies a subscription resource and returns the permissions it needs.
func (t *Tenant) parseResource(res string, c claimsView) (kind, target string, ids []string, p perm, e *gerr) {
	r := strings.TrimPrefix(res, "/")
	if u, err := url.QueryUnescape(r); err == nil {
		r = u
	}
	switch {
	case strings.EqualFold(r, "users"):
		return "users", "", nil, pUsersRead, nil
	case reUser.MatchString(r):
		return "user", reUser.FindStringSubmatch(r)[1], nil, pUsersRead, nil
	case strings.EqualFold(r, "groups"):
		return "groups", "", nil, pGroupsRead, nil
	case reGroup.MatchString(r):
		m := reGroup.FindStringSubmatch(r)
		if m[2] != "" {
			return "members", m[1], nil, pGroupsRead, nil
		}
		return "group", m[1], nil, pGroupsRead, nil
	case reContacts.MatchString(r):
		m := reContacts.FindStringSubmatch(r)
		owner := m[1]
		if owner == "" {
			owner = c.oid
		}
		return "contacts", owner, nil, perm{app: pContactsRead.app, del: []string{"Contacts.Read", "Contacts.ReadWrite"}}, nil
	case rePresence.MatchString(r) || rePresList.MatchString(r):
		if m := rePresence.FindStringSubmatch(r); m != nil {
			ids = []string{m[1]}
		} else {
			for _, part := range strings.Split(rePresList.FindStringSubmatch(r)[1], ",") {
				ids = append(ids, strings.Trim(strings.TrimSpace(part), "'"))
			}
		}
		if len(ids) > 650 {
			return "", "", nil, perm{}, badRequest("InvalidRequest", "A presence subscription can include at most 650 users (got %d).", len(ids))
		}
		return "presence", "", ids, perm{del: []string{"Presence.Read.All"}}, nil
	}
	return "", "", nil, perm{}, badRequest("InvalidRequest", "Resource '%s' is not supported for change notifications.", res)
}

type claimsView struct {
	app, oid  string
	delegated bool
}

func (t *Tenant) subJSON(r *http.Request, s *subscription) obj {
	return obj{
		{"@odata.context", t.baseURL(r) + "/v1.0/$metadata#subscriptions/$entity"},
		{"id", s.id}, {"resource", s.resource}, {"applicationId", s.appID}, {"changeType", s.changeType},
		{"clientState", nstr(s.clientState)}, {"notificationUrl", s.notificationURL},
		{"lifecycleNotificationUrl", nstr(s.lifecycleURL)}, {"expirationDateTime", graphTime7(s.expires)},
		{"creatorId", s.creatorID}, {"includeResourceData", s.includeResourceData},
		{"latestSupportedTlsVersion", s.tls}, {"encryptionCertificate", nil}, {"encryptionCertificateId", richID(s)},
		{"notificationContentType", "application/json"},
	}
}

type subBody struct {
	ChangeType               *string `json:"changeType"`
	NotificationURL          *string `json:"notificationUrl"`
	LifecycleNotificationURL *string `json:"lifecycleNotificationUrl"`
	Resource                 *string `json:"resource"`
	ExpirationDateTime       *string `json:"expirationDateTime"`
	ClientState              *string `json:"clientState"`
	LatestSupportedTLS       *string `json:"latestSupportedTlsVersion"`
	IncludeResourceData      *bool   `json:"includeResourceData"`
	EncryptionCertificate    *string `json:"encryptionCertificate"`
	EncryptionCertificateID  *string `json:"encryptionCertificateId"`
}

func (t *Tenant) expiry(raw string, kind string, rich bool) (time.Time, *gerr) {
	exp, err := time.Parse(time.RFC3339Nano, raw)
	if err != nil {
		return time.Time{}, badRequest("InvalidRequest", "expirationDateTime '%s' is not a valid date.", raw)
	}
	now := t.now()
	if exp.Before(now) {
		return time.Time{}, badRequest("InvalidRequest", "Subscription expiration can only be in the future.")
	}
	max := maxExpiry(kind, rich)
	if exp.Sub(now) > max {
		return time.Time{}, badRequest("InvalidRequest", "Subscription expiration can only be %d minutes in the future.", int(max.Minutes()))
	}
	if floor := now.Add(45 * time.Minute); exp.Before(floor) && max > 45*time.Minute {
		exp = floor
	}
	return exp, nil
}

func (t *Tenant) createSubscription(w http.ResponseWriter, r *http.Request) {
	var b subBody
	if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
		t.fail(w, r, badRequest("BadRequest", "Unable to read JSON request payload."))
		return
	}
	if b.ChangeType == nil || b.NotificationURL == nil || b.Resource == nil || b.ExpirationDateTime == nil {
		t.fail(w, r, badRequest("InvalidRequest", "changeType, notificationUrl, resource and expirationDateTime are required."))
		return
	}
	c := claimsOf(r)
	cv := claimsView{app: c.AppID, oid: c.ObjectID, delegated: c.Delegated}
	kind, target, ids, p, e := t.parseResource(*b.Resource, cv)
	if e != nil {
		t.fail(w, r, e)
		return
	}
	if kind == "presence" && !c.Delegated {
		t.fail(w, r, &gerr{http.StatusForbidden, "ExtensionError", "Operation: Create; Exception: [Status Code: Forbidden; Reason: Application permissions are not supported for presence subscriptions.]"})
		return
	}
	if kind == "contacts" && c.Delegated && target != c.ObjectID {
		t.fail(w, r, &gerr{http.StatusForbidden, "ExtensionError", "Operation: Create; Exception: [Status Code: Forbidden; Reason: Access is denied.]"})
		return
	}
	if !t.authorize(w, r, c, p) {
		return
	}
	for _, ct := range strings.Split(*b.ChangeType, ",") {
		ct = strings.TrimSpace(ct)
		ok := ct == "created" || ct == "updated" || ct == "deleted"
		if (kind == "users" || kind == "user" || kind == "groups" || kind == "group" || kind == "members") && ct == "created" {
			ok = false
		}
		if kind == "presence" && ct != "updated" {
			ok = false
		}
		if !ok {
			t.fail(w, r, badRequest("InvalidRequest", "changeType '%s' is not supported for resource '%s'.", ct, *b.Resource))
			return
		}
	}
	rich := b.IncludeResourceData != nil && *b.IncludeResourceData
	var rk *richKey
	if rich {
		if kind != "presence" && kind != "contacts" {
			t.fail(w, r, badRequest("InvalidRequest", "includeResourceData is not supported for resource '%s'.", *b.Resource))
			return
		}
		if b.EncryptionCertificate == nil || b.EncryptionCertificateID == nil {
			t.fail(w, r, badRequest("InvalidRequest", "encryptionCertificate and encryptionCertificateId are required when includeResourceData is true."))
			return
		}
		var err error
		if rk, err = parseEncryptionCert(*b.EncryptionCertificate, *b.EncryptionCertificateID); err != nil {
			t.fail(w, r, badRequest("InvalidRequest", "%s", err.Error()))
			return
		}
	}
	if cs := b.ClientState; cs != nil && len(*cs) > 128 {
		t.fail(w, r, badRequest("InvalidRequest", "clientState must be at most 128 characters."))
		return
	}
	if kind == "presence" && (b.LifecycleNotificationURL == nil || *b.LifecycleNotificationURL == "") {
		exp, _ := time.Parse(time.RFC3339Nano, *b.ExpirationDateTime)
		if exp.Sub(t.now()) > time.Hour {
			t.fail(w, r, badRequest("InvalidRequest", "lifecycleNotificationUrl is required when expirationDateTime is more than 1 hour away."))
			return
		}
	}
	exp, e := t.expiry(*b.ExpirationDateTime, kind, rich)
	if e != nil {
		t.fail(w, r, e)
		return
	}
	for _, u := range []*string{b.NotificationURL, b.LifecycleNotificationURL} {
		if u == nil || *u == "" {
			continue
		}
		if pu, err := url.Parse(*u); err != nil || (pu.Scheme != "https" && pu.Scheme != "http") || pu.Host == "" {
			t.fail(w, r, badRequest("InvalidRequest", "The notification URL '%s' is invalid.", *u))
			return
		}
	}
	s := &subscription{id: newID(), resource: *b.Resource, changeType: strings.ReplaceAll(*b.ChangeType, " ", ""),
		notificationURL: *b.NotificationURL, kind: kind, target: target, ids: ids, expires: exp,
		appID: c.AppID, creatorID: c.ObjectID, tls: "v1_2", includeResourceData: rich, rich: rk}
	if s.creatorID == "" {
		s.creatorID = c.AppID
	}
	if b.LifecycleNotificationURL != nil {
		s.lifecycleURL = *b.LifecycleNotificationURL
	}
	if b.ClientState != nil {
		s.clientState = *b.ClientState
	}
	if b.LatestSupportedTLS != nil {
		s.tls = *b.LatestSupportedTLS
	}
	t.st.mu.RLock()
	var dup *subscription
	n := 0
	for _, o := range t.st.subs {
		if o.appID == s.appID && (o.kind == "users" || o.kind == "user" || o.kind == "groups" || o.kind == "group" || o.kind == "members") {
			n++
		}
		if o.appID == s.appID && strings.EqualFold(o.resource, s.resource) && o.changeType == s.changeType && o.creatorID == s.creatorID {
			dup = o
		}
	}
	t.st.mu.RUnlock()
	if dup != nil {
		t.fail(w, r, &gerr{http.StatusConflict, "ExtensionError", fmt.Sprintf("Subscription Id %s already exists for the requested combination.", dup.id)})
		return
	}
	if n >= 100 && kind != "contacts" && kind != "presence" {
		t.fail(w, r, &gerr{http.StatusForbidden, "ExtensionError", "Subscription limit reached: 100 subscriptions per application per tenant for directory resources."})
		return
	}
	for _, u := range []string{s.notificationURL, s.lifecycleURL} {
		if u == "" {
			continue
		}
		if err := t.validateEndpoint(r.Context(), u); err != nil {
			t.log.Info("sim: subscription validation failed", "url", u, "err", err)
			t.fail(w, r, badRequest("ValidationError", "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request."))
			return
		}
	}
	t.st.mu.Lock()
	t.st.subs[s.id] = s
	t.st.mu.Unlock()
	writeJSON(w, http.StatusCreated, t.subJSON(r, s))
}

// validateEndpoint runs Graph's validation handshake against u (graph-facts 7.3).
func (t *Tenant) validateEndpoint(ctx context.Context, u string) error {
	token := "Validation: Testing client application reachability for subscription Request-Id: " + newID()
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u+sep+"validationToken="+url.QueryEscape(token), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	res, err := t.cfg.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", res.StatusCode)
	}
	if !strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain") {
		return fmt.Errorf("content type %q, want text/plain", res.Header.Get("Content-Type"))
	}
	if string(body) != token {
		return errors.New("the response did not echo the decoded validation token")
	}
	return nil
}

// visibleSub finds a subscription owned by the caller (app, and user for delegated tokens).
func (t *Tenant) visibleSub(r *http.Request) *subscription {
	c := claimsOf(r)
	s := t.st.subs[r.PathValue("sid")]
	if s == nil || s.appID != c.AppID || (c.Delegated && s.creatorID != c.ObjectID) || !t.now().Before(s.expires) {
		return nil
	}
	return s
}

func subNotFound(id string) *gerr {
	return &gerr{http.StatusNotFound, "ResourceNotFound", fmt.Sprintf("The object was not found. Subscription Id: %s", id)}
}

func (t *Tenant) listSubscriptions(w http.ResponseWriter, r *http.Request) {
	c := claimsOf(r)
	now := t.now()
	t.st.mu.RLock()
	var list []any
	for _, s := range t.st.subs {
		if s.appID == c.AppID && (!c.Delegated || s.creatorID == c.ObjectID) && now.Before(s.expires) {
			o := t.subJSON(r, s)
			list = append(list, o[1:])
		}
	}
	t.st.mu.RUnlock()
	if list == nil {
		list = []any{}
	}
	writeJSON(w, http.StatusOK, obj{{"@odata.context", t.baseURL(r) + "/v1.0/$metadata#subscriptions"}, {"value", list}})
}

func (t *Tenant) getSubscription(w http.ResponseWriter, r *http.Request) {
	t.st.mu.RLock()
	s := t.visibleSub(r)
	var o obj
	if s != nil {
		o = t.subJSON(r, s)
	}
	t.st.mu.RUnlock()
	if s == nil {
		t.fail(w, r, subNotFound(r.PathValue("sid")))
		return
	}
	writeJSON(w, http.StatusOK, o)
}

func (t *Tenant) patchSubscription(w http.ResponseWriter, r *http.Request) {
	var b subBody
	if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
		t.fail(w, r, badRequest("BadRequest", "Unable to read JSON request payload."))
		return
	}
	t.st.mu.Lock()
	s := t.visibleSub(r)
	if s == nil {
		t.st.mu.Unlock()
		t.fail(w, r, subNotFound(r.PathValue("sid")))
		return
	}
	if b.ExpirationDateTime != nil {
		exp, e := t.expiry(*b.ExpirationDateTime, s.kind, s.includeResourceData)
		if e != nil {
			t.st.mu.Unlock()
			t.fail(w, r, e)
			return
		}
		s.expires = exp
	}
	if b.NotificationURL != nil {
		s.notificationURL = *b.NotificationURL
	}
	o := t.subJSON(r, s)
	t.st.mu.Unlock()
	writeJSON(w, http.StatusOK, o)
}

func (t *Tenant) deleteSubscription(w http.ResponseWriter, r *http.Request) {
	t.st.mu.Lock()
	s := t.visibleSub(r)
	if s != nil {
		delete(t.st.subs, s.id)
	}
	t.st.mu.Unlock()
	if s == nil {
		t.fail(w, r, subNotFound(r.PathValue("sid")))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (t *Tenant) reauthorizeSubscription(w http.ResponseWriter, r *http.Request) {
	t.st.mu.RLock()
	s := t.visibleSub(r)
	t.st.mu.RUnlock()
	if s == nil {
		t.fail(w, r, subNotFound(r.PathValue("sid")))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// SubscriptionInfo is a read-only view of a subscription.
type SubscriptionInfo struct {
	ID, Resource, ChangeType, NotificationURL, LifecycleNotificationURL, ClientState string
	Expires                                                                          time.Time
}

// Subscriptions lists the active subscriptions.
func (t *Tenant) Subscriptions() []SubscriptionInfo {
	t.st.mu.RLock()
	defer t.st.mu.RUnlock()
	var out []SubscriptionInfo
	for _, s := range t.st.subs {
		out = append(out, SubscriptionInfo{s.id, s.resource, s.changeType, s.notificationURL, s.lifecycleURL, s.clientState, s.expires})
	}
	slices.SortFunc(out, func(a, b SubscriptionInfo) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Lifecycle events (graph-facts 7.5).
const (
	LifecycleReauthorizationRequired = "reauthorizationRequired"
	LifecycleSubscriptionRemoved     = "subscriptionRemoved"
	LifecycleMissed                  = "missed"
)

// TriggerLifecycle sends a lifecycle notification for subscription id to its
// lifecycleNotificationUrl; subscriptionRemoved also deletes the subscription.
func (t *Tenant) TriggerLifecycle(id, event string) error {
	switch event {
	case LifecycleReauthorizationRequired, LifecycleSubscriptionRemoved, LifecycleMissed:
	default:
		return fmt.Errorf("sim: unknown lifecycle event %q", event)
	}
	t.st.mu.Lock()
	s := t.st.subs[id]
	if s == nil {
		t.st.mu.Unlock()
		return fmt.Errorf("sim: subscription %s not found", id)
	}
	if s.lifecycleURL == "" {
		t.st.mu.Unlock()
		return fmt.Errorf("sim: subscription %s has no lifecycleNotificationUrl", id)
	}
	if event == LifecycleSubscriptionRemoved {
		delete(t.st.subs, id)
	}
	item := obj{{"subscriptionId", s.id}, {"subscriptionExpirationDateTime", graphTime7(s.expires)},
		{"tenantId", t.cfg.TenantID}, {"clientState", nstr(s.clientState)}, {"lifecycleEvent", event}}
	u := s.lifecycleURL
	t.st.mu.Unlock()
	t.hooks.post(map[string][]obj{u: {item}})
	return nil
}

func richID(s *subscription) any {
	if s.rich == nil {
		return nil
	}
	return s.rich.id
}
