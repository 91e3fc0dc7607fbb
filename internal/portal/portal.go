// Package portal serves the administrator's web portal: server-rendered
// pages (html/template, embedded) for signing in, the Microsoft 365
// integration, extensions, extension groups, phonebooks and the audit log.
//
// Pages read the store to render; every change goes from the browser to the
// admin JSON API (/api/v1) with the session cookie, so validation, locking
// and auditing stay in one place. Scripts are static files (no inline
// script), htmx refreshes parts of pages, and nothing is built at run time.
//
// The portal's mux is a browser mux kept apart from the API mux: it sets a
// strict Content-Security-Policy and the other security headers on every
// response, and refuses cross-origin form posts (net/http's
// CrossOriginProtection).
package portal

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/session"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// SessionCookie is the name of the admin session cookie; the admin API
// accepts the same cookie (api.SessionCookie).
const SessionCookie = "sb_admin"

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Config holds the portal's dependencies.
type Config struct {
	Sessions *session.Sessions
	Store    store.Store
	Logger   *slog.Logger
	// Secure sets the Secure flag on the session cookie (public URL is https).
	Secure bool
}

// Portal serves the admin portal.
type Portal struct {
	sessions *session.Sessions
	store    store.Store
	logger   *slog.Logger
	secure   bool

	pages  map[string]*template.Template
	assets map[string]string // static file name -> content hash (cache busting)
	static fs.FS
}

// New parses the templates and indexes the static files.
func New(cfg Config) (*Portal, error) {
	if cfg.Sessions == nil || cfg.Store == nil {
		return nil, errors.New("portal: Sessions and Store are required")
	}
	p := &Portal{sessions: cfg.Sessions, store: cfg.Store, logger: cfg.Logger, secure: cfg.Secure,
		pages: map[string]*template.Template{}, assets: map[string]string{}}
	if p.logger == nil {
		p.logger = slog.New(slog.DiscardHandler)
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	p.static = static
	err = fs.WalkDir(static, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(static, name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		p.assets[name] = hex.EncodeToString(sum[:6])
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("portal: static files: %w", err)
	}
	funcs := template.FuncMap{
		"asset": p.assetURL,
		"when":  func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
		"join":  strings.Join,
		"list":  func(v ...string) []string { return v },
		"presence": func(p directory.Presence) string {
			return map[directory.Presence]string{directory.PresenceAvailable: "Available", directory.PresenceAway: "Away",
				directory.PresenceDoNotDisturb: "Do not disturb", directory.PresenceLunchBreak: "Lunch break",
				directory.PresenceBusinessTrip: "Business trip", directory.PresenceOffWork: "Off work"}[p]
		},
	}
	base, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, fmt.Errorf("portal: layout: %w", err)
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		name := path.Base(n)
		if name == "layout.html" {
			continue
		}
		t, err := template.Must(base.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return nil, fmt.Errorf("portal: template %s: %w", name, err)
		}
		p.pages[strings.TrimSuffix(name, ".html")] = t
	}
	return p, nil
}

func (p *Portal) assetURL(name string) (string, error) {
	h, ok := p.assets[name]
	if !ok {
		return "", fmt.Errorf("portal: no static file %q", name)
	}
	return "/static/" + name + "?v=" + h, nil
}

// Handler returns the portal's routes wrapped in the browser middleware
// (security headers, cross-origin protection). Mount it at "/".
func (p *Portal) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", p.root)
	mux.HandleFunc("GET /login", p.loginPage)
	mux.HandleFunc("POST /login", p.login)
	mux.HandleFunc("POST /logout", p.logout)
	mux.Handle("GET /integrations/microsoft", p.page(p.integrationPage))
	mux.Handle("GET /extensions", p.page(p.extensionsPage))
	mux.Handle("GET /extension-groups", p.page(p.groupsPage))
	mux.Handle("GET /phonebooks", p.page(p.phonebooksPage))
	mux.Handle("GET /phonebooks/{id}", p.page(p.phonebookPage))
	mux.Handle("GET /audit", p.page(p.auditPage))
	mux.Handle("GET /static/", http.StripPrefix("/static/", p.staticHandler()))
	mux.HandleFunc("/", p.notFound)

	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(p.crossOrigin))
	return securityHeaders(cop.Handler(mux))
}

// contentSecurityPolicy allows only this origin's scripts and styles: no
// inline script, no eval, no framing.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", contentSecurityPolicy)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "same-origin")
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		hd.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
		h.ServeHTTP(w, r)
	})
}

func (p *Portal) staticHandler() http.Handler {
	files := http.FileServerFS(p.static)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := p.assets[r.URL.Path]; !ok {
			http.NotFound(w, r)
			return
		}
		if r.URL.Query().Get("v") == p.assets[r.URL.Path] {
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			w.Header().Set("Cache-Control", "no-cache")
		}
		files.ServeHTTP(w, r)
	})
}

// viewer is the signed-in administrator.
type viewer struct {
	Name  string
	PBXID string // the PBX the portal shows
}

// pageData is what every page template gets.
type pageData struct {
	Title  string
	Nav    string // the active navigation entry
	Viewer viewer
	Data   any
}

// page wraps a page handler: signed-out visitors go to the login page.
func (p *Portal) page(fn func(w http.ResponseWriter, r *http.Request, v viewer)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, ok := p.viewer(r)
		if !ok {
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		fn(w, r, v)
	})
}

// viewer returns the administrator the request's session cookie names.
func (p *Portal) viewer(r *http.Request) (viewer, bool) {
	c, err := r.Cookie(SessionCookie)
	if err != nil || c.Value == "" {
		return viewer{}, false
	}
	pr, err := p.sessions.Verify(r.Context(), c.Value)
	if err != nil {
		return viewer{}, false
	}
	v := viewer{Name: pr.Name, PBXID: pr.PBXID}
	if v.PBXID == "" {
		v.PBXID = directory.DefaultPBX
	}
	return v, true
}

func (p *Portal) render(w http.ResponseWriter, r *http.Request, status int, page string, d pageData) {
	p.renderTemplate(w, r, status, page, "layout.html", d)
}

// renderTemplate executes one named template of a page's set.
func (p *Portal) renderTemplate(w http.ResponseWriter, r *http.Request, status int, page, name string, d any) {
	t, ok := p.pages[page]
	if !ok {
		p.serverError(w, r, fmt.Errorf("portal: no page %q", page))
		return
	}
	var buf bytes.Buffer // render fully first: a template error must not leave half a page
	if err := t.ExecuteTemplate(&buf, name, d); err != nil {
		p.serverError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

func (p *Portal) serverError(w http.ResponseWriter, r *http.Request, err error) {
	p.logger.ErrorContext(r.Context(), "portal page failed", "path", r.URL.Path, "err", err)
	http.Error(w, "Something went wrong on our side. Reload the page; if it keeps failing, check the service log.", http.StatusInternalServerError)
}

func (p *Portal) notFound(w http.ResponseWriter, r *http.Request) {
	v, _ := p.viewer(r)
	p.render(w, r, http.StatusNotFound, "notfound", pageData{Title: "Page not found", Viewer: v})
}

func (p *Portal) crossOrigin(w http.ResponseWriter, r *http.Request) {
	p.logger.WarnContext(r.Context(), "cross-origin form post refused", "path", r.URL.Path, "origin", r.Header.Get("Origin"))
	http.Error(w, "Cross-origin request refused. Open the portal from its own address and try again.", http.StatusForbidden)
}
