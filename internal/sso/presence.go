package sso

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// PresenceSyncKey is the Settings key of an extension's own Teams presence
// mapping (the same document the admin API's
// PUT /api/v1/extensions/{id}/presence-sync writes).
func PresenceSyncKey(extensionID string) string { return "presence.ext." + extensionID }

// TeamsAvailabilities are the Teams availability values a mapping may name
// (Microsoft Graph presence, PascalCase as Graph answers).
var TeamsAvailabilities = []string{"Available", "AvailableIdle", "Away", "BeRightBack", "Busy", "BusyIdle", "DoNotDisturb", "Offline", "PresenceUnknown"}

// PresenceSync is an extension's Teams -> PBX presence setting.
type PresenceSync struct {
	Enabled bool              `json:"enabled"`
	Mapping map[string]string `json:"mapping"` // Teams availability -> PBX presence
}

// GetPresenceSync returns the extension's presence setting (disabled with an
// empty mapping when never set).
func (s *Service) GetPresenceSync(ctx context.Context, pbxID, extensionID string) (PresenceSync, error) {
	out := PresenceSync{Mapping: map[string]string{}}
	b, err := s.Store.GetSetting(ctx, pbxID, PresenceSyncKey(extensionID))
	if errors.Is(err, store.ErrNotFound) {
		return out, nil
	}
	if err != nil {
		return out, err
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return out, fmt.Errorf("presence setting: %w", err)
	}
	if out.Mapping == nil {
		out.Mapping = map[string]string{}
	}
	return out, nil
}

// SetPresenceSync validates and stores the extension's presence setting,
// keeping any other fields of the stored document.
func (s *Service) SetPresenceSync(ctx context.Context, pbxID, actor, extensionID string, in PresenceSync) (PresenceSync, error) {
	mapping := make(map[string]string, len(in.Mapping))
	for k, v := range in.Mapping {
		i := -1
		for j, a := range TeamsAvailabilities {
			if strings.EqualFold(a, strings.TrimSpace(k)) {
				i = j
			}
		}
		if i < 0 {
			return PresenceSync{}, &directory.FieldError{Field: "mapping." + k, Code: "invalid",
				Reason: "is not a Teams availability (" + strings.Join(TeamsAvailabilities, ", ") + ")"}
		}
		if !directory.Presence(v).Valid() {
			return PresenceSync{}, &directory.FieldError{Field: "mapping." + k, Code: "invalid",
				Reason: "must map to available, away, do_not_disturb, lunch_break, business_trip or off_work"}
		}
		mapping[TeamsAvailabilities[i]] = v
	}
	out := PresenceSync{Enabled: in.Enabled, Mapping: mapping}
	err := s.Store.UpdateSetting(ctx, pbxID, PresenceSyncKey(extensionID), func(old []byte) ([]byte, error) {
		doc := map[string]json.RawMessage{}
		if old != nil {
			_ = json.Unmarshal(old, &doc)
		}
		doc["enabled"], _ = json.Marshal(out.Enabled)
		doc["mapping"], _ = json.Marshal(out.Mapping)
		return json.Marshal(doc)
	})
	if err != nil {
		return PresenceSync{}, err
	}
	s.PBX.Audit(ctx, pbxID, actor, "extension.presence_sync.update", extensionID, fmt.Sprintf("enabled=%t", out.Enabled))
	return out, nil
}
