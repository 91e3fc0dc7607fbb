package sso

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/switchboard-pbx/switchboard/internal/httpx"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// SessionCookie is the web client's session cookie (the access token).
const SessionCookie = "sb_client"

// maxBody bounds the client API's request bodies.
const maxBody = 64 << 10

// Routes served by Handler (the lead mounts Handler at "/client/").
var routes = []string{
	"GET /client/v1/sso/start", "GET /client/v1/sso/callback", "POST /client/v1/sso/exchange",
	"POST /client/v1/login", "POST /client/v1/logout",
	"GET /client/v1/me", "GET /client/v1/contacts", "PUT /client/v1/presence",
	"GET /client/v1/presence-sync", "PUT /client/v1/presence-sync",
}

// Routes lists the client API's route patterns (for the OpenAPI check).
func Routes() []string { return append([]string(nil), routes...) }

// Handler serves the client API under /client/v1/ and the web client under
// /client/ (sign-in page), /client/app and /client/static/.
func (s *Service) Handler() http.Handler {
	s.once.Do(func() {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /client/v1/sso/start", s.ssoStart)
		mux.HandleFunc("GET /client/v1/sso/callback", s.ssoCallback)
		mux.HandleFunc("POST /client/v1/sso/exchange", s.ssoExchange)
		mux.HandleFunc("POST /client/v1/login", s.login)
		mux.HandleFunc("POST /client/v1/logout", s.authed(s.logout))
		mux.HandleFunc("GET /client/v1/me", s.authed(s.me))
		mux.HandleFunc("GET /client/v1/contacts", s.authed(s.contacts))
		mux.HandleFunc("PUT /client/v1/presence", s.authed(s.putPresence))
		mux.HandleFunc("GET /client/v1/presence-sync", s.authed(s.getPresenceSync))
		mux.HandleFunc("PUT /client/v1/presence-sync", s.authed(s.putPresenceSync))
		mux.HandleFunc("/client/v1/", func(w http.ResponseWriter, r *http.Request) {
			writeErr(w, http.StatusNotFound, "not_found", "no such client API endpoint", "")
		})
		s.webRoutes(mux)
		if s.Metrics != nil {
			s.signins = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_client_signins_total",
				Help: "Client sign-ins by method (sso, password, exchange) and outcome (ok or the refusal code)."}, []string{"method", "outcome"})
			s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_client_requests_total",
				Help: "Client API and web client requests by route and status."}, []string{"route", "code"})
			s.Metrics.MustRegister(s.signins, s.requests)
		}
		cop := http.NewCrossOriginProtection()
		s.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h.Set("X-Content-Type-Options", "nosniff")
			h.Set("Referrer-Policy", "no-referrer")
			h.Set("X-Frame-Options", "DENY")
			h.Set("Cache-Control", "no-store")
			if r.Body != nil {
				r.Body = http.MaxBytesReader(w, r.Body, maxBody)
			}
			r = r.WithContext(context.WithValue(r.Context(), copKey{}, cop))
			sw := &httpx.StatusWriter{ResponseWriter: w}
			start := time.Now()
			defer func() {
				if p := recover(); p != nil {
					s.Logger.ErrorContext(r.Context(), "panic in client handler", "path", r.URL.Path, "panic", fmt.Sprint(p))
					if sw.Code == 0 {
						writeErr(sw, http.StatusInternalServerError, "internal", "internal error", "")
					}
				}
				_, route := mux.Handler(r)
				if sw.Code == 0 {
					sw.Code = http.StatusOK
				}
				if s.requests != nil {
					s.requests.WithLabelValues(route, strconv.Itoa(sw.Code)).Inc()
				}
				lvl := slog.LevelDebug
				if sw.Code >= 500 {
					lvl = slog.LevelError
				}
				s.Logger.Log(r.Context(), lvl, "http", "method", r.Method, "path", r.URL.Path, "route", route, "status", sw.Code, "duration", time.Since(start))
			}()
			mux.ServeHTTP(sw, r)
		})
	})
	return s.handler
}

type copKey struct{}

// crossOrigin refuses a cookie-authenticated unsafe request from another origin.
func crossOrigin(r *http.Request) error {
	cop, _ := r.Context().Value(copKey{}).(*http.CrossOriginProtection)
	if cop == nil {
		cop = http.NewCrossOriginProtection()
	}
	return cop.Check(r)
}

// ---- JSON ----

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, errCode, msg, field string) {
	writeJSON(w, code, errorBody{Error: errorDetail{Code: errCode, Message: msg, Field: field}})
}

