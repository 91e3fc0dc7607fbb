package syncer_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/mail"
	"github.com/switchboard-pbx/switchboard/internal/mail/mailtest"
	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/syncer"
)

// smtpServer configures the PBX's SMTP to an in-process server (no AUTH).
func (b *bundle) smtpServer() *mailtest.Server {
	b.t.Helper()
	srv := mailtest.Start(b.t)
	empty := ""
	if _, err := b.eng.SaveSMTP(b.t.Context(), directory.DefaultPBX, "test", syncer.SMTPInput{Host: srv.Host, Port: srv.Port, From: "pbx@contoso.com", TLS: "none", Password: &empty}); err != nil {
		b.t.Fatal(err)
	}
	return srv
}

// outboxLen is the number of welcome-email chunks waiting in the outbox.
func (b *bundle) outboxLen() int {
	b.t.Helper()
	m, err := b.store.ListSettings(b.t.Context(), directory.DefaultPBX, "sync.welcome.")
	if err != nil {
		b.t.Fatal(err)
	}
	return len(m)
}

// onceEach checks that every recipient got exactly one message, and returns how many recipients.
func onceEach(t *testing.T, msgs []mailtest.Received) int {
	t.Helper()
	seen := map[string]int{}
	for _, m := range msgs {
		for _, to := range m.To {
			seen[strings.ToLower(to)]++
		}
	}
	for to, n := range seen {
		if n != 1 {
			t.Fatalf("%s got %d welcome emails", to, n)
		}
	}
	return len(seen)
}

// dieBeforeMail is a store through which an instance "dies" right after
// its last apply batch: storing the delta link (the step before mailing) fails.
type dieBeforeMail struct{ store.Store }

func (d dieBeforeMail) UpdateSettingFenced(ctx context.Context, pbx, key string, f *store.Fence, fn func([]byte) ([]byte, error)) error {
	if key == "sync.delta.users" {
		return errors.New("the instance died")
	}
	return d.Store.UpdateSettingFenced(ctx, pbx, key, f, fn)
}

// An instance that stops between apply and send loses no welcome email:
// the batches wrote them into the outbox with the extensions, and the next
// run (on any instance) sends each exactly once.
func TestWelcomeOutboxSurvivesStopBeforeSend(t *testing.T) {
	backends(t, func(t *testing.T, db func(testing.TB) string) {
		b := newBundle(t, opts{users: 1, db: db(t)})
		smtp := b.smtpServer()
		b.people("out", 44, nil) // 45 users with an email
		eng1 := &syncer.Engine{Store: dieBeforeMail{b.store}, PBX: b.pbx, Graph: b.src, Mailer: mail.Sender{}, Logger: testLogger(t), ApplyBatch: 20}
		t.Cleanup(eng1.Wait)
		s := defaults()
		s.WelcomeEmail = true
		_, id, err := eng1.SaveUserSettings(t.Context(), directory.DefaultPBX, "test", s)
		if err != nil {
			t.Fatal(err)
		}
		eng1.Wait()
		r := must(eng1.GetRun(t.Context(), directory.DefaultPBX, id))
		if r.State != syncer.StateFailed || r.Created != 45 || r.WelcomeEmails != 0 {
			t.Fatalf("dying run: state %s, created %d, welcome %d, error %q", r.State, r.Created, r.WelcomeEmails, r.Error)
		}
		if n := len(smtp.Messages()); n != 0 {
			t.Fatalf("the dying run sent %d emails", n)
		}
		if n := b.outboxLen(); n != 3 { // batches of 20, 20, 5
			t.Fatalf("outbox holds %d chunks, want 3", n)
		}

		r = b.mustSucceed(b.run(syncer.RunOptions{}))
		if r.Created != 0 || r.WelcomeEmails != 45 {
			t.Fatalf("next run: created %d, welcome %d, notes %v", r.Created, r.WelcomeEmails, r.Notes)
		}
		if n := onceEach(t, smtp.WaitFor(45, 5*time.Second)); n != 45 {
			t.Fatalf("%d recipients, want 45", n)
		}
		if n := b.outboxLen(); n != 0 {
			t.Fatalf("outbox holds %d chunks after sending", n)
		}
		r = b.mustSucceed(b.run(syncer.RunOptions{}))
		if r.WelcomeEmails != 0 || len(smtp.Messages()) != 45 {
			t.Fatalf("an idle run sent welcome emails: %d (%d received)", r.WelcomeEmails, len(smtp.Messages()))
		}
	})
}

// dyingMailer sends the first sends through and then "dies" mid-send (panics).
type dyingMailer struct {
	mu    sync.Mutex
	left  int
	inner mail.Sender
}

func (m *dyingMailer) Send(ctx context.Context, cfg mail.Config, msgs ...mail.Message) error {
	m.mu.Lock()
	m.left--
	die := m.left < 0
	m.mu.Unlock()
	if die {
		panic("the instance died while sending")
	}
	return m.inner.Send(ctx, cfg, msgs...)
}

// An instance that stops while sending never makes anyone get two welcome
// emails: the chunk it had claimed is reported (note and audit entry), not
// resent; the chunks it never reached are sent by the next run.
func TestWelcomeNeverSentTwice(t *testing.T) {
	b := newBundle(t, opts{users: 1})
	smtp := b.smtpServer()
	b.people("two", 44, nil)
	eng1 := &syncer.Engine{Store: b.store, PBX: b.pbx, Graph: b.src, Mailer: &dyingMailer{left: 1}, Logger: testLogger(t), ApplyBatch: 20}
	t.Cleanup(eng1.Wait)
	s := defaults()
	s.WelcomeEmail = true
	_, id, err := eng1.SaveUserSettings(t.Context(), directory.DefaultPBX, "test", s)
	if err != nil {
		t.Fatal(err)
	}
	eng1.Wait()
	r := must(eng1.GetRun(t.Context(), directory.DefaultPBX, id))
	if r.State != syncer.StateFailed || r.Created != 45 || len(smtp.Messages()) != 20 {
		t.Fatalf("dying run: state %s, created %d, %d received, error %q", r.State, r.Created, len(smtp.Messages()), r.Error)
	}

	r = b.mustSucceed(b.run(syncer.RunOptions{}))
	if r.WelcomeEmails != 5 {
		t.Fatalf("next run sent %d, want the 5 never claimed (notes %v)", r.WelcomeEmails, r.Notes)
	}
	var noted bool
	for _, n := range r.Notes {
		noted = noted || strings.Contains(n, "welcome emails to 20 users may not have been sent")
	}
	if !noted {
		t.Fatalf("the claimed chunk is not reported: %v", r.Notes)
	}
	if n := onceEach(t, smtp.WaitFor(25, 5*time.Second)); n != 25 {
		t.Fatalf("%d recipients, want 25 (20 + 5; 20 unknown)", n)
	}
	audit, err := b.store.ListAudit(t.Context(), directory.DefaultPBX, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var logged bool
	for _, a := range audit {
		logged = logged || (a.Action == "sync.welcome.unknown" && strings.Contains(a.Detail, "20 welcome emails"))
	}
	if !logged {
		t.Fatal("no sync.welcome.unknown audit entry")
	}
	if n := b.outboxLen(); n != 0 {
		t.Fatalf("outbox holds %d chunks", n)
	}
	r = b.mustSucceed(b.run(syncer.RunOptions{}))
	if len(smtp.Messages()) != 25 || strings.Contains(strings.Join(r.Notes, " "), "welcome") {
		t.Fatalf("a later run mailed again or reported again: %d received, notes %v", len(smtp.Messages()), r.Notes)
	}
}
