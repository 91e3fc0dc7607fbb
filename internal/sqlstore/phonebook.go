package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

const phonebookCols = `p.id, p.pbx_id, p.name, p.source, p.entra_id, p.created_at,
	(SELECT COUNT(*) FROM contact c WHERE c.phonebook_id = p.id)`

func scanPhonebook(r rowScanner) (*directory.Phonebook, error) {
	var p directory.Phonebook
	var source string
	if err := r.Scan(&p.ID, &p.PBXID, &p.Name, &source, &p.EntraID, timeCol{&p.CreatedAt}, &p.ContactCount); err != nil {
		return nil, err
	}
	p.Source = directory.Source(source)
	return &p, nil
}

func preparePhonebook(p *directory.Phonebook) error {
	if p.Source == "" {
		p.Source = directory.SourceLocal
	}
	if p.Source != directory.SourceLocal && p.Source != directory.SourceEntra {
		return &directory.FieldError{Field: "source", Code: "invalid", Reason: "must be local or entra"}
	}
	return directory.ValidateName("name", p.Name)
}

// CreatePhonebook assigns ID and CreatedAt and stores p.
func (s *Store) CreatePhonebook(ctx context.Context, pbx string, p *directory.Phonebook) error {
	c := *p
	if err := preparePhonebook(&c); err != nil {
		return err
	}
	c.ID, c.PBXID, c.CreatedAt, c.ContactCount = uuid.NewString(), pbx, now(), 0
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := lockPBX(ctx, tx, s.fl, pbx); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO phonebook (id, pbx_id, name, source, entra_id, created_at) VALUES ($1, $2, $3, $4, $5, $6)`,
			c.ID, pbx, c.Name, string(c.Source), c.EntraID, s.fl.ts(c.CreatedAt))
		return err
	})
	if err != nil {
		return err
	}
	*p = c
	return nil
}

// GetPhonebook returns one phonebook with its contact count, or store.ErrNotFound.
func (s *Store) GetPhonebook(ctx context.Context, pbx, id string) (*directory.Phonebook, error) {
	p, err := scanPhonebook(s.r.QueryRowContext(ctx, `SELECT `+phonebookCols+` FROM phonebook p WHERE p.pbx_id = $1 AND p.id = $2`, pbx, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("phonebook", id)
	}
	return p, err
}

// ListPhonebooks lists the PBX's phonebooks by name.
func (s *Store) ListPhonebooks(ctx context.Context, pbx string) ([]directory.Phonebook, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+phonebookCols+` FROM phonebook p WHERE p.pbx_id = $1 ORDER BY p.name, p.id`, pbx)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []directory.Phonebook
	for rows.Next() {
		p, err := scanPhonebook(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *p)
	}
	return out, rows.Err()
}

func (s *Store) lockPhonebook(ctx context.Context, tx *sql.Tx, pbx, id string) (*directory.Phonebook, error) {
	var p directory.Phonebook
	var source string
	err := tx.QueryRowContext(ctx, `SELECT id, pbx_id, name, source, entra_id, created_at FROM phonebook WHERE pbx_id = $1 AND id = $2`+s.fl.forUpdate, pbx, id).
		Scan(&p.ID, &p.PBXID, &p.Name, &source, &p.EntraID, timeCol{&p.CreatedAt})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("phonebook", id)
	}
	if err != nil {
		return nil, err
	}
	p.Source = directory.Source(source)
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM contact WHERE phonebook_id = $1`, id).Scan(&p.ContactCount); err != nil {
		return nil, err
	}
	return &p, nil
}

