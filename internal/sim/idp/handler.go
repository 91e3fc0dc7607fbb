package idp

import (
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// Handler returns the identity platform's HTTP handler, to be mounted at the
// host root. Routes (tenant = tenant GUID, a configured domain, "organizations"
// or "common"):
//
//	GET      /{tenant}/v2.0/.well-known/openid-configuration
//	GET      /{tenant}/discovery/v2.0/keys (and /{tenant}/discovery/keys)
//	GET|POST /{tenant}/oauth2/v2.0/authorize
//	POST     /{tenant}/oauth2/v2.0/token
//	GET      /{tenant}/adminconsent and /{tenant}/v2.0/adminconsent
//	GET|POST /{tenant}/oauth2/v2.0/logout
//	GET|POST /oidc/userinfo (Microsoft serves it on graph.microsoft.com)
//	GET      /error?code=N
func (p *Provider) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{tenant}/v2.0/.well-known/openid-configuration", p.handleDiscovery)
	mux.HandleFunc("GET /{tenant}/discovery/v2.0/keys", p.handleKeys)
	mux.HandleFunc("GET /{tenant}/discovery/keys", p.handleKeys)
	mux.HandleFunc("GET /{tenant}/oauth2/v2.0/authorize", p.handleAuthorize)
	mux.HandleFunc("POST /{tenant}/oauth2/v2.0/authorize", p.handleAuthorize)
	mux.HandleFunc("POST /{tenant}/oauth2/v2.0/token", p.handleToken)
	mux.HandleFunc("GET /{tenant}/adminconsent", p.handleAdminConsent)
	mux.HandleFunc("GET /{tenant}/v2.0/adminconsent", p.handleAdminConsent)
	mux.HandleFunc("GET /{tenant}/oauth2/v2.0/logout", p.handleLogout)
	mux.HandleFunc("POST /{tenant}/oauth2/v2.0/logout", p.handleLogout)
	mux.HandleFunc("GET /oidc/userinfo", p.handleUserInfo)
	mux.HandleFunc("POST /oidc/userinfo", p.handleUserInfo)
	mux.HandleFunc("GET /error", p.handleErrorLookup)
	return mux
}

type tenantKind int

const (
	tenantSpecific tenantKind = iota + 1
	tenantOrganizations
	tenantCommon
)

// tenant resolves the {tenant} path segment.
func (p *Provider) tenant(r *http.Request) (tenantKind, *aadError) {
	seg := r.PathValue("tenant")
	switch {
	case strings.EqualFold(seg, p.cfg.TenantID):
		return tenantSpecific, nil
	case strings.EqualFold(seg, "organizations"):
		return tenantOrganizations, nil
	case strings.EqualFold(seg, "common"):
		return tenantCommon, nil
	case slices.ContainsFunc(p.cfg.Domains, func(d string) bool { return strings.EqualFold(d, seg) }):
		return tenantSpecific, nil
	}
	return 0, newErr(http.StatusBadRequest, "invalid_request", 90002,
		"Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. "+
			"Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant.", seg)
}

// baseURL is scheme://host of the request (X-Forwarded-Proto honoured).
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if fp := r.Header.Get("X-Forwarded-Proto"); fp == "https" || fp == "http" {
		scheme = fp
	}
	return scheme + "://" + r.Host
}

// issuerV2 is the v2 ID-token issuer for this tenant at the request's host.
func (p *Provider) issuerV2(r *http.Request) string {
	return baseURL(r) + "/" + p.cfg.TenantID + "/v2.0"
}

// discovery is the v2 OpenID configuration in Microsoft's field order.
type discovery struct {
	TokenEndpoint                     string   `json:"token_endpoint"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	JWKSURI                           string   `json:"jwks_uri"`
	ResponseModesSupported            []string `json:"response_modes_supported"`
	SubjectTypesSupported             []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported  []string `json:"id_token_signing_alg_values_supported"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	ScopesSupported                   []string `json:"scopes_supported"`
	Issuer                            string   `json:"issuer"`
	RequestURIParameterSupported      bool     `json:"request_uri_parameter_supported"`
	UserinfoEndpoint                  string   `json:"userinfo_endpoint"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint"`
	DeviceAuthorizationEndpoint       string   `json:"device_authorization_endpoint"`
	HTTPLogoutSupported               bool     `json:"http_logout_supported"`
	FrontchannelLogoutSupported       bool     `json:"frontchannel_logout_supported"`
	EndSessionEndpoint                string   `json:"end_session_endpoint"`
	ClaimsSupported                   []string `json:"claims_supported"`
	KerberosEndpoint                  string   `json:"kerberos_endpoint"`
	TenantRegionScope                 *string  `json:"tenant_region_scope"`
	CloudInstanceName                 string   `json:"cloud_instance_name"`
	CloudGraphHostName                string   `json:"cloud_graph_host_name"`
	MSGraphHost                       string   `json:"msgraph_host"`
	RBACURL                           string   `json:"rbac_url"`
}

