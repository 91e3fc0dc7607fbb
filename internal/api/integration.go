package api

import (
	"errors"
	"html/template"
	"net/http"

	"github.com/switchboard-pbx/switchboard/internal/integration"
)

// integrationRoutes: connecting to Microsoft Entra ID and the integration's lifecycle.
func (s *Server) integrationRoutes() []route {
	return []route{
		{pattern: "GET /api/v1/integration", handler: s.getIntegration},
		{pattern: "POST /api/v1/integration/connect", handler: s.connect},
		{pattern: "GET /api/v1/integration/callback", handler: s.connectCallback, public: true},
		{pattern: "POST /api/v1/integration/client-secret", handler: s.updateSecret},
		{pattern: "POST /api/v1/integration/disable", handler: s.disableIntegration},
		{pattern: "POST /api/v1/integration/enable", handler: s.enableIntegration},
		{pattern: "POST /api/v1/integration/disconnect", handler: s.disconnectIntegration},
	}
}

// StatusDecorator adds what other features know to the integration status
// (the sync engine's next run and last run).
type StatusDecorator func(r *http.Request, pbx string, st *integration.Status)

func (s *Server) getIntegration(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok {
		return
	}
	st, err := s.Integration.GetStatus(r.Context(), pbxID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	for _, d := range s.StatusDecorators {
		d(r, pbxID, st)
	}
	writeJSON(w, http.StatusOK, st)
}

// sessionBinding is the portal session a connect started in the portal is bound to.
func sessionBinding(r *http.Request) string {
	if r.Header.Get("Authorization") != "" {
		return ""
	}
	if c, err := r.Cookie(SessionCookie); err == nil {
		return c.Value
	}
	return ""
}

func (s *Server) connect(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok {
		return
	}
	var in integration.ConnectInput
	if err := decode(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	u, err := s.Integration.StartConnect(r.Context(), pbxID, actor(r), clientAddr(r), in, sessionBinding(r))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"authorizeUrl": u})
}

var callbackPage = template.Must(template.New("cb").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Microsoft 365 integration</title>
<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem}.ok{color:#0a6b2d}.err{color:#a30000}</style></head>
<body><h1 class="{{if .OK}}ok{{else}}err{{end}}">{{if .OK}}Connected to Microsoft Entra ID{{else}}Connection failed{{end}}</h1>
<p id="message">{{.Message}}</p><p><a href="/integrations/microsoft">Back to the Microsoft 365 integration</a></p></body></html>`))

func (s *Server) connectCallback(w http.ResponseWriter, r *http.Request) {
	binding := ""
	if c, err := r.Cookie(SessionCookie); err == nil {
		binding = c.Value
	}
	_, err := s.Integration.CompleteConnect(r.Context(), r.URL.Query(), binding)
	data := struct {
		OK      bool
		Message string
	}{OK: err == nil, Message: "The PBX is connected. Synchronization settings are on the integration page."}
	code := http.StatusOK
	if err != nil {
		var ce *integration.ConnectError
		switch {
		case errors.Is(err, integration.ErrBadState):
			code, data.Message = http.StatusBadRequest, err.Error()
		case errors.As(err, &ce):
			code, data.Message = http.StatusBadRequest, ce.Reason
		default:
			s.Logger.ErrorContext(r.Context(), "connect callback failed", "err", err)
			code, data.Message = http.StatusInternalServerError, "An internal error ended the connection; nothing was stored. Try again."
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(code)
	_ = callbackPage.Execute(w, data)
}

func (s *Server) updateSecret(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok {
		return
	}
	var in struct {
		ClientSecret string `json:"clientSecret"`
	}
	if err := decode(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.Integration.UpdateSecret(r.Context(), pbxID, actor(r), in.ClientSecret); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.getIntegration(w, r)
}

func (s *Server) removeOptions(w http.ResponseWriter, r *http.Request) (integration.RemoveOptions, bool) {
	var opt integration.RemoveOptions
	if r.ContentLength == 0 {
		return opt, true
	}
	if err := decode(r, &opt); err != nil {
		s.writeError(w, r, err)
		return opt, false
	}
	return opt, true
}

func (s *Server) disableIntegration(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok {
		return
	}
	opt, ok := s.removeOptions(w, r)
	if !ok {
		return
	}
	if err := s.Integration.Disable(r.Context(), pbxID, actor(r), opt); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.getIntegration(w, r)
}

func (s *Server) enableIntegration(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok {
		return
	}
	if err := s.Integration.Enable(r.Context(), pbxID, actor(r)); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.getIntegration(w, r)
}

func (s *Server) disconnectIntegration(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok {
		return
	}
	opt, ok := s.removeOptions(w, r)
	if !ok {
		return
	}
	if err := s.Integration.Disconnect(r.Context(), pbxID, actor(r), opt); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.getIntegration(w, r)
}
