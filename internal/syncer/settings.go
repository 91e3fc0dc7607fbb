package syncer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// Setting keys in the store's per-PBX settings.
const (
	keyUserSettings = "sync.user-settings"
	keyUserState    = "sync.user-state"
	keyDeltaUsers   = "sync.delta.users"
	keyRunPrefix    = "sync.run."
	keySMTP         = "smtp"
)

// User ranges.
const (
	RangeAll    = "all"
	RangeType   = "type"
	RangeGroups = "groups"
	RangeUsers  = "users"
)

// Numbering modes.
const (
	NumberingAuto     = "auto"
	NumberingProperty = "property"
)

// Delete-when values.
const (
	DeleteWhenDisabled = "disabled"
	DeleteWhenDeleted  = "deleted"
)

// Group membership modes for range "groups".
const (
	MembersDirect     = "direct"
	MembersTransitive = "transitive"
)

// Numbering says how a new extension gets its number.
type Numbering struct {
	Mode     string `json:"mode"`               // auto | property
	Start    string `json:"start,omitempty"`    // auto: first number to hand out
	Property string `json:"property,omitempty"` // property: the user property holding the number
}

// FieldMap maps each PBX field to the Entra user property it is synced from;
// "" means the field is not synced.
type FieldMap struct {
	FirstName string `json:"firstName"`
	LastName  string `json:"lastName"`
	Email     string `json:"email"`
	Mobile    string `json:"mobile"`
	JobTitle  string `json:"jobTitle"`
}

// DefaultFields is the default field mapping.
var DefaultFields = FieldMap{FirstName: "givenName", LastName: "surname", Email: "mail", Mobile: "mobilePhone", JobTitle: "jobTitle"}

// DeleteGuard stops a run that would delete more than MaxPercent percent
// (default 20) or, when MaxCount > 0, more than MaxCount of the synced
// extensions until an administrator confirms it.
type DeleteGuard struct {
	MaxPercent *int `json:"maxPercent,omitempty"`
	MaxCount   int  `json:"maxCount,omitempty"`
}

// Binding binds a hand-picked user to an existing extension or asks for a
// new extension with a given number.
type Binding struct {
	ExtensionID string `json:"extensionId,omitempty"`
	Number      string `json:"number,omitempty"`
}

// UserSettings are the user-sync settings (CONTRACT.md, PUT /api/v1/integration/user-sync).
type UserSettings struct {
	Enabled          bool               `json:"enabled"`
	Range            string             `json:"range"`
	UserTypes        []string           `json:"userTypes"`
	GroupIDs         []string           `json:"groupIds"`
	GroupMembers     string             `json:"groupMembers,omitempty"` // direct (default) | transitive
	UserIDs          []string           `json:"userIds"`
	Bindings         map[string]Binding `json:"bindings,omitempty"` // hand-picked users: entra id -> binding
	Numbering        Numbering          `json:"numbering"`
	DeleteWhen       []string           `json:"deleteWhen"`
	DeleteOutOfRange bool               `json:"deleteOutOfRange"`
	AssociateByEmail bool               `json:"associateByEmail"`
	WelcomeEmail     bool               `json:"welcomeEmail"`
	Fields           *FieldMap          `json:"fields,omitempty"`
	DeleteGuard      DeleteGuard        `json:"deleteGuard"`
}

// userState is the engine's own bookkeeping next to the settings.
type userState struct {
	Paused bool `json:"paused"`
}

// DefaultUserSettings are what GET returns before the first save.
func DefaultUserSettings() UserSettings {
	f := DefaultFields
	return UserSettings{Range: RangeAll, UserTypes: []string{}, GroupIDs: []string{}, UserIDs: []string{},
		Numbering: Numbering{Mode: NumberingAuto, Start: "1000"}, DeleteWhen: []string{DeleteWhenDeleted},
		Fields: &f, GroupMembers: MembersDirect}
}

func fe(field, code, reason string) error {
	return &directory.FieldError{Field: field, Code: code, Reason: reason}
}

