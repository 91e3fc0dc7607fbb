// Package siptest runs a real Kamailio SIP registrar and sipp for end-to-end tests of
// Kamailio provisioning (only tests import it). It needs the Debian packages that
// .ci/install-sip.sh installs (kamailio with its SQLite, PostgreSQL and extra modules,
// and sipp).
//
// A test creates a Kamailio database from the DDL Kamailio ships ([NewSQLiteDB], or
// [NewPostgresDB] in a fresh database of TEST_DATABASE_URL's cluster with least-privilege
// roles), starts Kamailio on it with the registrar configuration in internal/sip/testdata
// ([Start]: free loopback ports, its own temp folder, a JSON-RPC control socket), and
// drives it: [Kamailio.Register] runs a sipp REGISTER with digest auth and returns the
// final SIP status code, [Kamailio.Contacts] asks `ul.lookup` for an account's live
// bindings. Everything is stopped and removed on test cleanup, and every wait is bounded.
//
// The configuration, DDL and role script are read from internal/sip/testdata, found from
// this file's location at build time (so -trimpath builds cannot use the package).
package siptest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite"
)

// Domain is the SIP domain (and digest realm) of the testdata configuration.
const Domain = "pbx.local"

// StartTimeout bounds Kamailio's start (until its control socket answers).
const StartTimeout = 10 * time.Second

// TestdataDir returns internal/sip/testdata: kamailio.cfg, the Kamailio DDL, role.sql.
func TestdataDir(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("siptest: cannot locate its source file")
	}
	dir := filepath.Join(filepath.Dir(file), "..", "testdata")
	if _, err := os.Stat(filepath.Join(dir, "kamailio.cfg")); err != nil {
		t.Fatalf("siptest: internal/sip/testdata not found (built with -trimpath?): %v", err)
	}
	return dir
}

// DB is a Kamailio database with the subscriber table, ready for a registrar.
type DB struct {
	// URL is for Switchboard (--kamailio-db, sip.Config.DBURL); on PostgreSQL it logs in as
	// a role that may write only subscriber.
	URL string
	// KamailioURL is the db_url Kamailio reads through (PostgreSQL: a read-only role).
	KamailioURL string
	// SQLiteFile is the database file, "" on PostgreSQL.
	SQLiteFile string
	// Raw is an administrative handle for assertions.
	Raw *sql.DB
}

