package api

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/integration"
	"github.com/switchboard-pbx/switchboard/internal/schedule"
)

// scheduleRoutes: the automatic sync schedule and how changes are detected.
func (s *Server) scheduleRoutes() []route {
	return []route{
		{pattern: "GET /api/v1/integration/schedule", handler: s.getSchedule},
		{pattern: "PUT /api/v1/integration/schedule", handler: s.putSchedule},
	}
}

// scheduleView is the schedule as the API shows it: the settings plus what
// follows from them (read-only, ignored on PUT).
type scheduleView struct {
	schedule.Settings
	NextSyncAt      *time.Time      `json:"nextSyncAt"`
	ChangeDetection changeDetection `json:"changeDetection"`
}

type changeDetection struct {
	Mode   string `json:"mode"` // notifications, polling, off
	Reason string `json:"reason,omitempty"`
}

// scheduleInput is the PUT body: the settings; the read-only fields of a
// GET answer are accepted (so a GET body can be sent back) and ignored.
type scheduleInput struct {
	Frequency       string   `json:"frequency"`
	Days            []string `json:"days"`
	Time            string   `json:"time"`
	TimeZone        string   `json:"timeZone"`
	NextSyncAt      any      `json:"nextSyncAt,omitempty"`
	ChangeDetection any      `json:"changeDetection,omitempty"`
}

func (s *Server) scheduleView(r *http.Request, pbxID string, set schedule.Settings) (scheduleView, error) {
	next, err := s.Schedule.NextSyncAt(r.Context(), pbxID)
	if err != nil {
		return scheduleView{}, err
	}
	mode, reason := s.Schedule.Mode(r.Context(), pbxID)
	return scheduleView{Settings: set, NextSyncAt: next, ChangeDetection: changeDetection{mode, reason}}, nil
}

func (s *Server) getSchedule(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok {
		return
	}
	set, err := s.Schedule.GetSettings(r.Context(), pbxID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	v, err := s.scheduleView(r, pbxID, set)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) putSchedule(w http.ResponseWriter, r *http.Request) {
	pbxID, ok := s.pbxOf(w, r)
	if !ok {
		return
	}
	var in scheduleInput
	if err := decode(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	if s.Integration != nil {
		if err := s.Integration.Locked(r.Context(), pbxID); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	set, err := s.Schedule.PutSettings(r.Context(), pbxID,
		schedule.Settings{Frequency: in.Frequency, Days: in.Days, Time: in.Time, TimeZone: in.TimeZone})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if s.PBX != nil {
		s.PBX.Audit(r.Context(), pbxID, actor(r), "integration.schedule", "",
			fmt.Sprintf("frequency=%s days=%s time=%s timeZone=%s", set.Frequency, strings.Join(set.Days, ","), set.Time, set.TimeZone))
	}
	v, err := s.scheduleView(r, pbxID, set)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// ScheduleStatusDecorator fills nextSyncAt of the integration status from
// the schedule (append it to Server.StatusDecorators).
func ScheduleStatusDecorator(svc *schedule.Service) StatusDecorator {
	return func(r *http.Request, pbxID string, st *integration.Status) {
		if next, err := svc.NextSyncAt(r.Context(), pbxID); err == nil && next != nil {
			st.NextSyncAt = next
		}
		mode, reason := svc.Mode(r.Context(), pbxID)
		st.ChangeDetection = &integration.ChangeDetection{Mode: mode, Reason: reason}
	}
}
