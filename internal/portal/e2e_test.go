//go:build e2e

// Browser tests: Debian's chromium driven by chromedp against the portal
// and the admin API on one root mux, connected to a simulated tenant.
//
//	go test -tags e2e -run TestBrowser ./internal/portal/
//
// SWITCHBOARD_SCREENSHOTS=DIR keeps the screenshots (1280 px wide, 128
// colours) in DIR, relative to the module root unless absolute: the docs'
// set is made with SWITCHBOARD_SCREENSHOTS=docs/screenshots;
// CHROMIUM overrides the browser path (default /usr/bin/chromium).
package portal_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/switchboard-pbx/switchboard/internal/api"
	"github.com/switchboard-pbx/switchboard/internal/contactsync"
	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/graph"
	"github.com/switchboard-pbx/switchboard/internal/integration"
	"github.com/switchboard-pbx/switchboard/internal/mail"
	"github.com/switchboard-pbx/switchboard/internal/portal"
	"github.com/switchboard-pbx/switchboard/internal/presence"
	"github.com/switchboard-pbx/switchboard/internal/schedule"
	"github.com/switchboard-pbx/switchboard/internal/sim"
	"github.com/switchboard-pbx/switchboard/internal/sso"
	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/syncer"
)

const (
	simTenantID     = "6b1a0a54-8f0e-4c7c-9d1b-2f0e8c1d9a01"
	simClientID     = "0f4e6c2a-3b5d-4e7f-8a9b-1c2d3e4f5a6b"
	simClientSecret = "sim~Secret.Value_0123456789abcdef"
)

// browser is one headless chromium tab with test helpers that fail the test.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string
	shot string // screenshot folder
	keep bool   // the screenshots are kept (for the docs): make them small

	mu       sync.Mutex
	problems []string // script exceptions and console errors (CSP violations included)
}

