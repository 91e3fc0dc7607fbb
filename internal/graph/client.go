package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Defaults used by New.
const (
	DefaultGraphURL       = "https://graph.microsoft.com"
	DefaultLoginURL       = "https://login.microsoftonline.com"
	DefaultScope          = "https://graph.microsoft.com/.default"
	DefaultMaxConcurrency = 4
	DefaultMaxRetries     = 5
	DefaultMaxRetryAfter  = 2 * time.Minute
	apiVersion            = "/v1.0"
	maxErrorBody          = 1 << 20
)

// Config configures a Client. Zero values take the defaults named per field.
type Config struct {
	GraphURL     string // default https://graph.microsoft.com (without /v1.0)
	LoginURL     string // default https://login.microsoftonline.com
	TenantID     string // tenant GUID or verified domain (required for app tokens)
	ClientID     string
	ClientSecret string
	// Scope for app tokens; default https://graph.microsoft.com/.default.
	Scope string
	// DelegatedScopes are sent when refreshing a delegated token; default
	// ["https://graph.microsoft.com/.default", "offline_access"].
	DelegatedScopes []string

	HTTPClient *http.Client // default: a client with a 60 s timeout
	Logger     *slog.Logger // default: discards

	MaxConcurrency int // concurrent requests in flight for this client (tenant); default 4
	MaxRetries     int // retries after the first attempt; default 5; negative means none
	// MaxRetryAfter: a Retry-After longer than this is not waited for; the *Error (with
	// RetryAfter set) is returned so the caller can requeue. Default 2 minutes.
	MaxRetryAfter time.Duration
	// BackoffBase and BackoffMax shape exponential backoff with full jitter:
	// sleep = rand[0, min(BackoffMax, BackoffBase*2^attempt)). Defaults 500 ms and 30 s.
	BackoffBase, BackoffMax time.Duration

	Now   func() time.Time                                 // default time.Now
	Sleep func(ctx context.Context, d time.Duration) error // default: timer or ctx.Done

	// TokenSource overrides how access tokens are obtained (NewDelegated sets it).
	TokenSource TokenSource
	// Gate limits concurrent requests. Clients for the same tenant (say an app-token
	// client and a delegated one) can share one Gate; nil = a new Gate of MaxConcurrency.
	Gate *Gate
}

// Gate is a counting semaphore shared by the clients of one tenant.
type Gate struct{ ch chan struct{} }

// NewGate returns a Gate admitting n concurrent requests (n < 1 means 1).
func NewGate(n int) *Gate { return &Gate{ch: make(chan struct{}, max(n, 1))} }

