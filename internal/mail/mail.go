// Package mail sends Switchboard's email: the welcome email a newly created
// extension's user receives, through the PBX's SMTP settings. It speaks SMTP
// with github.com/wneessen/go-mail; package mailtest runs a real in-process
// SMTP server for tests.
package mail

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"
)

// TLS modes of an SMTP server.
const (
	TLSNone     = "none"     // plain SMTP (test servers, local relays)
	TLSStartTLS = "starttls" // STARTTLS required
	TLSImplicit = "tls"      // implicit TLS (SMTPS, usually port 465)
)

// Config is how to reach the PBX's SMTP server.
type Config struct {
	Host     string `json:"host"`
	Port     int    `json:"port"`
	Username string `json:"username"`
	Password string `json:"-"` // plain text only in memory
	From     string `json:"from"`
	TLS      string `json:"tls"` // none | starttls | tls
	// Timeout bounds connecting and each SMTP command (default 15 s).
	Timeout time.Duration `json:"-"`
}

// Message is one email.
type Message struct {
	To      string
	Subject string
	Body    string // text/plain
}

// ErrNotConfigured: no SMTP server is configured.
var ErrNotConfigured = errors.New("mail: SMTP is not configured")

// Sender sends messages through an SMTP server.
type Sender struct{}

// Send delivers msgs over one SMTP connection. It returns the first error;
// messages before it were delivered.
func (Sender) Send(ctx context.Context, cfg Config, msgs ...Message) error {
	if cfg.Host == "" || cfg.From == "" {
		return ErrNotConfigured
	}
	if len(msgs) == 0 {
		return nil
	}
	opts := []gomail.Option{gomail.WithTimeout(cfg.timeout())}
	if cfg.Port > 0 {
		opts = append(opts, gomail.WithPort(cfg.Port))
	}
	switch cfg.TLS {
	case TLSImplicit:
		opts = append(opts, gomail.WithSSL())
	case TLSStartTLS:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	default:
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	}
	if cfg.Username != "" {
		opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthAutoDiscover),
			gomail.WithUsername(cfg.Username), gomail.WithPassword(cfg.Password))
	}
	c, err := gomail.NewClient(cfg.Host, opts...)
	if err != nil {
		return fmt.Errorf("mail: %w", err)
	}
	out := make([]*gomail.Msg, 0, len(msgs))
	for _, m := range msgs {
		gm := gomail.NewMsg()
		if err := gm.From(cfg.From); err != nil {
			return fmt.Errorf("mail: from %q: %w", cfg.From, err)
		}
		if err := gm.To(m.To); err != nil {
			return fmt.Errorf("mail: to %q: %w", m.To, err)
		}
		gm.Subject(m.Subject)
		gm.SetDate()
		gm.SetMessageID()
		gm.SetBodyString(gomail.TypeTextPlain, m.Body)
		out = append(out, gm)
	}
	if err := c.DialAndSendWithContext(ctx, out...); err != nil {
		return fmt.Errorf("mail: send via %s: %w", cfg.Host, err)
	}
	return nil
}

func (c Config) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return 15 * time.Second
}

// Validate checks the settings and names the first bad field.
func (c Config) Validate() error {
	switch {
	case strings.TrimSpace(c.Host) == "":
		return fieldError("host", "is required")
	case c.Port < 0 || c.Port > 65535:
		return fieldError("port", "must be between 1 and 65535 (0 = the default for the TLS mode)")
	case !validAddr(c.From):
		return fieldError("from", "must be an email address")
	}
	switch c.TLS {
	case TLSNone, TLSStartTLS, TLSImplicit:
	default:
		return fieldError("tls", "must be none, starttls or tls")
	}
	return nil
}

func validAddr(s string) bool {
	at := strings.LastIndexByte(s, '@')
	return at > 0 && at < len(s)-1 && !strings.ContainsAny(s, " \r\n<>,;")
}

// FieldError names a bad SMTP setting; callers map it to their own field errors.
type FieldError struct{ Field, Reason string }

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

func fieldError(f, r string) error { return &FieldError{Field: f, Reason: r} }

// Welcome is the welcome email for a new extension.
type Welcome struct {
	To, FirstName, LastName, Number, PBXName, PortalURL string
}

// WelcomeMessage renders the welcome email.
func WelcomeMessage(w Welcome) Message {
	name := strings.TrimSpace(w.FirstName + " " + w.LastName)
	if name == "" {
		name = w.To
	}
	pbx := w.PBXName
	if pbx == "" {
		pbx = "your company's phone system"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Hello %s,\n\n", name)
	fmt.Fprintf(&b, "An extension has been created for you on %s.\n\n", pbx)
	fmt.Fprintf(&b, "  Extension number: %s\n", w.Number)
	fmt.Fprintf(&b, "  Sign in with:     your Microsoft 365 account (%s)\n\n", w.To)
	if w.PortalURL != "" {
		fmt.Fprintf(&b, "Open the web client at %s\n\n", w.PortalURL)
	}
	b.WriteString("This message was sent automatically by Switchboard.\n")
	return Message{To: w.To, Subject: fmt.Sprintf("Welcome: your extension %s is ready", w.Number), Body: b.String()}
}