// UpdatePhonebook changes a phonebook's name, source or Entra binding through fn.
func (s *Store) UpdatePhonebook(ctx context.Context, pbx, id string, fn func(*directory.Phonebook) error) (*directory.Phonebook, error) {
	var out *directory.Phonebook
	err := s.tx(ctx, func(tx *sql.Tx) error {
		old, err := s.lockPhonebook(ctx, tx, pbx, id)
		if err != nil {
			return err
		}
		p := *old
		if err := fn(&p); err != nil {
			return err
		}
		p.ID, p.PBXID, p.CreatedAt, p.ContactCount = old.ID, old.PBXID, old.CreatedAt, old.ContactCount
		if err := preparePhonebook(&p); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE phonebook SET name = $3, source = $4, entra_id = $5 WHERE pbx_id = $1 AND id = $2`,
			pbx, id, p.Name, string(p.Source), p.EntraID); err != nil {
			return err
		}
		out = &p
		return nil
	})
	return out, err
}

// DeletePhonebook deletes a phonebook after check (may be nil) accepts it;
// its contacts and visibility grants go with it.
func (s *Store) DeletePhonebook(ctx context.Context, pbx, id string, check func(*directory.Phonebook) error) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		p, err := s.lockPhonebook(ctx, tx, pbx, id)
		if err != nil {
			return err
		}
		if check != nil {
			if err := check(p); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM phonebook WHERE pbx_id = $1 AND id = $2`, pbx, id)
		return err
	})
}

// --- contacts ---

const contactCols = `id, pbx_id, phonebook_id, extension_id, first_name, last_name, company, mobile, home, business,
	email, source, entra_id, sort_key, search, mobile_dial, home_dial, business_dial`

const contactColCount = 18

func contactSortKey(c *directory.Contact) string {
	k := strings.ToLower(strings.TrimSpace(strings.TrimSpace(c.FirstName) + " " + strings.TrimSpace(c.LastName)))
	if k == "" {
		k = strings.ToLower(strings.TrimSpace(c.Company))
	}
	return k
}

func contactSearch(c *directory.Contact) string {
	return strings.ToLower(c.FirstName + " " + c.LastName + "\n" + c.Company + "\n" + c.Mobile + "\n" + c.Home + "\n" + c.Business + "\n" + c.Email)
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func contactArgs(pbx string, c *directory.Contact) []any {
	return []any{c.ID, pbx, nullable(c.PhonebookID), nullable(c.ExtensionID), c.FirstName, c.LastName, c.Company,
		c.Mobile, c.Home, c.Business, c.Email, string(c.Source), c.EntraID, contactSortKey(c), contactSearch(c),
		c.MobileDial, c.HomeDial, c.BusinessDial}
}

func scanContact(r rowScanner) (*directory.Contact, string, error) {
	var c directory.Contact
	var pb, ext sql.NullString
	var source, sortKey, search string
	if err := r.Scan(&c.ID, &c.PBXID, &pb, &ext, &c.FirstName, &c.LastName, &c.Company, &c.Mobile, &c.Home,
		&c.Business, &c.Email, &source, &c.EntraID, &sortKey, &search, &c.MobileDial, &c.HomeDial, &c.BusinessDial); err != nil {
		return nil, "", err
	}
	c.PhonebookID, c.ExtensionID, c.Source = pb.String, ext.String, directory.Source(source)
	return &c, sortKey, nil
}

func prepareContact(c *directory.Contact) error {
	if c.Source == "" {
		c.Source = directory.SourceLocal
	}
	if c.Source != directory.SourceLocal && c.Source != directory.SourceEntra {
		return &directory.FieldError{Field: "source", Code: "invalid", Reason: "must be local or entra"}
	}
	if (c.PhonebookID == "") == (c.ExtensionID == "") {
		return &directory.FieldError{Field: "phonebookId", Code: "invalid", Reason: "exactly one of phonebookId and extensionId is required"}
	}
	return directory.ValidateContact(c)
}

// checkOwner reports store.ErrNotFound when the contact owner is not a phonebook / extension of the PBX.
func checkOwner(ctx context.Context, tx *sql.Tx, pbx string, o store.ContactOwner) error {
	var n int
	switch {
	case o.PhonebookID != "" && o.ExtensionID == "":
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM phonebook WHERE pbx_id = $1 AND id = $2`, pbx, o.PhonebookID).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return notFound("phonebook", o.PhonebookID)
		}
	case o.ExtensionID != "" && o.PhonebookID == "":
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM extension WHERE pbx_id = $1 AND id = $2`, pbx, o.ExtensionID).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return notFound("extension", o.ExtensionID)
		}
	default:
		return &directory.FieldError{Field: "phonebookId", Code: "invalid", Reason: "exactly one of phonebookId and extensionId is required"}
	}
	return nil
}

