package schedule

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-pbx/switchboard/internal/directory"
)

// addSub stores a subscription of pbx as EnsureSubscriptions would and loads the registry.
func addSub(t *testing.T, s *Service, pbx, id, clientState string) {
	t.Helper()
	s.init()
	st, err := s.loadSubs(t.Context(), pbx)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256([]byte(clientState))
	st.Mode = ModeNotifications
	st.Subs = append(st.Subs, subRecord{ID: id, Resource: "users", NotificationURL: "https://pbx.example.com" + WebhookPath,
		ClientStateHash: hex.EncodeToString(h[:]), Expires: time.Now().Add(100 * 24 * time.Hour)})
	if err := s.saveSubs(t.Context(), pbx, st); err != nil {
		t.Fatal(err)
	}
}

func notification(subID, clientState string) string {
	return fmt.Sprintf(`{"subscriptionId":%q,"clientState":%q,"changeType":"updated","resource":"Users/u1",`+
		`"resourceData":{"@odata.type":"#Microsoft.Graph.User","id":"u1"},"tenantId":"t"}`, subID, clientState)
}

func lifecycleItem(subID, clientState, event string) string {
	return fmt.Sprintf(`{"subscriptionId":%q,"clientState":%q,"lifecycleEvent":%q,"tenantId":"t"}`, subID, clientState, event)
}

func post(h http.Handler, path string, items ...string) *httptest.ResponseRecorder {
	body := `{"value":[` + strings.Join(items, ",") + `]}`
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func newWebhookService(t *testing.T, r *fakeRunner, pbxs ...string) *Service {
	var ps []directory.PBX
	for _, p := range pbxs {
		ps = append(ps, directory.PBX{ID: p, TimeZone: "UTC"})
	}
	s := &Service{Store: newMemStore(ps...), Integration: newFakeIntegration(pbxs...), Runner: r, Logger: testLogger(t),
		PublicURL: "https://pbx.example.com", PollInterval: 24 * time.Hour}
	s.init()
	return s
}

func TestValidationHandshake(t *testing.T) {
	s := newWebhookService(t, &fakeRunner{}, "a")
	h := s.Handler()
	for _, path := range []string{WebhookPath, LifecyclePath} {
		token := `Validation: Testing client application reachability <script>alert(1)</script> & more`
		req := httptest.NewRequest(http.MethodPost, path+"?validationToken="+strings.ReplaceAll(
			strings.ReplaceAll(strings.ReplaceAll(token, "&", "%26"), " ", "+"), "<", "%3C"), strings.NewReader(""))
		req.Header.Set("Content-Type", "text/plain; charset=utf-8")
		start := time.Now()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if el := time.Since(start); el > time.Second {
			t.Errorf("%s: handshake took %s", path, el)
		}
		if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain") || rec.Body.String() != token {
			t.Errorf("%s: handshake = %d %q %q", path, rec.Code, rec.Header().Get("Content-Type"), rec.Body.String())
		}
		if rec.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no nosniff on the echoed token", path)
		}
	}
	if s.Stats().Validations != 2 {
		t.Errorf("validations = %d", s.Stats().Validations)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, WebhookPath, nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET = %d", rec.Code)
	}
}

// A change notification reaches the Runner before the 202: by the time the
// handler answers, the sync is asked for. A collection of many items asks
// once per PBX.
func TestNotificationQueuedBeforeAck(t *testing.T) {
	r := &queueRunner{}
	s := newWebhookService(t, nil, "a", "b")
	s.Runner = r
	addSub(t, s, "a", "sub-a", "state-a")
	addSub(t, s, "b", "sub-b", "state-b")
	h := s.Handler()
	if rec := post(h, WebhookPath, notification("sub-a", "state-a")); rec.Code != http.StatusAccepted {
		t.Fatalf("notification = %d %s", rec.Code, rec.Body)
	}
	if got := r.triggerList(); len(got) != 1 || got[0].PBX != "a" || got[0].Reason != ReasonChange {
		t.Fatalf("after the 202: triggers %v, want one change sync of a", got)
	}
	items := []string{notification("sub-b", "state-b")}
	for range 10 {
		items = append(items, notification("sub-a", "state-a"))
	}
	if rec := post(h, WebhookPath, items...); rec.Code != http.StatusAccepted {
		t.Fatalf("batch = %d", rec.Code)
	}
	if got := r.triggerList(); len(got) != 3 {
		t.Fatalf("after a batch of 11 items for two PBXs: %d triggers (%v), want 1 + 2", len(got), got)
	}
	if st := s.Stats(); st.Accepted != 12 || st.Triggers != 3 {
		t.Errorf("stats = %+v", st)
	}
}

