package integration

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/testenv"
)

// A client whose shell jobs keep every CPU busy, at its full capacity, for a minute keeps its ZooKeeper
// session (with the tests' short 1.5 s timeout) and its connection, and none of its executions is
// orphaned: the jobs run at a lower priority than the client (job_nice), so they cannot starve it.
func TestAClientWhoseJobsSaturateTheCPUKeepsItsSession(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	capacity := 4 * runtime.NumCPU()
	metrics := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	c := StartCluster(t, Options{Servers: 1, Clients: 0, ClientCapacity: capacity,
		ClientEnv: []string{"CLOVER_METRICS_LISTEN=" + metrics}})
	c.WaitLeader(30 * time.Second)
	cl := c.AddClient("burner")
	cl.API = metrics // its /metrics, read with c.Metric
	c.WaitClients(1, 30*time.Second)

	// Twice as many jobs as slots, each a busy loop of 3 s: the client is full all the time, and the leader
	// always has more to offer it.
	const burn = 3
	for i := range 2 * capacity {
		c.CreateJob(job.Spec{Name: fmt.Sprintf("burn-%02d", i), Schedule: "@every 1s", Handler: job.HandlerShell,
			Params: map[string]string{"command": fmt.Sprintf("timeout %d sh -c 'while :; do :; done'; true", burn)}})
	}
	full := testenv.Poll(30*time.Second, func() bool {
		n, err := c.Metric(cl, "clover_client_running")
		return err == nil && int(n) == capacity
	})
	if !full {
		t.Fatalf("the client never ran %d busy loops at once", capacity)
	}
	succeeded0, _ := c.Metric(cl, "clover_client_succeeded_total")
	// The leader shows what waits for the client: the jobs beyond its capacity.
	var b api.Backlog
	shown := testenv.Poll(30*time.Second, func() bool {
		b = api.Backlog{}
		err := c.Call(c.Servers[0], "GET", "/api/v1/backlog", nil, &b)
		return err == nil && b.Waiting >= 1 && b.ByStatus["running"]+b.ByStatus["dispatched"] >= 1 && !b.Full
	})
	if !shown {
		t.Errorf("backlog %+v: want executions waiting and running, not full", b)
	}
	if out := clover(t, c, c.Servers[0], false, "exec", "live", "--limit", "3"); !strings.Contains(out, "backlog ") || strings.Count(out, "burn-") != 3 {
		t.Errorf("clover exec live --limit 3:\n%s", out)
	}
	const window = 60 * time.Second
	t.Logf("the client is full (%d busy loops on %d CPUs); watching it for %s", capacity, runtime.NumCPU(), window)
	end := time.Now().Add(window)
	testenv.Poll(window+time.Second, func() bool { return time.Now().After(end) })

	for _, name := range []string{"clover_client_zookeeper_sessions_expired_total", "clover_client_zookeeper_disconnects_total"} {
		if n, err := c.Metric(cl, name); err != nil || n != 0 {
			t.Errorf("%s = %v (%v), want 0\n%s", name, n, err, cl.Log(40))
		}
	}
	succeeded, _ := c.Metric(cl, "clover_client_succeeded_total")
	// Each slot ends a run every 3 s or so: a client that ran half of that was busy all along.
	if want := float64(capacity) * window.Seconds() / burn / 2; succeeded-succeeded0 < want {
		t.Errorf("%v runs succeeded over the window, want at least %v: the client was not kept busy", succeeded-succeeded0, want)
	}
	// The busy loops ran below the client: a job process's nice value is the client's plus job_nice (10).
	c.CreateJob(job.Spec{Name: "niceness", Schedule: "@every 1h", Handler: job.HandlerShell, Overlap: job.OverlapAllow,
		Params: map[string]string{"command": "nice"}})
	own, err := syscall.Getpriority(syscall.PRIO_PROCESS, 0)
	if err != nil {
		t.Fatal(err)
	}
	e := c.waitState(t, c.trigger(t, "niceness"), job.StateSucceeded, 60*time.Second)
	if got, want := strings.TrimSpace(e.Result.Output), strconv.Itoa(min(20-own+10, 19)); got != want {
		t.Errorf("a job process runs at nice %q, want %s (the client's plus job_nice 10)", got, want)
	}

	orphaned, err := c.Store().ListExecutions(t.Context(), store.ExecutionFilter{State: job.StateOrphaned, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range orphaned {
		t.Errorf("execution %s was orphaned on %s", e.ID, e.Client)
	}
	if n, err := c.Metric(c.Servers[0], "clover_executions_orphaned"); err != nil || n != 0 {
		t.Errorf("clover_executions_orphaned = %v (%v), want 0", n, err)
	}
}
