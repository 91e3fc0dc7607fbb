package idp

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"math/big"
	"time"
)

// signingKey is one RSA key with the self-signed certificate Microsoft
// publishes in x5c; kid and x5t are both the certificate's SHA-1 thumbprint.
type signingKey struct {
	priv *rsa.PrivateKey
	kid  string
	cert []byte // DER
}

func (p *Provider) newSigningKey() (*signingKey, error) {
	priv, err := p.cfg.NewKey()
	if err != nil {
		return nil, fmt.Errorf("idp: generate signing key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, fmt.Errorf("idp: certificate serial: %w", err)
	}
	now := p.now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "accounts.accesscontrol.windows.net"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(5, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		return nil, fmt.Errorf("idp: self-signed certificate: %w", err)
	}
	sum := sha1.Sum(der)
	return &signingKey{priv: priv, kid: base64.RawURLEncoding.EncodeToString(sum[:]), cert: der}, nil
}

// RotateSigningKey makes a new signing key active. The previous keys stay in
// the JWKS (and valid for ValidateAccessToken) until Config.RetiredKeys newer
// rotations have happened. If key generation fails the old key stays active.
func (p *Provider) RotateSigningKey() {
	k, err := p.newSigningKey()
	if err != nil {
		p.log.Error("signing key rotation failed", "err", err)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys = append(p.keys, k)
	if max := p.cfg.RetiredKeys + 1; len(p.keys) > max {
		p.keys = append([]*signingKey(nil), p.keys[len(p.keys)-max:]...)
	}
	p.log.Info("signing key rotated", "kid", k.kid)
}

// ActiveKeyID returns the kid of the key that signs new tokens.
func (p *Provider) ActiveKeyID() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.keys[len(p.keys)-1].kid
}

func (p *Provider) activeKey() *signingKey {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.keys[len(p.keys)-1]
}

func (p *Provider) keyByID(kid string) (*signingKey, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, k := range p.keys {
		if k.kid == kid {
			return k, true
		}
	}
	return nil, false
}

// jwk is one entry of Microsoft's keys document.
type jwk struct {
	Kty    string   `json:"kty"`
	Use    string   `json:"use"`
	Kid    string   `json:"kid"`
	X5t    string   `json:"x5t"`
	N      string   `json:"n"`
	E      string   `json:"e"`
	X5c    []string `json:"x5c"`
	Issuer string   `json:"issuer,omitempty"`
}

func (p *Provider) jwks(issuer string) map[string][]jwk {
	p.mu.Lock()
	keys := append([]*signingKey(nil), p.keys...)
	p.mu.Unlock()
	out := make([]jwk, 0, len(keys))
	// Newest first, as a client picking "the first key" should pick the active one.
	for i := len(keys) - 1; i >= 0; i-- {
		k := keys[i]
		pub := k.priv.PublicKey
		out = append(out, jwk{
			Kty:    "RSA",
			Use:    "sig",
			Kid:    k.kid,
			X5t:    k.kid,
			N:      base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
			E:      base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
			X5c:    []string{base64.StdEncoding.EncodeToString(k.cert)},
			Issuer: issuer,
		})
	}
	return map[string][]jwk{"keys": out}
}