// DDL returns the shipped Kamailio DDL of a flavour ("sqlite" or "postgres") as single
// statements, the standard tables (version) first.
func DDL(t testing.TB, flavour string) []string {
	t.Helper()
	var out []string
	for _, f := range []string{"standard-create.sql", "auth_db-create.sql"} {
		b, err := os.ReadFile(filepath.Join(TestdataDir(t), flavour+"-"+f))
		if err != nil {
			t.Fatal(err)
		}
		for stmt := range strings.SplitSeq(string(b), ";") {
			if s := strings.TrimSpace(stmt); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

func execAll(t testing.TB, db *sql.DB, stmts []string) {
	t.Helper()
	for _, s := range stmts {
		if _, err := db.ExecContext(t.Context(), s); err != nil {
			t.Fatalf("siptest: %s: %v", s, err)
		}
	}
}

// NewSQLiteDB creates a Kamailio SQLite database (WAL) in a temp folder.
func NewSQLiteDB(t testing.TB) *DB {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kamailio.sqlite")
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	execAll(t, raw, DDL(t, "sqlite"))
	return &DB{URL: "sqlite:" + path, KamailioURL: "sqlite://" + path, SQLiteFile: path, Raw: raw}
}

// RandName returns prefix followed by 12 random hex digits (a valid SQL identifier when
// prefix is one).
func RandName(prefix string) string {
	var b [6]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// NewPostgresDB creates a fresh database in TEST_DATABASE_URL's cluster with the shipped
// Kamailio DDL and the least-privilege roles of testdata/role.sql (unique names), and drops
// them on cleanup. It skips when TEST_DATABASE_URL is empty (CI always sets it).
func NewPostgresDB(t testing.TB) *DB {
	t.Helper()
	base := os.Getenv("TEST_DATABASE_URL")
	if base == "" {
		t.Skip("TEST_DATABASE_URL is empty; the PostgreSQL variant needs a throwaway cluster (.ci/start-postgres.sh)")
	}
	name := RandName("kam_e2e_")
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	var roles []string
	t.Cleanup(func() { // after the database is gone, its grants are gone too
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, r := range roles {
			if _, err := admin.ExecContext(ctx, `DROP ROLE IF EXISTS `+r); err != nil {
				t.Errorf("siptest: drop role %s: %v", r, err)
			}
		}
	})
	if _, err := admin.ExecContext(t.Context(), `CREATE DATABASE `+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, `DROP DATABASE `+name+` WITH (FORCE)`); err != nil {
			t.Errorf("siptest: drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	raw, err := sql.Open("pgx", u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	execAll(t, raw, DDL(t, "postgres"))

	// testdata/role.sql with unique role names (roles are cluster-wide) and passwords.
	b, err := os.ReadFile(filepath.Join(TestdataDir(t), "role.sql"))
	if err != nil {
		t.Fatal(err)
	}
	ro, rw := RandName("kamro_"), RandName("pbxsync_")
	roPass, rwPass := RandName("ro"), RandName("rw")
	script := strings.NewReplacer("kamailioro", ro, "pbxsync", rw, "change-me-ro", roPass,
		"change-me-sync", rwPass, "DATABASE kamailio", "DATABASE "+name).Replace(string(b))
	for stmt := range strings.SplitSeq(script, ";") {
		var lines []string
		for l := range strings.SplitSeq(stmt, "\n") {
			if !strings.HasPrefix(strings.TrimSpace(l), "--") {
				lines = append(lines, l)
			}
		}
		s := strings.TrimSpace(strings.Join(lines, "\n"))
		if s == "" {
			continue
		}
		if _, err := raw.ExecContext(t.Context(), s); err != nil {
			t.Fatalf("siptest: role.sql: %s: %v", s, err)
		}
		if f := strings.Fields(s); len(f) > 2 && f[0] == "CREATE" && f[1] == "ROLE" {
			roles = append(roles, f[2])
		}
	}
	rwu := *u
	rwu.User = url.UserPassword(rw, rwPass)
	rou := *u
	rou.User = url.UserPassword(ro, roPass)
	// Least privilege holds: the read-only role cannot write.
	rodb, err := sql.Open("pgx", rou.String())
	if err != nil {
		t.Fatal(err)
	}
	defer rodb.Close()
	if _, err := rodb.ExecContext(t.Context(), `DELETE FROM subscriber`); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("siptest: a write as the read-only role = %v, want permission denied", err)
	}
	rou.RawQuery = "" // Kamailio's db_postgres takes no query string
	if rou.Port() == "" {
		rou.Host = rou.Hostname() + ":5432"
	}
	return &DB{URL: rwu.String(), KamailioURL: rou.String(), Raw: raw}
}

// Kamailio is a running registrar.
type Kamailio struct {
	Dir string
	// SIPAddr is the UDP host:port it listens on.
	SIPAddr string
	// CtlAddr is the jsonrpcs datagram control socket as "unix:PATH" (--kamailio-ctl).
	CtlAddr string
	// BinRPCAddr is the ctl module's binrpc socket as "unix:PATH" (what kamcmd uses).
	BinRPCAddr string
	// EvapiAddr is the evapi TCP host:port streaming call events (--kamailio-events).
	EvapiAddr string
	// LogFile collects Kamailio's stderr.
	LogFile string

	t    testing.TB
	args []string
	cmd  *exec.Cmd
	seq  atomic.Int64
}

// FreeUDPPort returns a loopback UDP port that was free a moment ago.
func FreeUDPPort(t testing.TB) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func freeTCPPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start runs Kamailio with testdata/kamailio.cfg against db on free loopback ports, waits
// until its control socket answers, and stops it (process group) on cleanup; when the test
// failed, the tail of its log is written to the test log.
func Start(t testing.TB, db *DB) *Kamailio {
	t.Helper()
	for _, bin := range []string{"kamailio", "sipp"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("siptest: %s not installed: run bash .ci/install-sip.sh", bin)
		}
	}
	dir, err := os.MkdirTemp("", "kam") // short: unix socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sipPort := FreeUDPPort(t)
	k := &Kamailio{
		Dir:        dir,
		SIPAddr:    "127.0.0.1:" + strconv.Itoa(sipPort),
		CtlAddr:    "unix:" + filepath.Join(dir, "rpc.sock"),
		BinRPCAddr: "unix:" + filepath.Join(dir, "ctl.sock"),
		EvapiAddr:  "127.0.0.1:" + strconv.Itoa(freeTCPPort(t)),
		LogFile:    filepath.Join(dir, "kamailio.log"),
		t:          t,
	}
	src, err := os.ReadFile(filepath.Join(TestdataDir(t), "kamailio.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	const listen = "listen=udp:127.0.0.1:5060"
	if !strings.Contains(string(src), listen) {
		t.Fatalf("siptest: kamailio.cfg has no %q line to rewrite", listen)
	}
	cfgFile := filepath.Join(dir, "kamailio.cfg")
	cfg := strings.Replace(string(src), listen, "listen=udp:"+k.SIPAddr, 1)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	journal := "none=WAL;" // the db_sqlite modparam needs a value even for PostgreSQL runs
	if db.SQLiteFile != "" {
		journal = db.SQLiteFile + "=WAL;"
	}
	k.args = []string{"-f", cfgFile, "-DD", "-E", "-Y", dir, "-P", filepath.Join(dir, "kamailio.pid"),
		"-m", "64", "-M", "8",
		"-A", fmt.Sprintf("DBURL=%q", db.KamailioURL),
		"-A", fmt.Sprintf("SQLITE_JOURNAL=%q", journal),
		"-A", fmt.Sprintf("RPC_SOCK=%q", strings.TrimPrefix(k.CtlAddr, "unix:")),
		"-A", fmt.Sprintf("BINRPC_SOCK=%q", k.BinRPCAddr),
		"-A", fmt.Sprintf("EVAPI_BIND=%q", k.EvapiAddr),
	}
	t.Cleanup(func() {
		k.Stop()
		if t.Failed() {
			t.Logf("kamailio log (tail):\n%s", tail(k.Log(), 4000))
		}
	})
	k.Restart()
	return k
}

// Restart starts Kamailio again after Stop (same ports, sockets and database); Start
// calls it once. It fails the test when Kamailio exits or is not ready within StartTimeout.
func (k *Kamailio) Restart() time.Duration {
	t := k.t
	t.Helper()
	logf, err := os.OpenFile(k.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	os.Remove(strings.TrimPrefix(k.CtlAddr, "unix:"))
	cmd := exec.Command("kamailio", k.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // Stop kills the forked children too
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	k.cmd = cmd
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(StartTimeout)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		_, err := k.Call(ctx, "core.uptime")
		cancel()
		if err == nil {
			return time.Since(begin)
		}
		select {
		case <-exited:
			t.Fatalf("siptest: kamailio exited at startup:\n%s", tail(k.Log(), 3000))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("siptest: kamailio not ready after %v: %v", StartTimeout, err)
		}
		time.Sleep(10 * time.Millisecond) // poll interval of a deadline-bounded wait
	}
}

// Stop terminates Kamailio's process group (SIGTERM, SIGKILL after 5 s) and waits for it.
func (k *Kamailio) Stop() {
	if k.cmd == nil || k.cmd.Process == nil {
		return
	}
	pgid := k.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(-pgid, 0) == nil {
		if time.Now().After(deadline) {
			syscall.Kill(-pgid, syscall.SIGKILL)
			break
		}
		time.Sleep(10 * time.Millisecond) // poll interval of a deadline-bounded wait
	}
	k.cmd = nil
}

// Log returns what Kamailio wrote so far.
func (k *Kamailio) Log() string {
	b, _ := os.ReadFile(k.LogFile)
	return string(b)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// RPCError is an error Kamailio answered to a JSON-RPC call.
type RPCError struct {
	Method  string
	Code    int
	Message string
}

func (e *RPCError) Error() string {
	return fmt.Sprintf("kamailio %s: %d %s", e.Method, e.Code, e.Message)
}

// Call runs one JSON-RPC command over the jsonrpcs datagram socket (3 s at most) and
// returns its result. This is an independent client: it does not share code with package
// sip, whose control client is under test.
func (k *Kamailio) Call(ctx context.Context, method string, params ...string) (json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	local := filepath.Join(k.Dir, fmt.Sprintf("c%d.sock", k.seq.Add(1)))
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: local, Net: "unixgram"})
	if err != nil {
		return nil, err
	}
	defer os.Remove(local)
	defer conn.Close()
	d, _ := ctx.Deadline()
	conn.SetDeadline(d)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if params == nil {
		params = []string{}
	}
	id := k.seq.Add(1)
	req, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": method, "params": params, "id": id})
	remote := &net.UnixAddr{Name: strings.TrimPrefix(k.CtlAddr, "unix:"), Net: "unixgram"}
	if _, err := conn.WriteToUnix(req, remote); err != nil {
		return nil, err
	}
	buf := make([]byte, 1<<20)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, err
		}
		var resp struct {
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
			ID int64 `json:"id"`
		}
		if err := json.Unmarshal(buf[:n], &resp); err != nil {
			return nil, fmt.Errorf("kamailio %s reply: %w", method, err)
		}
		if resp.ID != id {
			continue
		}
		if resp.Error != nil {
			return nil, &RPCError{Method: method, Code: resp.Error.Code, Message: resp.Error.Message}
		}
		return resp.Result, nil
	}
}

// Contacts returns the contact URIs of the live bindings of user@Domain in the location
// table (`ul.lookup location`); none when it has no registration.
func (k *Kamailio) Contacts(t testing.TB, user string) []string {
	t.Helper()
	res, err := k.Call(t.Context(), "ul.lookup", "location", user+"@"+Domain)
	var rerr *RPCError
	if errors.As(err, &rerr) && strings.Contains(strings.ToLower(rerr.Message), "not found") {
		return nil
	}
	if err != nil {
		t.Fatalf("siptest: ul.lookup %s: %v", user, err)
	}
	var out struct {
		Contacts []struct {
			Contact struct {
				Address string `json:"Address"`
			} `json:"Contact"`
		} `json:"Contacts"`
	}
	if err := json.Unmarshal(res, &out); err != nil {
		t.Fatalf("siptest: ul.lookup %s: %v in %s", user, err, res)
	}
	var addrs []string
	for _, c := range out.Contacts {
		addrs = append(addrs, c.Contact.Address)
	}
	return addrs
}

// Dump returns the AoRs of the location table (`ul.dump`).
func (k *Kamailio) Dump(t testing.TB) []string {
	t.Helper()
	res, err := k.Call(t.Context(), "ul.dump")
	if err != nil {
		t.Fatalf("siptest: ul.dump: %v", err)
	}
	var out struct {
		Domains []struct {
			Domain struct {
				AoRs []struct {
					Info struct {
						AoR string `json:"AoR"`
					} `json:"Info"`
				} `json:"AoRs"`
			} `json:"Domain"`
		} `json:"Domains"`
	}
	if err := json.Unmarshal(res, &out); err != nil {
		t.Fatalf("siptest: ul.dump: %v in %s", err, res)
	}
	var aors []string
	for _, d := range out.Domains {
		for _, a := range d.Domain.AoRs {
			aors = append(aors, a.Info.AoR)
		}
	}
	return aors
}

// registerScenario sends REGISTER, answers the 401 challenge with the credentials (-au,
// -ap), and accepts 200 or a refusal as the final answer.
const registerScenario = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="register">
  <send retrans="500"><![CDATA[
      REGISTER sip:` + Domain + ` SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      Max-Forwards: 70
      From: <sip:[service]@` + Domain + `>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@` + Domain + `>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:[service]@[local_ip]:[local_port]>
      Expires: 300
      Content-Length: 0

    ]]></send>
  <recv response="403" optional="true" next="end"/>
  <recv response="404" optional="true" next="end"/>
  <recv response="401" auth="true"/>
  <send retrans="500"><![CDATA[
      REGISTER sip:` + Domain + ` SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      Max-Forwards: 70
      From: <sip:[service]@` + Domain + `>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@` + Domain + `>
      Call-ID: [call_id]
      CSeq: 2 REGISTER
      Contact: <sip:[service]@[local_ip]:[local_port]>
      [authentication]
      Expires: 300
      Content-Length: 0

    ]]></send>
  <recv response="401" optional="true" next="end"/>
  <recv response="403" optional="true" next="end"/>
  <recv response="404" optional="true" next="end"/>
  <recv response="200"/>
  <label id="end"/>
</scenario>
`

var statusLine = regexp.MustCompile(`(?m)message received \[\d+\] bytes :\s*\n\s*SIP/2\.0 (\d{3})`)

// Register runs one sipp REGISTER for user@Domain with digest auth (Expires 300, Contact
// on a fresh loopback port) and returns the final status code: 200 when accepted, 401, 403
// or 404 when refused. sipp is bounded to 10 s; no answer fails the test.
func (k *Kamailio) Register(t testing.TB, user, password string) int {
	t.Helper()
	return k.RegisterFrom(t, user, password, FreeUDPPort(t))
}

// RegisterFrom is Register from local UDP port port, which becomes the binding's Contact
// (a sipp UAS on that port then receives the calls for user).
func (k *Kamailio) RegisterFrom(t testing.TB, user, password string, port int) int {
	t.Helper()
	dir := t.TempDir()
	sf := filepath.Join(dir, "register.xml")
	if err := os.WriteFile(sf, []byte(registerScenario), 0o600); err != nil {
		t.Fatal(err)
	}
	msgs := filepath.Join(dir, "messages.log")
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sipp", k.SIPAddr, "-sf", sf, "-i", "127.0.0.1",
		"-p", strconv.Itoa(port), "-s", user, "-au", user, "-ap", password, "-m", "1", "-nostdin",
		"-timeout", "10s", "-timeout_error", "-recv_timeout", "5000",
		"-trace_msg", "-message_file", msgs, "-trace_err", "-error_file", filepath.Join(dir, "errors.log"))
	cmd.Dir = dir
	cmd.WaitDelay = time.Second
	out, runErr := cmd.CombinedOutput()
	log, _ := os.ReadFile(msgs)
	m := statusLine.FindAllSubmatch(log, -1)
	if len(m) == 0 {
		errs, _ := os.ReadFile(filepath.Join(dir, "errors.log"))
		t.Fatalf("siptest: sipp REGISTER %s got no answer (%v):\n%s\n%s", user, runErr, tail(string(out), 1500), tail(string(errs), 1500))
	}
	code, _ := strconv.Atoi(string(m[len(m)-1][1]))
	if runErr != nil && code == 200 {
		t.Fatalf("siptest: sipp REGISTER %s: 200 but sipp failed: %v\n%s", user, runErr, tail(string(out), 1500))
	}
	return code
}
