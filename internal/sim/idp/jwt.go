package idp

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/uuid"
)

const (
	graphAudience = "https://graph.microsoft.com"
	graphAppID    = "00000003-0000-0000-c000-000000000000"
)

// AccessClaims is what ValidateAccessToken reads from a Graph access token.
type AccessClaims struct {
	TenantID, AppID, ObjectID string
	Roles, Scopes             []string
	Delegated                 bool
	ExpiresAt                 time.Time

	UserPrincipalName string // delegated tokens only
	Name              string // delegated tokens only
}

// accessTokenClaims is the payload of a v1 Microsoft Graph access token
// (Graph accepts v1 tokens, issued by sts.windows.net).
type accessTokenClaims struct {
	Aud            string   `json:"aud"`
	Iss            string   `json:"iss"`
	Iat            int64    `json:"iat"`
	Nbf            int64    `json:"nbf"`
	Exp            int64    `json:"exp"`
	AppDisplayName string   `json:"app_displayname,omitempty"`
	AppID          string   `json:"appid"`
	AppIDAcr       string   `json:"appidacr"`
	IDP            string   `json:"idp"`
	IDTyp          string   `json:"idtyp"`
	Name           string   `json:"name,omitempty"`
	OID            string   `json:"oid"`
	Roles          []string `json:"roles,omitempty"`
	Scp            string   `json:"scp,omitempty"`
	Sub            string   `json:"sub"`
	Tid            string   `json:"tid"`
	UniqueName     string   `json:"unique_name,omitempty"`
	UPN            string   `json:"upn,omitempty"`
	Uti            string   `json:"uti"`
	Ver            string   `json:"ver"`
}

// idTokenClaims is the payload of a v2 ID token.
type idTokenClaims struct {
	Aud               string `json:"aud"`
	Iss               string `json:"iss"`
	Iat               int64  `json:"iat"`
	Nbf               int64  `json:"nbf"`
	Exp               int64  `json:"exp"`
	Email             string `json:"email,omitempty"`
	Name              string `json:"name,omitempty"`
	Nonce             string `json:"nonce,omitempty"`
	OID               string `json:"oid,omitempty"`
	PreferredUsername string `json:"preferred_username,omitempty"`
	RH                string `json:"rh"`
	Sub               string `json:"sub"`
	Tid               string `json:"tid"`
	Uti               string `json:"uti"`
	Ver               string `json:"ver"`
}

// sign serialises claims as a compact RS256 JWS with typ JWT and kid; withX5t
// adds x5t (v1 tokens carry both, v2 tokens only kid).
func (p *Provider) sign(claims any, withX5t bool) (string, error) {
	k := p.activeKey()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if withX5t {
		opts = opts.WithHeader("x5t", k.kid)
	}
	signer, err := jose.NewSigner(jose.SigningKey{
		Algorithm: jose.RS256,
		Key:       jose.JSONWebKey{Key: k.priv, KeyID: k.kid, Algorithm: string(jose.RS256)},
	}, opts)
	if err != nil {
		return "", fmt.Errorf("idp: signer: %w", err)
	}
	return jwt.Signed(signer).Claims(claims).Serialize()
}

func (p *Provider) stsIssuer() string { return "https://sts.windows.net/" + p.cfg.TenantID + "/" }

// servicePrincipalID is the stable object ID of the app's service principal.
func (p *Provider) servicePrincipalID(clientID string) string {
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte("sp:"+p.cfg.TenantID+":"+strings.ToLower(clientID))).String()
}

// pairwiseSub is the per-app subject of a user: stable, opaque, 43 characters.
func pairwiseSub(tenantID, clientID, userID string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(tenantID + "|" + clientID + "|" + userID)))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// appAccessToken mints an application (client credentials) token.
func (p *Provider) appAccessToken(a App, now time.Time) (string, error) {
	sp := p.servicePrincipalID(a.ClientID)
	return p.sign(accessTokenClaims{
		Aud: graphAudience, Iss: p.stsIssuer(),
		Iat: now.Unix(), Nbf: now.Unix(), Exp: now.Add(p.cfg.AccessTokenTTL).Unix(),
		AppDisplayName: a.DisplayName, AppID: a.ClientID, AppIDAcr: "1",
		IDP: p.stsIssuer(), IDTyp: "app", OID: sp, Roles: slices.Clone(a.AppRoles), Sub: sp,
		Tid: p.cfg.TenantID, Uti: randomID(16), Ver: "1.0",
	}, true)
}