// When the Runner cannot queue the work, the answer is 503 (Graph delivers
// again), not 202; the redelivery, once the queue works, is accepted.
func TestNotificationNotQueuedAnswers503(t *testing.T) {
	r := &queueRunner{err: errors.New("database down")}
	s := newWebhookService(t, nil, "a")
	s.Runner = r
	addSub(t, s, "a", "sub-a", "state-a")
	h := s.Handler()
	for _, tc := range []struct{ path, item string }{
		{WebhookPath, notification("sub-a", "state-a")},
		{LifecyclePath, lifecycleItem("sub-a", "state-a", "missed")},
		{LifecyclePath, lifecycleItem("sub-a", "state-a", "reauthorizationRequired")},
	} {
		rec := post(h, tc.path, tc.item)
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
			t.Errorf("%s with the queue down = %d (Retry-After %q), want 503 with Retry-After", tc.item, rec.Code, rec.Header().Get("Retry-After"))
		}
	}
	if st := s.Stats(); st.Unqueued != 3 {
		t.Errorf("unqueued = %d, want 3", st.Unqueued)
	}
	r.setErr(nil)
	if rec := post(h, WebhookPath, notification("sub-a", "state-a")); rec.Code != http.StatusAccepted {
		t.Fatalf("redelivery = %d", rec.Code)
	}
	if got := r.triggerList(); len(got) != 1 {
		t.Errorf("triggers %v, want the redelivered one", got)
	}
}

// A Runner that hangs (a stuck database) gets ackTimeout, then the answer is
// 503: Graph wants an answer within 3 s.
func TestNotificationAckBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &queueRunner{block: true}
		s := newWebhookService(t, nil, "a")
		s.Runner = r
		addSub(t, s, "a", "sub-a", "state-a")
		start := time.Now()
		rec := post(s.Handler(), WebhookPath, notification("sub-a", "state-a"))
		if el := time.Since(start); rec.Code != http.StatusServiceUnavailable || el != ackTimeout {
			t.Errorf("hanging queue: %d after %s, want 503 after %s", rec.Code, el, ackTimeout)
		}
	})
}

// Lifecycle notifications become subscription checks (queued before the
// 202); missed and subscriptionRemoved also ask for a catch-up sync.
func TestLifecycleEventsQueued(t *testing.T) {
	r := &queueRunner{}
	s := newWebhookService(t, nil, "a")
	s.Runner = r
	addSub(t, s, "a", "sub-a", "state-a")
	h := s.Handler()
	for _, tc := range []struct {
		event, reason string
	}{
		{"reauthorizationRequired", ""},
		{"missed", ReasonMissed},
		{"subscriptionRemoved", ReasonResubscribed},
		{"somethingNew", ""},
	} {
		r.reset()
		if rec := post(h, LifecyclePath, lifecycleItem("sub-a", "state-a", tc.event)); rec.Code != http.StatusAccepted {
			t.Fatalf("%s = %d", tc.event, rec.Code)
		}
		wantChecks := 1
		if tc.event == "somethingNew" {
			wantChecks = 0
		}
		if got := r.checkList(); len(got) != wantChecks || wantChecks == 1 && got[0] != "a/sub-a" {
			t.Errorf("%s: checks %v, want %d of a/sub-a", tc.event, got, wantChecks)
		}
		got := r.triggerList()
		if tc.reason == "" && len(got) != 0 || tc.reason != "" && (len(got) != 1 || got[0].Reason != tc.reason) {
			t.Errorf("%s: triggers %v, want reason %q", tc.event, got, tc.reason)
		}
	}
}

