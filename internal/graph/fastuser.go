package graph

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"
)

// decodeUserPage decodes a page of users (a collection or delta body) into w
// without reflection: encoding/json spent about 15 µs per user here, two
// fifths of a 500-user sync's CPU. It accepts only input it fully understands
// and reports false otherwise (malformed JSON, a property of an unexpected
// type, a key that matches a field only case-insensitively, a null inside
// businessPhones, @odata.count, deep nesting): the caller then decodes the
// same bytes with encoding/json, so anything unusual gets the standard
// behaviour. When it reports true, w holds exactly what encoding/json would
// have decoded (TestFastUserPageMatchesEncodingJSON, FuzzFastUserPage).
func decodeUserPage(b []byte, w *wirePage[leanUser]) bool {
	s := scan{b: b}
	s.ws()
	if !s.eat('{') {
		return false
	}
	seen := false
	return s.members(func(key []byte) bool {
		switch string(key) {
		case "@odata.nextLink":
			return s.optStr(&w.NextLink)
		case "@odata.deltaLink":
			return s.optStr(&w.DeltaLink)
		case "value":
			// A repeated "value" merges into the first in encoding/json.
			ok := !seen && s.users(w)
			seen = true
			return ok
		}
		return !foldsTo(string(key), "value", "@odata.nextLink", "@odata.deltaLink", "@odata.count") && s.skip(0)
	}) && s.end()
}

// userKeys are the JSON names of User's fields.
var userKeys = []string{"id", "displayName", "givenName", "surname", "mail", "userPrincipalName",
	"mobilePhone", "businessPhones", "jobTitle", "department", "officeLocation", "companyName",
	"employeeId", "userType", "accountEnabled", "onPremisesExtensionAttributes", "@odata.type", "@removed"}

func foldsTo(key string, names ...string) bool {
	for _, n := range names {
		if strings.EqualFold(key, n) {
			return true
		}
	}
	return false
}

// users decodes the "value" array (or null, which leaves it empty).
func (s *scan) users(w *wirePage[leanUser]) bool {
	s.ws()
	if s.lit("null") {
		w.Value = nil
		return true
	}
	if !s.eat('[') {
		return false
	}
	w.Value = w.Value[:0]
	s.ws()
	if s.eat(']') {
		if w.Value == nil {
			w.Value = []leanUser{} // as encoding/json: [] is an empty slice, not nil
		}
		return true
	}
	for {
		w.Value = append(w.Value, leanUser{})
		if !s.user(&w.Value[len(w.Value)-1]) {
			return false
		}
		s.ws()
		if s.eat(',') {
			continue
		}
		return s.eat(']')
	}
}

// user decodes one user object.
func (s *scan) user(u *leanUser) bool {
	s.ws()
	return s.eat('{') && s.members(func(key []byte) bool { return s.userField(u, key) })
}

func (s *scan) userField(u *leanUser, key []byte) bool {
	switch string(key) {
	case "id":
		return s.optStr(&u.ID)
	case "displayName":
		return s.optStr(&u.DisplayName)
	case "givenName":
		return s.optStr(&u.GivenName)
	case "surname":
		return s.optStr(&u.Surname)
	case "mail":
		return s.optStr(&u.Mail)
	case "userPrincipalName":
		return s.optStr(&u.UserPrincipalName)
	case "mobilePhone":
		return s.optStr(&u.MobilePhone)
	case "jobTitle":
		return s.optStr(&u.JobTitle)
	case "department":
		return s.optStr(&u.Department)
	case "officeLocation":
		return s.optStr(&u.OfficeLocation)
	case "companyName":
		return s.optStr(&u.CompanyName)
	case "employeeId":
		return s.optStr(&u.EmployeeID)
	case "userType":
		return s.optStr(&u.UserType)
	case "@odata.type":
		return s.optStr(&u.ODataType)
	case "businessPhones":
		return s.strings(&u.BusinessPhones)
	case "accountEnabled":
		s.ws()
		switch {
		case s.lit("null"):
			u.AccountEnabled = nil
		case s.lit("true"):
			u.AccountEnabled = new(true)
		case s.lit("false"):
			u.AccountEnabled = new(false)
		default:
			return false
		}
		return true
	case "onPremisesExtensionAttributes":
		s.ws()
		if s.lit("null") {
			u.OnPremisesExtensionAttributes = nil
			return true
		}
		if u.OnPremisesExtensionAttributes == nil {
			u.OnPremisesExtensionAttributes = &OnPremisesExtensionAttributes{}
		}
		a := u.OnPremisesExtensionAttributes
		return s.eat('{') && s.members(func(k []byte) bool {
			if f := a.field(k); f != nil {
				return s.optStr(f)
			}
			return !foldsTo(string(k), extAttrNames[1:]...) && s.skip(1)
		})
	case "@removed":
		s.ws()
		if s.lit("null") {
			u.Removed = nil
			return true
		}
		if u.Removed == nil {
			u.Removed = &Removed{}
		}
		r := u.Removed
		return s.eat('{') && s.members(func(k []byte) bool {
			if string(k) == "reason" {
				return s.optStr(&r.Reason)
			}
			return !strings.EqualFold(string(k), "reason") && s.skip(1)
		})
	}
	if foldsTo(string(key), userKeys...) {
		return false
	}
	return s.skip(0)
}

