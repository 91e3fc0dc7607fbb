package idp_test

import (
	"fmt"
	"net/http/httptest"
	"net/url"
	"strings"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/sim/idp"
)

type oneAdmin struct{ u idp.User }

func (d oneAdmin) UserByLogin(login string) (idp.User, bool) {
	return d.u, strings.EqualFold(login, d.u.UserPrincipalName)
}
func (d oneAdmin) FirstGlobalAdmin() (idp.User, bool) { return d.u, true }

// The Graph simulator builds a Provider over its users, registers the
// product's app, serves Handler at the host root and checks bearer tokens with
// ValidateAccessToken.
func Example() {
	p, err := idp.New(idp.Config{
		TenantID: "aaaabbbb-0000-cccc-1111-dddd2222eeee",
		Dir: oneAdmin{idp.User{ID: "aaaaaaaa-0000-0000-0000-000000000001", UserPrincipalName: "admin@contoso.com",
			DisplayName: "Ada Admin", GlobalAdmin: true, Enabled: true}},
	})
	if err != nil {
		panic(err)
	}
	p.RegisterApp(idp.App{
		ClientID: "11111111-2222-3333-4444-555555555555", DisplayName: "Switchboard",
		Secrets:      []idp.Secret{{Value: "secret", Expires: time.Now().AddDate(1, 0, 0)}},
		RedirectURIs: []string{"http://127.0.0.1:8080/callback"},
		AppRoles:     []string{"User.Read.All"},
		Consented:    true,
	})
	srv := httptest.NewServer(p.Handler())
	defer srv.Close()

	resp, err := srv.Client().PostForm(srv.URL+"/"+p.TenantID()+"/oauth2/v2.0/token", url.Values{
		"grant_type": {"client_credentials"}, "client_id": {"11111111-2222-3333-4444-555555555555"},
		"client_secret": {"wrong"}, "scope": {"https://graph.microsoft.com/.default"},
	})
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode)
	// Output: 401
}
