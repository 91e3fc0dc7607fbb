package syncer

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/graph"
)

// The classification looks through any wrapping (fmt %w, stepError,
// errors.Join) for Graph's answer.
func TestErrorCodeThroughWrapping(t *testing.T) {
	throttled := &graph.Error{Status: http.StatusTooManyRequests, RetryAfter: 3 * time.Second}
	cases := []struct {
		err  error
		code string
		ra   time.Duration
	}{
		{&stepError{code: "read_failed", err: fmt.Errorf("reading: %w", fmt.Errorf("page 3: %w", throttled))}, "throttled", 3 * time.Second},
		{fmt.Errorf("group phase: %w", errors.Join(errors.New("other"), throttled)), "throttled", 3 * time.Second},
		{&stepError{code: "read_failed", err: &graph.Error{Status: http.StatusServiceUnavailable, RetryAfter: time.Second}}, "throttled", time.Second},
		{&stepError{code: "read_failed", err: &graph.Error{Status: http.StatusServiceUnavailable}}, "read_failed", 0},
		{&stepError{code: "read_failed", err: fmt.Errorf("x: %w", &graph.Error{Status: http.StatusForbidden})}, "unauthorized", 0},
		{fmt.Errorf("groups: %w", &graph.Error{Status: http.StatusUnauthorized}), "unauthorized", 0},
		{&stepError{code: "read_failed", err: &graph.Error{Status: http.StatusNotFound}}, "read_failed", 0},
		{&stepError{code: "not_connected", err: fmt.Errorf("app client: %w", ErrNotConnected)}, "not_connected", 0},
		{&stepError{code: "apply_failed", err: fmt.Errorf("batch 2: %w", errLeaseLost)}, "lease_lost", 0},
		{&stepError{code: "apply_failed", err: errors.New("disk full")}, "apply_failed", 0},
		{errors.New("boom"), "internal", 0},
	}
	for _, tc := range cases {
		if got := errorCode(tc.err); got != tc.code {
			t.Errorf("errorCode(%v) = %q, want %q", tc.err, got, tc.code)
		}
		if got := retryAfter(tc.err); got != tc.ra {
			t.Errorf("retryAfter(%v) = %v, want %v", tc.err, got, tc.ra)
		}
	}
}
