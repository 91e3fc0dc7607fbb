package contactsync

import (
	"strings"

	"github.com/switchboard-pbx/switchboard/internal/directory"
)

// dialPlan is what the normaliser needs to know about a country: its calling
// code and the national trunk prefix dialled before area codes at home ("0"
// in most of Europe and Asia, "1" in the North American plan, "8" in Russia,
// "06" in Hungary, none in Italy, Spain, Poland...).
type dialPlan struct {
	code, trunk string
	intl        string // international call prefix when not "00"
}

// dialPlans covers the countries the PBX is sold in most. A number of a
// country not listed is normalised only when entered in international form.
var dialPlans = map[string]dialPlan{
	"US": {"1", "1", "011"}, "CA": {"1", "1", "011"},
	"GB": {"44", "0", ""}, "IE": {"353", "0", ""}, "DE": {"49", "0", ""}, "AT": {"43", "0", ""},
	"CH": {"41", "0", ""}, "FR": {"33", "0", ""}, "BE": {"32", "0", ""}, "NL": {"31", "0", ""},
	"LU": {"352", "", ""}, "ES": {"34", "", ""}, "PT": {"351", "", ""}, "IT": {"39", "", ""},
	"PL": {"48", "", ""}, "CZ": {"420", "", ""}, "SK": {"421", "0", ""}, "HU": {"36", "06", ""},
	"RO": {"40", "0", ""}, "GR": {"30", "", ""}, "SE": {"46", "0", ""}, "NO": {"47", "", ""},
	"DK": {"45", "", ""}, "FI": {"358", "0", ""}, "UA": {"380", "0", ""}, "RU": {"7", "8", "810"},
	"TR": {"90", "0", ""}, "IL": {"972", "0", ""}, "AE": {"971", "0", ""}, "SA": {"966", "0", ""},
	"ZA": {"27", "0", ""}, "IN": {"91", "0", ""}, "CN": {"86", "0", ""}, "HK": {"852", "", "001"},
	"TW": {"886", "0", "002"}, "JP": {"81", "0", "010"}, "KR": {"82", "0", "001"}, "SG": {"65", "", "001"},
	"AU": {"61", "0", "0011"}, "NZ": {"64", "0", ""}, "BR": {"55", "0", ""}, "MX": {"52", "", ""},
	"AR": {"54", "0", ""},
}

// countryNames maps the English names Outlook users type into an address's
// country field to ISO 3166-1 alpha-2 codes (codes themselves are accepted too).
var countryNames = map[string]string{
	"united states": "US", "united states of america": "US", "usa": "US", "canada": "CA",
	"united kingdom": "GB", "uk": "GB", "great britain": "GB", "england": "GB", "ireland": "IE",
	"germany": "DE", "deutschland": "DE", "austria": "AT", "switzerland": "CH", "france": "FR",
	"belgium": "BE", "netherlands": "NL", "luxembourg": "LU", "spain": "ES", "portugal": "PT",
	"italy": "IT", "poland": "PL", "czech republic": "CZ", "czechia": "CZ", "slovakia": "SK",
	"hungary": "HU", "romania": "RO", "greece": "GR", "sweden": "SE", "norway": "NO",
	"denmark": "DK", "finland": "FI", "ukraine": "UA", "russia": "RU", "turkey": "TR",
	"israel": "IL", "united arab emirates": "AE", "uae": "AE", "saudi arabia": "SA",
	"south africa": "ZA", "india": "IN", "china": "CN", "中国": "CN", "hong kong": "HK",
	"taiwan": "TW", "japan": "JP", "korea": "KR", "south korea": "KR", "singapore": "SG",
	"australia": "AU", "new zealand": "NZ", "brazil": "BR", "mexico": "MX", "argentina": "AR",
}

