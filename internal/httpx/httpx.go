// Package httpx holds the small net/http pieces the service's handler trees
// share (the admin API, the client SSO handlers, the simulated tenant).
package httpx

import (
	"bufio"
	"errors"
	"net"
	"net/http"
)

// StatusWriter records the status a handler wrote, for logs and metrics:
// Code is the first status written, http.StatusOK when the handler wrote a
// body without one, and 0 while nothing was written. Flush and Hijack reach
// the wrapped writer (server-sent events; the simulated tenant's dropped
// connections), as does http.ResponseController through Unwrap.
type StatusWriter struct {
	http.ResponseWriter
	Code int
}

// WriteHeader implements http.ResponseWriter.
func (w *StatusWriter) WriteHeader(code int) {
	if w.Code == 0 {
		w.Code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write implements http.ResponseWriter.
func (w *StatusWriter) Write(b []byte) (int, error) {
	if w.Code == 0 {
		w.Code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush implements http.Flusher when the wrapped writer does.
func (w *StatusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack implements http.Hijacker when the wrapped writer does.
func (w *StatusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("httpx: the connection cannot be hijacked")
	}
	return hj.Hijack()
}

// Unwrap returns the wrapped writer (for http.ResponseController).
func (w *StatusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
