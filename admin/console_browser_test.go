package admin

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/clover-sched/clover/internal/browsertest"
	"github.com/clover-sched/clover/internal/job"
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

// act runs actions on the page, again while they fail on a node the browser no longer has: the document a
// form's submit loads can replace the one chromedp queried between its query and its action ("Could not
// find node with given id", "No node with given id found": CI, and -race here). The actions must be safe
// to repeat: SetValue rather than
// SendKeys, and a click fails before it is dispatched when its node is gone.
func act(t *testing.T, ctx context.Context, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	var err error
	testenv.Poll(10*time.Second, func() bool {
		err = chromedp.Do(ctx, actions...)
		return err == nil || !strings.Contains(err.Error(), "node with given id")
	})
	if err != nil {
		t.Fatal(err)
	}
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
	act(t, ctx, chromedp.SetValue(chromedp.ID("token"), "not-a-token"), chromedp.Click(chromedp.ID("login")))
	waitText(t, ctx, "#login-error", "Unknown or revoked token")
	act(t, ctx, chromedp.SetValue(chromedp.ID("token"), "admin-token"), chromedp.Click(chromedp.ID("login")))
	// Back where it was going, logged in.
	waitText(t, ctx, "#job-name", "nightly")
	waitText(t, ctx, "#who", "alice")
	act(t, ctx, chromedp.Click(chromedp.ID("pause")))
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

	act(t, ctx, chromedp.Click(chromedp.ID("logout")))
	waitText(t, ctx, "h1", "Log in") // the logout has landed before anything navigates again
	act(t, ctx, chromedp.SetValue(chromedp.ID("token"), "viewer-token"), chromedp.Click(chromedp.ID("login")))
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

// Every page, as an admin sees it: each form field has a label (its own, a wrapping one or aria-label),
// and at a phone's width nothing is wider than the screen (tables scroll inside their panel).
func TestEveryPageIsLabelledAndFitsAPhone(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	rig := newConsoleRig(t)
	rig.api.mu.Lock()
	rig.api.execs = []job.Execution{{ID: "nightly@1", Job: "nightly", State: job.StateRunning, Client: "client-a", Run: 1}}
	rig.api.output = map[string]string{"nightly@1": strings.Repeat("a long line of output that goes on and on ", 20) + "\n"}
	rig.api.mu.Unlock()
	ctx := browsertest.Browser(t)
	base := rig.srv.URL
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/ui/login")); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "h1", "Log in")
	// By keyboard: the token field has the focus, Enter sends the form.
	if err := chromedp.Do(ctx, chromedp.KeyEvent("admin-token\r")); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "#who", "alice")
	pages := []string{"/ui/", "/ui/jobs", "/ui/jobs/nightly", "/ui/new-job", "/ui/jobs/nightly/edit", "/ui/new-job?as=json",
		"/ui/executions", "/ui/executions/nightly@1", "/ui/executions/nightly@1/output?offset=0", "/ui/members", "/ui/logs",
		"/ui/contacts", "/ui/audit", "/ui/zookeeper"}
	unlabelled := `[...document.querySelectorAll("input:not([type=hidden]), select, textarea")]
		.filter(e => !(e.labels && e.labels.length) && !e.getAttribute("aria-label")).map(e => e.name || e.id).join(",")`
	for _, width := range []int64{1280, 390} {
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(width, 800)); err != nil {
			t.Fatal(err)
		}
		for _, p := range pages {
			if err := chromedp.Do(ctx, chromedp.Navigate(base+p)); err != nil {
				t.Fatal(err)
			}
			waitText(t, ctx, "#who", "alice")
			if bad, err := chromedp.Run(ctx, chromedp.Evaluate[string](unlabelled)); err != nil || bad != "" {
				t.Errorf("%s: fields without a label: %q (%v)", p, bad, err)
			}
			over, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth - window.innerWidth`))
			if err != nil || over > 0 {
				t.Errorf("%s at %d px: the page is %d px wider than the window (%v)", p, width, over, err)
			}
		}
	}
	browsertest.Screenshot(t, ctx, "phone-execution")
}
