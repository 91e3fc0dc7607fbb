// Package apitest holds helpers that tests of several packages share when
// they drive the service over real HTTP: a JSON call with an admin bearer
// token, and connecting a PBX to a simulated tenant the way an administrator
// does. Only tests import it.
package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/switchboard-pbx/switchboard/internal/integration"
)

// Call sends method path with body as JSON (a string or []byte is sent as
// is) and the bearer token, and decodes a JSON object answer (nil when the
// answer is not one). It also returns the raw body.
func Call(t testing.TB, baseURL, token, method, path string, body any) (int, map[string]any, []byte) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewReader([]byte(b))
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(context.WithoutCancel(t.Context()), method, baseURL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return res.StatusCode, out, raw
}

// ConnectSim connects pbx to a simulated tenant: it starts the connect and
// follows the authorize URL, where the simulated identity platform signs in
// at once and redirects to the service's callback. It fails the test unless
// the PBX is connected afterwards.
func ConnectSim(t testing.TB, svc *integration.Service, pbx string, in integration.ConnectInput) {
	t.Helper()
	ctx := context.WithoutCancel(t.Context())
	u, err := svc.StartConnect(ctx, pbx, "test", "test", in, "")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !svc.Connected(ctx, pbx) {
		t.Fatalf("not connected after the sign-in: %d %.300s", res.StatusCode, b)
	}
}
