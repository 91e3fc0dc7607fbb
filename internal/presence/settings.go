package presence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// Settings keys.
const (
	settingsKey     = "presence.sync"
	extKeyPrefix    = "presence.ext."
	subscriptionKey = "presence.subscription"
)

// ExtensionKey is the Settings key of an extension's presence-sync document
// (shared with the client API's PUT /client/v1/presence-sync).
func ExtensionKey(extensionID string) string { return extKeyPrefix + extensionID }

// Direction of the sync.
type Direction string

// Directions.
const (
	OneWay Direction = "one-way" // Teams -> extension
	TwoWay Direction = "two-way" // plus call state -> Teams
)

// Settings is a PBX's global presence-sync switch and direction.
type Settings struct {
	Enabled   bool      `json:"enabled"`
	Direction Direction `json:"direction"`
}

// Availabilities are the Teams availability values a mapping names (Graph's
// PascalCase spelling).
var Availabilities = []string{"Available", "AvailableIdle", "Away", "BeRightBack", "Busy", "BusyIdle", "DoNotDisturb", "Offline", "PresenceUnknown"}

// Mapping maps a Teams availability to a PBX presence.
type Mapping map[string]directory.Presence

// DefaultMapping is the mapping an extension starts with. Busy states map to
// do not disturb (the person is in a call or meeting); Offline to off work;
// PresenceUnknown (often a user without Teams) leaves the extension available.
func DefaultMapping() Mapping {
	return Mapping{
		"Available":       directory.PresenceAvailable,
		"AvailableIdle":   directory.PresenceAvailable,
		"Away":            directory.PresenceAway,
		"BeRightBack":     directory.PresenceAway,
		"Busy":            directory.PresenceDoNotDisturb,
		"BusyIdle":        directory.PresenceDoNotDisturb,
		"DoNotDisturb":    directory.PresenceDoNotDisturb,
		"Offline":         directory.PresenceOffWork,
		"PresenceUnknown": directory.PresenceAvailable,
	}
}

// canonical returns the PascalCase availability for s (case-insensitive) or "".
func canonical(s string) string {
	s = strings.TrimSpace(s)
	for _, a := range Availabilities {
		if strings.EqualFold(a, s) {
			return a
		}
	}
	return ""
}

// For returns the PBX presence for a Teams availability (case-insensitive;
// an unknown availability is treated as PresenceUnknown).
func (m Mapping) For(availability string) directory.Presence {
	a := canonical(availability)
	if a == "" {
		a = "PresenceUnknown"
	}
	if p, ok := m[a]; ok && p.Valid() {
		return p
	}
	return DefaultMapping()[a]
}

// full returns the defaults overlaid with m.
func (m Mapping) full() Mapping {
	out := DefaultMapping()
	for k, v := range m {
		if a := canonical(k); a != "" && v.Valid() {
			out[a] = v
		}
	}
	return out
}

// validateMapping checks every entry and returns it with canonical keys.
func validateMapping(field string, m map[string]string) (Mapping, error) {
	out := make(Mapping, len(m))
	for k, v := range m {
		a := canonical(k)
		if a == "" {
			return nil, &directory.FieldError{Field: field + "." + k, Code: "invalid",
				Reason: "is not a Teams availability (" + strings.Join(Availabilities, ", ") + ")"}
		}
		if !directory.Presence(v).Valid() {
			return nil, &directory.FieldError{Field: field + "." + k, Code: "invalid",
				Reason: "must map to available, away, do_not_disturb, lunch_break, business_trip or off_work"}
		}
		out[a] = directory.Presence(v)
	}
	return out, nil
}

// ExtensionSettings is an extension's presence-sync switch and its full
// mapping (stored overrides on top of DefaultMapping).
type ExtensionSettings struct {
	ExtensionID string  `json:"extensionId,omitempty"`
	Enabled     bool    `json:"enabled"`
	Mapping     Mapping `json:"mapping"`
}

// extDoc is the stored document; other fields (written by other packages) are kept.
type extDoc struct {
	Enabled bool    `json:"enabled"`
	Mapping Mapping `json:"mapping"`
}

