package api

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/contactsync"
	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// contactsRoutes: Outlook contacts sync settings, runs and pickers.
func (s *Server) contactsRoutes() []route {
	return []route{
		{pattern: "GET /api/v1/integration/contacts-sync", handler: s.getContactsSync},
		{pattern: "PUT /api/v1/integration/contacts-sync", handler: s.putContactsSync},
		{pattern: "POST /api/v1/integration/contacts-sync/run", handler: s.runContactsSync},
		{pattern: "GET /api/v1/integration/contacts-sync/run", handler: s.lastContactsRun},
		{pattern: "GET /api/v1/integration/contacts-sync/synced-users", handler: s.contactsSyncedUsers},
		{pattern: "GET /api/v1/directory/shared-mailboxes", handler: s.sharedMailboxes},
	}
}

func (s *Server) contacts(w http.ResponseWriter) bool {
	if s.Contacts == nil {
		writeErr(w, http.StatusServiceUnavailable, "unavailable", "the contacts sync is not configured", "")
		return false
	}
	return true
}

// contactsSyncView is the GET answer: the settings plus read-only run info.
type contactsSyncView struct {
	contactsync.Settings
	Running bool                `json:"running"`
	LastRun *contactsync.Report `json:"lastRun"`
}

// contactsSyncInput is the PUT body; "running" and "lastRun" are read-only
// and ignored, so that a GET body can be sent back.
type contactsSyncInput struct {
	contactsync.Settings
	Running *bool `json:"running,omitempty"`
	LastRun any   `json:"lastRun,omitempty"`
}

func (s *Server) contactsSyncView(ctx context.Context, pbxID string) (*contactsSyncView, error) {
	set, err := s.Contacts.Settings(ctx, pbxID)
	if err != nil {
		return nil, err
	}
	last, err := s.Contacts.LastRun(ctx, pbxID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	return &contactsSyncView{Settings: set, Running: s.Contacts.Running(pbxID), LastRun: last}, nil
}

func (s *Server) getContactsSync(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok || !s.contacts(w) {
		return
	}
	v, err := s.contactsSyncView(r.Context(), pbxID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) putContactsSync(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok || !s.contacts(w) {
		return
	}
	var in contactsSyncInput
	if err := decode(r, &in); err != nil {
		var fe *directory.FieldError
		if errors.As(err, &fe) { // the embedded struct's name is not part of the JSON
			fe.Field = strings.TrimPrefix(fe.Field, "Settings.")
		}
		s.writeError(w, r, err)
		return
	}
	if s.Integration != nil {
		if err := s.Integration.Locked(r.Context(), pbxID); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	if _, err := s.Contacts.SaveSettings(r.Context(), pbxID, actor(r), in.Settings); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.getContactsSync(w, r)
}

// runContactsSync runs a contacts sync now. It answers 200 with the report
// when the run ends within SyncWait, else 202 {state: "running"}; the run
// goes on and GET .../contacts-sync/run shows its report when done.
func (s *Server) runContactsSync(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok || !s.contacts(w) {
		return
	}
	type result struct {
		rep *contactsync.Report
		err error
	}
	done := make(chan result, 1)
	ctx := context.WithoutCancel(r.Context())
	go func() {
		rep, err := s.Contacts.Run(ctx, pbxID)
		done <- result{rep, err}
	}()
	t := time.NewTimer(SyncWait)
	defer t.Stop()
	select {
	case res := <-done:
		switch {
		case errors.Is(res.err, contactsync.ErrRunning):
			writeErr(w, http.StatusConflict, "running", res.err.Error(), "")
		case res.err != nil:
			s.syncError(w, r, res.err) // the report of the failed run is kept as the last run
		default:
			writeJSON(w, http.StatusOK, res.rep)
		}
	case <-t.C:
		writeJSON(w, http.StatusAccepted, map[string]string{"state": "running"})
	}
}

func (s *Server) lastContactsRun(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok || !s.contacts(w) {
		return
	}
	if s.Contacts.Running(pbxID) {
		writeJSON(w, http.StatusOK, map[string]string{"state": "running"})
		return
	}
	rep, err := s.Contacts.LastRun(r.Context(), pbxID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

func (s *Server) contactsSyncedUsers(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok || !s.contacts(w) {
		return
	}
	us, err := s.Contacts.SyncedUsers(r.Context(), pbxID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": us})
}

func (s *Server) sharedMailboxes(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok || !s.contacts(w) {
		return
	}
	ms, err := s.Contacts.SharedMailboxes(r.Context(), pbxID)
	if err != nil {
		s.syncError(w, r, err)
		return
	}
	if ms == nil {
		ms = []contactsync.Mailbox{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": ms})
}
