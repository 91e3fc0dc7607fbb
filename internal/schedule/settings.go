package schedule

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/directory"
)

// Frequencies of a schedule.
const (
	Daily  = "daily"
	Weekly = "weekly"
)

// Settings is a PBX's automatic sync schedule (CONTRACT.md:
// PUT /api/v1/integration/schedule). An empty TimeZone means the PBX's.
type Settings struct {
	Frequency string   `json:"frequency"`
	Days      []string `json:"days"`
	Time      string   `json:"time"`
	TimeZone  string   `json:"timeZone"`
}

// DefaultSettings is the schedule a PBX has until an administrator sets one:
// daily at 00:30 in the PBX's time zone.
func DefaultSettings() Settings {
	return Settings{Frequency: Daily, Days: []string{}, Time: "00:30"}
}

var weekdays = []string{"sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"}

// Normalize validates s and returns it in canonical form: lower-case
// frequency and days, days de-duplicated in week order (Monday first),
// no days for a daily schedule. Errors are *directory.FieldError naming the
// field (the first problem found).
func (s Settings) Normalize() (Settings, error) {
	out := Settings{Frequency: strings.ToLower(strings.TrimSpace(s.Frequency)), Time: strings.TrimSpace(s.Time),
		TimeZone: strings.TrimSpace(s.TimeZone), Days: []string{}}
	switch out.Frequency {
	case Daily, Weekly:
	case "":
		return s, &directory.FieldError{Field: "frequency", Code: "required", Reason: `is required: "daily" or "weekly"`}
	default:
		return s, &directory.FieldError{Field: "frequency", Code: "invalid", Reason: fmt.Sprintf(`must be "daily" or "weekly", not %q`, s.Frequency)}
	}
	if out.Frequency == Weekly {
		seen := map[string]bool{}
		for i, d := range s.Days {
			d = strings.ToLower(strings.TrimSpace(d))
			if !slices.Contains(weekdays, d) {
				return s, &directory.FieldError{Field: fmt.Sprintf("days[%d]", i), Code: "invalid",
					Reason: fmt.Sprintf("%q is not a day of the week (monday ... sunday)", s.Days[i])}
			}
			seen[d] = true
		}
		if len(seen) == 0 {
			return s, &directory.FieldError{Field: "days", Code: "required", Reason: "a weekly schedule needs at least one day"}
		}
		for _, d := range append(weekdays[1:], weekdays[0]) {
			if seen[d] {
				out.Days = append(out.Days, d)
			}
		}
	}
	if out.Time == "" {
		return s, &directory.FieldError{Field: "time", Code: "required", Reason: `is required, as "HH:MM" (24-hour)`}
	}
	if _, _, ok := parseHHMM(out.Time); !ok {
		return s, &directory.FieldError{Field: "time", Code: "invalid", Reason: fmt.Sprintf(`must be "HH:MM" from 00:00 to 23:59, not %q`, s.Time)}
	}
	if out.TimeZone != "" {
		if _, err := loadLocation(out.TimeZone); err != nil {
			return s, &directory.FieldError{Field: "timeZone", Code: "invalid",
				Reason: fmt.Sprintf("%q is not a known IANA time zone (like Europe/Berlin)", s.TimeZone)}
		}
	}
	return out, nil
}

// loadLocation loads an IANA zone, refusing "Local" (the server's zone says
// nothing about the PBX's) and empty names.
func loadLocation(name string) (*time.Location, error) {
	if name == "" || name == "Local" {
		return nil, fmt.Errorf("schedule: time zone %q", name)
	}
	return time.LoadLocation(name)
}

func parseHHMM(v string) (h, m int, ok bool) {
	if len(v) != 5 || v[2] != ':' {
		return 0, 0, false
	}
	for _, i := range []int{0, 1, 3, 4} {
		if v[i] < '0' || v[i] > '9' {
			return 0, 0, false
		}
	}
	h = int(v[0]-'0')*10 + int(v[1]-'0')
	m = int(v[3]-'0')*10 + int(v[4]-'0')
	return h, m, h < 24 && m < 60
}

// location is the schedule's zone; an empty or unknown one is UTC.
func (s Settings) location() *time.Location {
	if loc, err := loadLocation(s.TimeZone); err == nil {
		return loc
	}
	return time.UTC
}

// NextRun returns the first scheduled instant strictly after after.
//
// Daylight-saving changes: a local time the clock skips (spring forward)
// runs once, at the first valid instant after the gap (the moment of the
// change); a local time the clock passes twice (fall back) runs once, at its
// first occurrence. s should be valid (see Normalize); an invalid time falls
// back to 00:30, an empty or unknown TimeZone to UTC, and a weekly schedule
// without days runs daily.
func NextRun(s Settings, after time.Time) time.Time {
	loc := s.location()
	h, m, ok := parseHHMM(s.Time)
	if !ok {
		h, m = 0, 30
	}
	days := map[time.Weekday]bool{}
	if strings.EqualFold(s.Frequency, Weekly) {
		for _, d := range s.Days {
			if i := slices.Index(weekdays, strings.ToLower(d)); i >= 0 {
				days[time.Weekday(i)] = true
			}
		}
	}
	local := after.In(loc)
	y, mo, d := local.Date()
	// Start a day early: an instant resolved through a DST gap can sit on the
	// following local day's side of midnight in pathological zones.
	for i := -1; i <= 8; i++ {
		day := time.Date(y, mo, d+i, 12, 0, 0, 0, time.UTC) // calendar arithmetic only
		if len(days) > 0 && !days[day.Weekday()] {
			continue
		}
		if t := resolve(day.Year(), day.Month(), day.Day(), h, m, loc); t.After(after) {
			return t
		}
	}
	// Unreachable for valid settings (every week has a matching day).
	return after.Add(24 * time.Hour)
}

// resolve turns a local wall-clock time into an instant: the earlier one
// when the wall time occurs twice, the end of the gap when it never occurs.
func resolve(y int, mo time.Month, d, h, m int, loc *time.Location) time.Time {
	wall := time.Date(y, mo, d, h, m, 0, 0, time.UTC)
	_, before := wall.Add(-26 * time.Hour).In(loc).Zone()
	_, after := wall.Add(26 * time.Hour).In(loc).Zone()
	var best time.Time
	for _, off := range []int{before, after} {
		t := wall.Add(-time.Duration(off) * time.Second)
		lt := t.In(loc)
		if lt.Year() == y && lt.Month() == mo && lt.Day() == d && lt.Hour() == h && lt.Minute() == m {
			if best.IsZero() || t.Before(best) {
				best = t
			}
		}
	}
	if !best.IsZero() {
		return best
	}
	// Skipped: read the wall time with the offset in force before the change;
	// that instant lies after the change, whose start is the first valid instant.
	t := wall.Add(-time.Duration(before) * time.Second)
	start, _ := t.In(loc).ZoneBounds()
	if start.IsZero() || start.After(t) {
		return t
	}
	return start
}