func newBrowser(t *testing.T, base string) *browser {
	t.Helper()
	exe := os.Getenv("CHROMIUM")
	if exe == "" {
		exe = "/usr/bin/chromium"
	}
	if _, err := os.Stat(exe); err != nil {
		t.Fatalf("chromium not found at %s (apt-get install -y chromium): %v", exe, err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true), chromedp.Flag("disable-default-apps", true),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(t.Context(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 100*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	dir, keep := screenshotDir(t)
	b := &browser{t: t, ctx: ctx, base: base, shot: dir, keep: keep}
	b.do(chromedp.EmulateViewport(1280, 900))
	// Collect what the page reports wrong: uncaught exceptions and console
	// errors other than failed requests (the tests provoke 4xx answers).
	if err := chromedp.Listen(ctx, func(ev any) {
		var msg string
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			msg = "exception: " + ev.ExceptionDetails.Text
			if ev.ExceptionDetails.Exception != nil {
				msg += " " + ev.ExceptionDetails.Exception.Description
			}
		case *cdplog.EventEntryAdded:
			if ev.Entry.Level == cdplog.EntryLevelError && ev.Entry.Source != cdplog.EntrySourceNetwork {
				msg = string(ev.Entry.Source) + ": " + ev.Entry.Text
			}
		}
		if msg != "" {
			b.mu.Lock()
			b.problems = append(b.problems, msg)
			b.mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, cdplog.Enable, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.t.Fatalf("browser: %v (at %s)", err, b.location())
	}
}

func (b *browser) location() string {
	loc, _ := chromedp.Run(b.ctx, chromedp.Location())
	return loc
}

func (b *browser) open(path string) {
	b.t.Helper()
	b.do(chromedp.Navigate(b.base + path))
}

func js(v any) string { s, _ := json.Marshal(v); return string(s) }

// eval runs a JavaScript expression and returns its value.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("eval %s: %v", expr, err)
	}
	return v
}

// evalAwait runs an expression that yields a promise and returns its value.
func evalAwait[T any](b *browser, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("eval %s: %v", expr, err)
	}
	return v
}

// until polls a JavaScript condition (every 50 ms, 15 s at most). A poll
// that fails because the page is navigating is retried.
func (b *browser) until(what, cond string) {
	b.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for time.Now().Before(deadline) {
		ok, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](cond))
		if err == nil && ok {
			return
		}
		lastErr = err
		select {
		case <-b.ctx.Done():
			b.t.Fatalf("waiting for %s: %v", what, b.ctx.Err())
		case <-tick.C:
		}
	}
	body, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText.slice(0, 1500) : ''`))
	toast, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`(document.getElementById('toast') || {textContent: ''}).textContent`))
	b.t.Fatalf("waiting for %s: timed out (last error %v)\nat %s\ntoast: %q\n%s", what, lastErr, b.location(), toast, body)
}

// waitText waits until the element's text contains want.
func (b *browser) waitText(sel, want string) {
	b.t.Helper()
	b.until(fmt.Sprintf("%s to read %q", sel, want),
		fmt.Sprintf(`(() => { const e = document.querySelector(%s); return !!e && e.textContent.includes(%s); })()`, js(sel), js(want)))
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	return eval[string](b, fmt.Sprintf(`(document.querySelector(%s) || {textContent: ''}).textContent`, js(sel)))
}

// click clicks the element once visible. The toast is emptied first, so
// that a wait for the toast that follows sees this click's answer, never
// the one before.
func (b *browser) click(sel string) {
	b.t.Helper()
	b.do(chromedp.WaitVisible(chromedp.CSS(sel)))
	eval[bool](b, `(() => { const t = document.getElementById('toast'); if (t) t.textContent = ''; return true; })()`)
	b.do(chromedp.Click(chromedp.CSS(sel)))
}

// fill sets a field's value the way typing would (input events included).
func (b *browser) fill(sel, value string) {
	b.t.Helper()
	b.do(chromedp.WaitVisible(chromedp.CSS(sel)))
	eval[bool](b, fmt.Sprintf(`(() => { const e = document.querySelector(%s); e.value = %s;
		e.dispatchEvent(new Event('input', {bubbles: true})); e.dispatchEvent(new Event('change', {bubbles: true})); return true; })()`, js(sel), js(value)))
}

// screenshot saves the viewport, or with full the whole page (PNG). The
// toast is hidden first (it belongs to the step before, not the page).
// Screenshots kept for the docs (SWITCHBOARD_SCREENSHOTS) are reduced to
// 128 colours so that the committed files stay small.
func (b *browser) screenshot(name string, full bool) string {
	b.t.Helper()
	eval[bool](b, `(() => { const t = document.getElementById('toast'); if (t) { t.style.transition = 'none'; t.classList.remove('show'); } return true; })()`)
	b.do(chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, 1, 1)) // no hover highlight
	shot := chromedp.CaptureScreenshot()
	if full {
		shot = chromedp.FullScreenshot(100)
	}
	img, err := chromedp.Run(b.ctx, shot)
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	eval[bool](b, `(() => { const t = document.getElementById('toast'); if (t) t.style.transition = ''; return true; })()`)
	if b.keep {
		if img, err = quantize(img); err != nil {
			b.t.Fatalf("screenshot %s: %v", name, err)
		}
	}
	p := filepath.Join(b.shot, name+".png")
	if err := os.WriteFile(p, img, 0o644); err != nil {
		b.t.Fatal(err)
	}
	return p
}

// scrollTo scrolls the page so that the element sits just below the top bar.
func (b *browser) scrollTo(sel string) {
	b.t.Helper()
	b.do(chromedp.WaitVisible(chromedp.CSS(sel)))
	eval[bool](b, fmt.Sprintf(`(() => { const e = document.querySelector(%s); window.scrollTo(0, e.getBoundingClientRect().top + window.scrollY - 72); return true; })()`, js(sel)))
}

// quantize re-encodes a PNG with a palette of at most 128 colours: the most
// frequent ones, skipping colours close to one already chosen so that rare
// accents (a red badge) keep a colour of their own. UI screenshots are flat
// enough that no dithering is needed.
func quantize(src []byte) ([]byte, error) {
	const maxColors = 128
	img, err := png.Decode(bytes.NewReader(src))
	if err != nil {
		return nil, err
	}
	bounds := img.Bounds()
	rgba := image.NewRGBA(bounds)
	draw.Draw(rgba, bounds, img, bounds.Min, draw.Src)
	counts := map[color.RGBA]int{}
	for i := 0; i < len(rgba.Pix); i += 4 {
		counts[color.RGBA{rgba.Pix[i], rgba.Pix[i+1], rgba.Pix[i+2], 255}]++
	}
	byCount := make([]color.RGBA, 0, len(counts))
	for c := range counts {
		byCount = append(byCount, c)
	}
	slices.SortFunc(byCount, func(a, b color.RGBA) int {
		if d := counts[b] - counts[a]; d != 0 {
			return d
		}
		return int(a.R)<<16 + int(a.G)<<8 + int(a.B) - (int(b.R)<<16 + int(b.G)<<8 + int(b.B))
	})
	dist := func(a, b color.RGBA) int {
		dr, dg, db := int(a.R)-int(b.R), int(a.G)-int(b.G), int(a.B)-int(b.B)
		return dr*dr + dg*dg + db*db
	}
	var pal color.Palette
	for _, minDist := range []int{300, 100, 30, 0} { // coarse first, then fill up
		for _, c := range byCount {
			if len(pal) == maxColors {
				break
			}
			near := false
			for _, p := range pal {
				if d := dist(c, p.(color.RGBA)); d <= minDist {
					near = true
					break
				}
			}
			if !near {
				pal = append(pal, c)
			}
		}
	}
	out := image.NewPaletted(bounds, pal)
	index := map[color.RGBA]uint8{}
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		for x := bounds.Min.X; x < bounds.Max.X; x++ {
			i := rgba.PixOffset(x, y)
			c := color.RGBA{rgba.Pix[i], rgba.Pix[i+1], rgba.Pix[i+2], 255}
			k, ok := index[c]
			if !ok {
				k = uint8(pal.Index(c))
				index[c] = k
			}
			out.SetColorIndex(x, y, k)
		}
	}
	var buf bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestCompression}).Encode(&buf, out); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// screenshotDir is where screenshots go: SWITCHBOARD_SCREENSHOTS (a
// relative path is taken from the module root, so that
// SWITCHBOARD_SCREENSHOTS=docs/screenshots works from anywhere), or a
// temporary folder. keep reports whether they are kept.
func screenshotDir(t *testing.T) (dir string, keep bool) {
	dir = os.Getenv("SWITCHBOARD_SCREENSHOTS")
	if dir == "" {
		return t.TempDir(), false
	}
	if !filepath.IsAbs(dir) {
		root, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
				break
			}
			parent := filepath.Dir(root)
			if parent == root {
				t.Fatalf("SWITCHBOARD_SCREENSHOTS=%s: no go.mod above the test's folder", dir)
			}
			root = parent
		}
		dir = filepath.Join(root, dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir, true
}

// e2eEnv adds the simulated tenant and the integration service to env.
func newE2EEnv(t *testing.T) (*env, *sim.Tenant, *presence.Service) {
	t.Helper()
	tenant, err := sim.New(sim.Config{TenantID: simTenantID, ClientID: simClientID, ClientSecret: simClientSecret, Users: 20, Groups: 3, Seed: 11,
		Latency: 40 * time.Millisecond}) // slow enough to watch a run in progress
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tenant.Close)
	simSrv := httptest.NewServer(tenant.Handler())
	t.Cleanup(simSrv.Close)
	var svc *integration.Service
	var ssoSvc *sso.Service
	var presenceSvc *presence.Service
	e := newEnv(t, func(_ *portal.Config, s *api.Server) {
		svc = &integration.Service{Store: s.Store, PBX: s.PBX, Keys: s.Keys, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			GraphURL: simSrv.URL, LoginURL: simSrv.URL}
		s.Integration = svc
		eng := &syncer.Engine{Store: s.Store, PBX: s.PBX, Graph: svc, Mailer: mail.Sender{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
		// As the service wires it: an identity-platform refusal puts the
		// integration in error; a successful run clears it.
		eng.Finished = func(ctx context.Context, pbx string, run *syncer.Run, err error) {
			var ae *graph.AuthError
			switch {
			case errors.As(err, &ae):
				svc.ReportFailure(ctx, pbx, err)
			case err == nil && run.State == syncer.StateSucceeded:
				svc.Clear(ctx, pbx)
			}
		}
		t.Cleanup(eng.Wait)
		s.Syncer = eng
		s.Schedule = &schedule.Service{Store: s.Store, Integration: svc, Runner: runnerFunc(func() *syncer.Engine { return eng }), Logger: s.Logger}
		ssoSvc = &sso.Service{Store: s.Store, Keys: s.Keys, Integration: svc, PBX: s.PBX, Logger: s.Logger, LoginURL: simSrv.URL}
		s.SSO = ssoSvc
		presenceSvc = &presence.Service{Store: s.Store, Graph: svc, Logger: s.Logger}
		s.Presence = presenceSvc
		s.Contacts = &contactsync.Service{Store: s.Store, Graph: svc, Logger: s.Logger}
	})
	svc.BaseURL = e.srv.URL
	ssoSvc.BaseURL = e.srv.URL
	if err := tenant.AddRedirectURI(svc.RedirectURI()); err != nil {
		t.Fatal(err)
	}
	return e, tenant, presenceSvc
}

// waitFor polls a condition on the service's side (every 20 ms, 15 s at most).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: timed out", what)
		}
		<-tick.C
	}
}

// runnerFunc lets the schedule trigger the sync engine.
type runnerFunc func() *syncer.Engine

func (f runnerFunc) Trigger(ctx context.Context, pbx, reason string) error {
	_, err := f().Start(ctx, pbx, syncer.RunOptions{Trigger: reason})
	return err
}

func TestBrowser(t *testing.T) {
	start := time.Now()
	e, tenant, presenceSvc := newE2EEnv(t)
	ctx := t.Context()
	b := newBrowser(t, e.srv.URL)

	// --- Sign in. A wrong password first: the page says so.
	b.open("/")
	b.waitText("h1", "Sign in")
	b.screenshot("login", false)
	b.fill("#username", adminUser)
	b.fill("#password", "not the password")
	b.click(`#login-form button[type=submit]`)
	b.waitText("#login-error", "Wrong username or password")
	b.fill("#password", adminPass)
	b.click(`#login-form button[type=submit]`)
	b.waitText("#status-badge", "Not connected")
	if loc := b.location(); loc != e.srv.URL+"/integrations/microsoft" {
		t.Fatalf("after sign-in at %s", loc)
	}
	b.waitText(".who", adminUser)

	// --- The integration page before connecting: what to do, the redirect URIs.
	b.waitText("#status-help", "Register an application")
	if got := eval[string](b, `document.getElementById('redirect-uri').value`); got != e.srv.URL+integration.CallbackPath {
		t.Fatalf("redirect URI shown: %q", got)
	}
	if got := eval[string](b, `document.getElementById('sso-redirect-uri').value`); !strings.HasPrefix(got, e.srv.URL) {
		t.Fatalf("SSO redirect URI shown: %q", got)
	}
	// Field-level validation from the API: a malformed tenant id.
	b.fill("#clientId", simClientID)
	b.fill("#tenantId", "not-a-guid")
	b.fill("#clientSecret", simClientSecret)
	b.click("#connect-btn")
	b.until("the tenant id error", `document.getElementById('tenantId-error').textContent.length > 0 || document.querySelector('#connect-form .form-error').textContent.length > 0`)

	// --- Connect through the browser: the simulated tenant signs in at once.
	b.fill("#tenantId", simTenantID)
	b.click("#connect-btn")
	b.waitText("h1", "Connected to Microsoft Entra ID")
	b.click("a[href='/integrations/microsoft']")
	b.waitText("#status-badge", "Connected")
	b.waitText("#status-text", "Connected")
	b.until("the authorization account", `!document.getElementById('account-row').hidden`)
	if eval[bool](b, `document.getElementById('clientId').readOnly`) != true {
		t.Error("the client id is editable while connected")
	}
	b.screenshot("integration", false)

	// Update the client secret through its dialog.
	b.click("#secret-open")
	b.fill("#newSecret", simClientSecret)
	b.click("#secret-form button[type=submit]")
	b.waitText("#toast", "Client secret updated")
	b.until("the dialog to close", `!document.getElementById('secret-dialog').open`)

	// --- User synchronization: a field error from the API, then the first
	// save runs the initial sync with live progress and a report.
	b.waitText("#usersync-title", "User synchronization")
	b.until("the user sync form", `!document.getElementById('usersync-card').hidden`)
	b.click("#u-enabled")
	b.fill("#u-start", "12ab")
	b.click("#usersync-save")
	b.until("the start-number error", `document.getElementById('start-error').textContent.length > 0`)
	b.fill("#u-start", "1000")
	b.click("#usersync-save")
	b.waitText("#toast", "initial synchronization has started")
	b.until("live progress", `!document.getElementById('sync-progress').hidden && document.getElementById('progress-counts').textContent.includes('users read')`)
	b.until("the run report", `!document.getElementById('run-report').hidden && document.getElementById('sync-progress').hidden`)
	b.waitText("#run-report", "Created")
	b.waitText("#runs-table", "initial")
	created, _, err := e.store.ListExtensions(ctx, directory.DefaultPBX, store.ExtensionQuery{Source: directory.SourceEntra, Limit: 1000})
	if err != nil || len(created) == 0 {
		t.Fatalf("the initial sync created no extensions: %v", err)
	}
	b.scrollTo("#sync-card")
	b.screenshot("sync-report", false)

	// Dry run: a preview that changes nothing.
	b.click("#dryrun-btn")
	b.waitText("#run-report", "Dry-run preview")
	// Update now, watched to the end.
	b.click("#sync-btn")
	b.until("live progress of Update now", `!document.getElementById('sync-progress').hidden`)
	b.waitText("#run-report", "Run report")
	b.until("two manual runs in the history", `document.querySelectorAll('#runs-table tbody tr').length >= 3`)

	// --- Group synchronization: range "groups" with the picker; then pause,
	// deleting the synced extension groups.
	b.until("the group sync section", `!document.getElementById('groupsync-card').hidden`)
	b.click("#g-enabled")
	b.fill("#g-range", "type")
	b.click("#groupsync-save")
	b.until("the group type error", `document.querySelector('#groupsync-form .field-error[data-for=groupTypes]').textContent.length > 0`)
	b.fill("#g-range", "groups")
	b.until("the group picker", `document.querySelectorAll('#groupsync-form [data-picker-list] input').length > 0`)
	b.click(`#groupsync-form [data-picker-list] input`)
	b.waitText("#groupsync-form [data-picker-count]", "1 selected")
	b.click("#groupsync-save")
	b.waitText("#toast", "Group synchronization settings saved")
	b.until("the group run to finish", `document.getElementById('sync-progress').hidden`)
	waitFor(t, "a synced extension group", func() bool {
		gs, _ := e.store.ListGroups(ctx, directory.DefaultPBX)
		return len(gs) > 0 && gs[0].Synced()
	})

	// --- The deletion guard: another group with auto delete on would delete
	// the only synced extension group; the run stops until confirmed.
	gs, _ := e.store.ListGroups(ctx, directory.DefaultPBX)
	oldGroup := gs[0]
	b.click(`#groupsync-form input[name=deleteOutOfRange]`)
	b.click(`#groupsync-form [data-picker-list] li:nth-child(1) input`)
	b.click(`#groupsync-form [data-picker-list] li:nth-child(2) input`)
	b.waitText("#groupsync-form [data-picker-count]", "1 selected")
	b.click("#groupsync-save")
	b.waitText("#toast", "Group synchronization settings saved")
	b.until("no run in progress", `document.getElementById('sync-progress').hidden`)
	b.click("#sync-btn")
	b.until("the deletion guard", `!!document.getElementById('confirm-run')`)
	b.waitText("#guard-box", "1 synced extension group")
	b.waitText("#run-report", "Needs confirmation")
	b.waitText("#runs-table", "Needs confirmation")
	if _, err := e.store.GetGroup(ctx, directory.DefaultPBX, oldGroup.ID); err != nil {
		t.Fatalf("the guarded run deleted the group: %v", err)
	}
	b.scrollTo("#run-report")
	b.screenshot("deletion-guard", false)
	b.click("#confirm-run")
	b.waitText("#confirm-text", "Delete 1 synced extension group now?")
	b.click("#confirm-ok")
	b.waitText("#toast", "Confirmed")
	b.until("the confirmed run's report", `!document.getElementById('confirm-run') && /Run report .* Succeeded/.test(document.querySelector('#run-report h3').textContent)`)
	b.waitText("#run-report", "Groups deleted")
	b.waitText("#runs-table", "Confirmed")
	if _, err := e.store.GetGroup(ctx, directory.DefaultPBX, oldGroup.ID); err == nil {
		t.Fatal("the confirmed run kept the deselected group")
	}
	waitFor(t, "the newly chosen group", func() bool {
		gs, _ := e.store.ListGroups(ctx, directory.DefaultPBX)
		return len(gs) == 1 && gs[0].Synced() && gs[0].EntraID != oldGroup.EntraID
	})
	b.click("#g-enabled")
	b.click("#groupsync-save")
	b.click(`#group-pause-dialog input[name=deleteGroups]`)
	b.click("#group-pause-confirm")
	b.waitText("#toast", "Paused")
	b.until("the paused note", `!document.querySelector('#groupsync-form [data-paused-note]').hidden`)
	if gs, _ := e.store.ListGroups(ctx, directory.DefaultPBX); len(gs) != 0 {
		t.Fatalf("pausing with deletion kept %d groups", len(gs))
	}

	// --- Schedule: weekly on chosen days.
	b.until("the schedule form", `!document.getElementById('schedule-form').hidden && document.getElementById('s-time').value !== ''`)
	b.fill("#s-frequency", "weekly")
	b.until("the day checkboxes", `!document.getElementById('s-days').hidden`)
	b.click(`#s-days input[value=monday]`)
	b.click(`#s-days input[value=thursday]`)
	b.fill("#s-time", "02:15")
	b.click("#schedule-form button[type=submit]")
	b.waitText("#toast", "Schedule saved")
	got := evalAwait[map[string]any](b, `fetch('/api/v1/integration/schedule').then(r => r.json())`)
	if got["frequency"] != "weekly" || got["time"] != "02:15" || fmt.Sprint(got["days"]) != "[monday thursday]" {
		t.Fatalf("schedule stored: %v", got)
	}

	// --- Single sign-on settings.
	b.until("the SSO section", `!document.getElementById('sso-card').hidden`)
	b.click("#sso-enabled")
	b.fill("#sso-mode", "sso_only")
	b.click("#sso-form button[type=submit]")
	b.waitText("#toast", "Single sign-on settings saved")
	if st := evalAwait[map[string]any](b, `fetch('/api/v1/integration/sso').then(r => r.json())`); st["enabled"] != true || st["loginMode"] != "sso_only" {
		t.Fatalf("SSO settings stored: %v", st)
	}

	// --- Teams presence and Outlook contacts: settings sections.
	b.until("the presence section", `!document.getElementById('presence-card').hidden`)
	b.click("#presence-enabled")
	b.fill("#presence-direction", "two-way")
	b.click("#presence-form button[type=submit]")
	b.waitText("#toast", "Teams presence settings saved")
	if st := evalAwait[map[string]any](b, `fetch('/api/v1/integration/presence-sync').then(r => r.json())`); st["enabled"] != true || st["direction"] != "two-way" {
		t.Fatalf("presence settings stored: %v", st)
	}
	b.until("the contacts section", `!document.getElementById('contacts-card').hidden`)
	b.click(`#contacts-form input[name="personal.enabled"]`)
	b.fill("#c-shared-book", "Company directory")
	b.click(`#contacts-form input[name="sharedMailboxes.enabled"]`)
	b.click("#contacts-form button[type=submit]")
	b.waitText("#toast", "Contacts settings saved")
	cs := evalAwait[map[string]any](b, `fetch('/api/v1/integration/contacts-sync').then(r => r.json())`)
	pers, _ := cs["personal"].(map[string]any)
	shared, _ := cs["sharedMailboxes"].(map[string]any)
	if pers["enabled"] != true || shared["enabled"] != true || shared["phonebook"] != "Company directory" {
		t.Fatalf("contacts settings stored: %v", cs)
	}
	// Run now: the report counts what was copied, links the company
	// phonebook and lists the skipped contacts with their reasons.
	b.click("#contacts-run-btn")
	b.until("the contacts report", `/Succeeded|Partly done/.test(document.getElementById('contacts-report').textContent)`)
	b.waitText("#contacts-report", "Company directory")
	b.until("skipped contacts with reasons", `document.querySelectorAll('#contacts-skipped tbody tr').length > 0 && [...document.querySelectorAll('#contacts-skipped tbody tr td:last-child')].every(td => td.textContent.length > 0)`)
	if n := eval[int](b, `Number(document.querySelector('#contacts-report .stat b').textContent)`); n == 0 {
		t.Fatal("the contacts run reports nothing created")
	}
	// Pickers: groups, synced users ("select all synced users") and shared
	// mailboxes, each mailbox with its own phonebook name.
	b.fill("#c-personal-range", "groups")
	b.until("the contacts group picker", `document.querySelectorAll('[data-picker=contacts-groups] li input[type=checkbox]').length > 0`)
	b.fill("#c-personal-range", "users")
	b.until("the synced users picker", `document.querySelectorAll('[data-picker=contacts-users] li input[type=checkbox]').length > 0`)
	syncedUsers := evalAwait[float64](b, `fetch('/api/v1/integration/contacts-sync/synced-users').then(r => r.json()).then(d => d.items.length)`)
	b.click("#c-select-all")
	b.waitText("[data-picker=contacts-users] [data-picker-count]", fmt.Sprintf("%d selected", int(syncedUsers)))
	b.fill("#c-shared-range", "mailboxes")
	b.until("the shared mailbox picker", `document.querySelectorAll('[data-picker=mailboxes] li input[type=checkbox]').length >= 2`)
	b.click(`[data-picker=mailboxes] li:nth-child(1) input[type=checkbox]`)
	b.click(`[data-picker=mailboxes] li:nth-child(2) input[type=checkbox]`)
	firstBox := eval[string](b, `document.querySelector('[data-picker=mailboxes] li:nth-child(1) .name-row input').value`)
	if firstBox == "" {
		t.Fatal("a ticked mailbox gets no default phonebook name")
	}
	b.fill(`[data-picker=mailboxes] li:nth-child(1) .name-row input`, "Support line")
	b.fill(`[data-picker=mailboxes] li:nth-child(2) .name-row input`, "Support line")
	b.click("#contacts-save")
	b.waitText(`#contacts-form .field-error[data-for="sharedMailboxes.mailboxes"]`, "already the phonebook")
	b.fill(`[data-picker=mailboxes] li:nth-child(2) .name-row input`, "Sales line")
	b.click("#contacts-save")
	b.waitText("#toast", "Contacts settings saved")
	cs = evalAwait[map[string]any](b, `fetch('/api/v1/integration/contacts-sync').then(r => r.json())`)
	pers, _ = cs["personal"].(map[string]any)
	shared, _ = cs["sharedMailboxes"].(map[string]any)
	boxes, _ := shared["mailboxes"].([]any)
	ids, _ := pers["userIds"].([]any)
	if pers["range"] != "users" || len(ids) != int(syncedUsers) || shared["range"] != "mailboxes" || len(boxes) != 2 ||
		boxes[0].(map[string]any)["phonebook"] != "Support line" || boxes[1].(map[string]any)["phonebook"] != "Sales line" {
		t.Fatalf("contacts settings stored: %v", cs)
	}
	// The country for national numbers: refused by name when unknown.
	b.fill("#c-country", "ZZ")
	b.click("#contacts-save")
	b.waitText(`#contacts-form .field-error[data-for="defaultCountry"]`, "ISO 3166-1")
	b.fill("#c-country", "de")
	b.click("#contacts-save")
	b.waitText("#toast", "Contacts settings saved")
	b.until("the country stored", `document.getElementById('c-country').value === 'DE'`)
	b.click("#contacts-run-btn")
	b.until("the second contacts report", `/Succeeded|Partly done/.test(document.getElementById('contacts-report').textContent) && document.getElementById('contacts-report').textContent.includes('Sales line')`)
	b.scrollTo("#contacts-run")
	b.screenshot("contacts", false)
	// The email server for welcome emails: never set, then saved.
	b.until("the email server section", `!document.getElementById('smtp-card').hidden`)
	b.fill("#smtp-host", "smtp.contoso.test")
	b.fill("#smtp-port", "587")
	b.fill("#smtp-from", "pbx@contoso.test")
	b.fill("#smtp-user", "pbx")
	b.fill("#smtp-pass", "mail-secret-1")
	b.click("#smtp-form button[type=submit]")
	b.waitText("#toast", "Email server settings saved")
	if st := evalAwait[map[string]any](b, `fetch('/api/v1/smtp').then(r => r.json())`); st["host"] != "smtp.contoso.test" || st["hasPassword"] != true {
		t.Fatalf("SMTP settings stored: %v", st)
	}
	b.scrollTo("#usersync-card")
	b.screenshot("user-sync", false)

	// --- Extensions: create, edit, refuse a duplicate, delete.
	synced := &created[0]
	var bulk store.ExtensionChanges
	for i := range 130 {
		bulk.Create = append(bulk.Create, &directory.Extension{Number: fmt.Sprint(3000 + i), FirstName: fmt.Sprintf("Bulk%d", i), LastName: "User",
			Email: fmt.Sprintf("bulk%d@example.test", i), Source: directory.SourceLocal, Presence: directory.PresenceAvailable, CallState: directory.CallIdle})
	}
	if err := e.store.ApplyExtensions(ctx, directory.DefaultPBX, bulk); err != nil {
		t.Fatal(err)
	}
	total, _ := e.store.CountExtensions(ctx, directory.DefaultPBX)
	b.click(`a[href='/extensions']`)
	b.waitText("#ext-count", fmt.Sprintf("%d extensions", total))
	b.click("#ext-new")
	b.fill("#f-number", "2001")
	b.fill("#f-firstName", "Ada")
	b.fill("#f-lastName", "Lovelace")
	b.fill("#f-email", "ada@example.test")
	b.click("#ext-save")
	b.waitText("#toast", "Extension 2001 added")
	b.waitText(`tr[data-number="2001"]`, "Ada Lovelace")

	b.click(`tr[data-number="2001"] [data-edit]`)
	b.until("the edit form", `document.getElementById('f-number').value === '2001'`)
	b.fill("#f-lastName", "King")
	b.fill("#f-jobTitle", "Analyst")
	b.click("#ext-save")
	b.waitText(`tr[data-number="2001"]`, "Ada King")
	b.waitText(`tr[data-number="2001"]`, "Analyst")
	if x, err := e.store.FindExtension(ctx, directory.DefaultPBX, "number", "2001"); err != nil || x.LastName != "King" || x.JobTitle != "Analyst" {
		t.Fatalf("stored after edit: %+v %v", x, err)
	}

	// A duplicate number: the API's error lands next to the number field.
	b.click("#ext-new")
	b.fill("#f-number", "2001")
	b.fill("#f-firstName", "Dup")
	b.click("#ext-save")
	b.until("the duplicate-number error", `document.getElementById('number-error').textContent.length > 0`)
	if got := eval[string](b, `document.getElementById('f-number').getAttribute('aria-invalid')`); got != "true" {
		t.Errorf("number field not marked invalid: %q", got)
	}
	b.click("#ext-dialog [data-close-dialog]")

	b.click(`tr[data-number="2001"] [data-delete]`)
	b.waitText("#confirm-text", "Delete extension 2001")
	b.click("#confirm-ok")
	b.until("row 2001 to go", `!document.querySelector('tr[data-number="2001"]')`)
	if _, err := e.store.FindExtension(ctx, directory.DefaultPBX, "number", "2001"); err == nil {
		t.Fatal("extension 2001 still stored after delete")
	}

	// --- A synced extension: the mark, locked fields read-only, no delete,
	// and a hand edit of a synced field refused by the API.
	row := fmt.Sprintf(`tr[data-number="%s"]`, synced.Number)
	b.waitText(row, "Synced")
	if eval[bool](b, fmt.Sprintf(`!!document.querySelector('%s [data-delete]')`, row)) {
		t.Fatal("a synced extension offers Delete")
	}
	b.click(row + " [data-edit]")
	b.until("the synced extension's form", fmt.Sprintf(`document.getElementById('f-number').value === '%s'`, synced.Number))
	b.until("the locked note", `!document.getElementById('ext-locked-note').hidden`)
	locked := eval[[]string](b, `[...document.querySelectorAll('#ext-form input[readonly]')].map(e => e.name)`)
	if strings.Join(locked, ",") != "firstName,lastName,email,mobile,jobTitle" {
		t.Fatalf("read-only fields of a synced extension: %v", locked)
	}
	if eval[bool](b, `document.getElementById('f-callerIdName').readOnly`) {
		t.Fatal("caller ID name is locked but is not synced")
	}
	b.fill("#f-callerIdName", "Sam S. (front desk)")
	b.click("#ext-save")
	b.waitText("#toast", "Extension "+synced.Number+" saved")
	if x, _ := e.store.GetExtension(ctx, directory.DefaultPBX, synced.ID); x.CallerIDName != "Sam S. (front desk)" || x.FirstName != synced.FirstName {
		t.Fatalf("synced extension after edit: %+v", x)
	}
	status := evalAwait[float64](b, fmt.Sprintf(`fetch('/api/v1/extensions/%s', {method: 'PATCH', headers: {'Content-Type': 'application/json'}, body: '{"firstName":"Hacked"}'}).then(r => r.status)`, synced.ID))
	if status != 409 {
		t.Fatalf("hand edit of a synced field: %v, want 409", status)
	}

	// --- Teams presence per extension: switch it on in the edit dialog and
	// map Teams "Busy" to "Away".
	b.click(row + " [data-edit]")
	b.until("the presence section", fmt.Sprintf(`!document.getElementById('ext-presence').hidden && document.getElementById('f-number').value === %q`, synced.Number))
	if eval[bool](b, `document.getElementById('ps-enabled').checked`) {
		t.Fatal("presence sync shown on before it was switched on")
	}
	if got := eval[string](b, `document.querySelector('#ps-mapping select[data-availability=Busy]').value`); got != "do_not_disturb" {
		t.Fatalf("default mapping of Busy shown as %q", got)
	}
	b.click("#ps-enabled")
	b.fill(`#ps-mapping select[data-availability=Busy]`, "away")
	b.screenshot("extension-dialog", false)
	b.click("#ext-save")
	b.waitText("#toast", "Extension "+synced.Number+" saved")
	ps := evalAwait[map[string]any](b, fmt.Sprintf(`fetch('/api/v1/extensions/%s/presence-sync').then(r => r.json())`, synced.ID))
	if m, _ := ps["mapping"].(map[string]any); ps["enabled"] != true || m["Busy"] != "away" || m["Offline"] != "off_work" {
		t.Fatalf("presence sync stored: %v", ps)
	}
	// A local extension cannot follow Teams: the dialog says so.
	b.click(`tr[data-number="3000"] [data-edit]`)
	b.until("the local extension's presence section", `!document.getElementById('ext-presence').hidden && document.getElementById('f-number').value === '3000'`)
	b.waitText("#ps-note", "Only extensions synced from Microsoft Entra ID")
	if !eval[bool](b, `document.getElementById('ps-enabled').disabled`) {
		t.Fatal("presence sync can be ticked on a local extension")
	}
	b.click("#ext-dialog [data-close-dialog]")
	// SIP credentials: the password stays hidden until asked for; a new one
	// can be generated after a confirmation.
	b.click(row + " [data-edit]")
	b.until("the SIP credentials", fmt.Sprintf(`!document.getElementById('ext-sip').hidden && document.getElementById('f-number').value === %q`, synced.Number))
	b.waitText("#sip-user", synced.Number)
	if got := b.text("#sip-pass"); strings.ContainsAny(got, "abcdefghijklmnopqrstuvwxyz0123456789") {
		t.Fatalf("the SIP password is shown before Show: %q", got)
	}
	b.click("#sip-show")
	b.waitText("#sip-show", "Hide password")
	b.waitText("#sip-domain", "pbx.test")
	sipBefore := b.text("#sip-pass")
	if want := evalAwait[string](b, fmt.Sprintf(`fetch('/api/v1/extensions/%s/sip-credentials').then(r => r.json()).then(d => d.password)`, synced.ID)); sipBefore != want || len(want) < 8 {
		t.Fatalf("SIP password shown %q, the API has %q", sipBefore, want)
	}
	eval[bool](b, `(document.getElementById('ext-sip').scrollIntoView({block: 'end'}), true)`)
	b.screenshot("extension-sip", false)
	b.click("#sip-show")
	b.waitText("#sip-show", "Show password")
	b.click("#sip-rotate")
	b.waitText("#confirm-text", "Generate a new SIP password for extension "+synced.Number)
	b.click("#confirm-ok")
	b.waitText("#toast", "New SIP password for extension "+synced.Number)
	sipAfter := b.text("#sip-pass")
	if sipAfter == sipBefore || !eval[bool](b, `document.getElementById('ext-dialog').open`) {
		t.Fatalf("after rotation the dialog shows %q (was %q)", sipAfter, sipBefore)
	}
	if want := evalAwait[string](b, fmt.Sprintf(`fetch('/api/v1/extensions/%s/sip-credentials').then(r => r.json()).then(d => d.password)`, synced.ID)); sipAfter != want {
		t.Fatalf("rotated SIP password shown %q, the API has %q", sipAfter, want)
	}
	b.click("#ext-dialog [data-close-dialog]")

	// Bulk edit: a local extension among the selected is refused by name;
	// the synced ones alone are switched on with one mapping.
	secondExt := created[3]
	b.click(fmt.Sprintf(`tr[data-number="%s"] .row-select`, secondExt.Number))
	b.click(fmt.Sprintf(`tr[data-number="%s"] .row-select`, created[4].Number))
	b.click(`tr[data-number="3000"] .row-select`)
	b.waitText("#bulk-count", "3 selected")
	b.click("#bulk-presence-open")
	b.fill("#bp-enabled", "true")
	b.click("#bp-set-mapping")
	b.fill(`#bp-mapping select[data-availability=Offline]`, "away")
	b.click("#bp-save")
	b.waitText("#bulk-presence-form .form-error", "Extension 3000")
	b.click("#bulk-presence-dialog [data-close-dialog]")
	b.click(`tr[data-number="3000"] .row-select`)
	b.waitText("#bulk-count", "2 selected")
	eval[bool](b, `(window.scrollTo(0, 0), true)`)
	b.screenshot("extensions", false)
	b.click("#bulk-presence-open")
	b.fill("#bp-enabled", "true")
	b.click("#bp-set-mapping")
	b.fill(`#bp-mapping select[data-availability=Offline]`, "away")
	b.click("#bp-save")
	b.waitText("#toast", "Teams presence updated for 2 extensions")
	for _, x := range []*directory.Extension{&secondExt, &created[4]} {
		ps := evalAwait[map[string]any](b, fmt.Sprintf(`fetch('/api/v1/extensions/%s/presence-sync').then(r => r.json())`, x.ID))
		if m, _ := ps["mapping"].(map[string]any); ps["enabled"] != true || m["Offline"] != "away" {
			t.Fatalf("bulk presence sync of %s stored: %v", x.Number, ps)
		}
	}
	b.click("#bulk-clear")
	b.until("the bulk bar to go", `document.getElementById('bulk-bar').hidden`)

	// --- Search and page.
	b.fill("#ext-search", "bulk12")
	b.until("search results", `document.querySelectorAll('#ext-table tbody tr[data-number]').length === 11`)
	if !strings.Contains(b.location(), "search=bulk12") {
		t.Errorf("search not in the address: %s", b.location())
	}
	b.fill("#ext-search", "")
	b.until("the full first page", `document.querySelectorAll('#ext-table tbody tr[data-number]').length === 50`)
	first := b.text(`#ext-table tbody tr[data-number]`)
	b.click("#ext-next")
	b.until("page two", `!!document.getElementById('ext-first')`)
	second := b.text(`#ext-table tbody tr[data-number]`)
	if first == second || eval[int](b, `document.querySelectorAll('#ext-table tbody tr[data-number]').length`) != 50 {
		t.Fatalf("page two starts like page one: %q", second)
	}

	// --- Extension groups and phonebooks: add, rename, delete through dialogs.
	b.click(`a[href='/extension-groups']`)
	b.waitText("h1", "Extension groups")
	b.click(`[data-form-dialog="group-dialog"][data-method="POST"]`)
	b.fill("#g-name", "Front desk")
	b.fill("#g-members", "3001, 3002 99999")
	b.click("#group-dialog button[type=submit]")
	b.waitText("#g-members-error", "No extension has the number 99999")
	b.fill("#g-members", "3001, 3002")
	b.click("#group-dialog button[type=submit]")
	b.waitText("#groups-table", "Front desk")
	b.waitText("#groups-table", "3002 Bulk2 User")
	b.click(`[aria-label="Edit group Front desk"]`)
	b.until("the group prefilled", `document.getElementById('g-name').value === 'Front desk' && document.getElementById('g-members').value === '3001, 3002'`)
	b.fill("#g-name", "Reception")
	b.fill("#g-members", "3003")
	b.click("#group-dialog button[type=submit]")
	b.waitText("#groups-table", "Reception")
	b.waitText("#groups-table", "3003 Bulk3 User")
	b.click(`[aria-label="Delete group Reception"]`)
	b.click("#confirm-ok")
	b.until("the group to go", `!document.getElementById('groups-table').textContent.includes('Reception')`)

	b.click(`a[href='/phonebooks']`)
	b.click(`[data-form-dialog="book-dialog"][data-method="POST"]`)
	b.fill("#b-name", "Suppliers")
	b.click("#book-dialog button[type=submit]")
	b.waitText("#books-table", "Suppliers")
	b.click(`#books-table tr[data-name="Suppliers"] a`)
	b.waitText("h1", "Suppliers")
	b.click(`[data-form-dialog="contact-dialog"]`)
	b.fill("#c-firstName", "Zed")
	b.click("#contact-dialog button[type=submit]")
	b.until("the contact rule's error", `document.querySelector('#contact-dialog .form-error').textContent.length > 0 || [...document.querySelectorAll('#contact-dialog .field-error')].some(e => e.textContent.length > 0)`)
	b.fill("#c-mobile", "+15550100")
	b.click("#contact-dialog button[type=submit]")
	b.waitText("#contact-results", "+15550100")
	// Who sees the phonebook: nobody at first, then two extensions (an
	// unknown number is refused by name), then everyone.
	b.waitText("#vis-summary", "Nobody sees these contacts yet")
	b.fill("#vis-extensions", "3001, 99999")
	b.click("#vis-save")
	b.waitText("#vis-extensions-error", "No extension has the number 99999")
	b.fill("#vis-extensions", "3001, 3002")
	b.click("#vis-save")
	b.waitText("#toast", "Visibility saved")
	b.waitText("#vis-summary", "Visible to 2 extensions.")
	bookID := eval[string](b, `location.pathname.split('/').pop()`)
	if n := evalAwait[float64](b, fmt.Sprintf(`fetch('/api/v1/phonebooks/%s/visibility').then(r => r.json()).then(d => d.items.filter(i => i.kind === 'extension').length)`, bookID)); n != 2 {
		t.Fatalf("visibility stored: %v extension grants", n)
	}
	b.screenshot("phonebook", false)
	b.click("#vis-everyone")
	b.until("the targets to hide", `document.getElementById('vis-targets').hidden`)
	b.click("#vis-save")
	b.waitText("#vis-summary", "Every extension on this PBX sees these contacts.")
	b.open("/phonebooks/" + bookID)
	b.until("everyone after a reload", `document.getElementById('vis-everyone').checked`)

	// --- Hand-picked users: range "users", tick a user, unbind it, tick it
	// again and bind it to its old extension by number.
	// One presence round (the service's loop is not running here): with no
	// public URL for change notifications, every user is polled; Teams
	// "Busy" maps to "Away" for the extension set up in its dialog.
	if err := tenant.SetTeamsPresence(synced.EntraID, "Busy", "InACall"); err != nil {
		t.Fatal(err)
	}
	if err := presenceSvc.Reconcile(ctx, directory.DefaultPBX); err != nil {
		t.Fatal(err)
	}
	b.open("/integrations/microsoft")
	// The Teams presence status: the three extensions that follow Teams, and
	// how (notifications or polling).
	b.until("the presence status", `!document.getElementById('presence-status').hidden`)
	b.waitText("#presence-summary", "by change notifications")
	b.waitText("#presence-summary", "by polling")
	b.until("three users in the presence status", `document.querySelectorAll('#presence-users tbody tr[data-number]').length === 3`)
	b.waitText(fmt.Sprintf(`#presence-users tr[data-number="%s"]`, synced.Number), "Busy · InACall")
	b.waitText(fmt.Sprintf(`#presence-users tr[data-number="%s"]`, synced.Number), "Away")
	b.waitText(fmt.Sprintf(`#presence-users tr[data-number="%s"]`, synced.Number), "Polling")
	b.scrollTo("#presence-card")
	b.screenshot("presence", false)
	b.until("the user sync form", `!document.getElementById('usersync-card').hidden && document.getElementById('u-enabled').checked`)
	b.fill("#u-range", "users")
	b.until("the user picker", `document.querySelectorAll('[data-picker=users] li input[type=checkbox]').length > 0`)
	userID := eval[string](b, `document.querySelector('[data-picker=users] li input[type=checkbox]').value`)
	bound, err := e.store.FindExtension(ctx, directory.DefaultPBX, "entraId", userID)
	if err != nil {
		t.Fatalf("the picked user has no extension after the full sync: %v", err)
	}
	b.click(`[data-picker=users] li input[type=checkbox]`)
	b.click("#usersync-save")
	b.waitText("#toast", "User synchronization settings saved")
	b.until("the unbind button", `!document.querySelector('[data-picker=users][aria-busy]') && !!document.querySelector('[data-picker=users] .bind-row button')`)
	b.waitText(`[data-picker=users] .bind-row`, "Unbind from "+bound.Number)
	b.click(`[data-picker=users] .bind-row button`)
	b.waitText("#toast", "unbound")
	if x, _ := e.store.GetExtension(ctx, directory.DefaultPBX, bound.ID); x.Synced() {
		t.Fatalf("extension %s still synced after unbind", x.Number)
	}
	b.until("the user unticked", fmt.Sprintf(`!document.querySelector('[data-picker=users][aria-busy]') && !document.querySelector('[data-picker=users] input[value=%q]').checked`, userID))
	b.click(fmt.Sprintf(`[data-picker=users] input[value=%q]`, userID))
	b.click("#usersync-save")
	b.waitText("#toast", "User synchronization settings saved")
	b.until("the bind controls", `!document.querySelector('[data-picker=users][aria-busy]') && !!document.querySelector('[data-picker=users] .bind-row input')`)
	b.fill(`[data-picker=users] .bind-row input`, bound.Number)
	b.click(`[data-picker=users] .bind-row button`)
	b.waitText("#toast", "bound to extension "+bound.Number)
	if x, _ := e.store.GetExtension(ctx, directory.DefaultPBX, bound.ID); !x.Synced() || x.EntraID != userID {
		t.Fatalf("extension %s after bind: %+v", bound.Number, x)
	}

	// --- Disable (keep synced data), enable, then disconnect deleting it.
	b.open("/integrations/microsoft")
	b.waitText("#status-badge", "Connected")

	// An expired client secret: the run fails, the status says what went
	// wrong and what to do; a new secret from the dialog brings it back.
	if err := tenant.ExpireClientSecret(); err != nil {
		t.Fatal(err)
	}
	b.until("Update now", `!document.getElementById('sync-btn').disabled && document.getElementById('sync-progress').hidden`)
	b.click("#sync-btn")
	b.waitText("#status-badge", "Needs attention")
	b.until("the error help", `document.getElementById('status-help').classList.contains('alert-error') && /expired/i.test(document.getElementById('status-help').textContent)`)
	b.until("the failed run's report", `!!document.getElementById('run-error') && document.querySelector('#runs-table tbody tr td:nth-child(3)').textContent === 'Failed'`)
	if !eval[bool](b, `document.getElementById('sync-btn').disabled`) {
		t.Error("Update now is offered while the integration is in error")
	}
	eval[bool](b, `(window.scrollTo(0, 0), true)`)
	b.screenshot("integration-error", false)
	const freshSecret = "sim~Second.Value_fedcba9876543210"
	if err := tenant.AddClientSecret(freshSecret, 90*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	b.click("#secret-open")
	b.fill("#newSecret", freshSecret)
	b.click("#secret-form button[type=submit]")
	b.waitText("#toast", "Client secret updated")
	b.waitText("#status-badge", "Connected")
	b.until("the error help to go", `!document.getElementById('status-help').classList.contains('alert-error')`)
	b.click("#disable-open")
	b.click("#disable-confirm")
	b.waitText("#status-badge", "Disabled")
	b.until("Enable", `!document.getElementById('enable-btn').hidden`)
	if _, err := e.store.GetExtension(ctx, directory.DefaultPBX, synced.ID); err != nil {
		t.Fatal("disable without deletion removed the synced extension")
	}
	b.click("#enable-btn")
	b.waitText("#status-badge", "Connected")
	b.click("#disconnect-open")
	b.click(`#disconnect-form input[name=deleteExtensions]`)
	b.click("#disconnect-confirm")
	b.waitText("#status-badge", "Not connected")
	if n, _, _ := e.store.ListExtensions(ctx, directory.DefaultPBX, store.ExtensionQuery{Source: directory.SourceEntra}); len(n) != 0 {
		t.Fatalf("disconnect with deletion kept %d synced extensions", len(n))
	}

	// --- The audit log shows what happened; sign out.
	b.click(`a[href='/audit']`)
	b.waitText("#audit-table", "admin.login")
	b.waitText("#audit-table", "extension.sip_credentials.read")
	b.waitText("#audit-table", "phonebook.visibility")
	b.screenshot("audit", false)
	// The same portal on a phone.
	b.do(chromedp.EmulateViewport(390, 844))
	b.open("/extensions")
	b.waitText("h1", "Extensions")
	b.screenshot("extensions-phone", false)
	b.do(chromedp.EmulateViewport(1280, 900))
	b.click("#logout")
	b.waitText("h1", "Sign in")
	b.open("/extensions")
	b.waitText("h1", "Sign in")
	if !strings.Contains(b.location(), "/login?next=") {
		t.Fatalf("signed out, /extensions at %s", b.location())
	}
	b.mu.Lock()
	if len(b.problems) > 0 {
		t.Errorf("the pages reported %d problems:\n%s", len(b.problems), strings.Join(b.problems, "\n"))
	}
	b.mu.Unlock()
	t.Logf("browser test took %s; screenshots in %s", time.Since(start).Round(time.Millisecond), b.shot)
}
