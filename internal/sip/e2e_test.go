//go:build e2e

package sip

// End-to-end tests against a real Kamailio 5.6 and sipp (bash .ci/install-sip.sh):
//
//	go test -tags e2e -run E2E -v ./internal/sip/...
//
// Each test starts its own Kamailio from testdata/kamailio.cfg on free loopback ports in
// its own temp folder, and kills it (process group) on cleanup.

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// kamailio is one registrar process and its ports.
type kamailio struct {
	dir, cfg, log string
	sipPort       int
	evapiAddr     string
	rpcAddr       string // unix:PATH of the jsonrpcs datagram socket
	args          []string
	cmd           *exec.Cmd
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// newKamailio prepares (does not start) a Kamailio on dbURL (Kamailio's URL form);
// sqliteFile is the SQLite database, or "" for PostgreSQL.
func newKamailio(t *testing.T, dbURL, sqliteFile string) *kamailio {
	t.Helper()
	if _, err := exec.LookPath("kamailio"); err != nil {
		t.Fatal("kamailio not installed: run bash .ci/install-sip.sh")
	}
	dir, err := os.MkdirTemp("", "kam") // short: unix socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	k := &kamailio{
		dir:       dir,
		cfg:       filepath.Join(dir, "kamailio.cfg"),
		log:       filepath.Join(dir, "kamailio.log"),
		sipPort:   freeUDPPort(t),
		evapiAddr: "127.0.0.1:" + strconv.Itoa(freeTCPPort(t)),
		rpcAddr:   "unix:" + filepath.Join(dir, "rpc.sock"),
	}
	src, err := os.ReadFile("testdata/kamailio.cfg")
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(src), "listen=udp:127.0.0.1:5060",
		"listen=udp:127.0.0.1:"+strconv.Itoa(k.sipPort), 1)
	if err := os.WriteFile(k.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	journal := "none=WAL;" // the db_sqlite modparam needs a value even for PostgreSQL runs
	if sqliteFile != "" {
		journal = sqliteFile + "=WAL;"
	}
	k.args = []string{"-f", k.cfg, "-DD", "-E", "-Y", dir, "-P", filepath.Join(dir, "kamailio.pid"),
		"-m", "64", "-M", "8",
		"-A", fmt.Sprintf("DBURL=%q", dbURL),
		"-A", fmt.Sprintf("SQLITE_JOURNAL=%q", journal),
		"-A", fmt.Sprintf("RPC_SOCK=%q", strings.TrimPrefix(k.rpcAddr, "unix:")),
		"-A", fmt.Sprintf("BINRPC_SOCK=%q", "unix:"+filepath.Join(dir, "ctl.sock")),
		"-A", fmt.Sprintf("EVAPI_BIND=%q", k.evapiAddr),
	}
	t.Cleanup(func() {
		k.stop(t)
		if t.Failed() {
			if b, err := os.ReadFile(k.log); err == nil {
				t.Logf("kamailio log (tail):\n%s", tail(b, 4000))
			}
		}
	})
	return k
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// start runs Kamailio and waits until its RPC socket answers.
func (k *kamailio) start(t *testing.T) time.Duration {
	t.Helper()
	logf, err := os.OpenFile(k.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	os.Remove(strings.TrimPrefix(k.rpcAddr, "unix:"))
	k.cmd = exec.Command("kamailio", k.args...)
	k.cmd.Stdout, k.cmd.Stderr = logf, logf
	k.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	begin := time.Now()
	if err := k.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { k.cmd.Wait(); close(exited) }()
	k.cmd.Cancel = nil
	c, err := newCtlClient(k.rpcAddr)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		_, err := c.call(ctx, "core.uptime")
		cancel()
		if err == nil {
			break
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(k.log)
			t.Fatalf("kamailio exited at startup:\n%s", tail(b, 3000))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("kamailio not ready after 10 s: %v", err)
		}
		time.Sleep(10 * time.Millisecond) // poll interval of a deadline-bounded wait
	}
	return time.Since(begin)
}

// stop kills Kamailio's process group and waits for it to go.
func (k *kamailio) stop(t *testing.T) {
	t.Helper()
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
		time.Sleep(10 * time.Millisecond)
	}
	k.cmd = nil
}

