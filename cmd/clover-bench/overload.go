package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/clover-sched/clover/integration"
	"github.com/clover-sched/clover/internal/job"
)

// runOverload is the Dkron comparison restated against the machine: shell jobs @every 1s, each appending
// one line to a ledger, on 1 server and 2 `clover client` processes at the clients' default capacity, with
// as many jobs as 50%, 100% and 200% of the spawn ceiling (the ledger command's runs a second, as a client
// runs it). What ran is counted in the ledger. The jobs keep Clover's default policies (overlap forbid,
// misfire fire-once): a firing that cannot run while its job's previous one is open is recorded skipped, so
// beyond the ceiling the rest must show up as skipped by policy, not as a backlog. Each level runs on a
// cluster of its own, torn down before the next starts.
func runOverload(t *T, s settings, out io.Writer) {
	ceiling := s.ceil.spawnCeiling("ledger")
	if ceiling <= 0 {
		t.Fatalf("overload: the spawn ceiling was not measured")
	}
	win := s.windowOr(5*time.Minute, 20*time.Second)
	levels := s.levels
	if len(levels) == 0 {
		levels = []float64{0.5, 1, 2}
	}
	res := make([]overloadResult, len(levels))
	for i, f := range levels {
		n := max(1, int(math.Round(f*ceiling)))
		lt := t.r.scope(fmt.Sprintf("%s-%.0f", t.name, 100*f))
		res[i] = overloadLevel(lt, s, n, win)
		res[i].level = f
		lt.Progressf("stopping the cluster")
		lt.End()
	}
	header := []string{"figure"}
	for _, f := range levels {
		header = append(header, fmtLevel(f))
	}
	tb := newTable(fmt.Sprintf("overload: shell jobs @every 1s appending a ledger line, 1 server + 2 client processes (default capacity), "+
		"jobs = level x spawn ceiling (%s), window %s", fmtRate(ceiling), win), append(header, "aim")...)
	overloadRows(tb, res, ceiling)
	tb.note("level: jobs as a fraction of the spawn ceiling measured at the start of this run (the ceilings table); each level")
	tb.note("  on a fresh cluster, measured over the window after warm-up; jobs keep the default policies (overlap forbid, misfire fire-once)")
	tb.note("the spawn ceiling is the ledger command as this tree's client runs it (journaled, under a wrapper); a client")
	tb.note("  without the run journal (acd91ff) runs it bare, which costs less: see both in the ceilings table")
	tb.note("ran: lines the jobs appended to the ledger (`%s`) during the window;", ledgerCommand("FILE"))
	tb.note("  ran, of the firings scheduled in the window: distinct executions in the ledger among the firings of the window's whole")
	tb.note("  seconds (jobs x seconds), read once the ledger stopped gaining them; skipped and misfires: deltas of the leader's")
	tb.note("  clover_executions_skipped_total{reason} and clover_misfires_total{policy} over the window")
	tb.note("lateness: scheduled time -> first dispatch, from the leader's clover_fire_lateness_seconds buckets (skipped firings have none)")
	tb.note("sessions expired: clients' clover_client_zookeeper_sessions_expired_total over the window, or \"session expired\" lines in")
	tb.note("  their logs over the whole run for a binary without that metric; orphaned: the leader's clover_executions_orphaned")
	tb.note("RSS flat: (end - start) / start of the leader's resident memory over the window, sampled every second")
	for _, r := range res {
		if !r.warm {
			tb.note("WARNING: at %s the leader never fired 90%% of the jobs a second during warm-up", fmtLevel(r.level))
		}
		tb.note("jobs at %s: %s", fmtLevel(r.level), r.creation)
	}
	emit(out, tb)
}

func fmtLevel(f float64) string { return fmt.Sprintf("%.0f%%", 100*f) }

// overloadResult is what one level measured.
type overloadResult struct {
	level     float64
	jobs      int
	capacity  []int // of each client, as registered
	creation  creation
	warm      bool
	before    snapshot // the leader's, at the window's start and end
	after     snapshot
	ws        overloadStats
	appended  int64 // ledger lines appended during the window
	scheduled int   // firings scheduled in the window's whole seconds
	ledger    ledgerCount
	clients   clientCounts
}

// clientCounts are the client processes' counters over the window.
type clientCounts struct {
	refused     float64 // -1: unknown
	expired     int64
	expiredFrom string // "metric" or "logs"
}

