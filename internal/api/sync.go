package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/graph"
	"github.com/switchboard-pbx/switchboard/internal/integration"
	"github.com/switchboard-pbx/switchboard/internal/syncer"
)

// syncEngine is the type of Server.Syncer.
type syncEngine = syncer.Engine

// SyncWait is how long POST /api/v1/integration/sync waits for the run to
// finish before answering 202 with the running run.
var SyncWait = 25 * time.Second

// syncRoutes: sync settings, runs, dry runs and the directory pickers.
func (s *Server) syncRoutes() []route {
	return []route{
		{pattern: "GET /api/v1/integration/user-sync", handler: s.getUserSync},
		{pattern: "PUT /api/v1/integration/user-sync", handler: s.putUserSync},
		{pattern: "POST /api/v1/integration/user-sync/pause", handler: s.pauseUserSync},
		{pattern: "POST /api/v1/integration/user-sync/users/{entraId}/bind", handler: s.bindUser},
		{pattern: "POST /api/v1/integration/user-sync/users/{entraId}/unbind", handler: s.unbindUser},
		{pattern: "POST /api/v1/integration/sync", handler: s.runSync},
		{pattern: "GET /api/v1/sync/runs", handler: s.listRuns},
		{pattern: "GET /api/v1/sync/runs/{id}", handler: s.getRun},
		{pattern: "POST /api/v1/sync/runs/{id}/confirm", handler: s.confirmRun},
		{pattern: "GET /api/v1/directory/users", handler: s.directoryUsers},
		{pattern: "GET /api/v1/directory/groups", handler: s.directoryGroups},
		{pattern: "GET /api/v1/integration/group-sync", handler: s.getGroupSync},
		{pattern: "PUT /api/v1/integration/group-sync", handler: s.putGroupSync},
		{pattern: "POST /api/v1/integration/group-sync/pause", handler: s.pauseGroupSync},
		{pattern: "GET /api/v1/smtp", handler: s.getSMTP},
		{pattern: "PUT /api/v1/smtp", handler: s.putSMTP},
	}
}

// syncError maps the sync engine's errors, then defers to writeError.
func (s *Server) syncError(w http.ResponseWriter, r *http.Request, err error) {
	var ge *graph.Error
	var ae *graph.AuthError
	switch {
	case errors.Is(err, syncer.ErrNotConnected), errors.Is(err, integration.ErrNotConnected):
		writeErr(w, http.StatusConflict, "not_connected", err.Error(), "")
	case errors.Is(err, syncer.ErrDisabled):
		writeErr(w, http.StatusConflict, "user_sync_disabled", "user sync is not switched on (PUT /api/v1/integration/user-sync with enabled: true)", "")
	case errors.Is(err, syncer.ErrNotConfirmable):
		writeErr(w, http.StatusConflict, "not_confirmable", err.Error(), "")
	case errors.Is(err, graph.ErrForeignLink):
		writeErr(w, http.StatusBadRequest, "invalid", "cursor is not a cursor this API returned", "cursor")
	case errors.As(err, &ae):
		writeErr(w, http.StatusBadGateway, "entra_auth", graph.Hint(err), "")
	case errors.As(err, &ge):
		if ge.Status == http.StatusBadRequest {
			writeErr(w, http.StatusBadRequest, "invalid", "Microsoft Graph refused the query: "+ge.Message, "")
			return
		}
		writeErr(w, http.StatusBadGateway, "graph_error", "Microsoft Graph answered: "+ge.Error(), "")
	default:
		s.writeError(w, r, err)
	}
}

func (s *Server) syncer(w http.ResponseWriter) bool {
	if s.Syncer == nil {
		writeErr(w, http.StatusServiceUnavailable, "unavailable", "the sync engine is not configured", "")
		return false
	}
	return true
}

// userSyncView is GET /api/v1/integration/user-sync: the settings and whether user sync is paused.
type userSyncView struct {
	syncer.UserSettings
	Paused       bool   `json:"paused"`
	InitialRunID string `json:"initialRunId,omitempty"`
}

// userSyncInput is the PUT body: the settings; "paused" and "initialRunId"
// are read-only and ignored, so that a GET body can be sent back.
type userSyncInput struct {
	syncer.UserSettings
	Paused       *bool   `json:"paused,omitempty"`
	InitialRunID *string `json:"initialRunId,omitempty"`
}

