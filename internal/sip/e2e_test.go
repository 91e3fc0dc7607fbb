//go:build e2e

package sip

// End-to-end tests against a real Kamailio 5.6 and sipp (bash .ci/install-sip.sh):
//
//	go test -tags e2e -run E2E -v ./internal/sip/...
//
// Each test starts its own Kamailio (package siptest: testdata/kamailio.cfg on free loopback
// ports in its own temp folder) and kills it (process group) on cleanup.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/sip/siptest"
)

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// registered asks Kamailio whether user@pbx.local has a live binding (ul.lookup).
func registered(t *testing.T, k *siptest.Kamailio, user string) bool {
	t.Helper()
	return len(k.Contacts(t, user)) > 0
}

// sippCmd builds a bounded sipp run of a testdata scenario from local port lport.
func sippCmd(t *testing.T, k *siptest.Kamailio, scenario string, lport int, user string, extra ...string) *exec.Cmd {
	t.Helper()
	sf, err := filepath.Abs(filepath.Join("testdata", scenario))
	if err != nil {
		t.Fatal(err)
	}
	args := []string{k.SIPAddr, "-sf", sf, "-i", "127.0.0.1",
		"-p", fmt.Sprint(lport), "-s", user, "-m", "1", "-nostdin",
		"-timeout", "10s", "-timeout_error", "-recv_timeout", "5000", "-trace_err"}
	args = append(args, extra...)
	cmd := exec.CommandContext(t.Context(), "sipp", args...)
	cmd.Dir = t.TempDir()
	cmd.WaitDelay = time.Second
	return cmd
}

// sipp runs a scenario to the end and fails the test unless it succeeds.
func sipp(t *testing.T, k *siptest.Kamailio, scenario string, lport int, user string, extra ...string) {
	t.Helper()
	cmd := sippCmd(t, k, scenario, lport, user, extra...)
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

// register: sipp REGISTER with a password that must be accepted (401 -> 200), from lport.
func register(t *testing.T, k *siptest.Kamailio, user, password string, lport int) {
	t.Helper()
	if code := k.RegisterFrom(t, user, password, lport); code != 200 {
		t.Fatalf("REGISTER %s = %d, want 200", user, code)
	}
}

// refused: sipp REGISTER that must be refused (401 -> 403).
func refused(t *testing.T, k *siptest.Kamailio, user, password string) {
	t.Helper()
	if code := k.Register(t, user, password); code != 403 {
		t.Fatalf("REGISTER %s = %d, want 403", user, code)
	}
}

func timed(t *testing.T, what string, f func()) {
	t.Helper()
	begin := time.Now()
	f()
	t.Logf("%-44s %6.0f ms", what, float64(time.Since(begin).Microseconds())/1000)
}

// testRegistrarE2E: provision -> REGISTER ok, wrong password refused, rotation, Remove
// (REGISTER refused and the live binding gone), Reconcile across a registrar restart.
func testRegistrarE2E(t *testing.T, db *siptest.DB) {
	var k *siptest.Kamailio
	timed(t, "kamailio started and ready", func() { k = siptest.Start(t, db) })
	provURL, raw := db.URL, db.Raw
	p := openP(t, Config{DBURL: provURL, CtlAddr: k.CtlAddr})

	timed(t, "provision 1001, REGISTER 401->200", func() {
		if err := p.Upsert(t.Context(), Subscriber{Username: "1001", Password: "S3cret-1001"}); err != nil {
			t.Fatal(err)
		}
		register(t, k, "1001", "S3cret-1001", siptest.FreeUDPPort(t))
	})
	if !registered(t, k, "1001") {
		t.Fatal("1001 has no binding after a 200 OK")
	}
	timed(t, "wrong password, REGISTER 401->403", func() { refused(t, k, "1001", "wrong-pass") })
	timed(t, "rotate: old refused, new accepted", func() {
		if err := p.Upsert(t.Context(), Subscriber{Username: "1001", Password: "R0tated-1001"}); err != nil {
			t.Fatal(err)
		}
		refused(t, k, "1001", "S3cret-1001")
		register(t, k, "1001", "R0tated-1001", siptest.FreeUDPPort(t))
	})
	timed(t, "Remove: binding dropped, REGISTER refused", func() {
		if !registered(t, k, "1001") {
			t.Fatal("1001 should be registered before Remove")
		}
		if err := p.Remove(t.Context(), "1001"); err != nil {
			t.Fatal(err)
		}
		if registered(t, k, "1001") {
			t.Fatal("1001 still registered after Remove")
		}
		refused(t, k, "1001", "R0tated-1001")
	})

	// Reconcile while the registrar is down, then restart it.
	k.Stop()
	if _, err := raw.ExecContext(t.Context(),
		`INSERT INTO subscriber (username, domain, password, ha1, ha1b) VALUES ($1, $2, '', $3, $4)`,
		"7777", dom, HA1("7777", dom, "pw-7777"), HA1B("7777", dom, dom, "pw-7777")); err != nil {
		t.Fatal(err)
	}
	want := []Subscriber{{Username: "1001", Password: "R0tated-1001"}, {Username: "1002", Password: "S3cret-1002"}}
	p2 := openP(t, Config{DBURL: provURL, CtlAddr: k.CtlAddr, RemoveUnknown: true})
	rep, err := p2.Reconcile(t.Context(), want)
	if !errors.Is(err, ErrRegistrar) {
		t.Fatalf("Reconcile with the registrar down = %v, want ErrRegistrar reported", err)
	}
	if w := (Report{Added: 2, Unknown: []string{"7777"}, Removed: []string{"7777"}}); !reportEqual(rep, w) {
		t.Fatalf("report = %+v, want %+v", rep, w)
	}
	t.Logf("kamailio restarted in %v", k.Restart())
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
		register(t, k, "1001", "R0tated-1001", siptest.FreeUDPPort(t))
		register(t, k, "1002", "S3cret-1002", siptest.FreeUDPPort(t))
		refused(t, k, "7777", "pw-7777")
	})
}

