package idp

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// scopeReq is a parsed scope parameter. Graph scopes are kept without their
// resource prefix ("User.Read"); bare names mean Graph, as on Microsoft's endpoint.
type scopeReq struct {
	graph []string
	oidc  []string // openid, profile, email, offline_access (lower case)
	dflt  bool     // https://graph.microsoft.com/.default
}

var oidcScopes = []string{"openid", "profile", "email", "offline_access"}

func parseScopes(s string) (scopeReq, *aadError) {
	var out scopeReq
	for _, f := range strings.Fields(s) {
		lf := strings.ToLower(f)
		if slices.Contains(oidcScopes, lf) {
			if !slices.Contains(out.oidc, lf) {
				out.oidc = append(out.oidc, lf)
			}
			continue
		}
		name := f
		for _, prefix := range []string{graphAudience + "/", graphAppID + "/"} {
			if len(f) > len(prefix) && strings.EqualFold(f[:len(prefix)], prefix) {
				name = f[len(prefix):]
				break
			}
		}
		if name == f && (strings.Contains(f, "/") || strings.Contains(f, ":")) || name == "" || strings.Contains(name, "/") {
			return scopeReq{}, newErr(http.StatusBadRequest, "invalid_scope", 70011,
				"The provided value for the input parameter 'scope' is not valid. The scope %s is not valid.", f)
		}
		if strings.EqualFold(name, ".default") {
			out.dflt = true
			continue
		}
		if !slices.ContainsFunc(out.graph, func(g string) bool { return strings.EqualFold(g, name) }) {
			out.graph = append(out.graph, name)
		}
	}
	return out, nil
}

// grantGraph resolves the requested Graph scopes against the app's consented
// delegated scopes; missing lists those not consented.
func grantGraph(a App, req scopeReq) (granted, missing []string) {
	if req.dflt {
		for _, s := range a.DelegatedScopes {
			if !slices.Contains(oidcScopes, strings.ToLower(s)) {
				granted = append(granted, s)
			}
		}
	}
	for _, want := range req.graph {
		i := slices.IndexFunc(a.DelegatedScopes, func(s string) bool { return strings.EqualFold(s, want) })
		switch {
		case i < 0:
			missing = append(missing, want)
		case !slices.Contains(granted, a.DelegatedScopes[i]):
			granted = append(granted, a.DelegatedScopes[i])
		}
	}
	return granted, missing
}

// authCode is an issued authorization code.
type authCode struct {
	clientID, redirectURI string
	challenge, method     string
	userID, upn           string
	graph, oidc           []string
	nonce                 string
	issued, expires       time.Time
	redeemed              bool
}

func errNotConsented(a App) *aadError {
	e := newErr(http.StatusBadRequest, "invalid_grant", 65001,
		"The user or administrator has not consented to use the application with ID '%s' named '%s'. "+
			"Send an interactive authorization request for this user and resource.", a.ClientID, a.DisplayName)
	e.suberror = "consent_required"
	return e
}

func (p *Provider) errAppNotFound(clientID string) *aadError {
	return newErr(http.StatusBadRequest, "unauthorized_client", 700016,
		"Application with identifier '%s' was not found in the directory '%s'. This can happen if the application "+
			"has not been installed by the administrator of the tenant or consented to by any user in the tenant. "+
			"You may have sent your authentication request to the wrong tenant.", clientID, p.cfg.TenantID)
}

func errMissingParam(name string) *aadError {
	return newErr(http.StatusBadRequest, "invalid_request", 900144,
		"The request body must contain the following parameter: '%s'.", name)
}

func errRedirectMismatch(redirect, clientID string) *aadError {
	return newErr(http.StatusBadRequest, "invalid_request", 50011,
		"The redirect URI '%s' specified in the request does not match the redirect URIs configured for the "+
			"application '%s'. Make sure the redirect URI sent in the request matches one added to your application "+
			"in the Azure portal. Navigate to https://aka.ms/redirectUriMismatchError to learn more about how to fix this.",
		redirect, clientID)
}

