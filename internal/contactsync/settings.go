package contactsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/graph"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// SettingsKey is the Settings key of the contacts sync settings.
const SettingsKey = "contacts-sync"

// Ranges of the personal contacts sync.
const (
	RangeAll    = "all"
	RangeGroups = "groups"
	RangeUsers  = "users"
	// RangeMailboxes: chosen shared mailboxes, each into its own phonebook.
	RangeMailboxes = "mailboxes"
)

// Settings are the contacts sync settings of one PBX (CONTRACT.md:
// PUT /api/v1/integration/contacts-sync).
type Settings struct {
	Personal        Personal `json:"personal"`
	SharedMailboxes Shared   `json:"sharedMailboxes"`
	// DefaultCountry (ISO 3166-1 alpha-2) normalises national numbers to
	// E.164 when a contact's address names no country. "" = unknown.
	DefaultCountry string `json:"defaultCountry,omitempty"`
}

// Personal selects whose personal contacts are copied.
type Personal struct {
	Enabled bool   `json:"enabled"`
	Range   string `json:"range"` // all | groups | users
	// GroupIDs are Entra group ids (range groups; members are read transitively).
	GroupIDs []string `json:"groupIds"`
	// UserIDs are Entra user ids of synced users (range users).
	UserIDs []string `json:"userIds"`
	// SelectAllSynced ("select all synced users") sets range users and fills
	// UserIDs with every user the user sync has bound to an extension. Not stored.
	SelectAllSynced bool `json:"selectAllSynced,omitempty"`
}

// Shared selects the shared mailboxes copied into company phonebooks.
type Shared struct {
	Enabled   bool             `json:"enabled"`
	Range     string           `json:"range"` // all | mailboxes
	Mailboxes []MailboxBinding `json:"mailboxes"`
	// Phonebook names the one phonebook of range all.
	Phonebook string `json:"phonebook"`
}

// MailboxBinding names the phonebook a chosen shared mailbox goes to.
type MailboxBinding struct {
	MailboxID string `json:"mailboxId"` // Entra object id (or UPN) of the shared mailbox
	Phonebook string `json:"phonebook"`
}

// DefaultSettings are the settings of a PBX that never saved any: both off.
func DefaultSettings() Settings {
	return Settings{
		Personal:        Personal{Range: RangeAll, GroupIDs: []string{}, UserIDs: []string{}},
		SharedMailboxes: Shared{Range: RangeAll, Mailboxes: []MailboxBinding{}},
	}
}

func fieldErr(field, code, reason string) error {
	return &directory.FieldError{Field: field, Code: code, Reason: reason}
}

