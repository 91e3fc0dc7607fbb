package schedule

import (
	"errors"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/directory"
)

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestNextRun(t *testing.T) {
	ny := mustLoc(t, "America/New_York")
	ber := mustLoc(t, "Europe/Berlin")
	tokyo := mustLoc(t, "Asia/Tokyo")
	at := func(loc *time.Location, y int, m time.Month, d, h, min int) time.Time {
		return time.Date(y, m, d, h, min, 0, 0, loc)
	}
	utc := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		name  string
		s     Settings
		after time.Time
		want  time.Time
	}{
		{"daily later today", Settings{Frequency: Daily, Time: "23:59", TimeZone: "Europe/Berlin"},
			at(ber, 2026, 6, 10, 12, 0), at(ber, 2026, 6, 10, 23, 59)},
		{"daily tomorrow", Settings{Frequency: Daily, Time: "00:30", TimeZone: "Europe/Berlin"},
			at(ber, 2026, 6, 10, 12, 0), at(ber, 2026, 6, 11, 0, 30)},
		{"daily strictly after the slot itself", Settings{Frequency: Daily, Time: "00:30", TimeZone: "Europe/Berlin"},
			at(ber, 2026, 6, 11, 0, 30), at(ber, 2026, 6, 12, 0, 30)},
		{"empty zone is UTC", Settings{Frequency: Daily, Time: "00:30"},
			utc("2026-06-10T00:29:00Z"), utc("2026-06-10T00:30:00Z")},
		{"zone differs from after's zone", Settings{Frequency: Daily, Time: "09:00", TimeZone: "Asia/Tokyo"},
			utc("2026-06-10T01:00:00Z"), at(tokyo, 2026, 6, 11, 9, 0)},
		{"weekly saturday", Settings{Frequency: Weekly, Days: []string{"saturday"}, Time: "23:59", TimeZone: "America/New_York"},
			at(ny, 2026, 6, 10, 12, 0) /* Wednesday */, at(ny, 2026, 6, 13, 23, 59)},
		{"weekly same day later", Settings{Frequency: Weekly, Days: []string{"wednesday"}, Time: "18:00", TimeZone: "America/New_York"},
			at(ny, 2026, 6, 10, 12, 0), at(ny, 2026, 6, 10, 18, 0)},
		{"weekly same day passed: next week", Settings{Frequency: Weekly, Days: []string{"wednesday"}, Time: "08:00", TimeZone: "America/New_York"},
			at(ny, 2026, 6, 10, 12, 0), at(ny, 2026, 6, 17, 8, 0)},
		{"weekly two days picks the nearer", Settings{Frequency: Weekly, Days: []string{"monday", "friday"}, Time: "08:00", TimeZone: "Europe/Berlin"},
			at(ber, 2026, 6, 10, 12, 0), at(ber, 2026, 6, 12, 8, 0)},
		{"weekly across a year end", Settings{Frequency: Weekly, Days: []string{"friday"}, Time: "01:00", TimeZone: "Europe/Berlin"},
			at(ber, 2026, 12, 31, 12, 0) /* Thursday */, at(ber, 2027, 1, 1, 1, 0)},

		// America/New_York: 2026-03-08 02:00 EST -> 03:00 EDT; 2026-11-01 02:00 EDT -> 01:00 EST.
		{"NY spring gap runs at the change", Settings{Frequency: Daily, Time: "02:30", TimeZone: "America/New_York"},
			utc("2026-03-08T05:00:00Z"), utc("2026-03-08T07:00:00Z") /* 03:00 EDT */},
		{"NY day after the gap is normal", Settings{Frequency: Daily, Time: "02:30", TimeZone: "America/New_York"},
			utc("2026-03-08T07:00:00Z"), at(ny, 2026, 3, 9, 2, 30)},
		{"NY fall overlap runs at the first 01:30", Settings{Frequency: Daily, Time: "01:30", TimeZone: "America/New_York"},
			utc("2026-11-01T04:00:00Z"), utc("2026-11-01T05:30:00Z") /* 01:30 EDT */},
		{"NY fall overlap does not run again at the second 01:30", Settings{Frequency: Daily, Time: "01:30", TimeZone: "America/New_York"},
			utc("2026-11-01T05:30:00Z"), at(ny, 2026, 11, 2, 1, 30)},
		{"NY time just before the gap", Settings{Frequency: Daily, Time: "01:59", TimeZone: "America/New_York"},
			utc("2026-03-08T05:00:00Z"), utc("2026-03-08T06:59:00Z")},
		{"NY default 00:30 unaffected", Settings{Frequency: Daily, Time: "00:30", TimeZone: "America/New_York"},
			utc("2026-03-08T04:00:00Z"), utc("2026-03-08T05:30:00Z")},

		// Europe/Berlin: 2026-03-29 02:00 CET -> 03:00 CEST; 2026-10-25 03:00 CEST -> 02:00 CET.
		{"Berlin spring gap runs at the change", Settings{Frequency: Daily, Time: "02:15", TimeZone: "Europe/Berlin"},
			utc("2026-03-28T23:00:00Z"), utc("2026-03-29T01:00:00Z") /* 03:00 CEST */},
		{"Berlin weekly sunday in the gap", Settings{Frequency: Weekly, Days: []string{"sunday"}, Time: "02:30", TimeZone: "Europe/Berlin"},
			utc("2026-03-25T00:00:00Z"), utc("2026-03-29T01:00:00Z")},
		{"Berlin fall overlap first occurrence", Settings{Frequency: Daily, Time: "02:30", TimeZone: "Europe/Berlin"},
			utc("2026-10-24T23:00:00Z"), utc("2026-10-25T00:30:00Z") /* 02:30 CEST */},
		{"Berlin fall overlap once", Settings{Frequency: Daily, Time: "02:30", TimeZone: "Europe/Berlin"},
			utc("2026-10-25T00:30:00Z"), at(ber, 2026, 10, 26, 2, 30)},
		{"Berlin after the fall change, normal", Settings{Frequency: Daily, Time: "03:00", TimeZone: "Europe/Berlin"},
			utc("2026-10-24T23:00:00Z"), utc("2026-10-25T02:00:00Z") /* 03:00 CET */},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := NextRun(tc.s, tc.after)
			if !got.Equal(tc.want) {
				t.Errorf("NextRun(%+v, %s) = %s, want %s", tc.s, tc.after.UTC(), got.UTC(), tc.want.UTC())
			}
		})
	}
}

