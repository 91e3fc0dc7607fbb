package api

import (
	"net/http"

	"github.com/switchboard-pbx/switchboard/internal/presence"
)

// presenceRoutes: Teams presence sync settings and status (package presence).
func (s *Server) presenceRoutes() []route {
	return []route{
		{pattern: "GET /api/v1/integration/presence-sync", handler: s.getPresenceSync},
		{pattern: "PUT /api/v1/integration/presence-sync", handler: s.putPresenceSync},
		{pattern: "GET /api/v1/extensions/{id}/presence-sync", handler: s.getExtensionPresenceSync},
		{pattern: "PUT /api/v1/extensions/{id}/presence-sync", handler: s.putExtensionPresenceSync},
		{pattern: "PUT /api/v1/presence-sync/extensions", handler: s.putBulkPresenceSync},
		{pattern: "GET /api/v1/presence-sync/status", handler: s.presenceSyncStatus},
	}
}

// presenceConfigured answers 404 when the service runs without presence sync.
func (s *Server) presenceConfigured(w http.ResponseWriter) bool {
	if s.Presence == nil {
		writeErr(w, http.StatusNotFound, "not_found", "Teams presence sync is not configured on this service", "")
		return false
	}
	return true
}

func (s *Server) getPresenceSync(w http.ResponseWriter, r *http.Request) {
	if !s.presenceConfigured(w) {
		return
	}
	pbxID, ok := s.pbxOf(w, r)
	if !ok {
		return
	}
	st, err := s.Presence.GetSettings(r.Context(), pbxID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) putPresenceSync(w http.ResponseWriter, r *http.Request) {
	if !s.presenceConfigured(w) {
		return
	}
	pbxID, ok := s.pbxOf(w, r)
	if !ok {
		return
	}
	var in presence.SettingsInput
	if err := decode(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	st, err := s.Presence.PutSettings(r.Context(), pbxID, actor(r), in)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) getExtensionPresenceSync(w http.ResponseWriter, r *http.Request) {
	if !s.presenceConfigured(w) {
		return
	}
	pbxID, ok := s.pbxOf(w, r)
	if !ok {
		return
	}
	st, err := s.Presence.GetExtension(r.Context(), pbxID, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) putExtensionPresenceSync(w http.ResponseWriter, r *http.Request) {
	if !s.presenceConfigured(w) {
		return
	}
	pbxID, ok := s.pbxOf(w, r)
	if !ok {
		return
	}
	var in presence.ExtensionInput
	if err := decode(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	st, err := s.Presence.PutExtension(r.Context(), pbxID, actor(r), r.PathValue("id"), in)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) putBulkPresenceSync(w http.ResponseWriter, r *http.Request) {
	if !s.presenceConfigured(w) {
		return
	}
	pbxID, ok := s.pbxOf(w, r)
	if !ok {
		return
	}
	var in presence.BulkInput
	if err := decode(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	items, err := s.Presence.PutBulk(r.Context(), pbxID, actor(r), in)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
}

func (s *Server) presenceSyncStatus(w http.ResponseWriter, r *http.Request) {
	if !s.presenceConfigured(w) {
		return
	}
	pbxID, ok := s.pbxOf(w, r)
	if !ok {
		return
	}
	st, err := s.Presence.GetStatus(r.Context(), pbxID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}