func overloadLevel(t *T, s settings, n int, win time.Duration) overloadResult {
	r := overloadResult{jobs: n}
	c := startCluster(t, integration.Options{Servers: 1, Clients: 2, ClientCapacity: -1, ClientMetrics: true})
	leader, _ := c.WaitLeader(30 * time.Second)
	if st, err := c.Status(leader); err == nil {
		for _, m := range st.Clients {
			r.capacity = append(r.capacity, m.Capacity)
		}
	}
	lf := ledgerFile{path: filepath.Join(c.Dir, "ledger.txt")}
	specs := make([]job.Spec, n)
	for i := range specs {
		specs[i] = job.Spec{Name: fmt.Sprintf("overload-%05d", i+1), Schedule: "@every 1s", Handler: job.HandlerShell,
			Params: map[string]string{"command": ledgerCommand(lf.path)}}
	}
	t.Progressf("creating %d ledger jobs", n)
	var err error
	if r.creation, err = createJobs(context.Background(), c, leader, specs, apiBudget); err != nil {
		t.Fatalf("%v", err)
	}
	t.Progressf("created %s; waiting until the leader fires them all", r.creation)
	r.warm = waitFiring(t, leader, float64(n), resyncEvery+10*time.Second)
	time.Sleep(settle(s))

	t.Progressf("measuring for %s", win)
	r.before = takeSnapshot(t, leader)
	cb, size0 := scrapeClients(c), lf.size()
	r.ws = overloadWindow(leader, win)
	r.after = takeSnapshot(t, leader)
	ca, size1 := scrapeClients(c), lf.size()
	logMetrics(t, r.before, r.after)
	if r.appended, err = lf.linesBetween(size0, size1); err != nil {
		t.Fatalf("%v", err)
	}
	r.clients = clientDelta(c, cb, ca)

	// The firings of the window's whole seconds; the last ones may still be running (or waiting for a
	// client) when it ends: the ledger is read until it stops gaining them.
	from, to := r.before.at.Truncate(time.Second).Add(time.Second), r.after.at.Truncate(time.Second)
	r.scheduled = n * int(to.Sub(from)/time.Second)
	t.Progressf("reading the ledger until the window's firings stop landing")
	still, deadline := 0, time.Now().Add(30*time.Second)
	for still < 3 && time.Now().Before(deadline) {
		time.Sleep(time.Second)
		lc, err := lf.count(from, to)
		if err != nil {
			t.Fatalf("%v", err)
		}
		if lc.inWindow == r.ledger.inWindow {
			still++
		} else {
			still = 0
		}
		r.ledger = lc
	}
	if v, err := c.Metric(leader, "clover_executions_orphaned"); err == nil {
		r.ws.orphanedEnd = v
	}
	return r
}

// overloadStats is what the window sampled every second.
type overloadStats struct {
	peakRSS                              int64
	maxOrphaned, maxWaiting, maxInflight float64
	orphanedEnd                          float64 // read after the ledger settled
}

func overloadWindow(m *integration.Member, d time.Duration) overloadStats {
	var ws overloadStats
	end := time.Now().Add(d)
	for {
		if r, err := rss(m.Proc.Pid()); err == nil && r > ws.peakRSS {
			ws.peakRSS = r
		}
		if s, err := scrape(context.Background(), m.API); err == nil {
			ws.maxOrphaned = max(ws.maxOrphaned, s.sum("clover_executions_orphaned"))
			ws.maxWaiting = max(ws.maxWaiting, s.sum("clover_waiting_executions"))
			ws.maxInflight = max(ws.maxInflight, s.sum("clover_inflight_executions"))
		}
		left := time.Until(end)
		if left <= 0 {
			return ws
		}
		time.Sleep(min(left, time.Second))
	}
}

// scrapeClients reads every client process's /metrics; a client that does not answer has no sample.
func scrapeClients(c *integration.Cluster) []sample {
	out := make([]sample, len(c.Clients))
	for i, m := range c.Clients {
		if s, err := scrape(context.Background(), m.API); err == nil {
			out[i] = s
		}
	}
	return out
}

// clientDelta adds up what the clients' counters gained. A binary without the sessions-expired metric
// (before it existed) has its expirations counted in its log instead, over its whole run.
func clientDelta(c *integration.Cluster, before, after []sample) clientCounts {
	cc := clientCounts{expiredFrom: "metric"}
	const expired = "clover_client_zookeeper_sessions_expired_total"
	for i, m := range c.Clients {
		b, a := before[i], after[i]
		if a == nil || b == nil {
			cc.refused = -1
		} else if cc.refused >= 0 {
			cc.refused += a.sum("clover_client_refused_total") - b.sum("clover_client_refused_total")
		}
		if _, ok := a[expired]; ok && b != nil {
			cc.expired += int64(a[expired] - b[expired])
			continue
		}
		cc.expiredFrom = "logs"
		if data, err := os.ReadFile(filepath.Join(c.Dir, m.ID+".log")); err == nil {
			cc.expired += int64(strings.Count(string(data), "session expired"))
		}
	}
	return cc
}

