package portal

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/session"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// homePath is where a signed-in administrator lands.
const homePath = "/integrations/microsoft"

type loginData struct {
	Username string
	Next     string
	Error    string
}

// safeNext keeps a post-login destination only when it is a path of this site.
func safeNext(next string) string {
	if next == "" || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") ||
		strings.ContainsAny(next, "\r\n\\") || strings.HasPrefix(next, "/login") {
		return homePath
	}
	return next
}

func (p *Portal) root(w http.ResponseWriter, r *http.Request) {
	if _, ok := p.viewer(r); ok {
		http.Redirect(w, r, homePath, http.StatusSeeOther)
		return
	}
	p.renderLogin(w, r, http.StatusOK, loginData{Next: homePath})
}

func (p *Portal) loginPage(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.URL.Query().Get("next"))
	if _, ok := p.viewer(r); ok {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	p.renderLogin(w, r, http.StatusOK, loginData{Next: next})
}

func (p *Portal) renderLogin(w http.ResponseWriter, r *http.Request, status int, d loginData) {
	w.Header().Set("Cache-Control", "no-store")
	p.render(w, r, status, "login", pageData{Title: "Sign in", Data: d})
}

func (p *Portal) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		p.renderLogin(w, r, http.StatusBadRequest, loginData{Next: homePath, Error: "The sign-in form could not be read. Reload the page and try again."})
		return
	}
	d := loginData{Username: strings.TrimSpace(r.PostFormValue("username")), Next: safeNext(r.PostFormValue("next"))}
	password := r.PostFormValue("password")
	if d.Username == "" || password == "" {
		d.Error = "Enter your username and password."
		p.renderLogin(w, r, http.StatusBadRequest, d)
		return
	}
	a, err := p.sessions.Authenticate(r.Context(), d.Username, password, session.ClientAddr(r))
	switch {
	case errors.Is(err, session.ErrTooManyAttempts):
		w.Header().Set("Retry-After", "60")
		d.Error = "Too many sign-in attempts. Wait a minute, then try again."
		p.renderLogin(w, r, http.StatusTooManyRequests, d)
		return
	case errors.Is(err, session.ErrBadCredentials):
		d.Error = "Wrong username or password."
		p.renderLogin(w, r, http.StatusUnauthorized, d)
		return
	case err != nil:
		p.logger.ErrorContext(r.Context(), "portal login failed", "err", err)
		d.Error = "Signing in failed on our side. Try again in a moment."
		p.renderLogin(w, r, http.StatusInternalServerError, d)
		return
	}
	tok, exp := p.sessions.Issue(a)
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: tok, Path: "/", Expires: exp,
		MaxAge: int(time.Until(exp).Seconds()), HttpOnly: true, Secure: p.secure, SameSite: http.SameSiteLaxMode})
	p.audit(r, a.PBXID, a.Username, "admin.login")
	p.logger.InfoContext(r.Context(), "admin signed in to the portal", "admin", a.Username)
	http.Redirect(w, r, d.Next, http.StatusSeeOther)
}

func (p *Portal) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(SessionCookie); err == nil && c.Value != "" {
		if v, ok := p.viewer(r); ok {
			p.audit(r, v.PBXID, v.Name, "admin.logout")
		}
		if err := p.sessions.Revoke(r.Context(), c.Value); err != nil {
			p.serverError(w, r, err)
			return
		}
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, Expires: time.Unix(1, 0),
		HttpOnly: true, Secure: p.secure, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (p *Portal) audit(r *http.Request, pbxID, actor, action string) {
	if pbxID == "" {
		pbxID = directory.DefaultPBX
	}
	e := store.AuditEntry{PBXID: pbxID, At: time.Now().UTC(), Actor: actor, Action: action, Target: actor, Detail: "portal"}
	if err := p.store.AppendAudit(r.Context(), e); err != nil {
		p.logger.WarnContext(r.Context(), "audit entry not written", "action", action, "err", err)
	}
}
