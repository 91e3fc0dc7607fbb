-- 0001: the initial schema (PostgreSQL). Keep in step with 0001_init.sqlite.sql.
-- Timestamps are timestamptz, written in UTC.

CREATE TABLE pbx (
	id             TEXT PRIMARY KEY,
	name           TEXT NOT NULL,
	max_extensions BIGINT NOT NULL,
	time_zone      TEXT NOT NULL,
	created_at     TIMESTAMPTZ NOT NULL
);

CREATE TABLE extension (
	id                   TEXT PRIMARY KEY,
	pbx_id               TEXT NOT NULL REFERENCES pbx (id) ON DELETE CASCADE,
	number               TEXT NOT NULL,
	-- sort_key orders numerically: the number left-padded with zeros to 12 digits, then the
	-- number itself ("007" and "7" stay distinct). Unique per PBX, so it also enforces the
	-- unique number, and it is the keyset-pagination key.
	sort_key             TEXT COLLATE "C" NOT NULL,
	first_name           TEXT NOT NULL,
	last_name            TEXT NOT NULL,
	email                TEXT NOT NULL,
	email_lower          TEXT NOT NULL,
	mobile               TEXT NOT NULL,
	job_title            TEXT NOT NULL,
	caller_id_name       TEXT NOT NULL,
	presence             TEXT NOT NULL,
	call_state           TEXT NOT NULL,
	source               TEXT NOT NULL,
	entra_id             TEXT NOT NULL,
	client_password_hash TEXT NOT NULL,
	sip_secret           BYTEA,
	-- search is the lower-cased text Search matches (number, names, email).
	search               TEXT COLLATE "C" NOT NULL,
	created_at           TIMESTAMPTZ NOT NULL,
	updated_at           TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX extension_number_uq ON extension (pbx_id, sort_key);
CREATE UNIQUE INDEX extension_email_uq ON extension (pbx_id, email_lower) WHERE email_lower <> '';
CREATE INDEX extension_entra_idx ON extension (pbx_id, entra_id) WHERE entra_id <> '';

CREATE TABLE ext_group (
	id         TEXT PRIMARY KEY,
	pbx_id     TEXT NOT NULL REFERENCES pbx (id) ON DELETE CASCADE,
	name       TEXT NOT NULL,
	name_lower TEXT NOT NULL,
	source     TEXT NOT NULL,
	entra_id   TEXT NOT NULL,
	created_at TIMESTAMPTZ NOT NULL,
	updated_at TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX ext_group_name_uq ON ext_group (pbx_id, name_lower);

CREATE TABLE ext_group_member (
	group_id     TEXT NOT NULL REFERENCES ext_group (id) ON DELETE CASCADE,
	extension_id TEXT NOT NULL REFERENCES extension (id) ON DELETE CASCADE,
	pbx_id       TEXT NOT NULL,
	PRIMARY KEY (group_id, extension_id)
);
CREATE INDEX ext_group_member_ext_idx ON ext_group_member (extension_id);

CREATE TABLE phonebook (
	id         TEXT PRIMARY KEY,
	pbx_id     TEXT NOT NULL REFERENCES pbx (id) ON DELETE CASCADE,
	name       TEXT NOT NULL,
	source     TEXT NOT NULL,
	entra_id   TEXT NOT NULL,
	created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX phonebook_pbx_idx ON phonebook (pbx_id, name);

CREATE TABLE contact (
	id           TEXT PRIMARY KEY,
	pbx_id       TEXT NOT NULL,
	phonebook_id TEXT REFERENCES phonebook (id) ON DELETE CASCADE,
	extension_id TEXT REFERENCES extension (id) ON DELETE CASCADE,
	first_name   TEXT NOT NULL,
	last_name    TEXT NOT NULL,
	company      TEXT NOT NULL,
	mobile       TEXT NOT NULL,
	home         TEXT NOT NULL,
	business     TEXT NOT NULL,
	email        TEXT NOT NULL,
	source       TEXT NOT NULL,
	entra_id     TEXT NOT NULL,
	sort_key     TEXT COLLATE "C" NOT NULL,
	search       TEXT COLLATE "C" NOT NULL,
	CHECK ((phonebook_id IS NULL) <> (extension_id IS NULL))
);
CREATE INDEX contact_phonebook_idx ON contact (phonebook_id, pbx_id, sort_key, id);
CREATE INDEX contact_extension_idx ON contact (extension_id, pbx_id, sort_key, id);
CREATE INDEX contact_pbx_idx ON contact (pbx_id, sort_key, id);

CREATE TABLE phonebook_visibility (
	phonebook_id TEXT NOT NULL REFERENCES phonebook (id) ON DELETE CASCADE,
	pbx_id       TEXT NOT NULL,
	kind         TEXT NOT NULL,
	target_id    TEXT NOT NULL,
	PRIMARY KEY (phonebook_id, kind, target_id)
);
CREATE INDEX phonebook_visibility_target_idx ON phonebook_visibility (pbx_id, kind, target_id);

CREATE TABLE admin (
	id             TEXT PRIMARY KEY,
	pbx_id         TEXT NOT NULL,
	username       TEXT NOT NULL,
	username_lower TEXT NOT NULL,
	password_hash  TEXT NOT NULL,
	must_change    BOOLEAN NOT NULL,
	created_at     TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX admin_username_uq ON admin (username_lower);

CREATE TABLE audit_log (
	id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	pbx_id  TEXT NOT NULL,
	at      TIMESTAMPTZ NOT NULL,
	actor   TEXT NOT NULL,
	action  TEXT NOT NULL,
	target  TEXT NOT NULL,
	detail  TEXT NOT NULL
);
CREATE INDEX audit_log_pbx_idx ON audit_log (pbx_id, id);

CREATE TABLE setting (
	pbx_id     TEXT NOT NULL,
	key        TEXT NOT NULL,
	value      BYTEA NOT NULL,
	updated_at TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (pbx_id, key)
);