// CreateContact assigns an ID and stores a contact of a phonebook or an
// extension of the PBX (store.ErrNotFound when the owner is missing).
func (s *Store) CreateContact(ctx context.Context, pbx string, c *directory.Contact) error {
	n := *c
	if err := prepareContact(&n); err != nil {
		return err
	}
	n.ID, n.PBXID = uuid.NewString(), pbx
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := checkOwner(ctx, tx, pbx, store.ContactOwner{PhonebookID: n.PhonebookID, ExtensionID: n.ExtensionID}); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO contact (`+contactCols+`) VALUES `+s.fl.rows(1, 1, contactColCount), contactArgs(pbx, &n)...)
		return err
	})
	if err != nil {
		return err
	}
	*c = n
	return nil
}

// GetContact returns one contact of the PBX or store.ErrNotFound.
func (s *Store) GetContact(ctx context.Context, pbx, id string) (*directory.Contact, error) {
	c, _, err := scanContact(s.r.QueryRowContext(ctx, `SELECT `+contactCols+` FROM contact WHERE pbx_id = $1 AND id = $2`, pbx, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("contact", id)
	}
	return c, err
}

// contactPage runs a contact page query: where holds the owner condition
// (args from $2 on, $1 is the PBX); search and cursor come from q.
func (s *Store) contactPage(ctx context.Context, pbx, where string, args []any, q store.ContactQuery) ([]directory.Contact, string, error) {
	limit := clampLimit(q.Limit)
	args = append([]any{pbx}, args...)
	conds := []string{`pbx_id = $1`, where}
	if q.Cursor != "" {
		raw, err := decodeCursor(q.Cursor)
		if err != nil {
			return nil, "", err
		}
		key, id, ok := strings.Cut(raw, "\x00")
		if !ok {
			return nil, "", &directory.FieldError{Field: "cursor", Code: "invalid", Reason: "is not a cursor this server issued"}
		}
		args = append(args, key, id)
		conds = append(conds, fmt.Sprintf(`(sort_key > $%d OR (sort_key = $%d AND id > $%d))`, len(args)-1, len(args)-1, len(args)))
	}
	if q.Search != "" {
		args = append(args, likePattern(q.Search))
		conds = append(conds, fmt.Sprintf(`search LIKE $%d ESCAPE '\'`, len(args)))
	}
	args = append(args, limit+1)
	query := fmt.Sprintf(`SELECT %s FROM contact WHERE %s ORDER BY sort_key, id LIMIT $%d`, contactCols, strings.Join(conds, " AND "), len(args))
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	out := []directory.Contact{}
	lastKey, more := "", false
	for rows.Next() {
		if len(out) == limit {
			more = true
			break
		}
		c, key, err := scanContact(rows)
		if err != nil {
			return nil, "", err
		}
		out = append(out, *c)
		lastKey = key
	}
	if err := rows.Err(); err != nil {
		return nil, "", err
	}
	next := ""
	if more {
		next = encodeCursor(lastKey + "\x00" + out[len(out)-1].ID)
	}
	return out, next, nil
}

// ListContacts returns a page of one owner's contacts ordered by name.
func (s *Store) ListContacts(ctx context.Context, pbx string, q store.ContactQuery) ([]directory.Contact, string, error) {
	switch {
	case q.PhonebookID != "" && q.ExtensionID == "":
		return s.contactPage(ctx, pbx, `phonebook_id = $2`, []any{q.PhonebookID}, q)
	case q.ExtensionID != "" && q.PhonebookID == "":
		return s.contactPage(ctx, pbx, `extension_id = $2`, []any{q.ExtensionID}, q)
	}
	return nil, "", &directory.FieldError{Field: "phonebookId", Code: "invalid", Reason: "exactly one of phonebookId and extensionId is required"}
}