func parseExtDoc(b []byte) extDoc {
	var d extDoc
	if b != nil {
		_ = json.Unmarshal(b, &d)
	}
	return d
}

// locker is implemented by a Clients that can refuse configuration changes
// (*integration.Service while the integration is disabled).
type locker interface {
	Locked(ctx context.Context, pbx string) error
}

func (s *Service) locked(ctx context.Context, pbx string) error {
	if l, ok := s.Graph.(locker); ok {
		if err := l.Locked(ctx, pbx); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	return nil
}

// GetSettings returns the PBX's global settings (disabled, one-way when never set).
func (s *Service) GetSettings(ctx context.Context, pbx string) (Settings, error) {
	out := Settings{Direction: OneWay}
	b, err := s.Store.GetSetting(ctx, pbx, settingsKey)
	if errors.Is(err, store.ErrNotFound) {
		return out, nil
	}
	if err != nil {
		return out, err
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return out, fmt.Errorf("presence settings: %w", err)
	}
	if out.Direction != TwoWay {
		out.Direction = OneWay
	}
	return out, nil
}

// SettingsInput is the body of PUT /api/v1/integration/presence-sync.
type SettingsInput struct {
	Enabled   *bool   `json:"enabled"`
	Direction *string `json:"direction"`
}

// PutSettings validates and stores the global settings. An omitted direction
// keeps the stored one.
func (s *Service) PutSettings(ctx context.Context, pbx, actor string, in SettingsInput) (Settings, error) {
	if err := s.locked(ctx, pbx); err != nil {
		return Settings{}, err
	}
	if in.Enabled == nil {
		return Settings{}, &directory.FieldError{Field: "enabled", Code: "required", Reason: "is required (true or false)"}
	}
	if in.Direction != nil && *in.Direction != string(OneWay) && *in.Direction != string(TwoWay) {
		return Settings{}, &directory.FieldError{Field: "direction", Code: "invalid", Reason: `must be "one-way" or "two-way"`}
	}
	var out Settings
	err := s.Store.UpdateSetting(ctx, pbx, settingsKey, func(old []byte) ([]byte, error) {
		out = Settings{Direction: OneWay}
		if old != nil {
			_ = json.Unmarshal(old, &out)
		}
		out.Enabled = *in.Enabled
		if in.Direction != nil {
			out.Direction = Direction(*in.Direction)
		}
		if out.Direction != TwoWay {
			out.Direction = OneWay
		}
		return json.Marshal(out)
	})
	if err != nil {
		return Settings{}, err
	}
	s.audit(ctx, pbx, actor, "presence_sync.update", "", fmt.Sprintf("enabled=%t direction=%s", out.Enabled, out.Direction))
	s.kick(ctx, pbx)
	return out, nil
}

// GetExtension returns the extension's presence-sync settings with its full mapping.
func (s *Service) GetExtension(ctx context.Context, pbx, extensionID string) (ExtensionSettings, error) {
	if _, err := s.Store.GetExtension(ctx, pbx, extensionID); err != nil {
		return ExtensionSettings{}, err
	}
	b, err := s.Store.GetSetting(ctx, pbx, ExtensionKey(extensionID))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return ExtensionSettings{}, err
	}
	d := parseExtDoc(b)
	return ExtensionSettings{ExtensionID: extensionID, Enabled: d.Enabled, Mapping: d.Mapping.full()}, nil
}

// ExtensionInput is the body of PUT /api/v1/extensions/{id}/presence-sync.
// An omitted mapping keeps the stored one; a given mapping replaces it (the
// availabilities it leaves out take the defaults).
type ExtensionInput struct {
	Enabled *bool             `json:"enabled"`
	Mapping map[string]string `json:"mapping"`
}

// PutExtension validates and stores one extension's settings.
func (s *Service) PutExtension(ctx context.Context, pbx, actor, extensionID string, in ExtensionInput) (ExtensionSettings, error) {
	if in.Enabled == nil {
		return ExtensionSettings{}, &directory.FieldError{Field: "enabled", Code: "required", Reason: "is required (true or false)"}
	}
	out, err := s.bulk(ctx, pbx, actor, []string{extensionID}, in.Enabled, in.Mapping, "")
	if err != nil {
		return ExtensionSettings{}, err
	}
	return out[0], nil
}

