package idp

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// refreshGrant is an issued refresh token.
type refreshGrant struct {
	clientID, userID, upn string
	graph, oidc           []string
	issued, expires       time.Time
	revoked               bool
}

// tokenResponse is the token endpoint's success JSON.
type tokenResponse struct {
	TokenType    string `json:"token_type"`
	Scope        string `json:"scope,omitempty"`
	ExpiresIn    int64  `json:"expires_in"`
	ExtExpiresIn int64  `json:"ext_expires_in"`
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token,omitempty"`
	IDToken      string `json:"id_token,omitempty"`
}

func errInvalidClient(code int, format string, args ...any) *aadError {
	return newErr(http.StatusUnauthorized, "invalid_client", code, format, args...)
}

func errInvalidGrant(code int, format string, args ...any) *aadError {
	return newErr(http.StatusBadRequest, "invalid_grant", code, format, args...)
}

// tokenRequest is a parsed token request after client identification.
type tokenRequest struct {
	kind         tenantKind
	form         url.Values
	app          App
	secret       string
	hasAssertion bool
}

func (p *Provider) handleToken(w http.ResponseWriter, r *http.Request) {
	if aerr := p.token(w, r); aerr != nil {
		p.log.Info("token request failed", "error", aerr.err, "aadsts", aerr.code)
		p.writeJSONError(w, r, aerr)
	}
}

// token serves one token request; it writes the success response itself and
// returns the error to write otherwise.
func (p *Provider) token(w http.ResponseWriter, r *http.Request) *aadError {
	kind, aerr := p.tenant(r)
	if aerr != nil {
		return aerr
	}
	if err := r.ParseForm(); err != nil {
		return newErr(http.StatusBadRequest, "invalid_request", 900144,
			"The request body must contain the following parameter: 'grant_type'.")
	}
	f := r.PostForm
	grant := f.Get("grant_type")
	if grant == "" {
		return errMissingParam("grant_type")
	}
	clientID, secret := f.Get("client_id"), f.Get("client_secret")
	if id, sec, ok := r.BasicAuth(); ok { // RFC 6749 2.3.1: both form-URL-encoded
		if uid, err := url.QueryUnescape(id); err == nil {
			id = uid
		}
		if usec, err := url.QueryUnescape(sec); err == nil {
			sec = usec
		}
		if clientID != "" && !strings.EqualFold(clientID, id) {
			return newErr(http.StatusBadRequest, "invalid_request", 900144,
				"The client_id in the Authorization header does not match the client_id in the request body.")
		}
		clientID, secret = id, sec
	}
	if clientID == "" {
		return errMissingParam("client_id")
	}
	app, ok := p.app(clientID)
	if !ok {
		return p.errAppNotFound(clientID)
	}
	req := tokenRequest{kind: kind, form: f, app: app, secret: secret, hasAssertion: f.Get("client_assertion") != ""}
	switch grant {
	case "client_credentials":
		return p.clientCredentials(w, r, req)
	case "authorization_code":
		return p.authorizationCode(w, r, req)
	case "refresh_token":
		return p.refreshToken(w, r, req)
	}
	return newErr(http.StatusBadRequest, "unsupported_grant_type", 70003,
		"The app requested an unsupported grant type '%s'.", grant)
}

