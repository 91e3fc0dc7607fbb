package sqlstore

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

const extCols = `id, pbx_id, number, sort_key, first_name, last_name, email, email_lower, mobile, job_title,
	caller_id_name, presence, call_state, source, entra_id, client_password_hash, sip_secret, search,
	created_at, updated_at`

// extColCount is the number of columns in extCols.
const extColCount = 20

// numberKey is the sort key of an extension number: the number left-padded
// with zeros to 12 digits (so text order is numeric order), then the number
// itself (so "007" and "7" stay distinct).
func numberKey(number string) string {
	if len(number) >= 12 {
		return number + number
	}
	return strings.Repeat("0", 12-len(number)) + number + number
}

func extSearch(e *directory.Extension) string {
	return strings.ToLower(e.Number + "\n" + e.FirstName + " " + e.LastName + "\n" + e.Email)
}

// extArgs returns the column values of extCols for e.
func (s *Store) extArgs(pbx string, e *directory.Extension) []any {
	return []any{e.ID, pbx, e.Number, numberKey(e.Number), e.FirstName, e.LastName, e.Email,
		directory.NormalizeEmail(e.Email), e.Mobile, e.JobTitle, e.CallerIDName, string(e.Presence),
		string(e.CallState), string(e.Source), e.EntraID, e.ClientPasswordHash, e.SIPSecret, extSearch(e),
		s.fl.ts(e.CreatedAt), s.fl.ts(e.UpdatedAt)}
}

func scanExt(r rowScanner) (*directory.Extension, error) {
	var e directory.Extension
	var sortKey, emailLower, search string
	var presence, callState, source string
	err := r.Scan(&e.ID, &e.PBXID, &e.Number, &sortKey, &e.FirstName, &e.LastName, &e.Email, &emailLower,
		&e.Mobile, &e.JobTitle, &e.CallerIDName, &presence, &callState, &source, &e.EntraID,
		&e.ClientPasswordHash, &e.SIPSecret, &search, timeCol{&e.CreatedAt}, timeCol{&e.UpdatedAt})
	if err != nil {
		return nil, err
	}
	e.Presence, e.CallState, e.Source = directory.Presence(presence), directory.CallState(callState), directory.Source(source)
	return &e, nil
}

// prepareExt fills defaults and validates an extension before it is stored.
func prepareExt(e *directory.Extension) error {
	if e.Source == "" {
		e.Source = directory.SourceLocal
	}
	if e.Presence == "" {
		e.Presence = directory.PresenceAvailable
	}
	if e.CallState == "" {
		e.CallState = directory.CallIdle
	}
	return directory.ValidateExtension(e)
}

func numberConflict(number string) error {
	return &store.ConflictError{Field: "number", Reason: fmt.Sprintf("extension number %s is already in use", number)}
}

func emailConflict(email string) error {
	return &store.ConflictError{Field: "email", Reason: fmt.Sprintf("email %s is already used by another extension", email)}
}

// checkExtUnique pre-checks number and email against the other extensions of the PBX.
func checkExtUnique(ctx context.Context, tx *sql.Tx, pbx string, e *directory.Extension) error {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM extension WHERE pbx_id = $1 AND sort_key = $2 AND id <> $3`,
		pbx, numberKey(e.Number), e.ID).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return numberConflict(e.Number)
	}
	if el := directory.NormalizeEmail(e.Email); el != "" {
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM extension WHERE pbx_id = $1 AND email_lower = $2 AND email_lower <> '' AND id <> $3`,
			pbx, el, e.ID).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return emailConflict(e.Email)
		}
	}
	return nil
}

func capacityError(max, have, adding int) error {
	return fmt.Errorf("%w: the PBX is licensed for %d extensions and holds %d; %d more do not fit",
		directory.ErrCapacity, max, have, have+adding-max)
}

