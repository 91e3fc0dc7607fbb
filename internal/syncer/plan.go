package syncer

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/switchboard-pbx/switchboard/internal/directory"
)

// Plan operations.
const (
	OpCreate  = "create"  // a new extension for a user
	OpUpdate  = "update"  // synced fields (or the number) of a bound extension change
	OpBind    = "bind"    // an existing extension becomes bound to a user (same email, or hand-picked)
	OpRelease = "release" // a synced extension becomes an ordinary PBX extension
	OpDelete  = "delete"  // a synced extension is deleted
)

// Action is one step of a plan.
type Action struct {
	Op          string   `json:"op"`
	Subject     string   `json:"subject"`
	EntraID     string   `json:"entraId,omitempty"`
	ExtensionID string   `json:"extensionId,omitempty"`
	Number      string   `json:"number"`
	Changes     []string `json:"changes,omitempty"`
	Reason      string   `json:"reason,omitempty"`

	ext *directory.Extension // the record to write (create, update, bind, release)
}

// plan is the outcome of planning: what to write, and what is left alone.
type plan struct {
	deletes, updates, creates []Action
	skips                     []Skip
	unchanged                 int
	next                      int64 // auto numbering: where the next search for a free number starts
}

func (p *plan) skip(subject, id, format string, args ...any) {
	p.skips = append(p.skips, Skip{Subject: subject, EntraID: id, Reason: fmt.Sprintf(format, args...)})
}

// actions returns the plan's steps in apply order.
func (p *plan) actions() []Action {
	out := make([]Action, 0, len(p.deletes)+len(p.updates)+len(p.creates))
	out = append(out, p.deletes...)
	out = append(out, p.updates...)
	return append(out, p.creates...)
}

// planner holds the evolving picture of the PBX while a plan is made.
type planner struct {
	s   *UserSettings
	loc *local
	p   *plan
	// numbers and emails overlay the PBX's state with the plan's changes:
	// number -> who takes it ("user x", or freed), email -> extension id
	// ("" for a planned create, or freed).
	numbers  map[string]string
	emails   map[string]string
	handled  map[string]bool // extension ids with a planned step
	released map[string]bool // extension ids released in this plan
	bound    map[string]bool // extension ids bound in this plan
	next     int64           // auto numbering cursor
	width    int
	total    int // extensions after the planned deletes and creates
	capacity int
}

func extLabel(e *directory.Extension) string { return "extension " + e.Number }

// makePlan computes the steps that drive the PBX toward the Entra users read.
//
// nextHint (auto numbering, delta runs) is where the search for a free number
// starts when it is above the start number: incremental runs look numbers up
// one by one and do not rescan the ones handed out before.
func makePlan(s *UserSettings, loc *local, rd *readResult, capacity int, nextHint int64) *plan {
	pl := &planner{s: s, loc: loc, p: &plan{}, numbers: map[string]string{}, emails: map[string]string{},
		handled: map[string]bool{}, released: map[string]bool{}, bound: map[string]bool{}, total: loc.total, capacity: capacity}
	if s.Numbering.Mode == NumberingAuto {
		pl.next, _ = strconv.ParseInt(s.Numbering.Start, 10, 64)
		pl.width = len(s.Numbering.Start)
		if nextHint > pl.next {
			pl.next = nextHint
		}
	}
	seen := make(map[string]bool, len(rd.users))
	for _, u := range rd.users {
		seen[u.ID] = true
	}

	// 1. Extensions whose user is gone, out of range, or disabled (when that deletes).
	for id := range rd.gone {
		if e := loc.entra(id); e != nil {
			pl.userGone(e)
		}
	}
	if rd.complete && loc.eager {
		for id, e := range loc.byEntra {
			if !seen[id] && !rd.gone[id] {
				pl.userGone(e)
			}
		}
	}
	for _, u := range rd.users {
		e := loc.entra(u.ID)
		if e == nil || pl.handled[e.ID] {
			continue
		}
		switch {
		case !u.InRange && s.DeleteOutOfRange:
			pl.del(e, u.Subject, "no longer in the user sync range (auto-delete is on)")
		case !u.InRange:
			pl.release(e, u.Subject, "no longer in the user sync range: now an ordinary PBX extension")
		case !u.Enabled && s.deletes(DeleteWhenDisabled):
			pl.del(e, u.Subject, "account is disabled in Entra")
		}
	}
	// 2. Users already bound: update their extension.
	for i := range rd.users {
		u := &rd.users[i]
		if e := loc.entra(u.ID); e != nil && !pl.handled[e.ID] && u.InRange {
			pl.update(e, u)
		}
	}
	// 3. Users without an extension: bind or create.
	for i := range rd.users {
		u := &rd.users[i]
		if !u.InRange || loc.entra(u.ID) != nil {
			continue
		}
		if !u.Enabled && s.deletes(DeleteWhenDisabled) {
			pl.p.skip(u.Subject, u.ID, "account is disabled in Entra (delete when disabled is on)")
			continue
		}
		pl.add(u)
	}
	pl.p.next = pl.next
	return pl.p
}

