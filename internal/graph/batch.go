package graph

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// MaxBatchSize is the number of requests Graph accepts in one $batch.
const MaxBatchSize = 20

// BatchRequest is one request inside a $batch.
type BatchRequest struct {
	ID        string            // unique in the call; "" = its 1-based index
	Method    string            // GET, POST, PATCH, DELETE...
	URL       string            // relative to the version: "/users/{id}/presence"
	Headers   map[string]string // e.g. ConsistencyLevel; Content-Type is added for bodies
	Body      any               // JSON-encoded when non-nil
	DependsOn []string          // ids in the same group of 20
}

// BatchResponse is the answer to one BatchRequest.
type BatchResponse struct {
	ID      string
	Status  int
	Headers map[string]string
	Body    json.RawMessage
	// Err is an *Error when Status >= 400 (after retries for 429/503/504), else nil.
	Err error
}

// Decode unmarshals the item's body into out.
func (r BatchResponse) Decode(out any) error {
	if r.Err != nil {
		return r.Err
	}
	if len(r.Body) == 0 {
		return nil
	}
	return json.Unmarshal(r.Body, out)
}

type wireBatchRequest struct {
	ID        string            `json:"id"`
	Method    string            `json:"method"`
	URL       string            `json:"url"`
	Headers   map[string]string `json:"headers,omitempty"`
	Body      json.RawMessage   `json:"body,omitempty"`
	DependsOn []string          `json:"dependsOn,omitempty"`
}

type wireBatchResponse struct {
	ID      string            `json:"id"`
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers"`
	Body    json.RawMessage   `json:"body"`
}

// Batch sends reqs through /$batch in groups of 20 and returns one response per
// request, in the order of reqs. Items answered 429, 503 or 504 are re-sent (only those)
// after the longest Retry-After among them (or backoff), up to MaxRetries rounds; what
// still fails carries its *Error in Err. The returned error is for the batch as a whole
// (transport, 4xx on the envelope, invalid input).
func (c *Client) Batch(ctx context.Context, reqs []BatchRequest) ([]BatchResponse, error) {
	wire := make([]wireBatchRequest, len(reqs))
	index := make(map[string]int, len(reqs))
	for i, r := range reqs {
		id := r.ID
		if id == "" {
			id = strconv.Itoa(i + 1)
		}
		key := strings.ToLower(id)
		if _, dup := index[key]; dup {
			return nil, fmt.Errorf("graph: batch: duplicate request id %q", id)
		}
		index[key] = i
		w := wireBatchRequest{ID: id, Method: strings.ToUpper(r.Method), URL: batchURL(r.URL), DependsOn: r.DependsOn}
		if w.Method == "" {
			w.Method = http.MethodGet
		}
		if len(r.Headers) > 0 {
			w.Headers = make(map[string]string, len(r.Headers)+1)
			for k, v := range r.Headers {
				w.Headers[k] = v
			}
		}
		if r.Body != nil {
			b, err := json.Marshal(r.Body)
			if err != nil {
				return nil, fmt.Errorf("graph: batch: encode body of %q: %w", id, err)
			}
			w.Body = b
			if !hasHeaderFold(w.Headers, "Content-Type") {
				if w.Headers == nil {
					w.Headers = map[string]string{}
				}
				w.Headers["Content-Type"] = "application/json"
			}
		}
		wire[i] = w
	}
	for i, w := range wire {
		for _, d := range w.DependsOn {
			j, ok := index[strings.ToLower(d)]
			if !ok || j/MaxBatchSize != i/MaxBatchSize {
				return nil, fmt.Errorf("graph: batch: request %q depends on %q, which is not in its group of %d", w.ID, d, MaxBatchSize)
			}
		}
	}
	out := make([]BatchResponse, len(reqs))
	for start := 0; start < len(wire); start += MaxBatchSize {
		end := min(start+MaxBatchSize, len(wire))
		if err := c.batchGroup(ctx, wire[start:end], index, out); err != nil {
			return out, err
		}
	}
	return out, nil
}

func hasHeaderFold(h map[string]string, name string) bool {
	for k := range h {
		if strings.EqualFold(k, name) {
			return true
		}
	}
	return false
}

func batchURL(u string) string {
	for _, p := range []string{"/v1.0/", "/beta/"} {
		if strings.HasPrefix(u, p) {
			return u[len(p)-1:]
		}
	}
	if !strings.HasPrefix(u, "/") {
		return "/" + u
	}
	return u
}

// batchGroup sends up to 20 requests, re-sending throttled items.
func (c *Client) batchGroup(ctx context.Context, pending []wireBatchRequest, index map[string]int, out []BatchResponse) error {
	for round := 0; ; round++ {
		var body struct {
			Requests []wireBatchRequest `json:"requests"`
		}
		body.Requests = pending
		var resp struct {
			Responses []wireBatchResponse `json:"responses"`
		}
		if err := c.Do(ctx, http.MethodPost, "/$batch", nil, body, &resp); err != nil {
			return err
		}
		seen := make(map[string]bool, len(pending))
		retrySet := make(map[string]bool)
		var wait time.Duration
		byID := make(map[string]wireBatchRequest, len(pending))
		for _, p := range pending {
			byID[strings.ToLower(p.ID)] = p
		}
		for _, r := range resp.Responses {
			key := strings.ToLower(r.ID)
			req, ok := byID[key]
			if !ok {
				continue // an id we did not send
			}
			seen[key] = true
			h := make(http.Header, len(r.Headers))
			for k, v := range r.Headers {
				h.Set(k, v)
			}
			br := BatchResponse{ID: req.ID, Status: r.Status, Headers: r.Headers, Body: r.Body}
			if r.Status >= 400 {
				e := parseGraphError(r.Status, h, r.Body, c.now())
				e.Method, e.Path = req.Method, req.URL
				br.Err = e
				if batchRetryable(r.Status) && round < c.retries {
					retrySet[key] = true
					if e.RetryAfter > wait {
						wait = e.RetryAfter
					}
				}
			}
			out[index[key]] = br
		}
		for _, p := range pending {
			if key := strings.ToLower(p.ID); !seen[key] {
				out[index[key]] = BatchResponse{ID: p.ID, Err: &Error{Status: 0, Code: "MissingBatchResponse",
					Message: "the $batch answer had no response for this request", Method: p.Method, Path: p.URL}}
			}
		}
		if len(retrySet) == 0 {
			return nil
		}
		var retry []wireBatchRequest // in request order
		for _, p := range pending {
			if retrySet[strings.ToLower(p.ID)] {
				retry = append(retry, p)
			}
		}
		// Dependencies that already succeeded are dropped from the re-sent items.
		inRetry := retrySet
		for i := range retry {
			var deps []string
			for _, d := range retry[i].DependsOn {
				if inRetry[strings.ToLower(d)] {
					deps = append(deps, d)
				}
			}
			retry[i].DependsOn = deps
		}
		if wait == 0 {
			wait = c.backoff(round)
		} else if wait > c.maxRA {
			return nil // leave the throttled items with their *Error (RetryAfter set)
		}
		c.log.DebugContext(ctx, "graph: retrying throttled batch items", "items", len(retry), "delay", wait, "round", round+1)
		if err := c.sleep(ctx, wait); err != nil {
			return err
		}
		pending = retry
	}
}

func batchRetryable(status int) bool {
	return status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout
}
