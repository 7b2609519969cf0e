package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clover-sched/clover/client"
	"github.com/clover-sched/clover/integration"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/testenv"
)

// ledger records every handler call of the burst by execution id.
type ledger struct {
	mu    sync.Mutex
	first map[string]time.Time // first call of each execution
	calls map[string]int
}

func (l *ledger) record(id string) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.first[id]; !ok {
		l.first[id] = now
	}
	l.calls[id]++
}

func (l *ledger) distinct() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.first)
}

// runBurst: n one-shot jobs all due at the same second T on 4 embedded clients.
//
// The jobs go straight into the store: through the API each create costs the leader a read of the whole
// jobs collection (FerretDB scans), so 10,000 would take minutes. The leader loads them at its next
// periodic resync, at most resyncEvery later, so T is chosen after the time the writes should take (timed
// on a scratch database first) plus resyncEvery; the table says how much margin was left.
func runBurst(t *T, s settings, out io.Writer) {
	n := s.jobsOr(10000)
	wait := 60 * time.Second
	if s.quick {
		wait = 30 * time.Second
	}
	c := startCluster(t, integration.Options{Servers: 1, Clients: 0})
	leader, _ := c.WaitLeader(30 * time.Second)
	l := &ledger{first: make(map[string]time.Time, n), calls: make(map[string]int, n)}
	clients := startEmbeddedClients(t, c, 4, "noop", func(ctx context.Context, jc client.JobContext) error {
		l.record(jc.ExecutionID)
		return nil
	})

	rate := storeCreateRate(t, c)
	estimate := time.Duration(float64(n) / rate * 1.25 * float64(time.Second))
	due := time.Now().Add(estimate + resyncEvery + 2*time.Second).Truncate(time.Second).Add(time.Second).UTC()
	specs := make([]job.Spec, n)
	expected := make(map[string]bool, n)
	for i := range specs {
		specs[i] = job.Spec{Name: fmt.Sprintf("burst-%05d", i+1), Schedule: "@at " + due.Format(time.RFC3339), Handler: "noop", Overlap: job.OverlapAllow}
		expected[job.ExecutionID(specs[i].Name, due)] = true
	}
	t.Progressf("creating %d jobs due at %s (store writes timed at %s)", n, due.Format("15:04:05"), fmtRate(rate))
	cr, err := createJobs(context.Background(), c, leader, specs, 0)
	if err != nil {
		t.Fatalf("%v", err)
	}
	slack := due.Sub(cr.finished)
	t.Progressf("created %s; T is in %s", cr, time.Until(due).Round(time.Second))

	before := takeSnapshot(t, leader)
	cl0 := totals(clients)
	all := testenv.Poll(time.Until(due.Add(wait)), func() bool { return l.distinct() >= n })
	if all {
		// Long enough for any second dispatch to be accepted: accept window 3s plus ack timeout 1s.
		time.Sleep(5 * time.Second)
	}
	after := takeSnapshot(t, leader)
	logMetrics(t, before, after)
	cl := totals(clients).minus(cl0)

	l.mu.Lock()
	var offsets []time.Duration
	dropped, doubled, unexpected := 0, 0, 0
	for id := range expected {
		at, ok := l.first[id]
		if !ok {
			dropped++
			continue
		}
		offsets = append(offsets, at.Sub(due))
	}
	for id, k := range l.calls {
		if k > 1 {
			doubled++
		}
		if !expected[id] {
			unexpected++
		}
	}
	l.mu.Unlock()
	slices.Sort(offsets)
	pct := func(q float64) string {
		if len(offsets) == 0 {
			return "-"
		}
		return fmtDur(offsets[min(len(offsets)-1, int(math.Ceil(q*float64(len(offsets))))-1)])
	}
	allStarted := "-"
	if len(offsets) > 0 {
		allStarted = fmtDur(offsets[len(offsets)-1])
		if dropped > 0 {
			allStarted = fmt.Sprintf("%s (of %s that ran)", allStarted, fmtInt(int64(len(offsets))))
		}
	}

	tb := newTable(fmt.Sprintf("burst: %s one-shot jobs (@at T) due in the same second, 1 server + 4 embedded clients",
		fmtInt(int64(n))))
	tb.add("fired by the leader", fmtInt(int64(after.m.sum("clover_fires_total")-before.m.sum("clover_fires_total"))), "= jobs")
	tb.add("T → last execution started (all dispatched)", allStarted, "")
	tb.add("T → first handler call, p50 / p99", pct(0.50)+" / "+pct(0.99), "")
	lat := histogramDelta(before.m, after.m, latenessHistogram)
	mx, over := bucketMax(lat)
	mxText := "≤ " + fmtSeconds(mx)
	if over {
		mxText = "> " + fmtSeconds(mx)
	}
	tb.add("T → last first dispatch (leader, bucket bound)", mxText, "")
	tb.add(fmt.Sprintf("dropped (never ran by T + %s)", wait), fmtInt(int64(dropped)), "0")
	tb.add("doubled (ran more than once)", fmtInt(int64(doubled)), "0")
	tb.add("unexpected executions (other ids)", fmtInt(int64(unexpected)), "0")
	tb.add("clients: refused / duplicate dispatches / stale epoch", fmt.Sprintf("%s / %s / %s",
		fmtInt(cl.refused), fmtInt(cl.duplicates), fmtInt(cl.staleEpoch)), "0 / 0 / 0")
	tb.add("re-dispatches / store errors", fmt.Sprintf("%s / %s",
		fmtInt(int64(after.m.sum("clover_redispatches_total")-before.m.sum("clover_redispatches_total"))),
		fmtInt(int64(after.m.sum("clover_store_errors_total")-before.m.sum("clover_store_errors_total")))), "0 / 0")
	cpuRows(tb, "from before T to the end", before.cpu, after.cpu)
	tb.note("an execution counts as started at its first handler call in this process (dispatch, ZeroMQ delivery, the")
	tb.note("  client's checks); the leader's own dispatch time is its clover_fire_lateness_seconds histogram")
	tb.note("jobs: %s", cr)
	tb.note("  picked up by the leader's periodic job resync (every %s): T was %s after the last write", resyncEvery, slack.Round(100*time.Millisecond))
	if slack < resyncEvery {
		tb.note("WARNING: less than %s between the last write and T: jobs the leader loaded after T never fire, so drops may be", resyncEvery)
		tb.note("  an artefact of the set-up, not of Clover")
	}
	emit(out, tb)
}

