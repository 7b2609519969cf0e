package integration

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/testenv"
	"github.com/clover-sched/clover/internal/workflow"
)

// chaos drives a random sequence of faults against a cluster and remembers what it did, so that a failure
// names the faults and can be replayed with the same seed (CLOVER_CHAOS_SEED). Which member a step hits
// ("the leader") depends on the cluster, so a replay repeats the kinds of faults and their timing, not
// always the same victims.
type chaos struct {
	t       *testing.T
	c       *Cluster
	rng     *rand.Rand
	ledgers []*ledger        // watched by killMidRun
	killed  map[*Member]bool // SIGKILLed and not restarted yet
	// clientsKilled are the clients SIGKILLed at least once: only their runs may be orphaned.
	clientsKilled map[string]bool
	steps         []string
}

func (ch *chaos) live(ms []*Member) []*Member {
	var out []*Member
	for _, m := range ms {
		if !ch.killed[m] {
			out = append(out, m)
		}
	}
	return out
}

func (ch *chaos) dead() []*Member {
	var out []*Member
	for _, m := range append(append([]*Member{}, ch.c.Servers...), ch.c.Clients...) {
		if ch.killed[m] {
			out = append(out, m)
		}
	}
	return out
}

func (ch *chaos) logf(format string, args ...any) {
	ch.t.Helper()
	s := time.Now().Format("15:04:05.000") + " " + fmt.Sprintf(format, args...)
	ch.steps = append(ch.steps, s)
	ch.t.Log("chaos: " + s)
}

// leader waits for the leading server (there is always a live one: chaos never kills the last server).
func (ch *chaos) leader() *Member {
	ch.t.Helper()
	m, _ := ch.c.WaitLeader(20 * time.Second)
	return m
}

func (ch *chaos) pick(ms []*Member) *Member { return ms[ch.rng.IntN(len(ms))] }

func (ch *chaos) kill(m *Member, what string) {
	ch.t.Helper()
	ch.logf("SIGKILL %s (%s)", m.ID, what)
	m.Kill()
	ch.killed[m] = true
	if m.Kind == "client" {
		ch.clientsKilled[m.ID] = true
	}
}

// killMidRun waits for a run to start (a new ledger line) on one of clients and SIGKILLs that client a
// random 0-500 ms later: before or after its ack went out. It watches the ledgers in turn, the first (the
// job that lasts a while) first, for a few seconds each; if no run starts on those clients, it kills one
// of them anyway.
func (ch *chaos) killMidRun(clients []*Member) {
	ch.t.Helper()
	for _, l := range ch.ledgers {
		seen := len(l.runs(ch.t))
		var victim *Member
		var started run
		testenv.Poll(2500*time.Millisecond, func() bool {
			runs := l.runs(ch.t)
			for _, r := range runs[seen:] {
				for _, m := range clients {
					if m.ID == r.client {
						victim, started = m, r
						return true
					}
				}
			}
			seen = len(runs)
			return false
		})
		if victim != nil {
			d := time.Duration(ch.rng.IntN(500)) * time.Millisecond
			pauseFor(d)
			ch.kill(victim, fmt.Sprintf("a client, %s after it started %s", d, started.execID))
			return
		}
	}
	ch.kill(ch.pick(clients), "a client; no run started on a live one")
}

func (ch *chaos) restart(m *Member) {
	ch.t.Helper()
	ch.logf("restart %s", m.ID)
	ch.c.Start(m)
	delete(ch.killed, m)
}

