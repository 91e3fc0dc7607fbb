-- Least-privilege PostgreSQL roles for a Kamailio database provisioned by Switchboard
-- (pbx-target.md §2, tested with Kamailio 5.6.3 and PostgreSQL 15). Run as a superuser in
-- the kamailio database after the shipped DDL (postgres-standard-create.sql,
-- postgres-auth_db-create.sql). Replace the passwords.

-- Kamailio reads only.
CREATE ROLE kamailioro LOGIN PASSWORD 'change-me-ro';
GRANT CONNECT ON DATABASE kamailio TO kamailioro;
GRANT SELECT ON version, subscriber TO kamailioro;

-- The Switchboard service (serve --kamailio-db) writes subscriber rows and nothing else.
CREATE ROLE pbxsync LOGIN PASSWORD 'change-me-sync';
GRANT CONNECT ON DATABASE kamailio TO pbxsync;
GRANT SELECT, INSERT, UPDATE, DELETE ON subscriber TO pbxsync;
GRANT USAGE ON SEQUENCE subscriber_id_seq TO pbxsync;  -- INSERT takes the next id
GRANT SELECT ON version TO pbxsync;                    -- optional: lets it check table_version
