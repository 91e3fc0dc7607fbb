package syncer_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/graph"
	"github.com/switchboard-pbx/switchboard/internal/pbx"
	"github.com/switchboard-pbx/switchboard/internal/secret"
	"github.com/switchboard-pbx/switchboard/internal/syncer"
)

const killMarker = "SYNC-APPLYING"

// TestKillMidApply starts a child process (this test binary) that syncs 600
// users in batches of 50 against the simulated tenant, SIGKILLs it while it
// applies, and checks that a fresh run completes the work with no duplicates.
func TestKillMidApply(t *testing.T) {
	if os.Getenv("SB_KILL_CHILD") == "1" {
		killChild(t)
		return
	}
	backends(t, func(t *testing.T, db func(testing.TB) string) {
		dbURL := db(t)
		if dbURL == "" {
			dbURL = "sqlite:" + t.TempDir() + "/kill.db"
		}
		tn, srv, c := newTenant(t, opts{users: 600})
		_ = tn
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillMidApply$", "-test.v")
		cmd.Env = append(os.Environ(), "SB_KILL_CHILD=1", "SB_KILL_DB="+dbURL, "SB_KILL_SIM="+srv.URL)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = cmd.Stdout
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killed := make(chan struct{})
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if strings.Contains(sc.Text(), killMarker) {
					_ = cmd.Process.Signal(syscall.SIGKILL)
					close(killed)
					break
				}
			}
			for sc.Scan() {
			}
		}()
		select {
		case <-killed:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatal("the child never reached the apply step")
		}
		_ = cmd.Wait()
		if cmd.ProcessState.Success() {
			t.Fatal("the child finished instead of being killed")
		}

		// A fresh process (this one) opens the same database and syncs again.
		st := openStore(t, dbURL, 0)
		keys, _ := secret.NewKeyring(secret.NewKey())
		eng := &syncer.Engine{Store: st, PBX: &pbx.Service{Store: st, Keys: keys, Logger: testLogger(t)}, Graph: &source{c: c}, Logger: testLogger(t), LeaseTTL: 300 * time.Millisecond}
		partial := 0
		_ = st.ListAllExtensions(t.Context(), "default", func(e *directory.Extension) error { partial++; return nil })
		if partial == 0 || partial >= 600 || partial%50 != 0 {
			t.Fatalf("after the kill %d extensions exist; want whole batches of 50, fewer than 600", partial)
		}
		r, err := eng.Run(t.Context(), "default", syncer.RunOptions{})
		if err != nil || r.State != syncer.StateSucceeded {
			t.Fatalf("fresh run: %v %+v", err, r)
		}
		if r.Created != 600-partial || r.Unchanged != partial {
			t.Fatalf("fresh run created %d, unchanged %d; %d existed", r.Created, r.Unchanged, partial)
		}
		seen := map[string]bool{}
		n := 0
		_ = st.ListAllExtensions(t.Context(), "default", func(e *directory.Extension) error {
			n++
			if seen[e.EntraID] {
				t.Errorf("duplicate extension for %s", e.EntraID)
			}
			seen[e.EntraID] = true
			return nil
		})
		if n != 600 {
			t.Fatalf("%d extensions, want 600", n)
		}
		runs, _ := eng.ListRuns(t.Context(), "default")
		var interrupted bool
		for _, x := range runs {
			if x.Trigger == syncer.TriggerInitial && x.State == syncer.StateFailed && strings.Contains(x.Error, "interrupted") {
				interrupted = true
			}
		}
		if !interrupted {
			t.Fatalf("the killed run is not reported as interrupted: %+v", runs)
		}
		if r.Notes == nil || time.Since(r.StartedAt) > time.Minute {
			t.Logf("fresh run notes: %v", r.Notes)
		}
	})
}

// killChild is the child side: sync until killed.
func killChild(t *testing.T) {
	st := openStore(t, os.Getenv("SB_KILL_DB"), 0)
	c, err := graph.New(graph.Config{GraphURL: os.Getenv("SB_KILL_SIM"), LoginURL: os.Getenv("SB_KILL_SIM"), TenantID: tenantID, ClientID: clientID, ClientSecret: clientSecret})
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := secret.NewKeyring(secret.NewKey())
	eng := &syncer.Engine{Store: st, PBX: &pbx.Service{Store: st, Keys: keys, Logger: testLogger(t)}, Graph: &source{c: c}, ApplyBatch: 50, LeaseTTL: 300 * time.Millisecond}
	eng.BeforeApplyBatch = func(_ *syncer.Run, batch int) {
		if batch == 3 {
			fmt.Println(killMarker)
			os.Stdout.Sync()
			select {} // the parent kills this process here
		}
	}
	s := syncer.DefaultUserSettings()
	s.Enabled = true
	if _, _, err := eng.SaveUserSettings(context.Background(), "default", "test", s); err != nil {
		t.Fatal(err)
	}
	eng.Wait()
	t.Fatal("the sync finished before the parent killed this process")
}