// step applies one fault chosen at random among those the cluster's state allows: it never kills the last
// live server or the last live client.
func (ch *chaos) step() {
	ch.t.Helper()
	servers, clients, dead := ch.live(ch.c.Servers), ch.live(ch.c.Clients), ch.dead()
	type action struct {
		weight int
		do     func()
	}
	var actions []action
	if len(servers) > 1 {
		actions = append(actions,
			action{3, func() { ch.kill(ch.leader(), "the leader") }},
			action{2, func() {
				l := ch.leader()
				followers := slices.DeleteFunc(slices.Clone(servers), func(m *Member) bool { return m == l })
				ch.kill(ch.pick(followers), "a follower; "+l.ID+" leads")
			}})
	}
	if len(clients) > 1 {
		actions = append(actions, action{3, func() {
			if ch.rng.IntN(2) == 0 {
				ch.kill(ch.pick(clients), "a client")
				return
			}
			ch.killMidRun(clients)
		}})
	}
	if len(dead) > 0 {
		actions = append(actions, action{2 + 2*len(dead), func() { ch.restart(ch.pick(dead)) }})
	}
	actions = append(actions, action{2, func() {
		// Shorter than the session timeout: the server keeps its ZooKeeper session, but misses pings,
		// relays and reports while it is stopped (past two thirds of the session, its ZooKeeper
		// connection times out on waking, and a leader steps down).
		l := ch.leader()
		m, what := l, "the leader"
		if ch.rng.IntN(2) == 0 {
			m, what = ch.pick(servers), "a server; "+l.ID+" leads"
		}
		d := time.Duration(300+ch.rng.IntN(900)) * time.Millisecond
		ch.logf("SIGSTOP %s (%s) for %s", m.ID, what, d)
		if err := m.Signal(syscall.SIGSTOP); err != nil {
			ch.t.Fatalf("SIGSTOP %s: %v", m.ID, err)
		}
		pauseFor(d)
		if err := m.Signal(syscall.SIGCONT); err != nil {
			ch.t.Fatalf("SIGCONT %s: %v", m.ID, err)
		}
	}})
	total := 0
	for _, a := range actions {
		total += a.weight
	}
	n := ch.rng.IntN(total)
	for _, a := range actions {
		if n < a.weight {
			a.do()
			return
		}
		n -= a.weight
	}
}

// chaosSeed is CLOVER_CHAOS_SEED if set, else the time.
func chaosSeed(t *testing.T) uint64 {
	t.Helper()
	if s := os.Getenv("CLOVER_CHAOS_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("CLOVER_CHAOS_SEED=%q: %v", s, err)
		}
		return seed
	}
	return uint64(time.Now().UnixNano())
}