// normalize fills defaults and validates every field; the first problem is returned.
func (s *UserSettings) normalize() error {
	switch s.Range {
	case RangeAll, RangeType, RangeGroups, RangeUsers:
	case "":
		return fe("range", "required", "is required: all, type, groups or users")
	default:
		return fe("range", "invalid", "must be all, type, groups or users")
	}
	if s.UserTypes == nil {
		s.UserTypes = []string{}
	}
	for i, t := range s.UserTypes {
		switch strings.ToLower(t) {
		case "member":
			s.UserTypes[i] = "Member"
		case "guest":
			s.UserTypes[i] = "Guest"
		default:
			return fe(fmt.Sprintf("userTypes[%d]", i), "invalid", "must be Member or Guest")
		}
	}
	s.UserTypes = dedupe(s.UserTypes)
	if s.Range == RangeType && len(s.UserTypes) == 0 {
		return fe("userTypes", "required", "choose at least one user type (Member, Guest) for range type")
	}
	if s.GroupIDs == nil {
		s.GroupIDs = []string{}
	}
	for i, g := range s.GroupIDs {
		if !validID(g) {
			return fe(fmt.Sprintf("groupIds[%d]", i), "invalid", "must be a group object id")
		}
	}
	s.GroupIDs = dedupe(s.GroupIDs)
	if s.Range == RangeGroups && len(s.GroupIDs) == 0 {
		return fe("groupIds", "required", "choose at least one group for range groups")
	}
	if len(s.GroupIDs) > 500 {
		return fe("groupIds", "invalid", "at most 500 groups")
	}
	switch s.GroupMembers {
	case "":
		s.GroupMembers = MembersDirect
	case MembersDirect, MembersTransitive:
	default:
		return fe("groupMembers", "invalid", "must be direct or transitive")
	}
	if s.UserIDs == nil {
		s.UserIDs = []string{}
	}
	for i, u := range s.UserIDs {
		if !validID(u) {
			return fe(fmt.Sprintf("userIds[%d]", i), "invalid", "must be a user object id")
		}
	}
	s.UserIDs = dedupe(s.UserIDs)
	if len(s.UserIDs) > 10000 {
		return fe("userIds", "invalid", "at most 10000 hand-picked users")
	}
	for id, b := range s.Bindings {
		if !slices.Contains(s.UserIDs, id) {
			delete(s.Bindings, id)
			continue
		}
		if (b.ExtensionID == "") == (b.Number == "") {
			return fe("bindings."+id, "invalid", "give exactly one of extensionId and number")
		}
		if b.Number != "" {
			if err := directory.ValidateNumber(b.Number); err != nil {
				return fe("bindings."+id+".number", "invalid", err.(*directory.FieldError).Reason)
			}
		}
	}
	switch s.Numbering.Mode {
	case NumberingAuto:
		if s.Numbering.Start == "" {
			return fe("numbering.start", "required", "is required for automatic numbering")
		}
		if err := directory.ValidateNumber(s.Numbering.Start); err != nil {
			return fe("numbering.start", "invalid", err.(*directory.FieldError).Reason)
		}
		s.Numbering.Property = ""
	case NumberingProperty:
		if strings.TrimSpace(s.Numbering.Property) == "" {
			return fe("numbering.property", "required", "name the user property holding the extension number (e.g. businessPhones, extensionAttribute1)")
		}
		if !numberProperty(s.Numbering.Property) {
			return fe("numbering.property", "invalid", "must be businessPhones, mobilePhone, employeeId or extensionAttribute1..15")
		}
	case "":
		return fe("numbering.mode", "required", "is required: auto or property")
	default:
		return fe("numbering.mode", "invalid", "must be auto or property")
	}
	if s.DeleteWhen == nil {
		s.DeleteWhen = []string{}
	}
	for i, d := range s.DeleteWhen {
		if d != DeleteWhenDisabled && d != DeleteWhenDeleted {
			return fe(fmt.Sprintf("deleteWhen[%d]", i), "invalid", "must be disabled or deleted")
		}
	}
	s.DeleteWhen = dedupe(s.DeleteWhen)
	if s.Fields == nil {
		f := DefaultFields
		s.Fields = &f
	}
	for _, f := range []struct{ name, v string }{
		{"firstName", s.Fields.FirstName}, {"lastName", s.Fields.LastName}, {"email", s.Fields.Email},
		{"mobile", s.Fields.Mobile}, {"jobTitle", s.Fields.JobTitle},
	} {
		if f.v != "" && !validProperty(f.v) {
			return fe("fields."+f.name, "invalid", "must be a user property name (letters, digits, _ and . for nested properties) or \"\" for not synced")
		}
	}
	if p := s.DeleteGuard.MaxPercent; p != nil && (*p < 0 || *p > 100) {
		return fe("deleteGuard.maxPercent", "invalid", "must be from 0 to 100")
	}
	if s.DeleteGuard.MaxCount < 0 {
		return fe("deleteGuard.maxCount", "invalid", "must not be negative")
	}
	return nil
}

func (s *UserSettings) deletes(when string) bool { return slices.Contains(s.DeleteWhen, when) }

func (s *UserSettings) guardPercent() int {
	if s.DeleteGuard.MaxPercent == nil {
		return 20
	}
	return *s.DeleteGuard.MaxPercent
}

