package contactsync

import (
	"testing"

	"github.com/switchboard-pbx/switchboard/internal/directory"
)

func TestDial(t *testing.T) {
	for _, c := range []struct {
		raw, country, want string
		e164               bool
	}{
		{"+49 30 1234567", "", "+49301234567", true},
		{"+49 (0)30 123 45-67", "", "+49301234567", true},
		{"+1 (425) 555-0100", "DE", "+14255550100", true},
		{"0049 30 1234567", "", "+49301234567", true},
		{"030 1234567", "DE", "+49301234567", true},
		{"030 1234567", "", "0301234567", false}, // country unknown: digits as dialled
		{"(425) 555-0100", "US", "+14255550100", true},
		{"1-425-555-0100", "US", "+14255550100", true},
		{"011 44 20 7946 0958", "US", "+442079460958", true},
		{"555-0100", "US", "5550100", false}, // seven digits: not a full NANP number
		{"020 7946 0958", "GB", "+442079460958", true},
		{"06 1234 5678", "IT", "+390612345678", true}, // Italy keeps the leading 0
		{"612 345 678", "ES", "+34612345678", true},
		{"8 495 123-45-67", "RU", "+74951234567", true},
		{"06 1 234 5678", "HU", "+3612345678", true},
		{"138 0013 8000", "CN", "+8613800138000", true},
		{"0138 0013 8000", "CN", "+8613800138000", true},
		{"090-1234-5678", "JP", "+819012345678", true},
		{"0011 49 30 1234567", "AU", "+49301234567", true},
		{"+49 30 1234567 x 12", "", "+49301234567", true},
		{"+1 425 555 0100 ext. 7", "", "+14255550100", true},
		{"4711", "DE", "4711", false}, // internal short number
		{"+12", "", "12", false},      // too short for E.164
		{"1-800-FLOWERS", "US", "", false},
		{"", "DE", "", false},
		{"030 1234567", "XX", "0301234567", false},
	} {
		got, e164 := Dial(c.raw, c.country)
		if got != c.want || e164 != c.e164 {
			t.Errorf("Dial(%q, %q) = %q, %v; want %q, %v", c.raw, c.country, got, e164, c.want, c.e164)
		}
	}
}

func TestCountryCode(t *testing.T) {
	for in, want := range map[string]string{"de": "DE", "Germany": "DE", " United States ": "US", "中国": "CN", "Atlantis": "", "XX": ""} {
		if got := CountryCode(in); got != want {
			t.Errorf("CountryCode(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDialFormsOf(t *testing.T) {
	got := DialFormsOf(directory.Contact{Mobile: "0151 2345678", Business: "+44 20 7946 0958"}, "DE")
	if got != (DialForms{Mobile: "+491512345678", Business: "+442079460958"}) {
		t.Fatalf("%+v", got)
	}
}
