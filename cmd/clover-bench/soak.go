package main

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/clover-sched/clover/client"
	"github.com/clover-sched/clover/integration"
	"github.com/clover-sched/clover/internal/job"
)

// runSoak: 2 servers and 2 embedded clients running 200 no-op Go jobs every second for an hour (-quick: 5
// minutes) with history.keep 10 minutes (-quick: 1 minute), the leader SIGKILLed every 10 minutes (-quick:
// 2). Sampled every minute: what the store holds (open set, history, archive, fence days), the leader's
// RSS and the takeover times. The aim: all of them flat once the history has filled to history.keep.
func runSoak(t *T, s settings, out io.Writer) {
	const rate = 200
	n := rate // -quick keeps the rate: it is what the scenario is about
	if s.jobs > 0 {
		n = s.jobs
	}
	total := s.windowOr(time.Hour, 5*time.Minute)
	keep, killEvery, sample := 10*time.Minute, 10*time.Minute, time.Minute
	if s.quick {
		keep, killEvery, sample = time.Minute, 2*time.Minute, 30*time.Second
	}
	c := startCluster(t, integration.Options{Servers: 2, Clients: 0, ServerEnv: []string{"CLOVER_HISTORY_KEEP=" + keep.String()}})
	var runs atomic.Int64
	startEmbeddedClients(t, c, 2, "noop", func(context.Context, client.JobContext) error { runs.Add(1); return nil })
	leader, _ := c.WaitLeader(30 * time.Second)
	specs := make([]job.Spec, n)
	for i := range specs {
		specs[i] = job.Spec{Name: fmt.Sprintf("soak-%04d", i+1), Schedule: "@every 1s", Handler: "noop", Overlap: job.OverlapAllow}
	}
	if _, err := createJobs(context.Background(), c, leader, specs, apiBudget); err != nil {
		t.Fatalf("%v", err)
	}
	st := c.Store()
	tb := newTable(fmt.Sprintf("soak: %d no-op Go jobs @every 1s, 2 servers + 2 embedded clients, history.keep %s, leader SIGKILLed every %s, %s",
		n, keep, killEvery, total),
		"at", "runs/s", "open set (execs/events)", "history (records/buckets)", "archive (records/buckets)", "fence days", "leader RSS", "takeover")
	begun := time.Now()
	lastKill, lastRuns, lastAt := begun, runs.Load(), begun
	for time.Since(begun) < total {
		time.Sleep(sample)
		took := ""
		if time.Since(lastKill) >= killEvery {
			d := takeoverOnce(t, c)
			took, lastKill = fmtDur(d), time.Now()
			if d < 0 {
				took = "none in " + takeoverGiveUp.String()
			}
			t.Progressf("takeover %s", took)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		z, err := st.ExecutionSizes(ctx)
		cancel()
		if err != nil {
			t.Logf("sizes: %v", err)
		}
		rssCell := "-"
		if l, _ := c.WaitLeader(30 * time.Second); l != nil {
			if r, err := rss(l.Proc.Pid()); err == nil {
				rssCell = fmtMiB(r)
			}
		}
		now, r := time.Now(), runs.Load()
		tb.add(time.Since(begun).Round(time.Second).String(), fmtRate(float64(r-lastRuns)/now.Sub(lastAt).Seconds()),
			fmt.Sprintf("%s / %s", fmtInt(z.OpenExecutions), fmtInt(z.OpenEvents)),
			fmt.Sprintf("%s / %d", fmtInt(z.History), z.HistoryBuckets),
			fmt.Sprintf("%s / %d", fmtInt(z.Archive), z.ArchiveBuckets), fmt.Sprint(z.FenceDays), rssCell, took)
		lastRuns, lastAt = r, now
		t.Progressf("%s: open %d, history %d, archive %d", time.Since(begun).Round(time.Second), z.OpenExecutions, z.History, z.Archive)
	}
	tb.note("the history fills for history.keep plus a bucket's span (a quarter of keep), then holds flat: older buckets move to the archive")
	tb.note("takeover: SIGKILL of the leader until the other server leads and has fired (polled every 10 ms)")
	emit(out, tb)
}
