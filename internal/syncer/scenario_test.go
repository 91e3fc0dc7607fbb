package syncer_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/mail/mailtest"
	"github.com/switchboard-pbx/switchboard/internal/sim"
	"github.com/switchboard-pbx/switchboard/internal/syncer"
)

// people creates n users p1..pn (Members, enabled, with names, mobile and job title).
func (b *bundle) people(prefix string, n int, extra func(i int) map[string]any) []string {
	ids := make([]string, n)
	for i := range n {
		body := map[string]any{"givenName": fmt.Sprintf("Given%d", i+1), "surname": strings.ToUpper(prefix[:1]) + prefix[1:],
			"mobilePhone": fmt.Sprintf("+1 555 01%02d", i), "jobTitle": "Engineer", "department": "R&D"}
		if extra != nil {
			for k, v := range extra(i) {
				body[k] = v
			}
		}
		ids[i] = b.createUser(fmt.Sprintf("%s%d", prefix, i+1), body)
	}
	return ids
}

func loose() syncer.DeleteGuard { return syncer.DeleteGuard{MaxPercent: pct(100)} }

// ---- range: all, then delta ----

func TestRangeAllFullThenDelta(t *testing.T) {
	backends(t, func(t *testing.T, db func(testing.TB) string) {
		b := newBundle(t, opts{users: 1, db: db(t)})
		ids := b.people("ann", 5, nil)
		s := defaults()
		s.Numbering.Start = "2000"
		b.save(s)
		got := b.byEntra()
		if len(got) != 6 {
			t.Fatalf("synced %d extensions, want 6", len(got))
		}
		e := got[ids[0]]
		if e.FirstName != "Given1" || e.LastName != "Ann" || e.Email != "ann1@contoso.com" || e.JobTitle != "Engineer" || e.Mobile != "+1 555 0100" {
			t.Fatalf("extension fields: %+v", e)
		}
		if e.Number < "2000" || e.Source != directory.SourceEntra {
			t.Fatalf("number/source: %s %s", e.Number, e.Source)
		}
		// A change in Entra arrives through delta: a handful of requests.
		b.patchUser(ids[0], map[string]any{"jobTitle": "Architect"})
		newID := b.createUser("newbie", map[string]any{"givenName": "New", "surname": "Bie"})
		b.tenant.ResetStats()
		r := b.mustSucceed(b.run(syncer.RunOptions{}))
		if r.Read != "delta" || r.Updated != 1 || r.Created != 1 || r.UsersRead != 2 {
			t.Fatalf("delta run: read=%s updated=%d created=%d usersRead=%d", r.Read, r.Updated, r.Created, r.UsersRead)
		}
		if st := b.tenant.Stats(); st.ByEndpoint["GET /v1.0/users/delta"] != 1 || st.ByEndpoint["GET /v1.0/users"] != 0 {
			t.Fatalf("delta run used %v", st.ByEndpoint)
		}
		got = b.byEntra()
		if got[ids[0]].JobTitle != "Architect" || got[newID].FirstName != "New" {
			t.Fatalf("after delta: %+v / %+v", got[ids[0]], got[newID])
		}
		// Nothing changed: unchanged run, nothing written.
		r = b.mustSucceed(b.run(syncer.RunOptions{}))
		if r.Created+r.Updated+r.Deleted != 0 {
			t.Fatalf("idle run changed things: %+v", r)
		}
	})
}

// ---- range: type, and range changes with and without auto-delete ----

