package secret

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestSealOpen(t *testing.T) {
	kr, err := NewKeyring(NewKey())
	if err != nil {
		t.Fatal(err)
	}
	sealed := kr.Seal([]byte("client-secret-value"))
	if bytes.Contains(sealed, []byte("client-secret-value")) {
		t.Fatal("sealed value contains the plaintext")
	}
	if again := kr.Seal([]byte("client-secret-value")); bytes.Equal(again, sealed) {
		t.Fatal("two seals of the same value are identical: nonce not random")
	}
	pt, err := kr.Open(sealed)
	if err != nil || string(pt) != "client-secret-value" {
		t.Fatalf("Open = %q, %v", pt, err)
	}
	sealed[len(sealed)-1] ^= 1
	if _, err := kr.Open(sealed); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("tampered value: err = %v, want ErrCorrupt", err)
	}
	if _, err := kr.Open([]byte{1}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("short value: err = %v", err)
	}
}

func TestRotation(t *testing.T) {
	oldKey, newKey := NewKey(), NewKey()
	oldRing, _ := NewKeyring(oldKey)
	s := oldRing.SealString("refresh-token")
	rotated, _ := NewKeyring(newKey, oldKey)
	if got, err := rotated.OpenString(s); err != nil || got != "refresh-token" {
		t.Fatalf("rotated ring opens old value: %q, %v", got, err)
	}
	onlyNew, _ := NewKeyring(newKey)
	if _, err := onlyNew.OpenString(s); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("err = %v, want ErrUnknownKey", err)
	}
}

func TestParseKeyAndFile(t *testing.T) {
	if _, err := ParseKey("short"); err == nil {
		t.Fatal("short key accepted")
	}
	k := NewKey()
	path := filepath.Join(t.TempDir(), "sub", "secret.key")
	got, err := LoadOrCreateKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode = %v, %v", st.Mode(), err)
	}
	again, err := LoadOrCreateKeyFile(path)
	if err != nil || !bytes.Equal(got, again) {
		t.Fatal("key file not stable across loads")
	}
	if bytes.Equal(got, k) {
		t.Fatal("generated key equals an unrelated key")
	}
}

func TestPassword(t *testing.T) {
	h := HashPassword("correct horse")
	if err := CheckPassword(h, "correct horse"); err != nil {
		t.Fatal(err)
	}
	if err := CheckPassword(h, "wrong"); !errors.Is(err, ErrMismatch) {
		t.Fatalf("wrong password: %v", err)
	}
	if HashPassword("correct horse") == h {
		t.Fatal("hash not salted")
	}
	if err := CheckPassword("plain", "plain"); err == nil {
		t.Fatal("non-hash accepted")
	}
}
