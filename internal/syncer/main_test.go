package syncer_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/graph"
	"github.com/switchboard-pbx/switchboard/internal/sim"
)

// TestMain lets this test binary double as a simulated tenant in a child
// process (SB_SIM_CHILD=users,latency), so that benchmarks measure the sync
// process's memory without the tenant's.
func TestMain(m *testing.M) {
	if cfg := os.Getenv("SB_SIM_CHILD"); cfg != "" {
		serveSimChild(cfg)
		return
	}
	os.Exit(m.Run())
}

func serveSimChild(cfg string) {
	users, lat, _ := strings.Cut(cfg, ",")
	n, _ := strconv.Atoi(users)
	d, _ := time.ParseDuration(lat)
	tn, err := sim.New(sim.Config{TenantID: tenantID, ClientID: clientID, ClientSecret: clientSecret, Users: n, Seed: 7, Latency: d})
	if err != nil {
		fmt.Println("SIM-ERROR", err)
		os.Exit(1)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("SIM-ERROR", err)
		os.Exit(1)
	}
	go func() { _ = http.Serve(l, tn.Handler()) }()
	fmt.Println("SIM-URL http://" + l.Addr().String())
	// Serve until the parent closes stdin.
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
	}
	os.Exit(0)
}

// simProcess starts a simulated tenant in a child process and returns its URL
// and a Graph client for it.
func simProcess(tb testing.TB, users int, latency time.Duration) (string, *graph.Client) {
	tb.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), fmt.Sprintf("SB_SIM_CHILD=%d,%s", users, latency))
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { stdin.Close(); _ = cmd.Wait() })
	sc := bufio.NewScanner(out)
	var base string
	for sc.Scan() {
		if u, ok := strings.CutPrefix(sc.Text(), "SIM-URL "); ok {
			base = u
			break
		}
		if strings.HasPrefix(sc.Text(), "SIM-ERROR") {
			tb.Fatal(sc.Text())
		}
	}
	if base == "" {
		tb.Fatal("the simulated tenant did not start")
	}
	go func() {
		for sc.Scan() {
		}
	}()
	c, err := graph.New(graph.Config{GraphURL: base, LoginURL: base, TenantID: tenantID, ClientID: clientID, ClientSecret: clientSecret})
	if err != nil {
		tb.Fatal(err)
	}
	return base, c
}

// resetPeakRSS resets the kernel's peak-RSS mark of this process (Linux).
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// peakRSS returns VmHWM, the peak resident set size since the last reset, in bytes.
func peakRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