// CreateExtension assigns ID and timestamps and stores e, enforcing the
// PBX's capacity (MaxExtensions 0 = no limit) and unique number and email.
func (s *Store) CreateExtension(ctx context.Context, pbx string, e *directory.Extension) error {
	c := *e
	if err := prepareExt(&c); err != nil {
		return err
	}
	c.ID, c.PBXID = uuid.NewString(), pbx
	c.CreatedAt = now()
	c.UpdatedAt = c.CreatedAt
	err := s.tx(ctx, func(tx *sql.Tx) error {
		p, err := lockPBX(ctx, tx, s.fl, pbx)
		if err != nil {
			return err
		}
		if p.MaxExtensions > 0 {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM extension WHERE pbx_id = $1`, pbx).Scan(&n); err != nil {
				return err
			}
			if n+1 > p.MaxExtensions {
				return capacityError(p.MaxExtensions, n, 1)
			}
		}
		if err := checkExtUnique(ctx, tx, pbx, &c); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO extension (`+extCols+`) VALUES `+s.fl.rows(1, 1, extColCount), s.extArgs(pbx, &c)...)
		return err
	})
	if err != nil {
		return err
	}
	*e = c
	return nil
}

// GetExtension returns one extension of the PBX or store.ErrNotFound.
func (s *Store) GetExtension(ctx context.Context, pbx, id string) (*directory.Extension, error) {
	e, err := scanExt(s.r.QueryRowContext(ctx, `SELECT `+extCols+` FROM extension WHERE pbx_id = $1 AND id = $2`, pbx, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("extension", id)
	}
	return e, err
}

// FindExtension looks an extension up by "number", "email"
// (case-insensitive) or "entraId".
func (s *Store) FindExtension(ctx context.Context, pbx, by, value string) (*directory.Extension, error) {
	var where string
	arg := value
	switch by {
	case "number":
		where, arg = `sort_key = $2`, numberKey(value)
	case "email":
		where, arg = `email_lower = $2 AND email_lower <> ''`, directory.NormalizeEmail(value)
	case "entraId":
		where = `entra_id = $2 AND entra_id <> ''`
	default:
		return nil, fmt.Errorf("sqlstore: FindExtension by %q: want number, email or entraId", by)
	}
	if arg == "" {
		return nil, notFound("extension with "+by, value)
	}
	e, err := scanExt(s.r.QueryRowContext(ctx, `SELECT `+extCols+` FROM extension WHERE pbx_id = $1 AND `+where+` ORDER BY sort_key LIMIT 1`, pbx, arg))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("extension with "+by, value)
	}
	return e, err
}

func encodeCursor(key string) string { return base64.RawURLEncoding.EncodeToString([]byte(key)) }

func decodeCursor(c string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) == 0 {
		return "", &directory.FieldError{Field: "cursor", Code: "invalid", Reason: "is not a cursor this server issued"}
	}
	return string(b), nil
}

// ListExtensions returns a page of extensions in numeric order and the
// cursor of the next page ("" on the last page).
func (s *Store) ListExtensions(ctx context.Context, pbx string, q store.ExtensionQuery) ([]directory.Extension, string, error) {
	limit := clampLimit(q.Limit)
	where := []string{`pbx_id = $1`}
	args := []any{pbx}
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if q.Cursor != "" {
		key, err := decodeCursor(q.Cursor)
		if err != nil {
			return nil, "", err
		}
		add(`sort_key > $%d`, key)
	}
	if q.Search != "" {
		add(`search LIKE $%d ESCAPE '\'`, likePattern(q.Search))
	}
	if q.Source != "" {
		add(`source = $%d`, string(q.Source))
	}
	if q.EntraID != "" {
		add(`entra_id = $%d AND entra_id <> ''`, q.EntraID)
	}
	args = append(args, limit+1)
	query := fmt.Sprintf(`SELECT %s FROM extension WHERE %s ORDER BY sort_key LIMIT $%d`, extCols, strings.Join(where, " AND "), len(args))
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	out := make([]directory.Extension, 0, min(limit, 128))
	more := false
	for rows.Next() {
		if len(out) == limit {
			more = true
			break
		}
		e, err := scanExt(rows)
		if err != nil {
			return nil, "", err
		}
		out = append(out, *e)
	}
	if err := rows.Err(); err != nil {
		return nil, "", err
	}
	next := ""
	if more {
		next = encodeCursor(numberKey(out[len(out)-1].Number))
	}
	return out, next, nil
}