// registered asks Kamailio whether aor has a live binding (ul.lookup).
func (k *kamailio) registered(t *testing.T, aor string) bool {
	t.Helper()
	c, err := newCtlClient(k.rpcAddr)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.call(t.Context(), "ul.lookup", "location", aor)
	var rerr *RPCError
	switch {
	case errors.As(err, &rerr) && strings.Contains(rerr.Message, "not found"):
		return false
	case err != nil:
		t.Fatalf("ul.lookup %s: %v", aor, err)
	}
	return bytes.Contains(res, []byte(`"Contact"`))
}

// sippCmd builds a bounded sipp run of a testdata scenario from local port lport.
func (k *kamailio) sippCmd(t *testing.T, scenario string, lport int, user string, extra ...string) *exec.Cmd {
	t.Helper()
	sf, err := filepath.Abs(filepath.Join("testdata", scenario))
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"127.0.0.1:" + strconv.Itoa(k.sipPort), "-sf", sf, "-i", "127.0.0.1",
		"-p", strconv.Itoa(lport), "-s", user, "-m", "1", "-nostdin",
		"-timeout", "10s", "-timeout_error", "-recv_timeout", "5000", "-trace_err"}
	args = append(args, extra...)
	cmd := exec.CommandContext(t.Context(), "sipp", args...)
	cmd.Dir = t.TempDir()
	cmd.WaitDelay = time.Second
	return cmd
}

// sipp runs a scenario to the end and fails the test unless it succeeds.
func (k *kamailio) sipp(t *testing.T, scenario string, lport int, user string, extra ...string) {
	t.Helper()
	cmd := k.sippCmd(t, scenario, lport, user, extra...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sipp %s as %s: %v\n%s\n%s", scenario, user, err, tail(out, 1500), sippErrors(cmd.Dir))
	}
}

func sippErrors(dir string) string {
	m, _ := filepath.Glob(filepath.Join(dir, "*_errors.log"))
	var b strings.Builder
	for _, f := range m {
		c, _ := os.ReadFile(f)
		b.Write(tail(c, 2000))
	}
	return b.String()
}

// register: sipp REGISTER with a password that must be accepted (401 -> 200).
func (k *kamailio) register(t *testing.T, user, password string, lport int) {
	t.Helper()
	k.sipp(t, "reg_ok.xml", lport, user, "-au", user, "-ap", password)
}

// refused: sipp REGISTER that must be refused (401 -> 403).
func (k *kamailio) refused(t *testing.T, user, password string) {
	t.Helper()
	k.sipp(t, "reg_refused.xml", freeUDPPort(t), user, "-au", user, "-ap", password)
}

func timed(t *testing.T, what string, f func()) {
	t.Helper()
	begin := time.Now()
	f()
	t.Logf("%-44s %6.0f ms", what, float64(time.Since(begin).Microseconds())/1000)
}