var extAttrNames = func() [16]string {
	var n [16]string
	for i := 1; i <= 15; i++ {
		n[i] = "extensionAttribute" + strconv.Itoa(i)
	}
	return n
}()

// field returns the field of extensionAttributeN named exactly k, or nil.
func (a *OnPremisesExtensionAttributes) field(k []byte) *string {
	n, ok := bytes.CutPrefix(k, []byte("extensionAttribute"))
	if !ok {
		return nil
	}
	i, err := strconv.Atoi(string(n))
	if err != nil || i < 1 || i > 15 || extAttrNames[i] != string(k) { // "07" is not "7"
		return nil
	}
	return a.attr(i)
}

// scan is a strict JSON reader over one body.
type scan struct {
	b []byte
	i int
}

// maxDepth bounds nesting in skipped values (deeper: encoding/json decides).
const maxDepth = 64

func (s *scan) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scan) eat(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

func (s *scan) colon() bool {
	s.ws()
	return s.eat(':')
}

// end reports whether only whitespace follows.
func (s *scan) end() bool {
	s.ws()
	return s.i == len(s.b)
}

// lit consumes the literal (null, true, false) when it is next.
func (s *scan) lit(l string) bool {
	if len(s.b)-s.i >= len(l) && string(s.b[s.i:s.i+len(l)]) == l {
		s.i += len(l)
		return true
	}
	return false
}

// rawStr reads a JSON string and returns its content: a slice of the body
// when it has no escapes, else the unquoted text (by encoding/json; escapes
// are rare in directory data).
func (s *scan) rawStr() ([]byte, bool) {
	if !s.eat('"') {
		return nil, false
	}
	start := s.i
	escaped, ascii := false, true
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			raw := s.b[start:s.i]
			s.i++
			if escaped {
				var v string
				if json.Unmarshal(s.b[start-1:s.i], &v) != nil {
					return nil, false
				}
				return []byte(v), true
			}
			if !ascii && !utf8.Valid(raw) {
				return nil, false // encoding/json replaces invalid bytes: let it
			}
			return raw, true
		case c == '\\':
			escaped = true
			s.i += 2
			continue
		case c < 0x20:
			return nil, false
		case c >= 0x80:
			ascii = false
		}
		s.i++
	}
	return nil, false
}

// str reads a JSON string.
func (s *scan) str() (string, bool) {
	b, ok := s.rawStr()
	return string(b), ok
}

// optStr reads a string into *dst, or null (which leaves *dst as it is, as
// encoding/json does).
func (s *scan) optStr(dst *string) bool {
	s.ws()
	if s.lit("null") {
		return true
	}
	v, ok := s.str()
	if ok {
		*dst = v
	}
	return ok
}

// strings reads an array of strings (null sets nil).
func (s *scan) strings(dst *[]string) bool {
	s.ws()
	if s.lit("null") {
		*dst = nil
		return true
	}
	if !s.eat('[') {
		return false
	}
	out := []string{}
	s.ws()
	if s.eat(']') {
		*dst = out
		return true
	}
	for {
		s.ws()
		v, ok := s.str()
		if !ok {
			return false
		}
		out = append(out, v)
		s.ws()
		if s.eat(',') {
			continue
		}
		if !s.eat(']') {
			return false
		}
		*dst = out
		return true
	}
}

// members reads an object's members after its '{' up to and including its
// '}', calling value for each key with the reader at the value. The key is a
// slice of the body unless it had escapes; value must not keep it.
func (s *scan) members(value func(key []byte) bool) bool {
	s.ws()
	if s.eat('}') {
		return true
	}
	for {
		s.ws()
		key, ok := s.rawStr()
		if !ok || !s.colon() || !value(key) {
			return false
		}
		s.ws()
		if s.eat(',') {
			continue
		}
		return s.eat('}')
	}
}

// skip reads and checks any JSON value.
func (s *scan) skip(depth int) bool {
	if depth > maxDepth {
		return false
	}
	s.ws()
	if s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		_, ok := s.str()
		return ok
	case c == '{':
		s.i++
		return s.members(func([]byte) bool { return s.skip(depth + 1) })
	case c == '[':
		s.i++
		s.ws()
		if s.eat(']') {
			return true
		}
		for {
			if !s.skip(depth + 1) {
				return false
			}
			s.ws()
			if s.eat(',') {
				continue
			}
			return s.eat(']')
		}
	case c == 'n':
		return s.lit("null")
	case c == 't':
		return s.lit("true")
	case c == 'f':
		return s.lit("false")
	case c == '-' || c >= '0' && c <= '9':
		return s.number()
	}
	return false
}

// number reads a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scan) number() bool {
	s.eat('-')
	digits := func() int {
		n := 0
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i++
			n++
		}
		return n
	}
	if s.eat('0') {
		// a leading zero stands alone
	} else if digits() == 0 {
		return false
	}
	if s.eat('.') && digits() == 0 {
		return false
	}
	if s.eat('e') || s.eat('E') {
		if !s.eat('+') {
			s.eat('-')
		}
		if digits() == 0 {
			return false
		}
	}
	return true
}
