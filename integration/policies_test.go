package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/testenv"
)

// never is a schedule that does not fire during a test: these jobs run when triggered.
const never = "@at 2099-01-01T00:00:00Z"

// spans reads a ledger of "start|end <execution> <client> <unix seconds>" lines.
type span struct {
	exec, client string
	start, end   float64
}

func readSpans(t *testing.T, path string) []span {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	byExec := map[string]*span{}
	var order []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(line)
		if len(f) != 4 {
			continue
		}
		at, _ := strconv.ParseFloat(f[3], 64)
		key := f[1] + " " + f[2]
		s, ok := byExec[key]
		if !ok {
			s = &span{exec: f[1], client: f[2]}
			byExec[key] = s
			order = append(order, key)
		}
		if f[0] == "start" {
			s.start = at
		} else {
			s.end = at
		}
	}
	out := make([]span, 0, len(order))
	for _, k := range order {
		out = append(out, *byExec[k])
	}
	return out
}

func spanCommand(path, sleep string) string {
	return fmt.Sprintf(`echo "start $CLOVER_EXECUTION $CLOVER_CLIENT $(date +%%s.%%N)" >> %[1]s; sleep %[2]s; echo "end $CLOVER_EXECUTION $CLOVER_CLIENT $(date +%%s.%%N)" >> %[1]s`, path, sleep)
}

func (c *Cluster) trigger(t *testing.T, name string) string {
	t.Helper()
	var out api.TriggerResponse
	if err := c.Call(c.AnyServer(), "POST", "/api/v1/jobs/"+name+"/trigger", nil, &out); err != nil {
		t.Fatalf("trigger %s: %v", name, err)
	}
	return out.Execution
}

func (c *Cluster) waitState(t *testing.T, id string, want job.State, timeout time.Duration) job.Execution {
	t.Helper()
	var e job.Execution
	testenv.WaitFor(t, timeout, fmt.Sprintf("%s %s", id, want), func() bool {
		var err error
		e, err = c.Store().GetExecution(t.Context(), id)
		return err == nil && e.State == want
	})
	return e
}

// A client is SIGKILLed while it runs two jobs: the rerunnable one runs again on the other client and
// succeeds; the other is orphaned, never rerun, until an operator marks it done.
func TestARunningJobOutlivesItsClient(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := StartCluster(t, Options{Servers: 1, Clients: 1})
	ledger := filepath.Join(c.Dir, "ledger")
	c.CreateJob(job.Spec{Name: "idem", Schedule: never, Handler: job.HandlerShell, Rerunnable: true,
		Params: map[string]string{"command": spanCommand(ledger, "3")}})
	c.CreateJob(job.Spec{Name: "once", Schedule: never, Handler: job.HandlerShell,
		Params: map[string]string{"command": spanCommand(ledger, "60")}})
	idem, once := c.trigger(t, "idem"), c.trigger(t, "once")
	c.waitState(t, idem, job.StateRunning, 20*time.Second)
	c.waitState(t, once, job.StateRunning, 20*time.Second)

	c.AddClient("client-2")
	c.WaitClients(2, 20*time.Second)
	c.Clients[0].Kill()

	e := c.waitState(t, idem, job.StateSucceeded, 40*time.Second)
	if e.Client != "client-2" {
		t.Fatalf("rerunnable job finished on %q, want client-2", e.Client)
	}
	c.waitState(t, once, job.StateOrphaned, 40*time.Second)
	for _, s := range readSpans(t, ledger) {
		if s.exec == once && s.client != "client-1" {
			t.Fatalf("the non-rerunnable job ran again, on %s", s.client)
		}
	}
	var live []api.InFlight
	if err := c.Call(c.AnyServer(), "GET", "/api/v1/inflight", nil, &live); err != nil {
		t.Fatal(err)
	}
	if len(live) != 1 || live[0].ID != once || live[0].Status != "orphaned" {
		t.Fatalf("in flight %+v, want only %s, orphaned", live, once)
	}
	if err := c.Call(c.AnyServer(), "POST", "/api/v1/executions/"+once+"/done", api.ExecActionRequest{Status: job.StateSucceeded, Note: "test: checked by hand"}, nil); err != nil {
		t.Fatal(err)
	}
	c.waitState(t, once, job.StateSucceeded, 20*time.Second)
}

