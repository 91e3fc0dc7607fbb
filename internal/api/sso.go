package api

import (
	"net/http"

	"github.com/switchboard-pbx/switchboard/internal/sso"
)

// ssoRoutes: the single sign-on settings of the client sign-in (package sso).
func (s *Server) ssoRoutes() []route {
	return []route{
		{pattern: "GET /api/v1/integration/sso", handler: s.getSSO},
		{pattern: "PUT /api/v1/integration/sso", handler: s.putSSO},
	}
}

// ssoView is the SSO settings as the admin API shows them, with the client
// SSO redirect URI to register on the Entra application.
type ssoView struct {
	sso.Settings
	SSORedirectURI string `json:"ssoRedirectUri"`
}

func (s *Server) ssoAnswer(w http.ResponseWriter, st sso.Settings) {
	writeJSON(w, http.StatusOK, ssoView{Settings: st, SSORedirectURI: s.Integration.SSORedirectURI()})
}

// ssoConfigured answers 404 when the service runs without client sign-in.
func (s *Server) ssoConfigured(w http.ResponseWriter) bool {
	if s.SSO == nil {
		writeErr(w, http.StatusNotFound, "not_found", "client single sign-on is not configured on this service", "")
		return false
	}
	return true
}

func (s *Server) getSSO(w http.ResponseWriter, r *http.Request) {
	if !s.ssoConfigured(w) {
		return
	}
	pbxID, ok := s.pbxOf(w, r)
	if !ok {
		return
	}
	st, err := s.SSO.GetSettings(r.Context(), pbxID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.ssoAnswer(w, st)
}

func (s *Server) putSSO(w http.ResponseWriter, r *http.Request) {
	if !s.ssoConfigured(w) {
		return
	}
	pbxID, ok := s.pbxOf(w, r)
	if !ok {
		return
	}
	var in sso.SettingsInput
	if err := decode(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	// A disabled integration keeps its configuration locked.
	if err := s.Integration.Locked(r.Context(), pbxID); err != nil {
		s.writeError(w, r, err)
		return
	}
	st, err := s.SSO.UpdateSettings(r.Context(), pbxID, actor(r), in)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.ssoAnswer(w, st)
}

// ssoService is the client sign-in service (package sso).
type ssoService = sso.Service
