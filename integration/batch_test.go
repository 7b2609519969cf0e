package integration

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/client"
	"github.com/clover-sched/clover/internal/browsertest"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/workflow"
	springconfig "github.com/clover-sched/clover/spring-like-config"
)

// ledgerJob is a shell job that writes "start <node>/<partition> <round>" and "end ..." lines to a ledger
// around a pause, and fails when a file named fail-<node>-<partition> exists in dir.
func ledgerJob(name, dir, pause string) job.Spec {
	cmd := fmt.Sprintf(`key="$CLOVER_PARAM_BATCH_NODE/$CLOVER_PARAM_BATCH_PARTITION"; echo "start $key $CLOVER_EXECUTION" >> %[1]s/ledger; sleep %[2]s; `+
		`if [ -e "%[1]s/fail-$CLOVER_PARAM_BATCH_NODE-$CLOVER_PARAM_BATCH_PARTITION" ]; then echo "fail $key" >> %[1]s/ledger; exit 3; fi; `+
		`echo "end $key txdate=$CLOVER_PARAM_TXDATE" >> %[1]s/ledger`, dir, pause)
	return job.Spec{Name: name, Handler: "shell", Params: map[string]string{"command": cmd}}
}

// ledgerLines reads the ledger's lines.
func ledgerLines(t *testing.T, dir string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "ledger"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(data)), "\n")
}

// count counts the ledger's lines that start with prefix ("start extract/A").
func count(lines []string, prefix string) int {
	n := 0
	for _, l := range lines {
		if l == prefix || strings.HasPrefix(l, prefix+" ") {
			n++
		}
	}
	return n
}

