//go:build e2e

package app_test

// The first "Done when" of issue 9, through the whole product: a real call through a real
// Kamailio 5.6 (sipp as both phones, registered as synced extensions), Kamailio's dialog
// events over evapi into the service (--kamailio-events), and two-way presence writing the
// callee's Teams presence in the simulated tenant.
//
//	bash .ci/install-sip.sh && eval "$(bash .ci/start-postgres.sh)"
//	go test -count=1 -tags e2e -run CallPresence -v ./internal/app/
//
// Helpers (step, poll, e2eClient, the views, the tenant constants) are in sip_e2e_test.go.

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/apitest"
	"github.com/switchboard-pbx/switchboard/internal/app"
	"github.com/switchboard-pbx/switchboard/internal/config"
	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/integration"
	"github.com/switchboard-pbx/switchboard/internal/sim"
	"github.com/switchboard-pbx/switchboard/internal/sip/siptest"
)

// The phases of the call, long enough for 10 ms polling to see each state several times.
const (
	ringFor = 2 * time.Second // the callee's phone rings this long before it answers
	talkFor = 2 * time.Second // the caller hangs up this long after its ACK
)

func TestCallPresenceE2E(t *testing.T) {
	for _, tc := range []struct {
		name  string
		newDB func(testing.TB) *siptest.DB
	}{{"SQLite", siptest.NewSQLiteDB}, {"Postgres", siptest.NewPostgresDB}} {
		t.Run(tc.name, func(t *testing.T) {
			begin := time.Now()
			testCallPresence(t, tc.newDB(t))
			t.Logf("%s variant: %v in all", tc.name, time.Since(begin).Round(time.Millisecond))
		})
	}
}

// callStack is Kamailio, the simulated tenant and the service wired to both.
type callStack struct {
	k      *siptest.Kamailio
	tenant *sim.Tenant
	a      *app.App
	api    e2eClient
}