// testRegistrarE2E: provision -> REGISTER ok, wrong password refused, rotation, Remove
// (REGISTER refused and the live binding gone), Reconcile across a registrar restart.
func testRegistrarE2E(t *testing.T, provURL, kamURL, sqliteFile string, raw *sql.DB) {
	k := newKamailio(t, kamURL, sqliteFile)
	t.Logf("kamailio ready in %v", k.start(t))
	p := openP(t, Config{DBURL: provURL, CtlAddr: k.rpcAddr})

	timed(t, "provision 1001, REGISTER 401->200", func() {
		if err := p.Upsert(t.Context(), Subscriber{Username: "1001", Password: "S3cret-1001"}); err != nil {
			t.Fatal(err)
		}
		k.register(t, "1001", "S3cret-1001", freeUDPPort(t))
	})
	if !k.registered(t, "1001@pbx.local") {
		t.Fatal("1001 has no binding after a 200 OK")
	}
	timed(t, "wrong password, REGISTER 401->403", func() { k.refused(t, "1001", "wrong-pass") })
	timed(t, "rotate: old refused, new accepted", func() {
		if err := p.Upsert(t.Context(), Subscriber{Username: "1001", Password: "R0tated-1001"}); err != nil {
			t.Fatal(err)
		}
		k.refused(t, "1001", "S3cret-1001")
		k.register(t, "1001", "R0tated-1001", freeUDPPort(t))
	})
	timed(t, "Remove: binding dropped, REGISTER refused", func() {
		if !k.registered(t, "1001@pbx.local") {
			t.Fatal("1001 should be registered before Remove")
		}
		if err := p.Remove(t.Context(), "1001"); err != nil {
			t.Fatal(err)
		}
		if k.registered(t, "1001@pbx.local") {
			t.Fatal("1001 still registered after Remove")
		}
		k.refused(t, "1001", "R0tated-1001")
	})

	// Reconcile while the registrar is down, then restart it.
	k.stop(t)
	if _, err := raw.ExecContext(t.Context(),
		`INSERT INTO subscriber (username, domain, password, ha1, ha1b) VALUES ($1, $2, '', $3, $4)`,
		"7777", dom, HA1("7777", dom, "pw-7777"), HA1B("7777", dom, dom, "pw-7777")); err != nil {
		t.Fatal(err)
	}
	want := []Subscriber{{Username: "1001", Password: "R0tated-1001"}, {Username: "1002", Password: "S3cret-1002"}}
	p2 := openP(t, Config{DBURL: provURL, CtlAddr: k.rpcAddr, RemoveUnknown: true})
	rep, err := p2.Reconcile(t.Context(), want)
	if !errors.Is(err, ErrRegistrar) {
		t.Fatalf("Reconcile with the registrar down = %v, want ErrRegistrar reported", err)
	}
	if w := (Report{Added: 2, Unknown: []string{"7777"}, Removed: []string{"7777"}}); !reportEqual(rep, w) {
		t.Fatalf("report = %+v, want %+v", rep, w)
	}
	t.Logf("kamailio restarted in %v", k.start(t))
	timed(t, "after restart: Reconcile again (no change)", func() {
		rep, err = p2.Reconcile(t.Context(), want)
		if err != nil {
			t.Fatal(err)
		}
		if w := (Report{Unchanged: 2}); !reportEqual(rep, w) {
			t.Fatalf("report = %+v, want %+v", rep, w)
		}
	})
	timed(t, "after restart: 1001, 1002 accepted; 7777 not", func() {
		k.register(t, "1001", "R0tated-1001", freeUDPPort(t))
		k.register(t, "1002", "S3cret-1002", freeUDPPort(t))
		k.refused(t, "7777", "pw-7777")
	})
}

func TestE2ERegistrarSQLite(t *testing.T) {
	dbURL, path, raw := newSQLiteDB(t)
	testRegistrarE2E(t, dbURL, "sqlite://"+path, path, raw)
}

func TestE2ERegistrarPostgres(t *testing.T) {
	provURL, kamURL, raw := newPostgresDatabase(t)
	testRegistrarE2E(t, provURL, kamURL, "", raw)
}

