package sim

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// richKey is the encryption certificate of a subscription with includeResourceData.
type richKey struct {
	pub        *rsa.PublicKey
	id         string
	thumbprint string
}

// parseEncryptionCert reads a base64 DER X.509 certificate with an RSA key of 2048-4096
// bits (graph-facts 7.6).
func parseEncryptionCert(b64, id string) (*richKey, error) {
	der, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
	if err != nil {
		return nil, fmt.Errorf("encryptionCertificate is not base64: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("encryptionCertificate is not an X.509 certificate: %w", err)
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok || pub.N.BitLen() < 2048 || pub.N.BitLen() > 4096 {
		return nil, errors.New("encryptionCertificate must hold an RSA key of 2048 to 4096 bits")
	}
	if id == "" || len(id) > 128 {
		return nil, errors.New("encryptionCertificateId is required (at most 128 characters)")
	}
	sum := sha1.Sum(der)
	return &richKey{pub: pub, id: id, thumbprint: strings.ToUpper(hex.EncodeToString(sum[:]))}, nil
}

// encryptedContent encrypts plain the way Graph does for rich notifications: a random
// 32-byte key wrapped with RSA-OAEP (SHA-1), AES-256-CBC with PKCS7 padding and the first
// 16 bytes of the key as IV, and an HMAC-SHA256 (keyed with the same key) of the cipher text.
func (k *richKey) encryptedContent(plain []byte) (obj, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	wrapped, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, k.pub, key, nil)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	pad := aes.BlockSize - len(plain)%aes.BlockSize
	data := append(append([]byte(nil), plain...), bytes.Repeat([]byte{byte(pad)}, pad)...)
	cipher.NewCBCEncrypter(block, key[:aes.BlockSize]).CryptBlocks(data, data)
	mac := hmac.New(sha256.New, key)
	mac.Write(data)
	return obj{
		{"data", base64.StdEncoding.EncodeToString(data)},
		{"dataSignature", base64.StdEncoding.EncodeToString(mac.Sum(nil))},
		{"dataKey", base64.StdEncoding.EncodeToString(wrapped)},
		{"encryptionCertificateId", k.id},
		{"encryptionCertificateThumbprint", k.thumbprint},
	}, nil
}
