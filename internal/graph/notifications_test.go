package graph

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestValidationHandshake(t *testing.T) {
	r := httptest.NewRequest("POST", "/graph/notify?validationToken=Validation%3A+Testing+client+%3Cscript%3E", nil)
	tok, ok := ValidationToken(r)
	if !ok {
		t.Fatal("not recognised")
	}
	w := httptest.NewRecorder()
	WriteValidationResponse(w, tok)
	eq(t, "status", w.Code, http.StatusOK)
	eq(t, "content type", w.Header().Get("Content-Type"), "text/plain; charset=utf-8")
	eq(t, "body", w.Body.String(), "Validation: Testing client <script>")
	if _, ok := ValidationToken(httptest.NewRequest("POST", "/graph/notify", nil)); ok {
		t.Error("plain notification taken for validation")
	}
}

// encryptLikeGraph builds encryptedContent the way the docs describe Graph doing it.
func encryptLikeGraph(t *testing.T, pub *rsa.PublicKey, plain []byte) EncryptedContent {
	t.Helper()
	sym := make([]byte, 32)
	rand.Read(sym)
	pad := aes.BlockSize - len(plain)%aes.BlockSize
	padded := append(append([]byte(nil), plain...), bytes.Repeat([]byte{byte(pad)}, pad)...)
	block, _ := aes.NewCipher(sym)
	enc := make([]byte, len(padded))
	cipher.NewCBCEncrypter(block, sym[:16]).CryptBlocks(enc, padded)
	wrapped, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, pub, sym, nil)
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, sym)
	mac.Write(enc)
	return EncryptedContent{
		Data:          base64.StdEncoding.EncodeToString(enc),
		DataKey:       base64.StdEncoding.EncodeToString(wrapped),
		DataSignature: base64.StdEncoding.EncodeToString(mac.Sum(nil)),
	}
}

func TestDecryptResourceData(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	plain := readFixture(t, "notifications/presence-03-decrypted-resource-data.json")
	ec := encryptLikeGraph(t, &key.PublicKey, plain)
	got, err := DecryptResourceData(key, ec)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, plain) {
		t.Errorf("got %q", got)
	}
	p := decodeOne[Presence](t, got)
	eq(t, "id", p.ID, "{User Id}")

	ec.DataSignature = base64.StdEncoding.EncodeToString(make([]byte, 32))
	if _, err := DecryptResourceData(key, ec); !errors.Is(err, ErrBadSignature) {
		t.Errorf("err = %v, want ErrBadSignature", err)
	}
}
