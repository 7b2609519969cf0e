package admin

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/clover-sched/clover/internal/browsertest"
	"github.com/clover-sched/clover/internal/testenv"
)

// waitText waits until the element sel exists and its text contains want, and returns the text. It
// reads the page again until then: a form's submit navigates, and an evaluation under way when the page
// changes fails, which only means "not yet".
func waitText(t *testing.T, ctx context.Context, sel, want string) string {
	t.Helper()
	js := `(() => { const e = document.querySelector(` + jsString(sel) + `); return e ? e.textContent : "" })()`
	var now string
	if !testenv.Poll(10*time.Second, func() bool {
		text, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		now = text
		return err == nil && strings.Contains(text, want)
	}) {
		t.Fatalf("%s does not show %q within 10s (it shows %q)", sel, want, now)
	}
	return now
}

// waitAttr waits until the element sel has attribute attr equal to want.
func waitAttr(t *testing.T, ctx context.Context, sel, attr, want string) {
	t.Helper()
	js := `document.querySelector(` + jsString(sel) + `)?.getAttribute(` + jsString(attr) + `) ?? ""`
	var now string
	if !testenv.Poll(10*time.Second, func() bool {
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		now = v
		return err == nil && v == want
	}) {
		t.Fatalf("%s[%s] is %q, want %q within 10s", sel, attr, now, want)
	}
}

// exists reports whether sel matches an element now.
func exists(t *testing.T, ctx context.Context, sel string) bool {
	t.Helper()
	ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector(`+jsString(sel)+`) !== null`))
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func jsString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// The console in a real browser, against an API that answers from memory: a login with a token, the
// dashboard and its refresh, a job paused from its page, and a viewer who sees no button.
func TestConsoleInABrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	rig := newConsoleRig(t)
	ctx := browsertest.Browser(t)
	base := rig.srv.URL

	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/ui/jobs/nightly")); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "h1", "Log in")
	browsertest.Screenshot(t, ctx, "login")
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("token"), "not-a-token"), chromedp.Click(chromedp.ID("login"))); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "#login-error", "Unknown or revoked token")
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("token"), "admin-token"), chromedp.Click(chromedp.ID("login"))); err != nil {
		t.Fatal(err)
	}
	// Back where it was going, logged in.
	waitText(t, ctx, "#job-name", "nightly")
	waitText(t, ctx, "#who", "alice")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("pause"))); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "#message", "paused")
	waitText(t, ctx, "#job-state", "paused")
	browsertest.Screenshot(t, ctx, "job")

	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/ui/")); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "#leader", "server-leading")
	waitText(t, ctx, "#failures", "exit status 3")
	// The charts, drawn by console.js with uPlot from the page's data (60 minutes, 96 quarter hours).
	waitAttr(t, ctx, "#chart-hour", "data-drawn", "60")
	waitAttr(t, ctx, "#chart-day", "data-drawn", "96")
	if !exists(t, ctx, "#chart-hour canvas") {
		t.Error("the hour chart has no canvas")
	}
	// The panels reload by themselves (htmx, every 5 s): a new leader shows without a reload.
	before := len(rig.api.allCalls())
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("#leader").textContent = "stale"`)); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "#leader", "server-leading")
	if len(rig.api.allCalls()) == before {
		t.Error("the dashboard showed the leader again without asking the API")
	}
	browsertest.Screenshot(t, ctx, "dashboard")

	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("logout"))); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "h1", "Log in") // the logout has landed before anything navigates again
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("token"), "viewer-token"), chromedp.Click(chromedp.ID("login"))); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "#who", "victor")
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/ui/jobs/nightly")); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "#job-name", "nightly")
	for _, sel := range []string{"#pause", "#resume", "#trigger"} {
		if exists(t, ctx, sel) {
			t.Errorf("a viewer sees %s", sel)
		}
	}
}
