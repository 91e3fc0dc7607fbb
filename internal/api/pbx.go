package api

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/integration"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// pbxRoutes: the provider API that creates, lists, changes and removes the
// hosted PBXs. Only provider-wide principals (the admin token, or an
// administrator whose account is bound to no PBX) may use it.
func (s *Server) pbxRoutes() []route {
	return []route{
		{pattern: "GET /api/v1/pbxs", handler: s.providerOnly(s.listPBXs)},
		{pattern: "POST /api/v1/pbxs", handler: s.providerOnly(s.createPBX)},
		{pattern: "GET /api/v1/pbxs/{id}", handler: s.providerOnly(s.getPBX)},
		{pattern: "PATCH /api/v1/pbxs/{id}", handler: s.providerOnly(s.patchPBX)},
		{pattern: "DELETE /api/v1/pbxs/{id}", handler: s.providerOnly(s.deletePBX)},
	}
}

// providerOnly refuses administrators bound to one PBX (403).
func (s *Server) providerOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if p, ok := PrincipalFrom(r.Context()); !ok || p.PBXID != "" {
			writeErr(w, http.StatusForbidden, "forbidden", "only provider-wide administrators manage PBXs", "")
			return
		}
		h(w, r)
	}
}

// pbxSlug is a PBX id: 1 to 63 lowercase letters, digits and inner hyphens
// (a DNS label, so it fits URLs, headers, file names and log lines).
var pbxSlug = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// maxPBXName bounds a PBX's display name.
const maxPBXName = 100

// pbxInput is the body of POST (every field) and PATCH (the fields present).
type pbxInput struct {
	ID            *string `json:"id"`
	Name          *string `json:"name"`
	MaxExtensions *int    `json:"maxExtensions"`
	TimeZone      *string `json:"timeZone"`
	// Read-only fields of a GET answer are accepted and ignored, so that a
	// GET body can be sent back.
	CreatedAt   any `json:"createdAt,omitempty"`
	Extensions  any `json:"extensions,omitempty"`
	Integration any `json:"integration,omitempty"`
}

// pbxView is a PBX as the API shows it.
type pbxView struct {
	directory.PBX
	Extensions  int    `json:"extensions"`
	Integration string `json:"integration"` // not_connected, connected, disabled, error
}

func validPBXID(id string) error {
	if id == "" {
		return &directory.FieldError{Field: "id", Code: "required", Reason: "is required"}
	}
	if !pbxSlug.MatchString(id) {
		return &directory.FieldError{Field: "id", Code: "invalid",
			Reason: "must be 1 to 63 lowercase letters, digits and hyphens, starting and ending with a letter or digit"}
	}
	return nil
}

func validPBXName(name string) error {
	if strings.TrimSpace(name) == "" {
		return &directory.FieldError{Field: "name", Code: "required", Reason: "must not be empty"}
	}
	if len([]rune(name)) > maxPBXName || strings.ContainsAny(name, "\r\n\t\x00") {
		return &directory.FieldError{Field: "name", Code: "invalid", Reason: fmt.Sprintf("must be at most %d characters on one line", maxPBXName)}
	}
	return nil
}

func validMaxExtensions(n int) error {
	if n < 0 || n > 10_000_000 {
		return &directory.FieldError{Field: "maxExtensions", Code: "invalid", Reason: "must be from 0 (no limit) to 10000000"}
	}
	return nil
}

func validTimeZone(tz string) error {
	if tz == "" || tz == "Local" {
		return &directory.FieldError{Field: "timeZone", Code: "invalid", Reason: "must be an IANA time zone (like Europe/Berlin)"}
	}
	if _, err := time.LoadLocation(tz); err != nil {
		return &directory.FieldError{Field: "timeZone", Code: "invalid", Reason: fmt.Sprintf("%q is not a known IANA time zone (like Europe/Berlin)", tz)}
	}
	return nil
}

func (s *Server) pbxView(r *http.Request, p directory.PBX) (pbxView, error) {
	v := pbxView{PBX: p, Integration: integration.StatusNotConnected}
	n, err := s.Store.CountExtensions(r.Context(), p.ID)
	if err != nil {
		return v, err
	}
	v.Extensions = n
	if s.Integration != nil {
		st, err := s.Integration.GetStatus(r.Context(), p.ID)
		if err != nil {
			return v, err
		}
		v.Integration = st.Status
	}
	return v, nil
}

// listPBXs pages through the PBXs by id (limit, cursor = the last id of
// the previous page), so that a page costs the same with thousands of PBXs.
func (s *Server) listPBXs(w http.ResponseWriter, r *http.Request) {
	limit, err := queryInt(r, "limit", 100, 1000)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	cursor := r.URL.Query().Get("cursor")
	ps, err := s.Store.ListPBXs(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	items := make([]pbxView, 0, min(limit, len(ps)))
	next := ""
	for _, p := range ps { // ordered by id
		if p.ID <= cursor {
			continue
		}
		if len(items) == limit {
			next = items[len(items)-1].ID
			break
		}
		v, err := s.pbxView(r, p)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		items = append(items, v)
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items, "nextCursor": next})
}

