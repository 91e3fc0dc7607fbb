package presence_test

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/graph"
	"github.com/switchboard-pbx/switchboard/internal/presence"
)

func TestPollIntervalRule(t *testing.T) {
	s := &presence.Service{}
	for _, c := range []struct {
		users int
		want  time.Duration
	}{
		{0, 10 * time.Second},
		{650, 10 * time.Second},
		{10000, 10 * time.Second},                  // 16 requests: 3.2 s < floor
		{100000, 154 * 30 * time.Second / 150},     // 154 requests: 30.8 s
		{1_000_000, 1539 * 30 * time.Second / 150}, // stays within the budget
	} {
		if got := s.PollInterval(c.users); got != c.want {
			t.Errorf("PollInterval(%d) = %v, want %v", c.users, got, c.want)
		}
		// Requests per 30 s never exceed the budget (150 of Graph's 1,500).
		reqs := (c.users + 649) / 650
		if perWindow := float64(reqs) * float64(30*time.Second) / float64(s.PollInterval(c.users)); perWindow > 150.0001 {
			t.Errorf("%d users: %.1f requests per 30 s", c.users, perWindow)
		}
	}
}

// One-way, polling path: a Teams change reaches the extension within one polling interval.
func TestPollingPath(t *testing.T) {
	e := newEnv(t, opts{tune: func(s *presence.Service) { s.SubscriptionCapacity = -1 }})
	e.enable("one-way", 5)
	e.run()
	st := e.waitStatus(5*time.Second, func(st presence.Status) bool { return st.PollingUsers == 5 && st.LastRoundAt != nil })
	if st.NotificationUsers != 0 || st.Subscription != nil || pathOf(st, e.users[0].ID) != presence.PathPolling {
		t.Fatalf("status: %+v", st)
	}
	interval := time.Duration(st.PollIntervalSeconds * float64(time.Second))
	if interval != 300*time.Millisecond {
		t.Fatalf("interval %v", interval)
	}
	u, other := e.users[0].ID, e.users[7].ID // users[7] has presence sync off
	if err := e.tenant.SetTeamsPresence(u, "Away", "Away"); err != nil {
		t.Fatal(err)
	}
	_ = e.tenant.SetTeamsPresence(other, "Away", "Away")
	took := e.waitPresence(u, directory.PresenceAway, 3*time.Second)
	t.Logf("polling path: Teams change -> extension in %v (interval %v)", took, interval)
	if took > interval+400*time.Millisecond {
		t.Errorf("took %v, more than one polling interval (%v)", took, interval)
	}
	if err := e.tenant.SetTeamsPresence(u, "Offline", "OffWork"); err != nil {
		t.Fatal(err)
	}
	e.waitPresence(u, directory.PresenceOffWork, 3*time.Second)
	if got := e.ext(other).Presence; got != directory.PresenceAvailable {
		t.Errorf("extension with presence sync off moved to %q", got)
	}
}