// Over a random sequence of SIGKILLs and restarts of servers and clients, and short SIGSTOPs of servers,
// no firing runs twice and none is lost. The misfire threshold is larger than any gap the faults make, so
// every scheduled second must run, late perhaps, exactly once. The one exception is an execution whose
// client was killed under it (running it, or before its answer to the dispatch was recorded): the jobs are
// not rerunnable, so it is orphaned, never sent elsewhere, and must have run at most once. Some client kills
// are aimed at the middle of a run of "even", which lasts 0.6 s after writing its ledger line.
// Seeded from the time; CLOVER_CHAOS_SEED replays a sequence, CLOVER_CHAOS_LOGS=dir keeps the member logs of
// a failed run.
func TestChaosNoFiringRunsTwiceNoneLost(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	seed := chaosSeed(t)
	t.Logf("chaos seed %d (replay: CLOVER_CHAOS_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed>>32^0x9e3779b97f4a7c15))

	c, tick, start := startTicking(t, Options{Servers: 3, Clients: 2,
		ServerEnv: []string{"CLOVER_MISFIRE_THRESHOLD=60s"}})
	keepLogsOnFailure(t, c)
	// A second job under the default overlap policy, forbid: a firing that finds an earlier run open (one
	// held by a new leader, or orphaned) is skipped, and recorded so; it too never runs twice.
	even := newLedger(t)
	evenSpec := even.job("even", "@every 2s")
	evenSpec.Overlap = job.OverlapForbid
	// It lasts a while after it wrote its ledger line, so that a client can be killed in the middle of it.
	evenSpec.Params["command"] += "; sleep 0.6"
	c.CreateJob(evenSpec)
	evenStart := time.Now().Add(2 * time.Second).Truncate(2 * time.Second)
	if evenStart.Unix()%2 != 0 {
		evenStart = evenStart.Add(time.Second)
	}
	even.waitRunAfter(t, c, evenStart, 30*time.Second)

	// A batch run under the chaos: 40 nodes in 8 layers (some in 4 partitions), each writing start and end
	// lines to a ledger of its own around a 2 s pause, so that the run spans most of the chaos.
	batchDir := t.TempDir()
	_ = os.Chmod(batchDir, 0o777)
	c.CreateJob(ledgerJob("bstep", batchDir, "2"))
	batchDef := layeredBatch("chaos", "bstep", 8, 5, rand.New(rand.NewPCG(seed, 11)))
	if err := c.Call(c.AnyServer(), "PUT", "/api/v1/batches/chaos", batchDef, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Call(c.AnyServer(), "POST", "/api/v1/batches/chaos/runs", api.BatchRunRequest{Cycle: "c1"}, nil); err != nil {
		t.Fatal(err)
	}

	ch := &chaos{t: t, c: c, rng: rng, ledgers: []*ledger{even, tick}, killed: map[*Member]bool{}, clientsKilled: map[string]bool{}}
	steps := 6 + rng.IntN(3)
	began := time.Now()
	for range steps {
		ch.step()
		pauseFor(time.Duration(5000+rng.IntN(4000)) * time.Millisecond)
	}
	// Everything back before the check.
	for _, m := range ch.dead() {
		ch.restart(m)
	}
	ch.logf("all restarted after %s of chaos", time.Since(began).Round(time.Second))
	c.WaitLeader(30 * time.Second)
	c.WaitClients(len(c.Clients), 30*time.Second)
	end := time.Now().Add(3 * time.Second).Truncate(time.Second)
	evenEnd := end.Truncate(2 * time.Second)
	if evenEnd.Unix()%2 != 0 {
		evenEnd = evenEnd.Add(-time.Second)
	}

	// Settle: every firing up to the end has ended, or is orphaned (its client died under it). Runs whose
	// client was killed take the session timeout plus the ack timeout to be given up, or a lease timeout.
	var execs map[string]job.Execution
	settled := testenv.Poll(60*time.Second, func() bool {
		execs = map[string]job.Execution{}
		for _, name := range []string{"tick", "even"} {
			es, err := c.Store().ListExecutions(t.Context(), store.ExecutionFilter{Job: name, Limit: store.MaxListLimit})
			if err != nil {
				return false
			}
			for _, e := range es {
				execs[e.ID] = e
			}
		}
		for s := start; !s.After(end); s = s.Add(time.Second) {
			e, ok := execs[job.ExecutionID("tick", s)]
			if !ok || !(e.State.Terminal() || e.State == job.StateOrphaned) {
				return false
			}
		}
		for s := evenStart; !s.After(evenEnd); s = s.Add(2 * time.Second) {
			e, ok := execs[job.ExecutionID("even", s)]
			if !ok || !(e.State.Terminal() || e.State == job.StateOrphaned) {
				return false
			}
		}
		return true
	})
	t.Logf("chaos sequence (seed %d):\n  %s", seed, strings.Join(ch.steps, "\n  "))

	var problems, suspects []string
	orphans := 0
	check := func(l *ledger, name string, from, to time.Time, every time.Duration, forbid bool) {
		runs := l.runs(t)
		byID := map[string][]run{}
		for _, r := range runs {
			byID[r.execID] = append(byID[r.execID], r)
		}
		for id, rs := range byID {
			if len(rs) > 1 {
				problems = append(problems, fmt.Sprintf("%s ran %d times %s", id, len(rs), fmtRuns(rs)))
				suspects = append(suspects, id)
			}
		}
		for s := from; !s.After(to); s = s.Add(every) {
			id := job.ExecutionID(name, s)
			rs := byID[id]
			e, ok := execs[id]
			switch {
			case !ok:
				problems = append(problems, fmt.Sprintf("%s was never fired (ledger: %d runs)", id, len(rs)))
				suspects = append(suspects, id)
			case e.State == job.StateOrphaned:
				// Only a run (or an unanswered dispatch) on a client that was killed may be orphaned. An
				// execution orphaned before any ack was recorded names no client when read from the store:
				// then the ledger names it if it ran, and otherwise some client must have been killed.
				orphans++
				on := e.Client
				if on == "" && len(rs) > 0 {
					on = rs[0].client
				}
				t.Logf("%s orphaned (recorded client %q): ran %d times %s", id, e.Client, len(rs), fmtRuns(rs))
				if on != "" && !ch.clientsKilled[on] || on == "" && len(ch.clientsKilled) == 0 {
					problems = append(problems, fmt.Sprintf("%s orphaned on %q, but that client was never killed (killed: %v)", id, on, ch.clientsKilled))
					suspects = append(suspects, id)
				}
			case e.State == job.StateSkipped && forbid:
				if len(rs) != 0 {
					problems = append(problems, fmt.Sprintf("%s recorded skipped but ran %d times %s", id, len(rs), fmtRuns(rs)))
					suspects = append(suspects, id)
				}
			case e.State == job.StateSucceeded:
				if len(rs) == 0 {
					problems = append(problems, fmt.Sprintf("%s recorded succeeded on %s but never ran", id, e.Client))
					suspects = append(suspects, id)
				} else if len(rs) == 1 && rs[0].client != e.Client { // more than one run is reported above
					problems = append(problems, fmt.Sprintf("%s ran on %s but is recorded on %s", id, rs[0].client, e.Client))
					suspects = append(suspects, id)
				}
			default:
				problems = append(problems, fmt.Sprintf("%s is %s (trigger %s, client %q, attempt %d), ran %d times",
					id, e.State, e.Trigger, e.Client, e.Attempt, len(rs)))
				suspects = append(suspects, id)
			}
		}
	}
	check(tick, "tick", start, end, time.Second, false)
	check(even, "even", evenStart, evenEnd, 2*time.Second, true)
	problems = append(problems, checkChaosBatch(t, c, batchDir, batchDef, ch.clientsKilled)...)
	skipped := 0
	for _, e := range execs {
		if e.Job == "even" && e.State == job.StateSkipped {
			skipped++
		}
	}
	t.Logf("checked tick %s..%s and even %s..%s: %d ledger runs, %d orphaned, %d even firings skipped (forbid), settled %v",
		start.Format(time.TimeOnly), end.Format(time.TimeOnly), evenStart.Format(time.TimeOnly), evenEnd.Format(time.TimeOnly),
		len(tick.runs(t))+len(even.runs(t)), orphans, skipped, settled)
	if len(problems) > 0 {
		slices.Sort(problems)
		t.Errorf("seed %d: %d problems:\n  %s\nchaos sequence:\n  %s\nlog lines of the executions concerned:\n%s",
			seed, len(problems), strings.Join(problems, "\n  "), strings.Join(ch.steps, "\n  "), grepLogs(c, suspects, 30))
	}
}

// fmtRuns names the clients of runs: "on [client-1 client-2]".
func fmtRuns(rs []run) string {
	clients := make([]string, len(rs))
	for i, r := range rs {
		clients[i] = r.client
	}
	return fmt.Sprintf("on %v", clients)
}

// grepLogs returns, for each execution id, the lines of every member's log that mention it (at most limit
// per member and id).
func grepLogs(c *Cluster, ids []string, limit int) string {
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if len(ids) > 10 {
		ids = ids[:10]
	}
	var b strings.Builder
	for _, id := range ids {
		fmt.Fprintf(&b, "=== %s\n", id)
		for _, m := range append(append([]*Member{}, c.Servers...), c.Clients...) {
			data, err := os.ReadFile(m.log)
			if err != nil {
				continue
			}
			n := 0
			for _, line := range strings.Split(string(data), "\n") {
				if strings.Contains(line, id) && n < limit {
					fmt.Fprintf(&b, "%s: %s\n", m.ID, line)
					n++
				}
			}
		}
	}
	return b.String()
}

// keepLogsOnFailure copies the member logs to CLOVER_CHAOS_LOGS (if set) when the test fails, before the
// test's temporary directory goes.
func keepLogsOnFailure(t *testing.T, c *Cluster) {
	dir := os.Getenv("CLOVER_CHAOS_LOGS")
	if dir == "" {
		return
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Logf("keep logs: %v", err)
			return
		}
		logs, _ := filepath.Glob(filepath.Join(c.Dir, "*.log"))
		for _, p := range logs {
			if data, err := os.ReadFile(p); err == nil {
				_ = os.WriteFile(filepath.Join(dir, filepath.Base(p)), data, 0o644)
			}
		}
		t.Logf("member logs kept in %s", dir)
	})
}

