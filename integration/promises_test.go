package integration

import (
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
	c := StartCluster(t, Options{Servers: 3, Clients: 2})
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
