package graph

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors matched with errors.Is against an *Error (or anything wrapping one).
var (
	// ErrNotFound: Graph answered 404.
	ErrNotFound = errors.New("graph: not found")
	// ErrForbidden: Graph answered 403 (Authorization_RequestDenied, ErrorAccessDenied, quota...).
	ErrForbidden = errors.New("graph: forbidden")
	// ErrUnauthorized: Graph answered 401 even after a fresh token.
	ErrUnauthorized = errors.New("graph: unauthorized")
	// ErrThrottled: Graph answered 429 (or 503 with Retry-After) and retries ran out.
	ErrThrottled = errors.New("graph: throttled")
	// ErrConflict: Graph answered 409 (for example a duplicate subscription).
	ErrConflict = errors.New("graph: conflict")
	// ErrResyncRequired: a delta or sync-state token is no longer valid (410 Gone,
	// syncStateNotFound, resyncRequired, ...). Start over with a full read.
	ErrResyncRequired = errors.New("graph: delta token expired, full resync required")
	// ErrForeignLink: a nextLink/deltaLink points at another host than Config.GraphURL;
	// it is refused so that the bearer token never leaves Graph.
	ErrForeignLink = errors.New("graph: link points outside the configured Graph URL")
)

// Error is a non-2xx answer from Microsoft Graph: {"error":{"code","message","innerError"}}.
type Error struct {
	Status     int           // HTTP status (or the inner status of a $batch item)
	Code       string        // error.code, e.g. Request_ResourceNotFound, Authorization_RequestDenied
	Message    string        // error.message
	InnerCode  string        // error.innerError.code when present
	RequestID  string        // innerError.request-id or the request-id response header
	Date       string        // innerError.date, as sent
	RetryAfter time.Duration // from Retry-After when the answer carried one
	Method     string        // request method (empty for $batch items)
	Path       string        // request path without query (empty for $batch items)
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("graph: ")
	if e.Method != "" {
		b.WriteString(e.Method)
		b.WriteByte(' ')
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(strconv.Itoa(e.Status))
	if e.Code != "" {
		b.WriteByte(' ')
		b.WriteString(e.Code)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.RequestID != "" {
		b.WriteString(" (request-id ")
		b.WriteString(e.RequestID)
		b.WriteByte(')')
	}
	return b.String()
}

// resyncCodes are error codes Graph and Outlook use for an expired or unknown delta state.
var resyncCodes = []string{
	"syncstatenotfound", "resyncrequired", "syncstateinvalid", "invalidsyncstate",
	"errorinvalidsyncstatedata", "errorsyncstatenotfound", "syncstatetokenexpired",
}

// Is lets errors.Is match the sentinels above.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Status == http.StatusNotFound && !e.isResync()
	case ErrForbidden:
		return e.Status == http.StatusForbidden
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized
	case ErrThrottled:
		return e.Status == http.StatusTooManyRequests ||
			(e.Status == http.StatusServiceUnavailable && e.RetryAfter > 0)
	case ErrConflict:
		return e.Status == http.StatusConflict
	case ErrResyncRequired:
		return e.isResync()
	}
	return false
}

func (e *Error) isResync() bool {
	if e.Status == http.StatusGone {
		return true
	}
	if e.Status < 400 || e.Status >= 500 {
		return false
	}
	return slices.Contains(resyncCodes, strings.ToLower(e.Code)) ||
		slices.Contains(resyncCodes, strings.ToLower(e.InnerCode))
}

// graphErrorBody is the documented error envelope.
type graphErrorBody struct {
	Error struct {
		Code       string `json:"code"`
		Message    string `json:"message"`
		InnerError struct {
			Code      string `json:"code"`
			RequestID string `json:"request-id"`
			Date      string `json:"date"`
		} `json:"innerError"`
	} `json:"error"`
}

// parseGraphError builds an *Error from a status, headers and body. It never fails:
// a body that is not the documented envelope leaves Code empty and keeps a short
// excerpt as the message.
func parseGraphError(status int, h http.Header, body []byte, now time.Time) *Error {
	e := &Error{Status: status}
	var eb graphErrorBody
	if err := json.Unmarshal(body, &eb); err == nil && (eb.Error.Code != "" || eb.Error.Message != "") {
		e.Code = eb.Error.Code
		e.Message = eb.Error.Message
		e.InnerCode = eb.Error.InnerError.Code
		e.RequestID = eb.Error.InnerError.RequestID
		e.Date = eb.Error.InnerError.Date
	} else if len(body) > 0 {
		e.Message = excerpt(body)
	} else {
		e.Message = http.StatusText(status)
	}
	if h != nil {
		if e.RequestID == "" {
			e.RequestID = h.Get("request-id")
		}
		e.RetryAfter = parseRetryAfter(h.Get("Retry-After"), now)
	}
	return e
}