// newPostgresDatabase creates a fresh database in TEST_DATABASE_URL's cluster with the
// shipped Kamailio DDL, and drops it afterwards. It returns the URL for the Provisioner,
// the same in the form Kamailio's db_postgres takes (no query), and a handle.
func newPostgresDatabase(t *testing.T) (provURL, kamURL string, raw *sql.DB) {
	t.Helper()
	base := testDatabaseURL(t)
	name := randName("sip_e2e_")
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	if _, err := admin.ExecContext(t.Context(), `CREATE DATABASE `+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, `DROP DATABASE `+name+` WITH (FORCE)`); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	provURL = u.String()
	raw, err = sql.Open("pgx", provURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	execAll(t, raw, ddl(t, "postgres"))
	if u.Port() == "" {
		u.Host = u.Hostname() + ":5432"
	}

	// Least privilege, as testdata/role.sql documents it: the Provisioner connects as the
	// sync role, Kamailio as the read-only role.
	roURL, syncURL, err := applyRoles(t, raw, name, *u)
	if err != nil {
		t.Logf("least-privilege roles not created (%v): running as the TEST_DATABASE_URL user", err)
		u.RawQuery = ""
		return provURL, u.String(), raw
	}
	return syncURL, roURL, raw
}

// applyRoles runs testdata/role.sql with unique role names and passwords in database db,
// and returns the URLs of the read-only (Kamailio form) and sync roles.
func applyRoles(t *testing.T, raw *sql.DB, db string, u url.URL) (roURL, syncURL string, err error) {
	t.Helper()
	b, err := os.ReadFile("testdata/role.sql")
	if err != nil {
		t.Fatal(err)
	}
	ro, sync := randName("kamro_"), randName("pbxsync_")
	roPass, syncPass := randName("ro"), randName("sync")
	script := strings.NewReplacer("kamailioro", ro, "pbxsync", sync, "change-me-ro", roPass,
		"change-me-sync", syncPass, "DATABASE kamailio", "DATABASE "+db).Replace(string(b))
	var created []string
	t.Cleanup(func() {
		// Runs before the database is dropped (cleanups are last-in first-out) and after
		// Kamailio and the Provisioner are gone: revoke, then drop the roles.
		for _, r := range created {
			raw.Exec(`REVOKE ALL ON ALL TABLES IN SCHEMA public FROM ` + r)
			raw.Exec(`REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM ` + r)
			raw.Exec(`REVOKE ALL ON DATABASE ` + db + ` FROM ` + r)
			if _, err := raw.Exec(`DROP ROLE ` + r); err != nil {
				t.Errorf("drop role %s: %v", r, err)
			}
		}
	})
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
			return "", "", fmt.Errorf("%s: %w", s, err)
		}
		if f := strings.Fields(s); len(f) > 2 && f[0] == "CREATE" && f[1] == "ROLE" {
			created = append(created, f[2])
		}
	}
	su := u
	su.User = url.UserPassword(sync, syncPass)
	syncURL = su.String()
	// The read-only role must not be able to write.
	rou := u
	rou.User = url.UserPassword(ro, roPass)
	rodb, err := sql.Open("pgx", rou.String())
	if err != nil {
		t.Fatal(err)
	}
	defer rodb.Close()
	if _, err := rodb.ExecContext(t.Context(), `DELETE FROM subscriber`); err == nil {
		t.Fatal("the read-only role could write subscriber")
	}
	rou.RawQuery = ""
	return rou.String(), syncURL, nil
}