// startCallStack starts Kamailio on kdb, a 40-user tenant and the service with
// --kamailio-db/-ctl/-events, waits until the service's evapi client is connected,
// connects the integration and runs the initial user sync. Cleanup stops everything.
func startCallStack(t *testing.T, kdb *siptest.DB) callStack {
	ctx := t.Context()
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var s callStack
	step(t, "start kamailio", func() { s.k = siptest.Start(t, kdb) })

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() }) // Serve closes it too; this covers an early failure
	base := "http://" + ln.Addr().String()

	step(t, "start the simulated tenant (40 users)", func() {
		s.tenant, err = sim.New(sim.Config{TenantID: e2eTenantID, ClientID: e2eClientID, ClientSecret: e2eClientSecret,
			Users: 40, Groups: 3, Seed: 9, RedirectURIs: []string{base + integration.CallbackPath},
			Logger: logger.With("component", "sim")})
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Cleanup(s.tenant.Close)
	simSrv := httptest.NewServer(s.tenant.Handler())
	t.Cleanup(simSrv.Close)

	dir := t.TempDir()
	cfg := config.Defaults()
	cfg.DataDir = dir
	cfg.DB = "sqlite:" + filepath.Join(dir, "db", "switchboard.db")
	cfg.PublicURL = base
	cfg.GraphURL, cfg.LoginURL = simSrv.URL, simSrv.URL
	cfg.AdminToken = e2eAdminToken
	cfg.KamailioDB = kdb.URL
	cfg.SIPDomain = siptest.Domain
	cfg.KamailioCtl = s.k.CtlAddr
	cfg.KamailioEvents = s.k.EvapiAddr
	cfg.ShutdownTimeout = 5 * time.Second
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}

	step(t, "app.New, Serve, evapi client connected", func() {
		s.a, err = app.New(ctx, cfg, logger)
		if err != nil {
			t.Fatal(err)
		}
		serveCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		served := make(chan error, 1)
		go func() { served <- s.a.Serve(serveCtx, ln) }()
		t.Cleanup(func() { // runs before Kamailio stops and the databases go
			cancel()
			select {
			case err := <-served:
				if err != nil {
					t.Errorf("Serve: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Serve did not return 10 s after cancel")
			}
			s.a.Close()
		})
		// evapi drops events while no client is connected: the call must wait for ours.
		poll(t, 10*time.Second, "the service's evapi connection", func() bool {
			return strings.Contains(s.k.Log(), "evapi client connected")
		})
	})
	s.api = e2eClient{t: t, base: base, http: &http.Client{Timeout: 40 * time.Second}}

	step(t, "connect the integration to the sim", func() {
		// The sim's authorize endpoint signs in at once and redirects to the callback.
		apitest.ConnectSim(t, s.a.Integration, directory.DefaultPBX, integration.ConnectInput{
			ClientID: e2eClientID, TenantID: e2eTenantID, ClientSecret: e2eClientSecret})
	})

	step(t, "user sync (all users), initial sync", func() {
		var set struct {
			InitialRunID string `json:"initialRunId"`
		}
		s.api.must(200, "PUT", "/api/v1/integration/user-sync", map[string]any{
			"enabled": true, "range": "all", "userTypes": []string{}, "groupIds": []string{}, "userIds": []string{},
			"numbering":  map[string]any{"mode": "auto", "start": "1000"},
			"deleteWhen": []string{"deleted"},
		}, &set)
		if set.InitialRunID == "" {
			t.Fatal("saving the settings started no initial sync")
		}
		var run runView
		poll(t, 20*time.Second, "the initial sync", func() bool {
			s.api.must(200, "GET", "/api/v1/sync/runs/"+set.InitialRunID, nil, &run)
			return run.State != "running"
		})
		if run.State != "succeeded" || run.Created == 0 {
			t.Fatalf("initial sync: %+v", run)
		}
		t.Logf("initial sync: %d extensions created", run.Created)
	})
	return s
}

// callView is what the test watches of an extension.
type callView struct {
	CallState string `json:"callState"`
	Presence  string `json:"presence"`
}

func testCallPresence(t *testing.T, kdb *siptest.DB) {
	s := startCallStack(t, kdb)
	k, tenant, api := s.k, s.tenant, s.api

	// Caller and callee: synced extensions of two enabled users (not the Global Administrator).
	var exts struct {
		Items []extView `json:"items"`
	}
	api.must(200, "GET", "/api/v1/extensions?source=entra&limit=1000", nil, &exts)
	var picked []extView
	for _, e := range exts.Items {
		if u, ok := tenant.User(e.EntraID); ok && u.AccountEnabled && !u.GlobalAdmin && len(picked) < 2 {
			picked = append(picked, e)
		}
	}
	if len(picked) < 2 {
		t.Fatalf("fewer than 2 synced extensions of enabled users among %d", len(exts.Items))
	}
	caller, callee := picked[0], picked[1]
	t.Logf("caller: extension %s (Entra %s); callee: extension %s (Entra %s)", caller.Number, caller.EntraID, callee.Number, callee.EntraID)

	// The callee is Away in Teams (below Busy, so our Busy session shows); the caller keeps
	// whatever the tenant generated, and its presence sync stays off.
	if err := tenant.SetTeamsPresence(callee.EntraID, "Away", "Away"); err != nil {
		t.Fatal(err)
	}
	teams := func(userID string) string {
		av, act, ok := tenant.Presence(userID)
		if !ok {
			t.Fatalf("the sim has no user %s", userID)
		}
		return av + "/" + act
	}
	const inACall, away, own = "Busy/InACall", "Away/Away", "Available/Available"
	callerOwn := teams(caller.EntraID)

	step(t, "two-way presence sync on, enabled for the callee only", func() {
		var set struct {
			Enabled   bool   `json:"enabled"`
			Direction string `json:"direction"`
		}
		api.must(200, "PUT", "/api/v1/integration/presence-sync", map[string]any{"enabled": true, "direction": "two-way"}, &set)
		if !set.Enabled || set.Direction != "two-way" {
			t.Fatalf("presence-sync settings after PUT: %+v", set)
		}
		var es struct {
			Enabled bool `json:"enabled"`
		}
		api.must(200, "PUT", "/api/v1/extensions/"+callee.ID+"/presence-sync", map[string]any{"enabled": true}, &es)
		if !es.Enabled {
			t.Fatal("the callee's presence sync is not enabled after PUT")
		}
		// One-way works before the call: Teams Away reaches the extension (default: available).
		poll(t, 15*time.Second, "the callee's extension presence from Teams (away)", func() bool {
			return extState(t, api, callee.ID).Presence == string(directory.PresenceAway)
		})
	})

	calleePort, callerPort := siptest.FreeUDPPort(t), siptest.FreeUDPPort(t)
	step(t, "REGISTER caller and callee with their SIP credentials", func() {
		for _, r := range []struct {
			e    extView
			port int
		}{{callee, calleePort}, {caller, callerPort}} {
			var c sipCreds
			api.must(200, "GET", "/api/v1/extensions/"+r.e.ID+"/sip-credentials", nil, &c)
			if code := k.RegisterFrom(t, c.Username, c.Password, r.port); code != 200 {
				t.Fatalf("REGISTER %s = %d, want 200", c.Username, code)
			}
			if got := k.Contacts(t, c.Username); len(got) != 1 || !strings.Contains(got[0], ":"+strconv.Itoa(r.port)) {
				t.Fatalf("bindings of %s: %q, want one on port %d", c.Username, got, r.port)
			}
		}
	})
	if v := extState(t, api, callee.ID); v.CallState != string(directory.CallIdle) || teams(callee.EntraID) != away {
		t.Fatalf("before the call: callee %+v, Teams %s", v, teams(callee.EntraID))
	}

	// The phones: the callee answers after ringFor, the caller hangs up talkFor after its ACK.
	uas := startSipp(t, k, "uas", fmt.Sprintf(uasScenario, ringFor.Milliseconds()), calleePort, callee.Number)
	poll(t, 5*time.Second, "the callee's sipp listening", func() bool { // the port is taken once it listens
		c, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(calleePort))
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	uac := startSipp(t, k, "uac", fmt.Sprintf(uacScenario, talkFor.Milliseconds()), callerPort, caller.Number,
		"-key", "callee", callee.Number)
	t0 := uac.started
	since := func() time.Duration { return time.Since(t0).Round(time.Millisecond) }

	// seen records each change of (callee call state and presence, callee Teams, caller call state).
	var seen []string
	last := ""
	watch := func(what string, timeout time.Duration, cond func(callee, caller callView, teams string) bool) time.Duration {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for {
			tm := teams(callee.EntraID) // Teams first: a Busy seen here happened no later than the state read next
			ce, cr := extState(t, api, callee.ID), extState(t, api, caller.ID)
			if obs := ce.CallState + " " + ce.Presence + " " + tm + " caller:" + cr.CallState; obs != last {
				last = obs
				seen = append(seen, fmt.Sprintf("%6v %s", since(), obs))
			}
			if cond(ce, cr, tm) {
				return since()
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out after %v waiting for %s; seen:\n%s\nuas: %s\nuac: %s", timeout, what,
					strings.Join(seen, "\n"), uas.report(), uac.report())
			}
			select {
			case <-t.Context().Done():
				t.Fatal(t.Context().Err())
			case <-time.After(10 * time.Millisecond): // poll interval of a deadline-bounded wait
			}
		}
	}

	// Ringing: the callee's call state, then Teams Busy/InACall while it still rings.
	tRinging := watch("the callee ringing", 5*time.Second, func(ce, _ callView, _ string) bool {
		return ce.CallState == string(directory.CallRinging)
	})
	tBusyTeams := watch("Teams Busy/InACall while ringing", ringFor, func(ce, _ callView, tm string) bool {
		if ce.CallState != string(directory.CallRinging) {
			t.Fatalf("the callee left ringing (%s) before Teams showed %s (Teams %s)", ce.CallState, inACall, tm)
		}
		return tm == inACall
	})
	// Answered: the callee busy, Teams stays in a call; the caller is busy too.
	tAnswered := watch("the callee answered (busy)", ringFor+3*time.Second, func(ce, cr callView, tm string) bool {
		if tm != inACall {
			t.Fatalf("Teams dropped to %s while the callee was %s", tm, ce.CallState)
		}
		return ce.CallState == string(directory.CallBusy) && cr.CallState == string(directory.CallBusy)
	})
	if got := teams(caller.EntraID); got != callerOwn {
		t.Fatalf("the caller's Teams presence moved to %s (was %s) though its presence sync is off", got, callerOwn)
	}
	// Mid-call the user turns Available in Teams: our Busy session still wins in Teams, and
	// the extension keeps its presence (away) while the call lasts.
	if err := tenant.SetTeamsPresence(callee.EntraID, "Available", "Available"); err != nil {
		t.Fatal(err)
	}
	// Hang-up: idle, then our session cleared and the user's own (latest) presence back.
	tIdle := watch("the callee idle after the hang-up", talkFor+5*time.Second, func(ce, cr callView, tm string) bool {
		if ce.CallState != string(directory.CallIdle) && (tm != inACall || ce.Presence != string(directory.PresenceAway)) {
			t.Fatalf("during the call: Teams %s, extension presence %s; want %s and away", tm, ce.Presence, inACall)
		}
		return ce.CallState == string(directory.CallIdle) && cr.CallState == string(directory.CallIdle)
	})
	tCleared := watch("Teams back to "+own, 3*time.Second, func(ce, _ callView, tm string) bool {
		return tm == own
	})
	tExt := watch("the extension's presence from the latest Teams state", 3*time.Second, func(ce, _ callView, tm string) bool {
		if tm != own {
			t.Fatalf("Teams moved to %s after the call", tm)
		}
		return ce.Presence == string(directory.PresenceAvailable)
	})
	for _, p := range []*sippProc{uas, uac} {
		if err := p.wait(10 * time.Second); err != nil {
			t.Fatalf("sipp %s: %v\n%s", p.name, err, p.report())
		}
	}
	if got := teams(caller.EntraID); got != callerOwn {
		t.Fatalf("the caller's Teams presence is %s after the call, was %s", got, callerOwn)
	}
	if v := extState(t, api, callee.ID); v.Presence != string(directory.PresenceAvailable) || v.CallState != string(directory.CallIdle) {
		t.Fatalf("the callee's extension after the call: %+v, want available and idle", v)
	}
	t.Logf("observed (time since the INVITE; callee call state and presence, callee Teams, caller call state):\n%s", strings.Join(seen, "\n"))
	t.Logf("ringing at %v; Teams %s at %v (+%v); answered at %v; idle at %v; Teams %s at %v (+%v); extension available at %v (+%v)",
		tRinging, inACall, tBusyTeams, tBusyTeams-tRinging, tAnswered, tIdle, own, tCleared, tCleared-tIdle, tExt, tExt-tIdle)
}

// extState reads an extension's call state and presence through the admin API.
func extState(t *testing.T, api e2eClient, id string) callView {
	t.Helper()
	var v callView
	api.must(200, "GET", "/api/v1/extensions/"+id, nil, &v)
	return v
}

// sippProc is a sipp phone running in the background.
type sippProc struct {
	name    string
	dir     string
	started time.Time
	done    chan struct{}
	err     error
	out     bytes.Buffer // read only after done
}

// startSipp runs scenario (XML) from local UDP port port as user against Kamailio, bounded
// to 30 s; cleanup kills it if it still runs.
func startSipp(t *testing.T, k *siptest.Kamailio, name, scenario string, port int, user string, extra ...string) *sippProc {
	t.Helper()
	p := &sippProc{name: name, dir: t.TempDir(), done: make(chan struct{})}
	sf := filepath.Join(p.dir, name+".xml")
	if err := os.WriteFile(sf, []byte(scenario), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 30*time.Second)
	args := append([]string{k.SIPAddr, "-sf", sf, "-i", "127.0.0.1", "-p", strconv.Itoa(port), "-s", user,
		"-m", "1", "-nostdin", "-timeout", "20s", "-timeout_error", "-recv_timeout", "8000", "-trace_err"}, extra...)
	cmd := exec.CommandContext(ctx, "sipp", args...)
	cmd.Dir = p.dir
	cmd.Stdout, cmd.Stderr = &p.out, &p.out
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("sipp %s: %v", name, err)
	}
	p.started = time.Now()
	go func() {
		p.err = cmd.Wait()
		cancel()
		close(p.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-p.done // bounded: the kill, then WaitDelay
	})
	return p
}