func (g *Gate) acquire(ctx context.Context) error {
	select {
	case g.ch <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *Gate) release() { <-g.ch }

// Client talks to Microsoft Graph for one tenant. It is safe for concurrent use.
type Client struct {
	cfg      Config
	graph    *url.URL
	http     *http.Client
	log      *slog.Logger
	gate     *Gate
	tokens   TokenSource
	now      func() time.Time
	sleep    func(ctx context.Context, d time.Duration) error
	retries  int
	maxRA    time.Duration
	bBase    time.Duration
	bMax     time.Duration
	tokenURL string
}

// New validates cfg, applies defaults and returns a Client that uses app-only tokens
// (client credentials) unless cfg.TokenSource is set.
func New(cfg Config) (*Client, error) {
	if cfg.GraphURL == "" {
		cfg.GraphURL = DefaultGraphURL
	}
	if cfg.LoginURL == "" {
		cfg.LoginURL = DefaultLoginURL
	}
	cfg.GraphURL = strings.TrimRight(cfg.GraphURL, "/")
	cfg.LoginURL = strings.TrimRight(cfg.LoginURL, "/")
	gu, err := url.Parse(cfg.GraphURL)
	if err != nil || gu.Scheme == "" || gu.Host == "" {
		return nil, fmt.Errorf("graph: invalid GraphURL %q", cfg.GraphURL)
	}
	if lu, err := url.Parse(cfg.LoginURL); err != nil || lu.Scheme == "" || lu.Host == "" {
		return nil, fmt.Errorf("graph: invalid LoginURL %q", cfg.LoginURL)
	}
	if cfg.TokenSource == nil && (cfg.TenantID == "" || cfg.ClientID == "" || cfg.ClientSecret == "") {
		return nil, errors.New("graph: TenantID, ClientID and ClientSecret are required")
	}
	if cfg.Scope == "" {
		cfg.Scope = DefaultScope
	}
	if len(cfg.DelegatedScopes) == 0 {
		cfg.DelegatedScopes = []string{DefaultScope, "offline_access"}
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 60 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxConcurrency <= 0 {
		cfg.MaxConcurrency = DefaultMaxConcurrency
	}
	switch {
	case cfg.MaxRetries == 0:
		cfg.MaxRetries = DefaultMaxRetries
	case cfg.MaxRetries < 0:
		cfg.MaxRetries = 0
	}
	if cfg.MaxRetryAfter <= 0 {
		cfg.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if cfg.BackoffBase <= 0 {
		cfg.BackoffBase = 500 * time.Millisecond
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleepCtx
	}
	c := &Client{
		cfg:      cfg,
		graph:    gu,
		http:     cfg.HTTPClient,
		log:      cfg.Logger,
		gate:     cfg.Gate,
		now:      cfg.Now,
		sleep:    cfg.Sleep,
		retries:  cfg.MaxRetries,
		maxRA:    cfg.MaxRetryAfter,
		bBase:    cfg.BackoffBase,
		bMax:     cfg.BackoffMax,
		tokenURL: cfg.LoginURL + "/" + url.PathEscape(cfg.TenantID) + "/oauth2/v2.0/token",
	}
	if c.gate == nil {
		c.gate = NewGate(cfg.MaxConcurrency)
	}
	c.tokens = cfg.TokenSource
	if c.tokens == nil {
		c.tokens = &appTokenSource{c: c, lock: make(chan struct{}, 1)}
	}
	return c, nil
}

// Gate returns the client's concurrency gate, to share with another client of the
// same tenant (Config.Gate).
func (c *Client) Gate() *Gate { return c.gate }

// TenantID returns the configured tenant.
func (c *Client) TenantID() string { return c.cfg.TenantID }

// ClientID returns the configured application (client) ID.
func (c *Client) ClientID() string { return c.cfg.ClientID }

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// RequestOption adjusts one request.
type RequestOption func(*reqOpts)

type reqOpts struct {
	header http.Header
}

func (o *reqOpts) set(k, v string) {
	if o.header == nil {
		o.header = make(http.Header)
	}
	o.header.Set(k, v)
}

// WithHeader sets a request header.
func WithHeader(key, value string) RequestOption {
	return func(o *reqOpts) { o.set(key, value) }
}

// WithConsistencyEventual sets ConsistencyLevel: eventual (advanced queries). It is sent
// on every page, since nextLinks do not carry headers.
func WithConsistencyEventual() RequestOption { return WithHeader("ConsistencyLevel", "eventual") }

// WithPreferMinimal sets Prefer: return=minimal (delta: only changed properties).
func WithPreferMinimal() RequestOption { return addPrefer("return=minimal") }

// WithMaxPageSize sets Prefer: odata.maxpagesize=n (Outlook collections and delta).
func WithMaxPageSize(n int) RequestOption { return addPrefer(fmt.Sprintf("odata.maxpagesize=%d", n)) }

// WithImmutableIDs sets Prefer: IdType="ImmutableId" (Outlook ids that survive moves).
func WithImmutableIDs() RequestOption { return addPrefer(`IdType="ImmutableId"`) }

func addPrefer(v string) RequestOption {
	return func(o *reqOpts) {
		if o.header == nil {
			o.header = make(http.Header)
		}
		o.header.Add("Prefer", v)
	}
}

// request is one logical HTTP request, replayable across retries.
type request struct {
	method      string
	url         string
	header      http.Header
	body        []byte
	contentType string
	auth        bool // attach a bearer token (Graph); false for the token endpoint
	limited     bool // counts against the concurrency limit
	path        string
}

// response is a fully read answer. release returns its buffer to the pool.
type response struct {
	status int
	header http.Header
	buf    *bytes.Buffer
}

func (r *response) bytes() []byte { return r.buf.Bytes() }

func (r *response) release() {
	if r != nil && r.buf != nil {
		if r.buf.Cap() <= 8<<20 {
			r.buf.Reset()
			bufPool.Put(r.buf)
		}
		r.buf = nil
	}
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// resolve turns a path ("/users", "/v1.0/users") or an absolute link into a URL with
// the query appended. Absolute links must point at the configured Graph host.
func (c *Client) resolve(path string, q url.Values) (full, bare string, err error) {
	if strings.HasPrefix(path, "https://") || strings.HasPrefix(path, "http://") {
		u, err := url.Parse(path)
		if err != nil {
			return "", "", fmt.Errorf("graph: bad link: %w", err)
		}
		if !strings.EqualFold(u.Host, c.graph.Host) || u.Scheme != c.graph.Scheme {
			return "", "", fmt.Errorf("%w: %s://%s", ErrForeignLink, u.Scheme, u.Host)
		}
		full = path
		if len(q) > 0 {
			sep := "?"
			if strings.Contains(full, "?") {
				sep = "&"
			}
			full += sep + encodeQuery(q)
		}
		return full, u.Path, nil
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	if !strings.HasPrefix(path, "/v1.0/") && !strings.HasPrefix(path, "/beta/") {
		path = apiVersion + path
	}
	full = c.cfg.GraphURL + path
	if len(q) > 0 {
		full += "?" + encodeQuery(q)
	}
	return full, path, nil
}

// encodeQuery encodes like url.Values.Encode but keeps "$" literal in keys and encodes
// spaces as %20, which is what Graph's documentation shows.
func encodeQuery(q url.Values) string {
	var b strings.Builder
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		ek := strings.ReplaceAll(url.QueryEscape(k), "%24", "$")
		for _, v := range q[k] {
			if b.Len() > 0 {
				b.WriteByte('&')
			}
			b.WriteString(ek)
			b.WriteByte('=')
			b.WriteString(strings.ReplaceAll(url.QueryEscape(v), "+", "%20"))
		}
	}
	return b.String()
}

// Do sends one Graph request and decodes a JSON answer into out (when out is non-nil
// and the answer has a body). body, when non-nil, is sent as JSON; a []byte or
// json.RawMessage body is sent as is. path is relative to /v1.0 ("/users/{id}") or an
// absolute Graph link. Non-2xx answers become *Error after retries.
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, body, out any, opts ...RequestOption) error {
	resp, err := c.call(ctx, method, path, query, body, opts)
	if err != nil {
		return err
	}
	defer resp.release()
	if out == nil || resp.buf.Len() == 0 || resp.status == http.StatusNoContent {
		return nil
	}
	if err := json.Unmarshal(resp.bytes(), out); err != nil {
		return fmt.Errorf("graph: %s %s: decode: %w", method, stripQuery(path), err)
	}
	return nil
}

func stripQuery(p string) string {
	if i := strings.IndexByte(p, '?'); i >= 0 {
		return p[:i]
	}
	return p
}

// call builds and sends an authenticated Graph request.
func (c *Client) call(ctx context.Context, method, path string, query url.Values, body any, opts []RequestOption) (*response, error) {
	full, bare, err := c.resolve(path, query)
	if err != nil {
		return nil, err
	}
	var o reqOpts
	for _, opt := range opts {
		opt(&o)
	}
	r := &request{method: method, url: full, header: o.header, auth: true, limited: true, path: bare}
	if body != nil {
		switch b := body.(type) {
		case []byte:
			r.body = b
		case json.RawMessage:
			r.body = b
		default:
			r.body, err = json.Marshal(body)
			if err != nil {
				return nil, fmt.Errorf("graph: encode body: %w", err)
			}
		}
		r.contentType = "application/json"
	}
	return c.send(ctx, r, func(status int, h http.Header, b []byte) error {
		e := parseGraphError(status, h, b, c.now())
		e.Method, e.Path = method, bare
		return e
	})
}

func retryableStatus(s int) bool {
	switch s {
	case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// backoff returns a full-jitter exponential delay for the given retry number (0-based).
func (c *Client) backoff(attempt int) time.Duration {
	d := c.bMax
	if attempt < 30 {
		if e := c.bBase << attempt; e > 0 && e < d {
			d = e
		}
	}
	return rand.N(d + 1)
}

// send runs r with retries. A 2xx answer is returned read into a pooled buffer; any
// other final answer is turned into an error by mkErr.
func (c *Client) send(ctx context.Context, r *request, mkErr func(int, http.Header, []byte) error) (*response, error) {
	refreshed := false
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		resp, tok, err := c.once(ctx, r)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if isPermanent(err) || attempt >= c.retries {
				return nil, fmt.Errorf("graph: %s %s: %w", r.method, r.path, err)
			}
			d := c.backoff(attempt)
			c.log.DebugContext(ctx, "graph: transport error, retrying", "method", r.method, "path", r.path,
				"attempt", attempt+1, "delay", d, "err", err)
			if err := c.sleep(ctx, d); err != nil {
				return nil, err
			}
			continue
		}
		if resp.status >= 200 && resp.status < 300 {
			return resp, nil
		}
		e := mkErr(resp.status, resp.header, resp.bytes())
		ra := parseRetryAfter(resp.header.Get("Retry-After"), c.now())
		status := resp.status
		resp.release()
		if status == http.StatusUnauthorized && r.auth && !refreshed {
			if inv, ok := c.tokens.(interface{ Invalidate(string) }); ok {
				refreshed = true
				inv.Invalidate(tok)
				attempt-- // a token refresh is not a retry
				c.log.DebugContext(ctx, "graph: 401, refreshing token", "method", r.method, "path", r.path)
				continue
			}
		}
		if !retryableStatus(status) || attempt >= c.retries {
			return nil, e
		}
		d := ra
		if d == 0 {
			d = c.backoff(attempt)
		} else if d > c.maxRA {
			return nil, e
		}
		c.log.DebugContext(ctx, "graph: retrying", "method", r.method, "path", r.path, "status", status,
			"attempt", attempt+1, "delay", d)
		if err := c.sleep(ctx, d); err != nil {
			return nil, err
		}
	}
}

// permanentError marks errors that retrying cannot fix.
type permanentError struct{ err error }

func (p permanentError) Error() string { return p.err.Error() }
func (p permanentError) Unwrap() error { return p.err }

func isPermanent(err error) bool {
	var p permanentError
	if errors.As(err, &p) {
		return true
	}
	var ae *AuthError
	return errors.As(err, &ae)
}

// once performs one attempt: token, concurrency slot, HTTP round trip, full body read.
func (c *Client) once(ctx context.Context, r *request) (*response, string, error) {
	var tok string
	if r.auth {
		var err error
		tok, err = c.tokens.Token(ctx)
		if err != nil {
			var ae *AuthError
			if errors.As(err, &ae) || ctx.Err() != nil {
				return nil, "", err
			}
			// The token request already had its own retries.
			return nil, "", permanentError{fmt.Errorf("token: %w", err)}
		}
	}
	if r.limited {
		if err := c.gate.acquire(ctx); err != nil {
			return nil, tok, err
		}
		defer c.gate.release()
	}
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, r.url, body)
	if err != nil {
		return nil, tok, permanentError{err}
	}
	for k, vs := range r.header {
		req.Header[k] = vs
	}
	if r.contentType != "" {
		req.Header.Set("Content-Type", r.contentType)
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "application/json")
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	hr, err := c.http.Do(req)
	if err != nil {
		return nil, tok, err
	}
	defer hr.Body.Close()
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	var src io.Reader = hr.Body
	if hr.StatusCode >= 300 {
		src = io.LimitReader(hr.Body, maxErrorBody)
	}
	if _, err := buf.ReadFrom(src); err != nil {
		buf.Reset()
		bufPool.Put(buf)
		return nil, tok, err
	}
	return &response{status: hr.StatusCode, header: hr.Header, buf: buf}, tok, nil
}
