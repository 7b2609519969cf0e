package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/clover-sched/clover/integration"
	"github.com/clover-sched/clover/internal/job"
)

// runShell: n shell jobs (`true`) every second on 1 server and 2 `clover client` processes.
func runShell(t *T, s settings, out io.Writer) {
	n, win := s.jobsOr(1000), s.windowOr(60*time.Second, 10*time.Second)
	c := startCluster(t, integration.Options{Servers: 1, Clients: 2, ClientCapacity: 512})
	leader, _ := c.WaitLeader(30 * time.Second)
	idle := takeSnapshot(t, leader)

	specs := make([]job.Spec, n)
	for i := range specs {
		specs[i] = job.Spec{Name: fmt.Sprintf("shell-%05d", i+1), Schedule: "@every 1s", Handler: job.HandlerShell, Overlap: job.OverlapAllow,
			Params: map[string]string{"command": "true"}}
	}
	t.Progressf("creating %d shell jobs", n)
	cr, err := createJobs(context.Background(), c, leader, specs, apiBudget)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Progressf("created %s; waiting until the leader fires them all", cr)
	warm := waitFiring(t, leader, float64(n), resyncEvery+10*time.Second)
	time.Sleep(settle(s))
	t.Progressf("measuring for %s", win)
	before := takeSnapshot(t, leader)
	ws := window(t, leader, win)
	after := takeSnapshot(t, leader)
	logMetrics(t, before, after)
	time.Sleep(2 * time.Second) // reports of runs that ended just before the window closed
	finished, err := countFinished(c, before.at, after.at)
	if err != nil {
		t.Logf("%v", err)
		finished = -1
	}

	tb := newTable(fmt.Sprintf("shell: %s shell jobs (`true`) @every 1s, 1 server + 2 client processes (capacity 512), window %s",
		fmtInt(int64(n)), win))
	steadyRows(tb, before, after, ws, float64(n), finished)
	tb.add("  idle, before the jobs", fmtMiB(idle.rss), "")
	if ceil := s.ceil.spawnCeiling("true"); ceil > 0 && finished >= 0 {
		f := float64(finished) / after.at.Sub(before.at).Seconds()
		tb.add("finished (store), of the spawn ceiling of `true`", fmt.Sprintf("%s of %s", fmtPct(f, ceil), fmtRate(ceil)), "")
	}
	cpuRows(tb, "over the window", before.cpu, after.cpu)
	steadyNotes(tb, win)
	tb.note("jobs: %s", cr)
	if !warm {
		tb.note("WARNING: the leader never fired 90%% of the jobs a second during warm-up: it is overloaded, or jobs were not loaded")
	}
	emit(out, tb)
}
