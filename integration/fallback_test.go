package integration

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/client"
	"github.com/clover-sched/clover/internal/fallback"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/testenv"
)

// runCounter counts the runs of each execution that a Go handler actually made.
type runCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func newRunCounter() *runCounter { return &runCounter{counts: map[string]int{}} }

func (r *runCounter) add(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts[id]++
}

func (r *runCounter) count(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts[id]
}

func (r *runCounter) snapshot() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int, len(r.counts))
	for k, v := range r.counts {
		out[k] = v
	}
	return out
}

// work is a handler that counts its runs, and holds a run whose params say hold=yes until release closes.
func work(runs *runCounter, release <-chan struct{}) client.HandlerFunc {
	return func(ctx context.Context, jc client.JobContext) error {
		runs.add(jc.ExecutionID)
		if jc.Params["hold"] == "yes" {
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
}

// settleJob is fired only on request (its schedule is far off); its runs may overlap.
var settleJob = job.Spec{Name: "settle", Schedule: "@every 1000h", Handler: "work", Overlap: job.OverlapAllow}

func fallbackStatus(t *testing.T, c *Cluster) api.FallbackStatus {
	t.Helper()
	var st api.FallbackStatus
	if err := c.Call(c.AnyServer(), "GET", "/api/v1/fallback", nil, &st); err != nil {
		t.Fatalf("GET /api/v1/fallback: %v", err)
	}
	return st
}

func killAll(t *testing.T, ms []*Member) {
	t.Helper()
	for _, m := range ms {
		m.Kill()
	}
	testenv.WaitFor(t, 10*time.Second, "servers exited", func() bool {
		return !slices.ContainsFunc(ms, func(m *Member) bool { return !m.Proc.Exited() })
	})
}

// waitRecorded waits until every execution in ids is recorded as ended with status want.
func waitRecorded(t *testing.T, c *Cluster, ids []string, want job.State, timeout time.Duration) []job.Execution {
	t.Helper()
	var execs []job.Execution
	if !testenv.Poll(timeout, func() bool {
		var err error
		execs, err = c.Store().ExecutionsByID(t.Context(), ids)
		if err != nil || len(execs) != len(ids) {
			return false
		}
		return !slices.ContainsFunc(execs, func(e job.Execution) bool { return e.State != want })
	}) {
		var states []string
		for _, e := range execs {
			states = append(states, e.ID+"="+string(e.State))
		}
		t.Fatalf("%d of %d executions recorded within %s, want all %s: %v\n%s", len(execs), len(ids), timeout, want, states, c.Logs(60))
	}
	return execs
}

// entryKinds names each entry by its kind and execution: "result:settle@request-...".
func entryKinds(entries []fallback.Entry) []string {
	var kinds []string
	for _, e := range entries {
		kinds = append(kinds, string(e.Kind)+":"+e.ExecID)
	}
	return kinds
}

// startHeldRun asks for a run of settle that holds until release closes, and waits until it runs; it
// returns the execution id.
func startHeldRun(t *testing.T, app *AppClient, runs *runCounter) string {
	t.Helper()
	held, err := app.RequestRun("settle", map[string]string{"hold": "yes"})
	if err != nil {
		t.Fatal(err)
	}
	id := job.RequestExecutionID("settle", held)
	testenv.WaitFor(t, 20*time.Second, "the held run started", func() bool { return runs.count(id) == 1 })
	return id
}

// Every server dies while a client's run goes on and its application asks for more runs: the result and
// the requests wait in the fallback queue, and the servers that come back replay them in order, once.
func TestFallbackReplaysWhatAClientKeptWhileEveryServerWasDown(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := StartCluster(t, Options{Servers: 2, ServerEnv: []string{"CLOVER_FALLBACK_POLL=500ms", "CLOVER_OPERATORS=ops@example.com"}})
	runs, release := newRunCounter(), make(chan struct{})
	app := c.StartAppClient(AppClientOptions{ID: "app-1", Handlers: map[string]client.HandlerFunc{"work": work(runs, release)}})
	c.WaitClients(1, 30*time.Second)
	c.CreateJob(settleJob)

	heldExec := startHeldRun(t, app, runs)

	killAll(t, c.Servers)
	close(release) // the run ends while no server is up
	testenv.WaitFor(t, 10*time.Second, "the held run ended", func() bool { return app.PendingResults() == 1 })
	var reqs, execs []string
	for i := range 3 {
		id, err := app.RequestRun("settle", map[string]string{"n": fmt.Sprint(i)})
		if err != nil {
			t.Fatal(err)
		}
		reqs, execs = append(reqs, id), append(execs, job.RequestExecutionID("settle", id))
	}
	testenv.WaitFor(t, 20*time.Second, "the result and the requests queued", func() bool { return app.Stats().FallbackQueued.Load() >= 4 })

	entries, err := c.Store().FallbackEntries(t.Context(), "app-1")
	if err != nil {
		t.Fatal(err)
	}
	kinds := entryKinds(entries)
	wantKinds := []string{"result:" + heldExec, "request:" + execs[0], "request:" + execs[1], "request:" + execs[2]}
	if !slices.Equal(kinds, wantKinds) {
		t.Fatalf("queued entries %v, want %v", kinds, wantKinds)
	}
	if runs.count(execs[0]) != 0 {
		t.Fatal("a request ran while no server was up")
	}

	// A client that starts while no server is up queues its declarations, and its local job keeps firing
	// into the queue; it is gone before any server comes back.
	report := job.Spec{Name: "report", Schedule: "@every 1000h", Handler: "work"}
	local := job.Spec{Name: "beat", Schedule: "@every 1s", Handler: "work", Mode: job.ModeLocal}
	lone := c.StartAppClient(AppClientOptions{ID: "app-2", Handlers: map[string]client.HandlerFunc{"work": work(runs, nil)},
		Declare: []job.Spec{report, local}})
	testenv.WaitFor(t, 30*time.Second, "the lone client's declarations and local runs queued", func() bool {
		return lone.Stats().FallbackQueued.Load() >= 5 // the declarations, then an ack and a result per local run
	})
	lone.Stop()
	var localRuns []string
	for id := range runs.snapshot() {
		if strings.HasPrefix(id, "beat@") {
			localRuns = append(localRuns, id)
		}
	}
	if len(localRuns) == 0 {
		t.Fatal("the local job did not fire while no server was up")
	}

	for _, m := range c.Servers {
		c.Start(m)
	}
	c.WaitLeader(30 * time.Second)
	ended := waitRecorded(t, c, append([]string{heldExec}, execs...), job.StateSucceeded, 30*time.Second)
	testenv.WaitFor(t, 20*time.Second, "the queue replayed", func() bool { return fallbackStatus(t, c).Waiting == 0 })

	for _, id := range append([]string{heldExec}, execs...) {
		if n := runs.count(id); n != 1 {
			t.Errorf("execution %s ran %d times, want once", id, n)
		}
	}
	byID := map[string]job.Execution{}
	for _, e := range ended {
		byID[e.ID] = e
	}
	for i, id := range execs {
		e := byID[id]
		if e.Trigger != job.TriggerRequest || e.Params["n"] != fmt.Sprint(i) {
			t.Errorf("execution %s: trigger %q params %v, want a request with n=%d", id, e.Trigger, e.Params, i)
		}
		if i > 0 && !byID[execs[i-1]].FiredAt.Before(e.FiredAt) {
			t.Errorf("request %d fired at %s, not after request %d (%s): out of order", i, e.FiredAt, i-1, byID[execs[i-1]].FiredAt)
		}
	}
	entries, err = c.Store().FallbackEntries(t.Context(), "app-1")
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range entries {
		if e.State != fallback.StateApplied || e.AppliedBy == "" {
			t.Errorf("entry %s: state %s by %q, want applied", e.ID, e.State, e.AppliedBy)
		}
		if i > 0 && e.AppliedAt.Before(entries[i-1].AppliedAt) {
			t.Errorf("entry %s applied at %s, before the entry queued ahead of it (%s)", e.ID, e.AppliedAt, entries[i-1].AppliedAt)
		}
	}
	st := fallbackStatus(t, c)
	if st.Applied < 4 || st.Rejected != 0 {
		t.Errorf("fallback status %+v, want 4 applied, none rejected", st)
	}
	// The first sight of the queue raised an alert for the operators, cleared once it drained.
	testenv.WaitFor(t, 10*time.Second, "the alert cleared", func() bool {
		a, err := c.Store().GetAlert(t.Context(), "fallback-queue")
		return err == nil && a.State == store.AlertCleared
	})
	a, _ := c.Store().GetAlert(t.Context(), "fallback-queue")
	if !strings.Contains(a.Summary, "app-1") || !slices.Equal(a.Contacts, []string{"ops@example.com"}) || a.Since.IsZero() {
		t.Errorf("alert %+v: want the client named, the operators as contacts and a since", a)
	}
	// The lone client's declarations made its jobs, and its local runs are recorded, each once.
	for _, name := range []string{"report", "beat"} {
		spec, err := c.Store().GetJob(t.Context(), name)
		if err != nil || spec.Source != "client:app-2" {
			t.Errorf("job %s: %+v, %v; want it declared by app-2 through the queue", name, spec, err)
		}
	}
	testenv.WaitFor(t, 20*time.Second, "the queue replayed", func() bool { return fallbackStatus(t, c).Waiting == 0 })
	for _, e := range waitRecorded(t, c, localRuns, job.StateSucceeded, 30*time.Second) {
		if e.Trigger != job.TriggerLocal || runs.count(e.ID) != 1 {
			t.Errorf("local execution %s: trigger %s, ran %d times", e.ID, e.Trigger, runs.count(e.ID))
		}
	}
	testenv.WaitFor(t, 20*time.Second, "the client has nothing left to send", func() bool {
		return app.PendingResults() == 0 && app.PendingRequests() == 0
	})
}

// The leader that replays the queue dies half way; the next one finishes, and every request runs once.
func TestFallbackReplaySurvivesTheLeaderDyingMidway(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := StartCluster(t, Options{Servers: 2, ServerEnv: []string{"CLOVER_FALLBACK_POLL=200ms"}})
	runs := newRunCounter()
	app := c.StartAppClient(AppClientOptions{ID: "app-1", Handlers: map[string]client.HandlerFunc{"work": work(runs, nil)}})
	c.WaitClients(1, 30*time.Second)
	c.CreateJob(settleJob)

	killAll(t, c.Servers)
	const n = 300
	execs := make([]string, n)
	for i := range execs {
		id, err := app.RequestRun("settle", nil)
		if err != nil {
			t.Fatal(err)
		}
		execs[i] = job.RequestExecutionID("settle", id)
	}
	testenv.WaitFor(t, 60*time.Second, "the requests queued", func() bool { return app.Stats().FallbackQueued.Load() >= n })

	first := c.Servers[0]
	c.Start(first)
	var atKill fallback.Status
	testenv.WaitFor(t, 60*time.Second, "the replay under way", func() bool {
		st, err := c.Store().FallbackStatus(t.Context())
		atKill = st
		return err == nil && st.Applied >= 20
	})
	first.Kill()
	if atKill.Waiting == 0 {
		t.Fatalf("the replay was over before the leader was killed (%+v); the test needs more entries", atKill)
	}
	t.Logf("leader %s killed with %d entries applied and %d waiting", first.ID, atKill.Applied, atKill.Waiting)
	c.Start(c.Servers[1])
	c.Start(first)
	c.WaitLeader(30 * time.Second)
	waitRecorded(t, c, execs, job.StateSucceeded, 90*time.Second)
	testenv.WaitFor(t, 30*time.Second, "the queue replayed", func() bool { return fallbackStatus(t, c).Waiting == 0 })

	got := runs.snapshot()
	for _, id := range execs {
		if got[id] != 1 {
			t.Errorf("execution %s ran %d times, want once", id, got[id])
		}
	}
	if len(got) != n {
		t.Errorf("%d executions ran, want %d", len(got), n)
	}
}

// MongoDB is down too: the client spools to a local file, is restarted while spooling, and the spool
// reaches MongoDB, then the replay, once MongoDB is back.
func TestFallbackSpoolsWhileMongoDBIsDownAndSurvivesAClientRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := StartCluster(t, Options{Servers: 1, ServerEnv: []string{"CLOVER_FALLBACK_POLL=500ms"}})
	runs, release := newRunCounter(), make(chan struct{})
	handlers := map[string]client.HandlerFunc{"work": work(runs, release)}
	app := c.StartAppClient(AppClientOptions{ID: "app-1", Handlers: handlers})
	c.WaitClients(1, 30*time.Second)
	c.CreateJob(settleJob)

	heldExec := startHeldRun(t, app, runs)
	// Its ack must be recorded: a run the store does not know was started is not what this test is about.
	testenv.WaitFor(t, 20*time.Second, "the held run recorded running", func() bool {
		e, err := c.Store().GetExecution(t.Context(), heldExec)
		return err == nil && e.State == job.StateRunning
	})

	c.Mongo.Stop()
	close(release)
	testenv.WaitFor(t, 10*time.Second, "the held run ended", func() bool { return app.PendingResults() == 1 })
	var execs []string
	for range 2 {
		id, err := app.RequestRun("settle", nil)
		if err != nil {
			t.Fatal(err)
		}
		execs = append(execs, job.RequestExecutionID("settle", id))
	}
	testenv.WaitFor(t, 60*time.Second, "the result and the requests spooled", func() bool { return app.Spooled() >= 3 })
	app.Stop() // restarted while spooling
	spool, err := os.ReadFile(app.SpoolDir + "/app-1.spool")
	if err != nil || strings.Count(string(spool), "\n") < 3 {
		t.Fatalf("spool after the client stopped: %d lines, %v", strings.Count(string(spool), "\n"), err)
	}

	c.Mongo.Start()
	app = c.StartAppClient(AppClientOptions{ID: "app-1", Handlers: handlers})
	// The spool reaches the fallback queue in MongoDB, in the order the client queued it. (Waited for
	// as such: the restarted client may also report the held run's result from its journal, and servers
	// may run the requests they got before MongoDB stopped, so the executions can be recorded before the
	// spool has moved; and Spooled is 0 until the new client has opened its queue.)
	want := []string{"result:" + heldExec, "request:" + execs[0], "request:" + execs[1]}
	var kinds []string
	if !testenv.Poll(60*time.Second, func() bool {
		entries, err := c.Store().FallbackEntries(t.Context(), "app-1")
		kinds = entryKinds(entries)
		return err == nil && slices.Equal(kinds, want)
	}) {
		t.Fatalf("entries %v, want %v", kinds, want)
	}
	if n := app.Spooled(); n != 0 {
		t.Errorf("%d entries still spooled after the move", n)
	}
	waitRecorded(t, c, append([]string{heldExec}, execs...), job.StateSucceeded, 60*time.Second)
	for _, id := range append([]string{heldExec}, execs...) {
		if n := runs.count(id); n != 1 {
			t.Errorf("execution %s ran %d times, want once", id, n)
		}
	}
}