// storeCreateRate times 400 single job inserts, createWorkers at a time, into a scratch database on the
// cluster's FerretDB, and returns inserts per second. A first round, one insert a worker, opens the
// connections and is not timed.
func storeCreateRate(t *T, c *integration.Cluster) float64 {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := store.Open(ctx, c.Mongo.URI, "bench_probe")
	if err != nil {
		t.Fatalf("open scratch store: %v", err)
	}
	defer st.Close(context.Background())
	var (
		next atomic.Int64
		errs atomic.Int64
	)
	insert := func(upTo int64) {
		var wg sync.WaitGroup
		for range createWorkers {
			wg.Go(func() {
				for i := next.Add(1); i <= upTo; i = next.Add(1) {
					spec := job.Spec{Name: fmt.Sprintf("probe-%d", i), Schedule: "@every 1h", Handler: "noop", Overlap: job.OverlapAllow}
					if err := storeCreate(ctx, st, spec); err != nil {
						errs.Add(1)
					}
				}
			})
		}
		wg.Wait()
	}
	const probes = 400
	insert(createWorkers)
	start := time.Now()
	insert(createWorkers + probes)
	took := time.Since(start)
	if errs.Load() > 0 {
		t.Fatalf("probe job inserts: %d failed", errs.Load())
	}
	return probes / took.Seconds()
}
