package graph

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

type batchEnvelope struct {
	Requests []wireBatchRequest `json:"requests"`
}

func TestBatchRetriesOnlyThrottledItems(t *testing.T) {
	f := newFakeTenant(t)
	var rounds [][]string
	f.mux.HandleFunc("POST /v1.0/$batch", func(w http.ResponseWriter, r *http.Request) {
		var env batchEnvelope
		if err := json.NewDecoder(r.Body).Decode(&env); err != nil {
			t.Fatal(err)
		}
		var ids []string
		var out []map[string]any
		for _, q := range env.Requests {
			ids = append(ids, q.ID)
			switch {
			case q.ID == "a":
				out = append(out, map[string]any{"id": q.ID, "status": 200, "body": map[string]any{"id": "u1", "availability": "Busy"}})
			case q.ID == "b":
				out = append(out, map[string]any{"id": q.ID, "status": 404, "body": map[string]any{"error": map[string]any{"code": "Request_ResourceNotFound", "message": "nope"}}})
			case q.ID == "c" && len(rounds) == 0:
				out = append(out, map[string]any{"id": q.ID, "status": 429, "headers": map[string]string{"Retry-After": "3"},
					"body": map[string]any{"error": map[string]any{"code": "TooManyRequests", "message": "later"}}})
			case q.ID == "d" && len(rounds) == 0:
				out = append(out, map[string]any{"id": q.ID, "status": 503, "headers": map[string]string{"retry-after": "1"}})
			default:
				if q.Method == "POST" && q.Headers["Content-Type"] != "application/json" {
					t.Errorf("body without Content-Type: %+v", q)
				}
				out = append(out, map[string]any{"id": q.ID, "status": 204})
			}
		}
		rounds = append(rounds, ids)
		slices.Reverse(out) // Graph answers in any order
		writeJSON(w, 200, map[string]any{"responses": out})
	})
	c, s := newTestClient(t, f)
	resps, err := c.Batch(t.Context(), []BatchRequest{
		{ID: "a", Method: "GET", URL: "/users/u1/presence"},
		{ID: "b", Method: "GET", URL: "/v1.0/users/missing"},
		{ID: "c", Method: "POST", URL: "users/u2/presence/setPresence", Body: map[string]string{"availability": "Busy"}},
		{ID: "d", Method: "GET", URL: "/users/u3/presence"},
	})
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "rounds", fmt.Sprint(rounds), "[[a b c d] [c d]]")
	if got := s.got(); !slices.Equal(got, []time.Duration{3 * time.Second}) {
		t.Errorf("sleeps = %v, want [3s] (the longest Retry-After)", got)
	}
	var p Presence
	if err := resps[0].Decode(&p); err != nil || p.Availability != "Busy" {
		t.Errorf("a: %v %+v", err, p)
	}
	if !errors.Is(resps[1].Err, ErrNotFound) {
		t.Errorf("b err = %v", resps[1].Err)
	}
	var ge *Error
	if errors.As(resps[1].Err, &ge) {
		eq(t, "b path", ge.Path, "/users/missing")
	}
	eq(t, "c", resps[2].Status, 204)
	eq(t, "c err", resps[2].Err, nil)
	eq(t, "d", resps[3].Status, 204)
}

func TestBatchThrottledExhausted(t *testing.T) {
	f := newFakeTenant(t)
	f.mux.HandleFunc("POST /v1.0/$batch", func(w http.ResponseWriter, r *http.Request) {
		var env batchEnvelope
		json.NewDecoder(r.Body).Decode(&env)
		var out []map[string]any
		for _, q := range env.Requests {
			out = append(out, map[string]any{"id": q.ID, "status": 429, "headers": map[string]string{"Retry-After": "2"}})
		}
		writeJSON(w, 200, map[string]any{"responses": out})
	})
	c, s := newTestClient(t, f, func(c *Config) { c.MaxRetries = 2 })
	resps, err := c.Batch(t.Context(), []BatchRequest{{URL: "/users/u1"}})
	if err != nil {
		t.Fatal(err)
	}
	var ge *Error
	if !errors.As(resps[0].Err, &ge) || !errors.Is(resps[0].Err, ErrThrottled) || ge.RetryAfter != 2*time.Second {
		t.Errorf("err = %v", resps[0].Err)
	}
	eq(t, "sleeps", len(s.got()), 2)
}

func TestBatchSplitsIntoTwenties(t *testing.T) {
	f := newFakeTenant(t)
	var sizes []int
	f.mux.HandleFunc("POST /v1.0/$batch", func(w http.ResponseWriter, r *http.Request) {
		var env batchEnvelope
		json.NewDecoder(r.Body).Decode(&env)
		sizes = append(sizes, len(env.Requests))
		var out []map[string]any
		for _, q := range env.Requests {
			out = append(out, map[string]any{"id": q.ID, "status": 200, "body": map[string]string{"id": strings.TrimPrefix(q.URL, "/users/")}})
		}
		writeJSON(w, 200, map[string]any{"responses": out})
	})
	c, _ := newTestClient(t, f)
	var reqs []BatchRequest
	for i := range 45 {
		reqs = append(reqs, BatchRequest{Method: "GET", URL: fmt.Sprintf("/users/u%d", i)})
	}
	resps, err := c.Batch(t.Context(), reqs)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "sizes", fmt.Sprint(sizes), "[20 20 5]")
	for i, r := range resps {
		var u User
		if err := r.Decode(&u); err != nil || u.ID != fmt.Sprintf("u%d", i) {
			t.Errorf("resp %d: %v %q", i, err, u.ID)
		}
	}
}

func TestBatchValidation(t *testing.T) {
	f := newFakeTenant(t)
	c, _ := newTestClient(t, f)
	if _, err := c.Batch(t.Context(), []BatchRequest{{ID: "x", URL: "/a"}, {ID: "X", URL: "/b"}}); err == nil {
		t.Error("duplicate ids (case-insensitive) accepted")
	}
	reqs := make([]BatchRequest, 21)
	for i := range reqs {
		reqs[i] = BatchRequest{URL: "/users"}
	}
	reqs[20].DependsOn = []string{"1"}
	if _, err := c.Batch(t.Context(), reqs); err == nil {
		t.Error("dependsOn across groups of 20 accepted")
	}
}

func TestBatchEnvelopeError(t *testing.T) {
	f := newFakeTenant(t)
	f.mux.HandleFunc("POST /v1.0/$batch", func(w http.ResponseWriter, r *http.Request) {
		graphError(w, 400, "BadRequest", "Invalid batch payload format.")
	})
	c, _ := newTestClient(t, f)
	_, err := c.Batch(t.Context(), []BatchRequest{{URL: "/users"}})
	var ge *Error
	if !errors.As(err, &ge) || ge.Status != 400 {
		t.Errorf("err = %v", err)
	}
}
