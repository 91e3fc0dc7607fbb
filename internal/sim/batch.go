package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
)

// recorder captures an inner $batch response.
type recorder struct {
	h      http.Header
	status int
	buf    bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.h }
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.buf.Write(b)
}
func (r *recorder) WriteHeader(s int) {
	if r.status == 0 {
		r.status = s
	}
}

type batchRequest struct {
	ID        string            `json:"id"`
	Method    string            `json:"method"`
	URL       string            `json:"url"`
	Headers   map[string]string `json:"headers"`
	Body      json.RawMessage   `json:"body"`
	DependsOn []string          `json:"dependsOn"`
}

func (t *Tenant) batchRoute() {
	t.route("POST /v1.0/$batch", perm{any: true}, t.batch)
}

func (t *Tenant) batch(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Requests []batchRequest `json:"requests"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		t.fail(w, r, badRequest("BadRequest", "Invalid batch payload format."))
		return
	}
	if len(body.Requests) == 0 {
		t.fail(w, r, badRequest("BadRequest", "Invalid batch payload format: 'requests' is empty."))
		return
	}
	if len(body.Requests) > 20 {
		t.fail(w, r, badRequest("BadRequest", "Number of requests in the batch request exceeds the limit of 20."))
		return
	}
	ids := map[string]bool{}
	for _, q := range body.Requests {
		k := strings.ToLower(q.ID)
		switch {
		case q.ID == "" || q.Method == "" || q.URL == "":
			t.fail(w, r, badRequest("BadRequest", "Each batch request needs an id, a method and a url."))
			return
		case ids[k]:
			t.fail(w, r, badRequest("BadRequest", "Batch request ids must be unique (duplicate '%s').", q.ID))
			return
		case len(q.Body) > 0 && string(q.Body) != "null" && headerValue(q.Headers, "Content-Type") == "":
			t.fail(w, r, badRequest("BadRequest", "Content-Type header must be specified when a body is present (request '%s').", q.ID))
			return
		}
		for _, d := range q.DependsOn {
			if !ids[strings.ToLower(d)] {
				t.fail(w, r, badRequest("BadRequest", "Request '%s' depends on '%s', which does not precede it in the batch.", q.ID, d))
				return
			}
		}
		ids[k] = true
	}
	status := map[string]int{}
	var out []any
	for _, q := range body.Requests {
		failed := ""
		for _, d := range q.DependsOn {
			if s := status[strings.ToLower(d)]; s < 200 || s > 299 {
				failed = d
			}
		}
		var item obj
		if failed != "" {
			status[strings.ToLower(q.ID)] = http.StatusFailedDependency
			item = obj{{"id", q.ID}, {"status", http.StatusFailedDependency}, {"headers", obj{{"Content-Type", "application/json"}}},
				{"body", obj{{"error", obj{{"code", "BadRequest"}, {"message", "Failed dependency: request '" + failed + "' did not succeed."}}}}}}
		} else {
			item = t.dispatch(r, q)
			status[strings.ToLower(q.ID)] = item[1].v.(int)
		}
		out = append(out, item)
	}
	writeJSON(w, http.StatusOK, obj{{"responses", out}})
}

func headerValue(h map[string]string, name string) string {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

// dispatch runs one inner request through the Graph mux.
func (t *Tenant) dispatch(outer *http.Request, q batchRequest) obj {
	u := q.URL
	if pu, err := url.Parse(u); err == nil && pu.IsAbs() {
		u = pu.RequestURI()
	}
	u = strings.TrimPrefix(u, "/")
	u = strings.TrimPrefix(u, "v1.0/")
	var body *bytes.Reader
	if len(q.Body) > 0 && string(q.Body) != "null" {
		body = bytes.NewReader(q.Body)
	} else {
		body = bytes.NewReader(nil)
	}
	ctx := context.WithValue(outer.Context(), ctxInner, true)
	req, err := http.NewRequestWithContext(ctx, strings.ToUpper(q.Method), "/v1.0/"+u, body)
	if err != nil {
		return obj{{"id", q.ID}, {"status", http.StatusBadRequest}, {"headers", obj{}}, {"body", obj{{"error", obj{{"code", "BadRequest"}, {"message", "Invalid request URL."}}}}}}
	}
	req.Host = outer.Host
	req.TLS = outer.TLS
	req.Header.Set("Authorization", outer.Header.Get("Authorization"))
	if v := outer.Header.Get("X-Forwarded-Proto"); v != "" {
		req.Header.Set("X-Forwarded-Proto", v)
	}
	for k, v := range q.Headers {
		req.Header.Set(k, v)
	}
	rec := &recorder{h: http.Header{}}
	t.graphEntry().ServeHTTP(rec, req)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	hdr := obj{}
	for k, vs := range rec.h {
		hdr = append(hdr, kv{k, strings.Join(vs, ",")})
	}
	item := obj{{"id", q.ID}, {"status", rec.status}, {"headers", hdr}}
	raw := rec.buf.Bytes()
	switch {
	case len(raw) == 0:
	case strings.HasPrefix(rec.h.Get("Content-Type"), "application/json") && json.Valid(raw):
		item = append(item, kv{"body", json.RawMessage(append([]byte(nil), raw...))})
	default:
		item = append(item, kv{"body", string(raw)})
	}
	return item
}
