package sso

import (
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"net/http"
	"strings"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

//go:embed web/*.html web/static
var webFS embed.FS

var pages = map[string]*template.Template{}

func init() {
	for _, p := range []string{"signin", "app", "refused"} {
		pages[p] = template.Must(template.ParseFS(webFS, "web/layout.html", "web/"+p+".html"))
	}
}

// contentSecurityPolicy allows only this origin's script and style: no
// inline script, no framing, forms post only here.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

var presenceLabels = map[directory.Presence]string{
	directory.PresenceAvailable: "Available", directory.PresenceAway: "Away", directory.PresenceDoNotDisturb: "Do Not Disturb",
	directory.PresenceLunchBreak: "Lunch Break", directory.PresenceBusinessTrip: "Business Trip", directory.PresenceOffWork: "Off Work",
}

func (s *Service) webRoutes(mux *http.ServeMux) {
	static, _ := fs.Sub(webFS, "web/static")
	files := http.StripPrefix("/client/static/", http.FileServerFS(static))
	mux.Handle("GET /client/static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(w, r)
	}))
	mux.HandleFunc("GET /client/{$}", s.signinPage)
	mux.HandleFunc("GET /client/app", s.appPage)
	mux.HandleFunc("POST /client/app/login", s.webLogin)
	mux.HandleFunc("POST /client/app/presence", s.webPresence)
	mux.HandleFunc("POST /client/app/logout", s.webLogout)
}

func render(w http.ResponseWriter, code int, page string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", contentSecurityPolicy)
	w.WriteHeader(code)
	_ = pages[page].ExecuteTemplate(w, page+".html", data)
}

// refusalPage shows why a Microsoft sign-in did not end with a session.
func (s *Service) refusalPage(w http.ResponseWriter, r *http.Request, err error) {
	var ref *Refusal
	var fe *directory.FieldError
	code, heading, msg := http.StatusInternalServerError, "Sign-in failed", "An internal error ended the sign-in; nothing was changed. Try again."
	switch {
	case errors.As(err, &ref):
		code, msg = ref.Status, ref.Message
		if code == http.StatusForbidden {
			heading = "Sign-in refused"
		}
		s.Logger.InfoContext(r.Context(), "client sign-in refused", "code", ref.Code, "err", ref.Err)
	case errors.As(err, &fe):
		code, msg = http.StatusBadRequest, "The sign-in request is not valid: "+fe.Error()
	default:
		s.Logger.ErrorContext(r.Context(), "client sign-in failed", "err", err)
	}
	render(w, code, "refused", map[string]any{"Title": heading, "Heading": heading, "Message": msg})
}

type signinData struct {
	Title, Message, Username, PBXParam string
	SSO, SSOOnly                       bool
}

func (s *Service) signinData(r *http.Request) (signinData, error) {
	d := signinData{Title: "Sign in"}
	pbxID, err := s.pbxOf(r)
	if err != nil {
		return d, err
	}
	if pbxID != directory.DefaultPBX {
		d.PBXParam = pbxID
	}
	st, err := s.GetSettings(r.Context(), pbxID)
	if err != nil {
		return d, err
	}
	_, terr := s.Integration.SSOTenant(r.Context(), pbxID)
	d.SSO, d.SSOOnly = st.Enabled && terr == nil, st.SSOOnly()
	return d, nil
}

func (s *Service) signinPage(w http.ResponseWriter, r *http.Request) {
	if tok, _ := requestToken(r); tok != "" {
		if _, _, err := s.Authenticate(r.Context(), tok); err == nil {
			http.Redirect(w, r, "/client/app", http.StatusSeeOther)
			return
		}
	}
	d, err := s.signinData(r)
	if err != nil {
		s.refusalPage(w, r, err)
		return
	}
	render(w, http.StatusOK, "signin", d)
}

