package syncer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/mail"
)

// SMTPSettings are the PBX's SMTP settings as the API shows them (the
// password is never returned).
type SMTPSettings struct {
	Host        string `json:"host"`
	Port        int    `json:"port"`
	Username    string `json:"username"`
	From        string `json:"from"`
	TLS         string `json:"tls"`
	HasPassword bool   `json:"hasPassword"`
}

// SMTPInput is a PUT of the SMTP settings. Password nil keeps the stored one;
// "" clears it.
type SMTPInput struct {
	Host     string  `json:"host"`
	Port     int     `json:"port"`
	Username string  `json:"username"`
	Password *string `json:"password"`
	From     string  `json:"from"`
	TLS      string  `json:"tls"`
}

type smtpDoc struct {
	SMTPSettings
	Sealed []byte `json:"passwordSealed,omitempty"` // sealed with pbx.Service.Keys
}

// SMTP returns the stored SMTP settings (store.ErrNotFound when never set).
func (e *Engine) SMTP(ctx context.Context, pbx string) (SMTPSettings, error) {
	d, err := e.smtpDoc(ctx, pbx)
	return d.SMTPSettings, err
}

func (e *Engine) smtpDoc(ctx context.Context, pbx string) (smtpDoc, error) {
	var d smtpDoc
	b, err := e.Store.GetSetting(ctx, pbx, keySMTP)
	if err != nil {
		return d, err
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return d, fmt.Errorf("syncer: stored SMTP settings: %w", err)
	}
	d.HasPassword = len(d.Sealed) > 0
	return d, nil
}

// SaveSMTP validates and stores the SMTP settings; the password is sealed at rest.
func (e *Engine) SaveSMTP(ctx context.Context, pbx, actor string, in SMTPInput) (SMTPSettings, error) {
	if in.TLS == "" {
		in.TLS = mail.TLSStartTLS
	}
	cfg := mail.Config{Host: in.Host, Port: in.Port, Username: in.Username, From: in.From, TLS: in.TLS}
	if err := cfg.Validate(); err != nil {
		var mfe *mail.FieldError
		if errors.As(err, &mfe) {
			return SMTPSettings{}, &directory.FieldError{Field: mfe.Field, Code: "invalid", Reason: mfe.Reason}
		}
		return SMTPSettings{}, err
	}
	var out smtpDoc
	err := e.Store.UpdateSetting(ctx, pbx, keySMTP, func(old []byte) ([]byte, error) {
		var prev smtpDoc
		if old != nil {
			_ = json.Unmarshal(old, &prev)
		}
		out = smtpDoc{SMTPSettings: SMTPSettings{Host: in.Host, Port: in.Port, Username: in.Username, From: in.From, TLS: in.TLS}, Sealed: prev.Sealed}
		if in.Password != nil {
			out.Sealed = nil
			if *in.Password != "" {
				out.Sealed = e.PBX.Keys.Seal([]byte(*in.Password))
			}
		}
		return json.Marshal(out)
	})
	if err != nil {
		return SMTPSettings{}, err
	}
	out.HasPassword = len(out.Sealed) > 0
	e.PBX.Audit(ctx, pbx, actor, "smtp.save", in.Host, "")
	return out.SMTPSettings, nil
}

func (e *Engine) mailConfig(ctx context.Context, pbx string) (mail.Config, error) {
	d, err := e.smtpDoc(ctx, pbx)
	if err != nil {
		return mail.Config{}, err
	}
	cfg := mail.Config{Host: d.Host, Port: d.Port, Username: d.Username, From: d.From, TLS: d.TLS}
	if len(d.Sealed) > 0 {
		p, err := e.PBX.Keys.Open(d.Sealed)
		if err != nil {
			return cfg, fmt.Errorf("opening the SMTP password: %w", err)
		}
		cfg.Password = string(p)
	}
	return cfg, nil
}