func excerpt(b []byte) string {
	const max = 200
	s := strings.TrimSpace(string(b))
	if len(s) > max {
		s = s[:max] + "..."
	}
	return s
}

// parseRetryAfter reads delta-seconds (fractions allowed, as Graph sends "2.128") or an
// HTTP date. It returns 0 when the header is absent or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if f <= 0 {
			return 0
		}
		return time.Duration(f * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// AuthError is an error answer from the identity platform's token endpoint.
type AuthError struct {
	Status        int    // HTTP status
	Code          string // "error": invalid_client, invalid_grant, invalid_scope, ...
	AADSTS        int    // first of error_codes, else parsed from the description
	Description   string // error_description (first line only: trace lines are dropped)
	ErrorCodes    []int  // error_codes
	TraceID       string // trace_id
	CorrelationID string // correlation_id
	Timestamp     string // timestamp, as sent
}

func (e *AuthError) Error() string {
	var b strings.Builder
	b.WriteString("identity platform: ")
	if e.Code != "" {
		b.WriteString(e.Code)
	} else {
		b.WriteString(strconv.Itoa(e.Status))
	}
	if e.Description != "" {
		b.WriteString(": ")
		b.WriteString(e.Description)
	} else if e.AADSTS != 0 {
		fmt.Fprintf(&b, ": AADSTS%d", e.AADSTS)
	}
	if e.CorrelationID != "" {
		b.WriteString(" (correlation id ")
		b.WriteString(e.CorrelationID)
		b.WriteByte(')')
	}
	return b.String()
}

var aadstsRE = regexp.MustCompile(`AADSTS(\d+)`)

type authErrorBody struct {
	Error         string `json:"error"`
	Description   string `json:"error_description"`
	ErrorCodes    []int  `json:"error_codes"`
	Timestamp     string `json:"timestamp"`
	TraceID       string `json:"trace_id"`
	CorrelationID string `json:"correlation_id"`
}

// parseAuthError builds an *AuthError from a token-endpoint answer. It never fails.
func parseAuthError(status int, body []byte) *AuthError {
	e := &AuthError{Status: status}
	var ab authErrorBody
	if err := json.Unmarshal(body, &ab); err != nil {
		e.Description = excerpt(body)
	} else {
		e.Code = ab.Error
		e.ErrorCodes = ab.ErrorCodes
		e.TraceID = ab.TraceID
		e.CorrelationID = ab.CorrelationID
		e.Timestamp = ab.Timestamp
		desc := ab.Description
		if i := strings.IndexAny(desc, "\r\n"); i >= 0 {
			desc = desc[:i]
		}
		e.Description = strings.TrimSpace(desc)
		if len(ab.ErrorCodes) > 0 {
			e.AADSTS = ab.ErrorCodes[0]
		}
	}
	if e.AADSTS == 0 {
		if m := aadstsRE.FindStringSubmatch(e.Description); m != nil {
			e.AADSTS, _ = strconv.Atoi(m[1])
		}
	}
	return e
}

// AADSTS groups used by the Is* helpers.
var (
	aadInvalidSecret       = []int{7000215, 7000218}
	aadExpiredSecret       = []int{7000222}
	aadConsentMissing      = []int{65001, 65004, 500011, 90094, 90008, 7000229, 700016}
	aadTenantNotFound      = []int{90002, 900023, 90072, 90019}
	aadRefreshTokenExpired = []int{70008, 700082, 700084, 50173, 70043, 54005}
)

func (e *AuthError) in(codes []int) bool { return slices.Contains(codes, e.AADSTS) }

func asAuth(err error) (*AuthError, bool) {
	var ae *AuthError
	ok := errors.As(err, &ae)
	return ae, ok
}

// IsInvalidSecret: the client secret is wrong (AADSTS7000215; e.g. the secret ID was
// pasted instead of its value) or missing (AADSTS7000218).
func IsInvalidSecret(err error) bool {
	ae, ok := asAuth(err)
	return ok && ae.in(aadInvalidSecret)
}

// IsExpiredSecret: the client secret has expired (AADSTS7000222).
func IsExpiredSecret(err error) bool {
	ae, ok := asAuth(err)
	return ok && ae.in(aadExpiredSecret)
}

// IsConsentMissing: the application is not consented/installed in the tenant
// (AADSTS65001, 65004, 500011, 90094, 90008, 7000229, 700016).
func IsConsentMissing(err error) bool {
	ae, ok := asAuth(err)
	return ok && ae.in(aadConsentMissing)
}

// IsTenantNotFound: the tenant ID or domain does not exist (AADSTS90002, 900023, ...).
func IsTenantNotFound(err error) bool {
	ae, ok := asAuth(err)
	return ok && ae.in(aadTenantNotFound)
}

// IsRefreshTokenExpired: the delegated refresh token (or code) can no longer be used
// and the user must sign in again (AADSTS70008, 700082, 700084, 50173, 70043, 54005).
func IsRefreshTokenExpired(err error) bool {
	ae, ok := asAuth(err)
	return ok && ae.in(aadRefreshTokenExpired)
}

// Hint tells an administrator what to do about the error, in one or two sentences.
func (e *AuthError) Hint() string {
	switch {
	case e.in(aadInvalidSecret):
		return "The client secret is not valid. In Microsoft Entra admin center > App registrations > your app > Certificates & secrets, copy the secret's Value (not its Secret ID) and enter it again."
	case e.in(aadExpiredSecret):
		return "The client secret has expired. Create a new client secret for the app registration (Certificates & secrets) and enter its Value here."
	case e.AADSTS == 700016:
		return "The application (client) ID was not found in this tenant. Check the client ID and tenant ID, and grant admin consent for the app in this tenant."
	case e.AADSTS == 65004:
		return "Consent was declined. A Global Administrator must sign in and accept the requested permissions."
	case e.in(aadConsentMissing):
		return "The app has not been granted the required permissions in this tenant. A Global Administrator must grant admin consent (App registrations > API permissions > Grant admin consent), then retry."
	case e.in(aadTenantNotFound):
		return "The tenant was not found. Check the Directory (tenant) ID on the app registration's Overview page."
	case e.in(aadRefreshTokenExpired):
		return "The sign-in has expired or was revoked. The user must sign in with Microsoft again."
	case e.AADSTS == 53003:
		return "A Conditional Access policy blocked the sign-in. Exclude the app or service account from the policy, or adjust the policy."
	case e.AADSTS == 50011:
		return "The redirect URI does not match the app registration. Add the exact redirect URI shown here under Authentication > Redirect URIs."
	case e.AADSTS == 7000112:
		return "The application is disabled in this tenant. Enable the enterprise application in Microsoft Entra ID."
	case e.AADSTS == 70011 || e.AADSTS == 700022 || e.Code == "invalid_scope":
		return "The requested permission scope is not valid for this app. Check the API permissions of the app registration."
	case e.AADSTS == 90055 || e.Code == "temporarily_unavailable":
		return "Microsoft sign-in is busy or throttling this tenant. It will be retried automatically; no action is needed unless it persists."
	case e.Code == "invalid_client" || e.Code == "unauthorized_client":
		return "Microsoft rejected the app's credentials. Check the client ID, tenant ID and client secret of the app registration."
	case e.Code == "invalid_grant":
		return "The authorization grant is no longer valid. Sign in with Microsoft again."
	}
	return "Microsoft sign-in refused the request. Check the app registration (client ID, tenant ID, secret, permissions and admin consent)."
}

// Hint returns an administrator-facing hint for err when it carries an *AuthError or an
// *Error that an administrator can act on, else "".
func Hint(err error) string {
	if ae, ok := asAuth(err); ok {
		return ae.Hint()
	}
	var ge *Error
	if errors.As(err, &ge) {
		switch {
		case ge.Status == http.StatusForbidden:
			return "Microsoft Graph denied access. Check that the app has the required application permissions and that admin consent was granted (for contacts, also check any Exchange ApplicationAccessPolicy)."
		case ge.Status == http.StatusUnauthorized:
			return "Microsoft Graph rejected the access token. Reconnect the integration."
		case ge.Is(ErrThrottled):
			return "Microsoft Graph is throttling requests. The sync is retried automatically."
		}
	}
	return ""
}