// wait waits (bounded) for sipp to end and returns its error.
func (p *sippProc) wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("still running after %v", timeout)
	}
}

// report returns sipp's exit and the tail of its output and error log, or "running".
func (p *sippProc) report() string {
	select {
	case <-p.done:
	default:
		return "running"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "exit %v\n%s", p.err, tailString(p.out.String(), 1500))
	if m, _ := filepath.Glob(filepath.Join(p.dir, "*_errors.log")); len(m) > 0 {
		for _, f := range m {
			c, _ := os.ReadFile(f)
			b.WriteString(tailString(string(c), 1500))
		}
	}
	return b.String()
}

func tailString(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// uasScenario is the called phone: 180 Ringing, %d ms later 200 OK with SDP, then it waits
// for the ACK and the BYE (Record-Route echoed so in-dialog requests go through Kamailio).
var uasScenario = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="uas ring then answer">
  <recv request="INVITE" crlf="true"/>
  <send><![CDATA[
      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Record-Route:]
      Contact: <sip:[service]@[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0

    ]]></send>
  <pause milliseconds="%d"/>
  <send retrans="500"><![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Record-Route:]
      Contact: <sip:[service]@[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000

    ]]></send>
  <recv request="ACK" crlf="true"/>
  <recv request="BYE"/>
  <send><![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]></send>
</scenario>
`

// uacScenario is the calling phone ([service] calls [callee], -key callee NUMBER): INVITE,
// 200, ACK, %d ms of talk, BYE through the recorded route.
var uacScenario = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="uac call then hang up">
  <send retrans="500"><![CDATA[
      INVITE sip:[callee]@` + siptest.Domain + ` SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      Max-Forwards: 70
      From: <sip:[service]@` + siptest.Domain + `>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[callee]@` + siptest.Domain + `>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:[service]@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000

    ]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rrs="true"/>
  <send><![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      Max-Forwards: 70
      From: <sip:[service]@` + siptest.Domain + `>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[callee]@` + siptest.Domain + `>[peer_tag_param]
      [routes]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: <sip:[service]@[local_ip]:[local_port]>
      Content-Length: 0

    ]]></send>
  <pause milliseconds="%d"/>
  <send retrans="500"><![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      Max-Forwards: 70
      From: <sip:[service]@` + siptest.Domain + `>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[callee]@` + siptest.Domain + `>[peer_tag_param]
      [routes]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Contact: <sip:[service]@[local_ip]:[local_port]>
      Content-Length: 0

    ]]></send>
  <recv response="200"/>
</scenario>
`