func (s *Server) getUserSync(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok || !s.syncer(w) {
		return
	}
	set, paused, err := s.Syncer.UserSettings(r.Context(), pbxID)
	if err != nil {
		s.syncError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, userSyncView{UserSettings: set, Paused: paused})
}

func (s *Server) putUserSync(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok || !s.syncer(w) {
		return
	}
	var in userSyncInput
	if err := decode(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	_, runID, err := s.Syncer.SaveUserSettings(r.Context(), pbxID, actor(r), in.UserSettings)
	if err != nil {
		s.syncError(w, r, err)
		return
	}
	set, paused, err := s.Syncer.UserSettings(r.Context(), pbxID)
	if err != nil {
		s.syncError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, userSyncView{UserSettings: set, Paused: paused, InitialRunID: runID})
}

func (s *Server) pauseUserSync(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok || !s.syncer(w) {
		return
	}
	var in struct {
		DeleteExtensions bool `json:"deleteExtensions"`
	}
	if r.ContentLength != 0 {
		if err := decode(r, &in); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	run, err := s.Syncer.Pause(r.Context(), pbxID, actor(r), in.DeleteExtensions)
	if err != nil {
		s.syncError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, run)
}

func (s *Server) bindUser(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok || !s.syncer(w) {
		return
	}
	var in syncer.Binding
	if err := decode(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	run, err := s.Syncer.BindUser(r.Context(), pbxID, actor(r), r.PathValue("entraId"), in)
	if err != nil {
		s.syncError(w, r, err)
		return
	}
	s.writeRun(w, r, run)
}

func (s *Server) unbindUser(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok || !s.syncer(w) {
		return
	}
	x, err := s.Syncer.UnbindUser(r.Context(), pbxID, actor(r), r.PathValue("entraId"))
	if err != nil {
		s.syncError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"extension": x})
}

// writeRun answers with a run; a run refused before it started (paused,
// switched off, not connected) answers 409 with the run's reason.
func (s *Server) writeRun(w http.ResponseWriter, r *http.Request, run *syncer.Run) {
	if run.State == syncer.StateFailed {
		switch run.ErrorCode {
		case "paused", "disabled", "not_connected":
			writeErr(w, http.StatusConflict, run.ErrorCode, run.Error, "")
			return
		}
	}
	code := http.StatusOK
	if run.State == syncer.StateRunning {
		code = http.StatusAccepted
	}
	writeJSON(w, code, run)
}

func (s *Server) runSync(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok || !s.syncer(w) {
		return
	}
	q := r.URL.Query()
	dry, err := boolParam(q.Get("dryRun"), "dryRun")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	wait := true
	if v := q.Get("wait"); v != "" {
		if wait, err = boolParam(v, "wait"); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	opt := syncer.RunOptions{DryRun: dry, Trigger: syncer.TriggerManual, Actor: actor(r)}
	var run *syncer.Run
	if dry {
		run, err = s.Syncer.Run(r.Context(), pbxID, opt)
	} else {
		run, err = s.Syncer.Start(r.Context(), pbxID, opt)
		if err == nil && wait {
			run, err = s.awaitRun(r.Context(), pbxID, run)
		}
	}
	if err != nil {
		s.syncError(w, r, err)
		return
	}
	s.writeRun(w, r, run)
}

// awaitRun polls the run until it finishes or SyncWait passes.
func (s *Server) awaitRun(ctx context.Context, pbxID string, run *syncer.Run) (*syncer.Run, error) {
	deadline := time.Now().Add(SyncWait)
	tick := 10 * time.Millisecond
	for run.State == syncer.StateRunning && time.Now().Before(deadline) {
		t := time.NewTimer(tick)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		tick = min(2*tick, 250*time.Millisecond)
		r, err := s.Syncer.GetRun(ctx, pbxID, run.ID)
		if err != nil {
			return nil, err
		}
		run = r
	}
	return run, nil
}

func boolParam(v, name string) (bool, error) {
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, &directory.FieldError{Field: name, Code: "invalid", Reason: "must be true or false"}
	}
	return b, nil
}

func (s *Server) listRuns(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok || !s.syncer(w) {
		return
	}
	runs, err := s.Syncer.ListRuns(r.Context(), pbxID)
	if err != nil {
		s.syncError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": runs})
}

func (s *Server) getRun(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok || !s.syncer(w) {
		return
	}
	run, err := s.Syncer.GetRun(r.Context(), pbxID, r.PathValue("id"))
	if err != nil {
		s.syncError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, run)
}

func (s *Server) confirmRun(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok || !s.syncer(w) {
		return
	}
	run, err := s.Syncer.Confirm(r.Context(), pbxID, r.PathValue("id"), actor(r))
	if err != nil {
		s.syncError(w, r, err)
		return
	}
	s.writeRun(w, r, run)
}

func (s *Server) directoryUsers(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok || !s.syncer(w) {
		return
	}
	q := r.URL.Query()
	page, err := s.Syncer.SearchUsers(r.Context(), pbxID, q.Get("search"), q.Get("cursor"))
	if err != nil {
		s.syncError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

func (s *Server) directoryGroups(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok || !s.syncer(w) {
		return
	}
	q := r.URL.Query()
	page, err := s.Syncer.SearchGroups(r.Context(), pbxID, q.Get("search"), q.Get("cursor"))
	if err != nil {
		s.syncError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

func (s *Server) getSMTP(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok || !s.syncer(w) {
		return
	}
	cfg, err := s.Syncer.SMTP(r.Context(), pbxID)
	if err != nil {
		s.syncError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, cfg)
}

func (s *Server) putSMTP(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok || !s.syncer(w) {
		return
	}
	var in struct {
		syncer.SMTPInput
		HasPassword *bool `json:"hasPassword,omitempty"` // read-only, ignored
	}
	if err := decode(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	cfg, err := s.Syncer.SaveSMTP(r.Context(), pbxID, actor(r), in.SMTPInput)
	if err != nil {
		s.syncError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, cfg)
}

// SyncStatus is a StatusDecorator that puts the latest sync run (without its
// plan and with at most 20 skipped entries) into GET /api/v1/integration's lastRun.
func (s *Server) SyncStatus() StatusDecorator {
	return func(r *http.Request, pbx string, st *integration.Status) {
		if s.Syncer == nil {
			return
		}
		runs, err := s.Syncer.ListRuns(r.Context(), pbx)
		if err != nil || len(runs) == 0 {
			return
		}
		st.LastRun = runs[0]
	}
}

// groupSyncView is GET /api/v1/integration/group-sync.
type groupSyncView struct {
	syncer.GroupSettings
	Paused       bool   `json:"paused"`
	InitialRunID string `json:"initialRunId,omitempty"`
}

type groupSyncInput struct {
	syncer.GroupSettings
	Paused       *bool   `json:"paused,omitempty"`       // read-only, ignored
	InitialRunID *string `json:"initialRunId,omitempty"` // read-only, ignored
}

func (s *Server) getGroupSync(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok || !s.syncer(w) {
		return
	}
	g, paused, err := s.Syncer.GroupSettings(r.Context(), pbxID)
	if err != nil {
		s.syncError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, groupSyncView{GroupSettings: g, Paused: paused})
}

func (s *Server) putGroupSync(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok || !s.syncer(w) {
		return
	}
	var in groupSyncInput
	if err := decode(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	runID, err := s.Syncer.SaveGroupSettings(r.Context(), pbxID, actor(r), in.GroupSettings)
	if err != nil {
		s.syncError(w, r, err)
		return
	}
	g, paused, err := s.Syncer.GroupSettings(r.Context(), pbxID)
	if err != nil {
		s.syncError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, groupSyncView{GroupSettings: g, Paused: paused, InitialRunID: runID})
}

func (s *Server) pauseGroupSync(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok || !s.syncer(w) {
		return
	}
	var in struct {
		DeleteGroups bool `json:"deleteGroups"`
	}
	if r.ContentLength != 0 {
		if err := decode(r, &in); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	run, err := s.Syncer.PauseGroups(r.Context(), pbxID, actor(r), in.DeleteGroups)
	if err != nil {
		s.syncError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, run)
}