func (p *Provider) handleDiscovery(w http.ResponseWriter, r *http.Request) {
	kind, aerr := p.tenant(r)
	if aerr != nil {
		aerr.err = "invalid_tenant"
		p.writeJSONError(w, r, aerr)
		return
	}
	base := baseURL(r)
	seg, issuer := p.cfg.TenantID, p.issuerV2(r)
	var region *string
	if kind != tenantSpecific {
		seg = strings.ToLower(r.PathValue("tenant"))
		issuer = base + "/{tenantid}/v2.0"
	} else {
		eu := "EU"
		region = &eu
	}
	t := base + "/" + seg
	writeJSON(w, http.StatusOK, discovery{
		TokenEndpoint:                     t + "/oauth2/v2.0/token",
		TokenEndpointAuthMethodsSupported: []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		JWKSURI:                           t + "/discovery/v2.0/keys",
		ResponseModesSupported:            []string{"query", "fragment", "form_post"},
		SubjectTypesSupported:             []string{"pairwise"},
		IDTokenSigningAlgValuesSupported:  []string{"RS256"},
		ResponseTypesSupported:            []string{"code", "id_token", "code id_token", "id_token token"},
		ScopesSupported:                   []string{"openid", "profile", "email", "offline_access"},
		Issuer:                            issuer,
		UserinfoEndpoint:                  base + "/oidc/userinfo",
		AuthorizationEndpoint:             t + "/oauth2/v2.0/authorize",
		DeviceAuthorizationEndpoint:       t + "/oauth2/v2.0/devicecode",
		HTTPLogoutSupported:               true,
		FrontchannelLogoutSupported:       true,
		EndSessionEndpoint:                t + "/oauth2/v2.0/logout",
		ClaimsSupported: []string{"sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name",
			"msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username", "name", "tid", "ver",
			"at_hash", "c_hash", "email"},
		KerberosEndpoint:   t + "/kerberos",
		TenantRegionScope:  region,
		CloudInstanceName:  "microsoftonline.com",
		CloudGraphHostName: "graph.windows.net",
		MSGraphHost:        "graph.microsoft.com",
		RBACURL:            "https://pas.windows.net",
	})
}

func (p *Provider) handleKeys(w http.ResponseWriter, r *http.Request) {
	kind, aerr := p.tenant(r)
	if aerr != nil {
		aerr.err = "invalid_tenant"
		p.writeJSONError(w, r, aerr)
		return
	}
	issuer := p.issuerV2(r)
	if kind != tenantSpecific {
		issuer = baseURL(r) + "/{tenantid}/v2.0"
	}
	if !strings.Contains(r.URL.Path, "/v2.0/") {
		issuer = "" // the v1 keys document has no issuer field
	}
	writeJSON(w, http.StatusOK, p.jwks(issuer))
}

var signedOutPage = template.Must(template.New("signedout").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Sign out</title></head>
<body><h1>You signed out of your account</h1><p>It's a good idea to close all browser windows.</p></body></html>
`))

// handleLogout ends the (non-existent) browser session: it redirects to
// post_logout_redirect_uri when that is a registered redirect URI of some app
// (with state), else shows Microsoft's "You signed out" page.
func (p *Provider) handleLogout(w http.ResponseWriter, r *http.Request) {
	if _, aerr := p.tenant(r); aerr != nil {
		p.writeHTMLError(w, r, aerr)
		return
	}
	_ = r.ParseForm()
	target := r.Form.Get("post_logout_redirect_uri")
	if target != "" && p.isRegisteredRedirect(target) {
		v := url.Values{}
		if s := r.Form.Get("state"); s != "" {
			v.Set("state", s)
		}
		deliver(w, r, target, "query", v)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = signedOutPage.Execute(w, nil)
}

func (p *Provider) isRegisteredRedirect(u string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, a := range p.apps {
		if slices.Contains(a.RedirectURIs, u) {
			return true
		}
	}
	return false
}

func (p *Provider) handleErrorLookup(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "AADSTS%s: see https://login.microsoftonline.com/error?code=%s\n",
		r.URL.Query().Get("code"), url.QueryEscape(r.URL.Query().Get("code")))
}

// handleUserInfo is Microsoft's OIDC UserInfo endpoint (on the Graph host in
// the real cloud): it needs a delegated access token with the openid scope.
func (p *Provider) handleUserInfo(w http.ResponseWriter, r *http.Request) {
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="", error="invalid_token"`)
		http.Error(w, "", http.StatusUnauthorized)
		return
	}
	c, err := p.ValidateAccessToken(raw)
	if err != nil || !c.Delegated || !slices.Contains(c.Scopes, "openid") {
		w.Header().Set("WWW-Authenticate", `Bearer realm="", error="invalid_token"`)
		http.Error(w, "", http.StatusUnauthorized)
		return
	}
	u, found := p.userByID(c.ObjectID, c.UserPrincipalName)
	if !found {
		http.Error(w, "", http.StatusUnauthorized)
		return
	}
	out := map[string]any{"sub": pairwiseSub(p.cfg.TenantID, c.AppID, u.ID)}
	if slices.Contains(c.Scopes, "profile") {
		out["name"] = u.DisplayName
		out["family_name"], out["given_name"] = splitName(u.DisplayName)
		out["picture"] = "https://graph.microsoft.com/v1.0/me/photo/$value"
	}
	if slices.Contains(c.Scopes, "email") && u.Mail != "" {
		out["email"] = u.Mail
	}
	writeJSON(w, http.StatusOK, out)
}

func splitName(display string) (family, given string) {
	given, family, _ = strings.Cut(strings.TrimSpace(display), " ")
	return family, given
}

func sortedKeys(v url.Values) []string {
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
