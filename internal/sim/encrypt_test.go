package sim

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	mathbig "math/big"
	"testing"
	"time"
)

// decryptRich undoes encryptedContent the way graph-facts 7.6 describes for receivers.
func decryptRich(t *testing.T, key *rsa.PrivateKey, enc map[string]any) []byte {
	t.Helper()
	b64 := func(k string) []byte {
		v, err := base64.StdEncoding.DecodeString(enc[k].(string))
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		return v
	}
	sym, err := rsa.DecryptOAEP(sha1.New(), nil, key, b64("dataKey"), nil)
	if err != nil {
		t.Fatal(err)
	}
	data := b64("data")
	mac := hmac.New(sha256.New, sym)
	mac.Write(data)
	if !hmac.Equal(mac.Sum(nil), b64("dataSignature")) {
		t.Fatal("dataSignature does not match")
	}
	block, _ := aes.NewCipher(sym)
	cipher.NewCBCDecrypter(block, sym[:16]).CryptBlocks(data, data)
	return data[:len(data)-int(data[len(data)-1])]
}

func TestRichPresenceNotification(t *testing.T) {
	b := newBundle(t, func(c *Config) { c.Users = 12; c.Groups = 1 })
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: mathbig.NewInt(1), Subject: pkix.Name{CommonName: "pbx"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	users := b.ten.UserList()
	rc := newReceiver(t)
	sub := map[string]any{"changeType": "updated", "notificationUrl": rc.srv.URL, "resource": "/communications/presences/" + users[5].ID,
		"expirationDateTime": time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano), "clientState": "rich",
		"includeResourceData": true, "encryptionCertificate": base64.StdEncoding.EncodeToString(der), "encryptionCertificateId": "pbx-1"}
	mustStatus(t, b.do("POST", "/v1.0/subscriptions", "del:"+users[5].ID, sub), 201)
	if err := b.ten.SetTeamsPresence(users[5].ID, "Busy", "InAMeeting"); err != nil {
		t.Fatal(err)
	}
	if err := b.ten.SetTeamsPresence(users[5].ID, "Away", "Away"); err != nil {
		t.Fatal(err)
	}
	posts := rc.wait(t, 2)
	var n struct{ Value []map[string]any }
	if err := json.Unmarshal(posts[1], &n); err != nil {
		t.Fatal(err)
	}
	plain := decryptRich(t, key, n.Value[0]["encryptedContent"].(map[string]any))
	checkShape(t, "notifications/presence-03-decrypted-resource-data.json", plain, shapeOpts{})
	var p map[string]any
	_ = json.Unmarshal(plain, &p)
	if p["availability"] != "Away" || p["id"] != users[5].ID {
		t.Fatalf("decrypted %s", plain)
	}
	// Without a certificate includeResourceData is refused.
	delete(sub, "encryptionCertificate")
	sub["resource"] = "/communications/presences/" + users[6].ID
	mustStatus(t, b.do("POST", "/v1.0/subscriptions", "del:"+users[6].ID, sub), 400)
}
