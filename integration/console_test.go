package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/browsertest"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/testenv"
)

// consoleText waits until the element sel shows want, reading the page again until then (a navigation
// under way fails an evaluation, which only means "not yet").
func consoleText(t *testing.T, ctx context.Context, sel, want string) {
	t.Helper()
	js := `(() => { const e = document.querySelector("` + sel + `"); return e ? e.textContent : "" })()`
	var now string
	ok := testenv.Poll(20*time.Second, func() bool {
		text, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		now = text
		return err == nil && strings.Contains(text, want)
	})
	if !ok {
		t.Fatalf("%s does not show %q within 20s (it shows %q)", sel, want, now)
	}
}

func consoleLogin(t *testing.T, ctx context.Context, base, token string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/ui/login")); err != nil {
		t.Fatalf("open the login page: %v", err)
	}
	consoleText(t, ctx, "h1", "Log in")
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("token"), token), chromedp.Click(chromedp.ID("login"))); err != nil {
		t.Fatalf("log in: %v", err)
	}
	consoleText(t, ctx, "h1", "Dashboard")
}

// The console of a follower on a secure cluster, in Chromium: an operator logs in, sees the leader,
// finds a job, runs it and pauses it (the writes go through the follower's API to the leader, audited as
// the operator, via the console); a viewer sees no write button, and a write the viewer forces is
// refused before it reaches the API.
func TestTheConsoleOnARealCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := StartCluster(t, Options{Servers: 2, Clients: 1})
	leader, epoch := c.WaitLeader(30 * time.Second)
	c.WaitClients(1, 30*time.Second)
	follower := c.otherServer(leader)
	c.CreateJob(job.Spec{Name: "console-job", Schedule: "0 0 3 * * ?", Handler: job.HandlerShell, Params: map[string]string{"command": "echo from-the-console"}})
	base := c.scheme + "://" + follower.API

	ctx := browsertest.Browser(t)
	consoleLogin(t, ctx, base, c.Tokens.Operator)
	consoleText(t, ctx, "#leader", leader.ID)
	consoleText(t, ctx, "#epoch", strconv.FormatInt(epoch, 10))
	consoleText(t, ctx, "#clients", "client")
	browsertest.Screenshot(t, ctx, "cluster-dashboard")

	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/ui/jobs?q=console")); err != nil {
		t.Fatal(err)
	}
	consoleText(t, ctx, "#jobs", "console-job")
	browsertest.Screenshot(t, ctx, "cluster-jobs")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`a[href="/ui/jobs/console-job"]`))); err != nil {
		t.Fatal(err)
	}
	consoleText(t, ctx, "#job-name", "console-job")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("trigger"))); err != nil {
		t.Fatal(err)
	}
	consoleText(t, ctx, "#message", "triggered: console-job@")
	execID, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("#message").textContent.replace("triggered: ", "").trim()`))
	if err != nil {
		t.Fatal(err)
	}
	c.waitState(t, execID, job.StateSucceeded, 30*time.Second)
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/ui/executions/"+execID)); err != nil {
		t.Fatal(err)
	}
	consoleText(t, ctx, "#exec-state", "succeeded")
	consoleText(t, ctx, "#output", "from-the-console")
	browsertest.Screenshot(t, ctx, "cluster-execution")
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/ui/logs?text=FROM-THE-CONSOLE&hours=1")); err != nil {
		t.Fatal(err)
	}
	consoleText(t, ctx, "#log-results", execID)
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/ui/jobs/console-job")); err != nil {
		t.Fatal(err)
	}
	consoleText(t, ctx, "#job-name", "console-job")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("pause"))); err != nil {
		t.Fatal(err)
	}
	consoleText(t, ctx, "#job-state", "paused")
	var spec job.Spec
	if err := c.Call(leader, "GET", "/api/v1/jobs/console-job", nil, &spec); err != nil || !spec.Paused {
		t.Fatalf("after the console's pause the API says paused=%v (%v)", spec.Paused, err)
	}
	testenv.WaitFor(t, 20*time.Second, "the run to show on the job's page", func() bool {
		_ = chromedp.Do(ctx, chromedp.Reload())
		text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("#executions")?.textContent ?? ""`))
		return strings.Contains(text, execID) && strings.Contains(text, "succeeded")
	})
	browsertest.Screenshot(t, ctx, "cluster-job")
	var audit []map[string]any
	if err := c.Call(leader, "GET", "/api/v1/audit?who=test-operator", nil, &audit); err != nil {
		t.Fatal(err)
	}
	var paused bool
	for _, e := range audit {
		if e["target"] == "console-job" && strings.Contains(e["action"].(string), "pause") && e["via"] == "console@"+follower.ID {
			paused = true
		}
	}
	if !paused {
		t.Errorf("no audit entry of test-operator pausing console-job via the console: %v", audit)
	}

	watchOutputLiveAndStop(t, c, ctx, base, leader)

	// A viewer: no write button, and a forced write (the form posted by hand, with the viewer's own CSRF
	// token) is refused.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("logout"))); err != nil {
		t.Fatal(err)
	}
	consoleText(t, ctx, "h1", "Log in") // the logout has landed: a navigation now would abort it
	consoleLogin(t, ctx, base, c.Tokens.Viewer)
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/ui/jobs/console-job")); err != nil {
		t.Fatal(err)
	}
	consoleText(t, ctx, "#job-name", "console-job")
	buttons, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#pause, #resume, #trigger").length`))
	if err != nil {
		t.Fatal(err)
	}
	if buttons != 0 {
		t.Errorf("a viewer sees %d write buttons", buttons)
	}
	forced := `(async () => {
		const csrf = JSON.parse(document.body.getAttribute("hx-headers"))["X-Clover-CSRF"];
		const r = await fetch("/ui/jobs/console-job/resume", {method: "POST", body: new URLSearchParams({csrf}), redirect: "manual"});
		return r.status })()`
	status, err := chromedp.Run(ctx, chromedp.Evaluate[int](forced, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	if status != http.StatusForbidden {
		t.Errorf("a viewer's forced resume: %d, want 403", status)
	}
	if err := c.Call(leader, "GET", "/api/v1/jobs/console-job", nil, &spec); err != nil || !spec.Paused {
		t.Errorf("after the viewer's forced resume the job is paused=%v (%v), want still paused", spec.Paused, err)
	}

	// An admin browses the ZooKeeper tree to the election, where the leader's candidate is marked.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("logout"))); err != nil {
		t.Fatal(err)
	}
	consoleText(t, ctx, "h1", "Log in")
	consoleLogin(t, ctx, base, c.Tokens.Admin)
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/ui/zookeeper")); err != nil {
		t.Fatal(err)
	}
	consoleText(t, ctx, "#children", "election")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#children a[href*="election"]`))); err != nil {
		t.Fatal(err)
	}
	consoleText(t, ctx, "#crumbs", "election")
	consoleText(t, ctx, "#children", "leader")
	browsertest.Screenshot(t, ctx, "cluster-zookeeper")
	adminDefinesAndOperates(t, c, ctx, base, leader)
	for _, p := range []string{"/zookeeper", "/clover/../zookeeper", "/cloverx", "clover"} {
		if err := c.Call(follower, "GET", "/api/v1/zookeeper?path="+p, nil, nil); !isStatus(err, http.StatusBadRequest) {
			t.Errorf("the ZooKeeper node %q, outside the cluster's tree: %v, want 400", p, err)
		}
	}
	if err := c.CallAs(c.Tokens.Viewer, follower, "GET", "/api/v1/zookeeper", nil, nil); !isStatus(err, http.StatusForbidden) {
		t.Errorf("a viewer reading the ZooKeeper tree: %v, want 403", err)
	}
}