// overloadRows adds one column per level.
func overloadRows(tb *table, res []overloadResult, ceiling float64) {
	row := func(figure, aim string, cell func(r overloadResult) string) {
		cells := []string{figure}
		for _, r := range res {
			cells = append(cells, cell(r))
		}
		tb.add(append(cells, aim)...)
	}
	secs := func(r overloadResult) float64 { return r.after.at.Sub(r.before.at).Seconds() }
	delta := func(r overloadResult, name string) float64 { return r.after.m.sum(name) - r.before.m.sum(name) }

	row("jobs (runs scheduled a second)", "", func(r overloadResult) string { return fmtInt(int64(r.jobs)) })
	row("client capacity, as registered", "", func(r overloadResult) string {
		parts := make([]string, len(r.capacity))
		for i, k := range r.capacity {
			parts[i] = fmt.Sprint(k)
		}
		return strings.Join(parts, " + ")
	})
	row("fired by the leader", "100% of scheduled", func(r overloadResult) string {
		f := delta(r, "clover_fires_total") / secs(r)
		return fmt.Sprintf("%s (%s)", fmtRate(f), fmtPct(f, float64(r.jobs)))
	})
	row("ran (ledger lines in the window)", "", func(r overloadResult) string {
		return fmtRate(float64(r.appended) / secs(r))
	})
	row("  of the spawn ceiling", "≥ 90% at 100% and 200%", func(r overloadResult) string {
		return fmtPct(float64(r.appended)/secs(r), ceiling)
	})
	row("  of the jobs' rate", "", func(r overloadResult) string {
		return fmtPct(float64(r.appended)/secs(r), float64(r.jobs))
	})
	row("ran, of the firings scheduled in the window", "≥ 99.9% at 50%", func(r overloadResult) string {
		return fmt.Sprintf("%s of %s (%s)", fmtInt(int64(r.ledger.inWindow)), fmtInt(int64(r.scheduled)),
			fmtPct(float64(r.ledger.inWindow), float64(r.scheduled)))
	})
	row("skipped by policy (overlap / misfire / other)", "the rest of scheduled", func(r overloadResult) string {
		by := func(reason string) int64 {
			k := fmt.Sprintf(`clover_executions_skipped_total{reason="%s"}`, reason)
			return int64(r.after.m[k] - r.before.m[k])
		}
		total := delta(r, "clover_executions_skipped_total")
		return fmt.Sprintf("%s / %s / %s (%s)", fmtInt(by("overlap")), fmtInt(by("misfire")), fmtInt(by("other")),
			fmtPct(total/secs(r), float64(r.jobs)))
	})
	row("misfires (fire times past the threshold)", "", func(r overloadResult) string {
		return fmtInt(int64(delta(r, "clover_misfires_total"))) + byLabel(r.before, r.after, "clover_misfires_total", "policy")
	})
	row("run more than once (whole ledger)", "0", func(r overloadResult) string {
		return fmt.Sprintf("%s of %s", fmtInt(int64(r.ledger.doubled)), fmtInt(int64(r.ledger.lines)))
	})
	row("fire lateness p50 / p99 (bucketed)", "p99 ≤ 250 ms at 50%", func(r overloadResult) string {
		lat := histogramDelta(r.before.m, r.after.m, latenessHistogram)
		p50, o50 := quantile(0.50, lat)
		p99, o99 := quantile(0.99, lat)
		return fmtQuantile(p50, o50) + " / " + fmtQuantile(p99, o99)
	})
	row("orphaned executions (max / after)", "0", func(r overloadResult) string {
		return fmt.Sprintf("%s / %s", fmtInt(int64(r.ws.maxOrphaned)), fmtInt(int64(r.ws.orphanedEnd)))
	})
	row("client ZooKeeper sessions expired", "0", func(r overloadResult) string {
		if r.clients.expiredFrom == "logs" {
			return fmtInt(r.clients.expired) + " (logs)"
		}
		return fmtInt(r.clients.expired)
	})
	row("leader changes", "0", func(r overloadResult) string {
		return fmtInt(int64(delta(r, "clover_server_leader_changes_total")))
	})
	row("dispatches refused by clients", "", func(r overloadResult) string {
		if r.clients.refused < 0 {
			return "-"
		}
		return fmtInt(int64(r.clients.refused))
	})
	row("waiting for a client / in flight, max", "", func(r overloadResult) string {
		return fmt.Sprintf("%s / %s", fmtInt(int64(r.ws.maxWaiting)), fmtInt(int64(r.ws.maxInflight)))
	})
	row("leader RSS start → end (max)", "", func(r overloadResult) string {
		return fmt.Sprintf("%.0f → %.0f (%.0f) MiB", mib(r.before.rss), mib(r.after.rss), mib(max(r.ws.peakRSS, r.after.rss)))
	})
	row("  flat: (end - start) / start", "within ±20%", func(r overloadResult) string {
		return fmt.Sprintf("%+.1f%%", 100*float64(r.after.rss-r.before.rss)/float64(r.before.rss))
	})
	row("CPUs busy, machine (server / clients / ferretdb)", "", func(r overloadResult) string {
		s := secs(r)
		used := func(kind string) float64 {
			return (r.after.cpu.byKind[kind] - r.before.cpu.byKind[kind]) / clockTick / s
		}
		machine := (r.after.cpu.machineBusy - r.before.cpu.machineBusy) / clockTick / s
		return fmt.Sprintf("%.2f (%.2f / %.2f / %.2f)", machine, used("server"), used("client"), used("ferretdb"))
	})
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
