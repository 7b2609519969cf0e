package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/testenv"
)

// A job every second under the default policies (overlap forbid, misfire fire-once) through 5 leader
// SIGKILLs: every second runs exactly once, late after each takeover, and none is recorded skipped. The
// seconds owed from each gap queue behind each other instead of finding the first of them open.
func TestEverySecondUnderDefaultPoliciesSurvivesLeaderKills(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	// The promise is for gaps shorter than the misfire threshold; a loaded machine may make a takeover
	// slow, which is not what this test is about.
	c := StartCluster(t, Options{Servers: 3, Clients: 2, ServerEnv: []string{"CLOVER_MISFIRE_THRESHOLD=60s"}})
	keepLogsOnFailure(t, c)
	l := newLedger(t)
	spec := l.job("tick", "@every 1s")
	spec.Overlap = "" // the default: forbid
	c.CreateJob(spec)
	start := time.Now().Add(2 * time.Second).Truncate(time.Second)
	l.waitRunAfter(t, c, start.Add(time.Second), 30*time.Second)

	for i := range 5 {
		old, epoch := c.WaitLeader(20 * time.Second)
		old.Kill()
		testenv.WaitFor(t, 20*time.Second, "a new leader", func() bool {
			m, e, ok := c.Leader()
			return ok && m != old && e > epoch && c.isLeading(m)
		})
		c.Start(old) // back as a standby, for the next kill
		// Let the new leader catch up before the next kill, so that each gap is one takeover.
		l.waitRunAfter(t, c, time.Now().Truncate(time.Second), 30*time.Second)
		t.Logf("kill %d: the leader %s (epoch %d) was replaced", i+1, old.ID, epoch)
	}
	end := time.Now().Add(2 * time.Second).Truncate(time.Second)
	l.waitComplete(t, c, start, end, 60*time.Second)

	skipped, err := c.Store().ListExecutions(t.Context(), store.ExecutionFilter{Job: "tick", State: job.StateSkipped})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range skipped {
		if !e.ScheduledAt.Before(start) && !e.ScheduledAt.After(end) {
			t.Errorf("%s recorded skipped: %+v", e.ID, e.Result)
		}
	}
}

// A client is SIGKILLed while it runs two shell commands of jobs that must not run twice; the commands go
// on. The leader orphans both. The client restarts with the same id: the command that ended while it was
// down is reported with its real exit status and output, the one still running is watched again and
// reported when it ends; neither runs twice, and no person is needed.
func TestAClientKilledMidRunReportsTheRealResultsWhenItReturns(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := StartCluster(t, Options{Servers: 1, Clients: 1})
	keepLogsOnFailure(t, c)
	gate, shortGate := filepath.Join(c.Dir, "gate"), filepath.Join(c.Dir, "short-gate")
	starts := filepath.Join(c.Dir, "starts")
	// short ends while its client is down (its gate opens after the kill); long waits for its gate, opened
	// after the restart.
	c.CreateJob(job.Spec{Name: "short", Schedule: never, Handler: job.HandlerShell,
		Params: map[string]string{"command": `echo "$CLOVER_EXECUTION" >> ` + starts + `; while [ ! -e ` + shortGate + ` ]; do sleep 0.1; done; echo "short output"; exit 7`}})
	c.CreateJob(job.Spec{Name: "long", Schedule: never, Handler: job.HandlerShell,
		Params: map[string]string{"command": `echo "$CLOVER_EXECUTION" >> ` + starts + `; while [ ! -e ` + gate + ` ]; do sleep 0.1; done; echo "long output"`}})
	short, long := c.trigger(t, "short"), c.trigger(t, "long")
	c.waitState(t, short, job.StateRunning, 20*time.Second)
	c.waitState(t, long, job.StateRunning, 20*time.Second)

	worker := c.Clients[0]
	worker.Kill()
	if err := os.WriteFile(shortGate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	c.waitState(t, short, job.StateOrphaned, 40*time.Second)
	c.waitState(t, long, job.StateOrphaned, 40*time.Second)

	c.Start(worker) // same id, same state directory
	e := c.waitState(t, short, job.StateFailed, 40*time.Second)
	if e.Result == nil || e.Result.ExitCode != 7 || !strings.Contains(e.Result.Output, "short output") {
		t.Fatalf("short ended with %+v; want its exit code 7 and its output", e.Result)
	}
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	e = c.waitState(t, long, job.StateSucceeded, 40*time.Second)
	if e.Result == nil || e.Result.ExitCode != 0 || !strings.Contains(e.Result.Output, "long output") {
		t.Fatalf("long ended with %+v; want exit code 0 and its output", e.Result)
	}
	b, err := os.ReadFile(starts)
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Fields(string(b)); len(lines) != 2 {
		t.Fatalf("the commands started %d times, want once each: %v", len(lines), lines)
	}
}