// signIn picks the user: login_hint, else the first Global Administrator.
func (p *Provider) signIn(loginHint string) (User, *aadError) {
	var (
		u  User
		ok bool
	)
	if loginHint != "" {
		u, ok = p.cfg.Dir.UserByLogin(loginHint)
	} else {
		u, ok = p.cfg.Dir.FirstGlobalAdmin()
	}
	if !ok {
		return User{}, newErr(http.StatusBadRequest, "invalid_request", 50034,
			"The user account {EUII Hidden} does not exist in the '%s' directory. To sign into this application, "+
				"the account must be added to the directory.", p.cfg.TenantID)
	}
	if !u.Enabled {
		return User{}, newErr(http.StatusBadRequest, "access_denied", 50057,
			"The user account is disabled. The user object in Active Directory backing this account has been disabled. "+
				"An admin can re-enable this account through PowerShell")
	}
	return u, nil
}

// handleAuthorize signs a user in at once (no UI) and returns a code.
func (p *Provider) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	if _, aerr := p.tenant(r); aerr != nil {
		p.writeHTMLError(w, r, aerr)
		return
	}
	_ = r.ParseForm()
	q := r.Form
	clientID := q.Get("client_id")
	if clientID == "" {
		p.writeHTMLError(w, r, errMissingParam("client_id"))
		return
	}
	app, ok := p.app(clientID)
	if !ok {
		p.writeHTMLError(w, r, p.errAppNotFound(clientID))
		return
	}
	redirect := q.Get("redirect_uri")
	if !slices.Contains(app.RedirectURIs, redirect) {
		p.writeHTMLError(w, r, errRedirectMismatch(redirect, app.ClientID))
		return
	}
	mode, state := q.Get("response_mode"), q.Get("state")
	if mode == "" {
		mode = "query"
	}
	fail := func(e *aadError) { p.redirectError(w, r, redirect, mode, state, e) }
	if !slices.Contains([]string{"query", "fragment", "form_post"}, mode) {
		mode = "query"
		fail(newErr(http.StatusBadRequest, "invalid_request", 90023, "Unsupported response_mode '%s'.", q.Get("response_mode")))
		return
	}
	switch rt := q.Get("response_type"); {
	case rt == "":
		fail(errMissingParam("response_type"))
		return
	case rt != "code":
		fail(newErr(http.StatusBadRequest, "unsupported_response_type", 700054,
			"response_type '%s' is not enabled for the application.", rt))
		return
	}
	if q.Get("scope") == "" {
		fail(errMissingParam("scope"))
		return
	}
	req, aerr := parseScopes(q.Get("scope"))
	if aerr != nil {
		fail(aerr)
		return
	}
	challenge, method := q.Get("code_challenge"), q.Get("code_challenge_method")
	if challenge == "" && method != "" {
		fail(errMissingParam("code_challenge"))
		return
	}
	if challenge != "" {
		if method == "" {
			method = "plain"
		}
		if method != "S256" && method != "plain" {
			fail(newErr(http.StatusBadRequest, "invalid_request", 90023,
				"Invalid request: code_challenge_method '%s' is not supported; use S256 or plain.", method))
			return
		}
	}
	u, aerr := p.signIn(q.Get("login_hint"))
	if aerr != nil {
		fail(aerr)
		return
	}

	prompt := q.Get("prompt")
	_, missing := grantGraph(app, req)
	if !app.Consented || len(missing) > 0 {
		// A user may consent for themselves with prompt=consent, but only an
		// administrator can consent to an app that holds application
		// permissions (admin-only): anyone else gets AADSTS90094.
		userConsent := prompt == "consent" || prompt == "admin_consent"
		canConsent := u.GlobalAdmin || (userConsent && len(app.AppRoles) == 0)
		if !canConsent && userConsent {
			fail(newErr(http.StatusBadRequest, "access_denied", 90094,
				"Admin consent is required for the permissions requested by this application. "+
					"An admin consent request may be sent to the admin."))
			return
		}
		if prompt == "none" || !canConsent {
			e := errNotConsented(app)
			e.err, e.suberror = "consent_required", ""
			fail(e)
			return
		}
		// The signed-in user consents (an administrator for the whole organisation).
		_ = p.UpdateApp(app.ClientID, func(a *App) {
			a.Consented = true
			for _, s := range missing {
				if !slices.ContainsFunc(a.DelegatedScopes, func(d string) bool { return strings.EqualFold(d, s) }) {
					a.DelegatedScopes = append(a.DelegatedScopes, s)
				}
			}
			for _, s := range req.oidc {
				if !slices.ContainsFunc(a.DelegatedScopes, func(d string) bool { return strings.EqualFold(d, s) }) {
					a.DelegatedScopes = append(a.DelegatedScopes, s)
				}
			}
		})
		app, _ = p.app(app.ClientID)
		p.log.Info("consent granted at sign-in", "client_id", app.ClientID, "user_id", u.ID)
	}
	granted, _ := grantGraph(app, req)

	now := p.now()
	code := "1.A" + randomID(48)
	ac := &authCode{
		clientID: app.ClientID, redirectURI: redirect, challenge: challenge, method: method,
		userID: u.ID, upn: u.UserPrincipalName, graph: granted, oidc: req.oidc,
		nonce: q.Get("nonce"), issued: now, expires: now.Add(p.cfg.AuthCodeTTL),
	}
	p.mu.Lock()
	for k, c := range p.codes {
		if now.After(c.expires.Add(p.cfg.AuthCodeTTL)) {
			delete(p.codes, k)
		}
	}
	p.codes[code] = ac
	p.mu.Unlock()
	p.log.Info("user signed in", "client_id", app.ClientID, "user_id", u.ID)

	v := url.Values{}
	v.Set("code", code)
	if state != "" {
		v.Set("state", state)
	}
	v.Set("session_state", uuid.NewString())
	deliver(w, r, redirect, mode, v)
}

