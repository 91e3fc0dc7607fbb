// Package api serves the admin REST API (/api/v1), the health and metrics
// endpoints. It is the only place where errors become HTTP status codes
// (see writeError). Handlers are methods on Server, which holds their
// dependencies.
package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/switchboard-pbx/switchboard/internal/httpx"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/switchboard-pbx/switchboard/internal/contactsync"
	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/integration"
	"github.com/switchboard-pbx/switchboard/internal/pbx"
	"github.com/switchboard-pbx/switchboard/internal/presence"
	"github.com/switchboard-pbx/switchboard/internal/schedule"
	"github.com/switchboard-pbx/switchboard/internal/secret"
	"github.com/switchboard-pbx/switchboard/internal/session"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// MaxBodyBytes is the largest request body the API reads.
const MaxBodyBytes = 1 << 20

// Server holds the API's dependencies.
type Server struct {
	Store      store.Store
	PBX        *pbx.Service
	Keys       *secret.Keyring
	Logger     *slog.Logger
	AdminToken string
	SIPDomain  string
	Sessions   *Sessions
	Registry   *prometheus.Registry
	Version    string

	Integration      *integration.Service
	Contacts         *contactsync.Service // Outlook contacts sync (contacts.go)
	Schedule         *schedule.Service
	Presence         *presence.Service
	SSO              *ssoService // client single sign-on settings (sso.go)
	Syncer           *syncEngine // the user sync engine (sync.go)
	StatusDecorators []StatusDecorator

	mux     *http.ServeMux
	metrics *metrics
}

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// Handler builds the routes; call once.
func (s *Server) Handler() http.Handler {
	if s.Registry == nil {
		s.Registry = prometheus.NewRegistry()
	}
	s.metrics = &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_http_requests_total", Help: "HTTP requests by route and status."}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "switchboard_http_request_duration_seconds", Help: "HTTP request latency by route.", Buckets: prometheus.DefBuckets}, []string{"route"}),
	}
	s.Registry.MustRegister(s.metrics.requests, s.metrics.duration, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.mux = http.NewServeMux()
	for _, r := range s.routes() {
		var h http.Handler = r.handler
		if !r.public {
			h = s.requireAdmin(h)
		}
		s.mux.Handle(r.pattern, s.instrument(r.pattern, h))
	}
	return s.mux
}

// Mux exposes the router so other packages (portal, client API) can add routes.
func (s *Server) Mux() *http.ServeMux { return s.mux }

type route struct {
	pattern string
	handler http.HandlerFunc
	public  bool
}

// Routes lists every route pattern (the OpenAPI test checks each is documented).
func (s *Server) Routes() []string {
	var out []string
	for _, r := range s.routes() {
		out = append(out, r.pattern)
	}
	return out
}

// routes is every route: the core ones here, each feature's from its own file.
func (s *Server) routes() []route {
	return slices.Concat(s.coreRoutes(), s.integrationRoutes(), s.syncRoutes(), s.ssoRoutes(), s.scheduleRoutes(), s.presenceRoutes(), s.contactsRoutes(), s.pbxRoutes())
}

func (s *Server) coreRoutes() []route {
	return []route{
		{pattern: "GET /healthz", handler: s.healthz, public: true},
		{pattern: "GET /metrics", handler: s.metricsHandler, public: true},
		{pattern: "GET /api/v1/version", handler: s.version, public: true},
		{pattern: "POST /api/v1/sessions", handler: s.login, public: true},
		{pattern: "DELETE /api/v1/sessions/current", handler: s.logout},

		{pattern: "GET /api/v1/extensions", handler: s.listExtensions},
		{pattern: "POST /api/v1/extensions", handler: s.createExtension},
		{pattern: "GET /api/v1/extensions/{id}", handler: s.getExtension},
		{pattern: "PATCH /api/v1/extensions/{id}", handler: s.patchExtension},
		{pattern: "DELETE /api/v1/extensions/{id}", handler: s.deleteExtension},
		{pattern: "GET /api/v1/extensions/{id}/sip-credentials", handler: s.sipCredentials},
		{pattern: "POST /api/v1/extensions/{id}/sip-credentials/rotate", handler: s.rotateSIP},
		{pattern: "POST /api/v1/extensions/{id}/call-state", handler: s.setCallState},
		{pattern: "GET /api/v1/extensions/{id}/contacts", handler: s.listPersonalContacts},
		{pattern: "POST /api/v1/extensions/{id}/contacts", handler: s.createPersonalContact},
		{pattern: "PATCH /api/v1/extensions/{id}/contacts/{cid}", handler: s.patchPersonalContact},
		{pattern: "DELETE /api/v1/extensions/{id}/contacts/{cid}", handler: s.deletePersonalContact},

		{pattern: "GET /api/v1/extension-groups", handler: s.listGroups},
		{pattern: "POST /api/v1/extension-groups", handler: s.createGroup},
		{pattern: "GET /api/v1/extension-groups/{id}", handler: s.getGroup},
		{pattern: "PATCH /api/v1/extension-groups/{id}", handler: s.patchGroup},
		{pattern: "DELETE /api/v1/extension-groups/{id}", handler: s.deleteGroup},

		{pattern: "GET /api/v1/phonebooks", handler: s.listPhonebooks},
		{pattern: "POST /api/v1/phonebooks", handler: s.createPhonebook},
		{pattern: "GET /api/v1/phonebooks/{id}", handler: s.getPhonebook},
		{pattern: "PATCH /api/v1/phonebooks/{id}", handler: s.patchPhonebook},
		{pattern: "DELETE /api/v1/phonebooks/{id}", handler: s.deletePhonebook},
		{pattern: "GET /api/v1/phonebooks/{id}/contacts", handler: s.listPhonebookContacts},
		{pattern: "POST /api/v1/phonebooks/{id}/contacts", handler: s.createPhonebookContact},
		{pattern: "PATCH /api/v1/phonebooks/{id}/contacts/{cid}", handler: s.patchPhonebookContact},
		{pattern: "DELETE /api/v1/phonebooks/{id}/contacts/{cid}", handler: s.deletePhonebookContact},
		{pattern: "GET /api/v1/phonebooks/{id}/visibility", handler: s.getVisibility},
		{pattern: "PUT /api/v1/phonebooks/{id}/visibility", handler: s.putVisibility},

		{pattern: "POST /api/v1/admins", handler: s.createAdmin},
		{pattern: "GET /api/v1/audit", handler: s.listAudit},
	}
}