// UpdateContact changes a contact through fn (ID and owner are kept).
func (s *Store) UpdateContact(ctx context.Context, pbx, id string, fn func(*directory.Contact) error) (*directory.Contact, error) {
	var out *directory.Contact
	err := s.tx(ctx, func(tx *sql.Tx) error {
		old, _, err := scanContact(tx.QueryRowContext(ctx, `SELECT `+contactCols+` FROM contact WHERE pbx_id = $1 AND id = $2`+s.fl.forUpdate, pbx, id))
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("contact", id)
		}
		if err != nil {
			return err
		}
		c := *old
		if err := fn(&c); err != nil {
			return err
		}
		c.ID, c.PBXID, c.PhonebookID, c.ExtensionID = old.ID, old.PBXID, old.PhonebookID, old.ExtensionID
		if err := prepareContact(&c); err != nil {
			return err
		}
		a := contactArgs(pbx, &c)
		args := append([]any{a[0], a[1]}, a[4:]...) // every column but the owner
		if _, err := tx.ExecContext(ctx, `UPDATE contact SET first_name = $3, last_name = $4, company = $5, mobile = $6, home = $7,
			business = $8, email = $9, source = $10, entra_id = $11, sort_key = $12, search = $13,
			mobile_dial = $14, home_dial = $15, business_dial = $16
			WHERE id = $1 AND pbx_id = $2`, args...); err != nil {
			return err
		}
		out = &c
		return nil
	})
	return out, err
}

// DeleteContact deletes a contact after check (may be nil) accepts it.
func (s *Store) DeleteContact(ctx context.Context, pbx, id string, check func(*directory.Contact) error) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		c, _, err := scanContact(tx.QueryRowContext(ctx, `SELECT `+contactCols+` FROM contact WHERE pbx_id = $1 AND id = $2`+s.fl.forUpdate, pbx, id))
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("contact", id)
		}
		if err != nil {
			return err
		}
		if check != nil {
			if err := check(c); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM contact WHERE pbx_id = $1 AND id = $2`, pbx, id)
		return err
	})
}

// ReplaceSyncedContacts makes the owner's synced contacts exactly cs (all
// stored with source entra; a contact keeps its id when its EntraID was
// already there); the owner's local contacts are kept.
func (s *Store) ReplaceSyncedContacts(ctx context.Context, pbx string, owner store.ContactOwner, cs []directory.Contact) error {
	ownerCol, ownerID := "phonebook_id", owner.PhonebookID
	if owner.ExtensionID != "" {
		ownerCol, ownerID = "extension_id", owner.ExtensionID
	}
	list := make([]directory.Contact, len(cs))
	for i := range cs {
		c := cs[i]
		c.PhonebookID, c.ExtensionID, c.Source, c.PBXID = owner.PhonebookID, owner.ExtensionID, directory.SourceEntra, pbx
		if err := prepareContact(&c); err != nil {
			return fmt.Errorf("contact %d (%s %s): %w", i, c.FirstName, c.LastName, err)
		}
		list[i] = c
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		if err := checkOwner(ctx, tx, pbx, owner); err != nil {
			return err
		}
		// Keep ids stable across runs for contacts with the same Entra id.
		ids := map[string]string{}
		rows, err := tx.QueryContext(ctx, `SELECT entra_id, id FROM contact WHERE pbx_id = $1 AND `+ownerCol+` = $2 AND source = 'entra' AND entra_id <> ''`, pbx, ownerID)
		if err != nil {
			return err
		}
		for rows.Next() {
			var eid, id string
			if err := rows.Scan(&eid, &id); err != nil {
				rows.Close()
				return err
			}
			ids[eid] = id
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM contact WHERE pbx_id = $1 AND `+ownerCol+` = $2 AND source = 'entra'`, pbx, ownerID); err != nil {
			return err
		}
		if len(list) == 0 {
			return nil
		}
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO contact (`+contactCols+`) VALUES `+s.fl.rows(1, 1, contactColCount))
		if err != nil {
			return err
		}
		defer stmt.Close()
		for i := range list {
			c := &list[i]
			if id, ok := ids[c.EntraID]; ok && c.EntraID != "" {
				c.ID = id
				delete(ids, c.EntraID)
			} else {
				c.ID = uuid.NewString()
			}
			if _, err := stmt.ExecContext(ctx, contactArgs(pbx, c)...); err != nil {
				return err
			}
		}
		return nil
	})
}

// --- visibility ---

// SetVisibility replaces the phonebook's visibility grants. Targets must be
// extensions / groups of the PBX (*directory.FieldError otherwise).
func (s *Store) SetVisibility(ctx context.Context, pbx, phonebookID string, vs []directory.Visibility) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := s.lockPhonebook(ctx, tx, pbx, phonebookID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM phonebook_visibility WHERE pbx_id = $1 AND phonebook_id = $2`, pbx, phonebookID); err != nil {
			return err
		}
		seen := map[directory.Visibility]bool{}
		for i, v := range vs {
			v.PhonebookID = phonebookID
			var table string
			switch v.Kind {
			case directory.VisibleToEveryone:
				v.TargetID = ""
			case directory.VisibleToExtension:
				table = "extension"
			case directory.VisibleToGroup:
				table = "ext_group"
			default:
				return &directory.FieldError{Field: fmt.Sprintf("visibility[%d].kind", i), Code: "invalid", Reason: "must be everyone, extension or group"}
			}
			if table != "" {
				var n int
				if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+table+` WHERE pbx_id = $1 AND id = $2`, pbx, v.TargetID).Scan(&n); err != nil {
					return err
				}
				if n == 0 {
					return &directory.FieldError{Field: fmt.Sprintf("visibility[%d].targetId", i), Code: "invalid", Reason: fmt.Sprintf("%q is not an %s of this PBX", v.TargetID, map[string]string{"extension": "extension", "ext_group": "extension group"}[table])}
				}
			}
			if seen[v] {
				continue
			}
			seen[v] = true
			if _, err := tx.ExecContext(ctx, `INSERT INTO phonebook_visibility (phonebook_id, pbx_id, kind, target_id) VALUES ($1, $2, $3, $4)`,
				phonebookID, pbx, string(v.Kind), v.TargetID); err != nil {
				return err
			}
		}
		return nil
	})
}

