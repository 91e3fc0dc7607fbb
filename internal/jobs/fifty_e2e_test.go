//go:build e2e

package jobs_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/mail/mailtest"
	"github.com/switchboard-pbx/switchboard/internal/syncer"
)

// Two instances (two processes: engine + River client each) on one
// PostgreSQL database sync 50 PBXs, one trigger each; instance A is
// SIGKILLed while it has sync jobs running. Every PBX ends with exactly one
// successful run for its trigger and a correct directory: one extension per
// user of its tenant, no duplicates. Instance B is the River leader, so its
// reaper replaces A's orphaned jobs as soon as their leases expire. Takes
// about 35 s, most of it waiting for River's rescuer to finalize the orphans.
func TestFiftyPBXsTwoInstancesKillOne(t *testing.T) {
	const (
		npbx     = 50
		perPBX   = 40 // users of the simulated tenant; every PBX syncs all of them
		latency  = 20 * time.Millisecond
		leaseTTL = 1500 * time.Millisecond
	)
	start := time.Now()
	db := pgDatabase(t)
	simURL := startSim(t, perPBX, latency)
	ids := make([]string, npbx)
	for i := range ids {
		ids[i] = fmt.Sprintf("pbx-%02d", i)
	}
	ctl := newControl(t, db, ids)
	// Welcome emails on, each PBX sending from its own address to one SMTP
	// server: no user may get two from one PBX, kill or not.
	smtpSrv := mailtest.Start(t)
	empty := ""
	for _, id := range ids {
		if _, err := ctl.eng.SaveSMTP(t.Context(), id, "test", syncer.SMTPInput{Host: smtpSrv.Host, Port: smtpSrv.Port,
			From: id + "@pbx.test", TLS: "none", Password: &empty}); err != nil {
			t.Fatal(err)
		}
		s := syncer.DefaultUserSettings()
		s.Enabled, s.WelcomeEmail = true, true
		if _, _, err := ctl.eng.SaveUserSettings(t.Context(), id, "test", s); err != nil {
			t.Fatal(err)
		}
	}
	ctl.eng.Wait()
	env := func(id string) childEnv {
		return childEnv{ID: id, DB: db, SimURL: simURL, MaxWorkers: 4,
			ApplyBatch: 10, LeaseTTL: leaseTTL, // 4 apply transactions per run: a kill can land between them
			JobTimeout: 10 * time.Second, RescueAfter: 10 * time.Second,
			ReapInterval: 300 * time.Millisecond, StuckAfter: time.Second}
	}
	// B first, so that it is the leader (runs the reaper) when A dies.
	startChild(t, env("b"))
	waitFor(t, 20*time.Second, "instance b to become River's leader", func() bool { return ctl.leader(t) == "b" })
	a := startChild(t, env("a"))

	for _, id := range ids {
		if err := ctl.runner.Trigger(t.Context(), id, syncer.TriggerChange); err != nil {
			t.Fatal(err)
		}
	}
	// Kill A in the middle: once some PBXs are done and A is working jobs.
	var runningOnA, completed int
	waitFor(t, 20*time.Second, "a mid-point with jobs running on instance a", func() bool {
		err := ctl.db().QueryRowContext(t.Context(), `SELECT
			count(*) FILTER (WHERE state = 'running' AND attempted_by[array_length(attempted_by, 1)] = 'a'),
			count(*) FILTER (WHERE state = 'completed')
			FROM river_job WHERE kind = 'sync'`).Scan(&runningOnA, &completed)
		if err != nil {
			t.Fatal(err)
		}
		return runningOnA > 0 && completed >= 10 && completed <= npbx-10
	})
	a.kill(t)
	killedAt := time.Since(start)
	var orphans int
	if err := ctl.db().QueryRowContext(t.Context(), `SELECT count(*) FROM river_job WHERE kind = 'sync' AND state = 'running'
		AND attempted_by[array_length(attempted_by, 1)] = 'a'`).Scan(&orphans); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed instance a after %v: %d sync jobs completed, %d running on a", killedAt.Round(time.Millisecond), completed, orphans)
	if orphans == 0 {
		t.Fatal("instance a had no job in hand when killed: the test did not exercise the kill")
	}

	// Every PBX gets its one successful run (B works what is left, the
	// reaper replaces A's orphans once their leases expire), and every
	// sync job ends up finished.
	// Normally the reaper (on the leader) replaces the orphans within about
	// two seconds; if leadership moved to A just before the kill, B first
	// has to win the election and River's rescuer (RescueAfter, then its
	// next pass) is the path, which can take most of a minute.
	waitFor(t, 90*time.Second, "every PBX synced", func() bool {
		for _, id := range ids {
			if len(ctl.succeeded(t, id, syncer.TriggerChange)) == 0 {
				return false
			}
		}
		return true
	})
	t.Logf("every PBX synced %v after the kill", (time.Since(start) - killedAt).Round(time.Millisecond))
	// A's orphans stay "running" (cancel requested by the reaper) until
	// River's rescuer finalizes them (RescueAfter, then its next pass):
	// they must end cancelled, not be retried.
	waitFor(t, 45*time.Second, "every sync job finished", func() bool {
		jobs := ctl.syncJobs(t)
		return jobs["running"]+jobs["available"]+jobs["scheduled"]+jobs["retryable"]+jobs["pending"] == 0
	})
	jobs := ctl.syncJobs(t)
	if testing.Verbose() {
		rows, err := ctl.db().QueryContext(t.Context(), `SELECT id, args::text, state, array_to_string(attempted_by, ','), attempt,
			extract(epoch from attempted_at - created_at)::numeric(8,2), extract(epoch from finalized_at - created_at)::numeric(8,2), metadata::text
			FROM river_job WHERE kind = 'sync' ORDER BY finalized_at`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id, att int
			var args, state, by, at, fin, meta string
			_ = rows.Scan(&id, &args, &state, &by, &att, &at, &fin, &meta)
			t.Logf("job %d %s %s by %s attempt %d at +%s fin +%s %s", id, args, state, by, att, at, fin, meta)
		}
		rows.Close()
	}
	t.Logf("all synced after %v; sync jobs by state: %v", time.Since(start).Round(time.Millisecond), jobs)
	// Each orphan is either replaced by a rescue job that b completes, or,
	// when a finished its run but died before River recorded the job,
	// cancelled without a second run.
	var rescues int
	if err := ctl.db().QueryRowContext(t.Context(), `SELECT count(*) FROM river_job WHERE kind = 'sync' AND state = 'completed'
		AND (args->>'rescueOf')::bigint > 0 AND attempted_by = ARRAY['b']::text[]`).Scan(&rescues); err != nil {
		t.Fatal(err)
	}
	served := orphans - rescues
	t.Logf("%d orphans: %d replaced and completed by b, %d had finished their run before the kill", orphans, rescues, served)
	if served < 0 || jobs["completed"] != npbx-served || jobs["cancelled"] != orphans || jobs["discarded"] != 0 {
		t.Errorf("sync jobs %v with %d rescues; want %d completed and %d cancelled orphans", jobs, rescues, npbx-served, orphans)
	}

	for _, id := range ids {
		runs := ctl.succeeded(t, id, syncer.TriggerChange)
		created := 0
		for _, r := range runs {
			created += r.Created
		}
		// A run killed mid-apply leaves whole batches behind; its rescue
		// run creates the rest. Either way exactly one run succeeded.
		if len(runs) != 1 {
			t.Errorf("%s: %d successful runs for one trigger, want exactly 1: %+v", id, len(runs), runs)
		}
		n := 0
		entra, numbers := map[string]bool{}, map[string]bool{}
		if err := ctl.st.ListAllExtensions(t.Context(), id, func(e *directory.Extension) error {
			n++
			if entra[e.EntraID] || numbers[e.Number] {
				t.Errorf("%s: duplicate extension %s (user %s)", id, e.Number, e.EntraID)
			}
			entra[e.EntraID], numbers[e.Number] = true, true
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if n != perPBX {
			t.Errorf("%s: %d extensions, want %d (one per user of its tenant)", id, n, perPBX)
		}
	}
	// Welcome emails: never two to one user from one PBX; a killed run can
	// lose at most the one chunk (20) it was sending, which it reports.
	want := 0
	for _, id := range ids {
		_ = ctl.st.ListAllExtensions(t.Context(), id, func(e *directory.Extension) error {
			if e.Email != "" {
				want++
			}
			return nil
		})
	}
	msgs := smtpSrv.Messages() // a successful run sent its emails before it was recorded
	seen := map[string]int{}
	for _, m := range msgs {
		for _, to := range m.To {
			seen[m.From+" -> "+to]++
		}
	}
	for k, n := range seen {
		if n > 1 {
			t.Errorf("welcome email %s sent %d times", k, n)
		}
	}
	if len(seen) < want-20*orphans || len(seen) > want {
		t.Errorf("%d welcome emails for %d new extensions with an address (%d orphaned runs may each lose one chunk of 20)", len(seen), want, orphans)
	}
	t.Logf("welcome emails: %d of %d, none twice", len(seen), want)
	t.Logf("whole test %v", time.Since(start).Round(time.Millisecond))
}
