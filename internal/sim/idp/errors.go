package idp

import (
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// aadError is an identity-platform error: an OAuth `error` value plus an
// AADSTS code and its message.
type aadError struct {
	status   int    // HTTP status for the token endpoint (400 unless invalid_client)
	err      string // OAuth error, e.g. "invalid_client"
	code     int    // AADSTS number, e.g. 7000215
	msg      string // text after "AADSTSnnnn: "
	suberror string // optional, e.g. "consent_required"
}

func (e *aadError) Error() string { return fmt.Sprintf("%s: AADSTS%d: %s", e.err, e.code, e.msg) }

func newErr(status int, oauthErr string, code int, format string, args ...any) *aadError {
	return &aadError{status: status, err: oauthErr, code: code, msg: fmt.Sprintf(format, args...)}
}

// errorBody is the token endpoint's error JSON, in Microsoft's field order.
type errorBody struct {
	Error         string `json:"error"`
	Description   string `json:"error_description"`
	Codes         []int  `json:"error_codes"`
	Timestamp     string `json:"timestamp"`
	TraceID       string `json:"trace_id"`
	CorrelationID string `json:"correlation_id"`
	URI           string `json:"error_uri,omitempty"`
	Suberror      string `json:"suberror,omitempty"`
}

// errorContext holds the ids and time Microsoft prints under every error.
type errorContext struct {
	traceID, correlationID, timestamp string
}

func (p *Provider) errorContext(r *http.Request) errorContext {
	corr := r.Header.Get("client-request-id")
	if _, err := uuid.Parse(corr); err != nil {
		corr = uuid.NewString()
	}
	return errorContext{
		traceID:       uuid.NewString(),
		correlationID: corr,
		timestamp:     p.now().UTC().Format("2006-01-02 15:04:05Z"),
	}
}

func (c errorContext) description(e *aadError) string {
	return fmt.Sprintf("AADSTS%d: %s\r\nTrace ID: %s\r\nCorrelation ID: %s\r\nTimestamp: %s",
		e.code, e.msg, c.traceID, c.correlationID, c.timestamp)
}

func (p *Provider) writeJSONError(w http.ResponseWriter, r *http.Request, e *aadError) {
	c := p.errorContext(r)
	body := errorBody{
		Error:         e.err,
		Description:   c.description(e),
		Codes:         []int{e.code},
		Timestamp:     c.timestamp,
		TraceID:       c.traceID,
		CorrelationID: c.correlationID,
		URI:           baseURL(r) + "/error?code=" + strconv.Itoa(e.code),
		Suberror:      e.suberror,
	}
	status := e.status
	if status == 0 {
		status = http.StatusBadRequest
	}
	w.Header().Set("x-ms-request-id", c.traceID)
	w.Header().Set("client-request-id", c.correlationID)
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store, no-cache")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

var errorPage = template.Must(template.New("error").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Sign in to your account</title></head>
<body>
<h1>Sign in</h1>
<p>Sorry, but we’re having trouble signing you in.</p>
<p id="error">AADSTS{{.Code}}: {{.Message}}</p>
<table>
<tr><td>Request Id:</td><td>{{.TraceID}}</td></tr>
<tr><td>Correlation Id:</td><td>{{.CorrelationID}}</td></tr>
<tr><td>Timestamp:</td><td>{{.Timestamp}}</td></tr>
<tr><td>Message:</td><td>AADSTS{{.Code}}: {{.Message}}</td></tr>
</table>
</body></html>
`))

// writeHTMLError renders Microsoft's sign-in error page, used where the
// redirect URI cannot be trusted (unknown tenant or app, redirect mismatch).
func (p *Provider) writeHTMLError(w http.ResponseWriter, r *http.Request, e *aadError) {
	c := p.errorContext(r)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store, no-cache")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("x-ms-request-id", c.traceID)
	status := e.status
	if status == 0 {
		status = http.StatusBadRequest
	}
	w.WriteHeader(status)
	_ = errorPage.Execute(w, map[string]any{
		"Code": e.code, "Message": e.msg,
		"TraceID": c.traceID, "CorrelationID": c.correlationID,
		"Timestamp": p.now().UTC().Format(time.RFC3339),
	})
}

// redirectError sends an authorize-style error back to a validated redirect URI.
func (p *Provider) redirectError(w http.ResponseWriter, r *http.Request, redirectURI, mode, state string, e *aadError) {
	c := p.errorContext(r)
	v := url.Values{}
	v.Set("error", e.err)
	v.Set("error_description", c.description(e))
	v.Set("error_uri", baseURL(r)+"/error?code="+strconv.Itoa(e.code))
	if e.suberror != "" {
		v.Set("error_subcode", e.suberror)
	}
	if state != "" {
		v.Set("state", state)
	}
	deliver(w, r, redirectURI, mode, v)
}

var formPostPage = template.Must(template.New("form_post").Parse(`<html><head><title>Working...</title></head><body><form method="POST" name="hiddenform" action="{{.Action}}">{{range .Fields}}<input type="hidden" name="{{.Name}}" value="{{.Value}}" />{{end}}<noscript><p>Script is disabled. Click Submit to continue.</p><input type="submit" value="Submit" /></noscript></form><script language="javascript">document.forms[0].submit();</script></body></html>
`))

// deliver returns params to redirectURI using the response mode: query
// (302 with the parameters in the query), fragment, or form_post (an
// auto-submitting HTML form).
func deliver(w http.ResponseWriter, r *http.Request, redirectURI, mode string, params url.Values) {
	w.Header().Set("Cache-Control", "no-store, no-cache")
	switch mode {
	case "form_post":
		type field struct{ Name, Value string }
		var fields []field
		for _, k := range sortedKeys(params) {
			for _, v := range params[k] {
				fields = append(fields, field{k, v})
			}
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		_ = formPostPage.Execute(w, map[string]any{"Action": template.URL(redirectURI), "Fields": fields})
	case "fragment":
		u := strings.SplitN(redirectURI, "#", 2)[0]
		http.Redirect(w, r, u+"#"+params.Encode(), http.StatusFound)
	default:
		u, err := url.Parse(redirectURI)
		if err != nil {
			http.Error(w, "bad redirect_uri", http.StatusBadRequest)
			return
		}
		q := u.Query()
		for k, vs := range params {
			q[k] = vs
		}
		u.RawQuery = q.Encode()
		http.Redirect(w, r, u.String(), http.StatusFound)
	}
}