// normalize trims, deduplicates and checks the settings; synced holds the
// Entra ids of the users bound to extensions (the user-sync range). It
// returns the first problem as a *directory.FieldError naming the field.
func (s *Settings) normalize(synced map[string]bool) error {
	p := &s.Personal
	if p.Range == "" {
		p.Range = RangeAll
	}
	if p.SelectAllSynced {
		p.Range, p.UserIDs, p.SelectAllSynced = RangeUsers, sortedKeys(synced), false
	}
	p.GroupIDs, p.UserIDs = trimIDs(p.GroupIDs), trimIDs(p.UserIDs)
	switch p.Range {
	case RangeAll:
	case RangeGroups:
		if p.Enabled && len(p.GroupIDs) == 0 {
			return fieldErr("personal.groupIds", "required", "choose at least one group for range groups")
		}
		for i, id := range p.GroupIDs {
			if !validID(id) {
				return fieldErr(fmt.Sprintf("personal.groupIds[%d]", i), "invalid", "is not an Entra group id")
			}
		}
	case RangeUsers:
		if p.Enabled && len(p.UserIDs) == 0 {
			return fieldErr("personal.userIds", "required", "choose at least one user for range users (or selectAllSynced)")
		}
		for i, id := range p.UserIDs {
			if !validID(id) {
				return fieldErr(fmt.Sprintf("personal.userIds[%d]", i), "invalid", "is not an Entra user id")
			}
			if p.Enabled && !synced[id] {
				return fieldErr(fmt.Sprintf("personal.userIds[%d]", i), "not_synced", "is not a synced user: add the user to user sync first")
			}
		}
	default:
		return fieldErr("personal.range", "invalid", "must be all, groups or users")
	}

	m := &s.SharedMailboxes
	if m.Range == "" {
		m.Range = RangeAll
	}
	m.Phonebook = strings.TrimSpace(m.Phonebook)
	if m.Mailboxes == nil {
		m.Mailboxes = []MailboxBinding{}
	}
	switch m.Range {
	case RangeAll:
		if m.Enabled {
			if err := directory.ValidateName("sharedMailboxes.phonebook", m.Phonebook); err != nil {
				return err
			}
		}
	case RangeMailboxes:
		if m.Enabled && len(m.Mailboxes) == 0 {
			return fieldErr("sharedMailboxes.mailboxes", "required", "choose at least one shared mailbox for range mailboxes")
		}
		seenBox, seenName := map[string]int{}, map[string]int{}
		for i := range m.Mailboxes {
			b := &m.Mailboxes[i]
			b.MailboxID, b.Phonebook = strings.TrimSpace(b.MailboxID), strings.TrimSpace(b.Phonebook)
			f := fmt.Sprintf("sharedMailboxes.mailboxes[%d]", i)
			if b.MailboxID == "" {
				return fieldErr(f+".mailboxId", "required", "is required")
			}
			if !validID(b.MailboxID) && !strings.Contains(b.MailboxID, "@") {
				return fieldErr(f+".mailboxId", "invalid", "must be the shared mailbox's object id or user principal name")
			}
			if err := directory.ValidateName(f+".phonebook", b.Phonebook); err != nil {
				return err
			}
			if j, dup := seenBox[strings.ToLower(b.MailboxID)]; dup {
				return fieldErr(f+".mailboxId", "duplicate", fmt.Sprintf("is already listed as mailboxes[%d]", j))
			}
			if j, dup := seenName[strings.ToLower(b.Phonebook)]; dup {
				return fieldErr(f+".phonebook", "duplicate", fmt.Sprintf("is already the phonebook of mailboxes[%d]: each mailbox gets its own phonebook (use range all for one phonebook)", j))
			}
			seenBox[strings.ToLower(b.MailboxID)], seenName[strings.ToLower(b.Phonebook)] = i, i
		}
	default:
		return fieldErr("sharedMailboxes.range", "invalid", "must be all or mailboxes")
	}
	s.DefaultCountry = strings.ToUpper(strings.TrimSpace(s.DefaultCountry))
	if s.DefaultCountry != "" && !KnownCountry(s.DefaultCountry) {
		return fieldErr("defaultCountry", "invalid", "must be an ISO 3166-1 alpha-2 country code the dialling normaliser knows (e.g. DE, US, GB, CN)")
	}
	return nil
}

func trimIDs(in []string) []string {
	out := make([]string, 0, len(in))
	seen := map[string]bool{}
	for _, s := range in {
		s = strings.TrimSpace(s)
		if s == "" || seen[strings.ToLower(s)] {
			continue
		}
		seen[strings.ToLower(s)] = true
		out = append(out, s)
	}
	return out
}

// validID accepts Entra object ids (GUIDs); anything else is refused early.
func validID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, r := range s {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if r != '-' {
				return false
			}
		case r >= '0' && r <= '9', r >= 'a' && r <= 'f', r >= 'A' && r <= 'F':
		default:
			return false
		}
	}
	return true
}

// Settings returns the PBX's contacts sync settings (defaults when never saved).
func (s *Service) Settings(ctx context.Context, pbx string) (Settings, error) {
	raw, err := s.Store.GetSetting(ctx, pbx, SettingsKey)
	if errors.Is(err, store.ErrNotFound) {
		return DefaultSettings(), nil
	}
	if err != nil {
		return Settings{}, err
	}
	set := DefaultSettings()
	if err := json.Unmarshal(raw, &set); err != nil {
		return Settings{}, fmt.Errorf("contacts sync settings: %w", err)
	}
	if set.Personal.GroupIDs == nil {
		set.Personal.GroupIDs = []string{}
	}
	if set.Personal.UserIDs == nil {
		set.Personal.UserIDs = []string{}
	}
	if set.SharedMailboxes.Mailboxes == nil {
		set.SharedMailboxes.Mailboxes = []MailboxBinding{}
	}
	return set, nil
}

