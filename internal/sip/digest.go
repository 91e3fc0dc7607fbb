package sip

import (
	"crypto/md5"
	"encoding/hex"
)

// HA1 returns the digest Kamailio's auth_db compares in its `ha1` column:
// md5("username:realm:password"), lower-case hex.
func HA1(username, realm, password string) string {
	return md5hex(username + ":" + realm + ":" + password)
}

// HA1B returns the digest for the `ha1b` column, used when a phone sends "user@domain" as
// its digest username: md5("username@domain:realm:password"), lower-case hex.
func HA1B(username, domain, realm, password string) string {
	return md5hex(username + "@" + domain + ":" + realm + ":" + password)
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s)) //nolint:gosec // SIP digest auth (RFC 2617) is defined on MD5.
	return hex.EncodeToString(sum[:])
}
