package idp

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// fixtureDir holds Microsoft's documented payloads (shared with the Graph side).
const fixtureDir = "../../../testdata/graph-fixtures"

func readFixture(t *testing.T, name string) map[string]any {
	t.Helper()
	path := filepath.Join(fixtureDir, name)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("fixture %s missing (testdata/graph-fixtures at the repository root): %v", path, err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("fixture %s: %v", path, err)
	}
	return m
}

func jsonType(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "bool"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	case nil:
		return "null"
	}
	return "?"
}

// sameShape checks that got has every key of want with the same JSON type, and
// that any key got adds is in extra (fields Microsoft sends that the doc sample
// leaves out).
func sameShape(t *testing.T, what string, want, got map[string]any, extra ...string) {
	t.Helper()
	for k, wv := range want {
		gv, ok := got[k]
		if !ok {
			t.Errorf("%s: key %q missing", what, k)
			continue
		}
		if jsonType(wv) != jsonType(gv) {
			t.Errorf("%s: key %q is %s, fixture has %s", what, k, jsonType(gv), jsonType(wv))
		}
		if wa, ok := wv.([]any); ok && len(wa) > 0 {
			if ga, _ := gv.([]any); len(ga) > 0 && jsonType(ga[0]) != jsonType(wa[0]) {
				t.Errorf("%s: elements of %q are %s, fixture has %s", what, k, jsonType(ga[0]), jsonType(wa[0]))
			}
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok && !slices.Contains(extra, k) {
			t.Errorf("%s: unexpected key %q", what, k)
		}
	}
}

func TestWireFormatMatchesFixtures(t *testing.T) {
	b := newBundle(t)

	_, body := b.get(t, b.url("common", "/v2.0/.well-known/openid-configuration"))
	var disc map[string]any
	if err := json.Unmarshal([]byte(body), &disc); err != nil {
		t.Fatal(err)
	}
	sameShape(t, "openid-configuration", readFixture(t, "identity/openid-configuration-common-v2.json"), disc,
		"response_modes_supported", "id_token_signing_alg_values_supported", "response_types_supported",
		"scopes_supported", "issuer", "request_uri_parameter_supported", "device_authorization_endpoint",
		"http_logout_supported", "frontchannel_logout_supported", "end_session_endpoint", "claims_supported",
		"kerberos_endpoint", "tenant_region_scope", "cloud_instance_name", "cloud_graph_host_name", "msgraph_host", "rbac_url")

	s, cc := b.postToken(t, b.tokenURL(), url.Values{"grant_type": {"client_credentials"}, "client_id": {syncID},
		"client_secret": {syncSecret}, "scope": {"https://graph.microsoft.com/.default"}})
	if s != http.StatusOK {
		t.Fatalf("%d %v", s, cc)
	}
	sameShape(t, "client credentials", readFixture(t, "identity/client-credentials-token-success.json"), cc, "ext_expires_in")
	sameShape(t, "access token header", readFixture(t, "identity/access-token-jwt-header.json"), jwtPart(t, cc["access_token"].(string), 0))
	if h := jwtPart(t, cc["access_token"].(string), 0); h["alg"] != "RS256" || h["typ"] != "JWT" || h["kid"] != h["x5t"] {
		t.Errorf("access token header %v", h)
	}

	code := b.code(t, authParams(syncID, redirect, "openid offline_access https://graph.microsoft.com/User.Read"))
	s, ac := b.postToken(t, b.tokenURL(), url.Values{"grant_type": {"authorization_code"}, "client_id": {syncID},
		"client_secret": {syncSecret}, "code": {code}, "redirect_uri": {redirect}})
	if s != http.StatusOK {
		t.Fatalf("%d %v", s, ac)
	}
	sameShape(t, "auth code redeem", readFixture(t, "identity/auth-code-redeem-token-success.json"), ac, "ext_expires_in")
	if h := jwtPart(t, ac["id_token"].(string), 0); h["alg"] != "RS256" || h["typ"] != "JWT" || h["kid"] == nil {
		t.Errorf("id token header %v", h)
	}

	refresh := url.Values{"grant_type": {"refresh_token"}, "client_id": {syncID}, "client_secret": {syncSecret},
		"refresh_token": {ac["refresh_token"].(string)}}
	s, rt := b.postToken(t, b.tokenURL(), refresh)
	if s != http.StatusOK {
		t.Fatalf("%d %v", s, rt)
	}
	sameShape(t, "refresh", readFixture(t, "identity/auth-code-refresh-token-success.json"), rt, "ext_expires_in")

	// Documented invalid_scope errors, on redemption and on refresh: same keys,
	// same message text up to the trace lines.
	code = b.code(t, authParams(syncID, redirect, "openid"))
	for name, form := range map[string]url.Values{
		"identity-auth-code-redeem-invalid-scope.json": {"grant_type": {"authorization_code"}, "client_id": {syncID},
			"client_secret": {syncSecret}, "code": {code}, "redirect_uri": {redirect},
			"scope": {"https://foo.microsoft.com/mail.read"}},
		"identity-auth-code-refresh-invalid-scope.json": {"grant_type": {"refresh_token"}, "client_id": {syncID},
			"client_secret": {syncSecret}, "refresh_token": {rt["refresh_token"].(string)},
			"scope": {"https://foo.microsoft.com/mail.read"}},
	} {
		want := readFixture(t, "errors/"+name)
		s, got := b.postToken(t, b.tokenURL(), form)
		if s != http.StatusBadRequest {
			t.Errorf("%s: status %d", name, s)
		}
		sameShape(t, name, want, got, "error_uri")
		wd, gd := want["error_description"].(string), got["error_description"].(string)
		head := func(s string) string { return s[:max(0, indexOr(s, "\r\n"))] }
		if head(wd) != head(gd) {
			t.Errorf("%s: description\n got %q\nwant %q", name, head(gd), head(wd))
		}
	}
}

func indexOr(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return len(s)
}