func TestForgedNotificationsRejected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &fakeRunner{}
		s := newWebhookService(t, r, "a")
		addSub(t, s, "a", "sub-a", "state-a")
		h := s.Handler()
		stop := run(t, s)
		defer stop()
		for range 20 {
			if rec := post(h, WebhookPath, notification("sub-a", "state-A")); rec.Code != http.StatusForbidden {
				t.Fatalf("wrong clientState = %d", rec.Code)
			}
			if rec := post(h, WebhookPath, notification("sub-x", "state-a")); rec.Code != http.StatusForbidden {
				t.Fatalf("unknown subscription = %d", rec.Code)
			}
			post(h, LifecyclePath, lifecycleItem("sub-a", "", "missed"))
			post(h, WebhookPath, notification("sub-a", ""))
		}
		if rec := post(h, WebhookPath, `{"value":`); rec.Code != http.StatusBadRequest {
			t.Errorf("malformed = %d", rec.Code)
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		if n := r.count("", ReasonChange) + r.count("", ReasonMissed) + r.count("", ReasonResubscribed); n != 0 {
			t.Errorf("forged notifications triggered %d syncs: %v", n, r.list())
		}
		if st := s.Stats(); st.Rejected != 80 || st.Accepted != 0 || st.Malformed != 1 {
			t.Errorf("stats = %+v", st)
		}
	})
}

func TestLifecycleMissedTriggersCatchUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &fakeRunner{}
		s := newWebhookService(t, r, "a")
		addSub(t, s, "a", "sub-a", "state-a")
		h := s.Handler()
		stop := run(t, s)
		defer stop()
		if rec := post(h, LifecyclePath, lifecycleItem("sub-a", "state-a", "missed")); rec.Code != http.StatusAccepted {
			t.Fatalf("lifecycle = %d", rec.Code)
		}
		synctest.Wait()
		if n := r.count("a", ReasonMissed); n != 1 {
			t.Errorf("missed -> %d catch-up syncs, want 1 at once (%v)", n, r.list())
		}
	})
}

// A flood of notifications (real and forged) leaves the memory flat:
// nothing grows per notification here (the Runner debounces per window).
func TestFloodStaysBounded(t *testing.T) {
	r := &countingRunner{}
	s := newWebhookService(t, nil, "a", "b")
	s.Runner = r
	addSub(t, s, "a", "sub-a", "state-a")
	addSub(t, s, "b", "sub-b", "state-b")
	h := s.Handler()
	bodies := []string{
		`{"value":[` + notification("sub-a", "state-a") + `]}`,
		`{"value":[` + notification("sub-b", "state-b") + `]}`,
		`{"value":[` + notification("sub-a", "forged") + `]}`,
		`{"value":[` + notification("sub-unknown", "x") + `]}`,
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const n = 100_000
	start := time.Now()
	for i := range n {
		req := httptest.NewRequest(http.MethodPost, WebhookPath, strings.NewReader(bodies[i%len(bodies)]))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if i%len(bodies) < 2 && rec.Code != http.StatusAccepted {
			t.Fatalf("notification %d = %d", i, rec.Code)
		}
	}
	elapsed := time.Since(start)
	runtime.GC()
	runtime.ReadMemStats(&after)
	growth := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d notifications in %s (%.1f µs each); heap %d -> %d bytes (growth %d)", n, elapsed,
		float64(elapsed.Microseconds())/n, before.HeapAlloc, after.HeapAlloc, growth)
	if growth > 1<<20 {
		t.Errorf("heap grew by %d bytes over %d notifications, want under 1 MiB", growth, n)
	}
	if st := s.Stats(); st.Accepted != n/2 || st.Rejected != n/2 || st.Triggers != n/2 || r.n.Load() != n/2 {
		t.Errorf("stats = %+v, runner asked %d times", st, r.n.Load())
	}
}

func TestMetrics(t *testing.T) {
	s := newWebhookService(t, &fakeRunner{}, "a")
	addSub(t, s, "a", "sub-a", "state-a")
	post(s.Handler(), WebhookPath, notification("sub-a", "nope"))
	post(s.Handler(), WebhookPath, notification("sub-a", "state-a"))
	reg := prometheus.NewRegistry()
	reg.MustRegister(s)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "/" + l.GetValue()
			}
			got[key] = m.GetCounter().GetValue()
		}
	}
	want := map[string]float64{
		"switchboard_webhook_notifications_total/accepted": 1, "switchboard_webhook_notifications_total/rejected": 1,
		"switchboard_webhook_notifications_total/malformed": 0, "switchboard_webhook_notifications_total/validation": 0, "switchboard_webhook_notifications_total/unqueued": 0,
		"switchboard_schedule_triggers_total": 1,
	}
	if !maps.Equal(got, want) {
		t.Errorf("metrics = %v, want %v", got, want)
	}
}