// Notification path: a delegated subscription is created, and a presence
// change delivered to the webhook reaches the extension within 2 s.
func TestNotificationPath(t *testing.T) {
	e := newEnv(t, opts{tune: func(s *presence.Service) { s.MinPollInterval = time.Hour }})
	e.enable("one-way", 5)
	e.run()
	st := e.waitStatus(10*time.Second, func(st presence.Status) bool { return st.NotificationUsers == 5 })
	if st.Subscription == nil || st.Subscription.Users != 5 || st.PollingUsers != 0 {
		t.Fatalf("status: %+v", st)
	}
	subs := e.tenant.Subscriptions()
	if len(subs) != 1 {
		t.Fatalf("subscriptions: %+v", subs)
	}
	sub := subs[0]
	// The simulated tenant refuses presence subscriptions made with an app token,
	// so its existence shows the delegated token was used.
	if !strings.HasPrefix(sub.Resource, "/communications/presences?$filter=id in (") || strings.Count(sub.Resource, "'") != 10 ||
		!strings.Contains(sub.NotificationURL, presence.WebhookPath) || sub.ChangeType != "updated" {
		t.Fatalf("subscription: %+v", sub)
	}
	if life := time.Until(sub.Expires); life > 60*time.Minute || life < 45*time.Minute {
		t.Fatalf("subscription lifetime %v", life)
	}
	e.tenant.ResetStats()
	for i, pair := range [][2]string{{"DoNotDisturb", "DoNotDisturb"}, {"Away", "Away"}, {"Busy", "InAMeeting"}} {
		u := e.users[i].ID
		want := map[string]directory.Presence{"DoNotDisturb": directory.PresenceDoNotDisturb, "Away": directory.PresenceAway, "Busy": directory.PresenceDoNotDisturb}[pair[0]]
		if err := e.tenant.SetTeamsPresence(u, pair[0], pair[1]); err != nil {
			t.Fatal(err)
		}
		took := e.waitPresence(u, want, 2*time.Second)
		t.Logf("notification path: %s/%s -> %s in %v", pair[0], pair[1], want, took)
	}
	// The metrics count what happened.
	reg := prometheus.NewRegistry()
	reg.MustRegister(e.svc.Collectors()...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var appliedN float64
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if mf.GetName() == "switchboard_presence_applied_total" && m.GetLabel()[0].GetValue() == "notification" {
				appliedN = m.GetCounter().GetValue()
			}
		}
	}
	if appliedN < 3 {
		t.Errorf("switchboard_presence_applied_total{via=notification} = %v", appliedN)
	}
	// Rich notifications carry the presence (encrypted to our certificate): no reads needed.
	if st := e.tenant.Stats(); st.ByEndpoint["POST /v1.0/communications/getPresencesByUserId"]+st.ByEndpoint["GET /v1.0/users/{id}/presence"] != 0 {
		t.Errorf("notifications needed presence reads: %v", st.ByEndpoint)
	}

	// A basic notification (no resource data, as from a subscription made by
	// another instance) is answered by reading the presence: one request.
	v := e.users[4].ID
	if _, err := e.store.UpdateExtension(t.Context(), directory.DefaultPBX, e.exts[v], func(x *directory.Extension) error {
		x.Presence = directory.PresenceLunchBreak
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	e.tenant.ResetStats()
	basic := `{"value":[{"subscriptionId":"` + sub.ID + `","clientState":"` + sub.ClientState + `","changeType":"updated","resource":"communications/presences/` + v +
		`","resourceData":{"@odata.id":"users/` + v + `/presence","@odata.type":"#microsoft.graph.presence","id":"` + v + `"}}]}`
	res, err := http.Post(e.srv.URL+presence.WebhookPath, "application/json", strings.NewReader(basic))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("basic notification: %d", res.StatusCode)
	}
	if got := e.ext(v).Presence; got != directory.PresenceAvailable {
		t.Fatalf("basic notification: extension %q, want available", got)
	}
	if n := e.tenant.Stats().ByEndpoint["POST /v1.0/communications/getPresencesByUserId"]; n != 1 {
		t.Fatalf("basic notification: %d reads", n)
	}

	// The webhook answers the validation handshake with the decoded token.
	res, err = http.Post(e.srv.URL+presence.WebhookPath+"?validationToken=a%3Cb%3E%20c", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || string(body) != "a<b> c" || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("validation: %d %q %q", res.StatusCode, res.Header.Get("Content-Type"), body)
	}
	// A notification with a wrong clientState or an unknown subscription is refused.
	n := graph.ChangeNotification{SubscriptionID: sub.ID, ClientState: "forged", ChangeType: "updated",
		Resource: "communications/presences/" + e.users[3].ID, ResourceData: &graph.ResourceData{ID: e.users[3].ID}}
	if err := e.svc.HandleNotification(t.Context(), directory.DefaultPBX, n); !errors.Is(err, presence.ErrClientState) {
		t.Fatalf("forged clientState: %v", err)
	}
	n.SubscriptionID = "00000000-0000-0000-0000-000000000000"
	if err := e.svc.HandleNotification(t.Context(), directory.DefaultPBX, n); !errors.Is(err, presence.ErrUnknownSubscription) {
		t.Fatalf("unknown subscription: %v", err)
	}
	res, err = http.Post(e.srv.URL+presence.WebhookPath, "application/json", strings.NewReader(`{"value":[{"subscriptionId":"`+sub.ID+`","clientState":"forged","resource":"communications/presences/`+e.users[3].ID+`"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("forged POST: %d", res.StatusCode)
	}
}

// With room for 3 users on the subscription, the rest are polled; a user who
// leaves the sync range drops out of both paths.
func TestPathsSplitAndLeavingRange(t *testing.T) {
	e := newEnv(t, opts{tune: func(s *presence.Service) { s.SubscriptionCapacity = 3 }})
	e.enable("one-way", 6)
	e.run()
	st := e.waitStatus(10*time.Second, func(st presence.Status) bool { return st.NotificationUsers == 3 && st.PollingUsers == 3 })
	var notified, polled string
	for _, u := range st.Users {
		switch u.Path {
		case presence.PathNotification:
			notified = u.EntraID
		case presence.PathPolling:
			polled = u.EntraID
		}
	}
	for _, u := range []string{notified, polled} {
		if err := e.tenant.SetTeamsPresence(u, "BeRightBack", "BeRightBack"); err != nil {
			t.Fatal(err)
		}
		e.waitPresence(u, directory.PresenceAway, 2*time.Second)
	}
	// The user changes their own mapping from the client (the client API writes
	// the document): the notified user's extension follows without a Teams change.
	if err := e.store.UpdateSetting(t.Context(), directory.DefaultPBX, presence.ExtensionKey(e.exts[notified]), func([]byte) ([]byte, error) {
		return []byte(`{"enabled":true,"mapping":{"BeRightBack":"lunch_break"}}`), nil
	}); err != nil {
		t.Fatal(err)
	}
	e.waitPresence(notified, directory.PresenceLunchBreak, 3*time.Second)
	// The notified user leaves the sync range (the user sync unbinds the extension).
	if _, err := e.store.UpdateExtension(t.Context(), directory.DefaultPBX, e.exts[notified], func(x *directory.Extension) error {
		x.Source, x.EntraID = directory.SourceLocal, ""
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	st = e.waitStatus(5*time.Second, func(st presence.Status) bool {
		return len(st.Users) == 5 && st.NotificationUsers == 3 && st.PollingUsers == 2 && pathOf(st, notified) == "absent"
	})
	for _, s := range e.tenant.Subscriptions() {
		if strings.Contains(s.Resource, notified) {
			t.Fatalf("subscription still covers the user who left: %s", s.Resource)
		}
	}
	if err := e.tenant.SetTeamsPresence(notified, "DoNotDisturb", "DoNotDisturb"); err != nil {
		t.Fatal(err)
	}
	// Turning sync off removes the subscription.
	e.mustAPI("PUT", "/api/v1/integration/presence-sync", map[string]any{"enabled": false})
	deadline := time.Now().Add(5 * time.Second)
	for len(e.tenant.Subscriptions()) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("subscription kept after sync was turned off: %+v", e.tenant.Subscriptions())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := e.ext(notified).Presence; got != directory.PresenceLunchBreak {
		t.Errorf("extension that left the range moved to %q", got)
	}
}

func TestMappingDefaultsAndOverrides(t *testing.T) {
	e := newEnv(t, opts{tune: func(s *presence.Service) { s.SubscriptionCapacity = -1 }})
	a, b, c := e.users[0].ID, e.users[1].ID, e.users[2].ID
	got := e.mustAPI("GET", "/api/v1/extensions/"+e.exts[a]+"/presence-sync", nil)
	m := got["mapping"].(map[string]any)
	want := map[string]string{"Available": "available", "AvailableIdle": "available", "Away": "away", "BeRightBack": "away", "Busy": "do_not_disturb",
		"BusyIdle": "do_not_disturb", "DoNotDisturb": "do_not_disturb", "Offline": "off_work", "PresenceUnknown": "available"}
	if got["enabled"] != false || len(m) != 9 {
		t.Fatalf("defaults: %v", got)
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("default mapping %s = %v, want %s", k, m[k], v)
		}
	}
	// An override (keys are case-insensitive); the rest keep the defaults.
	got = e.mustAPI("PUT", "/api/v1/extensions/"+e.exts[a]+"/presence-sync", map[string]any{"enabled": true, "mapping": map[string]string{"busy": "lunch_break"}})
	m = got["mapping"].(map[string]any)
	if got["enabled"] != true || m["Busy"] != "lunch_break" || m["Away"] != "away" || len(m) != 9 {
		t.Fatalf("override: %v", got)
	}
	// The document the client API writes (its own mapping, other fields) is read and kept.
	if err := e.store.UpdateSetting(t.Context(), directory.DefaultPBX, presence.ExtensionKey(e.exts[c]), func([]byte) ([]byte, error) {
		return []byte(`{"enabled":true,"mapping":{"Away":"business_trip"},"updatedBy":"client"}`), nil
	}); err != nil {
		t.Fatal(err)
	}
	got = e.mustAPI("GET", "/api/v1/extensions/"+e.exts[c]+"/presence-sync", nil)
	if m := got["mapping"].(map[string]any); got["enabled"] != true || m["Away"] != "business_trip" || m["Busy"] != "do_not_disturb" {
		t.Fatalf("client-written document: %v", got)
	}
	e.mustAPI("PUT", "/api/v1/extensions/"+e.exts[b]+"/presence-sync", map[string]any{"enabled": true})
	e.mustAPI("PUT", "/api/v1/integration/presence-sync", map[string]any{"enabled": true})
	e.run()
	for _, u := range []string{a, b} {
		if err := e.tenant.SetTeamsPresence(u, "Busy", "Busy"); err != nil {
			t.Fatal(err)
		}
	}
	_ = e.tenant.SetTeamsPresence(c, "Away", "Away")
	e.waitPresence(a, directory.PresenceLunchBreak, 3*time.Second)
	e.waitPresence(b, directory.PresenceDoNotDisturb, 3*time.Second)
	e.waitPresence(c, directory.PresenceBusinessTrip, 3*time.Second)
	// An admin edit keeps the fields other writers stored.
	e.mustAPI("PUT", "/api/v1/extensions/"+e.exts[c]+"/presence-sync", map[string]any{"enabled": true, "mapping": map[string]string{"Away": "lunch_break"}})
	raw, _ := e.store.GetSetting(t.Context(), directory.DefaultPBX, presence.ExtensionKey(e.exts[c]))
	if !strings.Contains(string(raw), `"updatedBy":"client"`) || !strings.Contains(string(raw), `"Away":"lunch_break"`) {
		t.Fatalf("stored document: %s", raw)
	}
	e.waitPresence(c, directory.PresenceLunchBreak, 3*time.Second)
}

func TestBulkEdit(t *testing.T) {
	e := newEnv(t, opts{})
	ids := []string{e.exts[e.users[0].ID], e.exts[e.users[1].ID], e.exts[e.users[2].ID]}
	out := e.mustAPI("PUT", "/api/v1/presence-sync/extensions", map[string]any{"extensionIds": ids, "enabled": true, "mapping": map[string]string{"Away": "lunch_break"}})
	if items := out["items"].([]any); len(items) != 3 {
		t.Fatalf("bulk answer: %v", out)
	}
	for _, id := range ids {
		got := e.mustAPI("GET", "/api/v1/extensions/"+id+"/presence-sync", nil)
		if m := got["mapping"].(map[string]any); got["enabled"] != true || m["Away"] != "lunch_break" || m["Offline"] != "off_work" {
			t.Fatalf("%s after bulk: %v", id, got)
		}
	}
	// Switching off keeps the mapping.
	e.mustAPI("PUT", "/api/v1/presence-sync/extensions", map[string]any{"extensionIds": ids[:2], "enabled": false})
	for i, id := range ids {
		got := e.mustAPI("GET", "/api/v1/extensions/"+id+"/presence-sync", nil)
		if got["enabled"] != (i == 2) || got["mapping"].(map[string]any)["Away"] != "lunch_break" {
			t.Fatalf("%s after bulk off: %v", id, got)
		}
	}
	// One bad id: nothing is written.
	code, errOut := e.api("PUT", "/api/v1/presence-sync/extensions", map[string]any{"extensionIds": []string{ids[0], "nope"}, "enabled": true})
	if code != 400 || errOut["error"].(map[string]any)["field"] != "extensionIds[1]" {
		t.Fatalf("bad id: %d %v", code, errOut)
	}
	if got := e.mustAPI("GET", "/api/v1/extensions/"+ids[0]+"/presence-sync", nil); got["enabled"] != false {
		t.Fatalf("partial write: %v", got)
	}
}

func TestValidation(t *testing.T) {
	e := newEnv(t, opts{})
	local := &directory.Extension{Number: "555", FirstName: "Front", LastName: "Desk"}
	if err := e.pbx.CreateExtension(t.Context(), directory.DefaultPBX, "test", local); err != nil {
		t.Fatal(err)
	}
	x := e.exts[e.users[0].ID]
	for _, c := range []struct {
		method, path string
		body         any
		status       int
		field        string
	}{
		{"PUT", "/api/v1/integration/presence-sync", map[string]any{"direction": "two-way"}, 400, "enabled"},
		{"PUT", "/api/v1/integration/presence-sync", map[string]any{"enabled": true, "direction": "sideways"}, 400, "direction"},
		{"PUT", "/api/v1/integration/presence-sync", map[string]any{"enabled": "yes"}, 400, "enabled"},
		{"PUT", "/api/v1/integration/presence-sync", map[string]any{"enabled": true, "mode": "x"}, 400, "mode"},
		{"PUT", "/api/v1/extensions/" + x + "/presence-sync", map[string]any{"mapping": map[string]string{}}, 400, "enabled"},
		{"PUT", "/api/v1/extensions/" + x + "/presence-sync", map[string]any{"enabled": true, "mapping": map[string]string{"Lunch": "away"}}, 400, "mapping.Lunch"},
		{"PUT", "/api/v1/extensions/" + x + "/presence-sync", map[string]any{"enabled": true, "mapping": map[string]string{"Busy": "busy"}}, 400, "mapping.Busy"},
		{"PUT", "/api/v1/extensions/" + local.ID + "/presence-sync", map[string]any{"enabled": true}, 400, "enabled"},
		{"PUT", "/api/v1/extensions/nope/presence-sync", map[string]any{"enabled": true}, 404, ""},
		{"GET", "/api/v1/extensions/nope/presence-sync", nil, 404, ""},
		{"PUT", "/api/v1/presence-sync/extensions", map[string]any{"enabled": true}, 400, "extensionIds"},
		{"PUT", "/api/v1/presence-sync/extensions", map[string]any{"extensionIds": []string{x}}, 400, "enabled"},
		{"PUT", "/api/v1/presence-sync/extensions", map[string]any{"extensionIds": []string{x, x}, "enabled": true}, 400, "extensionIds[1]"},
		{"PUT", "/api/v1/presence-sync/extensions", map[string]any{"extensionIds": []string{x, local.ID}, "enabled": true}, 400, "extensionIds[1]"},
		{"PUT", "/api/v1/presence-sync/extensions", map[string]any{"extensionIds": []string{x}, "mapping": map[string]any{"Away": 1}}, 400, "mapping"},
	} {
		code, out := e.api(c.method, c.path, c.body)
		var field any
		if er, ok := out["error"].(map[string]any); ok {
			field = er["field"]
		}
		if code != c.status || (c.field != "" && field != c.field) {
			t.Errorf("%s %s %v: %d %v, want %d field %q", c.method, c.path, c.body, code, out, c.status, c.field)
		}
	}
	if err := e.svc.OnCallState(t.Context(), directory.DefaultPBX, x, "talking"); err == nil {
		t.Error("OnCallState accepted an unknown state")
	}
	// A disabled integration's configuration is locked.
	e.mustAPI("POST", "/api/v1/integration/disable", map[string]any{"deleteExtensions": false, "deleteGroups": false})
	for _, c := range []struct {
		path string
		body any
	}{
		{"/api/v1/integration/presence-sync", map[string]any{"enabled": true}},
		{"/api/v1/extensions/" + x + "/presence-sync", map[string]any{"enabled": true}},
		{"/api/v1/presence-sync/extensions", map[string]any{"extensionIds": []string{x}, "enabled": true}},
	} {
		if code, out := e.api("PUT", c.path, c.body); code != 409 {
			t.Errorf("PUT %s while disabled: %d %v", c.path, code, out)
		}
	}
}

// Two-way: ringing/busy sets Teams Busy/InACall, Teams changes during the call
// do not move the extension, idle clears the session and the latest Teams state applies.
func TestTwoWay(t *testing.T) {
	e := newEnv(t, opts{})
	e.enable("two-way", 3)
	e.run()
	e.waitStatus(10*time.Second, func(st presence.Status) bool { return st.NotificationUsers == 3 })
	u := e.users[0].ID
	x := e.exts[u]
	call := func(state directory.CallState) {
		t.Helper()
		e.mustAPI("POST", "/api/v1/extensions/"+x+"/call-state", map[string]any{"state": state})
		if err := e.svc.OnCallState(t.Context(), directory.DefaultPBX, x, state); err != nil {
			t.Fatal(err)
		}
	}
	call(directory.CallRinging)
	e.waitTeams(u, "Busy", "InACall", 2*time.Second)
	call(directory.CallBusy)
	// The user changes Teams during the call: seen, but the extension stays.
	if err := e.tenant.SetTeamsPresence(u, "DoNotDisturb", "DoNotDisturb"); err != nil {
		t.Fatal(err)
	}
	st := e.waitStatus(3*time.Second, func(st presence.Status) bool {
		for _, us := range st.Users {
			if us.EntraID == u {
				return us.Availability == "DoNotDisturb" && us.Held
			}
		}
		return false
	})
	_ = st
	if got := e.ext(u).Presence; got != directory.PresenceAvailable {
		t.Fatalf("extension moved during the call: %q", got)
	}
	// Hang up: the app session is cleared and the latest Teams state applies.
	call(directory.CallIdle)
	took := e.waitPresence(u, directory.PresenceDoNotDisturb, 2*time.Second)
	t.Logf("after hang-up the latest Teams state applied in %v", took)
	e.waitTeams(u, "DoNotDisturb", "DoNotDisturb", 2*time.Second)
	if err := e.tenant.SetTeamsPresence(u, "Available", "Available"); err != nil {
		t.Fatal(err)
	}
	e.waitPresence(u, directory.PresenceAvailable, 2*time.Second)

	// One-way: call state does not touch Teams.
	e.mustAPI("PUT", "/api/v1/integration/presence-sync", map[string]any{"enabled": true, "direction": "one-way"})
	v := e.users[1].ID
	e.tenant.ResetStats()
	if err := e.svc.OnCallState(t.Context(), directory.DefaultPBX, e.exts[v], directory.CallBusy); err != nil {
		t.Fatal(err)
	}
	if err := e.tenant.SetTeamsPresence(v, "Away", "Away"); err != nil {
		t.Fatal(err)
	}
	e.waitPresence(v, directory.PresenceAway, 2*time.Second)
	if n := e.tenant.Stats().ByEndpoint["POST /v1.0/users/{id}/presence/setPresence"]; n != 0 {
		t.Errorf("one-way mode called setPresence %d times", n)
	}
}

// 650 ids per subscription and per getPresencesByUserId request.
func TestChunking650(t *testing.T) {
	e := newEnv(t, opts{users: 1400, tune: func(s *presence.Service) { s.MinPollInterval = time.Hour }})
	e.mustAPI("PUT", "/api/v1/integration/presence-sync", map[string]any{"enabled": true})
	ids := make([]string, 0, len(e.users))
	for _, u := range e.users {
		ids = append(ids, e.exts[u.ID])
	}
	e.mustAPI("PUT", "/api/v1/presence-sync/extensions", map[string]any{"extensionIds": ids, "enabled": true})
	if err := e.svc.Reconcile(t.Context(), directory.DefaultPBX); err != nil {
		t.Fatal(err)
	}
	subs := e.tenant.Subscriptions()
	if len(subs) != 1 || strings.Count(subs[0].Resource, "'") != 2*650 {
		t.Fatalf("subscriptions: %d, first covers %d ids", len(subs), strings.Count(subs[0].Resource, "'")/2)
	}
	e.tenant.ResetStats()
	if err := e.svc.Reconcile(t.Context(), directory.DefaultPBX); err != nil {
		t.Fatal(err)
	}
	polled := len(e.users) - 650
	if n := e.tenant.Stats().ByEndpoint["POST /v1.0/communications/getPresencesByUserId"]; n != int64((polled+649)/650) {
		t.Fatalf("getPresencesByUserId requests for %d polled users: %d", polled, n)
	}
	st := e.status()
	if st.NotificationUsers != 650 || st.PollingUsers != polled || st.Subscription == nil || st.Subscription.Users != 650 {
		t.Fatalf("status: notification %d polling %d sub %+v", st.NotificationUsers, st.PollingUsers, st.Subscription)
	}
	if err := e.tenant.SetTeamsPresence(e.users[len(e.users)-1].ID, "Away", "Away"); err != nil {
		t.Fatal(err)
	}
}

// The subscription is renewed (PATCH, same id) before its 60-minute limit and
// recreated when Graph removes it.
func TestSubscriptionRenewalAndRemoval(t *testing.T) {
	// Renewal falls due one second after creation.
	e := newEnv(t, opts{tune: func(s *presence.Service) { s.RenewBefore = 59*time.Minute - time.Second }})
	e.enable("one-way", 2)
	e.run()
	st := e.waitStatus(10*time.Second, func(st presence.Status) bool { return st.Subscription != nil })
	first := e.tenant.Subscriptions()[0]
	deadline := time.Now().Add(5 * time.Second)
	for {
		subs := e.tenant.Subscriptions()
		if len(subs) == 1 && subs[0].ID == first.ID && subs[0].Expires.After(first.Expires) {
			if life := time.Until(subs[0].Expires); life > 60*time.Minute {
				t.Fatalf("renewed beyond 60 minutes: %v", life)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not renewed: %+v (first %+v)", subs, first)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := e.tenant.Stats().ByEndpoint["PATCH /v1.0/subscriptions/{sid}"]; n == 0 {
		t.Fatal("no PATCH renewal seen")
	}
	// Graph removes the subscription: the lifecycle event makes a new one.
	if err := e.tenant.TriggerLifecycle(first.ID, "subscriptionRemoved"); err != nil {
		t.Fatal(err)
	}
	st = e.waitStatus(5*time.Second, func(st presence.Status) bool { return st.Subscription != nil && st.Subscription.ID != first.ID })
	subs := e.tenant.Subscriptions()
	if len(subs) != 1 || subs[0].ID != st.Subscription.ID {
		t.Fatalf("after removal: %+v, status %+v", subs, st.Subscription)
	}
	u := e.users[1].ID
	if err := e.tenant.SetTeamsPresence(u, "Away", "Away"); err != nil {
		t.Fatal(err)
	}
	e.waitPresence(u, directory.PresenceAway, 2*time.Second)
}

// A held Busy/InACall session is refreshed before it expires, and cleared when
// two-way sync is switched off during the call.
func TestTwoWaySessionUpkeep(t *testing.T) {
	var offset atomic.Int64
	e := newEnv(t, opts{tune: func(s *presence.Service) {
		s.SubscriptionCapacity = -1
		s.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	}})
	e.enable("two-way", 1)
	e.run()
	u, x := e.users[0].ID, e.exts[e.users[0].ID]
	e.mustAPI("POST", "/api/v1/extensions/"+x+"/call-state", map[string]any{"state": "busy"})
	if err := e.svc.OnCallState(t.Context(), directory.DefaultPBX, x, directory.CallBusy); err != nil {
		t.Fatal(err)
	}
	e.waitTeams(u, "Busy", "InACall", 2*time.Second)
	const setPresence = "POST /v1.0/users/{id}/presence/setPresence"
	before := e.tenant.Stats().ByEndpoint[setPresence]
	offset.Store(int64(16 * time.Minute)) // past half of the 30-minute session
	deadline := time.Now().Add(3 * time.Second)
	for e.tenant.Stats().ByEndpoint[setPresence] <= before {
		if time.Now().After(deadline) {
			t.Fatal("the session was not refreshed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.mustAPI("PUT", "/api/v1/integration/presence-sync", map[string]any{"enabled": true, "direction": "one-way"})
	e.waitTeams(u, "Available", "Available", 3*time.Second)
}