// pauseFor spaces the faults of the chaos schedule: it is when the next fault happens, chosen by the seed,
// not a wait for something to be ready (those poll a condition with a deadline).
func pauseFor(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	<-t.C
}

// checkChaosBatch waits for the chaos batch's run to end (or to wait only on executions orphaned by a
// killed client), then checks it: no execution ran twice, every succeeded one ran once, no node started
// before what it waits for ended, and orphans only on killed clients.
func checkChaosBatch(t *testing.T, c *Cluster, dir string, d workflow.Definition, killed map[string]bool) []string {
	t.Helper()
	var st api.BatchRunStatus
	var execs []job.Execution
	settled := testenv.Poll(90*time.Second, func() bool {
		if err := c.Call(c.AnyServer(), "GET", "/api/v1/batches/chaos/runs/c1", nil, &st); err != nil {
			return false
		}
		if err := c.Call(c.AnyServer(), "GET", "/api/v1/batches/chaos/runs/c1/executions", nil, &execs); err != nil {
			return false
		}
		if !st.Run.State.Open() {
			return true
		}
		open := 0
		for _, e := range execs {
			if !e.State.Terminal() && e.State != job.StateOrphaned {
				open++
			}
		}
		return open == 0 && st.Running == len(st.Executions) && len(st.Waiting) == 0 && batchOnlyOrphansLeft(execs, st)
	})
	var problems []string
	if !settled {
		problems = append(problems, fmt.Sprintf("batch run chaos/c1 did not settle: %s, %d running", st.Run.State, st.Running))
	}
	lines := ledgerLines(t, dir)
	starts := map[string]int{}
	for _, l := range lines {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "start" {
			starts[f[2]]++
		}
	}
	for id, n := range starts {
		if n > 1 {
			problems = append(problems, fmt.Sprintf("batch execution %s ran %d times", id, n))
		}
	}
	for _, e := range execs {
		switch {
		case e.State == job.StateSucceeded && starts[e.ID] != 1:
			problems = append(problems, fmt.Sprintf("batch execution %s succeeded, ran %d times", e.ID, starts[e.ID]))
		case e.State == job.StateOrphaned && e.Client != "" && !killed[e.Client]:
			problems = append(problems, fmt.Sprintf("batch execution %s orphaned on %s, never killed", e.ID, e.Client))
		}
	}
	at := map[string]int{}
	for i, l := range lines {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		node, _, _ := strings.Cut(f[1], "/")
		if _, seen := at["start "+node]; f[0] == "start" && !seen {
			at["start "+node] = i
		}
		if f[0] == "end" || f[0] == "fail" {
			at["end "+node] = i
		}
	}
	for _, e := range d.Edges {
		s, started := at["start "+e.To]
		if started && s < at["end "+e.From] {
			problems = append(problems, fmt.Sprintf("batch node %s started before %s ended", e.To, e.From))
		}
	}
	t.Logf("chaos batch: %s, round %d, %d executions recorded, %d ledger starts, settled %v", st.Run.State, st.Run.Round, len(execs), len(starts), settled)
	return problems
}

// batchOnlyOrphansLeft reports whether every execution the run still waits on is orphaned.
func batchOnlyOrphansLeft(execs []job.Execution, st api.BatchRunStatus) bool {
	orphaned := map[string]bool{}
	for _, e := range execs {
		if e.State == job.StateOrphaned {
			orphaned[e.ID] = true
		}
	}
	for _, id := range st.Executions {
		if !orphaned[id] {
			return false
		}
	}
	return true
}