// handleAdminConsent serves /{tenant}/adminconsent (v1) and
// /{tenant}/v2.0/adminconsent: the first Global Administrator (or login_hint)
// grants the app's application permissions for the organisation.
func (p *Provider) handleAdminConsent(w http.ResponseWriter, r *http.Request) {
	if _, aerr := p.tenant(r); aerr != nil {
		p.writeHTMLError(w, r, aerr)
		return
	}
	v2 := strings.Contains(r.URL.Path, "/v2.0/")
	q := r.URL.Query()
	clientID := q.Get("client_id")
	if clientID == "" {
		p.writeHTMLError(w, r, errMissingParam("client_id"))
		return
	}
	app, ok := p.app(clientID)
	if !ok {
		p.writeHTMLError(w, r, p.errAppNotFound(clientID))
		return
	}
	redirect := q.Get("redirect_uri")
	if !slices.Contains(app.RedirectURIs, redirect) {
		p.writeHTMLError(w, r, errRedirectMismatch(redirect, app.ClientID))
		return
	}
	state := q.Get("state")
	fail := func(e *aadError) {
		c := p.errorContext(r)
		v := url.Values{}
		if v2 {
			v.Set("admin_consent", "True")
		}
		v.Set("error", e.err)
		v.Set("error_description", c.description(e))
		if state != "" {
			v.Set("state", state)
		}
		deliver(w, r, redirect, "query", v)
	}
	if v2 {
		if q.Get("scope") == "" {
			fail(errMissingParam("scope"))
			return
		}
		if _, aerr := parseScopes(q.Get("scope")); aerr != nil {
			fail(aerr)
			return
		}
	}
	u, aerr := p.signIn(q.Get("login_hint"))
	if aerr != nil {
		fail(aerr)
		return
	}
	if !u.GlobalAdmin {
		fail(newErr(http.StatusBadRequest, "access_denied", 90094,
			"Admin consent is required for the permissions requested by this application. "+
				"An admin consent request may be sent to the admin."))
		return
	}
	_ = p.UpdateApp(app.ClientID, func(a *App) { a.Consented = true })
	p.log.Info("admin consent granted", "client_id", app.ClientID, "user_id", u.ID)

	v := url.Values{}
	v.Set("admin_consent", "True")
	v.Set("tenant", p.cfg.TenantID)
	if v2 {
		scopes := make([]string, 0, len(app.AppRoles))
		for _, role := range app.AppRoles {
			scopes = append(scopes, graphAudience+"/"+role)
		}
		v.Set("scope", strings.Join(scopes, " "))
	}
	if state != "" {
		v.Set("state", state)
	}
	deliver(w, r, redirect, "query", v)
}