// authenticateClient checks the client secret. required: the flow needs a
// confidential client. An app without secrets is a public client.
func (p *Provider) authenticateClient(req tokenRequest, required bool) (confidential bool, aerr *aadError) {
	a := req.app
	if req.hasAssertion {
		return false, errInvalidClient(700027, "Client assertion failed signature validation.")
	}
	if req.secret == "" {
		if required || len(a.Secrets) > 0 {
			return false, errInvalidClient(7000218,
				"The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
		}
		return false, nil
	}
	if len(a.Secrets) == 0 && !required {
		return false, errInvalidClient(700025,
			"Client is public so neither 'client_assertion' nor 'client_secret' should be presented.")
	}
	now, matched := p.now(), false
	for _, s := range a.Secrets {
		if subtle.ConstantTimeCompare([]byte(s.Value), []byte(req.secret)) == 1 {
			matched = true
			if s.Expires.IsZero() || now.Before(s.Expires) {
				return true, nil
			}
		}
	}
	if matched {
		return false, errInvalidClient(7000222,
			"The provided client secret keys for app '%s' are expired. Visit the Azure portal to create new keys for "+
				"your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: "+
				"https://aka.ms/certCreds.", a.ClientID)
	}
	return false, errInvalidClient(7000215,
		"Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, "+
			"not the client secret ID, for a secret added to app '%s'.", a.ClientID)
}

func (p *Provider) clientCredentials(w http.ResponseWriter, r *http.Request, req tokenRequest) *aadError {
	if req.kind == tenantCommon {
		return newErr(http.StatusBadRequest, "invalid_request", 9001023,
			"The grant type isn't supported over the /common or /consumers endpoints. "+
				"Please use the /organizations or tenant-specific endpoint.")
	}
	if _, aerr := p.authenticateClient(req, true); aerr != nil {
		return aerr
	}
	scope := req.form.Get("scope")
	if scope == "" {
		return errMissingParam("scope")
	}
	if f := strings.Fields(scope); len(f) != 1 ||
		!strings.EqualFold(f[0], graphAudience+"/.default") && !strings.EqualFold(f[0], graphAppID+"/.default") {
		return newErr(http.StatusBadRequest, "invalid_scope", 70011,
			"The provided value for the input parameter 'scope' is not valid. The scope %s is not valid.", scope)
	}
	app := req.app
	if !app.Consented && app.HomeTenant {
		app.AppRoles = nil // the service principal exists, but no permission was granted
	} else if !app.Consented {
		return errInvalidClient(7000229,
			"The client application %s is missing service principal in the tenant %s. "+
				"See instructions here: https://go.microsoft.com/fwlink/?linkid=2225119", req.app.ClientID, p.cfg.TenantID)
	}
	now := p.now()
	at, err := p.appAccessToken(app, now)
	if err != nil {
		return newErr(http.StatusInternalServerError, "server_error", 90100, "Signing failed.")
	}
	p.log.Info("app token issued", "client_id", req.app.ClientID)
	ttl := int64(p.cfg.AccessTokenTTL / time.Second)
	writeJSON(w, http.StatusOK, tokenResponse{TokenType: "Bearer", ExpiresIn: ttl, ExtExpiresIn: ttl, AccessToken: at})
	return nil
}

func (p *Provider) authorizationCode(w http.ResponseWriter, r *http.Request, req tokenRequest) *aadError {
	f := req.form
	code, redirect := f.Get("code"), f.Get("redirect_uri")
	if code == "" {
		return errMissingParam("code")
	}
	if redirect == "" {
		return errMissingParam("redirect_uri")
	}
	confidential, aerr := p.authenticateClient(req, false)
	if aerr != nil {
		return aerr
	}
	if s := f.Get("scope"); s != "" {
		if _, aerr := parseScopes(s); aerr != nil {
			return aerr
		}
	}
	now := p.now()
	p.mu.Lock()
	c, ok := p.codes[code]
	switch {
	case !ok:
		aerr = errInvalidGrant(70000, "The provided value for the 'code' parameter is not valid.")
	case !strings.EqualFold(c.clientID, req.app.ClientID):
		aerr = errInvalidGrant(70000, "The provided value for the 'code' parameter is not valid. "+
			"The code was issued to a different client.")
	case c.redeemed:
		aerr = errInvalidGrant(54005, "OAuth2 Authorization code was already redeemed, please retry with a new "+
			"valid code or use an existing refresh token.")
	case !now.Before(c.expires):
		aerr = errInvalidGrant(70008, "The provided authorization code or refresh token has expired due to "+
			"inactivity. Send a new interactive authorization request for this user and resource.")
	default:
		c.redeemed = true // single use, even if a check below fails
	}
	p.mu.Unlock()
	if aerr != nil {
		return aerr
	}
	if redirect != c.redirectURI {
		return errInvalidGrant(500112, "The reply address '%s' does not match the reply address '%s' provided "+
			"when requesting Authorization code.", redirect, c.redirectURI)
	}
	if c.challenge != "" && !pkceMatches(c.method, c.challenge, f.Get("code_verifier")) {
		return errInvalidGrant(501481, "The Code_Verifier does not match the code_challenge supplied in the "+
			"authorization request.")
	}
	if !req.app.Consented {
		return errNotConsented(req.app)
	}
	u, aerr := p.currentUser(c.userID, c.upn)
	if aerr != nil {
		return aerr
	}
	return p.issueUserTokens(w, r, req.app, u, c.graph, c.oidc, c.nonce, confidential)
}

func pkceMatches(method, challenge, verifier string) bool {
	if verifier == "" {
		return false
	}
	if method == "S256" {
		sum := sha256.Sum256([]byte(verifier))
		verifier = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	return subtle.ConstantTimeCompare([]byte(verifier), []byte(challenge)) == 1
}

// currentUser re-reads the user from the directory at redemption time.
func (p *Provider) currentUser(id, upn string) (User, *aadError) {
	u, ok := p.userByID(id, upn)
	if !ok {
		return User{}, errInvalidGrant(50034, "The user account {EUII Hidden} does not exist in the '%s' directory. "+
			"To sign into this application, the account must be added to the directory.", p.cfg.TenantID)
	}
	if !u.Enabled {
		return User{}, errInvalidGrant(50057, "The user account is disabled. The user object in Active Directory "+
			"backing this account has been disabled. An admin can re-enable this account through PowerShell")
	}
	return u, nil
}

func (p *Provider) refreshToken(w http.ResponseWriter, r *http.Request, req tokenRequest) *aadError {
	rt := req.form.Get("refresh_token")
	if rt == "" {
		return errMissingParam("refresh_token")
	}
	confidential, aerr := p.authenticateClient(req, false)
	if aerr != nil {
		return aerr
	}
	var sreq *scopeReq
	if s := req.form.Get("scope"); s != "" {
		parsed, aerr := parseScopes(s)
		if aerr != nil {
			return aerr
		}
		sreq = &parsed
	}
	now := p.now()
	p.mu.Lock()
	g, ok := p.refresh[rt]
	var grant refreshGrant
	switch {
	case !ok:
		aerr = errInvalidGrant(9002313, "Invalid request. Request is malformed or invalid.")
	case !strings.EqualFold(g.clientID, req.app.ClientID):
		aerr = errInvalidGrant(70000, "Provided grant is invalid or malformed.")
	case g.revoked:
		aerr = errInvalidGrant(50173, "The provided grant has expired due to it being revoked, a fresh auth token "+
			"is needed. The user might have changed or reset their password. The grant was issued on '%s'.",
			g.issued.UTC().Format(time.RFC3339))
	case !now.Before(g.expires):
		aerr = errInvalidGrant(700082, "The refresh token has expired due to inactivity. The token was issued on "+
			"%s and was inactive for %s.", g.issued.UTC().Format(time.RFC3339Nano), p.cfg.RefreshTokenTTL)
	default:
		grant = *g
	}
	p.mu.Unlock()
	if aerr != nil {
		return aerr
	}
	if !req.app.Consented {
		return errNotConsented(req.app)
	}
	graph, oidc := grant.graph, grant.oidc
	if sreq != nil {
		granted, missing := grantGraph(req.app, *sreq)
		if len(missing) > 0 {
			return errNotConsented(req.app)
		}
		graph, oidc = granted, sreq.oidc
		if !slices.Contains(oidc, "offline_access") {
			oidc = append(slices.Clone(oidc), "offline_access")
		}
	} else {
		graph, _ = grantGraph(req.app, scopeReq{graph: graph}) // drop scopes whose consent was removed
	}
	u, aerr := p.currentUser(grant.userID, grant.upn)
	if aerr != nil {
		return aerr
	}
	// The old refresh token is not revoked: it stays valid until it expires
	// (refresh-tokens.md: "the old one is not revoked automatically").
	return p.issueUserTokens(w, r, req.app, u, graph, oidc, "", confidential)
}

// issueUserTokens writes a delegated token response: an access token, an ID
// token when openid was granted and a refresh token when offline_access was.
func (p *Provider) issueUserTokens(w http.ResponseWriter, r *http.Request, a App, u User,
	graph, oidc []string, nonce string, confidential bool) *aadError {
	now := p.now()
	scp := slices.Clone(graph)
	respScope := make([]string, 0, len(graph)+len(oidc))
	for _, g := range graph {
		respScope = append(respScope, graphAudience+"/"+g)
	}
	for _, o := range oidc {
		if o != "offline_access" {
			scp = append(scp, o)
		}
		respScope = append(respScope, o)
	}
	at, err := p.userAccessToken(a, u, scp, confidential, now)
	if err != nil {
		return newErr(http.StatusInternalServerError, "server_error", 90100, "Signing failed.")
	}
	ttl := int64(p.cfg.AccessTokenTTL / time.Second)
	resp := tokenResponse{TokenType: "Bearer", Scope: strings.Join(respScope, " "),
		ExpiresIn: ttl, ExtExpiresIn: ttl, AccessToken: at}
	if slices.Contains(oidc, "openid") {
		if resp.IDToken, err = p.idToken(p.issuerV2(r), a, u, oidc, nonce, now); err != nil {
			return newErr(http.StatusInternalServerError, "server_error", 90100, "Signing failed.")
		}
	}
	if slices.Contains(oidc, "offline_access") {
		resp.RefreshToken = "1.A" + randomID(96)
		p.mu.Lock()
		for k, g := range p.refresh {
			if now.After(g.expires.Add(p.cfg.RefreshTokenTTL)) {
				delete(p.refresh, k)
			}
		}
		p.refresh[resp.RefreshToken] = &refreshGrant{
			clientID: a.ClientID, userID: u.ID, upn: u.UserPrincipalName,
			graph: slices.Clone(graph), oidc: slices.Clone(oidc),
			issued: now, expires: now.Add(p.cfg.RefreshTokenTTL),
		}
		p.mu.Unlock()
	}
	p.log.Info("user tokens issued", "client_id", a.ClientID, "user_id", u.ID)
	writeJSON(w, http.StatusOK, resp)
	return nil
}