func (s *Server) getPBX(w http.ResponseWriter, r *http.Request) {
	p, err := s.Store.GetPBX(r.Context(), r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	v, err := s.pbxView(r, p)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) createPBX(w http.ResponseWriter, r *http.Request) {
	var in pbxInput
	if err := decode(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	p := directory.PBX{TimeZone: "UTC"}
	if in.ID != nil {
		p.ID = *in.ID
	}
	if err := validPBXID(p.ID); err != nil {
		s.writeError(w, r, err)
		return
	}
	p.Name = p.ID
	if in.Name != nil {
		p.Name = strings.TrimSpace(*in.Name)
		if err := validPBXName(p.Name); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	if in.MaxExtensions != nil {
		if err := validMaxExtensions(*in.MaxExtensions); err != nil {
			s.writeError(w, r, err)
			return
		}
		p.MaxExtensions = *in.MaxExtensions
	}
	if in.TimeZone != nil {
		if err := validTimeZone(*in.TimeZone); err != nil {
			s.writeError(w, r, err)
			return
		}
		p.TimeZone = *in.TimeZone
	}
	if _, err := s.Store.GetPBX(r.Context(), p.ID); err == nil {
		writeErr(w, http.StatusConflict, "duplicate", "a PBX with this id exists", "id")
		return
	} else if !errors.Is(err, store.ErrNotFound) {
		s.writeError(w, r, err)
		return
	}
	got, err := s.Store.EnsurePBX(r.Context(), p)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if got.Name != p.Name || got.MaxExtensions != p.MaxExtensions || got.TimeZone != p.TimeZone {
		// Another request created the same id between our check and insert.
		writeErr(w, http.StatusConflict, "duplicate", "a PBX with this id exists", "id")
		return
	}
	s.auditPBX(r, got.ID, "pbx.create", fmt.Sprintf("name=%q maxExtensions=%d timeZone=%s", got.Name, got.MaxExtensions, got.TimeZone))
	v, err := s.pbxView(r, got)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/pbxs/"+got.ID)
	writeJSON(w, http.StatusCreated, v)
}

func (s *Server) patchPBX(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var in pbxInput
	if err := decode(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	if in.ID != nil && *in.ID != id {
		s.writeError(w, r, &directory.FieldError{Field: "id", Code: "read_only", Reason: "cannot be changed"})
		return
	}
	if in.Name != nil {
		n := strings.TrimSpace(*in.Name)
		in.Name = &n
		if err := validPBXName(n); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	if in.MaxExtensions != nil {
		if err := validMaxExtensions(*in.MaxExtensions); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	if in.TimeZone != nil {
		if err := validTimeZone(*in.TimeZone); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	if _, err := s.Store.GetPBX(r.Context(), id); err != nil {
		s.writeError(w, r, err)
		return
	}
	if in.MaxExtensions != nil && *in.MaxExtensions > 0 {
		// A capacity below what the PBX holds would leave it over its
		// licence; the provider removes extensions first. (Checked outside
		// the update's transaction: a create racing this PATCH can still
		// land, and later creates are refused as usual.)
		n, err := s.Store.CountExtensions(r.Context(), id)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if n > *in.MaxExtensions {
			s.writeError(w, r, &directory.FieldError{Field: "maxExtensions", Code: "below_usage",
				Reason: fmt.Sprintf("must be at least the %d extensions the PBX holds (or 0 for no limit)", n)})
			return
		}
	}
	got, err := s.Store.UpdatePBX(r.Context(), id, func(p *directory.PBX) error {
		if in.Name != nil {
			p.Name = *in.Name
		}
		if in.MaxExtensions != nil {
			p.MaxExtensions = *in.MaxExtensions
		}
		if in.TimeZone != nil {
			p.TimeZone = *in.TimeZone
		}
		return nil
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.auditPBX(r, got.ID, "pbx.update", fmt.Sprintf("name=%q maxExtensions=%d timeZone=%s", got.Name, got.MaxExtensions, got.TimeZone))
	v, err := s.pbxView(r, got)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// deletePBX removes a PBX and everything it owns. The default PBX is never
// removed. A PBX whose Microsoft integration is set up (connected, in
// error or disabled) is refused unless ?force=true: disconnecting first
// (POST /api/v1/integration/disconnect?pbx=ID) is the caller's job, since it
// removes the change-notification subscriptions at Microsoft and decides
// what happens to synced extensions; a forced delete leaves those
// subscriptions to expire on their own.
func (s *Server) deletePBX(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if id == directory.DefaultPBX {
		writeErr(w, http.StatusConflict, "default_pbx", "the default PBX cannot be deleted", "id")
		return
	}
	if _, err := s.Store.GetPBX(r.Context(), id); err != nil {
		s.writeError(w, r, err)
		return
	}
	force := r.URL.Query().Get("force") == "true"
	status := integration.StatusNotConnected
	if s.Integration != nil {
		st, err := s.Integration.GetStatus(r.Context(), id)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		status = st.Status
	}
	if status != integration.StatusNotConnected && !force {
		writeErr(w, http.StatusConflict, "connected",
			fmt.Sprintf("the PBX's Microsoft integration is %s: disconnect it first (POST /api/v1/integration/disconnect?pbx=%s) or delete with ?force=true", status, id), "")
		return
	}
	if err := s.Store.DeletePBX(r.Context(), id); err != nil {
		s.writeError(w, r, err)
		return
	}
	// The PBX's own audit log went with it; the default PBX's log is read
	// by that PBX's administrators, so the record goes to the service log.
	s.Logger.InfoContext(r.Context(), "pbx deleted", "pbx", id, "actor", actor(r), "integration", status, "force", force)
	w.WriteHeader(http.StatusNoContent)
}

// auditPBX records a provider action in the audit log of the PBX it
// concerns (never in another PBX's log, whose administrators would see it).
func (s *Server) auditPBX(r *http.Request, id, action, detail string) {
	if s.PBX != nil {
		s.PBX.Audit(r.Context(), id, actor(r), action, id, detail)
	}
}