func (pl *planner) userGone(e *directory.Extension) {
	if pl.s.deletes(DeleteWhenDeleted) {
		pl.del(e, e.EntraID, "user was deleted in Entra")
	} else {
		pl.release(e, e.EntraID, "user was deleted in Entra: kept as an ordinary PBX extension (delete when deleted is off)")
	}
}

func (pl *planner) del(e *directory.Extension, subject, reason string) {
	pl.handled[e.ID] = true
	pl.numbers[e.Number] = freed
	if m := directory.NormalizeEmail(e.Email); m != "" {
		if h, _ := pl.emailOwner(m); h == e.ID {
			pl.emails[m] = freed
		}
	}
	pl.total--
	pl.p.deletes = append(pl.p.deletes, Action{Op: OpDelete, Subject: subject, EntraID: e.EntraID, ExtensionID: e.ID, Number: e.Number, Reason: reason})
}

func (pl *planner) release(e *directory.Extension, subject, reason string) {
	pl.handled[e.ID] = true
	pl.released[e.ID] = true
	x := *e
	x.Source, x.EntraID = directory.SourceLocal, ""
	pl.p.updates = append(pl.p.updates, Action{Op: OpRelease, Subject: subject, EntraID: e.EntraID, ExtensionID: e.ID, Number: e.Number, Reason: reason, ext: &x})
}

// desired copies the mapped fields of u onto x; it returns the changed field names.
func (pl *planner) desired(x *directory.Extension, u *entraUser) []string {
	props := pl.s.fieldProps()
	var changed []string
	set := func(i int, name string, dst *string) {
		if props[i] == "" {
			return
		}
		v := u.Vals[i]
		if i == fEmail {
			v = directory.NormalizeEmail(v)
		}
		if *dst != v {
			*dst = v
			changed = append(changed, name)
		}
	}
	set(fFirst, "firstName", &x.FirstName)
	set(fLast, "lastName", &x.LastName)
	set(fEmail, "email", &x.Email)
	set(fMobile, "mobile", &x.Mobile)
	set(fJob, "jobTitle", &x.JobTitle)
	return changed
}

// freed marks a number or email that the plan frees.
const freed = "\x00freed"

// numberHolder says who holds number n once the plan's earlier steps are applied.
func (pl *planner) numberHolder(n string) (string, bool) {
	if who, ok := pl.numbers[n]; ok {
		return who, who != freed
	}
	if e := pl.loc.number(n); e != nil {
		return extLabel(e), true
	}
	return "", false
}

func (pl *planner) takeNumber(old, n, who string) {
	if old != "" {
		pl.numbers[old] = freed
	}
	pl.numbers[n] = who
}

// emailOwner returns the id of the extension holding email ("" for a planned
// create); ok is false when nobody holds it.
func (pl *planner) emailOwner(email string) (string, bool) {
	if h, ok := pl.emails[email]; ok {
		return h, h != freed
	}
	if e := pl.loc.email(email); e != nil {
		return e.ID, true
	}
	return "", false
}

// emailHolder describes who holds email, unless it is extension id itself ("" = a new one).
func (pl *planner) emailHolder(email, id string) (string, bool) {
	if email == "" {
		return "", false
	}
	h, ok := pl.emailOwner(email)
	if !ok || (id != "" && h == id) {
		return "", false
	}
	if h == "" {
		return "another user of this run", true
	}
	if e := pl.loc.id(h); e != nil {
		return extLabel(e), true
	}
	return "another extension", true
}

func (pl *planner) takeEmail(old, email, id string) {
	if m := directory.NormalizeEmail(old); m != "" && id != "" {
		if h, _ := pl.emailOwner(m); h == id {
			pl.emails[m] = freed
		}
	}
	if email != "" {
		pl.emails[email] = id
	}
}