func TestE2ERegistrarSQLite(t *testing.T) { testRegistrarE2E(t, siptest.NewSQLiteDB(t)) }

// The PostgreSQL variant runs with least privilege, as testdata/role.sql documents it: the
// Provisioner connects as the sync role, Kamailio as the read-only role.
func TestE2ERegistrarPostgres(t *testing.T) { testRegistrarE2E(t, siptest.NewPostgresDB(t)) }

// TestE2ECallEvents: 1002 calls 1001 (ring, answer, hang up), then 1001 is busy (486);
// the evapi stream must yield ringing/busy/idle for both parties.
func TestE2ECallEvents(t *testing.T) {
	db := siptest.NewSQLiteDB(t)
	k := siptest.Start(t, db)
	p := openP(t, Config{DBURL: db.URL, CtlAddr: k.CtlAddr})
	for _, n := range []string{"1001", "1002"} {
		if err := p.Upsert(t.Context(), Subscriber{Username: n, Password: "pw-" + n}); err != nil {
			t.Fatal(err)
		}
	}

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	events := make(chan CallEvent, 100)
	done := make(chan error, 1)
	go func() { done <- ListenCallEvents(ctx, k.EvapiAddr, testLogger(t), func(e CallEvent) { events <- e }) }()
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

	calleePort, callerPort := siptest.FreeUDPPort(t), siptest.FreeUDPPort(t)
	register(t, k, "1001", "pw-1001", calleePort)
	register(t, k, "1002", "pw-1002", callerPort)

	call := func(uas, uac string) {
		callee := sippCmd(t, k, uas, calleePort, "1001")
		var calleeOut bytes.Buffer
		callee.Stdout, callee.Stderr = &calleeOut, &calleeOut
		if err := callee.Start(); err != nil {
			t.Fatal(err)
		}
		sipp(t, k, uac, callerPort, "1002", "-key", "callee", "1001")
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

// waitLogCount waits (bounded) until Kamailio's log holds n lines with s.
func waitLogCount(t *testing.T, k *siptest.Kamailio, s string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(k.Log(), s) < n {
		if time.Now().After(deadline) {
			t.Fatalf("kamailio log never showed %q %d times", s, n)
		}
		time.Sleep(20 * time.Millisecond) // poll interval of a deadline-bounded wait
	}
}

// dialEvapi connects to evapi, which may start listening a moment after the RPC socket.
func dialEvapi(t *testing.T, k *siptest.Kamailio) net.Conn {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", k.EvapiAddr)
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
	db := siptest.NewSQLiteDB(t)
	k := siptest.Start(t, db)
	binrpcAddr := k.BinRPCAddr
	p := openP(t, Config{DBURL: db.URL, CtlAddr: binrpcAddr})
	if err := p.Upsert(t.Context(), Subscriber{Username: "1005", Password: "pw-1005"}); err != nil {
		t.Fatal(err)
	}
	register(t, k, "1005", "pw-1005", siptest.FreeUDPPort(t))
	if !registered(t, k, "1005") {
		t.Fatal("1005 not registered")
	}
	if err := p.Remove(t.Context(), "1005"); err != nil {
		t.Fatal(err)
	}
	if registered(t, k, "1005") {
		t.Fatal("1005 still registered after Remove over binrpc")
	}
	refused(t, k, "1005", "pw-1005")

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
