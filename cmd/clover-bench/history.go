package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/clover-sched/clover/integration"
	"github.com/clover-sched/clover/internal/histfill"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/testenv"
)

// runHistory: 2 servers and 1 client running 3 jobs every second, over a store filled with 0, 100,000 and
// 1,000,000 ended executions shaped as Clover writes them (CLOVER_BENCH_LEGACY_FILL=1: as versions before
// the history did, to compare with a binary of theirs given in CLOVER_BIN). At each size it
// measures the leader's takeover after SIGKILL (until the new leader has fired) and the reads operators and
// the monitor make. The aim: takeover within session timeout + 1 s and every read under 200 ms at every
// size, flat within 2x from the smallest size to the largest.
func runHistory(t *T, s settings, out io.Writer) {
	sizes := []int{0, 100_000, 1_000_000}
	if s.quick {
		sizes = []int{0, 10_000, 100_000}
	}
	c := startCluster(t, integration.Options{Servers: 2, Clients: 1})
	jobs := []string{"tick-1", "tick-2", "tick-3"}
	for _, name := range jobs {
		c.CreateJob(job.Spec{Name: name, Schedule: "@every 1s", Handler: job.HandlerShell, Params: map[string]string{"command": "true"}, Overlap: job.OverlapAllow})
	}
	st := c.Store()
	tb := newTable("history: 2 servers + 1 client, 3 jobs @every 1s, over a store of N ended executions",
		"N", "takeover", "exec list 20", "exec get (newest)", "exec get (oldest)", "job get", "monitor reads", "cluster status")
	filled, oldest := 0, ""
	for round, n := range sizes {
		if n > filled {
			t.Progressf("filling the store to %d executions", n)
			begun := time.Now()
			end := time.Now().Add(-time.Duration(filled) * time.Second).Add(-time.Hour)
			o := histfill.Options{Jobs: []string{"eod-a", "eod-b", "eod-c"}, N: n - filled, End: end, Spacing: time.Second,
				Fill: -int64(round + 1), Legacy: os.Getenv("CLOVER_BENCH_LEGACY_FILL") != ""}
			if err := histfill.Fill(context.Background(), st, o); err != nil {
				t.Fatalf("fill: %v", err)
			}
			oldest = job.ExecutionID("eod-a", end.Add(-time.Duration(n-filled-1)*time.Second).UTC())
			t.Logf("filled %d executions in %s", n-filled, time.Since(begun).Round(time.Second))
			filled = n
		}
		takeover := takeoverOnce(t, c)
		t.Progressf("N=%d: takeover %s", n, takeover.Round(time.Millisecond))
		api := c.AnyServer().API
		get := func(path string) time.Duration { return medianOf(t, 5, func() error { return httpGet(api, path) }) }
		// The newest execution that has ended: a read of the history, not of the open set.
		newest := job.ExecutionID(jobs[0], time.Now().Add(-5*time.Second).Truncate(time.Second).UTC())
		var recent []job.Execution
		if err := c.Call(c.AnyServer(), "GET", "/api/v1/executions?state=succeeded&limit=10", nil, &recent); err == nil && len(recent) > 0 {
			newest = recent[len(recent)-1].ID
		}
		oldestGet := "-"
		if oldest != "" {
			oldestGet = fmtRead(get("/api/v1/executions/" + oldest))
		}
		monitorReads := medianOf(t, 3, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			// What a monitor check reads of the executions: the newest failures, then each failing job's newest.
			failed, err := st.ListExecutions(ctx, store.ExecutionFilter{State: job.StateFailed, Limit: 50})
			if err != nil {
				return err
			}
			seen := map[string]bool{}
			for _, e := range failed {
				if !seen[e.Job] {
					seen[e.Job] = true
					if _, err := st.ListExecutions(ctx, store.ExecutionFilter{Job: e.Job, Limit: 20}); err != nil {
						return err
					}
				}
			}
			return nil
		})
		took := fmtDur(takeover)
		if takeover < 0 {
			took = "none in " + takeoverGiveUp.String()
		}
		tb.add(fmt.Sprint(n), took, fmtRead(get("/api/v1/executions?limit=20")), fmtRead(get("/api/v1/executions/"+newest)),
			oldestGet, fmtRead(get("/api/v1/jobs/"+jobs[0])), fmtRead(monitorReads), fmtRead(get("/api/v1/cluster")))
	}
	tb.note("takeover: SIGKILL of the leader until the other server leads and its clover_fires_total grows (polled every 10 ms); aim ≤ session timeout + 1 s (%s)", sessionTimeout+time.Second)
	tb.note("reads: median of 5 through the API of any server; aim < 200 ms each, flat within 2x")
	tb.note("monitor reads: what a check reads of executions (the newest 50 failed, then the newest 20 of each failing job: 4 listings here), median of 3, straight from the store")
	emit(out, tb)
}

// takeoverGiveUp is how long takeoverOnce waits for the standby to fire.
const takeoverGiveUp = 3 * time.Minute

// takeoverOnce kills the leader and measures until the other server has fired, then starts the killed
// server again as the standby. It returns -1 if the standby did not fire within takeoverGiveUp.
func takeoverOnce(t *T, c *integration.Cluster) time.Duration {
	old, _ := c.WaitLeader(60 * time.Second)
	var standby *integration.Member
	for _, m := range c.Servers {
		if m != old {
			standby = m
		}
	}
	before, _ := c.Metric(standby, "clover_fires_total") // absent until it fires
	start := time.Now()
	old.Kill()
	for {
		leads, err := c.Metric(standby, "clover_server_is_leader")
		if v, ferr := c.Metric(standby, "clover_fires_total"); err == nil && leads == 1 && ferr == nil && v > before {
			break
		}
		if time.Since(start) > takeoverGiveUp {
			t.Logf("%s did not fire within %s of the SIGKILL of %s\n%s", standby.ID, takeoverGiveUp, old.ID, c.Logs(30))
			return -1
		}
		time.Sleep(10 * time.Millisecond)
	}
	took := time.Since(start)
	old.Proc.Wait(15 * time.Second)
	c.Start(old)
	// Ready as a standby: its API answers (the reads that follow go to any server).
	if !testenv.Poll(30*time.Second, func() bool { _, err := c.Status(old); return err == nil }) {
		t.Fatalf("%s did not come back within 30s\n%s", old.ID, c.Logs(30))
	}
	return took
}

// fmtRead is a read's duration, or "error" if it failed.
func fmtRead(d time.Duration) string {
	if d < 0 {
		return "error"
	}
	return fmtDur(d)
}

// medianOf runs f n times and returns the median duration, or -1 if f failed (the error is logged).
func medianOf(t *T, n int, f func() error) time.Duration {
	var took []time.Duration
	for range n {
		begun := time.Now()
		if err := f(); err != nil {
			t.Logf("%v", err)
			return -1
		}
		took = append(took, time.Since(begun))
	}
	slices.Sort(took)
	return took[len(took)/2]
}

func httpGet(api, path string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+api+path, nil)
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 300 {
		_, _ = io.Copy(io.Discard, resp.Body)
	} else {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: HTTP %d: %s", path, resp.StatusCode, body)
	}
	return nil
}