// ListAllExtensions calls fn for every extension of the PBX in number order.
// It reads in pages and holds no connection while fn runs, so fn may use the store.
func (s *Store) ListAllExtensions(ctx context.Context, pbx string, fn func(*directory.Extension) error) error {
	cursor := ""
	for {
		page, next, err := s.ListExtensions(ctx, pbx, store.ExtensionQuery{Limit: 1000, Cursor: cursor})
		if err != nil {
			return err
		}
		for i := range page {
			if err := fn(&page[i]); err != nil {
				return err
			}
		}
		if next == "" {
			return nil
		}
		cursor = next
	}
}

// CountExtensions counts the PBX's extensions.
func (s *Store) CountExtensions(ctx context.Context, pbx string) (int, error) {
	var n int
	err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM extension WHERE pbx_id = $1`, pbx).Scan(&n)
	return n, err
}

// lockExt loads an extension inside tx (row-locked on PostgreSQL).
func (s *Store) lockExt(ctx context.Context, tx *sql.Tx, pbx, id string) (*directory.Extension, error) {
	e, err := scanExt(tx.QueryRowContext(ctx, `SELECT `+extCols+` FROM extension WHERE pbx_id = $1 AND id = $2`+s.fl.forUpdate, pbx, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("extension", id)
	}
	return e, err
}

// extUpdateArgs returns the arguments of extUpdateSQL (every column but created_at).
func (s *Store) extUpdateArgs(pbx string, e *directory.Extension) []any {
	a := s.extArgs(pbx, e)
	return append(a[:18:18], a[19])
}

const extUpdateSQL = `UPDATE extension SET number = $3, sort_key = $4, first_name = $5, last_name = $6, email = $7,
	email_lower = $8, mobile = $9, job_title = $10, caller_id_name = $11, presence = $12, call_state = $13,
	source = $14, entra_id = $15, client_password_hash = $16, sip_secret = $17, search = $18, updated_at = $19
	WHERE id = $1 AND pbx_id = $2`

// UpdateExtension loads the extension, calls fn and stores the result in one
// transaction; ID, PBX and CreatedAt are kept, UpdatedAt is set.
func (s *Store) UpdateExtension(ctx context.Context, pbx, id string, fn func(*directory.Extension) error) (*directory.Extension, error) {
	var out *directory.Extension
	err := s.tx(ctx, func(tx *sql.Tx) error {
		old, err := s.lockExt(ctx, tx, pbx, id)
		if err != nil {
			return err
		}
		e := *old
		e.SIPSecret = append([]byte(nil), old.SIPSecret...)
		if err := fn(&e); err != nil {
			return err
		}
		e.ID, e.PBXID, e.CreatedAt = old.ID, old.PBXID, old.CreatedAt
		if err := prepareExt(&e); err != nil {
			return err
		}
		if err := checkExtUnique(ctx, tx, pbx, &e); err != nil {
			return err
		}
		e.UpdatedAt = now()
		if _, err := tx.ExecContext(ctx, extUpdateSQL, s.extUpdateArgs(pbx, &e)...); err != nil {
			return err
		}
		out = &e
		return nil
	})
	return out, err
}

// DeleteExtension deletes the extension after check (may be nil) accepts
// it; its group memberships, personal contacts and visibility grants go with it.
func (s *Store) DeleteExtension(ctx context.Context, pbx, id string, check func(*directory.Extension) error) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		e, err := s.lockExt(ctx, tx, pbx, id)
		if err != nil {
			return err
		}
		if check != nil {
			if err := check(e); err != nil {
				return err
			}
		}
		return s.deleteExtRows(ctx, tx, pbx, []string{id})
	})
}

// deleteExtRows deletes extensions by id (ids of other PBXs or unknown ids
// are ignored) with their visibility grants; memberships and personal
// contacts cascade. PostgreSQL gets a chunk of ids per statement; SQLite one
// prepared statement per id, because without statistics its planner would
// rather walk the PBX's index than look each id up.
func (s *Store) deleteExtRows(ctx context.Context, tx *sql.Tx, pbx string, ids []string) error {
	const chunk = 500
	var one *sql.Stmt
	if s.fl.name == flavourSQLite && len(ids) > 0 {
		var err error
		if one, err = tx.PrepareContext(ctx, `DELETE FROM extension WHERE id = $2 AND pbx_id = $1`); err != nil {
			return err
		}
		defer one.Close()
	}
	for start := 0; start < len(ids); start += chunk {
		part := ids[start:min(start+chunk, len(ids))]
		args := make([]any, 0, len(part)+1)
		args = append(args, pbx)
		for _, id := range part {
			args = append(args, id)
		}
		in := s.fl.params(2, len(part))
		if _, err := tx.ExecContext(ctx, `DELETE FROM phonebook_visibility WHERE pbx_id = $1 AND kind = 'extension' AND target_id IN (`+in+`)`, args...); err != nil {
			return err
		}
		if one == nil {
			if _, err := tx.ExecContext(ctx, `DELETE FROM extension WHERE pbx_id = $1 AND id IN (`+in+`)`, args...); err != nil {
				return err
			}
			continue
		}
		for _, id := range part {
			if _, err := one.ExecContext(ctx, pbx, id); err != nil {
				return err
			}
		}
	}
	return nil
}

// insertBatch is the number of rows per multi-row INSERT of ApplyExtensions.
const insertBatch = 100

// ApplyExtensions applies the sync engine's bulk change in one transaction:
// deletes (unknown ids are ignored: already gone), then updates (full
// records matched by ID; an unknown id is store.ErrNotFound), then creates
// (ids and timestamps assigned into the given structs). Every record is
// validated, numbers and emails stay unique (*store.ConflictError) and the
// count after the batch must fit the PBX's capacity (directory.ErrCapacity).
// Any error leaves the store as it was.
func (s *Store) ApplyExtensions(ctx context.Context, pbx string, c store.ExtensionChanges) error {
	// Validate and check uniqueness inside the batch before touching the database.
	numbers := make(map[string]bool, len(c.Create)+len(c.Update))
	emails := make(map[string]bool, len(c.Create)+len(c.Update))
	upd := make([]directory.Extension, len(c.Update))
	crt := make([]directory.Extension, len(c.Create))
	check := func(e *directory.Extension) error {
		if err := prepareExt(e); err != nil {
			return fmt.Errorf("extension %q: %w", e.Number, err)
		}
		if numbers[e.Number] {
			return numberConflict(e.Number)
		}
		numbers[e.Number] = true
		if el := directory.NormalizeEmail(e.Email); el != "" {
			if emails[el] {
				return emailConflict(e.Email)
			}
			emails[el] = true
		}
		return nil
	}
	ts := now()
	for i, e := range c.Update {
		upd[i] = *e
		upd[i].PBXID, upd[i].UpdatedAt = pbx, ts
		if err := check(&upd[i]); err != nil {
			return err
		}
	}
	for i, e := range c.Create {
		crt[i] = *e
		crt[i].ID, crt[i].PBXID, crt[i].CreatedAt, crt[i].UpdatedAt = uuid.NewString(), pbx, ts, ts
		if err := check(&crt[i]); err != nil {
			return err
		}
	}

	err := s.txConn(ctx, func(conn *sql.Conn, tx *sql.Tx) error {
		// The fence first: a refused write takes no other lock.
		if err := s.checkFence(ctx, tx, pbx, c.Fence); err != nil {
			return err
		}
		if err := s.writeSettings(ctx, tx, pbx, c.Settings); err != nil {
			return err
		}
		p, err := lockPBX(ctx, tx, s.fl, pbx)
		if err != nil {
			return err
		}
		if err := s.deleteExtRows(ctx, tx, pbx, c.Delete); err != nil {
			return err
		}
		if err := s.applyUpdates(ctx, conn, tx, pbx, upd); err != nil {
			return err
		}
		if len(crt) == 0 {
			return nil
		}
		if p.MaxExtensions > 0 {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM extension WHERE pbx_id = $1`, pbx).Scan(&n); err != nil {
				return err
			}
			if n+len(crt) > p.MaxExtensions {
				return capacityError(p.MaxExtensions, n, len(crt))
			}
		}
		if err := s.checkExtsUnique(ctx, tx, pbx, crt); err != nil {
			return err
		}
		if s.fl.name == flavourPostgres && len(crt) >= copyThreshold {
			return s.copyRows(ctx, conn, "extension", pbx, crt)
		}
		return s.insertExts(ctx, tx, pbx, crt)
	})
	if err != nil {
		return err
	}
	for i, e := range c.Update {
		*e = upd[i]
	}
	for i, e := range c.Create {
		*e = crt[i]
	}
	return nil
}

