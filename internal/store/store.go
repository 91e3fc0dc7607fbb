// Package store defines the storage interface of Switchboard and its errors.
// One SQL implementation (package sqlstore) serves SQLite and PostgreSQL; the
// conformance suite in package storetest runs unchanged against both.
//
// Every method takes the PBX id it works in: a record of one PBX is never
// visible through another. Read-modify-write goes through closures that run
// inside one transaction.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/directory"
)

// Sentinel errors.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
)

// ConflictError names the field whose uniqueness a write would break.
type ConflictError struct {
	Field  string
	Reason string
}

func (e *ConflictError) Error() string { return fmt.Sprintf("%s: %s", e.Field, e.Reason) }

// Unwrap makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Unwrap() error { return ErrConflict }

// ExtensionQuery selects a page of extensions, ordered by number (numerically).
type ExtensionQuery struct {
	Search  string           // case-insensitive substring of number, names or email
	Source  directory.Source // "" = any
	Limit   int              // 0 = 100; at most 1000
	Cursor  string           // from the previous page's next cursor
	EntraID string           // exact match when set
}

// ContactQuery selects a page of contacts of one owner, ordered by name.
type ContactQuery struct {
	PhonebookID string // exactly one of PhonebookID and ExtensionID
	ExtensionID string
	Search      string
	Limit       int
	Cursor      string
}

// ExtensionChanges is one bulk write of the sync engine: all of it lands or
// none of it does. Creates get their ids and timestamps assigned.
type ExtensionChanges struct {
	Create []*directory.Extension
	Update []*directory.Extension // full records, matched by ID
	Delete []string               // extension ids
	// Fence, when set, makes the write conditional: see Fence.
	Fence *Fence
	// Settings are settings of the same PBX written in the same transaction
	// (a nil value deletes the key): they land if and only if the batch
	// does (the sync engine's welcome-email outbox).
	Settings map[string][]byte
}

// Fence makes a write conditional on a setting of the same PBX (the sync
// engine's lease, so that an instance that lost its lease writes nothing).
// The store reads the setting inside the write's own transaction, serialised
// with UpdateSetting of that key (PostgreSQL: the key's transaction lock;
// SQLite: the single writer), and calls Check with its value (nil when
// unset). An error from Check rolls the whole write back and is returned
// unchanged.
type Fence struct {
	Key   string
	Check func(value []byte) error
}

type fenceKey struct{}

type ctxFence struct {
	pbx string
	f   *Fence
}

// WithFence returns a context under which every write transaction of the
// store checks f (a setting of pbx) first, as ExtensionChanges.Fence does
// for one bulk write: a write whose fence fails is rolled back and returns
// Check's error. The sync engine fences a run's group writes with its lease
// this way, so that an instance paused past its lease cannot change groups.
func WithFence(ctx context.Context, pbx string, f *Fence) context.Context {
	return context.WithValue(ctx, fenceKey{}, ctxFence{pbx: pbx, f: f})
}

// FenceFrom returns the fence ctx carries and its PBX (nil when none).
func FenceFrom(ctx context.Context) (string, *Fence) {
	cf, _ := ctx.Value(fenceKey{}).(ctxFence)
	return cf.pbx, cf.f
}

// ContactOwner names whose contacts a bulk replace touches.
type ContactOwner struct {
	PhonebookID string
	ExtensionID string
}

// Admin is an administrator account for the portal and admin API.
type Admin struct {
	ID           string
	PBXID        string // "" = provider-wide
	Username     string
	PasswordHash string
	MustChange   bool
	CreatedAt    time.Time
}

// AuditEntry records one administrative change or sync event.
type AuditEntry struct {
	ID     int64     `json:"id"`
	PBXID  string    `json:"-"`
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Target string    `json:"target"`
	Detail string    `json:"detail,omitempty"`
}

// Store is everything Switchboard keeps.
type Store interface {
	PBXs
	Extensions
	Groups
	Phonebooks
	Admins
	Audit
	Settings
	Close() error
}

// Settings stores small JSON documents per PBX (integration state, sync
// settings, delta links) under a key.
type Settings interface {
	// GetSetting returns ErrNotFound when the key was never set.
	GetSetting(ctx context.Context, pbx, key string) ([]byte, error)
	// UpdateSetting calls fn with the stored value (nil when unset) and
	// stores what it returns, in one transaction; a nil result deletes.
	UpdateSetting(ctx context.Context, pbx, key string, fn func(old []byte) ([]byte, error)) error
	// UpdateSettingFenced is UpdateSetting under a fence (nil: none), checked
	// in the same transaction before fn runs; fence.Key must differ from key.
	UpdateSettingFenced(ctx context.Context, pbx, key string, fence *Fence, fn func(old []byte) ([]byte, error)) error
	ListSettings(ctx context.Context, pbx, prefix string) (map[string][]byte, error)
}