// writeError maps the client API's errors to HTTP.
func (s *Service) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var fe *directory.FieldError
	var le *directory.LockedError
	var ref *Refusal
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		writeErr(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("request body is larger than %d bytes", mbe.Limit), "body")
	case errors.As(err, &fe):
		writeErr(w, http.StatusBadRequest, fe.Code, fe.Error(), fe.Field)
	case errors.As(err, &le):
		writeErr(w, http.StatusConflict, "locked", le.Reason, "")
	case errors.As(err, &ref):
		writeErr(w, ref.Status, ref.Code, ref.Message, "")
	case errors.Is(err, ErrTooManyAttempts):
		w.Header().Set("Retry-After", "60")
		writeErr(w, http.StatusTooManyRequests, "rate_limited", err.Error(), "")
	case errors.Is(err, ErrBadCredentials):
		writeErr(w, http.StatusUnauthorized, "bad_credentials", err.Error(), "")
	case errors.Is(err, ErrSSORequired):
		writeErr(w, http.StatusForbidden, "sso_required", err.Error(), "")
	case errors.Is(err, ErrBadCode):
		writeErr(w, http.StatusBadRequest, "invalid_code", err.Error(), "code")
	case errors.Is(err, ErrInvalidSession):
		w.Header().Set("WWW-Authenticate", `Bearer realm="switchboard-client", error="invalid_token"`)
		writeErr(w, http.StatusUnauthorized, "unauthorized", err.Error(), "")
	case errors.Is(err, store.ErrNotFound):
		writeErr(w, http.StatusNotFound, "not_found", "not found", "")
	case errors.Is(err, context.Canceled):
		writeErr(w, 499, "canceled", "request canceled", "")
	default:
		s.Logger.ErrorContext(r.Context(), "client request failed", "path", r.URL.Path, "err", err)
		writeErr(w, http.StatusInternalServerError, "internal", "internal error", "")
	}
}

// decode reads one JSON object, refusing unknown fields and trailing data.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		var ute *json.UnmarshalTypeError
		switch {
		case errors.As(err, &mbe):
			return err
		case errors.Is(err, io.EOF):
			return &directory.FieldError{Field: "body", Code: "invalid_json", Reason: "request body is empty"}
		case errors.As(err, &ute) && ute.Field != "":
			return &directory.FieldError{Field: ute.Field, Code: "invalid_type", Reason: "has the wrong type"}
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return &directory.FieldError{Field: name, Code: "unknown_field", Reason: "is not a known field"}
		}
		return &directory.FieldError{Field: "body", Code: "invalid_json", Reason: "malformed JSON"}
	}
	if _, err := dec.Token(); err != io.EOF {
		return &directory.FieldError{Field: "body", Code: "invalid_json", Reason: "unexpected data after the JSON value"}
	}
	return nil
}

// ---- who is asking ----

// clientAddr is the request's remote host (no port).
func clientAddr(r *http.Request) string {
	h := r.RemoteAddr
	if i := strings.LastIndexByte(h, ':'); i > 0 {
		h = h[:i]
	}
	return h
}

// pbxOf is the PBX a sign-in addresses: ?pbx=, X-Switchboard-PBX or the default PBX.
func (s *Service) pbxOf(r *http.Request) (string, error) {
	id := r.URL.Query().Get("pbx")
	if id == "" {
		id = r.Header.Get("X-Switchboard-PBX")
	}
	if id == "" {
		id = directory.DefaultPBX
	}
	if _, err := s.Store.GetPBX(r.Context(), id); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return "", &directory.FieldError{Field: "pbx", Code: "not_found", Reason: "no such PBX"}
		}
		return "", err
	}
	return id, nil
}

type authedHandler func(w http.ResponseWriter, r *http.Request, sess *Session, ext *directory.Extension, tok string)

// requestToken returns the bearer token or the web session cookie; byCookie
// says which.
func requestToken(r *http.Request) (tok string, byCookie bool) {
	if a := r.Header.Get("Authorization"); a != "" {
		if t, ok := strings.CutPrefix(a, "Bearer "); ok {
			return strings.TrimSpace(t), false
		}
		return "", false
	}
	if c, err := r.Cookie(SessionCookie); err == nil {
		return c.Value, true
	}
	return "", false
}

