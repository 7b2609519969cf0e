package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clover-sched/clover/client"
	"github.com/clover-sched/clover/integration"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/testenv"
)

// runGoFunc: n no-op Go-function jobs every second on 1 server and 4 clients embedded in this process,
// counted in the handlers; what the store recorded is read as a fraction of the Clover-shaped store
// ceiling measured at the start of the run.
func runGoFunc(t *T, s settings, out io.Writer) {
	n, win := s.jobsOr(5000), s.windowOr(30*time.Second, 10*time.Second)
	c := startCluster(t, integration.Options{Servers: 1, Clients: 0})
	leader, _ := c.WaitLeader(30 * time.Second)

	// The handler counts runs, and runs of each execution id (an id that runs twice breaks Clover's
	// promise); until warm-up ends it also notes which jobs have run at least once.
	var (
		runs   atomic.Int64
		warmed atomic.Bool
		mu     sync.Mutex
		seen   = make(map[string]struct{}, n)
		calls  = make(map[string]int32, n)
	)
	noop := func(ctx context.Context, jc client.JobContext) error {
		runs.Add(1)
		mu.Lock()
		calls[jc.ExecutionID]++
		if !warmed.Load() {
			seen[jc.Job] = struct{}{}
		}
		mu.Unlock()
		return nil
	}
	clients := startEmbeddedClients(t, c, 4, "noop", noop)

	specs := make([]job.Spec, n)
	for i := range specs {
		specs[i] = job.Spec{Name: fmt.Sprintf("gofunc-%05d", i+1), Schedule: "@every 1s", Handler: "noop", Overlap: job.OverlapAllow}
	}
	t.Progressf("creating %d Go-function jobs", n)
	cr, err := createJobs(context.Background(), c, leader, specs, apiBudget)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Progressf("created %s; waiting until every job has run once", cr)
	allRan := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) >= n
	}
	warm := testenv.Poll(resyncEvery+10*time.Second, allRan)
	warmed.Store(true)
	time.Sleep(settle(s))

	t.Progressf("measuring for %s", win)
	before := takeSnapshot(t, leader)
	runs0, cl0 := runs.Load(), totals(clients)
	ws := window(t, leader, win)
	runs1, cl1 := runs.Load(), totals(clients)
	after := takeSnapshot(t, leader)
	logMetrics(t, before, after)
	time.Sleep(2 * time.Second) // reports of runs that ended just before the window closed
	finished, err := countFinished(c, before.at, after.at)
	if err != nil {
		t.Logf("%v", err)
		finished = -1
	}

	mu.Lock()
	executions, doubled := len(calls), 0
	for _, k := range calls {
		if k > 1 {
			doubled++
		}
	}
	mu.Unlock()

	secs := after.at.Sub(before.at).Seconds()
	ran := float64(runs1-runs0) / secs
	cl := cl1.minus(cl0)
	tb := newTable(fmt.Sprintf("gofunc: %s no-op Go-function jobs @every 1s, 1 server + 4 embedded clients (capacity 4096), window %s",
		fmtInt(int64(n)), win))
	tb.add("handler runs (counted in the handlers)", fmt.Sprintf("%s (%s of scheduled)", fmtRate(ran), fmtPct(ran, float64(n))), "≥ 5,000/s")
	steadyRows(tb, before, after, ws, float64(n), finished)
	tb.add("executions run more than once (whole run)", fmt.Sprintf("%s of %s", fmtInt(int64(doubled)), fmtInt(int64(executions))), "0")
	tb.add("clients: refused / duplicate dispatches / stale epoch", fmt.Sprintf("%s / %s / %s",
		fmtInt(cl.refused), fmtInt(cl.duplicates), fmtInt(cl.staleEpoch)), "0 / 0 / 0")
	if ceil := s.ceil.execCeiling(); ceil > 0 {
		tb.add("store ceiling (Clover-shaped executions, ceilings table)", fmtRate(ceil), "")
		if finished >= 0 {
			tb.add("  recorded (store), of the ceiling", fmtPct(float64(finished)/secs, ceil), "≥ 80%")
		}
		if float64(n) < ceil {
			tb.note("the jobs offer %s of the store ceiling: recorded cannot reach more than that here (-jobs raises it)", fmtPct(float64(n), ceil))
		}
	}
	cpuRows(tb, "over the window", before.cpu, after.cpu)
	steadyNotes(tb, win)
	tb.note("handler runs are counted in this process, over the same window; the store ceiling was measured at the start of the")
	tb.note("  run on a FerretDB of its own (see the ceilings table)")
	tb.note("jobs: %s", cr)
	if !warm {
		tb.note("WARNING: not every job had run once before the window began")
	}
	emit(out, tb)
}