// TestE2ECallEvents: 1002 calls 1001 (ring, answer, hang up), then 1001 is busy (486);
// the evapi stream must yield ringing/busy/idle for both parties.
func TestE2ECallEvents(t *testing.T) {
	dbURL, path, _ := newSQLiteDB(t)
	k := newKamailio(t, "sqlite://"+path, path)
	k.start(t)
	p := openP(t, Config{DBURL: dbURL, CtlAddr: k.rpcAddr})
	for _, n := range []string{"1001", "1002"} {
		if err := p.Upsert(t.Context(), Subscriber{Username: n, Password: "pw-" + n}); err != nil {
			t.Fatal(err)
		}
	}

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	events := make(chan CallEvent, 100)
	done := make(chan error, 1)
	go func() { done <- ListenCallEvents(ctx, k.evapiAddr, testLogger(t), func(e CallEvent) { events <- e }) }()
	t.Cleanup(func() { cancel(); <-done })
	// A second, raw evapi client keeps the bytes on the wire: they must be netstrings, and
	// SIP_EVAPI_CAPTURE=FILE saves them (testdata/evapi-kamailio.bin came from here).
	rawConn := dialEvapi(t, k)
	captured := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(rawConn)
		captured <- b
	}()
	waitLogCount(t, k, "evapi client connected", 2)

	calleePort, callerPort := freeUDPPort(t), freeUDPPort(t)
	k.register(t, "1001", "pw-1001", calleePort)
	k.register(t, "1002", "pw-1002", callerPort)

	call := func(uas, uac string) {
		callee := k.sippCmd(t, uas, calleePort, "1001")
		var calleeOut bytes.Buffer
		callee.Stdout, callee.Stderr = &calleeOut, &calleeOut
		if err := callee.Start(); err != nil {
			t.Fatal(err)
		}
		k.sipp(t, uac, callerPort, "1002", "-key", "callee", "1001")
		if err := callee.Wait(); err != nil {
			t.Fatalf("callee sipp %s: %v\n%s\n%s", uas, err, tail(calleeOut.Bytes(), 1500), sippErrors(callee.Dir))
		}
	}
	expect := func(want []string) {
		t.Helper()
		var got []string
		for len(got) < len(want) {
			select {
			case e := <-events:
				got = append(got, e.Extension+" "+e.State)
				if e.CallID == "" || e.At.IsZero() {
					t.Errorf("event without call id or time: %+v", e)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("events so far %q, want %q", got, want)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("events %q, want %q", got, want)
		}
	}
	timed(t, "call answered and hung up", func() {
		call("uas.xml", "uac.xml")
		expect([]string{"1002 busy", "1001 ringing", "1001 busy", "1001 idle", "1002 idle"})
	})
	timed(t, "call to a busy phone (486)", func() {
		call("uas_busy.xml", "uac_busy.xml")
		expect([]string{"1002 busy", "1002 idle"})
	})

	rawConn.Close()
	wire := <-captured
	if f := os.Getenv("SIP_EVAPI_CAPTURE"); f != "" {
		if err := os.WriteFile(f, wire, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := bufio.NewReader(bytes.NewReader(wire))
	var kinds []string
	for {
		fr, err := readNetstring(r)
		if err != nil {
			break
		}
		var ev rawEvent
		if err := json.Unmarshal(fr, &ev); err != nil {
			t.Fatalf("frame %q is not JSON: %v", fr, err)
		}
		kinds = append(kinds, ev.Event)
	}
	if w := []string{"call-new", "ringing", "answered", "ended", "call-new", "failed"}; !slices.Equal(kinds, w) {
		t.Fatalf("raw evapi netstrings carry %q, want %q (%d bytes)", kinds, w, len(wire))
	}
}

func readLog(k *kamailio) string {
	b, _ := os.ReadFile(k.log)
	return string(b)
}

// waitLogCount waits (bounded) until Kamailio's log holds n lines with s.
func waitLogCount(t *testing.T, k *kamailio, s string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(readLog(k), s) < n {
		if time.Now().After(deadline) {
			t.Fatalf("kamailio log never showed %q %d times", s, n)
		}
		time.Sleep(20 * time.Millisecond) // poll interval of a deadline-bounded wait
	}
}

// dialEvapi connects to evapi, which may start listening a moment after the RPC socket.
func dialEvapi(t *testing.T, k *kamailio) net.Conn {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", k.evapiAddr)
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("evapi not listening after 10 s: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // poll interval of a deadline-bounded wait
	}
}

// TestE2EBinRPC: Remove through the ctl module's binrpc socket (what kamcmd uses) drops
// the binding just as the jsonrpcs datagram socket does; an error reply is decoded.
func TestE2EBinRPC(t *testing.T) {
	dbURL, path, _ := newSQLiteDB(t)
	k := newKamailio(t, "sqlite://"+path, path)
	k.start(t)
	binrpcAddr := "unix:" + filepath.Join(k.dir, "ctl.sock")
	p := openP(t, Config{DBURL: dbURL, CtlAddr: binrpcAddr})
	if err := p.Upsert(t.Context(), Subscriber{Username: "1005", Password: "pw-1005"}); err != nil {
		t.Fatal(err)
	}
	k.register(t, "1005", "pw-1005", freeUDPPort(t))
	if !k.registered(t, "1005@pbx.local") {
		t.Fatal("1005 not registered")
	}
	if err := p.Remove(t.Context(), "1005"); err != nil {
		t.Fatal(err)
	}
	if k.registered(t, "1005@pbx.local") {
		t.Fatal("1005 still registered after Remove over binrpc")
	}
	k.refused(t, "1005", "pw-1005")

	c, err := newCtlClient(binrpcAddr)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.call(t.Context(), "no.such.method")
	var rerr *RPCError
	if !errors.As(err, &rerr) || rerr.Code == 0 || rerr.Message == "" {
		t.Fatalf("unknown method over binrpc = %v, want an *RPCError with code and message", err)
	}
	t.Logf("binrpc error reply: %v", rerr)
	if _, err := c.call(t.Context(), "core.uptime"); err != nil {
		t.Fatal(err)
	}
}