// waitRun polls a run's status until ok says so.
func waitRun(t *testing.T, c *Cluster, batch, cycle string, timeout time.Duration, what string, ok func(api.BatchRunStatus) bool) api.BatchRunStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var st api.BatchRunStatus
	for {
		err := c.Call(c.AnyServer(), "GET", "/api/v1/batches/"+batch+"/runs/"+cycle, nil, &st)
		if err == nil && ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("batch run %s/%s: not %s within %s (last: %+v, %v)\n%s", batch, cycle, what, timeout, st, err, c.Logs(40))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func nodeStates(st api.BatchRunStatus) map[string]workflow.State {
	out := map[string]workflow.State{}
	for _, n := range st.Nodes {
		out[n.Name] = n.State
	}
	return out
}

const yearEnd = `
name: year-end
description: the year-end report
nodes:
  - name: extract
    job: extract
    partitions: [A, B, C]
    pre: echo "pre $CLOVER_PARAM_BATCH_PARTITION" >> {{dir}}/ledger
    post: echo "post $CLOVER_PARAM_BATCH_PARTITION" >> {{dir}}/ledger
    handlers:
      on_failure: {command: 'echo "handler failed $CLOVER_PARAM_BATCH_PARTITION $CLOVER_PARAM_BATCH_CYCLE" >> {{dir}}/ledger', contacts: [finance]}
  - {name: summary, job: report}
  - {name: branch, job: report, partitions: [A, B, C]}
  - {name: archive, job: report, frequencies: [M]}
  - {name: final, job: report}
  - {name: alert, job: report}
  - {name: payroll, job: report}
edges:
  - {from: extract, to: summary}
  - {from: extract, to: branch}
  - {from: summary, to: archive}
  - {from: archive, to: final}
  - {from: branch, to: final}
  - {from: extract, to: alert, flag: failed}
`

// The year-end report batch on a real cluster: extraction per department in parallel, then the
// head-office summary beside the branch reports, then the final report; each node × partition runs once
// and after what it waits for. A failed partition stops what depends on it and nothing else; a second run
// of the cycle is refused; a rerun from the point of failure repeats only the failed partition and what
// depends on it.
func TestTheYearEndBatchRunsInOrderAndRerunsFromFailure(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := StartCluster(t, Options{Servers: 2, Clients: 2})
	leader, _ := c.WaitLeader(30 * time.Second)
	c.WaitClients(2, 30*time.Second)
	follower := c.otherServer(leader)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	c.CreateJob(ledgerJob("extract", dir, "0.3"))
	report := ledgerJob("report", dir, "0.2")
	report.Params["txdate"], report.Overridable = "unset", []string{"txdate"}
	c.CreateJob(report)

	file := filepath.Join(dir, "year-end.yaml")
	if err := c.Call(c.AnyServer(), "POST", "/api/v1/contacts", api.ContactRequest{Name: "finance", Email: "finance@example.com"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(strings.ReplaceAll(yearEnd, "{{dir}}", dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	cli := func(args ...string) string { t.Helper(); return clover(t, c, follower, false, args...) }
	if out := cli("batch", "apply", "-f", file, "-m", "first cut"); !strings.Contains(out, "batch year-end created (version 1)") {
		t.Fatalf("apply: %s", out)
	}
	// A cycle in the graph is refused with its path, before anything is sent.
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(bad, []byte(strings.ReplaceAll(yearEnd, "{{dir}}", dir)+"  - {from: final, to: extract}\n"), 0o644)
	if out := clover(t, c, follower, true, "batch", "apply", "-f", bad); !strings.Contains(out, "cycle: extract → ") || !strings.Contains(out, " → final → extract") {
		t.Fatalf("apply of a cycle: %s", out)
	}

	// Department B's extraction fails.
	if err := os.WriteFile(filepath.Join(dir, "fail-extract-B"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	out := cli("batch", "run", "year-end", "--cycle", "2026-12-31", "--frequency", "Y", "--param", "txdate=20261231")
	if !strings.Contains(out, "batch run year-end/2026-12-31 running") {
		t.Fatalf("run: %s", out)
	}
	st := waitRun(t, c, "year-end", "2026-12-31", 60*time.Second, "failed", func(st api.BatchRunStatus) bool { return st.Run.State == store.RunFailed })
	want := map[string]workflow.State{
		"extract": workflow.Failed, "summary": workflow.Blocked, "branch": workflow.Blocked, "archive": workflow.Blocked,
		"final": workflow.Blocked, "alert": workflow.Succeeded, "payroll": workflow.Succeeded,
	}
	if got := nodeStates(st); !statesEqual(got, want) {
		t.Fatalf("after the failure: %v, want %v", got, want)
	}
	lines := ledgerLines(t, dir)
	for _, k := range []string{"start extract/A", "start extract/B", "start extract/C", "start alert/", "start payroll/"} {
		if n := count(lines, k); n != 1 {
			t.Errorf("%s: %d times, want 1\n%s", k, n, strings.Join(lines, "\n"))
		}
	}
	for _, k := range []string{"start summary/", "start branch/A", "start final/", "start archive/"} {
		if n := count(lines, k); n != 0 {
			t.Errorf("%s ran after its extraction failed\n%s", k, strings.Join(lines, "\n"))
		}
	}
	// The node's pre and post commands ran around each partition's command, its failure handler on B
	// only, and its contact was told the node failed.
	for k, want := range map[string]int{"pre A": 1, "pre B": 1, "post A": 1, "post C": 1, "post B": 0, "handler failed B 2026-12-31": 1, "handler failed A": 0} {
		if n := count(lines, k); n != want {
			t.Errorf("%q: %d lines, want %d\n%s", k, n, want, strings.Join(lines, "\n"))
		}
	}
	waitFor(t, 30*time.Second, "the contact told", func() bool {
		var ns []store.Notification
		_ = c.Call(c.AnyServer(), "GET", "/api/v1/notifications", nil, &ns)
		for _, n := range ns {
			if n.To == "finance@example.com" && strings.Contains(n.Subject, "batch run year-end/2026-12-31: node extract failed") {
				return true
			}
		}
		return false
	})
	status := cli("batch", "status", "year-end", "2026-12-31", "--exceptions")
	if !strings.Contains(status, "year-end/2026-12-31/extract/B") || !strings.Contains(status, "FAILED EXECUTION") {
		t.Errorf("the exceptions do not name extract/B:\n%s", status)
	}
	if !strings.Contains(status, "failed: B") || !strings.Contains(status, "blocked") {
		t.Errorf("status does not show the failed partition:\n%s", status)
	}

	// The console draws the run: the failed node with its partitions collapsed, what it blocked, the
	// Gantt, and the operations its state takes.
	page := consolePage(t, c, follower, "/ui/batches/year-end/runs/2026-12-31")
	for _, want := range []string{`id="graph-node-extract"`, "1 of 3 failed", `class="node st-blocked" id="graph-node-summary"`,
		`id="batch-gantt"`, `id="op-rerun"`, `id="skip-final"`, "extract/B"} {
		if !strings.Contains(page, want) {
			t.Errorf("the run's console page lacks %q", want)
		}
	}
	if page := consolePage(t, c, follower, "/ui/batches/year-end"); !strings.Contains(page, `id="graph-node-final"`) || !strings.Contains(page, `id="run-start"`) {
		t.Errorf("the batch's console page lacks its graph or its run form")
	}
	// In Chromium: the graph is drawn, the failed node colored as failed.
	browser := browsertest.Browser(t)
	runPage := c.scheme + "://" + follower.API + "/ui/batches/year-end/runs/2026-12-31"
	consoleLogin(t, browser, c.scheme+"://"+follower.API, c.Tokens.Operator)
	if err := chromedp.Do(browser, chromedp.Navigate(runPage)); err != nil {
		t.Fatal(err)
	}
	consoleText(t, browser, "#run-state", "failed")
	class, err := chromedp.Run(browser, chromedp.Evaluate[string](`document.querySelector("#graph-node-extract").getAttribute("class")`))
	if err != nil || !strings.Contains(class, "st-failed") {
		t.Errorf("the extract node is drawn with class %q (%v), want st-failed", class, err)
	}
	browsertest.Screenshot(t, browser, "batch-run-failed")

	// The same cycle again is refused; a rerun goes on from the point of failure.
	if out := clover(t, c, follower, true, "batch", "run", "year-end", "--cycle", "2026-12-31"); !strings.Contains(out, "HTTP 409") {
		t.Fatalf("second run of the cycle: %s", out)
	}
	if err := os.Remove(filepath.Join(dir, "fail-extract-B")); err != nil {
		t.Fatal(err)
	}
	cli("batch", "rerun", "year-end", "2026-12-31", "--why", "B's source fixed")
	st = waitRun(t, c, "year-end", "2026-12-31", 60*time.Second, "succeeded", func(st api.BatchRunStatus) bool { return st.Run.State == store.RunSucceeded })
	if st.Run.Round != 2 {
		t.Errorf("round %d after one rerun, want 2", st.Run.Round)
	}
	if s := nodeStates(st); s["archive"] != workflow.Skipped || s["final"] != workflow.Succeeded {
		t.Errorf("after the rerun: %v", s)
	}
	lines = ledgerLines(t, dir)
	once := []string{"start extract/A", "start extract/C", "start alert/", "start payroll/", "start summary/", "start branch/A",
		"start branch/B", "start branch/C", "start final/"}
	for _, k := range once {
		if n := count(lines, k); n != 1 {
			t.Errorf("%s: %d times, want 1", k, n)
		}
	}
	if n := count(lines, "start extract/B"); n != 2 {
		t.Errorf("extract/B ran %d times, want 2 (failed, then the rerun)", n)
	}
	if n := count(lines, "start archive/"); n != 0 {
		t.Errorf("archive (monthly) ran in a yearly run")
	}
	if n := count(lines, "end final/ txdate=20261231"); n != 1 {
		t.Errorf("the final report did not get the run's txdate:\n%s", strings.Join(lines, "\n"))
	}
	// Order: nothing starts before what it waits for has ended (in the round that counted).
	lastEnd := func(prefix string) int {
		at := -1
		for i, l := range lines {
			if strings.HasPrefix(l, "end "+prefix) {
				at = i
			}
		}
		return at
	}
	firstStart := func(prefix string) int {
		return slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "start "+prefix) })
	}
	for _, e := range []struct{ before, after string }{
		{"extract/", "summary/"}, {"extract/", "branch/"}, {"summary/", "final/"}, {"branch/", "final/"},
	} {
		if b, a := lastEnd(e.before), firstStart(e.after); b < 0 || a < 0 || a < b {
			t.Errorf("%s started (line %d) before %s ended (line %d)\n%s", e.after, a, e.before, b, strings.Join(lines, "\n"))
		}
	}
	// Each execution has its stable id, and the run's operations are recorded with who asked.
	var e job.Execution
	if err := c.Call(c.AnyServer(), "GET", "/api/v1/executions/"+url.PathEscape("year-end/2026-12-31/extract/B~r2"), nil, &e); err != nil || e.State != job.StateSucceeded || e.BatchRound != 2 {
		t.Errorf("the rerun's execution of extract/B: %+v, %v", e, err)
	}
	if err := chromedp.Do(browser, chromedp.Navigate(runPage)); err != nil {
		t.Fatal(err)
	}
	consoleText(t, browser, "#run-state", "succeeded")
	browsertest.Screenshot(t, browser, "batch-run-succeeded")

	// History: an edit, its diff, a rollback; the run kept the version it started with.
	edited := strings.ReplaceAll(strings.ReplaceAll(yearEnd, "{{dir}}", dir), "  - {name: payroll, job: report}\n", "")
	if err := os.WriteFile(file, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := cli("batch", "apply", "-f", file, "-m", "payroll moved out"); !strings.Contains(out, "version 2") {
		t.Fatalf("apply of an edit: %s", out)
	}
	if out := cli("batch", "diff", "year-end"); !strings.Contains(out, "version 1 → 2") || !strings.Contains(out, `- node {"name":"payroll"`) {
		t.Errorf("diff:\n%s", out)
	}
	if out := cli("batch", "rollback", "year-end", "--to", "1"); !strings.Contains(out, "version 3, equal to version 1") {
		t.Errorf("rollback: %s", out)
	}
	if out := cli("batch", "show", "year-end"); !strings.Contains(out, `"payroll"`) {
		t.Errorf("after the rollback:\n%s", out)
	}
	if out := cli("batch", "tag", "year-end", "1", "audited-2026"); !strings.Contains(out, "tags [audited-2026]") {
		t.Errorf("tag: %s", out)
	}
	if out := cli("batch", "history", "year-end"); !strings.Contains(out, "rolled back to version 1") || !strings.Contains(out, "payroll moved out") || !strings.Contains(out, "audited-2026") {
		t.Errorf("history:\n%s", out)
	}
	if st.Run.Version != 1 {
		t.Errorf("the run records version %d, want 1", st.Run.Version)
	}
	ops := map[string]string{}
	for _, op := range st.Operations {
		ops[op.Op] = op.Who + ": " + op.Why
	}
	if !strings.Contains(ops["rerun"], "B's source fixed") || ops["run"] == "" {
		t.Errorf("operations: %v", ops)
	}
}

func statesEqual(a, b map[string]workflow.State) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// Pause holds the next node; resume lets it start; stop ends the run with what runs stopped and nothing
// after it started; reset puts every node back, and a resume runs the batch from its first node again.
// Skipping a failed node by hand lets the nodes after it go on.
func TestABatchRunIsPausedResumedStoppedResetAndSkipped(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := StartCluster(t, Options{Servers: 1, Clients: 1})
	c.WaitLeader(30 * time.Second)
	c.WaitClients(1, 30*time.Second)
	dir := t.TempDir()
	_ = os.Chmod(dir, 0o777)
	c.CreateJob(ledgerJob("step", dir, "2"))
	chain := workflow.Definition{Name: "chain", Nodes: []workflow.Node{{Name: "a", Job: "step"}, {Name: "b", Job: "step"}, {Name: "c", Job: "step"}},
		Edges: []workflow.Edge{{From: "a", To: "b"}, {From: "b", To: "c"}}}
	if err := c.Call(c.AnyServer(), "PUT", "/api/v1/batches/chain", chain, nil); err != nil {
		t.Fatal(err)
	}
	op := func(cycle, name string) store.BatchRun {
		t.Helper()
		var run store.BatchRun
		if err := c.Call(c.AnyServer(), "POST", "/api/v1/batches/chain/runs/"+cycle+"/"+name, api.BatchOperationRequest{Why: "test"}, &run); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return run
	}
	if err := c.Call(c.AnyServer(), "POST", "/api/v1/batches/chain/runs", api.BatchRunRequest{Cycle: "d1"}, nil); err != nil {
		t.Fatal(err)
	}
	waitRun(t, c, "chain", "d1", 30*time.Second, "running a", func(st api.BatchRunStatus) bool { return nodeStates(st)["a"] == workflow.Running })
	if run := op("d1", "pause"); run.State != store.RunPaused {
		t.Fatalf("pause: %s", run.State)
	}
	// a finishes; b stays ready while the run is paused.
	st := waitRun(t, c, "chain", "d1", 30*time.Second, "a done", func(st api.BatchRunStatus) bool { return nodeStates(st)["a"] == workflow.Succeeded })
	time.Sleep(time.Second) // b would have been started by now, were the run not paused
	st = waitRun(t, c, "chain", "d1", 5*time.Second, "still paused", func(api.BatchRunStatus) bool { return true })
	if s := nodeStates(st)["b"]; s != workflow.Ready || st.Running != 0 || count(ledgerLines(t, dir), "start b/") != 0 {
		t.Fatalf("while paused: b %s, %d running", s, st.Running)
	}
	op("d1", "resume")
	waitRun(t, c, "chain", "d1", 30*time.Second, "running b", func(st api.BatchRunStatus) bool { return nodeStates(st)["b"] == workflow.Running })
	waitFor(t, 30*time.Second, "b started", func() bool { return count(ledgerLines(t, dir), "start b/") == 1 })
	op("d1", "stop")
	st = waitRun(t, c, "chain", "d1", 30*time.Second, "stopped", func(st api.BatchRunStatus) bool { return st.Run.State == store.RunStopped })
	if s := nodeStates(st); s["b"] != workflow.Failed || s["c"] != workflow.Blocked {
		t.Fatalf("after stop: %v", s)
	}
	if count(ledgerLines(t, dir), "end b/") != 0 || count(ledgerLines(t, dir), "start c/") != 0 {
		t.Fatalf("b ended or c started after the stop:\n%s", strings.Join(ledgerLines(t, dir), "\n"))
	}
	// Reset: back to not started, paused; resume runs a again.
	if run := op("d1", "reset"); run.State != store.RunPaused {
		t.Fatalf("reset: %s", run.State)
	}
	st = waitRun(t, c, "chain", "d1", 5*time.Second, "reset", func(api.BatchRunStatus) bool { return true })
	if s := nodeStates(st); s["a"] != workflow.Ready || s["b"] != workflow.Waiting {
		t.Fatalf("after reset: %v", s)
	}
	op("d1", "resume")
	waitRun(t, c, "chain", "d1", 60*time.Second, "succeeded", func(st api.BatchRunStatus) bool { return st.Run.State == store.RunSucceeded })
	lines := ledgerLines(t, dir)
	if count(lines, "start a/") != 2 || count(lines, "start b/") != 2 || count(lines, "start c/") != 1 {
		t.Fatalf("after reset and resume:\n%s", strings.Join(lines, "\n"))
	}

	// Skip: b fails; marking it succeeded lets c run.
	_ = os.WriteFile(filepath.Join(dir, "fail-b-"), nil, 0o644)
	if err := c.Call(c.AnyServer(), "POST", "/api/v1/batches/chain/runs", api.BatchRunRequest{Cycle: "d2"}, nil); err != nil {
		t.Fatal(err)
	}
	waitRun(t, c, "chain", "d2", 60*time.Second, "failed", func(st api.BatchRunStatus) bool { return st.Run.State == store.RunFailed })
	var run store.BatchRun
	if err := c.Call(c.AnyServer(), "POST", "/api/v1/batches/chain/runs/d2/nodes/b/skip", api.BatchOperationRequest{Why: "loaded by hand"}, &run); err != nil {
		t.Fatal(err)
	}
	st = waitRun(t, c, "chain", "d2", 60*time.Second, "succeeded", func(st api.BatchRunStatus) bool { return st.Run.State == store.RunSucceeded })
	for _, n := range st.Nodes {
		if n.Name == "b" && (n.State != workflow.Succeeded || !strings.Contains(n.Reason, "loaded by hand")) {
			t.Errorf("b after skip: %+v", n)
		}
	}
	if count(ledgerLines(t, dir), "start c/") != 2 {
		t.Errorf("c did not run after b was skipped")
	}
}

// waitFor polls cond until it holds, or fails the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not %s within %s", what, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// layeredBatch is a batch of layers × width nodes, each after two nodes of the layer before, every tenth
// node split into four partitions.
func layeredBatch(name, jobName string, layers, width int, rng *rand.Rand) workflow.Definition {
	d := workflow.Definition{Name: name}
	node := func(l, i int) string { return fmt.Sprintf("n%02d-%02d", l, i) }
	for l := range layers {
		for i := range width {
			n := workflow.Node{Name: node(l, i), Job: jobName}
			if (l*width+i)%10 == 0 {
				n.Partitions = []string{"p1", "p2", "p3", "p4"}
			}
			d.Nodes = append(d.Nodes, n)
			if l == 0 {
				continue
			}
			a, b := rng.IntN(width), rng.IntN(width)
			d.Edges = append(d.Edges, workflow.Edge{From: node(l-1, a), To: n.Name})
			if b != a {
				d.Edges = append(d.Edges, workflow.Edge{From: node(l-1, b), To: n.Name})
			}
		}
	}
	return d
}

// The leader is SIGKILLed in the middle of a 200-node batch: the new leader rebuilds the run from the
// store and finishes it, with every node × partition run exactly once, each after what it waits for.
func TestABatchRunSurvivesItsLeaderKilledMidway(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := StartCluster(t, Options{Servers: 2, Clients: 2})
	leader, _ := c.WaitLeader(30 * time.Second)
	c.WaitClients(2, 30*time.Second)
	dir := t.TempDir()
	_ = os.Chmod(dir, 0o777)
	c.CreateJob(ledgerJob("work", dir, "0.3"))
	d := layeredBatch("big", "work", 10, 20, rand.New(rand.NewPCG(7, 7)))
	if err := c.Call(c.AnyServer(), "PUT", "/api/v1/batches/big", d, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Call(c.AnyServer(), "POST", "/api/v1/batches/big/runs", api.BatchRunRequest{Cycle: "2026-12-31"}, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "a third of the batch started", func() bool { return count(ledgerLines(t, dir), "start") >= 80 })
	leader.Kill()
	t.Logf("leader %s killed with %d starts in the ledger", leader.ID, count(ledgerLines(t, dir), "start"))
	next, _ := c.WaitLeader(30 * time.Second)
	if next == leader {
		t.Fatal("the killed server still leads")
	}
	st := waitRun(t, c, "big", "2026-12-31", 3*time.Minute, "succeeded", func(st api.BatchRunStatus) bool { return st.Run.State.Open() == false })
	if st.Run.State != store.RunSucceeded {
		t.Fatalf("run ended %s: %s", st.Run.State, st.Run.Reason)
	}
	lines := ledgerLines(t, dir)
	want := 0
	for _, n := range d.Nodes {
		parts := n.Partitions
		if len(parts) == 0 {
			parts = []string{""}
		}
		for _, p := range parts {
			want++
			key := n.Name + "/" + p
			if s, e := count(lines, "start "+key), count(lines, "end "+key); s != 1 || e != 1 {
				t.Errorf("%s: started %d times, ended %d times; want once", key, s, e)
			}
		}
	}
	if got := count(lines, "start"); got != want {
		t.Errorf("%d starts in the ledger, want %d", got, want)
	}
	// Order: a node starts after the last end of each node it waits for.
	at := map[string]int{}
	for i, l := range lines {
		f := strings.Fields(l)
		if len(f) >= 2 {
			node, _, _ := strings.Cut(f[1], "/")
			key := f[0] + " " + node
			if f[0] == "start" {
				if _, ok := at[key]; !ok {
					at[key] = i
				}
			} else {
				at[key] = i
			}
		}
	}
	for _, e := range d.Edges {
		if at["start "+e.To] < at["end "+e.From] {
			t.Errorf("%s started (line %d) before %s ended (line %d)", e.To, at["start "+e.To], e.From, at["end "+e.From])
		}
	}
}

// overlaps reports the pairs of keys whose start-end intervals in the ledger overlap.
func maxConcurrent(lines []string, keys ...string) int {
	in, most := 0, 0
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) < 2 || !slices.ContainsFunc(keys, func(k string) bool { return strings.HasPrefix(f[1], k+"/") }) {
			continue
		}
		switch f[0] {
		case "start":
			in++
		case "end", "fail":
			in--
		}
		most = max(most, in)
	}
	return most
}

// A mutex keeps two nodes apart across two clients, and a counted resource lets no more run at once than
// its capacity; a run asking for more than a resource has is refused; what waits says what it waits for.
func TestBatchMutexesAndResourcesKeepNodesApart(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := StartCluster(t, Options{Servers: 1, Clients: 2})
	c.WaitLeader(30 * time.Second)
	c.WaitClients(2, 30*time.Second)
	dir := t.TempDir()
	_ = os.Chmod(dir, 0o777)
	c.CreateJob(ledgerJob("load", dir, "1"))
	if err := c.Call(c.AnyServer(), "PUT", "/api/v1/resources/db", api.ResourceRequest{Capacity: 2}, nil); err != nil {
		t.Fatal(err)
	}
	d := workflow.Definition{Name: "loads", Nodes: []workflow.Node{
		{Name: "gl", Job: "load", Locks: []workflow.Lock{{Name: "ledger"}}},
		{Name: "ap", Job: "load", Locks: []workflow.Lock{{Name: "ledger"}}},
		{Name: "ar", Job: "load", Locks: []workflow.Lock{{Name: "ledger"}}},
		{Name: "fx", Job: "load", Resources: map[string]int{"db": 1}, Partitions: []string{"p1", "p2", "p3", "p4", "p5"}},
	}}
	if err := c.Call(c.AnyServer(), "PUT", "/api/v1/batches/loads", d, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Call(c.AnyServer(), "POST", "/api/v1/batches/loads/runs", api.BatchRunRequest{Cycle: "c1"}, nil); err != nil {
		t.Fatal(err)
	}
	st := waitRun(t, c, "loads", "c1", 30*time.Second, "waiting at the gate", func(st api.BatchRunStatus) bool { return len(st.Waiting) > 0 })
	if !strings.Contains(strings.Join(st.Waiting, "\n"), "lock ledger (held by loads/c1/") {
		t.Errorf("waiting: %v", st.Waiting)
	}
	waitRun(t, c, "loads", "c1", 2*time.Minute, "succeeded", func(st api.BatchRunStatus) bool { return st.Run.State == store.RunSucceeded })
	lines := ledgerLines(t, dir)
	if n := maxConcurrent(lines, "gl", "ap", "ar"); n != 1 {
		t.Errorf("%d holders of the ledger mutex at once:\n%s", n, strings.Join(lines, "\n"))
	}
	if n := maxConcurrent(lines, "fx"); n > 2 || n < 1 {
		t.Errorf("%d holders of resource db (capacity 2) at once:\n%s", n, strings.Join(lines, "\n"))
	}
	for _, k := range []string{"gl/", "ap/", "ar/", "fx/p1", "fx/p5"} {
		if count(lines, "start "+k) != 1 {
			t.Errorf("%s did not run once", k)
		}
	}
	// The executions ran on both clients.
	clients := map[string]bool{}
	for _, node := range []string{"gl", "ap", "ar"} {
		var e job.Execution
		if err := c.Call(c.AnyServer(), "GET", "/api/v1/executions/"+url.PathEscape("loads/c1/"+node), nil, &e); err == nil {
			clients[e.Client] = true
		}
	}
	t.Logf("the mutex's nodes ran on %v", clients)

	// More units than the resource has: refused at the start, naming it.
	d.Nodes[3].Resources["db"] = 3
	d.Version = 1
	if err := c.Call(c.AnyServer(), "PUT", "/api/v1/batches/loads", d, nil); err != nil {
		t.Fatal(err)
	}
	err := c.Call(c.AnyServer(), "POST", "/api/v1/batches/loads/runs", api.BatchRunRequest{Cycle: "c2"}, nil)
	if err == nil || !strings.Contains(err.Error(), "asks for 3 of resource db, whose capacity is 2") {
		t.Fatalf("a run asking for too much: %v", err)
	}
}

// A batch with a schedule starts a run per fire time, each cycle once, across a leader change.
func TestAScheduledBatchStartsARunPerCycleOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := StartCluster(t, Options{Servers: 2, Clients: 1})
	leader, _ := c.WaitLeader(30 * time.Second)
	c.WaitClients(1, 30*time.Second)
	dir := t.TempDir()
	_ = os.Chmod(dir, 0o777)
	c.CreateJob(ledgerJob("tick", dir, "0.1"))
	d := workflow.Definition{Name: "ticker", Schedule: "@every 3s", Frequency: "D", CycleFormat: "20060102T150405",
		Nodes: []workflow.Node{{Name: "a", Job: "tick"}, {Name: "b", Job: "tick"}}, Edges: []workflow.Edge{{From: "a", To: "b"}}}
	if err := c.Call(c.AnyServer(), "PUT", "/api/v1/batches/ticker", d, nil); err != nil {
		t.Fatal(err)
	}
	runs := func() []store.BatchRun {
		var out []store.BatchRun
		if err := c.Call(c.AnyServer(), "GET", "/api/v1/batches/ticker/runs?limit=1000", nil, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	waitFor(t, 30*time.Second, "two scheduled runs", func() bool { return len(runs()) >= 2 })
	leader.Kill()
	c.WaitLeader(30 * time.Second)
	before := len(runs())
	waitFor(t, 30*time.Second, "two more scheduled runs under the new leader", func() bool { return len(runs()) >= before+2 })
	// Stop the schedule, then let the last runs finish.
	d.Schedule, d.Version = "", 1
	if err := c.Call(c.AnyServer(), "PUT", "/api/v1/batches/ticker", d, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "every run ended", func() bool {
		for _, r := range runs() {
			if r.State.Open() {
				return false
			}
		}
		return true
	})
	seen := map[string]bool{}
	for _, r := range runs() {
		if r.Trigger != "schedule" || r.By != "schedule" || r.Frequency != "D" {
			t.Errorf("run %s: trigger %q by %q frequency %q", r.ID, r.Trigger, r.By, r.Frequency)
		}
		if r.State != store.RunSucceeded {
			t.Errorf("run %s: %s %s", r.ID, r.State, r.Reason)
		}
		if _, err := time.Parse("20060102T150405", r.Cycle); err != nil || seen[r.Cycle] {
			t.Errorf("cycle %q: repeated or not a fire time: %v", r.Cycle, err)
		}
		seen[r.Cycle] = true
	}
	lines := ledgerLines(t, dir)
	execs := map[string]int{}
	for _, l := range lines {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "start" {
			execs[f[2]]++
		}
	}
	for id, n := range execs {
		if n != 1 {
			t.Errorf("%s ran %d times", id, n)
		}
	}
	if len(execs) != 2*len(seen) {
		t.Errorf("%d executions for %d runs of 2 nodes", len(execs), len(seen))
	}
}

// consolePage logs in to a server's console as admin and returns a page's HTML.
func consolePage(t *testing.T, c *Cluster, m *Member, path string) string {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar}
	base := c.scheme + "://" + m.API
	req, _ := http.NewRequest("POST", base+"/ui/login", strings.NewReader(url.Values{"token": {c.Tokens.Admin}, "next": {"/ui/"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = hc.Get(base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("console %s: %s\n%s", path, resp.Status, body)
	}
	return string(body)
}

// A file-arrival trigger fires once when a file has finished growing and its MD5 companion matches: not
// while it grows, not while the companion is wrong, and not again when the file is seen again.
func TestAFileArrivalStartsABatchRunOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := StartCluster(t, Options{Servers: 1, Clients: 0})
	leader, _ := c.WaitLeader(30 * time.Second)
	dir := t.TempDir()
	_ = os.Chmod(dir, 0o777)
	in := filepath.Join(dir, "in")
	if err := os.Mkdir(in, 0o777); err != nil {
		t.Fatal(err)
	}
	watcher := c.AddClientWithConfig("watcher", fmt.Sprintf("watches:\n  - batch: inbound\n    path: %s/gl-*.csv\n    stable: 2s\n    md5_suffix: .md5\n    cycle: 'gl-(\\d{8})\\.csv'\n    frequency: D\n", in))
	c.WaitClients(1, 30*time.Second)
	c.CreateJob(ledgerJob("load", dir, "0.1"))
	d := workflow.Definition{Name: "inbound", RequestedBy: []string{"watcher"}, Frequency: "D", Nodes: []workflow.Node{{Name: "load", Job: "load"}}}
	if err := c.Call(c.AnyServer(), "PUT", "/api/v1/batches/inbound", d, nil); err != nil {
		t.Fatal(err)
	}
	runs := func() []store.BatchRun {
		var out []store.BatchRun
		if err := c.Call(c.AnyServer(), "GET", "/api/v1/batches/inbound/runs", nil, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	// The file grows for 4 s, a line every 400 ms: no run meanwhile.
	file := filepath.Join(in, "gl-20261231.csv")
	var content strings.Builder
	for i := range 10 {
		fmt.Fprintf(&content, "line %d\n", i)
		if err := os.WriteFile(file, []byte(content.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		time.Sleep(400 * time.Millisecond)
		if n := len(runs()); n != 0 {
			t.Fatalf("a run started while the file was still growing (%d)", n)
		}
	}
	// A companion that does not match: still no run, past the stable time.
	if err := os.WriteFile(file+".md5", []byte("00000000000000000000000000000000  gl-20261231.csv\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	logged := func(m *Member, what string) int { return strings.Count(m.Log(5000), what) }
	waitFor(t, 30*time.Second, "the watcher to find the MD5 wrong", func() bool { return logged(watcher, "MD5 does not match") > 0 })
	if n := len(runs()); n != 0 {
		t.Fatalf("a run started with a wrong MD5 (%d)", n)
	}
	sum := md5.Sum([]byte(content.String()))
	if err := os.WriteFile(file+".md5", []byte(hex.EncodeToString(sum[:])+"  gl-20261231.csv\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitRun(t, c, "inbound", "20261231", 30*time.Second, "succeeded", func(st api.BatchRunStatus) bool { return st.Run.State == store.RunSucceeded })
	// Seen again (touched): it asks again, and the cycle that ran is not run twice.
	asked := logged(watcher, "a file arrived: batch run asked for")
	later := time.Now().Add(time.Minute)
	_ = os.Chtimes(file, later, later)
	waitFor(t, 30*time.Second, "the watcher to ask again", func() bool { return logged(watcher, "a file arrived: batch run asked for") > asked })
	waitFor(t, 30*time.Second, "the leader to answer that the run exists", func() bool {
		return logged(leader, "a requested batch run exists already") > 0
	})
	rs := runs()
	if len(rs) != 1 || rs[0].Cycle != "20261231" || rs[0].By != "client:watcher" || rs[0].Trigger != "request" || rs[0].Frequency != "D" {
		t.Fatalf("runs: %+v", rs)
	}
	if n := count(ledgerLines(t, dir), "start load/"); n != 1 {
		t.Fatalf("the load ran %d times", n)
	}
}

// A batch declared in a job file is applied with its jobs by `clover config apply`, runs, and is deleted
// when the file drops it; a batch declared in Go by an application's client (springconfig, beside the
// jobs and handlers it declares) is created by the leader and runs on that client.
func TestBatchesDeclaredInJobFilesAndInCode(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := StartCluster(t, Options{Servers: 1, Clients: 1})
	c.WaitLeader(30 * time.Second)
	c.WaitClients(1, 30*time.Second)
	dir := t.TempDir()
	_ = os.Chmod(dir, 0o777)
	file := filepath.Join(dir, "nightly.yaml")
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	jobs := fmt.Sprintf(`jobs:
  - name: file-step
    command: echo "$CLOVER_PARAM_BATCH_NODE group=$CLOVER_PARAM_GROUP" >> %s/ledger
`, dir)
	write(jobs + `batches:
  - name: from-file
    nodes:
      - {name: a, job: file-step, group: finance, partitions: [A, B], locks: [ledger], params: {mode: full}}
      - {name: b, job: file-step, frequencies: [D, Y], handlers: {on_success: {command: "true"}}}
    edges:
      - {from: a, to: b, flag: successful}
`)
	srv := c.AnyServer()
	out := clover(t, c, srv, false, "config", "apply", file)
	if !strings.Contains(out, "ADD batch from-file") || !strings.Contains(out, "ADD file-step") {
		t.Fatalf("config apply: %s", out)
	}
	var def workflow.Definition
	if err := c.Call(srv, "GET", "/api/v1/batches/from-file", nil, &def); err != nil || def.Source != "config:nightly" || def.Nodes[0].Group != "finance" {
		t.Fatalf("the file's batch: %+v, %v", def, err)
	}
	if out := clover(t, c, srv, false, "config", "apply", file); !strings.Contains(out, "0 added, 0 updated, 0 deleted") {
		t.Errorf("applying the same file again changed something: %s", out)
	}
	if err := c.Call(srv, "POST", "/api/v1/batches/from-file/runs", api.BatchRunRequest{Cycle: "f1", Frequency: "D"}, nil); err != nil {
		t.Fatal(err)
	}
	waitRun(t, c, "from-file", "f1", 60*time.Second, "succeeded", func(st api.BatchRunStatus) bool { return st.Run.State == store.RunSucceeded })
	if lines := ledgerLines(t, dir); !slices.Equal(lines, []string{"a group=finance", "a group=finance", "b group="}) {
		t.Errorf("ledger %q: want a's two partitions (with its group), then b", lines)
	}
	write(jobs)
	if out := clover(t, c, srv, false, "config", "apply", file); !strings.Contains(out, "DELETE batch from-file") {
		t.Errorf("config apply of a file without the batch: %s", out)
	}
	if err := c.Call(srv, "GET", "/api/v1/batches/from-file", nil, &def); err == nil {
		t.Error("the batch the file dropped is still there")
	}

	// In code: the client's own job, its Go handler, and a batch of it.
	var ran sync.Map
	step := func(ctx context.Context, jc client.JobContext) error {
		ran.Store(jc.Params["batch_node"], true)
		return nil
	}
	nightly := springconfig.Batch("from-code").Description("declared in Go")
	nightly.Node("x", "code-step").Node("y", "code-step").After("x")
	app := c.StartAppClient(AppClientOptions{ID: "app-batches", Register: []springconfig.Declarer{
		springconfig.Job("code-step").Handler(step), nightly,
	}})
	waitFor(t, 60*time.Second, "the declared batch", func() bool {
		return c.Call(srv, "GET", "/api/v1/batches/from-code", nil, &def) == nil
	})
	if def.Source != "client:app-batches" || def.Description != "declared in Go" {
		t.Fatalf("the batch declared in code: %+v", def)
	}
	if err := c.Call(srv, "POST", "/api/v1/batches/from-code/runs", api.BatchRunRequest{Cycle: "g1"}, nil); err != nil {
		t.Fatal(err)
	}
	waitRun(t, c, "from-code", "g1", 60*time.Second, "succeeded", func(st api.BatchRunStatus) bool { return st.Run.State == store.RunSucceeded })
	for _, n := range []string{"x", "y"} {
		if _, ok := ran.Load(n); !ok {
			t.Errorf("node %s did not run in the client that declared it\n%s", n, app.Log(30))
		}
	}
}
