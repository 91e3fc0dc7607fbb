package graph

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

const fixtureDir = "../../testdata/graph-fixtures"

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtureDir, name))
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	return b
}

func decodePage[T any](t *testing.T, b []byte) *Page[T] {
	t.Helper()
	p, err := DecodePage[T](b)
	if err != nil {
		t.Fatalf("decode page: %v", err)
	}
	return p
}

func decodeOne[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return v
}

func eq[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func prop(t *testing.T, u User, name, want string) {
	t.Helper()
	got, ok := u.Property(name)
	if want == "" {
		if ok {
			t.Errorf("Property(%q) = %q, want absent", name, got)
		}
		return
	}
	if !ok || got != want {
		t.Errorf("Property(%q) = %q, %v; want %q", name, got, ok, want)
	}
}

// fixtureTests holds one check per fixture file; TestFixturesAllCovered makes sure no
// file is left out.
var fixtureTests = map[string]func(t *testing.T, b []byte){
	// --- users ---
	"users/user-get-01-by-id.json": checkAdele,
	"users/user-get-02-me.json":    checkAdele,
	"users/user-get-03-select-identities.json": func(t *testing.T, b []byte) {
		u := decodeOne[User](t, b)
		eq(t, "id", u.ID, "")
		eq(t, "displayName", u.DisplayName, "Adele Vance")
		prop(t, u, "postalCode", "98004")
		raw, ok := u.RawProperty("identities")
		if !ok || !bytes.Contains(raw, []byte("issuerAssignedId")) {
			t.Errorf("identities raw = %s", raw)
		}
	},
	"users/user-get-04-schema-extension.json": func(t *testing.T, b []byte) {
		u := decodeOne[User](t, b)
		prop(t, u, "ext55gb1l09_msLearnCourses.courseName", "Introduction to Microsoft Graph")
		prop(t, u, "ext55gb1l09_msLearnCourses.courseId", "1")
		prop(t, u, "EXT55GB1L09_MSLEARNCOURSES.coursetype", "Developer")
	},
	"users/user-get-06-custom-security-attributes-null.json": func(t *testing.T, b []byte) {
		u := decodeOne[User](t, b)
		prop(t, u, "customSecurityAttributes", "")
		if _, ok := u.RawProperty("customSecurityAttributes"); ok {
			t.Error("null property reported present")
		}
	},
	"users/user-list-01-all-users.json": func(t *testing.T, b []byte) {
		p := decodePage[User](t, b)
		if len(p.Items) != 2 {
			t.Fatalf("items = %d", len(p.Items))
		}
		eq(t, "nextLink", p.NextLink, "")
		eq(t, "count", p.Count, -1)
		a, m := p.Items[0], p.Items[1]
		eq(t, "id0", a.ID, "6ea91a8d-e32e-41a1-b7bd-d2d185eed0e0")
		eq(t, "givenName null", a.GivenName, "")
		eq(t, "businessPhone empty", a.BusinessPhone(), "")
		eq(t, "mail", a.Mail, "Adams@contoso.com")
		eq(t, "id1", m.ID, "4562bcc8-c436-4f95-b7c0-4f8ce89dca5e")
		eq(t, "businessPhone", m.BusinessPhone(), "425-555-0100")
		eq(t, "mobile", m.MobilePhone, "425-555-0101")
		eq(t, "mail null", m.Mail, "")
		if !m.Enabled() {
			t.Error("accountEnabled not returned must count as enabled")
		}
		prop(t, m, "preferredLanguage", "en-US")
		prop(t, m, "officeLocation", "")
	},
	"users/user-list-02-signin-name-filter.json": func(t *testing.T, b []byte) {
		p := decodePage[User](t, b)
		eq(t, "len", len(p.Items), 1)
		eq(t, "id", p.Items[0].ID, "87d349ed-44d7-43e1-9a83-5f2406dee5bd")
		eq(t, "name", p.Items[0].DisplayName, "John Smith")
	},
	"users/user-list-04-startswith-top-count.json": func(t *testing.T, b []byte) {
		p := decodePage[User](t, b)
		eq(t, "count", p.Count, 1)
		u := p.Items[0]
		eq(t, "upn", u.UserPrincipalName, "a_contoso.com#EXT#@microsoft.onmicrosoft.com")
		prop(t, u, "mailNickname", "a_contoso.com#EXT#")
		eq(t, "id", u.ID, "")
	},
	"users/user-list-05-endswith-count.json": func(t *testing.T, b []byte) {
		p := decodePage[User](t, b)
		eq(t, "count", p.Count, 1)
		eq(t, "id", p.Items[0].ID, "e8b753b5-4117-464e-9a08-713e1ff266b3")
		eq(t, "jobTitle", p.Items[0].JobTitle, "Designer")
	},
	"users/user-list-06-search-count.json": func(t *testing.T, b []byte) {
		p := decodePage[User](t, b)
		eq(t, "count", p.Count, 7)
		eq(t, "len", len(p.Items), 1)
		eq(t, "upn", p.Items[0].UserPrincipalName, "oscarward@contoso.com")
	},
	"users/user-list-07-search-or-count.json": func(t *testing.T, b []byte) {
		p := decodePage[User](t, b)
		eq(t, "count", p.Count, 7)
		eq(t, "len", len(p.Items), 2)
		eq(t, "odd mail kept", p.Items[1].Mail, "'contosoadmin1@fabrikam.com")
	},
	"users/user-list-08-b2b-guests-count.json": func(t *testing.T, b []byte) {
		p := decodePage[User](t, b)
		eq(t, "count", p.Count, 2)
		eq(t, "id", p.Items[0].ID, "39807bd1-3dde-48f3-8165-81ddd4e46de0")
		if raw, ok := p.Items[0].RawProperty("identities"); !ok || !bytes.Contains(raw, []byte("#EXT#@cntoso.com")) {
			t.Errorf("identities = %s", raw)
		}
	},
	"users/user-list-09-assigned-license-filter.json": func(t *testing.T, b []byte) {
		p := decodePage[User](t, b)
		eq(t, "len", len(p.Items), 2)
		eq(t, "id", p.Items[1].ID, "81a133c2-bdf2-4e67-8755-7264366b04ee")
		if _, ok := p.Items[0].RawProperty("assignedLicenses"); !ok {
			t.Error("assignedLicenses missing from raw")
		}
	},
	"users/user-list-11-signin-activity.json": func(t *testing.T, b []byte) {
		p := decodePage[User](t, b)
		eq(t, "len", len(p.Items), 2)
		prop(t, p.Items[0], "signInActivity.lastNonInteractiveSignInDateTime", "0001-01-01T00:00:00Z")
		prop(t, p.Items[0], "signInActivity.lastNonInteractiveSignInRequestId", "")
		prop(t, p.Items[1], "signInActivity.lastSignInDateTime", "2021-07-29T15:53:27Z")
	},

	// --- groups ---
	"groups/group-list-01-all-groups.json": func(t *testing.T, b []byte) {
		p := decodePage[Group](t, b)
		eq(t, "len", len(p.Items), 2)
		g0, g1 := p.Items[0], p.Items[1]
		eq(t, "id", g0.ID, "45b7d2e7-b882-4a80-ba97-10b7a63b8fa4")
		eq(t, "unified", g0.IsUnified(), true)
		eq(t, "security", g0.IsSecurity(), false)
		eq(t, "created", g0.CreatedDateTime.Time, time.Date(2018, 12, 22, 2, 21, 5, 0, time.UTC))
		eq(t, "unified1", g1.IsUnified(), false)
		eq(t, "mailEnabled", *g1.MailEnabled, true)
		eq(t, "securityEnabled", *g1.SecurityEnabled, false)
		eq(t, "visibility null", g1.Visibility, "")
	},
	"groups/group-list-02-filter-license-errors-count.json": func(t *testing.T, b []byte) {
		p := decodePage[Group](t, b)
		eq(t, "count", p.Count, 2)
		eq(t, "id1", p.Items[1].ID, "22222222-3333-4444-5555-666666666666")
	},
	"groups/group-list-04-startswith-top-count.json": func(t *testing.T, b []byte) {
		p := decodePage[Group](t, b)
		eq(t, "count", p.Count, 1)
		eq(t, "nick", p.Items[0].MailNickname, "a241")
	},
	"groups/group-list-05-search-count.json": func(t *testing.T, b []byte) {
		p := decodePage[Group](t, b)
		eq(t, "count", p.Count, 1396)
		eq(t, "len", len(p.Items), 2)
		eq(t, "desc", p.Items[1].Description, "Video Production")
	},
	"groups/group-list-06-dynamic-security-groups.json": func(t *testing.T, b []byte) {
		p := decodePage[Group](t, b)
		g := p.Items[0]
		eq(t, "id", g.ID, "e9f4a701-e7b5-4401-a0ca-5bd5f3cdcf4b")
		if !strings.Contains(g.MembershipRule, `user.userType -contains "Guest"`) {
			t.Errorf("membershipRule = %q", g.MembershipRule)
		}
	},
	"groups/group-list-07-licensed-expand-members.json": func(t *testing.T, b []byte) {
		p := decodePage[Group](t, b)
		eq(t, "members0", len(p.Items[0].Members), 2)
		eq(t, "member id", p.Items[0].Members[1].ID, "49e373b6-4717-40c6-ad43-843c45a258f0")
		eq(t, "member is user", p.Items[0].Members[0].IsUser(), true)
		eq(t, "members1", len(p.Items[1].Members), 0)
	},
	"groups/group-list-members-01-direct.json": func(t *testing.T, b []byte) {
		p := decodePage[DirectoryObject](t, b)
		eq(t, "id", p.Items[0].ID, "11111111-2222-3333-4444-555555555555")
		eq(t, "mail", p.Items[0].Mail, "user1@contoso.com")
	},
	"groups/group-list-members-04-cast-user-search-count.json": func(t *testing.T, b []byte) {
		p := decodePage[User](t, b)
		eq(t, "count", p.Count, 7)
		eq(t, "name", p.Items[1].DisplayName, "Preston Morales")
	},
	"groups/group-list-members-05-filter-startswith-count.json": func(t *testing.T, b []byte) {
		p := decodePage[DirectoryObject](t, b)
		eq(t, "count", p.Count, 76)
		eq(t, "id absent", p.Items[0].ID, "")
	},
	"groups/group-list-transitivemembers-01.json": func(t *testing.T, b []byte) {
		p := decodePage[DirectoryObject](t, b)
		d := p.Items[0]
		eq(t, "isUser", d.IsUser(), true)
		u, err := d.AsUser()
		if err != nil {
			t.Fatal(err)
		}
		eq(t, "user id", u.ID, "11111111-2222-3333-4444-555555555555")
		eq(t, "user mail", u.Mail, "group1@contoso.com")
	},
	"groups/group-list-transitivemembers-04-cast-user-search-count.json": func(t *testing.T, b []byte) {
		p := decodePage[User](t, b)
		eq(t, "count", p.Count, 7)
		eq(t, "id", p.Items[0].ID, "11111111-2222-3333-4444-555555555555")
	},
	"groups/group-list-transitivemembers-05-cast-user-filter-count.json": func(t *testing.T, b []byte) {
		p := decodePage[User](t, b)
		eq(t, "count", p.Count, 76)
		eq(t, "mail", p.Items[0].Mail, "AADContoso_Users@contoso.com")
	},

	// --- delta ---
	"delta/user-delta-api-01-default-properties.json": func(t *testing.T, b []byte) {
		p := decodePage[User](t, b)
		eq(t, "nextLink", p.NextLink, "https://graph.microsoft.com/v1.0/users/delta?$skiptoken=pqwSUjGYvb3jQpbwVAwEL7yuI3dU1LecfkkfLPtnIjsXoYQp_dpA3cNJWc")
		eq(t, "deltaLink", p.DeltaLink, "")
		eq(t, "id", p.Items[0].ID, "87d349ed-44d7-43e1-9a83-5f2406dee5bd")
		eq(t, "removed", p.Items[0].IsRemoved(), false)
	},
	"delta/user-delta-api-02-select-three.json": func(t *testing.T, b []byte) {
		p := decodePage[User](t, b)
		eq(t, "id absent", p.Items[0].ID, "")
		eq(t, "mobile", p.Items[0].MobilePhone, "+1 425 555 0109")
		eq(t, "nextLink set", p.NextLink != "", true)
	},
	"delta/group-delta-api-01-default-properties.json": func(t *testing.T, b []byte) {
		p := decodePage[Group](t, b)
		eq(t, "nextLink", p.NextLink, "https://graph.microsoft.com/v1.0/groups/delta?$skiptoken=pqwSUjGYvb3jQpbwVAwEL7yuI3dU1LecfkkfLPtnIjvY1FSSc_")
		g := p.Items[0]
		eq(t, "unified", g.IsUnified(), true)
		eq(t, "members@delta", len(g.MembersDelta), 2)
		eq(t, "member id", g.MembersDelta[0].ID, "693acd06-2877-4339-8ade-b704261fe7a0")
		eq(t, "member type", g.MembersDelta[0].ODataType, "#microsoft.graph.user")
		eq(t, "member removed", g.MembersDelta[1].Removed == nil, true)
	},
	"delta/group-delta-api-02-select-three.json": func(t *testing.T, b []byte) {
		p := decodePage[Group](t, b)
		eq(t, "description null", p.Items[0].Description, "")
		eq(t, "nick", p.Items[0].MailNickname, "allcompany@contoso.com")
	},
	"delta/contact-delta-api-01-select-maxpagesize.json": func(t *testing.T, b []byte) {
		p := decodePage[Contact](t, b)
		eq(t, "nextLink", p.NextLink, "https://graph.microsoft.com/v1.0/me/contactfolders/{id}/contacts/delta?$skiptoken={_skipToken_}")
		c := p.Items[0]
		eq(t, "birthday", c.Birthday.Time, time.Date(2016, 10, 19, 10, 37, 0, 0, time.UTC))
		eq(t, "fileAs", c.FileAs, "fileAs-value")
	},

	// --- contacts ---
	"contacts/contactfolder-list-contacts-01.json": checkPlaceholderContact,
	"contacts/user-list-contacts-01.json":          checkPlaceholderContact,
	"contacts/user-list-contactfolders-01.json": func(t *testing.T, b []byte) {
		p := decodePage[ContactFolder](t, b)
		f := p.Items[0]
		eq(t, "name", f.DisplayName, "Contacts")
		eq(t, "id", f.ID, "AQMkADIxYjJiYgEzLTFmNjYALTRjYTMtODA1NC0wZDkxZGNmOTcxNTQALgAAA8RJzXYaLKZPlmn0ge0edZkBADa3qi2IMXRNg6RwQSHe_F8AAAIBDgAAAA==")
		eq(t, "parent", strings.HasSuffix(f.ParentFolderID, "AAAIBCAAAAA=="), true)
	},

	// --- presence ---
	"presence/getpresencesbyuserid-01.json": func(t *testing.T, b []byte) {
		p := decodePage[Presence](t, b)
		eq(t, "len", len(p.Items), 2)
		eq(t, "p0", p.Items[0].Availability+"/"+p.Items[0].Activity, "Busy/InAMeeting")
		eq(t, "p1 id", p.Items[1].ID, "66825e03-7ef5-42da-9069-724602c31f6b")
		eq(t, "p1", p.Items[1].Availability+"/"+p.Items[1].Activity, "Away/Away")
	},
	"presence/presence-get-01-me.json": func(t *testing.T, b []byte) {
		p := decodeOne[Presence](t, b)
		eq(t, "id", p.ID, "fa8bf3dc-eca7-46b7-bad1-db199b62afc3")
		eq(t, "state", p.Availability+"/"+p.Activity, "Available/Available")
	},
	"presence/presence-get-02-user.json": func(t *testing.T, b []byte) {
		p := decodeOne[Presence](t, b)
		eq(t, "state", p.Availability+"/"+p.Activity, "DoNotDisturb/Presenting")
	},

	// --- notifications ---
	"notifications/presence-01-basic-notification.json": func(t *testing.T, b []byte) {
		c, err := DecodeChangeNotifications(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		n := c.Value[0]
		eq(t, "changeType", n.ChangeType, "updated")
		eq(t, "resource", n.Resource, "communications/presences/{id}")
		eq(t, "odata type", n.ResourceData.ODataType, "#microsoft.graph.presence")
		eq(t, "expiry", n.SubscriptionExpirationDateTime.Time, time.Date(2023, 9, 14, 10, 0, 0, 0, time.UTC))
		eq(t, "org", n.OrganizationID, "{Organization/Tenant id}")
	},
	"notifications/presence-03-decrypted-resource-data.json": func(t *testing.T, b []byte) {
		p := decodeOne[Presence](t, b)
		eq(t, "odata id", p.ODataID, "users/{User Id}/presence")
		eq(t, "availability placeholder", p.Availability, "{Availability}")
	},
	"notifications/webhook-01-change-notification-message-created.json": func(t *testing.T, b []byte) {
		c, err := DecodeChangeNotifications(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		n := c.Value[0]
		eq(t, "id", n.ID, "lsgTZMr9KwAAA")
		eq(t, "tenant", n.TenantID, "84bd8158-6d4d-4958-8b9f-9d6445542f95")
		eq(t, "clientState", n.ClientState, "secretClientValue")
		eq(t, "etag", n.ResourceData.ODataEtag, `W/"CQAAABYAAADkrWGo7bouTKlsgTZMr9KwAAAUWRHf"`)
		eq(t, "type", n.ResourceData.ODataType, "#Microsoft.Graph.Message")
		eq(t, "expiry", n.SubscriptionExpirationDateTime.Time, time.Date(2016, 3, 19, 22, 11, 9, 952e6, time.UTC))
	},
	"notifications/lifecycle-01-structure-generic.json": func(t *testing.T, b []byte) {
		c, err := DecodeLifecycleNotifications(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		n := c.Value[0]
		eq(t, "event placeholder kept", n.LifecycleEvent, "subscriptionRemoved or missed or reauthorizationRequired")
		eq(t, "sub", n.SubscriptionID, "<subscription_guid>")
		eq(t, "expiry", n.SubscriptionExpirationDateTime.Time, time.Date(2019, 3, 20, 11, 0, 0, 0, time.UTC))
	},
	"notifications/subscription-post-01-created.json": func(t *testing.T, b []byte) {
		s := decodeOne[Subscription](t, b)
		eq(t, "id", s.ID, "7f105c7d-2dc5-4530-97cd-4e7ae6534c07")
		eq(t, "changeType", s.ChangeType, "created")
		eq(t, "tls", s.LatestSupportedTLSVersion, "v1_2")
		eq(t, "expiry (7 digits)", s.ExpirationDateTime.Time, time.Date(2016, 11, 20, 18, 23, 45, 935691300, time.UTC))
	},

	// --- $batch (served by a fake Graph and read through Client.Batch) ---
	"batch/json-batching-01-mixed-200-403-405.json": func(t *testing.T, b []byte) {
		f := newFakeTenant(t)
		f.mux.HandleFunc("POST /v1.0/$batch", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write(b)
		})
		c, _ := newTestClient(t, f)
		resps, err := c.Batch(t.Context(), []BatchRequest{
			{Method: "GET", URL: "/me/memberOf"},
			{Method: "GET", URL: "/me/planner/tasks"},
			{Method: "DELETE", URL: "/groups/0e226165-c685-41ce-8bfc-df8360ab325d"},
			{Method: "POST", URL: "/users/161ab652-cdbc-490d-82a4-0ada1f0db247/getPasswordSingleSignOnCredentials", Body: struct{}{}},
			{Method: "GET", URL: "/users?$select=id,displayName,userPrincipalName&$filter=city eq null&$count=true", Headers: map[string]string{"ConsistencyLevel": "eventual"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		var statuses []int
		for _, r := range resps {
			statuses = append(statuses, r.Status)
		}
		eq(t, "statuses", fmtInts(statuses), "200 403 403 405 200")
		p1 := decodePage[DirectoryObject](t, resps[0].Body)
		eq(t, "inner nextLink", strings.HasPrefix(p1.NextLink, "https://graph.microsoft.com/beta/me/memberOf?$top=1&$skiptoken="), true)
		eq(t, "inner type", p1.Items[0].ODataType, "#microsoft.graph.directoryRole")
		var e2, e3, e4 *Error
		if !errors.As(resps[1].Err, &e2) || !errors.As(resps[2].Err, &e3) || !errors.As(resps[3].Err, &e4) {
			t.Fatalf("errors not *Error: %v %v %v", resps[1].Err, resps[2].Err, resps[3].Err)
		}
		eq(t, "empty code", e2.Code, "")
		eq(t, "request id", e2.RequestID, "93b6f17e-c05d-4f45-ad2a-6665c708d8a0")
		eq(t, "forbidden", errors.Is(resps[2].Err, ErrForbidden), true)
		eq(t, "code", e3.Code, "Authorization_RequestDenied")
		eq(t, "405 code", e4.Code, "Request_BadRequest")
		eq(t, "header", resps[0].Headers["x-ms-resource-unit"], "1")
		eq(t, "ok has no err", resps[4].Err == nil, true)
		p5 := decodePage[User](t, resps[4].Body)
		eq(t, "inner count", p5.Count, 36)
		eq(t, "inner user", p5.Items[0].UserPrincipalName, "LynneR@contoso.com")
	},

	// --- identity platform (served by a fake token endpoint) ---
	"identity/client-credentials-token-success.json": func(t *testing.T, b []byte) {
		f := newFakeTenant(t)
		f.tokenHandler = func(w http.ResponseWriter, r *http.Request) {
			r.ParseForm()
			if r.PostForm.Get("grant_type") != "client_credentials" || r.PostForm.Get("scope") != DefaultScope {
				t.Errorf("token form = %v", r.PostForm)
			}
			w.Header().Set("Content-Type", "application/json")
			w.Write(b)
		}
		var auth string
		f.mux.HandleFunc("GET /v1.0/users/x", func(w http.ResponseWriter, r *http.Request) {
			auth = r.Header.Get("Authorization")
			writeJSON(w, 200, map[string]string{"id": "x"})
		})
		c, _ := newTestClient(t, f)
		if _, err := c.GetUser(t.Context(), "x", nil); err != nil {
			t.Fatal(err)
		}
		eq(t, "authorization", auth, "Bearer eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiIsIng1dCI6Ik1uQ19WWmNBVGZNNXBP...")
	},
	"identity/auth-code-redeem-token-success.json": func(t *testing.T, b []byte) {
		f := newFakeTenant(t)
		f.tokenHandler = func(w http.ResponseWriter, r *http.Request) {
			r.ParseForm()
			for k, want := range map[string]string{"grant_type": "authorization_code", "code": "the-code",
				"code_verifier": "ThisIsntRandomButItNeedsToBe43CharactersLong", "redirect_uri": "http://localhost/myapp/",
				"scope": "openid offline_access https://graph.microsoft.com/mail.read", "client_secret": testSecret} {
				if got := r.PostForm.Get(k); got != want {
					t.Errorf("form %s = %q, want %q", k, got, want)
				}
			}
			w.Write(b)
		}
		c, _ := newTestClient(t, f)
		tr, err := c.ExchangeCode(t.Context(), "the-code", "ThisIsntRandomButItNeedsToBe43CharactersLong",
			"http://localhost/myapp/", []string{"openid", "offline_access", "https://graph.microsoft.com/mail.read"})
		if err != nil {
			t.Fatal(err)
		}
		eq(t, "refresh", tr.RefreshToken, "AwABAAAAvPM1KaPlrEqdFSBzjqfTGAMxZGUTdM0t4B4...")
		eq(t, "id token", strings.HasPrefix(tr.IDToken, "eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0."), true)
		eq(t, "scope as sent", tr.Scope, "https%3A%2F%2Fgraph.microsoft.com%2Fmail.read")
		eq(t, "expires_in", tr.ExpiresIn, 3599)
		eq(t, "token type", tr.TokenType, "Bearer")
	},
	"identity/auth-code-refresh-token-success.json": func(t *testing.T, b []byte) {
		f := newFakeTenant(t)
		f.tokenHandler = func(w http.ResponseWriter, r *http.Request) {
			r.ParseForm()
			eq(t, "grant", r.PostForm.Get("grant_type"), "refresh_token")
			eq(t, "refresh_token", r.PostForm.Get("refresh_token"), "old-refresh")
			w.Write(b)
		}
		f.mux.HandleFunc("GET /v1.0/users/u1/presence", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 200, map[string]string{"id": "u1", "availability": "Available", "activity": "Available"})
		})
		var rotated []string
		cfg := testConfig(t, f)
		c, err := NewDelegated(cfg, "old-refresh", func(_ context.Context, rt string) error {
			rotated = append(rotated, rt)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.GetPresence(t.Context(), "u1"); err != nil {
			t.Fatal(err)
		}
		eq(t, "rotated", strings.Join(rotated, ","), "AwABAAAAvPM1KaPlrEqdFSBzjqfTGAMxZGUTdM0t4B4...")
	},
	"errors/identity-auth-code-redeem-invalid-scope.json": func(t *testing.T, b []byte) {
		f := newFakeTenant(t)
		f.tokenHandler = func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(400); w.Write(b) }
		c, s := newTestClient(t, f)
		_, err := c.ExchangeCode(t.Context(), "code", "verifier", "http://localhost/myapp/", nil)
		checkInvalidScope(t, err)
		eq(t, "not retried", f.tokenCalls.Load(), 1)
		eq(t, "no sleeps", len(s.got()), 0)
	},
	"errors/identity-auth-code-refresh-invalid-scope.json": func(t *testing.T, b []byte) {
		f := newFakeTenant(t)
		f.tokenHandler = func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(400); w.Write(b) }
		c, err := NewDelegated(testConfig(t, f), "rt", nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.GetPresence(t.Context(), "u1")
		checkInvalidScope(t, err)
	},
	// The graph package never parses access tokens (Microsoft says Graph tokens are
	// opaque to clients); these two are checked for shape only, as sso consumes them.
	"identity/access-token-jwt-header.json": func(t *testing.T, b []byte) {
		h := decodeOne[struct{ Typ, Alg, Kid, X5t string }](t, b)
		eq(t, "alg", h.Alg, "RS256")
		eq(t, "kid=x5t", h.Kid, h.X5t)
	},
	"identity/openid-configuration-common-v2.json": func(t *testing.T, b []byte) {
		d := decodeOne[struct {
			TokenEndpoint string `json:"token_endpoint"`
			JWKSURI       string `json:"jwks_uri"`
		}](t, b)
		// Our token URL has the same shape as the documented token_endpoint.
		c, err := New(Config{TenantID: "{tenant}", ClientID: "c", ClientSecret: "s"})
		if err != nil {
			t.Fatal(err)
		}
		eq(t, "token endpoint", strings.ReplaceAll(c.tokenURL, "%7B", "{"), strings.ReplaceAll(d.TokenEndpoint, "}", "%7D"))
	},
}

func fmtInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, " ")
}

func checkAdele(t *testing.T, b []byte) {
	u := decodeOne[User](t, b)
	eq(t, "id", u.ID, "87d349ed-44d7-43e1-9a83-5f2406dee5bd")
	eq(t, "upn", u.UserPrincipalName, "AdeleV@contoso.com")
	eq(t, "businessPhone", u.BusinessPhone(), "+1 425 555 0109")
	eq(t, "officeLocation", u.OfficeLocation, "18/2111")
	prop(t, u, "jobTitle", "Retail Manager")
	prop(t, u, "preferredLanguage", "en-US")
	prop(t, u, "department", "")
}

func checkPlaceholderContact(t *testing.T, b []byte) {
	p := decodePage[Contact](t, b)
	c := p.Items[0]
	eq(t, "birthday zero", c.Birthday.IsZero(), true)
	eq(t, "birthday raw", c.Birthday.Raw, "datetime-value")
	eq(t, "given", c.GivenName, "givenName-value")
	eq(t, "parent", c.ParentFolderID, "parentFolderId-value")
	eq(t, "id absent", c.ID, "")
}

func checkInvalidScope(t *testing.T, err error) {
	t.Helper()
	var ae *AuthError
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v, want *AuthError", err)
	}
	eq(t, "status", ae.Status, 400)
	eq(t, "code", ae.Code, "invalid_scope")
	eq(t, "aadsts", ae.AADSTS, 70011)
	eq(t, "correlation", ae.CorrelationID, "aaaa0000-bb11-2222-33cc-444444dddddd")
	eq(t, "trace", ae.TraceID, "0000aaaa-11bb-cccc-dd22-eeeeee333333")
	eq(t, "description first line", ae.Description, "AADSTS70011: The provided value for the input parameter 'scope' is not valid. The scope https://foo.microsoft.com/mail.read is not valid.")
	if !strings.Contains(ae.Hint(), "scope") {
		t.Errorf("hint = %q", ae.Hint())
	}
	if IsInvalidSecret(err) || IsConsentMissing(err) || IsRefreshTokenExpired(err) {
		t.Error("invalid_scope matched another helper")
	}
}

func TestFixtures(t *testing.T) {
	for name, check := range fixtureTests {
		t.Run(name, func(t *testing.T) {
			check(t, readFixture(t, name))
		})
	}
}

func TestFixturesAllCovered(t *testing.T) {
	n := 0
	err := filepath.WalkDir(fixtureDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".json") {
			return err
		}
		rel, _ := filepath.Rel(fixtureDir, p)
		n++
		if _, ok := fixtureTests[filepath.ToSlash(rel)]; !ok {
			t.Errorf("fixture %s has no test", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != len(fixtureTests) {
		t.Errorf("%d fixture files, %d tests", n, len(fixtureTests))
	}
}

// TestFixturesUnedited checks every fixture against the sha256 prefix in MANIFEST.md.
func TestFixturesUnedited(t *testing.T) {
	manifest := string(readFixture(t, "MANIFEST.md"))
	re := regexp.MustCompile("`([a-z]+/[a-z0-9-]+\\.json)` \\(sha256 ([0-9a-f]+)…\\)")
	rows := re.FindAllStringSubmatch(manifest, -1)
	if len(rows) != len(fixtureTests) {
		t.Errorf("manifest lists %d fixtures, %d tested", len(rows), len(fixtureTests))
	}
	for _, m := range rows {
		sum := sha256.Sum256(readFixture(t, m[1]))
		if got := hex.EncodeToString(sum[:]); !strings.HasPrefix(got, m[2]) {
			t.Errorf("%s: sha256 %s, manifest says %s…", m[1], got[:12], m[2])
		}
	}
}
