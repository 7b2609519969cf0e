package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/integration"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/workflow"
)

// runBatch: batch workflows at size, on 1 server and 2 client processes running a no-op Go handler: a
// wide fan-out (one node, then N nodes after it), one node of N partitions, and a chain of nodes one after
// another. It measures from the run's start (the API's answer) to the last execution fired (the leader's
// clover_fires_total) and to the run's end, the nodes (or partitions) made ready and fired per second,
// and the leader's RSS before and at its peak. Issue 17's aim: ≥ 5,000 nodes ready per second, memory
// flat (Airflow's scheduler: 500-1,000 tasks a second). A chain is bound by one round trip per node
// (dispatch, run, report), not by the scheduler: it is sized apart.
func runBatch(t *T, s settings, out io.Writer) {
	n, chain := 10_000, 10_000
	if s.quick {
		n, chain = 1_000, 1_000
	}
	c := startCluster(t, integration.Options{Servers: 1, Clients: 2, ClientHandlers: []string{"noop"}, ClientCapacity: 512})
	leader, _ := c.WaitLeader(60 * time.Second)
	c.WaitClients(2, 60*time.Second)
	c.CreateJob(job.Spec{Name: "step", Handler: "noop", Overlap: job.OverlapAllow})
	tb := newTable(fmt.Sprintf("batch: 1 server + 2 clients (noop Go handler, 512 slots each); FerretDB"),
		"graph", "executions", "all fired", "fired/s", "run ended", "ended/s", "leader RSS before", "leader RSS peak")
	shapes := []struct {
		name string
		def  workflow.Definition
		runs int // executions
	}{
		{fmt.Sprintf("fan-out 1 → %d nodes", n), fanOut(n), n + 1},
		{fmt.Sprintf("1 node × %d partitions", n), partitioned(n), n},
		{fmt.Sprintf("chain of %d nodes", chain), chained(chain), chain},
	}
	fired := 0.0
	run := func(name string, def workflow.Definition, runs int, cycle string) (allFired, ended time.Duration, before, peak int64) {
		before, _ = rss(leader.Proc.Pid())
		peak = before
		start := time.Now()
		if err := c.Call(c.AnyServer(), "POST", "/api/v1/batches/"+def.Name+"/runs", api.BatchRunRequest{Cycle: cycle}, nil); err != nil {
			t.Fatalf("run %s: %v", name, err)
		}
		deadline := time.Now().Add(20 * time.Minute)
		for ended == 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
			if r, err := rss(leader.Proc.Pid()); err == nil && r > peak {
				peak = r
			}
			if allFired == 0 {
				if v, err := c.Metric(leader, "clover_fires_total"); err == nil && v-fired >= float64(runs) {
					allFired = time.Since(start)
				}
			}
			var st api.BatchRunStatus
			if err := c.Call(c.AnyServer(), "GET", "/api/v1/batches/"+def.Name+"/runs/"+cycle, nil, &st); err == nil && !st.Run.State.Open() {
				ended = time.Since(start)
				if st.Run.State != store.RunSucceeded {
					t.Fatalf("%s: run %s: %s", name, st.Run.State, st.Run.Reason)
				}
			}
		}
		if ended == 0 {
			t.Fatalf("%s: not ended within 20 minutes", name)
		}
		if allFired == 0 {
			allFired = ended
		}
		fired += float64(runs)
		t.Progressf("%s: all fired in %s, ended in %s", name, allFired.Round(time.Millisecond), ended.Round(time.Millisecond))
		return allFired, ended, before, peak
	}
	// Each run starts once the closer has moved the previous run's executions to the history, as a nightly
	// batch's would have been by the next night: on FerretDB every close scans the open set, so runs back
	// to back would measure the store's backlog, not the leader.
	waitEmptied := func() string {
		start := time.Now()
		for time.Since(start) < 10*time.Minute {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			z, err := c.Store().ExecutionSizes(ctx)
			cancel()
			if err == nil && z.OpenExecutions == 0 {
				return fmtDur(time.Since(start)) + " later"
			}
			time.Sleep(time.Second)
		}
		return "no (10 min)"
	}
	for i, sh := range shapes {
		if i > 0 {
			t.Progressf("open set emptied %s", waitEmptied())
		}
		if err := c.Call(c.AnyServer(), "PUT", "/api/v1/batches/"+sh.def.Name, sh.def, nil); err != nil {
			t.Fatalf("define %s: %v", sh.name, err)
		}
		allFired, ended, before, peak := run(sh.name, sh.def, sh.runs, fmt.Sprintf("c%d", i))
		tb.add(sh.name, fmt.Sprint(sh.runs), fmtDur(allFired), fmt.Sprintf("%.0f", float64(sh.runs)/allFired.Seconds()),
			fmtDur(ended), fmt.Sprintf("%.0f", float64(sh.runs)/ended.Seconds()), fmtMiB(before), fmtMiB(peak))
	}
	// Memory across runs: the fan-out again, run after run. What a run holds is its open executions; once
	// it ends, the next run reuses that memory, so the leader's RSS stays at the first run's peak rather
	// than growing per run.
	mem := newTable("batch: the fan-out run again and again (leader memory across runs)",
		"run", "run ended", "open set emptied", "leader RSS before", "leader RSS peak", "leader heap in use after")
	repeats := 4
	if s.quick {
		repeats = 2
	}
	t.Progressf("open set emptied %s", waitEmptied())
	for r := range repeats {
		_, ended, before, peak := run(fmt.Sprintf("fan-out again, run %d", r+1), shapes[0].def, shapes[0].runs, fmt.Sprintf("again-%d", r))
		heap, _ := c.Metric(leader, "go_memstats_heap_inuse_bytes")
		emptied := waitEmptied()
		t.Progressf("fan-out again, run %d: open set emptied %s", r+1, emptied)
		mem.add(fmt.Sprint(r+1), fmtDur(ended), emptied, fmtMiB(before), fmtMiB(peak), fmtMiB(int64(heap)))
	}
	mem.note("run: another cycle of the same %d-node fan-out, started once the previous run's executions left the open set", shapes[0].runs)
	mem.note("open set emptied: after the run ended, until the store's open set was empty (the closer moves ended executions to the history)")
	mem.note("heap in use: the leader's go_memstats_heap_inuse_bytes once the run has ended (not forced by a GC)")
	tb.note("all fired: from the run's start (the API's answer) until the leader's clover_fires_total counts every execution of the run (polled every 50 ms)")
	tb.note("fired/s: the nodes (or partitions) made ready and fired a second; the scheduler's own cost per node is in the Go benchmark of internal/workflow")
	tb.note("run ended: until the run's status says succeeded; a chain waits one dispatch, run and report per node")
	emit(out, tb)
	emit(out, mem)
}

func fanOut(n int) workflow.Definition {
	d := workflow.Definition{Name: "fan-out", Nodes: []workflow.Node{{Name: "root", Job: "step"}}}
	for i := range n {
		name := fmt.Sprintf("n%05d", i)
		d.Nodes = append(d.Nodes, workflow.Node{Name: name, Job: "step"})
		d.Edges = append(d.Edges, workflow.Edge{From: "root", To: name})
	}
	return d
}

func partitioned(n int) workflow.Definition {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf("p%05d", i)
	}
	return workflow.Definition{Name: "partitioned", Nodes: []workflow.Node{{Name: "load", Job: "step", Partitions: parts}}}
}

func chained(n int) workflow.Definition {
	d := workflow.Definition{Name: "chain"}
	for i := range n {
		name := fmt.Sprintf("n%05d", i)
		d.Nodes = append(d.Nodes, workflow.Node{Name: name, Job: "step"})
		if i > 0 {
			d.Edges = append(d.Edges, workflow.Edge{From: fmt.Sprintf("n%05d", i-1), To: name})
		}
	}
	return d
}
