package graph

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// Lifecycle events.
const (
	LifecycleReauthorizationRequired = "reauthorizationRequired"
	LifecycleSubscriptionRemoved     = "subscriptionRemoved"
	LifecycleMissed                  = "missed"
)

// ResourceData identifies the changed resource in a basic notification.
type ResourceData struct {
	ODataType string `json:"@odata.type,omitempty"`
	ODataID   string `json:"@odata.id,omitempty"`
	ODataEtag string `json:"@odata.etag,omitempty"`
	ID        string `json:"id,omitempty"`
}

// EncryptedContent is the encrypted resource data of a rich notification.
type EncryptedContent struct {
	Data                            string `json:"data"`
	DataSignature                   string `json:"dataSignature"`
	DataKey                         string `json:"dataKey"`
	EncryptionCertificateID         string `json:"encryptionCertificateId"`
	EncryptionCertificateThumbprint string `json:"encryptionCertificateThumbprint"`
}

// ChangeNotification is one item Graph POSTs to a notificationUrl (and, with
// LifecycleEvent set, to a lifecycleNotificationUrl).
type ChangeNotification struct {
	ID                             string            `json:"id,omitempty"`
	SubscriptionID                 string            `json:"subscriptionId"`
	SubscriptionExpirationDateTime DateTime          `json:"subscriptionExpirationDateTime,omitzero"`
	ClientState                    string            `json:"clientState,omitempty"`
	ChangeType                     string            `json:"changeType,omitempty"`
	Resource                       string            `json:"resource,omitempty"`
	TenantID                       string            `json:"tenantId,omitempty"`
	OrganizationID                 string            `json:"organizationId,omitempty"`
	ResourceData                   *ResourceData     `json:"resourceData,omitempty"`
	EncryptedContent               *EncryptedContent `json:"encryptedContent,omitempty"`
	LifecycleEvent                 string            `json:"lifecycleEvent,omitempty"`
}

// ChangeNotificationCollection is the body of a notification POST.
type ChangeNotificationCollection struct {
	Value            []ChangeNotification `json:"value"`
	ValidationTokens []string             `json:"validationTokens,omitempty"`
}

// LifecycleNotification is one item Graph POSTs to a lifecycleNotificationUrl.
type LifecycleNotification struct {
	SubscriptionID                 string   `json:"subscriptionId"`
	SubscriptionExpirationDateTime DateTime `json:"subscriptionExpirationDateTime,omitzero"`
	TenantID                       string   `json:"tenantId,omitempty"`
	OrganizationID                 string   `json:"organizationId,omitempty"`
	ClientState                    string   `json:"clientState,omitempty"`
	LifecycleEvent                 string   `json:"lifecycleEvent"`
	Resource                       string   `json:"resource,omitempty"`
}

// LifecycleNotificationCollection is the body of a lifecycle POST.
type LifecycleNotificationCollection struct {
	Value []LifecycleNotification `json:"value"`
}

// maxNotificationBody bounds what the decoders read from a webhook body.
const maxNotificationBody = 4 << 20

// DecodeChangeNotifications reads a notification POST body (at most 4 MiB).
func DecodeChangeNotifications(r io.Reader) (ChangeNotificationCollection, error) {
	var c ChangeNotificationCollection
	if err := json.NewDecoder(io.LimitReader(r, maxNotificationBody)).Decode(&c); err != nil {
		return c, fmt.Errorf("graph: decode change notifications: %w", err)
	}
	return c, nil
}

// DecodeLifecycleNotifications reads a lifecycle POST body (at most 4 MiB).
func DecodeLifecycleNotifications(r io.Reader) (LifecycleNotificationCollection, error) {
	var c LifecycleNotificationCollection
	if err := json.NewDecoder(io.LimitReader(r, maxNotificationBody)).Decode(&c); err != nil {
		return c, fmt.Errorf("graph: decode lifecycle notifications: %w", err)
	}
	return c, nil
}

// ValidationToken reports whether r is Graph's notification-URL validation request
// (POST {notificationUrl}?validationToken=...) and returns the decoded token.
func ValidationToken(r *http.Request) (string, bool) {
	if !r.URL.Query().Has("validationToken") {
		return "", false
	}
	return r.URL.Query().Get("validationToken"), true
}

// WriteValidationResponse answers a validation request as Graph requires: 200 OK,
// text/plain, the URL-decoded token as the body (nosniff, so it is never rendered).
func WriteValidationResponse(w http.ResponseWriter, token string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, token)
}

// Errors of DecryptResourceData.
var ErrBadSignature = errors.New("graph: notification data signature mismatch")

// DecryptResourceData decrypts the encryptedContent of a rich notification with the
// private key of the subscription's encryptionCertificate: RSA-OAEP (SHA-1) unwraps the
// symmetric key, HMAC-SHA256 over the encrypted bytes is checked against dataSignature,
// then AES-CBC (IV = first 16 bytes of the key, PKCS#7 padding) yields the resource JSON.
func DecryptResourceData(key *rsa.PrivateKey, ec EncryptedContent) ([]byte, error) {
	wrapped, err := base64.StdEncoding.DecodeString(ec.DataKey)
	if err != nil {
		return nil, fmt.Errorf("graph: dataKey: %w", err)
	}
	sym, err := rsa.DecryptOAEP(sha1.New(), nil, key, wrapped, nil)
	if err != nil {
		return nil, fmt.Errorf("graph: unwrap dataKey: %w", err)
	}
	data, err := base64.StdEncoding.DecodeString(ec.Data)
	if err != nil {
		return nil, fmt.Errorf("graph: data: %w", err)
	}
	sig, err := base64.StdEncoding.DecodeString(ec.DataSignature)
	if err != nil {
		return nil, fmt.Errorf("graph: dataSignature: %w", err)
	}
	mac := hmac.New(sha256.New, sym)
	mac.Write(data)
	if !hmac.Equal(mac.Sum(nil), sig) {
		return nil, ErrBadSignature
	}
	block, err := aes.NewCipher(sym)
	if err != nil {
		return nil, fmt.Errorf("graph: symmetric key: %w", err)
	}
	if len(data) == 0 || len(data)%aes.BlockSize != 0 {
		return nil, errors.New("graph: encrypted data is not a whole number of blocks")
	}
	out := make([]byte, len(data))
	cipher.NewCBCDecrypter(block, sym[:aes.BlockSize]).CryptBlocks(out, data)
	pad := int(out[len(out)-1])
	if pad == 0 || pad > aes.BlockSize || pad > len(out) {
		return nil, errors.New("graph: bad padding")
	}
	for _, b := range out[len(out)-pad:] {
		if int(b) != pad {
			return nil, errors.New("graph: bad padding")
		}
	}
	return out[:len(out)-pad], nil
}