func (pl *planner) update(e *directory.Extension, u *entraUser) {
	pl.handled[e.ID] = true
	x := *e
	changed := pl.desired(&x, u)
	if pl.s.Numbering.Mode == NumberingProperty {
		if n, why := extractNumber(u.NumRaw); why == "" && n != e.Number {
			if _, used := pl.numberHolder(n); !used {
				pl.takeNumber(e.Number, n, "user "+u.Subject)
				x.Number = n
				changed = append(changed, "number")
			}
		}
	}
	if len(changed) == 0 {
		pl.p.unchanged++
		return
	}
	if x.Email != e.Email {
		if who, taken := pl.emailHolder(x.Email, e.ID); taken {
			pl.p.skip(u.Subject, u.ID, "not updated: email %s is already used by %s (emails are unique on the PBX)", x.Email, who)
			return
		}
	}
	if err := directory.ValidateExtension(&x); err != nil {
		pl.p.skip(u.Subject, u.ID, "not updated: %s", fieldReason(err))
		return
	}
	pl.takeEmail(e.Email, x.Email, e.ID)
	pl.p.updates = append(pl.p.updates, Action{Op: OpUpdate, Subject: u.Subject, EntraID: u.ID, ExtensionID: e.ID, Number: x.Number, Changes: changed, ext: &x})
}

func fieldReason(err error) string {
	if fe, ok := err.(*directory.FieldError); ok {
		return fmt.Sprintf("field %s %s", fe.Field, fe.Reason)
	}
	return err.Error()
}

func (pl *planner) add(u *entraUser) {
	s := pl.s
	email := ""
	if s.Fields.Email != "" {
		email = directory.NormalizeEmail(u.Vals[fEmail])
	}
	if b, ok := s.Bindings[u.ID]; ok && s.Range == RangeUsers {
		if b.ExtensionID != "" {
			t := pl.loc.id(b.ExtensionID)
			switch {
			case t == nil:
				pl.p.skip(u.Subject, u.ID, "the extension chosen for this user (id %s) no longer exists", b.ExtensionID)
			case pl.bound[t.ID] || (t.Synced() && !pl.released[t.ID]) || (pl.handled[t.ID] && !pl.released[t.ID]):
				pl.p.skip(u.Subject, u.ID, "the extension chosen for this user (%s) is bound to another Entra user", extLabel(t))
			default:
				pl.bind(t, u, "hand-picked: bound to the chosen extension")
			}
			return
		}
		pl.create(u, email, b.Number, "hand-picked: number chosen by the administrator")
		return
	}
	if email != "" {
		if h, ok := pl.emailOwner(email); ok {
			t := pl.loc.id(h)
			switch {
			case t == nil:
				pl.p.skip(u.Subject, u.ID, "email %s is also the email of another user of this run (emails are unique on the PBX)", email)
			case pl.bound[t.ID] || (t.Synced() && !pl.released[t.ID]):
				pl.p.skip(u.Subject, u.ID, "email %s is already used by %s, which is synced with another Entra user", email, extLabel(t))
			case !s.AssociateByEmail:
				pl.p.skip(u.Subject, u.ID, "email %s is already used by %s and associate by email is off (emails are unique on the PBX)", email, extLabel(t))
			default:
				pl.bind(t, u, "same email as the existing extension (associate by email)")
			}
			return
		}
	}
	pl.create(u, email, "", "")
}

func (pl *planner) bind(t *directory.Extension, u *entraUser, reason string) {
	pl.handled[t.ID] = true
	pl.bound[t.ID] = true
	x := *t
	x.Source, x.EntraID = directory.SourceEntra, u.ID
	changed := pl.desired(&x, u)
	if pl.s.Numbering.Mode == NumberingProperty {
		if n, why := extractNumber(u.NumRaw); why == "" && n != t.Number {
			if _, used := pl.numberHolder(n); !used {
				pl.takeNumber(t.Number, n, "user "+u.Subject)
				x.Number = n
				changed = append(changed, "number")
			}
		}
	}
	if x.Email != directory.NormalizeEmail(t.Email) {
		if who, taken := pl.emailHolder(x.Email, t.ID); taken {
			pl.p.skip(u.Subject, u.ID, "not bound to %s: email %s is already used by %s", extLabel(t), x.Email, who)
			return
		}
	}
	if err := directory.ValidateExtension(&x); err != nil {
		pl.p.skip(u.Subject, u.ID, "not bound to %s: %s", extLabel(t), fieldReason(err))
		return
	}
	pl.takeEmail(t.Email, x.Email, t.ID)
	pl.p.updates = append(pl.p.updates, Action{Op: OpBind, Subject: u.Subject, EntraID: u.ID, ExtensionID: t.ID, Number: x.Number, Changes: changed, Reason: reason, ext: &x})
}

