// Package directory is the PBX side of Switchboard: extensions, extension
// groups, phonebooks, personal contacts and presence, with the rules that
// keep them valid (number and email shape, capacity, the 63-group cap, and
// the locks on records bound to Microsoft Entra ID). It imports nothing of
// this repository: storage, API and sync all build on it.
package directory

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// DefaultPBX is the id of the PBX a single-PBX deployment uses.
const DefaultPBX = "default"

// MaxGroups is the number of extension groups one PBX holds at most.
const MaxGroups = 63

// Source says who manages a record.
type Source string

// Sources of a record.
const (
	SourceLocal Source = "local"
	SourceEntra Source = "entra"
)

// Presence is an extension's presence status.
type Presence string

// Presence values (CONTRACT.md).
const (
	PresenceAvailable    Presence = "available"
	PresenceAway         Presence = "away"
	PresenceDoNotDisturb Presence = "do_not_disturb"
	PresenceLunchBreak   Presence = "lunch_break"
	PresenceBusinessTrip Presence = "business_trip"
	PresenceOffWork      Presence = "off_work"
)

// Presences lists every valid presence in display order.
var Presences = []Presence{PresenceAvailable, PresenceAway, PresenceDoNotDisturb, PresenceLunchBreak, PresenceBusinessTrip, PresenceOffWork}

// Valid reports whether p is a known presence.
func (p Presence) Valid() bool {
	for _, q := range Presences {
		if p == q {
			return true
		}
	}
	return false
}

// CallState is the call state the PBX reports for an extension.
type CallState string

// Call states.
const (
	CallIdle    CallState = "idle"
	CallRinging CallState = "ringing"
	CallBusy    CallState = "busy"
)

// Valid reports whether c is a known call state.
func (c CallState) Valid() bool { return c == CallIdle || c == CallRinging || c == CallBusy }

// PBX is one hosted phone system: every other record belongs to one.
type PBX struct {
	ID            string    `json:"id"`
	Name          string    `json:"name"`
	MaxExtensions int       `json:"maxExtensions"`
	TimeZone      string    `json:"timeZone"`
	CreatedAt     time.Time `json:"createdAt"`
}