func TestRangeTypeAndRangeChange(t *testing.T) {
	for _, autoDelete := range []bool{false, true} {
		t.Run(fmt.Sprintf("deleteOutOfRange=%t", autoDelete), func(t *testing.T) {
			backends(t, func(t *testing.T, db func(testing.TB) string) {
				b := newBundle(t, opts{users: 1, db: db(t)})
				members := b.people("mem", 3, nil)
				guests := b.people("gst", 2, func(int) map[string]any { return map[string]any{"userType": "Guest"} })
				s := defaults()
				s.Range, s.UserTypes = syncer.RangeType, []string{"Member"}
				s.DeleteOutOfRange = autoDelete
				s.DeleteGuard = loose()
				b.save(s)
				got := b.byEntra()
				for _, id := range members {
					if _, ok := got[id]; !ok {
						t.Fatalf("member %s not synced", id)
					}
				}
				for _, id := range guests {
					if _, ok := got[id]; ok {
						t.Fatalf("guest %s synced under range Member", id)
					}
				}
				memberExt := got[members[0]]
				// Range change to Guests: members leave the range.
				s.UserTypes = []string{"Guest"}
				b.save(s)
				r := b.mustSucceed(b.run(syncer.RunOptions{}))
				if r.Read != "full" {
					t.Fatalf("range change must force a full read, got %s", r.Read)
				}
				got = b.byEntra()
				for _, id := range guests {
					if _, ok := got[id]; !ok {
						t.Fatalf("guest %s not synced after the range change", id)
					}
				}
				x, err := b.store.GetExtension(t.Context(), "default", memberExt.ID)
				if autoDelete {
					if err == nil {
						t.Fatalf("member's extension kept with auto-delete on: %+v", x)
					}
					if r.Deleted != 4 { // 3 members + the tenant's admin
						t.Fatalf("deleted %d, want 4", r.Deleted)
					}
				} else {
					if err != nil || x.Source != directory.SourceLocal || x.EntraID != "" {
						t.Fatalf("member's extension should be released to the PBX: %+v, %v", x, err)
					}
					if r.Released != 4 || r.Deleted != 0 {
						t.Fatalf("released %d deleted %d", r.Released, r.Deleted)
					}
				}
			})
		})
	}
}

// ---- range: groups, direct and transitive ----

func (b *bundle) group(name string, members ...string) string {
	b.t.Helper()
	var out struct {
		ID string `json:"id"`
	}
	if err := b.graph.Do(context.Background(), http.MethodPost, "/groups", nil, map[string]any{
		"displayName": name, "mailEnabled": false, "mailNickname": strings.ToLower(name), "securityEnabled": true}, &out); err != nil {
		b.t.Fatal(err)
	}
	for _, m := range members {
		b.graphDo(http.MethodPost, "/groups/"+out.ID+"/members/$ref", map[string]any{"@odata.id": b.srv.URL + "/v1.0/directoryObjects/" + m})
	}
	return out.ID
}

func TestRangeGroupsDirectAndTransitive(t *testing.T) {
	backends(t, func(t *testing.T, db func(testing.TB) string) {
		b := newBundle(t, opts{users: 1, db: db(t)})
		u := b.people("grp", 4, nil)
		inner := b.group("Inner", u[2])
		outer := b.group("Outer", u[0], u[1], inner)
		s := defaults()
		s.Range, s.GroupIDs = syncer.RangeGroups, []string{outer}
		s.DeleteGuard = loose()
		b.save(s)
		got := b.byEntra()
		if len(got) != 2 || got[u[0]].ID == "" || got[u[1]].ID == "" {
			t.Fatalf("direct members: got %d extensions", len(got))
		}
		s.GroupMembers = syncer.MembersTransitive
		b.save(s)
		r := b.mustSucceed(b.run(syncer.RunOptions{}))
		got = b.byEntra()
		if len(got) != 3 || got[u[2]].ID == "" || r.Created != 1 {
			t.Fatalf("transitive members: %d extensions, run %+v", len(got), r)
		}
		// A member leaves the group: out of range, released (auto-delete off).
		b.graphDo(http.MethodDelete, "/groups/"+outer+"/members/"+u[1]+"/$ref", nil)
		// A member is deleted in Entra: deleted (deleteWhen deleted is the default).
		b.deleteUser(u[0])
		r = b.mustSucceed(b.run(syncer.RunOptions{}))
		if r.Released != 1 || r.Deleted != 1 {
			t.Fatalf("released %d deleted %d, notes %v", r.Released, r.Deleted, r.Notes)
		}
		if _, err := b.store.FindExtension(t.Context(), "default", "email", "grp2@contoso.com"); err != nil {
			t.Fatalf("released extension gone: %v", err)
		}
		if _, err := b.store.FindExtension(t.Context(), "default", "email", "grp1@contoso.com"); err == nil {
			t.Fatal("deleted user's extension kept")
		}
	})
}