// userAccessToken mints a delegated token; scp lists the Graph scopes and the
// OIDC scopes (except offline_access), as Graph tokens do.
func (p *Provider) userAccessToken(a App, u User, scp []string, confidential bool, now time.Time) (string, error) {
	acr := "0"
	if confidential {
		acr = "1"
	}
	return p.sign(accessTokenClaims{
		Aud: graphAudience, Iss: p.stsIssuer(),
		Iat: now.Unix(), Nbf: now.Unix(), Exp: now.Add(p.cfg.AccessTokenTTL).Unix(),
		AppDisplayName: a.DisplayName, AppID: a.ClientID, AppIDAcr: acr,
		IDP: p.stsIssuer(), IDTyp: "user", Name: u.DisplayName, OID: u.ID,
		Scp: strings.Join(scp, " "), Sub: pairwiseSub(p.cfg.TenantID, a.ClientID, u.ID),
		Tid: p.cfg.TenantID, UniqueName: u.UserPrincipalName, UPN: u.UserPrincipalName,
		Uti: randomID(16), Ver: "1.0",
	}, true)
}

// idToken mints a v2 ID token. Claims follow the scopes: oid, name and
// preferred_username need profile; email needs email (and a mail address).
func (p *Provider) idToken(issuer string, a App, u User, oidc []string, nonce string, now time.Time) (string, error) {
	c := idTokenClaims{
		Aud: a.ClientID, Iss: issuer,
		Iat: now.Unix(), Nbf: now.Unix(), Exp: now.Add(p.cfg.IDTokenTTL).Unix(),
		Nonce: nonce, RH: "0.A" + randomID(24) + ".", Sub: pairwiseSub(p.cfg.TenantID, a.ClientID, u.ID),
		Tid: p.cfg.TenantID, Uti: randomID(16), Ver: "2.0",
	}
	if slices.Contains(oidc, "profile") {
		c.OID, c.Name, c.PreferredUsername = u.ID, u.DisplayName, u.UserPrincipalName
	}
	if slices.Contains(oidc, "email") {
		c.Email = u.Mail
	}
	return p.sign(c, false)
}

// ValidateAccessToken checks a Graph access token minted by this provider: the
// RS256 signature against a published key (kid), exp/nbf against Config.Now,
// aud (https://graph.microsoft.com or Graph's app ID), iss and tid. Errors wrap
// ErrTokenExpired or ErrInvalidToken.
func (p *Provider) ValidateAccessToken(raw string) (*AccessClaims, error) {
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	if len(tok.Headers) != 1 {
		return nil, fmt.Errorf("%w: want one signature", ErrInvalidToken)
	}
	k, ok := p.keyByID(tok.Headers[0].KeyID)
	if !ok {
		return nil, fmt.Errorf("%w: signing key %q not found", ErrInvalidToken, tok.Headers[0].KeyID)
	}
	var c accessTokenClaims
	if err := tok.Claims(&k.priv.PublicKey, &c); err != nil {
		return nil, fmt.Errorf("%w: signature: %v", ErrInvalidToken, err)
	}
	switch {
	case c.Aud != graphAudience && c.Aud != graphAppID:
		return nil, fmt.Errorf("%w: audience %q is not Microsoft Graph", ErrInvalidToken, c.Aud)
	case c.Iss != p.stsIssuer():
		return nil, fmt.Errorf("%w: issuer %q", ErrInvalidToken, c.Iss)
	case !strings.EqualFold(c.Tid, p.cfg.TenantID):
		return nil, fmt.Errorf("%w: tenant %q", ErrInvalidToken, c.Tid)
	case c.AppID == "" || c.OID == "":
		return nil, fmt.Errorf("%w: appid or oid missing", ErrInvalidToken)
	}
	now := p.now().Unix()
	if now >= c.Exp {
		return nil, fmt.Errorf("%w: expired at %s", ErrTokenExpired, time.Unix(c.Exp, 0).UTC().Format(time.RFC3339))
	}
	if now < c.Nbf {
		return nil, fmt.Errorf("%w: not valid before %s", ErrInvalidToken, time.Unix(c.Nbf, 0).UTC().Format(time.RFC3339))
	}
	out := &AccessClaims{
		TenantID: c.Tid, AppID: c.AppID, ObjectID: c.OID,
		Roles: c.Roles, Delegated: c.IDTyp == "user" || c.Scp != "",
		ExpiresAt: time.Unix(c.Exp, 0), UserPrincipalName: c.UPN, Name: c.Name,
	}
	if c.Scp != "" {
		out.Scopes = strings.Fields(c.Scp)
	}
	return out, nil
}