// Walking a whole year in DST zones: every day has exactly one run.
func TestNextRunOncePerDayAcrossAYear(t *testing.T) {
	for _, zone := range []string{"America/New_York", "Europe/Berlin", "Australia/Lord_Howe"} {
		for _, hhmm := range []string{"00:30", "01:30", "02:00", "02:30", "03:00", "23:59"} {
			s := Settings{Frequency: Daily, Time: hhmm, TimeZone: zone}
			loc := mustLoc(t, zone)
			cur := time.Date(2026, 1, 1, 0, 0, 0, 0, loc)
			seen := map[string]int{}
			for range 365 {
				next := NextRun(s, cur)
				if !next.After(cur) {
					t.Fatalf("%s %s: NextRun(%s) = %s, not after", zone, hhmm, cur, next)
				}
				seen[next.In(loc).Format(time.DateOnly)]++
				cur = next
			}
			for d, n := range seen {
				if n != 1 {
					t.Errorf("%s %s: %d runs on %s", zone, hhmm, n, d)
				}
			}
			if len(seen) != 365 {
				t.Errorf("%s %s: %d distinct days in 365 runs", zone, hhmm, len(seen))
			}
		}
	}
}

func TestNormalize(t *testing.T) {
	good, err := Settings{Frequency: " Weekly", Days: []string{"Sunday", "monday", "MONDAY"}, Time: "07:05", TimeZone: "Europe/Berlin"}.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	if good.Frequency != Weekly || len(good.Days) != 2 || good.Days[0] != "monday" || good.Days[1] != "sunday" {
		t.Errorf("normalized = %+v", good)
	}
	daily, err := Settings{Frequency: "daily", Days: []string{"monday"}, Time: "00:00"}.Normalize()
	if err != nil || len(daily.Days) != 0 {
		t.Errorf("daily = %+v, %v; want days dropped", daily, err)
	}
	bad := []struct {
		s     Settings
		field string
	}{
		{Settings{Time: "00:30"}, "frequency"},
		{Settings{Frequency: "hourly", Time: "00:30"}, "frequency"},
		{Settings{Frequency: Weekly, Time: "00:30"}, "days"},
		{Settings{Frequency: Weekly, Days: []string{"monday", "funday"}, Time: "00:30"}, "days[1]"},
		{Settings{Frequency: Daily}, "time"},
		{Settings{Frequency: Daily, Time: "24:00"}, "time"},
		{Settings{Frequency: Daily, Time: "7:30"}, "time"},
		{Settings{Frequency: Daily, Time: "07:60"}, "time"},
		{Settings{Frequency: Daily, Time: "0a:30"}, "time"},
		{Settings{Frequency: Daily, Time: "00:30", TimeZone: "Mars/Olympus"}, "timeZone"},
		{Settings{Frequency: Daily, Time: "00:30", TimeZone: "Local"}, "timeZone"},
	}
	for _, tc := range bad {
		_, err := tc.s.Normalize()
		var fe *directory.FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("Normalize(%+v) = %v, want a field error on %q", tc.s, err, tc.field)
		}
	}
}