// ---- middleware ----

func (s *Server) instrument(pattern string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &httpx.StatusWriter{ResponseWriter: w}
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if r.Body != nil {
			r.Body = http.MaxBytesReader(sw, r.Body, MaxBodyBytes)
		}
		defer func() {
			if p := recover(); p != nil {
				s.Logger.ErrorContext(r.Context(), "panic in handler", "route", pattern, "panic", fmt.Sprint(p))
				if sw.Code == 0 {
					writeErr(sw, http.StatusInternalServerError, "internal", "internal error", "")
				}
			}
			code := sw.Code
			if code == 0 {
				code = http.StatusOK
			}
			s.metrics.requests.WithLabelValues(pattern, strconv.Itoa(code)).Inc()
			s.metrics.duration.WithLabelValues(pattern).Observe(time.Since(start).Seconds())
			lvl := slog.LevelDebug
			if code >= 500 {
				lvl = slog.LevelError
			}
			s.Logger.Log(r.Context(), lvl, "http", "method", r.Method, "path", r.URL.Path, "route", pattern, "status", code, "duration", time.Since(start))
		}()
		h.ServeHTTP(sw, r)
	})
}

// Principal is who makes an admin request.
type Principal = session.Principal

type principalKey struct{}

// PrincipalFrom returns the request's authenticated administrator.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// WithPrincipal stores p in ctx (for the portal, which authenticates by cookie).
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// SessionCookie is the name of the admin session cookie.
const SessionCookie = "sb_admin"

func (s *Server) requireAdmin(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := PrincipalFrom(r.Context()); ok {
			h.ServeHTTP(w, r)
			return
		}
		var tok string
		if a := r.Header.Get("Authorization"); strings.HasPrefix(a, "Bearer ") {
			tok = strings.TrimSpace(a[len("Bearer "):])
		} else if c, err := r.Cookie(SessionCookie); err == nil {
			// A cookie-authenticated write must come from our own origin.
			if r.Method != http.MethodGet && r.Method != http.MethodHead && !sameOrigin(r) {
				writeErr(w, http.StatusForbidden, "csrf", "cross-origin request refused", "")
				return
			}
			tok = c.Value
		}
		if tok == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="switchboard"`)
			writeErr(w, http.StatusUnauthorized, "unauthorized", "an admin bearer token or a portal session is required", "")
			return
		}
		if s.AdminToken != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(s.AdminToken)) == 1 {
			h.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), Principal{Name: "admin-token"})))
			return
		}
		if s.Sessions != nil {
			if p, err := s.Sessions.Verify(r.Context(), tok); err == nil {
				h.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
				return
			}
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="switchboard", error="invalid_token"`)
		writeErr(w, http.StatusUnauthorized, "unauthorized", "the token is invalid or expired", "")
	})
}

// sameOrigin accepts requests whose Sec-Fetch-Site or Origin says they come
// from this site (the approach of net/http's CrossOriginProtection).
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin", "none":
		return true
	case "":
	default:
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return true // not a browser cross-origin request
	}
	return strings.TrimPrefix(strings.TrimPrefix(o, "https://"), "http://") == r.Host
}