// fingerprint covers everything that decides which users are read and how
// they map: a change forces a full read.
func (s *UserSettings) fingerprint() string {
	x := struct {
		R         string
		T, G, U   []string
		M         string
		N         Numbering
		F         FieldMap
		Sel       []string
		DW        []string
		A         bool
		BindCount int
	}{s.Range, s.UserTypes, s.GroupIDs, s.UserIDs, s.GroupMembers, s.Numbering, *s.Fields, userSelect(s), s.DeleteWhen, s.AssociateByEmail, len(s.Bindings)}
	b, _ := json.Marshal(x)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

func dedupe(ss []string) []string {
	out := ss[:0]
	seen := map[string]bool{}
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func validID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

func validProperty(s string) bool {
	if len(s) > 128 || s == "" || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

func numberProperty(p string) bool {
	l := strings.ToLower(strings.TrimPrefix(strings.ToLower(p), "onpremisesextensionattributes."))
	switch l {
	case "businessphones", "mobilephone", "employeeid":
		return true
	}
	if n, ok := strings.CutPrefix(l, "extensionattribute"); ok {
		for i := 1; i <= 15; i++ {
			if n == fmt.Sprint(i) {
				return true
			}
		}
	}
	return false
}

// ErrPaused: user sync is paused; its settings are locked until it is switched on again.
var ErrPaused = &directory.LockedError{Reason: "user sync is paused: its settings are kept and locked; switch it on again (enabled: true) to change them or to sync"}

// ErrDisabled: user sync was never switched on.
var ErrDisabled = errors.New("user sync is not enabled")

// UserSettings returns the stored settings (defaults before the first save)
// and whether user sync is paused.
func (e *Engine) UserSettings(ctx context.Context, pbx string) (UserSettings, bool, error) {
	s, _, err := e.loadSettings(ctx, pbx)
	if err != nil {
		return s, false, err
	}
	st, err := e.loadState(ctx, pbx)
	return s, st.Paused, err
}

func (e *Engine) loadSettings(ctx context.Context, pbx string) (UserSettings, bool, error) {
	b, err := e.Store.GetSetting(ctx, pbx, keyUserSettings)
	if errors.Is(err, store.ErrNotFound) {
		return DefaultUserSettings(), false, nil
	}
	if err != nil {
		return UserSettings{}, false, err
	}
	var s UserSettings
	if err := json.Unmarshal(b, &s); err != nil {
		return UserSettings{}, false, fmt.Errorf("syncer: stored user settings: %w", err)
	}
	if err := s.normalize(); err != nil {
		return UserSettings{}, false, fmt.Errorf("syncer: stored user settings: %w", err)
	}
	return s, true, nil
}

func (e *Engine) loadState(ctx context.Context, pbx string) (userState, error) {
	var st userState
	b, err := e.Store.GetSetting(ctx, pbx, keyUserState)
	if errors.Is(err, store.ErrNotFound) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

// SaveUserSettings validates and stores the settings. The first save that
// switches user sync on starts the initial sync at once, in the background:
// first is true and runID names that run. While user sync is paused, only a
// save with enabled: true (which resumes it) is accepted.
func (e *Engine) SaveUserSettings(ctx context.Context, pbx, actor string, s UserSettings) (first bool, runID string, err error) {
	if err := s.normalize(); err != nil {
		return false, "", err
	}
	st, err := e.loadState(ctx, pbx)
	if err != nil {
		return false, "", err
	}
	if st.Paused && !s.Enabled {
		return false, "", ErrPaused
	}
	var wasEnabled, changed bool
	err = e.Store.UpdateSetting(ctx, pbx, keyUserSettings, func(old []byte) ([]byte, error) {
		changed = old == nil
		if old != nil {
			var prev UserSettings
			if json.Unmarshal(old, &prev) == nil {
				wasEnabled = prev.Enabled
				changed = prev.normalize() != nil || prev.fingerprint() != s.fingerprint()
				if s.Bindings == nil {
					s.Bindings = prev.Bindings // bindings are managed through bind/unbind
					if err := s.normalize(); err != nil {
						return nil, err
					}
				}
			}
		}
		return json.Marshal(s)
	})
	if err != nil {
		return false, "", err
	}
	if changed {
		// What is read, or how it maps, changed: the next run reads everything.
		if err := e.Store.UpdateSetting(ctx, pbx, keyDeltaUsers, func([]byte) ([]byte, error) { return nil, nil }); err != nil {
			return false, "", err
		}
	}
	switch {
	case s.Enabled && st.Paused:
		if err := e.setPaused(ctx, pbx, false); err != nil {
			return false, "", err
		}
	case !s.Enabled && wasEnabled:
		// Switching user sync off is a pause that keeps the extensions.
		if err := e.setPaused(ctx, pbx, true); err != nil {
			return false, "", err
		}
	}
	e.PBX.Audit(ctx, pbx, actor, "sync.user_settings.save", "user-sync", fmt.Sprintf("range=%s numbering=%s enabled=%t", s.Range, s.Numbering.Mode, s.Enabled))
	if wasEnabled || !s.Enabled {
		return false, "", nil
	}
	r, err := e.Start(ctx, pbx, RunOptions{Trigger: TriggerInitial})
	if err != nil {
		return true, "", err
	}
	return true, r.ID, nil
}

func (e *Engine) setPaused(ctx context.Context, pbx string, paused bool) error {
	return e.Store.UpdateSetting(ctx, pbx, keyUserState, func(old []byte) ([]byte, error) {
		var st userState
		if old != nil {
			_ = json.Unmarshal(old, &st)
		}
		st.Paused = paused
		return json.Marshal(st)
	})
}