func (s *Store) applyUpdates(ctx context.Context, conn *sql.Conn, tx *sql.Tx, pbx string, upd []directory.Extension) error {
	if len(upd) == 0 {
		return nil
	}
	if s.fl.name == flavourPostgres && len(upd) >= copyThreshold {
		return s.copyUpdates(ctx, conn, tx, pbx, upd)
	}
	stmt, err := tx.PrepareContext(ctx, extUpdateSQL+` RETURNING created_at`)
	if err != nil {
		return err
	}
	defer stmt.Close()
	for i := range upd {
		e := &upd[i]
		err := stmt.QueryRowContext(ctx, s.extUpdateArgs(pbx, e)...).Scan(timeCol{&e.CreatedAt})
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return notFound("extension", e.ID)
		case err != nil:
			if _, ok := uniqueViolation(err); ok {
				return fmt.Errorf("extension %q: %w", e.Number, s.mapErr(err))
			}
			return err
		}
	}
	return nil
}

// copyUpdates applies many updates on PostgreSQL: COPY into a temporary
// table (dropped at commit or rollback), then one UPDATE ... FROM.
func (s *Store) copyUpdates(ctx context.Context, conn *sql.Conn, tx *sql.Tx, pbx string, upd []directory.Extension) error {
	if _, err := tx.ExecContext(ctx, `CREATE TEMPORARY TABLE extension_update (LIKE extension) ON COMMIT DROP`); err != nil {
		return err
	}
	if err := s.copyRows(ctx, conn, "extension_update", pbx, upd); err != nil {
		return err
	}
	rows, err := tx.QueryContext(ctx, `UPDATE extension e SET number = u.number, sort_key = u.sort_key,
		first_name = u.first_name, last_name = u.last_name, email = u.email, email_lower = u.email_lower,
		mobile = u.mobile, job_title = u.job_title, caller_id_name = u.caller_id_name, presence = u.presence,
		call_state = u.call_state, source = u.source, entra_id = u.entra_id,
		client_password_hash = u.client_password_hash, sip_secret = u.sip_secret, search = u.search,
		updated_at = u.updated_at
		FROM extension_update u WHERE e.pbx_id = $1 AND e.id = u.id
		RETURNING e.id, e.created_at`, pbx)
	if err != nil {
		return err
	}
	defer rows.Close()
	created := make(map[string]time.Time, len(upd))
	for rows.Next() {
		var id string
		var at time.Time
		if err := rows.Scan(&id, timeCol{&at}); err != nil {
			return err
		}
		created[id] = at
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for i := range upd {
		at, ok := created[upd[i].ID]
		if !ok {
			return notFound("extension", upd[i].ID)
		}
		upd[i].CreatedAt = at
	}
	_, err = tx.ExecContext(ctx, `DROP TABLE extension_update`)
	return err
}

// checkExtsUnique pre-checks the numbers and emails of new extensions against
// the database, a chunk at a time, so the conflict names the value.
func (s *Store) checkExtsUnique(ctx context.Context, tx *sql.Tx, pbx string, crt []directory.Extension) error {
	const chunk = 500
	for start := 0; start < len(crt); start += chunk {
		part := crt[start:min(start+chunk, len(crt))]
		keys := make([]any, 0, len(part)+1)
		keys = append(keys, pbx)
		emails := make([]any, 0, len(part)+1)
		emails = append(emails, pbx)
		for i := range part {
			keys = append(keys, numberKey(part[i].Number))
			if el := directory.NormalizeEmail(part[i].Email); el != "" {
				emails = append(emails, el)
			}
		}
		var dup string
		err := tx.QueryRowContext(ctx, `SELECT number FROM extension WHERE pbx_id = $1 AND sort_key IN (`+s.fl.params(2, len(keys)-1)+`) LIMIT 1`, keys...).Scan(&dup)
		if err == nil {
			return numberConflict(dup)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if len(emails) > 1 {
			err = tx.QueryRowContext(ctx, `SELECT email FROM extension WHERE pbx_id = $1 AND email_lower <> '' AND email_lower IN (`+s.fl.params(2, len(emails)-1)+`) LIMIT 1`, emails...).Scan(&dup)
			if err == nil {
				return emailConflict(dup)
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
		}
	}
	return nil
}

// insertExts inserts new extensions with multi-row INSERTs, reusing one
// prepared statement for the full batches.
func (s *Store) insertExts(ctx context.Context, tx *sql.Tx, pbx string, crt []directory.Extension) error {
	full := len(crt) / insertBatch
	args := make([]any, 0, insertBatch*extColCount)
	if full > 0 {
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO extension (`+extCols+`) VALUES `+s.fl.rows(1, insertBatch, extColCount))
		if err != nil {
			return err
		}
		defer stmt.Close()
		for b := range full {
			args = args[:0]
			for i := b * insertBatch; i < (b+1)*insertBatch; i++ {
				args = append(args, s.extArgs(pbx, &crt[i])...)
			}
			if _, err := stmt.ExecContext(ctx, args...); err != nil {
				return err
			}
		}
	}
	if rest := crt[full*insertBatch:]; len(rest) > 0 {
		args = args[:0]
		for i := range rest {
			args = append(args, s.extArgs(pbx, &rest[i])...)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO extension (`+extCols+`) VALUES `+s.fl.rows(1, len(rest), extColCount), args...); err != nil {
			return err
		}
	}
	return nil
}

// copyThreshold is the number of creates from which PostgreSQL gets them by COPY.
const copyThreshold = 500

// copyRows streams extensions into table (extension or a temporary table
// like it) with COPY, on the connection (and so inside the transaction) of
// the caller's tx.
func (s *Store) copyRows(ctx context.Context, conn *sql.Conn, table, pbx string, exts []directory.Extension) error {
	cols := strings.Split(strings.Join(strings.Fields(extCols), ""), ",")
	return conn.Raw(func(dc any) error {
		sc, ok := dc.(interface{ Conn() *pgx.Conn })
		if !ok {
			return fmt.Errorf("sqlstore: COPY needs a pgx connection, have %T", dc)
		}
		i := 0
		n, err := sc.Conn().CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromFunc(func() ([]any, error) {
			if i == len(exts) {
				return nil, nil
			}
			i++
			return s.extArgs(pbx, &exts[i-1]), nil
		}))
		if err != nil {
			return err
		}
		if int(n) != len(exts) {
			return fmt.Errorf("sqlstore: COPY stored %d of %d rows", n, len(exts))
		}
		return nil
	})
}