// authed authenticates a client API request: a bearer token, or the web
// client's cookie (whose writes must come from this origin).
func (s *Service) authed(h authedHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, byCookie := requestToken(r)
		if tok == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="switchboard-client"`)
			writeErr(w, http.StatusUnauthorized, "unauthorized", "a client access token (Authorization: Bearer) or the web client's session is required", "")
			return
		}
		if byCookie {
			if err := crossOrigin(r); err != nil {
				writeErr(w, http.StatusForbidden, "csrf", "cross-origin request refused", "")
				return
			}
		}
		sess, ext, err := s.Authenticate(r.Context(), tok)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		h(w, r, sess, ext, tok)
	}
}

// ---- views ----

// ExtensionView is an extension as the client API shows it.
type ExtensionView struct {
	ID        string `json:"id"`
	Number    string `json:"number"`
	FirstName string `json:"firstName"`
	LastName  string `json:"lastName"`
	Email     string `json:"email"`
	Presence  string `json:"presence"`
	CallState string `json:"callState"`
	Synced    bool   `json:"synced"`
}

func viewOf(e *directory.Extension) ExtensionView {
	return ExtensionView{ID: e.ID, Number: e.Number, FirstName: e.FirstName, LastName: e.LastName, Email: e.Email,
		Presence: string(e.Presence), CallState: string(e.CallState), Synced: e.Synced()}
}

// ContactView is a contact as the client API shows it.
type ContactView struct {
	ID          string `json:"id"`
	FirstName   string `json:"firstName"`
	LastName    string `json:"lastName"`
	Company     string `json:"company"`
	Mobile      string `json:"mobile"`
	Home        string `json:"home"`
	Business    string `json:"business"`
	Email       string `json:"email"`
	Source      string `json:"source"`
	Personal    bool   `json:"personal"`
	PhonebookID string `json:"phonebookId,omitempty"`
}

func contactView(c directory.Contact) ContactView {
	return ContactView{ID: c.ID, FirstName: c.FirstName, LastName: c.LastName, Company: c.Company, Mobile: c.Mobile,
		Home: c.Home, Business: c.Business, Email: c.Email, Source: string(c.Source), Personal: c.ExtensionID != "",
		PhonebookID: c.PhonebookID}
}

type tokenAnswer struct {
	AccessToken string        `json:"accessToken"`
	TokenType   string        `json:"tokenType"`
	ExpiresAt   time.Time     `json:"expiresAt"`
	Extension   ExtensionView `json:"extension"`
}

func (s *Service) answer(tok string, ext *directory.Extension) tokenAnswer {
	return tokenAnswer{AccessToken: tok, TokenType: "Bearer", ExpiresAt: s.now().Add(s.sessionTTL()).UTC(), Extension: viewOf(ext)}
}

// ---- handlers ----

func (s *Service) login(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Username string `json:"username"`
		Password string `json:"password"`
		Client   string `json:"client"`
	}
	if err := decode(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	pbxID, err := s.pbxOf(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	client := in.Client
	switch client {
	case "":
		client = "api"
	case ClientWeb, ClientDesktop, ClientMobile:
	default:
		s.writeError(w, r, &directory.FieldError{Field: "client", Code: "invalid", Reason: "must be web, desktop or mobile"})
		return
	}
	tok, ext, err := s.PasswordLogin(r.Context(), pbxID, in.Username, in.Password, clientAddr(r), client)
	s.countSignIn(MethodPassword, err)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.answer(tok, ext))
}

func (s *Service) logout(w http.ResponseWriter, r *http.Request, _ *Session, _ *directory.Extension, tok string) {
	if err := s.Revoke(r.Context(), tok); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.clearCookie(w, SessionCookie, "/client/")
	w.WriteHeader(http.StatusNoContent)
}

func (s *Service) me(w http.ResponseWriter, r *http.Request, sess *Session, ext *directory.Extension, _ string) {
	writeJSON(w, http.StatusOK, map[string]any{"extension": viewOf(ext), "signIn": map[string]string{"method": sess.Method, "client": sess.Client}})
}

func (s *Service) contacts(w http.ResponseWriter, r *http.Request, sess *Session, ext *directory.Extension, _ string) {
	q := r.URL.Query()
	limit := 50
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 200 {
			s.writeError(w, r, &directory.FieldError{Field: "limit", Code: "invalid", Reason: "must be a number from 1 to 200"})
			return
		}
		limit = n
	}
	search := q.Get("search")
	if search == "" {
		search = q.Get("q")
	}
	items, next, err := s.Store.ListVisibleContacts(r.Context(), sess.PBX, ext.ID, store.ContactQuery{Search: search, Limit: limit, Cursor: q.Get("cursor")})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]ContactView, 0, len(items))
	for _, c := range items {
		out = append(out, contactView(c))
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": out, "nextCursor": next})
}

// SetPresence sets the signed-in extension's presence.
func (s *Service) SetPresence(ctx context.Context, sess *Session, ext *directory.Extension, p string) (*directory.Extension, error) {
	pr := directory.Presence(strings.TrimSpace(p))
	if !pr.Valid() {
		return nil, &directory.FieldError{Field: "presence", Code: "invalid", Reason: "must be one of available, away, do_not_disturb, lunch_break, business_trip, off_work"}
	}
	return s.PBX.UpdateExtension(ctx, sess.PBX, "client:"+ext.Number, ext.ID, func(e *directory.Extension) error {
		e.Presence = pr
		return nil
	})
}

func (s *Service) putPresence(w http.ResponseWriter, r *http.Request, sess *Session, ext *directory.Extension, _ string) {
	var in struct {
		Presence string `json:"presence"`
	}
	if err := decode(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	e, err := s.SetPresence(r.Context(), sess, ext, in.Presence)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"extension": viewOf(e)})
}

func (s *Service) getPresenceSync(w http.ResponseWriter, r *http.Request, sess *Session, ext *directory.Extension, _ string) {
	ps, err := s.GetPresenceSync(r.Context(), sess.PBX, ext.ID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ps)
}

func (s *Service) putPresenceSync(w http.ResponseWriter, r *http.Request, sess *Session, ext *directory.Extension, _ string) {
	var in PresenceSync
	if err := decode(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	out, err := s.SetPresenceSync(r.Context(), sess.PBX, "client:"+ext.Number, ext.ID, in)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Service) ssoExchange(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Code string `json:"code"`
	}
	if err := decode(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	if in.Code == "" {
		s.writeError(w, r, &directory.FieldError{Field: "code", Code: "required", Reason: "is required"})
		return
	}
	tok, ext, err := s.Exchange(r.Context(), in.Code)
	s.countSignIn("exchange", err)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.answer(tok, ext))
}

// ssoStart redirects the browser to Microsoft sign-in, carrying the cookie
// that binds the sign-in to it. Refusals are pages: a person reads them.
func (s *Service) ssoStart(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	pbxID, err := s.pbxOf(r)
	if err != nil {
		s.refusalPage(w, r, err)
		return
	}
	// Each start stores a pending record: bound per client address.
	if !s.allow("s:"+clientAddr(r), 2*time.Second, 30, 0, 0) {
		w.Header().Set("Retry-After", "60")
		s.refusalPage(w, r, refuse(http.StatusTooManyRequests, "rate_limited", "Too many sign-ins were started from your network; wait a minute and try again.", nil))
		return
	}
	st, err := s.Start(r.Context(), StartRequest{PBX: pbxID, Client: q.Get("client"), LoginHint: q.Get("login_hint"),
		Port: q.Get("port"), ClientState: q.Get("state")})
	if err != nil {
		s.refusalPage(w, r, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: st.CookieName, Value: st.Binding, Path: "/client/v1/sso/", MaxAge: int(pendingTTL / time.Second),
		HttpOnly: true, Secure: s.secureCookies(), SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, st.AuthURL, http.StatusFound)
}

func (s *Service) ssoCallback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if st := q.Get("state"); st != "" {
		s.clearCookie(w, bindingCookie(st), "/client/v1/sso/")
	}
	in, err := s.Complete(r.Context(), q, func(name string) string {
		if c, err := r.Cookie(name); err == nil {
			return c.Value
		}
		return ""
	})
	s.countSignIn(MethodSSO, err)
	if err != nil {
		s.refusalPage(w, r, err)
		return
	}
	switch in.Client {
	case ClientWeb:
		tok, err := s.issue(r.Context(), in.Session)
		if err != nil {
			s.refusalPage(w, r, err)
			return
		}
		s.setSessionCookie(w, tok)
		http.Redirect(w, r, "/client/app", http.StatusSeeOther)
	default:
		code, err := s.issueCode(r.Context(), in.Session)
		if err != nil {
			s.refusalPage(w, r, err)
			return
		}
		u, err := url.Parse(in.RedirectURI)
		if err != nil {
			s.refusalPage(w, r, err)
			return
		}
		v := u.Query()
		v.Set("code", code)
		if in.ClientState != "" {
			v.Set("state", in.ClientState)
		}
		u.RawQuery = v.Encode()
		w.Header().Set("Location", u.String())
		w.WriteHeader(http.StatusSeeOther)
	}
}

func (s *Service) setSessionCookie(w http.ResponseWriter, tok string) {
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: tok, Path: "/client/", MaxAge: int(s.sessionTTL() / time.Second),
		HttpOnly: true, Secure: s.secureCookies(), SameSite: http.SameSiteLaxMode})
}

func (s *Service) clearCookie(w http.ResponseWriter, name, path string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: path, MaxAge: -1, HttpOnly: true, Secure: s.secureCookies(), SameSite: http.SameSiteLaxMode})
}