// BulkInput is the body of PUT /api/v1/presence-sync/extensions.
type BulkInput struct {
	ExtensionIDs []string          `json:"extensionIds"`
	Enabled      *bool             `json:"enabled"`
	Mapping      map[string]string `json:"mapping"`
}

// MaxBulk bounds the extensions of one bulk edit.
const MaxBulk = 10000

// PutBulk applies one switch and/or mapping to many extensions. Every id is
// checked before anything is written.
func (s *Service) PutBulk(ctx context.Context, pbx, actor string, in BulkInput) ([]ExtensionSettings, error) {
	if len(in.ExtensionIDs) == 0 {
		return nil, &directory.FieldError{Field: "extensionIds", Code: "required", Reason: "must list at least one extension id"}
	}
	if len(in.ExtensionIDs) > MaxBulk {
		return nil, &directory.FieldError{Field: "extensionIds", Code: "invalid", Reason: fmt.Sprintf("must list at most %d extension ids", MaxBulk)}
	}
	if in.Enabled == nil && in.Mapping == nil {
		return nil, &directory.FieldError{Field: "enabled", Code: "required", Reason: "give enabled, mapping or both"}
	}
	return s.bulk(ctx, pbx, actor, in.ExtensionIDs, in.Enabled, in.Mapping, "extensionIds")
}

func (s *Service) bulk(ctx context.Context, pbx, actor string, ids []string, enabled *bool, mapping map[string]string, idsField string) ([]ExtensionSettings, error) {
	if err := s.locked(ctx, pbx); err != nil {
		return nil, err
	}
	var m Mapping
	if mapping != nil {
		var err error
		if m, err = validateMapping("mapping", mapping); err != nil {
			return nil, err
		}
	}
	seen := make(map[string]bool, len(ids))
	for i, id := range ids {
		field := fmt.Sprintf("%s[%d]", idsField, i)
		e, err := s.Store.GetExtension(ctx, pbx, id)
		if idsField == "" {
			if err != nil {
				return nil, err
			}
			field = "enabled"
		} else if errors.Is(err, store.ErrNotFound) || id == "" {
			return nil, &directory.FieldError{Field: field, Code: "not_found", Reason: fmt.Sprintf("no extension with id %q", id)}
		} else if err != nil {
			return nil, err
		}
		if seen[id] {
			return nil, &directory.FieldError{Field: field, Code: "duplicate", Reason: "lists the same extension twice"}
		}
		seen[id] = true
		if enabled != nil && *enabled && !e.Synced() {
			return nil, &directory.FieldError{Field: field, Code: "not_synced",
				Reason: fmt.Sprintf("extension %s is not synced from Microsoft Entra ID: Teams presence sync needs a synced user", e.Number)}
		}
	}
	out := make([]ExtensionSettings, 0, len(ids))
	for _, id := range ids {
		var d extDoc
		err := s.Store.UpdateSetting(ctx, pbx, ExtensionKey(id), func(old []byte) ([]byte, error) {
			doc := map[string]json.RawMessage{}
			if old != nil {
				_ = json.Unmarshal(old, &doc)
			}
			d = parseExtDoc(old)
			if enabled != nil {
				d.Enabled = *enabled
			}
			if m != nil {
				d.Mapping = m
			}
			if d.Mapping == nil {
				d.Mapping = Mapping{}
			}
			doc["enabled"], _ = json.Marshal(d.Enabled)
			doc["mapping"], _ = json.Marshal(d.Mapping)
			return json.Marshal(doc)
		})
		if err != nil {
			return nil, err
		}
		out = append(out, ExtensionSettings{ExtensionID: id, Enabled: d.Enabled, Mapping: d.Mapping.full()})
	}
	detail := fmt.Sprintf("extensions=%d", len(ids))
	if enabled != nil {
		detail += fmt.Sprintf(" enabled=%t", *enabled)
	}
	if m != nil {
		detail += " mapping"
	}
	target := ""
	if len(ids) == 1 {
		target = ids[0]
	}
	s.audit(ctx, pbx, actor, "extension.presence_sync.update", target, detail)
	s.kick(ctx, pbx)
	return out, nil
}
