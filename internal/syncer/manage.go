package syncer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/graph"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// exclusive runs fn as a recorded run of its own, after any run in progress
// for the PBX has finished; no sync starts while fn runs.
func (e *Engine) exclusive(ctx context.Context, pbx string, opt RunOptions, fn func(w *Run) error) (*Run, error) {
	for {
		fl, run, joined := e.begin(ctx, pbx, opt)
		if joined {
			select {
			case <-fl.done:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		w := run.clone()
		ctx := context.WithoutCancel(ctx)
		release, err := e.acquireLease(ctx, pbx, w.ID, nil, nil)
		if err == nil {
			e.markInterrupted(ctx, pbx, w.ID)
			err = fn(w)
			release()
		}
		if err != nil {
			w.State, w.Error = StateFailed, err.Error()
		} else if w.State == StateRunning {
			w.State = StateSucceeded
		}
		e.progress(fl, func(r *Run) { *r = *w.clone() })
		e.finish(ctx, pbx, fl)
		return w, err
	}
}

// Pause pauses user sync: the settings are kept and locked, no run starts
// until user sync is switched on again. With deleteExtensions the synced
// extensions are deleted; otherwise they stay, still locked.
func (e *Engine) Pause(ctx context.Context, pbx, actor string, deleteExtensions bool) (*Run, error) {
	return e.exclusive(ctx, pbx, RunOptions{Trigger: TriggerPause}, func(w *Run) error {
		if err := e.Store.UpdateSetting(ctx, pbx, keyUserSettings, func(old []byte) ([]byte, error) {
			if old == nil {
				return nil, ErrDisabled
			}
			var s UserSettings
			if err := json.Unmarshal(old, &s); err != nil {
				return nil, err
			}
			s.Enabled = false
			return json.Marshal(s)
		}); err != nil {
			return err
		}
		if err := e.setPaused(ctx, pbx, true); err != nil {
			return err
		}
		e.PBX.Audit(ctx, pbx, actor, "sync.user.pause", "user-sync", fmt.Sprintf("deleteExtensions=%t", deleteExtensions))
		if !deleteExtensions {
			w.note("user sync paused; synced extensions kept (still locked)")
			return nil
		}
		var ids []string
		if err := e.Store.ListAllExtensions(ctx, pbx, func(x *directory.Extension) error {
			if x.Synced() {
				ids = append(ids, x.ID)
			}
			return nil
		}); err != nil {
			return err
		}
		for start := 0; start < len(ids); start += e.batchSize() {
			part := ids[start:min(start+e.batchSize(), len(ids))]
			if err := e.PBX.ApplyExtensions(ctx, pbx, store.ExtensionChanges{Delete: part, Fence: e.leaseFence(w.ID)}); err != nil {
				return fmt.Errorf("deleting synced extensions: %w", err)
			}
			w.Deleted += len(part)
		}
		// The next sync after resuming starts from a full read.
		_ = e.Store.UpdateSetting(ctx, pbx, keyDeltaUsers, func([]byte) ([]byte, error) { return nil, nil })
		w.note("user sync paused; %d synced extensions deleted", w.Deleted)
		return nil
	})
}

// BindUser adds a hand-picked user to the user-sync list (range users) bound
// to an existing extension (b.ExtensionID) or to a new one with b.Number,
// then runs a sync that applies it.
func (e *Engine) BindUser(ctx context.Context, pbx, actor, entraID string, b Binding) (*Run, error) {
	if !validID(entraID) {
		return nil, fe("entraId", "invalid", "must be a user object id")
	}
	if (b.ExtensionID == "") == (b.Number == "") {
		return nil, fe("extensionId", "required", "give exactly one of extensionId (an existing extension) and number (a new extension)")
	}
	s, saved, err := e.loadSettings(ctx, pbx)
	if err != nil {
		return nil, err
	}
	if st, err := e.loadState(ctx, pbx); err != nil {
		return nil, err
	} else if st.Paused {
		return nil, ErrPaused
	}
	if !saved || s.Range != RangeUsers {
		return nil, fe("range", "invalid", "binding hand-picked users needs user sync saved with range users")
	}
	if b.Number != "" {
		if err := directory.ValidateNumber(b.Number); err != nil {
			return nil, err
		}
	}
	if cur, err := e.Store.FindExtension(ctx, pbx, "entraId", entraID); err == nil {
		if (b.ExtensionID != "" && cur.ID != b.ExtensionID) || (b.Number != "" && cur.Number != b.Number) {
			return nil, &directory.LockedError{Reason: fmt.Sprintf("this user is already bound to extension %s; unbind it first", cur.Number)}
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if b.ExtensionID != "" {
		x, err := e.Store.GetExtension(ctx, pbx, b.ExtensionID)
		if errors.Is(err, store.ErrNotFound) {
			return nil, fe("extensionId", "not_found", "no such extension")
		}
		if err != nil {
			return nil, err
		}
		if x.Synced() && x.EntraID != entraID {
			return nil, &directory.LockedError{Reason: fmt.Sprintf("extension %s is bound to another Entra user", x.Number)}
		}
	} else if x, err := e.Store.FindExtension(ctx, pbx, "number", b.Number); err == nil {
		return nil, &directory.FieldError{Field: "number", Code: "duplicate", Reason: fmt.Sprintf("is already used by extension %s; bind with extensionId to use it", x.Number)}
	}
	c, err := e.Graph.AppClient(ctx, pbx)
	if err != nil {
		return nil, err
	}
	if _, err := c.GetUser(ctx, entraID, []string{"id"}); err != nil {
		if errors.Is(err, graph.ErrNotFound) {
			return nil, fe("entraId", "not_found", "no such user in Entra")
		}
		return nil, err
	}
	if err := e.editPicked(ctx, pbx, func(s *UserSettings) {
		if !slices.Contains(s.UserIDs, entraID) {
			s.UserIDs = append(s.UserIDs, entraID)
		}
		if s.Bindings == nil {
			s.Bindings = map[string]Binding{}
		}
		s.Bindings[entraID] = b
	}); err != nil {
		return nil, err
	}
	e.PBX.Audit(ctx, pbx, actor, "sync.user.bind", entraID, fmt.Sprintf("extensionId=%s number=%s", b.ExtensionID, b.Number))
	return e.Run(ctx, pbx, RunOptions{Trigger: TriggerBind, Actor: actor})
}

// UnbindUser removes a hand-picked user from the user-sync list; its
// extension (if any) becomes an ordinary PBX extension. It returns that extension.
func (e *Engine) UnbindUser(ctx context.Context, pbx, actor, entraID string) (*directory.Extension, error) {
	var out *directory.Extension
	_, err := e.exclusive(ctx, pbx, RunOptions{Trigger: TriggerBind, Actor: actor}, func(w *Run) error {
		if err := e.editPicked(ctx, pbx, func(s *UserSettings) {
			s.UserIDs = slices.DeleteFunc(s.UserIDs, func(id string) bool { return id == entraID })
			delete(s.Bindings, entraID)
		}); err != nil {
			return err
		}
		x, err := e.Store.FindExtension(ctx, pbx, "entraId", entraID)
		if errors.Is(err, store.ErrNotFound) {
			w.note("user %s had no extension", entraID)
			return nil
		}
		if err != nil {
			return err
		}
		x.Source, x.EntraID = directory.SourceLocal, ""
		if err := e.PBX.ApplyExtensions(ctx, pbx, store.ExtensionChanges{Update: []*directory.Extension{x}}); err != nil {
			return err
		}
		w.Released = 1
		w.note("user %s unbound: extension %s is now an ordinary PBX extension", entraID, x.Number)
		out = x
		e.PBX.Audit(ctx, pbx, actor, "sync.user.unbind", entraID, "extension "+x.Number)
		return nil
	})
	return out, err
}

func (e *Engine) editPicked(ctx context.Context, pbx string, fn func(*UserSettings)) error {
	return e.Store.UpdateSetting(ctx, pbx, keyUserSettings, func(old []byte) ([]byte, error) {
		if old == nil {
			return nil, fe("range", "invalid", "save user sync with range users first")
		}
		var s UserSettings
		if err := json.Unmarshal(old, &s); err != nil {
			return nil, err
		}
		fn(&s)
		if err := s.normalize(); err != nil {
			return nil, err
		}
		return json.Marshal(s)
	})
}

// DirectoryUser is a user as the directory picker lists it.
type DirectoryUser struct {
	ID                string `json:"id"`
	DisplayName       string `json:"displayName"`
	UserPrincipalName string `json:"userPrincipalName"`
	Mail              string `json:"mail"`
	UserType          string `json:"userType"`
	AccountEnabled    bool   `json:"accountEnabled"`
	Selected          bool   `json:"selected"`                  // in the hand-picked list
	ExtensionID       string `json:"extensionId,omitempty"`     // bound extension
	ExtensionNumber   string `json:"extensionNumber,omitempty"` // bound extension's number
}

// DirectoryGroup is a group as the directory picker lists it.
type DirectoryGroup struct {
	ID          string `json:"id"`
	DisplayName string `json:"displayName"`
	Mail        string `json:"mail,omitempty"`
	Description string `json:"description,omitempty"`
	Type        string `json:"type"` // microsoft365 | security | mailSecurity | distribution
	Selected    bool   `json:"selected"`
}

// PickerPage is one page of a directory picker; NextCursor is "" on the last page.
type PickerPage[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"nextCursor"`
}

// SearchUsers lists directory users matching search (all when empty), 100 a page.
func (e *Engine) SearchUsers(ctx context.Context, pbx, search, cursor string) (*PickerPage[DirectoryUser], error) {
	c, err := e.Graph.AppClient(ctx, pbx)
	if err != nil {
		return nil, err
	}
	p, err := c.SearchUsersPage(ctx, search, cursor, 100)
	if err != nil {
		return nil, err
	}
	s, _, err := e.loadSettings(ctx, pbx)
	if err != nil {
		return nil, err
	}
	out := &PickerPage[DirectoryUser]{Items: make([]DirectoryUser, 0, len(p.Items)), NextCursor: p.NextLink}
	for _, u := range p.Items {
		d := DirectoryUser{ID: u.ID, DisplayName: u.DisplayName, UserPrincipalName: u.UserPrincipalName, Mail: u.Mail,
			UserType: u.UserType, AccountEnabled: u.Enabled(), Selected: slices.Contains(s.UserIDs, u.ID)}
		if x, err := e.Store.FindExtension(ctx, pbx, "entraId", u.ID); err == nil {
			d.ExtensionID, d.ExtensionNumber = x.ID, x.Number
		}
		out.Items = append(out.Items, d)
	}
	return out, nil
}

// SearchGroups lists directory groups matching search (all when empty), 100 a page.
func (e *Engine) SearchGroups(ctx context.Context, pbx, search, cursor string) (*PickerPage[DirectoryGroup], error) {
	c, err := e.Graph.AppClient(ctx, pbx)
	if err != nil {
		return nil, err
	}
	p, err := c.SearchGroupsPage(ctx, search, cursor, 100)
	if err != nil {
		return nil, err
	}
	s, _, err := e.loadSettings(ctx, pbx)
	if err != nil {
		return nil, err
	}
	out := &PickerPage[DirectoryGroup]{Items: make([]DirectoryGroup, 0, len(p.Items)), NextCursor: p.NextLink}
	for _, g := range p.Items {
		out.Items = append(out.Items, DirectoryGroup{ID: g.ID, DisplayName: g.DisplayName, Mail: g.Mail, Description: g.Description,
			Type: groupType(g), Selected: slices.Contains(s.GroupIDs, g.ID)})
	}
	return out, nil
}

func groupType(g graph.Group) string {
	mail := g.MailEnabled != nil && *g.MailEnabled
	switch {
	case g.IsUnified():
		return "microsoft365"
	case mail && g.IsSecurity():
		return "mailSecurity"
	case mail:
		return "distribution"
	}
	return "security"
}
