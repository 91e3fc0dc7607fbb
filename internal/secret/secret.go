// Package secret seals secrets at rest (client secrets, refresh tokens, SIP
// passwords) with AES-256-GCM. A sealed value starts with the id of the key
// that sealed it, so keys can be rotated: a Keyring seals with its primary
// key and opens with any key it holds.
package secret

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// KeySize is the length of a key in bytes (AES-256).
const KeySize = 32

const idLen = 4 // bytes of key id at the start of a sealed value

// ErrUnknownKey: the value was sealed with a key this keyring does not hold.
var ErrUnknownKey = errors.New("secret: sealed with an unknown key")

// ErrCorrupt: the value is not a sealed value or was tampered with.
var ErrCorrupt = errors.New("secret: sealed value is corrupt or was tampered with")

type key struct {
	id   [idLen]byte
	aead cipher.AEAD
}

// Keyring seals with its primary key and opens with any of its keys.
type Keyring struct {
	keys []key // keys[0] is primary
}

// NewKeyring builds a keyring; the first key is the primary one.
func NewKeyring(keys ...[]byte) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("secret: no key")
	}
	kr := &Keyring{}
	for i, k := range keys {
		if len(k) != KeySize {
			return nil, fmt.Errorf("secret: key %d is %d bytes, want %d", i, len(k), KeySize)
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCMWithRandomNonce(block)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(append([]byte("switchboard key id\x00"), k...))
		var id [idLen]byte
		copy(id[:], sum[:])
		kr.keys = append(kr.keys, key{id: id, aead: aead})
	}
	return kr, nil
}

// Seal encrypts plaintext; the key id is bound as additional data.
func (kr *Keyring) Seal(plaintext []byte) []byte {
	k := kr.keys[0]
	out := make([]byte, idLen, idLen+len(plaintext)+k.aead.Overhead())
	copy(out, k.id[:])
	return k.aead.Seal(out, nil, plaintext, k.id[:])
}

// Open decrypts a value made by Seal with any key of the ring.
func (kr *Keyring) Open(sealed []byte) ([]byte, error) {
	if len(sealed) < idLen {
		return nil, ErrCorrupt
	}
	for _, k := range kr.keys {
		if string(k.id[:]) != string(sealed[:idLen]) {
			continue
		}
		pt, err := k.aead.Open(nil, nil, sealed[idLen:], k.id[:])
		if err != nil {
			return nil, ErrCorrupt
		}
		return pt, nil
	}
	return nil, ErrUnknownKey
}

// SealString seals s and returns it base64-encoded (for text columns and JSON).
func (kr *Keyring) SealString(s string) string {
	return base64.RawStdEncoding.EncodeToString(kr.Seal([]byte(s)))
}

// OpenString reverses SealString.
func (kr *Keyring) OpenString(s string) (string, error) {
	b, err := base64.RawStdEncoding.DecodeString(s)
	if err != nil {
		return "", ErrCorrupt
	}
	pt, err := kr.Open(b)
	return string(pt), err
}

// ParseKey reads a key given as 64 hex digits or base64 of 32 bytes.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if b, err := hex.DecodeString(s); err == nil && len(b) == KeySize {
		return b, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == KeySize {
			return b, nil
		}
	}
	return nil, errors.New("secret key must be 32 bytes given as 64 hex digits or base64")
}

// NewKey returns a fresh random key.
func NewKey() []byte {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return k
}

// LoadOrCreateKeyFile reads the key stored at path, or creates the file
// (mode 0600) with a new random key when it does not exist.
func LoadOrCreateKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return ParseKey(string(b))
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	k := NewKey()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) { // another process won the race
			return LoadOrCreateKeyFile(path)
		}
		return nil, err
	}
	if _, err := f.WriteString(hex.EncodeToString(k) + "\n"); err != nil {
		f.Close()
		return nil, err
	}
	return k, f.Close()
}

// RandomToken returns n random bytes, URL-safe base64 encoded.
func RandomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
