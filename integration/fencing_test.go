package integration

import (
	"syscall"
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/testenv"
)

// SIGSTOP the leader past its session timeout, let the standby take over, SIGCONT the old one: it must not
// fire, dispatch or write anything as leader, and no second is lost or run twice.
func TestFrozenLeaderStaysSilentAfterResume(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c, l, start := startTicking(t, Options{Servers: 2, Clients: 2})
	old, oldEpoch := c.WaitLeader(10 * time.Second)
	standby := c.otherServer(old)
	frozen := time.Now()
	if err := old.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// The standby leads only once the frozen leader's candidate node is gone, that is once its session
	// has expired: from then on the old process holds no valid leadership.
	testenv.WaitFor(t, 15*time.Second, "the standby to lead", func() bool { return c.isLeading(standby) })
	if err := old.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 15*time.Second, "the old leader to answer as a follower", func() bool {
		v, err := c.Metric(old, "clover_server_is_leader")
		return err == nil && v == 0
	})

	end := time.Now().Add(4 * time.Second).Truncate(time.Second)
	l.waitComplete(t, c, start, end, 30*time.Second)

	execs, err := c.Store().ListExecutions(t.Context(), store.ExecutionFilter{Job: "tick", Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range execs {
		if e.Epoch == oldEpoch && e.FiredAt.After(frozen) {
			t.Errorf("execution %s was fired at %s under the old epoch %d, after its leader was frozen at %s",
				e.ID, e.FiredAt.Format(time.StampMilli), oldEpoch, frozen.Format(time.StampMilli))
		}
	}
	if !old.Proc.Exited() {
		if _, newEpoch := c.WaitLeader(5 * time.Second); newEpoch <= oldEpoch {
			t.Errorf("epoch after the takeover is %d, want more than %d", newEpoch, oldEpoch)
		}
	}
}