// watchOutputLiveAndStop opens a running execution's page and watches its output grow without a reload,
// every line once and in order, until the run ends; then it stops another run from its page.
func watchOutputLiveAndStop(t *testing.T, c *Cluster, ctx context.Context, base string, leader *Member) {
	t.Helper()
	gate := filepath.Join(t.TempDir(), "gate")
	c.CreateJob(job.Spec{Name: "console-live", Schedule: "0 0 3 * * ?", Handler: job.HandlerShell, Params: map[string]string{
		"command": fmt.Sprintf(`i=0; while [ ! -e %q ] && [ $i -lt 3000 ]; do i=$((i+1)); echo "tick $i"; sleep 0.1; done; echo done-ticking`, gate),
	}})
	var fired api.TriggerResponse
	if err := c.Call(leader, "POST", "/api/v1/jobs/console-live/trigger", api.TriggerRequest{}, &fired); err != nil {
		t.Fatal(err)
	}
	c.waitState(t, fired.Execution, job.StateRunning, 30*time.Second)
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/ui/executions/"+fired.Execution)); err != nil {
		t.Fatal(err)
	}
	consoleText(t, ctx, "#output", "tick ")
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.notReloaded = true`)); err != nil {
		t.Fatal(err)
	}
	lastTick := func() int {
		text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("#output").textContent`))
		lines := strings.Split(strings.TrimSpace(text), "\n")
		n, _ := strconv.Atoi(strings.TrimPrefix(lines[len(lines)-1], "tick "))
		return n
	}
	seen := lastTick()
	testenv.WaitFor(t, 30*time.Second, "the output to grow on the open page", func() bool { return lastTick() >= seen+10 })
	browsertest.Screenshot(t, ctx, "cluster-output-live")
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	consoleText(t, ctx, "#output-state", "ended")
	consoleText(t, ctx, "#output", "done-ticking")
	text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`window.notReloaded ? document.querySelector("#output").textContent : "the page was reloaded"`))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(text), "\n")
	if len(lines) < 12 || lines[len(lines)-1] != "done-ticking" {
		t.Fatalf("the followed output ends %q", lines[max(len(lines)-3, 0):])
	}
	first, _ := strconv.Atoi(strings.TrimPrefix(lines[0], "tick "))
	for i, line := range lines[:len(lines)-1] {
		if want := fmt.Sprintf("tick %d", first+i); line != want {
			t.Fatalf("line %d of the followed output is %q, want %q: every line once, in order", i, line, want)
		}
	}

	// Another run, stopped from its page.
	if err := os.Remove(gate); err != nil {
		t.Fatal(err)
	}
	if err := c.Call(leader, "POST", "/api/v1/jobs/console-live/trigger", api.TriggerRequest{}, &fired); err != nil {
		t.Fatal(err)
	}
	c.waitState(t, fired.Execution, job.StateRunning, 30*time.Second)
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/ui/executions/"+fired.Execution)); err != nil {
		t.Fatal(err)
	}
	consoleText(t, ctx, "#output", "tick ")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("stop"))); err != nil {
		t.Fatal(err)
	}
	consoleText(t, ctx, "#message", "stop asked")
	if e := c.waitState(t, fired.Execution, job.StateFailed, 30*time.Second); e.Result == nil || !strings.Contains(e.Result.Error, "stopped") {
		t.Fatalf("the stopped run's result: %+v", e.Result)
	}
}