func (s *Service) webLogin(w http.ResponseWriter, r *http.Request) {
	if err := crossOrigin(r); err != nil {
		http.Error(w, "cross-origin request refused", http.StatusForbidden)
		return
	}
	d, err := s.signinData(r)
	if err != nil {
		s.refusalPage(w, r, err)
		return
	}
	pbxID, _ := s.pbxOf(r)
	d.Username = r.PostFormValue("username")
	tok, _, err := s.PasswordLogin(r.Context(), pbxID, d.Username, r.PostFormValue("password"), clientAddr(r), ClientWeb)
	s.countSignIn(MethodPassword, err)
	code := http.StatusUnauthorized
	switch {
	case err == nil:
		s.setSessionCookie(w, tok)
		http.Redirect(w, r, "/client/app", http.StatusSeeOther)
		return
	case errors.Is(err, ErrTooManyAttempts):
		code = http.StatusTooManyRequests
	case errors.Is(err, ErrSSORequired):
		code = http.StatusForbidden
	case errors.Is(err, ErrBadCredentials):
	default:
		s.refusalPage(w, r, err)
		return
	}
	d.Message = err.Error()
	render(w, code, "signin", d)
}

type presenceOption struct {
	Value, Label string
	Selected     bool
}

func (s *Service) appPage(w http.ResponseWriter, r *http.Request) {
	tok, byCookie := requestToken(r)
	if tok == "" || !byCookie {
		http.Redirect(w, r, "/client/", http.StatusSeeOther)
		return
	}
	sess, ext, err := s.Authenticate(r.Context(), tok)
	if errors.Is(err, ErrInvalidSession) {
		s.clearCookie(w, SessionCookie, "/client/")
		http.Redirect(w, r, "/client/", http.StatusSeeOther)
		return
	}
	if err != nil {
		s.refusalPage(w, r, err)
		return
	}
	q := r.URL.Query()
	search := strings.TrimSpace(q.Get("q"))
	items, next, err := s.Store.ListVisibleContacts(r.Context(), sess.PBX, ext.ID, store.ContactQuery{Search: search, Limit: 50, Cursor: q.Get("cursor")})
	if err != nil {
		s.refusalPage(w, r, err)
		return
	}
	contacts := make([]ContactView, 0, len(items))
	for _, c := range items {
		contacts = append(contacts, contactView(c))
	}
	opts := make([]presenceOption, 0, len(directory.Presences))
	for _, p := range directory.Presences {
		opts = append(opts, presenceOption{Value: string(p), Label: presenceLabels[p], Selected: p == ext.Presence})
	}
	msg := ""
	if q.Get("saved") == "presence" {
		msg = "Presence set to " + presenceLabels[ext.Presence] + "."
	}
	render(w, http.StatusOK, "app", map[string]any{"Title": ext.FirstName + " " + ext.LastName, "Ext": viewOf(ext),
		"Presences": opts, "Contacts": contacts, "Search": search, "Next": next, "Message": msg})
}

// webSession authenticates a form post of the web client.
func (s *Service) webSession(w http.ResponseWriter, r *http.Request) (*Session, *directory.Extension, string, bool) {
	if err := crossOrigin(r); err != nil {
		http.Error(w, "cross-origin request refused", http.StatusForbidden)
		return nil, nil, "", false
	}
	tok, byCookie := requestToken(r)
	if tok == "" || !byCookie {
		http.Redirect(w, r, "/client/", http.StatusSeeOther)
		return nil, nil, "", false
	}
	sess, ext, err := s.Authenticate(r.Context(), tok)
	if err != nil {
		s.clearCookie(w, SessionCookie, "/client/")
		http.Redirect(w, r, "/client/", http.StatusSeeOther)
		return nil, nil, "", false
	}
	return sess, ext, tok, true
}

func (s *Service) webPresence(w http.ResponseWriter, r *http.Request) {
	sess, ext, _, ok := s.webSession(w, r)
	if !ok {
		return
	}
	if _, err := s.SetPresence(r.Context(), sess, ext, r.PostFormValue("presence")); err != nil {
		s.refusalPage(w, r, err)
		return
	}
	http.Redirect(w, r, "/client/app?saved=presence", http.StatusSeeOther)
}

func (s *Service) webLogout(w http.ResponseWriter, r *http.Request) {
	_, _, tok, ok := s.webSession(w, r)
	if !ok {
		return
	}
	_ = s.Revoke(r.Context(), tok)
	s.clearCookie(w, SessionCookie, "/client/")
	http.Redirect(w, r, "/client/", http.StatusSeeOther)
}