// SaveSettings validates and stores the settings and returns what was stored.
// Users in personal.userIds must be synced users (bound to an extension).
func (s *Service) SaveSettings(ctx context.Context, pbx, actor string, set Settings) (Settings, error) {
	synced, err := s.syncedUsers(ctx, pbx)
	if err != nil {
		return Settings{}, err
	}
	ids := map[string]bool{}
	for id := range synced {
		ids[id] = true
	}
	if err := set.normalize(ids); err != nil {
		return Settings{}, err
	}
	if err := s.checkMailboxes(ctx, pbx, set.SharedMailboxes); err != nil {
		return Settings{}, err
	}
	raw, err := json.Marshal(set)
	if err != nil {
		return Settings{}, err
	}
	if err := s.Store.UpdateSetting(ctx, pbx, SettingsKey, func([]byte) ([]byte, error) { return raw, nil }); err != nil {
		return Settings{}, err
	}
	s.audit(ctx, pbx, actor, "contacts-sync.settings", string(raw))
	return set, nil
}

// SyncedUser is a user the user sync bound to an extension (the picker of
// personal.userIds).
type SyncedUser struct {
	EntraID     string `json:"id"`
	ExtensionID string `json:"extensionId"`
	Number      string `json:"number"`
	Name        string `json:"name"`
	Email       string `json:"email"`
}

// SyncedUsers lists the synced users in extension number order.
func (s *Service) SyncedUsers(ctx context.Context, pbx string) ([]SyncedUser, error) {
	out := []SyncedUser{}
	err := s.Store.ListAllExtensions(ctx, pbx, func(e *directory.Extension) error {
		if e.Synced() {
			out = append(out, SyncedUser{EntraID: e.EntraID, ExtensionID: e.ID, Number: e.Number,
				Name: strings.TrimSpace(e.FirstName + " " + e.LastName), Email: e.Email})
		}
		return nil
	})
	return out, err
}

// syncedUsers maps Entra user id -> extension for every synced extension.
func (s *Service) syncedUsers(ctx context.Context, pbx string) (map[string]*directory.Extension, error) {
	out := map[string]*directory.Extension{}
	err := s.Store.ListAllExtensions(ctx, pbx, func(e *directory.Extension) error {
		if e.Synced() {
			c := *e
			out[e.EntraID] = &c
		}
		return nil
	})
	return out, err
}

// checkMailboxes refuses chosen mailboxes that Graph says are not shared
// mailboxes. When the PBX is not connected, or Graph cannot tell (no
// MailboxSettings.Read, throttled), the ids are accepted as given and the
// run reports what it cannot read.
func (s *Service) checkMailboxes(ctx context.Context, pbx string, sh Shared) error {
	if !sh.Enabled || sh.Range != RangeMailboxes || s.Graph == nil {
		return nil
	}
	app, err := s.Graph.AppClient(ctx, pbx)
	if err != nil {
		return nil
	}
	reqs := make([]graph.BatchRequest, len(sh.Mailboxes))
	for i, b := range sh.Mailboxes {
		reqs[i] = graph.BatchRequest{Method: "GET", URL: "/users/" + url.PathEscape(b.MailboxID) + "/mailboxSettings?$select=userPurpose"}
	}
	res, err := app.Batch(ctx, reqs)
	if err != nil {
		s.log().WarnContext(ctx, "could not check the chosen shared mailboxes", "pbx", pbx, "err", err)
		return nil
	}
	for i, r := range res {
		var ms struct {
			UserPurpose string `json:"userPurpose"`
		}
		field := fmt.Sprintf("sharedMailboxes.mailboxes[%d].mailboxId", i)
		switch err := r.Decode(&ms); {
		case errors.Is(err, graph.ErrNotFound):
			return fieldErr(field, "not_found", "is not a mailbox of the tenant")
		case err != nil:
			continue
		case !strings.EqualFold(ms.UserPurpose, "shared"):
			return fieldErr(field, "not_shared", fmt.Sprintf("is not a shared mailbox (its mailbox purpose is %q)", ms.UserPurpose))
		}
	}
	return nil
}

// DefaultCountry returns the PBX's default country for dialling forms ("" = unknown).
func (s *Service) DefaultCountry(ctx context.Context, pbx string) (string, error) {
	set, err := s.Settings(ctx, pbx)
	return set.DefaultCountry, err
}
