// Package sip makes directory extensions real on a Kamailio SIP registrar and brings the
// registrar's call events back.
//
// Provisioning: a [Provisioner] writes rows into Kamailio's own `subscriber` table
// (the DDL shipped by Debian's kamailio package, table version 7), which `auth_db` reads on
// every REGISTER with `calculate_ha1 0`, `password_column ha1` and `password_column_2 ha1b`.
// Only the HA1 digests are stored: the `password` column is always written as ”. The
// package never creates, alters or drops Kamailio's tables; they are created once from the
// shipped `*-create.sql` (see testdata/).
//
// Removing an extension takes two steps: the row is deleted (the next REGISTER fails), then
// the live registrations are dropped with the RPC `ul.rm location <user>@<domain>` sent to
// Kamailio's control socket ([Config].CtlAddr): the ctl module's binrpc socket (what kamcmd
// uses) or the jsonrpcs datagram socket. Without the second step a phone keeps its binding,
// and can keep calling, until it expires.
//
// Least privilege (PostgreSQL): the service's role writes only `subscriber`, Kamailio reads
// through a read-only role. testdata/role.sql has the grants:
//
//	CREATE ROLE pbxsync LOGIN PASSWORD '...';
//	GRANT CONNECT ON DATABASE kamailio TO pbxsync;
//	GRANT SELECT, INSERT, UPDATE, DELETE ON subscriber TO pbxsync;
//	GRANT USAGE ON SEQUENCE subscriber_id_seq TO pbxsync;
//	GRANT SELECT ON version TO pbxsync;
//
// SQLite: Kamailio and this package both open the file in WAL mode (Kamailio through
// `modparam("db_sqlite", "db_set_journal_mode", "<file>=WAL;")`), and this package waits up
// to 5 s on a busy database, so the two writers do not meet "database is locked".
//
// Call events: [ListenCallEvents] connects to Kamailio's `evapi` TCP socket, reads the JSON
// events emitted by the dialog event routes of testdata/kamailio.cfg (netstring framed, or
// one JSON object per line when `netstring_format` is 0) and turns them into [CallEvent]
// values carrying the Yeastar-style call state of an extension: ringing, busy or idle.
package sip