// adminDefinesAndOperates: an admin creates a job through the form, runs it, finds its failure by its
// text in the logs, meets a version conflict when editing it, resumes the job the operator paused and
// adds a contact.
func adminDefinesAndOperates(t *testing.T, c *Cluster, ctx context.Context, base string, leader *Member) {
	t.Helper()
	navigate := func(path string) {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.Navigate(base+path)); err != nil {
			t.Fatal(err)
		}
	}
	navigate("/ui/new-job")
	consoleText(t, ctx, "h1", "New job")
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("f-name"), "form-job"),
		chromedp.SetValue(chromedp.ID("f-params-command"), "echo boom-from-the-form >&2; exit 3"),
		chromedp.SetValue(chromedp.ID("f-retry-max"), "0"),
	); err != nil {
		t.Fatal(err)
	}
	browsertest.Screenshot(t, ctx, "cluster-job-form")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("save"))); err != nil {
		t.Fatal(err)
	}
	consoleText(t, ctx, "#message", "created, version 1")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("trigger"))); err != nil {
		t.Fatal(err)
	}
	consoleText(t, ctx, "#message", "triggered: form-job@")
	execID, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("#message").textContent.replace("triggered: ", "").trim()`))
	if err != nil {
		t.Fatal(err)
	}
	c.waitState(t, execID, job.StateFailed, 30*time.Second)
	navigate("/ui/logs?text=Boom-From-The-Form&hours=1")
	consoleText(t, ctx, "#log-results", execID)
	browsertest.Screenshot(t, ctx, "cluster-logs")

	// Opened at version 1; changed meanwhile (a pause through the API): the save overwrites nothing.
	navigate("/ui/jobs/form-job/edit")
	consoleText(t, ctx, "h1", "version 1")
	if err := c.Call(leader, "POST", "/api/v1/jobs/form-job/pause", nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.SetValue(chromedp.ID("f-schedule"), "0 0 5 * * ?"), chromedp.Click(chromedp.ID("save"))); err != nil {
		t.Fatal(err)
	}
	consoleText(t, ctx, "#edit-error", "changed since you opened it")
	var spec job.Spec
	if err := c.Call(leader, "GET", "/api/v1/jobs/form-job", nil, &spec); err != nil || spec.Schedule != "0 0 2 * * ?" || !spec.Paused {
		t.Fatalf("after the conflicting edit the job is %+v (%v): want the paused version, its schedule untouched", spec, err)
	}

	// Its history tab: the pause's revision, the diff of the last change, and a rollback to version 1
	// (made conditional on the version the tab showed).
	navigate("/ui/jobs/form-job/history")
	consoleText(t, ctx, "#revisions", "paused")
	consoleText(t, ctx, "#diff", "+ paused: true")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("rollback-1"))); err != nil {
		t.Fatal(err)
	}
	consoleText(t, ctx, "#message", "rolled back to version 1")
	consoleText(t, ctx, "#revisions", "rolled back (from 1)")
	browsertest.Screenshot(t, ctx, "cluster-history")
	if err := c.Call(leader, "GET", "/api/v1/jobs/form-job", nil, &spec); err != nil || spec.Version != 3 || !spec.Paused {
		t.Fatalf("after the rollback to version 1: %+v (%v); want version 3, still paused (pausing is not a definition change to roll back)", spec, err)
	}
	navigate("/ui/audit?who=test-admin")
	consoleText(t, ctx, "#audit", "rollback")
	if n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#audit a[href*="/ui/jobs/form-job/history?from=2"]').length`)); err != nil || n == 0 {
		t.Errorf("the audit log has no diff link for the rollback (%d, %v)", n, err)
	}
	browsertest.Screenshot(t, ctx, "cluster-audit")
	navigate("/ui/executions?job=form-job")
	consoleText(t, ctx, "#executions", "form-job@")
	browsertest.Screenshot(t, ctx, "cluster-executions")
	navigate("/ui/members")
	consoleText(t, ctx, "main", "client-1")
	browsertest.Screenshot(t, ctx, "cluster-members")

	navigate("/ui/jobs/console-job")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("resume"))); err != nil {
		t.Fatal(err)
	}
	consoleText(t, ctx, "#job-state", "active")

	navigate("/ui/contacts")
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("contact-name"), "night-shift"),
		chromedp.SendKeys(chromedp.ID("contact-email"), "night-shift@example.com"),
		chromedp.Click(chromedp.ID("contact-add")),
	); err != nil {
		t.Fatal(err)
	}
	consoleText(t, ctx, "#contacts", "night-shift@example.com")
	browsertest.Screenshot(t, ctx, "cluster-contacts")
}