// pbxOf returns the PBX the request addresses: ?pbx=, X-Switchboard-PBX, or
// the default PBX; an administrator bound to one PBX can address only it.
func (s *Server) pbxOf(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.URL.Query().Get("pbx")
	if id == "" {
		id = r.Header.Get("X-Switchboard-PBX")
	}
	p, _ := PrincipalFrom(r.Context())
	if id == "" {
		id = directory.DefaultPBX
		if p.PBXID != "" {
			id = p.PBXID
		}
	}
	if p.PBXID != "" && p.PBXID != id {
		writeErr(w, http.StatusNotFound, "not_found", "no such PBX", "pbx")
		return "", false
	}
	if _, err := s.Store.GetPBX(r.Context(), id); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			writeErr(w, http.StatusNotFound, "not_found", "no such PBX", "pbx")
		} else {
			s.writeError(w, r, err)
		}
		return "", false
	}
	return id, true
}

func actor(r *http.Request) string {
	p, _ := PrincipalFrom(r.Context())
	return p.Name
}

// ---- JSON helpers ----

// decode reads one JSON value, refusing unknown fields and trailing data.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bodyError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return &directory.FieldError{Field: "body", Code: "invalid_json", Reason: "unexpected data after the JSON value"}
	}
	return nil
}

func bodyError(err error) error {
	var mbe *http.MaxBytesError
	var ute *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &mbe):
		return err
	case errors.Is(err, io.EOF):
		return &directory.FieldError{Field: "body", Code: "invalid_json", Reason: "request body is empty"}
	case errors.As(err, &ute):
		f := ute.Field
		if f == "" {
			f = "body"
		}
		return &directory.FieldError{Field: f, Code: "invalid_type", Reason: fmt.Sprintf("must be %s", jsonKind(ute.Type.String()))}
	case errors.As(err, &se), errors.Is(err, io.ErrUnexpectedEOF):
		return &directory.FieldError{Field: "body", Code: "invalid_json", Reason: "malformed JSON: " + err.Error()}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return &directory.FieldError{Field: name, Code: "unknown_field", Reason: "is not a known field"}
	}
	return &directory.FieldError{Field: "body", Code: "invalid_json", Reason: err.Error()}
}

func jsonKind(goType string) string {
	switch {
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"), strings.HasPrefix(goType, "float"):
		return "a number"
	case goType == "string":
		return "a string"
	case goType == "bool":
		return "true or false"
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	}
	return "an object"
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	_ = enc.Encode(v)
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

func writeErr(w http.ResponseWriter, code int, errCode, msg, field string) {
	writeJSON(w, code, errorBody{Error: errorDetail{Code: errCode, Message: msg, Field: field}})
}

// writeError maps an error to its HTTP status: the one place this happens.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var fe *directory.FieldError
	var ce *store.ConflictError
	var le *directory.LockedError
	var mbe *http.MaxBytesError
	var aiu *integration.AppInUseError
	switch {
	case errors.As(err, &mbe):
		writeErr(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("request body is larger than %d bytes", mbe.Limit), "body")
	case errors.As(err, &fe):
		writeErr(w, http.StatusBadRequest, fe.Code, fe.Error(), fe.Field)
	case errors.As(err, &le):
		writeErr(w, http.StatusConflict, "locked", le.Reason, "")
	case errors.As(err, &ce):
		writeErr(w, http.StatusConflict, "duplicate", ce.Error(), ce.Field)
	case errors.Is(err, directory.ErrCapacity):
		writeErr(w, http.StatusConflict, "capacity_reached", "the PBX's licensed extension capacity is reached", "")
	case errors.Is(err, directory.ErrGroupLimit):
		writeErr(w, http.StatusConflict, "group_limit", fmt.Sprintf("a PBX holds at most %d extension groups", directory.MaxGroups), "")
	case errors.As(err, &aiu):
		msg := aiu.Error()
		if p, _ := PrincipalFrom(r.Context()); p.PBXID != "" {
			// The other PBX's name is not for another PBX's administrator.
			msg = "this Entra application is already connected to another PBX of this service; one application serves one PBX: register another application for this PBX"
		}
		writeErr(w, http.StatusConflict, "app_in_use", msg, "clientId")
	case errors.Is(err, integration.ErrNotConnected):
		writeErr(w, http.StatusConflict, "not_connected", err.Error(), "")
	case errors.Is(err, store.ErrNotFound):
		writeErr(w, http.StatusNotFound, "not_found", "not found", "")
	case errors.Is(err, context.Canceled):
		writeErr(w, 499, "canceled", "request canceled", "")
	default:
		s.Logger.ErrorContext(r.Context(), "request failed", "path", r.URL.Path, "err", err)
		writeErr(w, http.StatusInternalServerError, "internal", "internal error", "")
	}
}

// ---- small handlers ----

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if _, err := s.Store.GetPBX(ctx, directory.DefaultPBX); err != nil && !errors.Is(err, store.ErrNotFound) {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "database": "unreachable"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) metricsHandler(w http.ResponseWriter, r *http.Request) {
	promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{}).ServeHTTP(w, r)
}

func (s *Server) version(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"version": s.Version})
}

func queryInt(r *http.Request, name string, def, max int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > max {
		return 0, &directory.FieldError{Field: name, Code: "invalid", Reason: fmt.Sprintf("must be a number from 1 to %d", max)}
	}
	return n, nil
}