// Extension is a PBX extension (a phone user).
type Extension struct {
	ID           string    `json:"id"`
	PBXID        string    `json:"-"`
	Number       string    `json:"number"`
	FirstName    string    `json:"firstName"`
	LastName     string    `json:"lastName"`
	Email        string    `json:"email"`
	Mobile       string    `json:"mobile"`
	JobTitle     string    `json:"jobTitle"`
	CallerIDName string    `json:"callerIdName"`
	Presence     Presence  `json:"presence"`
	CallState    CallState `json:"callState"`
	Source       Source    `json:"source"`
	EntraID      string    `json:"entraId,omitempty"`
	// ClientPasswordHash is the KDF hash of the client login password ("" = none set).
	ClientPasswordHash string `json:"-"`
	// SIPSecret is the SIP password sealed by package secret; never plain text at rest.
	SIPSecret []byte    `json:"-"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// Synced reports whether the extension is bound to an Entra user.
func (e *Extension) Synced() bool { return e.Source == SourceEntra && e.EntraID != "" }

// Group is an extension group.
type Group struct {
	ID        string    `json:"id"`
	PBXID     string    `json:"-"`
	Name      string    `json:"name"`
	Source    Source    `json:"source"`
	EntraID   string    `json:"entraId,omitempty"`
	Members   []string  `json:"members"` // extension ids, sorted
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// Synced reports whether the group is bound to an Entra group.
func (g *Group) Synced() bool { return g.Source == SourceEntra && g.EntraID != "" }

// Phonebook is a named list of company contacts.
type Phonebook struct {
	ID           string    `json:"id"`
	PBXID        string    `json:"-"`
	Name         string    `json:"name"`
	Source       Source    `json:"source"`
	EntraID      string    `json:"entraId,omitempty"`
	ContactCount int       `json:"contactCount"`
	CreatedAt    time.Time `json:"createdAt"`
}

// Synced reports whether the phonebook is filled from a shared mailbox.
func (p *Phonebook) Synced() bool { return p.Source == SourceEntra }

// Contact is a contact in a phonebook or an extension's personal contacts.
// Exactly one of PhonebookID and ExtensionID is set.
type Contact struct {
	ID          string `json:"id"`
	PBXID       string `json:"-"`
	PhonebookID string `json:"phonebookId,omitempty"`
	ExtensionID string `json:"extensionId,omitempty"`
	FirstName   string `json:"firstName"`
	LastName    string `json:"lastName"`
	Company     string `json:"company"`
	Mobile      string `json:"mobile"`
	Home        string `json:"home"`
	Business    string `json:"business"`
	// MobileDial, HomeDial and BusinessDial are the dialling forms of Mobile,
	// Home and Business (E.164 where the country is known, else the digits;
	// "" where the number is empty or not diallable). They are derived from
	// the numbers, which are kept as entered, and never entered themselves.
	MobileDial   string `json:"mobileDial"`
	HomeDial     string `json:"homeDial"`
	BusinessDial string `json:"businessDial"`
	Email        string `json:"email"`
	Source       Source `json:"source"`
	EntraID      string `json:"entraId,omitempty"`
}

// VisibilityKind says to whom a phonebook is visible.
type VisibilityKind string

// Visibility targets.
const (
	VisibleToEveryone  VisibilityKind = "everyone"
	VisibleToExtension VisibilityKind = "extension"
	VisibleToGroup     VisibilityKind = "group"
)

// Visibility grants a phonebook's contacts to everyone, an extension or a group.
type Visibility struct {
	PhonebookID string         `json:"phonebookId"`
	Kind        VisibilityKind `json:"kind"`
	TargetID    string         `json:"targetId,omitempty"`
}

// FieldError is a rejected input: the field and the reason.
type FieldError struct {
	Field  string
	Code   string // machine-readable, e.g. "invalid", "required", "duplicate"
	Reason string
}

func (e *FieldError) Error() string { return fmt.Sprintf("%s: %s", e.Field, e.Reason) }

// Sentinel errors of the directory rules.
var (
	// ErrLocked: the record is bound to Entra and the change is not allowed by hand.
	ErrLocked = errors.New("locked by Microsoft Entra ID sync")
	// ErrCapacity: the PBX's licensed extension capacity is reached.
	ErrCapacity = errors.New("extension capacity reached")
	// ErrGroupLimit: the PBX already holds MaxGroups extension groups.
	ErrGroupLimit = errors.New("extension group limit reached")
	// ErrNotConnected: the PBX's Microsoft Entra ID integration is not
	// connected (or is disabled), so nothing can be read from the tenant.
	ErrNotConnected = errors.New("the Microsoft Entra ID integration is not connected")
)

// LockedError explains why a change to a synced record is refused.
type LockedError struct{ Reason string }

func (e *LockedError) Error() string { return e.Reason }

// Unwrap makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Unwrap() error { return ErrLocked }

// ValidateNumber checks an extension number: 1 to 12 digits.
func ValidateNumber(n string) error {
	if n == "" {
		return &FieldError{Field: "number", Code: "required", Reason: "is required"}
	}
	if len(n) > 12 {
		return &FieldError{Field: "number", Code: "invalid", Reason: "must be at most 12 digits"}
	}
	for _, r := range n {
		if r < '0' || r > '9' {
			return &FieldError{Field: "number", Code: "invalid", Reason: "must contain digits only"}
		}
	}
	return nil
}

// NormalizeEmail lower-cases and trims an email for comparison and storage.
func NormalizeEmail(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// ValidateEmail checks an optional email address's shape.
func ValidateEmail(field, s string) error {
	if s == "" {
		return nil
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 || strings.ContainsAny(s, " \t\r\n<>,;") || len(s) > 254 {
		return &FieldError{Field: field, Code: "invalid", Reason: "is not a valid email address"}
	}
	return nil
}

// limits for free-text fields.
const maxText = 128

// ValidateExtension checks every field of an extension and returns the first problem.
func ValidateExtension(e *Extension) error {
	if err := ValidateNumber(e.Number); err != nil {
		return err
	}
	if err := ValidateEmail("email", e.Email); err != nil {
		return err
	}
	for _, f := range []struct{ name, v string }{
		{"firstName", e.FirstName}, {"lastName", e.LastName}, {"mobile", e.Mobile},
		{"jobTitle", e.JobTitle}, {"callerIdName", e.CallerIDName},
	} {
		if len(f.v) > maxText {
			return &FieldError{Field: f.name, Code: "invalid", Reason: fmt.Sprintf("must be at most %d characters", maxText)}
		}
		if strings.ContainsAny(f.v, "\x00\r\n") {
			return &FieldError{Field: f.name, Code: "invalid", Reason: "must not contain control characters"}
		}
	}
	if e.Mobile != "" && !phoneLike(e.Mobile) {
		return &FieldError{Field: "mobile", Code: "invalid", Reason: "must be a phone number (digits, spaces, + - ( ) .)"}
	}
	if e.Presence != "" && !e.Presence.Valid() {
		return &FieldError{Field: "presence", Code: "invalid", Reason: "must be one of available, away, do_not_disturb, lunch_break, business_trip, off_work"}
	}
	if e.CallState != "" && !e.CallState.Valid() {
		return &FieldError{Field: "callState", Code: "invalid", Reason: "must be idle, ringing or busy"}
	}
	if e.Source != SourceLocal && e.Source != SourceEntra {
		return &FieldError{Field: "source", Code: "invalid", Reason: "must be local or entra"}
	}
	return nil
}

func phoneLike(s string) bool {
	digits := 0
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			digits++
		case strings.ContainsRune(" +-().x", r):
		default:
			return false
		}
	}
	return digits > 0
}

// ValidateName checks a group or phonebook name.
func ValidateName(field, s string) error {
	if strings.TrimSpace(s) == "" {
		return &FieldError{Field: field, Code: "required", Reason: "is required"}
	}
	if len(s) > maxText {
		return &FieldError{Field: field, Code: "invalid", Reason: fmt.Sprintf("must be at most %d characters", maxText)}
	}
	return nil
}

// ValidateContact checks a contact as the admin API stores it. Synced
// contacts are validated by the sync (which skips and reports instead).
func ValidateContact(c *Contact) error {
	if strings.TrimSpace(c.FirstName) == "" && strings.TrimSpace(c.LastName) == "" {
		return &FieldError{Field: "firstName", Code: "required", Reason: "a first or last name is required"}
	}
	if c.Mobile == "" && c.Home == "" && c.Business == "" {
		return &FieldError{Field: "mobile", Code: "required", Reason: "at least one of mobile, home or business phone is required"}
	}
	for _, f := range []struct{ name, v string }{{"mobile", c.Mobile}, {"home", c.Home}, {"business", c.Business}} {
		if f.v != "" && !phoneLike(f.v) {
			return &FieldError{Field: f.name, Code: "invalid", Reason: "must be a phone number"}
		}
	}
	return ValidateEmail("email", c.Email)
}

// SyncedExtensionFields are the fields a synced extension takes from Entra.
var SyncedExtensionFields = []string{"firstName", "lastName", "email", "mobile", "jobTitle"}

// CheckManualExtensionEdit refuses a hand edit of a synced field of a synced
// extension. changed lists the JSON field names the edit would change.
func CheckManualExtensionEdit(old *Extension, changed []string) error {
	if !old.Synced() {
		return nil
	}
	for _, c := range changed {
		for _, s := range SyncedExtensionFields {
			if c == s {
				return &LockedError{Reason: fmt.Sprintf("%s is synced from Microsoft Entra ID and cannot be edited here; change it in Entra", c)}
			}
		}
	}
	return nil
}

// CheckManualExtensionDelete refuses a hand delete of a synced extension.
func CheckManualExtensionDelete(e *Extension) error {
	if e.Synced() {
		return &LockedError{Reason: "extension is synced from Microsoft Entra ID and cannot be deleted by hand; remove the user from the sync range or pause user sync with deletion"}
	}
	return nil
}

// CheckManualGroupEdit refuses a hand change of a synced group's name or members.
func CheckManualGroupEdit(g *Group) error {
	if g.Synced() {
		return &LockedError{Reason: "extension group is synced from Microsoft Entra ID: its name and members cannot be changed by hand"}
	}
	return nil
}

// CheckManualGroupDelete refuses a hand delete of a synced group.
func CheckManualGroupDelete(g *Group) error {
	if g.Synced() {
		return &LockedError{Reason: "extension group is synced from Microsoft Entra ID and cannot be deleted by hand"}
	}
	return nil
}

// CheckManualPhonebookEdit refuses hand changes to a synced phonebook's contacts.
func CheckManualPhonebookEdit(p *Phonebook) error {
	if p.Synced() {
		return &LockedError{Reason: "phonebook is synced from a shared mailbox and is read-only"}
	}
	return nil
}