// ---- range: hand-picked users, bind to an existing or new extension, unbind ----

func TestRangeUsersBindUnbind(t *testing.T) {
	backends(t, func(t *testing.T, db func(testing.TB) string) {
		b := newBundle(t, opts{users: 1, db: db(t)})
		u := b.people("pick", 3, nil)
		ctx := t.Context()
		local := &directory.Extension{Number: "7000", FirstName: "Desk", Email: "desk@example.com"}
		if err := b.pbx.CreateExtension(ctx, "default", "test", local); err != nil {
			t.Fatal(err)
		}
		s := defaults()
		s.Range, s.UserIDs = syncer.RangeUsers, []string{u[0]}
		b.save(s)
		if got := b.byEntra(); len(got) != 1 || got[u[0]].ID == "" {
			t.Fatalf("hand-picked: %d extensions", len(got))
		}
		// Bind user 2 to the existing extension 7000.
		r, err := b.eng.BindUser(ctx, "default", "test", u[1], syncer.Binding{ExtensionID: local.ID})
		if err != nil {
			t.Fatal(err)
		}
		b.mustSucceed(r)
		x, _ := b.store.GetExtension(ctx, "default", local.ID)
		if x.EntraID != u[1] || x.Number != "7000" || x.Email != "pick2@contoso.com" || x.FirstName != "Given2" {
			t.Fatalf("bound extension: %+v (run %+v)", x, r)
		}
		// Bind user 3 to a new extension with a chosen number.
		b.mustSucceed(must(b.eng.BindUser(ctx, "default", "test", u[2], syncer.Binding{Number: "7100"})))
		if got := b.byEntra()[u[2]]; got.Number != "7100" {
			t.Fatalf("new bound extension: %+v", got)
		}
		// The number is taken: refused with the field named.
		if _, err := b.eng.BindUser(ctx, "default", "test", u[0], syncer.Binding{Number: "7100"}); err == nil {
			t.Fatal("binding to a used number accepted")
		}
		// Unbind: the extension stays, as an ordinary PBX extension.
		x2, err := b.eng.UnbindUser(ctx, "default", "test", u[1])
		if err != nil || x2 == nil {
			t.Fatalf("unbind: %v", err)
		}
		x, _ = b.store.GetExtension(ctx, "default", local.ID)
		if x.Synced() || x.Source != directory.SourceLocal {
			t.Fatalf("unbound extension still synced: %+v", x)
		}
		set, _, _ := b.eng.UserSettings(ctx, "default")
		if slices.Contains(set.UserIDs, u[1]) {
			t.Fatal("unbound user still in the list")
		}
		r = b.mustSucceed(b.run(syncer.RunOptions{}))
		if r.Created+r.Bound+r.Deleted != 0 {
			t.Fatalf("run after unbind changed things: %+v", r)
		}
	})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// ---- numbering ----

func TestNumberingAutoSkipsUsedNumbers(t *testing.T) {
	backends(t, func(t *testing.T, db func(testing.TB) string) {
		b := newBundle(t, opts{users: 1, db: db(t)})
		b.people("num", 3, nil)
		for _, n := range []string{"3000", "3002"} {
			if err := b.pbx.CreateExtension(t.Context(), "default", "test", &directory.Extension{Number: n}); err != nil {
				t.Fatal(err)
			}
		}
		s := defaults()
		s.Numbering.Start = "3000"
		b.save(s)
		var nums []string
		for _, e := range b.byEntra() {
			nums = append(nums, e.Number)
		}
		slices.Sort(nums)
		if want := []string{"3001", "3003", "3004", "3005"}; !slices.Equal(nums, want) {
			t.Fatalf("numbers %v, want %v", nums, want)
		}
	})
}

func TestNumberingProperty(t *testing.T) {
	backends(t, func(t *testing.T, db func(testing.TB) string) {
		b := newBundle(t, opts{users: 1, db: db(t)})
		vals := []any{"4001", "ext. 4002", "abc", nil, "4001", "1234567890123", "4005"}
		ids := b.people("prop", len(vals), func(i int) map[string]any {
			return map[string]any{"onPremisesExtensionAttributes": map[string]any{"extensionAttribute1": vals[i]}}
		})
		if err := b.pbx.CreateExtension(t.Context(), "default", "test", &directory.Extension{Number: "4005"}); err != nil {
			t.Fatal(err)
		}
		s := defaults()
		s.Numbering = syncer.Numbering{Mode: syncer.NumberingProperty, Property: "extensionAttribute1"}
		id := b.save(s)
		r := must(b.eng.GetRun(t.Context(), "default", id))
		b.mustSucceed(r)
		got := b.byEntra()
		if got[ids[0]].Number != "4001" || got[ids[1]].Number != "4002" {
			t.Fatalf("numbers: %q %q", got[ids[0]].Number, got[ids[1]].Number)
		}
		for i, want := range map[int]string{2: "not usable", 3: "is empty", 4: "already used", 5: "13 digits", 6: "already used by extension 4005"} {
			reasons := skipsFor(r, ids[i])
			if _, ok := got[ids[i]]; ok || len(reasons) != 1 || !strings.Contains(reasons[0], want) {
				t.Errorf("user %d (%v): synced=%t reasons %q, want %q", i, vals[i], ok, reasons, want)
			}
		}
		// Property numbering from businessPhones.
		s.Numbering.Property = "businessPhones"
		b.patchUser(ids[2], map[string]any{"businessPhones": []string{"4100"}})
		b.save(s)
		b.mustSucceed(b.run(syncer.RunOptions{}))
		if got := b.byEntra()[ids[2]]; got.Number != "4100" {
			t.Fatalf("businessPhones number: %+v", got)
		}
	})
}

func TestExtractNumberRule(t *testing.T) {
	for in, want := range map[string]string{"1234": "1234", "+1 425 555 0100 x1234": "1234", "ext. 77": "77", "#5": "5",
		"+1 (425) 555-0100": "14255550100", "": "", "abc": "", "12345678901234": ""} {
		if got := syncer.ExtractNumber(in); got != want {
			t.Errorf("ExtractNumber(%q) = %q, want %q", in, got, want)
		}
	}
}

// ---- delete when disabled / deleted ----

func TestDeleteWhen(t *testing.T) {
	for _, when := range [][]string{{}, {"disabled"}, {"deleted"}, {"disabled", "deleted"}} {
		t.Run("when="+strings.Join(when, "+"), func(t *testing.T) {
			backends(t, func(t *testing.T, db func(testing.TB) string) {
				b := newBundle(t, opts{users: 1, db: db(t)})
				u := b.people("dw", 4, nil)
				s := defaults()
				s.DeleteWhen = when
				s.DeleteGuard = loose()
				b.save(s)
				before := b.byEntra()
				b.patchUser(u[0], map[string]any{"accountEnabled": false})
				b.deleteUser(u[1])
				r := b.mustSucceed(b.run(syncer.RunOptions{}))
				got := b.byEntra()
				_, disabledKept := got[u[0]]
				if slices.Contains(when, "disabled") == disabledKept {
					t.Errorf("disabled user's extension kept=%t with deleteWhen %v", disabledKept, when)
				}
				x, err := b.store.GetExtension(t.Context(), "default", before[u[1]].ID)
				if slices.Contains(when, "deleted") {
					if err == nil {
						t.Errorf("deleted user's extension kept with deleteWhen %v", when)
					}
				} else if err != nil || x.Synced() {
					t.Errorf("deleted user's extension should stay as a PBX extension: %+v %v", x, err)
				}
				if !slices.Contains(when, "disabled") && got[u[0]].ID == "" {
					t.Errorf("disabled user lost its extension")
				}
				_ = r
				// A disabled user whose extension was deleted is not recreated.
				r = b.mustSucceed(b.run(syncer.RunOptions{}))
				if r.Created != 0 {
					t.Errorf("a later run recreated %d extensions", r.Created)
				}
			})
		})
	}
}

// ---- associate by email ----

func TestAssociateByEmail(t *testing.T) {
	for _, on := range []bool{true, false} {
		t.Run(fmt.Sprintf("on=%t", on), func(t *testing.T) {
			backends(t, func(t *testing.T, db func(testing.TB) string) {
				b := newBundle(t, opts{users: 1, db: db(t)})
				u := b.people("assoc", 1, nil)
				local := &directory.Extension{Number: "555", FirstName: "Old", Email: "ASSOC1@contoso.com"}
				if err := b.pbx.CreateExtension(t.Context(), "default", "test", local); err != nil {
					t.Fatal(err)
				}
				s := defaults()
				s.AssociateByEmail = on
				id := b.save(s)
				r := must(b.eng.GetRun(t.Context(), "default", id))
				x, _ := b.store.GetExtension(t.Context(), "default", local.ID)
				if on {
					if x.EntraID != u[0] || x.FirstName != "Given1" || x.Number != "555" || r.Bound != 1 {
						t.Fatalf("not associated: %+v, run %+v", x, r)
					}
				} else {
					if x.Synced() || x.FirstName != "Old" {
						t.Fatalf("associated with the option off: %+v", x)
					}
					if rs := skipsFor(r, u[0]); len(rs) != 1 || !strings.Contains(rs[0], "associate by email is off") {
						t.Fatalf("skip reasons %q", rs)
					}
				}
			})
		})
	}
}

// ---- field mapping ----

func TestFieldMappingChange(t *testing.T) {
	backends(t, func(t *testing.T, db func(testing.TB) string) {
		b := newBundle(t, opts{users: 1, db: db(t)})
		u := b.people("fm", 2, nil)
		s := defaults()
		b.save(s)
		s.Fields.JobTitle = "department"
		s.Fields.Mobile = ""
		s.Fields.FirstName = "displayName"
		b.save(s)
		r := b.mustSucceed(b.run(syncer.RunOptions{}))
		if r.Read != "full" || r.Updated != 3 {
			t.Fatalf("mapping change: read %s updated %d", r.Read, r.Updated)
		}
		e := b.byEntra()[u[0]]
		if e.JobTitle != "R&D" || e.FirstName != "fm1" || e.Mobile != "+1 555 0100" {
			t.Fatalf("mapped fields: %+v", e)
		}
		// mobile is no longer synced: an Entra change does not reach it.
		b.patchUser(u[0], map[string]any{"mobilePhone": "+1 555 9999"})
		b.mustSucceed(b.run(syncer.RunOptions{}))
		if e := b.byEntra()[u[0]]; e.Mobile != "+1 555 0100" {
			t.Fatalf("unsynced field changed: %+v", e)
		}
	})
}

// ---- welcome email ----

func TestWelcomeEmail(t *testing.T) {
	backends(t, func(t *testing.T, db func(testing.TB) string) {
		b := newBundle(t, opts{users: 1, db: db(t)})
		smtp := mailtest.Start(t)
		pw := "s3cret"
		if _, err := b.eng.SaveSMTP(t.Context(), "default", "test", syncer.SMTPInput{Host: smtp.Host, Port: smtp.Port, From: "pbx@contoso.com", TLS: "none", Password: &pw}); err != nil {
			t.Fatal(err)
		}
		raw, _ := b.store.GetSetting(t.Context(), "default", "smtp")
		if strings.Contains(string(raw), pw) {
			t.Fatal("SMTP password stored in plain text")
		}
		// without a username the password is not used; clear it to send without AUTH
		empty := ""
		if _, err := b.eng.SaveSMTP(t.Context(), "default", "test", syncer.SMTPInput{Host: smtp.Host, Port: smtp.Port, From: "pbx@contoso.com", TLS: "none", Password: &empty}); err != nil {
			t.Fatal(err)
		}
		b.people("wel", 2, nil)
		s := defaults()
		s.WelcomeEmail = true
		id := b.save(s)
		r := must(b.eng.GetRun(t.Context(), "default", id))
		msgs := smtp.WaitFor(3, 5*time.Second)
		if len(msgs) != 3 || r.WelcomeEmails != 3 {
			t.Fatalf("welcome emails: received %d, run says %d (notes %v)", len(msgs), r.WelcomeEmails, r.Notes)
		}
		var found bool
		for _, m := range msgs {
			if m.To[0] == "wel1@contoso.com" && strings.Contains(m.Data, "Extension number: "+b.byEntra()[mustID(b, "wel1@contoso.com")].Number) {
				found = true
			}
		}
		if !found {
			t.Fatalf("no welcome email for wel1 with its number: %+v", msgs)
		}
		// Updates send nothing.
		b.mustSucceed(b.run(syncer.RunOptions{}))
		if n := len(smtp.Messages()); n != 3 {
			t.Fatalf("%d emails after an idle run", n)
		}
	})
}

func mustID(b *bundle, upn string) string {
	u, ok := b.tenant.User(upn)
	if !ok {
		b.t.Fatalf("no user %s", upn)
	}
	return u.ID
}

// ---- pause ----

func TestPause(t *testing.T) {
	for _, del := range []bool{false, true} {
		t.Run(fmt.Sprintf("deleteExtensions=%t", del), func(t *testing.T) {
			backends(t, func(t *testing.T, db func(testing.TB) string) {
				b := newBundle(t, opts{users: 1, db: db(t)})
				b.people("pz", 3, nil)
				s := defaults()
				b.save(s)
				r, err := b.eng.Pause(t.Context(), "default", "test", del)
				if err != nil {
					t.Fatal(err)
				}
				n := len(b.byEntra())
				if del && (n != 0 || r.Deleted != 4) {
					t.Fatalf("pause with deletion left %d synced, deleted %d", n, r.Deleted)
				}
				if !del && n != 4 {
					t.Fatalf("pause without deletion left %d synced", n)
				}
				// Settings are kept and locked; runs are refused.
				got, paused, _ := b.eng.UserSettings(t.Context(), "default")
				if !paused || got.Range != s.Range {
					t.Fatalf("paused=%t settings %+v", paused, got)
				}
				s2 := s
				s2.Enabled = false
				s2.AssociateByEmail = true
				if _, _, err := b.eng.SaveUserSettings(t.Context(), "default", "test", s2); !errorsIsLocked(err) {
					t.Fatalf("settings change while paused: %v", err)
				}
				if r := b.run(syncer.RunOptions{}); r.State != syncer.StateFailed || !strings.Contains(r.Error, "paused") {
					t.Fatalf("run while paused: %+v", r)
				}
				// Kept extensions stay locked.
				if !del {
					for _, e := range b.byEntra() {
						if directory.CheckManualExtensionDelete(&e) == nil {
							t.Fatal("kept extension is not locked")
						}
						break
					}
				}
				// Switching it on again resumes (and syncs).
				b.save(s)
				b.mustSucceed(b.run(syncer.RunOptions{}))
				if n := len(b.byEntra()); n != 4 {
					t.Fatalf("after resume %d synced", n)
				}
			})
		})
	}
}

// ---- dry run ----

func TestDryRunWritesNothing(t *testing.T) {
	backends(t, func(t *testing.T, db func(testing.TB) string) {
		b := newBundle(t, opts{users: 1, db: db(t)})
		b.people("dry", 3, nil)
		s := defaults()
		s.Numbering.Start = "8000"
		// Saved but not switched on: a dry run previews the first sync.
		s.Enabled = false
		b.save(s)
		first := b.run(syncer.RunOptions{DryRun: true})
		if first.State != syncer.StateDryRun || first.Created != 4 || len(b.extensions()) != 0 {
			t.Fatalf("preview of the first sync: %+v, %d extensions", first, len(b.extensions()))
		}
		s.Enabled = true
		b.save(s)
		before := len(b.extensions())
		b.patchUser(mustID(b, "dry1@contoso.com"), map[string]any{"jobTitle": "Boss"})
		b.createUser("dry9", map[string]any{"givenName": "Nine"})
		stored, _ := b.store.GetSetting(t.Context(), "default", "sync.delta.users")
		r := b.run(syncer.RunOptions{DryRun: true})
		if r.State != syncer.StateDryRun || r.Created != 1 || r.Updated != 1 {
			t.Fatalf("dry run: %+v", r)
		}
		var create *syncer.Action
		for i, a := range r.Plan {
			if a.Op == syncer.OpCreate {
				create = &r.Plan[i]
			}
		}
		if create == nil || create.Number == "" || !strings.HasPrefix(create.Subject, "dry9@") {
			t.Fatalf("plan lacks the new user's number: %+v", r.Plan)
		}
		if after := len(b.extensions()); after != before {
			t.Fatalf("dry run wrote: %d -> %d extensions", before, after)
		}
		if now, _ := b.store.GetSetting(t.Context(), "default", "sync.delta.users"); string(now) != string(stored) {
			t.Fatal("dry run moved the delta link")
		}
		// The real run gives the number the dry run announced.
		b.mustSucceed(b.run(syncer.RunOptions{}))
		if got := b.byEntra()[mustID(b, "dry9@contoso.com")].Number; got != create.Number {
			t.Fatalf("real run gave %s, dry run said %s", got, create.Number)
		}
	})
}

// ---- deletion guard ----

func TestDeletionGuard(t *testing.T) {
	backends(t, func(t *testing.T, db func(testing.TB) string) {
		b := newBundle(t, opts{users: 1, db: db(t)})
		u := b.people("dg", 9, nil)
		s := defaults()
		b.save(s) // 10 synced, guard 20%
		for _, id := range u[:3] {
			b.deleteUser(id)
		}
		r := b.run(syncer.RunOptions{})
		if r.State != syncer.StateNeedsConfirmation || r.PendingDeletes != 3 || r.Deleted != 0 {
			t.Fatalf("guard did not trip: %+v", r)
		}
		if n := len(b.byEntra()); n != 10 {
			t.Fatalf("guarded run deleted: %d left", n)
		}
		c, err := b.eng.Confirm(t.Context(), "default", r.ID, "test")
		if err != nil {
			t.Fatal(err)
		}
		b.mustSucceed(c)
		if c.Deleted != 3 || len(b.byEntra()) != 7 {
			t.Fatalf("confirm: deleted %d, left %d", c.Deleted, len(b.byEntra()))
		}
		held := must(b.eng.GetRun(t.Context(), "default", r.ID))
		if held.State != syncer.StateConfirmed || held.ConfirmedBy != c.ID {
			t.Fatalf("held run after confirm: %+v", held)
		}
		if _, err := b.eng.Confirm(t.Context(), "default", r.ID, "test"); err == nil {
			t.Fatal("confirmed twice")
		}
		// A count limit trips as well.
		s.DeleteGuard = syncer.DeleteGuard{MaxPercent: pct(100), MaxCount: 1}
		b.save(s)
		b.deleteUser(u[3])
		b.deleteUser(u[4])
		if r := b.run(syncer.RunOptions{}); r.State != syncer.StateNeedsConfirmation {
			t.Fatalf("count guard: %+v", r)
		}
	})
}

// A read that fails never counts as users gone.
func TestFailedReadDeletesNothing(t *testing.T) {
	b := newBundle(t, opts{users: 1})
	b.people("fr", 4, nil)
	s := defaults()
	s.DeleteGuard = loose()
	b.save(s)
	b.tenant.ExpireDeltaTokens()            // forces a full read
	b.tenant.SetFaults(sim.Faults{Drop: 1}) // every connection dropped: retries run out
	r := b.run(syncer.RunOptions{})
	b.tenant.SetFaults(sim.Faults{})
	if r.State != syncer.StateFailed || r.Deleted != 0 {
		t.Fatalf("run under faults: %+v", r)
	}
	if n := len(b.byEntra()); n != 5 {
		t.Fatalf("failed read changed the PBX: %d synced", n)
	}
	r = b.mustSucceed(b.run(syncer.RunOptions{}))
	if r.Deleted != 0 || !slices.ContainsFunc(r.Notes, func(n string) bool { return strings.Contains(n, "expired") }) {
		t.Fatalf("recovery run: %+v", r)
	}
}

// ---- capacity ----

func TestCapacity(t *testing.T) {
	b := newBundle(t, opts{users: 1, capacity: 4})
	if err := b.pbx.CreateExtension(t.Context(), "default", "test", &directory.Extension{Number: "100"}); err != nil {
		t.Fatal(err)
	}
	ids := b.people("cap", 4, nil)
	id := b.save(defaults())
	r := must(b.eng.GetRun(t.Context(), "default", id))
	b.mustSucceed(r)
	if r.Created != 3 || len(b.extensions()) != 4 {
		t.Fatalf("created %d, total %d", r.Created, len(b.extensions()))
	}
	var capped int
	for _, id := range ids {
		for _, reason := range skipsFor(r, id) {
			if strings.Contains(reason, "capacity of 4") {
				capped++
			}
		}
	}
	if capped != 2 {
		t.Fatalf("capacity skips: %d (%+v)", capped, r.Skipped)
	}
}

// ---- one run per PBX ----

func TestConcurrentRunsJoin(t *testing.T) {
	b := newBundle(t, opts{users: 300, latency: 5 * time.Millisecond})
	s := defaults()
	s.Enabled = false
	b.save(s)
	s.Enabled = true
	_, first, err := b.eng.SaveUserSettings(t.Context(), "default", "test", s)
	if err != nil {
		t.Fatal(err)
	}
	r := b.run(syncer.RunOptions{})
	if r.ID != first {
		t.Fatalf("second request ran %s instead of joining %s", r.ID, first)
	}
	if n := len(b.byEntra()); n != 300 {
		t.Fatalf("%d synced", n)
	}
}

func errorsIsLocked(err error) bool {
	_, ok := err.(*directory.LockedError)
	return ok
}

// Dropped connections are retried: the run completes.
func TestFlakyReadCompletes(t *testing.T) {
	b := newBundle(t, opts{users: 1200, seed: 11})
	b.tenant.SetFaults(sim.Faults{Drop: 0.5, Routes: []string{"GET /v1.0/users/delta"}})
	id := b.save(defaults())
	r := b.mustSucceed(must(b.eng.GetRun(t.Context(), "default", id)))
	if r.Created != 1200 {
		t.Fatalf("created %d", r.Created)
	}
	if st := b.tenant.Stats(); st.ByEndpoint["fault drop"] == 0 {
		t.Fatalf("no fault was injected: %v", st.ByEndpoint)
	}
}

// Two instances sharing one database never sync the same PBX at once: the
// second waits for the first one's lease and then finds nothing to do.
func TestTwoInstancesOneRunAtATime(t *testing.T) {
	backends(t, func(t *testing.T, db func(testing.TB) string) {
		dbURL := db(t)
		if dbURL == "" {
			dbURL = "sqlite:" + t.TempDir() + "/shared.db"
		}
		b := newBundle(t, opts{users: 400, latency: 3 * time.Millisecond, db: dbURL})
		s := defaults()
		s.Enabled = false
		b.save(s)
		other := openStore(t, dbURL, 0)
		eng2 := &syncer.Engine{Store: other, PBX: b.pbx, Graph: b.src, Logger: testLogger(t)}
		s.Enabled = true
		_, first, err := b.eng.SaveUserSettings(t.Context(), "default", "test", s)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := eng2.Run(t.Context(), "default", syncer.RunOptions{})
		if err != nil {
			t.Fatal(err)
		}
		b.eng.Wait()
		r1 := must(b.eng.GetRun(t.Context(), "default", first))
		b.mustSucceed(r1)
		b.mustSucceed(r2)
		if r1.Created+r2.Created != 400 || len(b.byEntra()) != 400 {
			t.Fatalf("created %d + %d, synced %d", r1.Created, r2.Created, len(b.byEntra()))
		}
		if r2.StartedAt.Before(*r1.FinishedAt) && r2.Created > 0 && r1.Created > 0 {
			t.Fatalf("the runs overlapped: %+v / %+v", r1, r2)
		}
	})
}
