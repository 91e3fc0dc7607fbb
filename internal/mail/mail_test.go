package mail_test

import (
	"strings"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/mail"
	"github.com/switchboard-pbx/switchboard/internal/mail/mailtest"
)

func TestSendWelcome(t *testing.T) {
	srv := mailtest.Start(t)
	cfg := mail.Config{Host: srv.Host, Port: srv.Port, From: "pbx@example.com", TLS: mail.TLSNone}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	m1 := mail.WelcomeMessage(mail.Welcome{To: "ada@example.com", FirstName: "Ada", LastName: "Lovelace", Number: "1001", PBXName: "Contoso"})
	m2 := mail.WelcomeMessage(mail.Welcome{To: "bob@example.com", Number: "1002"})
	if err := (mail.Sender{}).Send(t.Context(), cfg, m1, m2); err != nil {
		t.Fatal(err)
	}
	got := srv.WaitFor(2, 5*time.Second)
	if len(got) != 2 {
		t.Fatalf("received %d messages, want 2", len(got))
	}
	if got[0].From != "pbx@example.com" || got[0].To[0] != "ada@example.com" {
		t.Errorf("envelope = %q -> %v", got[0].From, got[0].To)
	}
	if !strings.Contains(got[0].Data, "Extension number: 1001") || !strings.Contains(got[0].Data, "Hello Ada Lovelace") {
		t.Errorf("body lacks the extension:\n%s", got[0].Data)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg   mail.Config
		field string
	}{
		{mail.Config{Port: 25, From: "a@b.c", TLS: "none"}, "host"},
		{mail.Config{Host: "h", Port: 70000, From: "a@b.c", TLS: "none"}, "port"},
		{mail.Config{Host: "h", From: "nope", TLS: "none"}, "from"},
		{mail.Config{Host: "h", From: "a@b.c", TLS: "ssl3"}, "tls"},
	} {
		err := tc.cfg.Validate()
		fe, ok := err.(*mail.FieldError)
		if !ok || fe.Field != tc.field {
			t.Errorf("Validate(%+v) = %v, want a field error on %s", tc.cfg, err, tc.field)
		}
	}
}

func TestSendNotConfigured(t *testing.T) {
	if err := (mail.Sender{}).Send(t.Context(), mail.Config{}, mail.Message{To: "a@b.c"}); err != mail.ErrNotConfigured {
		t.Fatalf("err = %v", err)
	}
}
