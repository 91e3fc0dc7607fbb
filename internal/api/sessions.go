package api

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/secret"
	"github.com/switchboard-pbx/switchboard/internal/session"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// Sessions is the session manager type (package session).
type Sessions = session.Sessions

func clientAddr(r *http.Request) string { return session.ClientAddr(r) }

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	var req loginRequest
	if err := decode(r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	a, err := s.Sessions.Authenticate(r.Context(), req.Username, req.Password, clientAddr(r))
	switch {
	case errors.Is(err, session.ErrTooManyAttempts):
		w.Header().Set("Retry-After", "60")
		writeErr(w, http.StatusTooManyRequests, "rate_limited", err.Error(), "")
		return
	case errors.Is(err, session.ErrBadCredentials):
		writeErr(w, http.StatusUnauthorized, "bad_credentials", err.Error(), "")
		return
	case err != nil:
		s.writeError(w, r, err)
		return
	}
	tok, exp := s.Sessions.Issue(a)
	s.PBX.Audit(r.Context(), auditPBX(a.PBXID), a.Username, "admin.login", a.Username, "api")
	writeJSON(w, http.StatusCreated, map[string]any{"token": tok, "expiresAt": exp.UTC(), "mustChangePassword": a.MustChange})
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	tok := strings.TrimSpace(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
	if c, err := r.Cookie(SessionCookie); err == nil && tok == "" {
		tok = c.Value
	}
	if err := s.Sessions.Revoke(r.Context(), tok); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type adminRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
	PBX      string `json:"pbx"`
}

func (s *Server) createAdmin(w http.ResponseWriter, r *http.Request) {
	var req adminRequest
	if err := decode(r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if p, _ := PrincipalFrom(r.Context()); p.PBXID != "" && req.PBX != p.PBXID {
		req.PBX = p.PBXID // a PBX's administrator can only create administrators of that PBX
	}
	if err := validateAdmin(req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.PBX != "" {
		if _, err := s.Store.GetPBX(r.Context(), req.PBX); errors.Is(err, store.ErrNotFound) {
			s.writeError(w, r, &directory.FieldError{Field: "pbx", Code: "not_found", Reason: "names no PBX"})
			return
		} else if err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	a := &store.Admin{Username: req.Username, PasswordHash: secret.HashPassword(req.Password), PBXID: req.PBX, CreatedAt: time.Now().UTC()}
	if err := s.Store.CreateAdmin(r.Context(), a); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.PBX.Audit(r.Context(), auditPBX(a.PBXID), actor(r), "admin.create", a.Username, "")
	writeJSON(w, http.StatusCreated, map[string]any{"id": a.ID, "username": a.Username, "pbx": a.PBXID})
}

// auditPBX is the audit log an administrator's actions go to: its PBX's,
// or the default PBX's for a provider-wide administrator (never another
// PBX's, whose administrators would see it).
func auditPBX(adminPBX string) string {
	if adminPBX == "" {
		return directory.DefaultPBX
	}
	return adminPBX
}

func validateAdmin(req adminRequest) error {
	u := strings.TrimSpace(req.Username)
	if u == "" {
		return &directory.FieldError{Field: "username", Code: "required", Reason: "is required"}
	}
	if len(u) > 64 || strings.ContainsAny(u, " \t\r\n") {
		return &directory.FieldError{Field: "username", Code: "invalid", Reason: "must be at most 64 characters without spaces"}
	}
	if len(req.Password) < 10 {
		return &directory.FieldError{Field: "password", Code: "too_short", Reason: "must be at least 10 characters"}
	}
	if len(req.Password) > 256 {
		return &directory.FieldError{Field: "password", Code: "invalid", Reason: "must be at most 256 characters"}
	}
	return nil
}

func (s *Server) listAudit(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok {
		return
	}
	limit, err := queryInt(r, "limit", 100, 1000)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var before int64
	if v := r.URL.Query().Get("before"); v != "" {
		n, err := parseInt64(v)
		if err != nil {
			s.writeError(w, r, &directory.FieldError{Field: "before", Code: "invalid", Reason: "must be an entry id"})
			return
		}
		before = n
	}
	items, err := s.Store.ListAudit(r.Context(), pbxID, before, limit)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if items == nil {
		items = []store.AuditEntry{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
}
