-- A contact belongs to a phonebook or to an extension, never both, so each of
-- these indexes had a NULL-keyed entry for every contact of the other kind.
-- Partial indexes leave those out: a personal-contacts sync of 10,000
-- mailboxes touches far fewer index pages (Outlook contact sync at 2,000
-- users: 2.6 GB -> 1.7 GB written). Every query that uses them compares the
-- column (phonebook_id = ..., IN (...)), which implies IS NOT NULL, so both
-- SQLite and PostgreSQL still pick them.
DROP INDEX contact_phonebook_idx;
DROP INDEX contact_extension_idx;
CREATE INDEX contact_phonebook_idx ON contact (phonebook_id, pbx_id, sort_key, id) WHERE phonebook_id IS NOT NULL;
CREATE INDEX contact_extension_idx ON contact (extension_id, pbx_id, sort_key, id) WHERE extension_id IS NOT NULL;