// CountryCode returns the ISO 3166-1 alpha-2 code for a country code or an
// English country name the normaliser knows, or "".
func CountryCode(s string) string {
	s = strings.TrimSpace(s)
	if len(s) == 2 {
		if _, ok := dialPlans[strings.ToUpper(s)]; ok {
			return strings.ToUpper(s)
		}
	}
	return countryNames[strings.ToLower(s)]
}

// KnownCountry reports whether the normaliser has a dial plan for the code.
func KnownCountry(code string) bool {
	_, ok := dialPlans[strings.ToUpper(code)]
	return ok
}

// Dial returns the dialling form of a phone number as entered in Outlook; the
// number itself is stored unchanged. The result is E.164 ("+493012345678",
// e164 true) when the number was entered in international form ("+", or the
// country's international prefix such as "00" or "011") or when country (an
// ISO 3166-1 alpha-2 code) is known: the national trunk prefix is dropped and
// the calling code put in front. Otherwise it is the digits as dialled
// (e164 false). An extension suffix ("x12", "ext. 12", ";ext=12") and the
// "(0)" that some write inside international numbers are dropped; letters
// make the number undiallable ("" false). Numbers of six digits or fewer are
// treated as internal short numbers and left as digits.
func Dial(raw, country string) (dial string, e164 bool) {
	s := strings.ToLower(strings.TrimSpace(raw))
	for _, sep := range []string{";ext=", "ext.", "ext", "x", "#"} {
		if i := strings.Index(s, sep); i > 0 {
			s = s[:i]
		}
	}
	plus := strings.HasPrefix(s, "+")
	if plus {
		s = strings.ReplaceAll(s, "(0)", "")
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case strings.ContainsRune(" +-().\u00a0/", r):
		default:
			return "", false
		}
	}
	d := b.String()
	if d == "" {
		return "", false
	}
	if plus {
		return e164Of(d)
	}
	p, known := dialPlans[strings.ToUpper(country)]
	intl := "00"
	if known && p.intl != "" {
		intl = p.intl
	}
	if strings.HasPrefix(d, intl) && len(d) > len(intl)+6 {
		return e164Of(d[len(intl):])
	}
	if !known || len(d) <= 6 {
		return d, false
	}
	national := d
	if p.trunk != "" && strings.HasPrefix(d, p.trunk) {
		national = d[len(p.trunk):]
	} else if p.code == "1" && len(d) != 10 {
		return d, false // North American numbers are ten digits after the 1
	}
	return e164Of(p.code + national)
}

// e164Of checks the digit count E.164 allows (8 to 15 with the country code).
func e164Of(digits string) (string, bool) {
	if len(digits) < 8 || len(digits) > 15 || digits[0] == '0' {
		return digits, false
	}
	return "+" + digits, true
}

// DialForms are the dialling forms of a contact's numbers ("" where the
// number is empty or not diallable).
type DialForms struct {
	Mobile   string `json:"mobile,omitempty"`
	Home     string `json:"home,omitempty"`
	Business string `json:"business,omitempty"`
}

// DialFormsOf returns the dialling forms of c's numbers, national numbers
// read in country (ISO 3166-1 alpha-2, "" = unknown). The client API can add
// them to each contact it lists; Service.DefaultCountry gives the PBX's
// country.
func DialFormsOf(c directory.Contact, country string) DialForms {
	m, _ := Dial(c.Mobile, country)
	h, _ := Dial(c.Home, country)
	b, _ := Dial(c.Business, country)
	return DialForms{Mobile: m, Home: h, Business: b}
}

// SetDialForms sets c.MobileDial, c.HomeDial and c.BusinessDial to the
// dialling forms of c's numbers (see Dial), national numbers read in country
// (ISO 3166-1 alpha-2, "" = unknown; Service.DefaultCountry gives the PBX's).
// Every writer of contacts calls it, so the stored forms follow the numbers.
func SetDialForms(c *directory.Contact, country string) {
	f := DialFormsOf(*c, country)
	c.MobileDial, c.HomeDial, c.BusinessDial = f.Mobile, f.Home, f.Business
}
