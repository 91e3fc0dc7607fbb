package syncer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/mail"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// The welcome-email outbox. Every apply batch that creates extensions with
// an email writes their messages into the outbox in the batch's own
// transaction (store.ExtensionChanges.Settings), welcomeChunk per key
// "sync.welcome.<run>.<batch>.<chunk>". At the end of every applying run the
// outbox is drained, under the run's lease: a chunk is claimed (marked
// sending, fenced), sent as one SMTP session and deleted. So:
//
//   - an instance that dies between apply and send leaves its chunks in the
//     outbox, and the next run sends them;
//   - nothing is sent twice: a chunk claimed by a run that stopped while
//     sending it may or may not have gone out; the next run does not resend
//     it but reports its recipients (run note, audit entry
//     sync.welcome.unknown);
//   - a failed send is reported and not retried (an SMTP session can fail
//     after some recipients got the message).
const (
	keyWelcomePrefix = "sync.welcome."
	welcomeChunk     = 20
)

type welcomeEntry struct {
	Email     string `json:"email"`
	FirstName string `json:"firstName,omitempty"`
	LastName  string `json:"lastName,omitempty"`
	Number    string `json:"number"`
}

type outboxDoc struct {
	To      []welcomeEntry `json:"to"`
	Sending string         `json:"sending,omitempty"` // the run that claimed the chunk
	At      time.Time      `json:"at"`
}

// outbox returns the outbox settings for the created actions among acts
// (nil when none has an email); tag makes the keys unique within the run.
func (e *Engine) outbox(run, tag string, acts []Action) map[string][]byte {
	var to []welcomeEntry
	for _, a := range acts {
		if a.Op == OpCreate && a.ext != nil && a.ext.Email != "" {
			to = append(to, welcomeEntry{Email: a.ext.Email, FirstName: a.ext.FirstName, LastName: a.ext.LastName, Number: a.ext.Number})
		}
	}
	if len(to) == 0 {
		return nil
	}
	m := map[string][]byte{}
	for i := 0; i < len(to); i += welcomeChunk {
		b, _ := json.Marshal(outboxDoc{To: to[i:min(i+welcomeChunk, len(to))], At: e.now()})
		m[fmt.Sprintf("%s%s.%s.%04d", keyWelcomePrefix, run, tag, i/welcomeChunk)] = b
	}
	return m
}

var errClaimed = errors.New("the outbox chunk is gone or claimed")

// welcomeMail returns the SMTP settings welcome emails go out with, or why
// they cannot go out now ("" when they can).
func (e *Engine) welcomeMail(ctx context.Context, pbx string, on bool) (mail.Config, string) {
	switch {
	case !on:
		return mail.Config{}, "welcome email is switched off"
	case e.Mailer == nil:
		return mail.Config{}, "no mailer is configured"
	}
	cfg, err := e.mailConfig(ctx, pbx)
	if errors.Is(err, store.ErrNotFound) {
		return cfg, "SMTP is not configured (PUT /api/v1/smtp)"
	} else if err != nil {
		return cfg, err.Error()
	}
	return cfg, ""
}

// drainWelcome sends what the outbox holds (this run's chunks and any left
// by runs that stopped before sending) with cfg, or drops it for reason
// (welcomeMail's answers).
func (e *Engine) drainWelcome(ctx context.Context, pbx string, w *Run, cfg mail.Config, reason string) {
	all, err := e.Store.ListSettings(ctx, pbx, keyWelcomePrefix)
	if err != nil {
		w.note("welcome emails not sent now: reading the outbox failed (%v); the next run sends them", err)
		return
	}
	if len(all) == 0 {
		return
	}
	fence := e.leaseFence(w.ID)
	drop := func(k string) error {
		return e.Store.UpdateSettingFenced(ctx, pbx, k, fence, func([]byte) ([]byte, error) { return nil, nil })
	}
	name := ""
	if p, err := e.Store.GetPBX(ctx, pbx); err == nil {
		name = p.Name
	}
	var unknown []string
	dropped := 0
	for _, k := range slices.Sorted(maps.Keys(all)) {
		var d outboxDoc
		if err := json.Unmarshal(all[k], &d); err != nil {
			w.note("welcome emails: dropped an unreadable outbox entry %s", k)
			_ = drop(k)
			continue
		}
		if d.Sending != "" || reason != "" {
			if err := drop(k); err != nil {
				break // lease lost or the store failing: the next run sees the entry
			}
			if d.Sending != "" {
				for _, x := range d.To {
					unknown = append(unknown, x.Email)
				}
			} else {
				dropped += len(d.To)
			}
			continue
		}
		err := e.Store.UpdateSettingFenced(ctx, pbx, k, fence, func(old []byte) ([]byte, error) {
			var cur outboxDoc
			if old == nil || json.Unmarshal(old, &cur) != nil || cur.Sending != "" {
				return nil, errClaimed
			}
			cur.Sending = w.ID
			return json.Marshal(cur)
		})
		if errors.Is(err, errClaimed) {
			continue
		}
		if err != nil {
			w.note("welcome emails: stopped sending (%v); the next run sends the rest", err)
			break
		}
		msgs := make([]mail.Message, len(d.To))
		for i, x := range d.To {
			msgs[i] = mail.WelcomeMessage(mail.Welcome{To: x.Email, FirstName: x.FirstName, LastName: x.LastName, Number: x.Number, PBXName: name, PortalURL: e.PortalURL})
		}
		sendErr := e.Mailer.Send(ctx, cfg, msgs...)
		// Sent or failed, the chunk is done; if this delete fails, the next
		// run reports it as possibly unsent instead of sending it again.
		_ = drop(k)
		if sendErr != nil {
			w.note("welcome emails to %d users not sent: %v", len(d.To), sendErr)
			continue
		}
		w.WelcomeEmails += len(d.To)
	}
	if dropped > 0 {
		w.note("welcome emails to %d users not sent: %s", dropped, reason)
	}
	if len(unknown) > 0 {
		list := strings.Join(unknown[:min(len(unknown), 20)], ", ")
		if len(unknown) > 20 {
			list += fmt.Sprintf(" and %d more", len(unknown)-20)
		}
		w.note("welcome emails to %d users may not have been sent: a run stopped while sending them; they are not sent again, so that nobody gets two (%s)", len(unknown), list)
		e.PBX.Audit(ctx, pbx, "system", "sync.welcome.unknown", w.ID, fmt.Sprintf("%d welcome emails may not have been sent: %s", len(unknown), strings.Join(unknown, ", ")))
	}
}