// A job every 2 seconds that runs 5: under forbid no two runs overlap, across a SIGKILL of the leader too,
// and the firings that found a run open are recorded as skipped.
func TestForbidHoldsAcrossTheClusterAndAFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := StartCluster(t, Options{Servers: 2, Clients: 2})
	ledger := filepath.Join(c.Dir, "ledger")
	c.CreateJob(job.Spec{Name: "long", Schedule: "@every 2s", Handler: job.HandlerShell,
		Params: map[string]string{"command": spanCommand(ledger, "5")}})
	testenv.WaitFor(t, 20*time.Second, "a first run", func() bool { return len(readSpans(t, ledger)) > 0 })
	leader, _ := c.WaitLeader(10 * time.Second)
	leader.Kill()
	testenv.WaitFor(t, 20*time.Second, "a new leader", func() bool {
		m, _, ok := c.Leader()
		return ok && m != leader
	})
	testenv.WaitFor(t, 40*time.Second, "three finished runs", func() bool {
		n := 0
		for _, s := range readSpans(t, ledger) {
			if s.end > 0 {
				n++
			}
		}
		return n >= 3
	})
	spans := readSpans(t, ledger)
	slices.SortFunc(spans, func(a, b span) int { return int((a.start - b.start) * 1e9) })
	for i := 1; i < len(spans); i++ {
		if prev := spans[i-1]; prev.end == 0 || spans[i].start < prev.end {
			t.Fatalf("runs overlap: %+v then %+v", prev, spans[i])
		}
	}
	skipped, err := c.Store().ListExecutions(t.Context(), store.ExecutionFilter{Job: "long", State: job.StateSkipped})
	if err != nil {
		t.Fatal(err)
	}
	if len(skipped) == 0 {
		t.Fatal("no firing was recorded as skipped")
	}
}

// Labels, pins with one slot, and sharding, on clients with different labels.
func TestRoutingByLabelsCapacityAndShards(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := StartCluster(t, Options{Servers: 1, Clients: 0})
	c.AddClientWithConfig("lin", "capacity: 1\nlabels:\n  os: linux\n")
	c.AddClientWithConfig("win", "capacity: 8\nlabels:\n  os: windows\n")
	c.WaitClients(2, 20*time.Second)
	ledger := filepath.Join(c.Dir, "ledger")
	c.CreateJob(job.Spec{Name: "winonly", Schedule: never, Handler: job.HandlerShell, Overlap: job.OverlapAllow,
		Routing: job.Routing{Labels: map[string]string{"os": "windows"}}, Params: map[string]string{"command": spanCommand(ledger, "0")}})
	c.CreateJob(job.Spec{Name: "narrow", Schedule: never, Handler: job.HandlerShell, Overlap: job.OverlapAllow,
		Routing: job.Routing{Clients: []string{"lin"}}, Params: map[string]string{"command": spanCommand(ledger, "2")}})
	c.CreateJob(job.Spec{Name: "shard", Schedule: never, Handler: job.HandlerShell,
		Routing: job.Routing{Strategy: job.RouteShardBroadcast, ShardItems: []string{"eu", "us"}},
		Params:  map[string]string{"command": `echo "start $CLOVER_EXECUTION $CLOVER_SHARD_ITEM 0" >> ` + ledger}})

	var win, narrow []string
	for range 3 {
		win = append(win, c.trigger(t, "winonly"))
	}
	for range 2 {
		narrow = append(narrow, c.trigger(t, "narrow"))
	}
	fire := c.trigger(t, "shard")
	for _, id := range append(append(win, narrow...), fire+"~0", fire+"~1") {
		c.waitState(t, id, job.StateSucceeded, 60*time.Second)
	}
	spans := readSpans(t, ledger)
	byExec := map[string]span{}
	for _, s := range spans {
		byExec[s.exec] = s
	}
	for _, id := range win {
		if byExec[id].client != "win" {
			t.Errorf("%s ran on %q, want win (label os=windows)", id, byExec[id].client)
		}
	}
	a, b := byExec[narrow[0]], byExec[narrow[1]]
	if a.client != "lin" || b.client != "lin" {
		t.Fatalf("pinned runs on %q and %q, want lin", a.client, b.client)
	}
	if a.start > b.start {
		a, b = b, a
	}
	if b.start < a.end {
		t.Fatalf("two runs overlapped on a client with one slot: %+v and %+v", a, b)
	}
	items := []string{byExec[fire+"~0"].client, byExec[fire+"~1"].client} // the ledger's client column holds the item
	if items[0] != "eu" || items[1] != "us" {
		t.Fatalf("shard items %v, want [eu us]", items)
	}
}
