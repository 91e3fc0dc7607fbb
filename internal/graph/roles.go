package graph

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
)

// TokenClaims are the claims of an access or ID token that the product reads.
// They are read without checking the signature: use only on tokens this
// client just received from the token endpoint over TLS.
type TokenClaims struct {
	TenantID          string   `json:"tid"`
	ObjectID          string   `json:"oid"`
	AppID             string   `json:"appid"`
	Audience          any      `json:"aud"`
	Roles             []string `json:"roles"`
	Scope             string   `json:"scp"`
	PreferredUsername string   `json:"preferred_username"`
	UPN               string   `json:"upn"`
	Name              string   `json:"name"`
	Email             string   `json:"email"`
	Expires           int64    `json:"exp"`
}

// ParseTokenClaims decodes a JWT's payload without verifying it.
func ParseTokenClaims(jwt string) (*TokenClaims, error) {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return nil, errors.New("graph: token is not a JWT")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, errors.New("graph: token payload is not base64url")
	}
	var c TokenClaims
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, errors.New("graph: token payload is not JSON")
	}
	return &c, nil
}

// GrantedRoles returns the application permissions in a fresh app token.
func (c *Client) GrantedRoles(ctx context.Context) ([]string, error) {
	if s, ok := c.tokens.(*appTokenSource); ok {
		s.Invalidate("")
	}
	tok, err := c.tokens.Token(ctx)
	if err != nil {
		return nil, err
	}
	claims, err := ParseTokenClaims(tok)
	if err != nil {
		return nil, err
	}
	return claims.Roles, nil
}
