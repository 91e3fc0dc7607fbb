//go:build e2e

// Browser test: Debian's chromium, driven by chromedp, clicks through the
// web client's Microsoft sign-in against the simulated tenant.
//
//	go test -tags e2e -run TestBrowserWebSignIn ./internal/sso/
//
// CHROMIUM overrides the browser path (default /usr/bin/chromium).
package sso_test

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/switchboard-pbx/switchboard/internal/directory"
)

func TestBrowserWebSignIn(t *testing.T) {
	e := newEnv(t)
	e.connect()
	// The simulated tenant signs the first Global Administrator in when no login_hint is given.
	admin := e.tenant.Admin()
	x := &directory.Extension{Number: "2001", FirstName: "Ada", LastName: "Admin", Email: admin.Mail, Source: directory.SourceEntra, EntraID: admin.ID}
	if err := e.pbx.CreateExtension(t.Context(), directory.DefaultPBX, "sync", x); err != nil {
		t.Fatal(err)
	}
	pb := &directory.Phonebook{Name: "Company", Source: directory.SourceLocal}
	if err := e.store.CreatePhonebook(t.Context(), directory.DefaultPBX, pb); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"Grace", "Linus"} {
		if err := e.store.CreateContact(t.Context(), directory.DefaultPBX, &directory.Contact{PhonebookID: pb.ID, FirstName: n, LastName: "Contact", Business: "+1 555 0100", Source: directory.SourceLocal}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.store.SetVisibility(t.Context(), directory.DefaultPBX, pb.ID, []directory.Visibility{{PhonebookID: pb.ID, Kind: directory.VisibleToEveryone}}); err != nil {
		t.Fatal(err)
	}

	exe := os.Getenv("CHROMIUM")
	if exe == "" {
		exe = "/usr/bin/chromium"
	}
	if _, err := os.Stat(exe); err != nil {
		t.Fatalf("chromium not found at %s (apt-get install -y chromium): %v", exe, err)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(t.Context(), chromedp.ExecPath(exe), chromedp.Headless, chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.Flag("disable-extensions", true))
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	do := func(steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			loc, _ := chromedp.Run(ctx, chromedp.Location())
			t.Fatalf("browser: %v (at %s)", err, loc)
		}
	}
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector(`+jsString(sel)+`) || {innerText: ''}).innerText`))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return v
	}
	// until polls a JavaScript condition (a poll during a navigation is retried).
	until := func(what, cond string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			if ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](cond)); err == nil && ok {
				return
			}
			select {
			case <-ctx.Done():
				t.Fatalf("waiting for %s: %v", what, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		t.Fatalf("waiting for %s: timed out at %s: %s", what, loc, text("body"))
	}

	// Sign in: the sign-in page's "Sign in with Microsoft" button, through the tenant, back to the web client.
	do(chromedp.Navigate(e.srv.URL+"/client/"), chromedp.WaitVisible(chromedp.CSS("#sso")), chromedp.Click(chromedp.CSS("#sso")))
	until("the web client page", `!!document.getElementById('number')`)
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	if number, name := text("#number"), text("#name"); !strings.HasSuffix(loc, "/client/app") || number != "2001" || !strings.Contains(name, "Ada") {
		t.Fatalf("web client after Microsoft sign-in: at %s number=%q name=%q", loc, number, name)
	}
	if c := text("#contacts"); !strings.Contains(c, "Grace") || !strings.Contains(c, "Linus") {
		t.Fatalf("contacts: %q", c)
	}
	// The presence switcher applies on change (app.js).
	_, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => { const s = document.getElementById('presence'); s.value = 'away';
		s.dispatchEvent(new Event('change', {bubbles: true})); return true; })()`))
	if err != nil {
		t.Fatal(err)
	}
	until("the presence notice", `(document.querySelector('.notice') || {textContent: ''}).textContent.includes('Away')`)
	if got, _ := e.store.GetExtension(t.Context(), directory.DefaultPBX, x.ID); got.Presence != directory.PresenceAway {
		t.Fatalf("stored presence: %s", got.Presence)
	}
	// The contacts search filters.
	_, err = chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => { const q = document.querySelector('input[name=q]'); q.value = 'linus';
		q.form.submit(); return true; })()`))
	if err != nil {
		t.Fatal(err)
	}
	until("the filtered contacts", `location.search.includes('q=linus') && !!document.getElementById('contacts')`)
	if c := text("#contacts"); !strings.Contains(c, "Linus") || strings.Contains(c, "Grace") {
		t.Fatalf("filtered contacts: %q", c)
	}
}

func jsString(s string) string { b, _ := json.Marshal(s); return string(b) }