// ListVisibility lists the phonebook's grants (store.ErrNotFound for an unknown phonebook).
func (s *Store) ListVisibility(ctx context.Context, pbx, phonebookID string) ([]directory.Visibility, error) {
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM phonebook WHERE pbx_id = $1 AND id = $2`, pbx, phonebookID).Scan(&n); err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, notFound("phonebook", phonebookID)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT kind, target_id FROM phonebook_visibility WHERE pbx_id = $1 AND phonebook_id = $2 ORDER BY kind, target_id`, pbx, phonebookID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []directory.Visibility{}
	for rows.Next() {
		v := directory.Visibility{PhonebookID: phonebookID}
		var kind string
		if err := rows.Scan(&kind, &v.TargetID); err != nil {
			return nil, err
		}
		v.Kind = directory.VisibilityKind(kind)
		out = append(out, v)
	}
	return out, rows.Err()
}

// ListVisibleContacts lists, in name order, the extension's personal
// contacts and the contacts of every phonebook visible to it (everyone, the
// extension, or a group it belongs to). q's owner fields are ignored.
func (s *Store) ListVisibleContacts(ctx context.Context, pbx, extensionID string, q store.ContactQuery) ([]directory.Contact, string, error) {
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM extension WHERE pbx_id = $1 AND id = $2`, pbx, extensionID).Scan(&n); err != nil {
		return nil, "", err
	}
	if n == 0 {
		return nil, "", notFound("extension", extensionID)
	}
	where := `(extension_id = $2 OR phonebook_id IN (
		SELECT v.phonebook_id FROM phonebook_visibility v WHERE v.pbx_id = $1 AND (
			v.kind = 'everyone'
			OR (v.kind = 'extension' AND v.target_id = $2)
			OR (v.kind = 'group' AND v.target_id IN (SELECT m.group_id FROM ext_group_member m WHERE m.extension_id = $2)))))`
	return s.contactPage(ctx, pbx, where, []any{extensionID}, q)
}
