package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/switchboard-pbx/switchboard/internal/api"
	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/integration"
	"github.com/switchboard-pbx/switchboard/internal/pbx"
	"github.com/switchboard-pbx/switchboard/internal/schedule"
	"github.com/switchboard-pbx/switchboard/internal/secret"
	"github.com/switchboard-pbx/switchboard/internal/sqlstore"
)

func TestScheduleEndpoints(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := sqlstore.Open(t.Context(), "sqlite:"+filepath.Join(t.TempDir(), "sb.db"), logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.EnsurePBX(t.Context(), directory.PBX{ID: directory.DefaultPBX, Name: "Default", MaxExtensions: 10, TimeZone: "Europe/Berlin"}); err != nil {
		t.Fatal(err)
	}
	keys, _ := secret.NewKeyring(secret.NewKey())
	ps := &pbx.Service{Store: st, Keys: keys, Logger: logger}
	in := &integration.Service{Store: st, PBX: ps, Keys: keys, Logger: logger}
	sched := &schedule.Service{Store: st, Integration: in, Logger: logger}
	s := &api.Server{Store: st, PBX: ps, Keys: keys, Logger: logger, AdminToken: token, Integration: in, Schedule: sched,
		Sessions: &api.Sessions{Key: []byte("k"), Store: st}}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	do := func(method string, body any) (int, map[string]any) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, _ := http.NewRequestWithContext(t.Context(), method, srv.URL+"/api/v1/integration/schedule", rd)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(res.Body).Decode(&out)
		return res.StatusCode, out
	}
	code, got := do("GET", nil)
	if code != 200 || got["frequency"] != "daily" || got["time"] != "00:30" || got["timeZone"] != "Europe/Berlin" {
		t.Fatalf("GET default = %d %v", code, got)
	}
	if cd, _ := got["changeDetection"].(map[string]any); cd["mode"] != schedule.ModeOff || got["nextSyncAt"] != nil {
		t.Errorf("not connected: changeDetection %v, nextSyncAt %v", cd, got["nextSyncAt"])
	}
	code, got = do("PUT", map[string]any{"frequency": "weekly", "days": []string{"saturday"}, "time": "23:59", "timeZone": "America/New_York"})
	if code != 200 || got["frequency"] != "weekly" || got["timeZone"] != "America/New_York" {
		t.Fatalf("PUT = %d %v", code, got)
	}
	// A GET body can be sent back as is.
	code, again := do("GET", nil)
	if code != 200 {
		t.Fatal(code)
	}
	if code, got = do("PUT", again); code != 200 {
		t.Errorf("PUT of a GET body = %d %v", code, got)
	}
	for _, tc := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{"frequency": "hourly", "time": "00:30"}, "frequency"},
		{map[string]any{"frequency": "weekly", "time": "00:30"}, "days"},
		{map[string]any{"frequency": "daily", "time": "25:00"}, "time"},
		{map[string]any{"frequency": "daily", "time": "00:30", "timeZone": "Nowhere/Land"}, "timeZone"},
		{map[string]any{"frequency": "daily", "time": "00:30", "cron": "* * * * *"}, "cron"},
		{map[string]any{"frequency": "daily", "time": 30}, "time"},
	} {
		code, got := do("PUT", tc.body)
		e, _ := got["error"].(map[string]any)
		if code != 400 || e["field"] != tc.field {
			t.Errorf("PUT %v = %d %v, want 400 on %s", tc.body, code, got, tc.field)
		}
	}
	if _, got := do("GET", nil); got["frequency"] != "weekly" {
		t.Errorf("a refused PUT changed the schedule: %v", got)
	}
}