func (pl *planner) create(u *entraUser, email, number, reason string) {
	s := pl.s
	if pl.capacity > 0 && pl.total >= pl.capacity {
		pl.p.skip(u.Subject, u.ID, "not created: the PBX's licensed capacity of %d extensions is reached", pl.capacity)
		return
	}
	if who, taken := pl.emailHolder(email, ""); taken {
		pl.p.skip(u.Subject, u.ID, "not created: email %s is already used by %s (emails are unique on the PBX)", email, who)
		return
	}
	x := &directory.Extension{Source: directory.SourceEntra, EntraID: u.ID}
	pl.desired(x, u)
	switch {
	case number != "":
		if who, used := pl.numberHolder(number); used {
			pl.p.skip(u.Subject, u.ID, "not created: number %s is already used by %s", number, who)
			return
		}
	case s.Numbering.Mode == NumberingProperty:
		n, why := extractNumber(u.NumRaw)
		if why != "" {
			pl.p.skip(u.Subject, u.ID, "not created: property %s %s", s.Numbering.Property, why)
			return
		}
		if who, used := pl.numberHolder(n); used {
			pl.p.skip(u.Subject, u.ID, "not created: number %s (from %s) is already used by %s", n, s.Numbering.Property, who)
			return
		}
		number = n
	default:
		n, ok := pl.nextFree()
		if !ok {
			pl.p.skip(u.Subject, u.ID, "not created: no free extension number from %s up (at most 12 digits)", s.Numbering.Start)
			return
		}
		number = n
	}
	x.Number = number
	x.Presence, x.CallState = directory.PresenceAvailable, directory.CallIdle
	if err := directory.ValidateExtension(x); err != nil {
		pl.p.skip(u.Subject, u.ID, "not created: %s", fieldReason(err))
		return
	}
	pl.takeNumber("", number, "user "+u.Subject)
	pl.takeEmail("", x.Email, "")
	pl.total++
	pl.p.creates = append(pl.p.creates, Action{Op: OpCreate, Subject: u.Subject, EntraID: u.ID, Number: number, Reason: reason, ext: x})
}

// nextFree hands out the next number from the start that no extension uses.
func (pl *planner) nextFree() (string, bool) {
	for {
		n := fmt.Sprintf("%0*d", pl.width, pl.next)
		if len(n) > 12 {
			return "", false
		}
		pl.next++
		if _, used := pl.numberHolder(n); !used {
			return n, true
		}
	}
}

// extractNumber applies the documented digits rule to a property value
// (the reason is "" when a number came out):
//
//   - an extension suffix wins: "+1 425 555 0100 x1234", "ext. 1234",
//     "ext1234" or "#1234" give the digits after the marker (1234);
//   - otherwise the value must consist of digits and phone punctuation
//     (spaces, + - ( ) . /) only, and its digits are the number:
//     "1234" -> 1234, "+1 (425) 555-0100" -> 14255550100;
//   - the result must have 1 to 12 digits (the PBX's number format).
//
// Letters anywhere else, an empty value, or too many digits make the value unusable.
func extractNumber(raw string) (string, string) {
	v := strings.TrimSpace(raw)
	if v == "" {
		return "", "is empty"
	}
	l := strings.ToLower(v)
	for _, m := range []string{"extension", "ext.", "ext", "x", "#"} {
		if i := strings.LastIndex(l, m); i >= 0 {
			tail := strings.TrimSpace(l[i+len(m):])
			if tail != "" && allDigits(tail) {
				v = tail
				break
			}
		}
	}
	var b strings.Builder
	for _, r := range v {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case strings.ContainsRune(" +-()./", r):
		default:
			return "", fmt.Sprintf("value %q is not usable as an extension number (it contains %q; digits and phone punctuation only)", raw, r)
		}
	}
	n := b.String()
	switch {
	case n == "":
		return "", fmt.Sprintf("value %q holds no digits", raw)
	case len(n) > 12:
		return "", fmt.Sprintf("value %q has %d digits; an extension number has 1 to 12", raw, len(n))
	}
	return n, ""
}

func allDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}