// PBXs stores the hosted PBXs.
type PBXs interface {
	// EnsurePBX creates the PBX if it does not exist and returns the stored one.
	EnsurePBX(ctx context.Context, p directory.PBX) (directory.PBX, error)
	GetPBX(ctx context.Context, id string) (directory.PBX, error)
	ListPBXs(ctx context.Context) ([]directory.PBX, error)
	UpdatePBX(ctx context.Context, id string, fn func(*directory.PBX) error) (directory.PBX, error)
	// DeletePBX removes the PBX and everything it owns.
	DeletePBX(ctx context.Context, id string) error
}

// Extensions stores extensions.
type Extensions interface {
	// CreateExtension assigns ID and timestamps; enforces the PBX's capacity
	// (directory.ErrCapacity) and unique number / email (*ConflictError).
	CreateExtension(ctx context.Context, pbx string, e *directory.Extension) error
	GetExtension(ctx context.Context, pbx, id string) (*directory.Extension, error)
	// FindExtension looks one up by "number", "email" (case-insensitive) or "entraId".
	FindExtension(ctx context.Context, pbx, by, value string) (*directory.Extension, error)
	ListExtensions(ctx context.Context, pbx string, q ExtensionQuery) (items []directory.Extension, next string, err error)
	// ListAllExtensions streams every extension of the PBX in number order.
	ListAllExtensions(ctx context.Context, pbx string, fn func(*directory.Extension) error) error
	CountExtensions(ctx context.Context, pbx string) (int, error)
	// UpdateExtension loads the extension, calls fn and stores the result in
	// one transaction; fn's error aborts the update and is returned.
	UpdateExtension(ctx context.Context, pbx, id string, fn func(*directory.Extension) error) (*directory.Extension, error)
	// DeleteExtension deletes after check (may be nil) accepts the stored record.
	// The extension's group memberships and personal contacts go with it.
	DeleteExtension(ctx context.Context, pbx, id string, check func(*directory.Extension) error) error
	// ApplyExtensions is the sync engine's bulk path: one transaction.
	ApplyExtensions(ctx context.Context, pbx string, c ExtensionChanges) error
}

// Groups stores extension groups.
type Groups interface {
	// CreateGroup enforces directory.MaxGroups (directory.ErrGroupLimit) and a
	// unique name (*ConflictError); members must be extensions of the PBX.
	CreateGroup(ctx context.Context, pbx string, g *directory.Group) error
	GetGroup(ctx context.Context, pbx, id string) (*directory.Group, error)
	ListGroups(ctx context.Context, pbx string) ([]directory.Group, error)
	UpdateGroup(ctx context.Context, pbx, id string, fn func(*directory.Group) error) (*directory.Group, error)
	DeleteGroup(ctx context.Context, pbx, id string, check func(*directory.Group) error) error
}

// Phonebooks stores phonebooks, contacts (company and personal) and
// contact-visibility permissions.
type Phonebooks interface {
	CreatePhonebook(ctx context.Context, pbx string, p *directory.Phonebook) error
	GetPhonebook(ctx context.Context, pbx, id string) (*directory.Phonebook, error)
	ListPhonebooks(ctx context.Context, pbx string) ([]directory.Phonebook, error)
	UpdatePhonebook(ctx context.Context, pbx, id string, fn func(*directory.Phonebook) error) (*directory.Phonebook, error)
	DeletePhonebook(ctx context.Context, pbx, id string, check func(*directory.Phonebook) error) error

	// CreateContact stores a contact of a phonebook or an extension (owner must exist).
	CreateContact(ctx context.Context, pbx string, c *directory.Contact) error
	GetContact(ctx context.Context, pbx, id string) (*directory.Contact, error)
	ListContacts(ctx context.Context, pbx string, q ContactQuery) (items []directory.Contact, next string, err error)
	UpdateContact(ctx context.Context, pbx, id string, fn func(*directory.Contact) error) (*directory.Contact, error)
	DeleteContact(ctx context.Context, pbx, id string, check func(*directory.Contact) error) error
	// ReplaceSyncedContacts makes the owner's synced contacts (source entra)
	// exactly cs, in one transaction; local contacts are kept.
	ReplaceSyncedContacts(ctx context.Context, pbx string, owner ContactOwner, cs []directory.Contact) error

	SetVisibility(ctx context.Context, pbx, phonebookID string, v []directory.Visibility) error
	ListVisibility(ctx context.Context, pbx, phonebookID string) ([]directory.Visibility, error)
	// ListVisibleContacts lists the extension's personal contacts and the
	// contacts of every phonebook visible to it (everyone, the extension, or
	// a group it belongs to).
	ListVisibleContacts(ctx context.Context, pbx, extensionID string, q ContactQuery) (items []directory.Contact, next string, err error)
}

// Admins stores administrator accounts.
type Admins interface {
	CreateAdmin(ctx context.Context, a *Admin) error // unique username (*ConflictError)
	GetAdminByUsername(ctx context.Context, username string) (*Admin, error)
	UpdateAdmin(ctx context.Context, id string, fn func(*Admin) error) (*Admin, error)
	CountAdmins(ctx context.Context) (int, error)
}

// Audit stores the audit log.
type Audit interface {
	AppendAudit(ctx context.Context, e AuditEntry) error
	// ListAudit lists newest first; before = 0 starts at the newest.
	ListAudit(ctx context.Context, pbx string, before int64, limit int) ([]AuditEntry, error)
}
