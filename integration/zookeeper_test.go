package integration

import (
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/testenv"
)

// ZooKeeper stops under a running cluster for longer than the session timeout: the leader stops acting as
// one (no firing while it cannot confirm its session), clients keep their state and register again when
// ZooKeeper returns, and then every second of the outage runs late, once (misfire policy fire-once), none
// twice.
func TestZooKeeperOutageFencesTheLeaderAndNothingRunsTwice(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	const sessionTimeout = 1500 * time.Millisecond
	c, l, start := startTicking(t, Options{Servers: 2, Clients: 2, SessionTimeout: sessionTimeout,
		ServerEnv: []string{"CLOVER_MISFIRE_THRESHOLD=60s"}})

	c.ZK.Stop()
	stopped := time.Now()
	testenv.Poll(4*sessionTimeout, func() bool { return false }) // stay down past every session timeout
	restarted := time.Now()                                      // Start returns once ZooKeeper answers: a leader may act from then on
	c.ZK.Start()
	c.WaitLeader(30 * time.Second)
	c.WaitClients(2, 30*time.Second)
	t.Logf("ZooKeeper down from %s to %s", stopped.Format(time.TimeOnly), restarted.Format(time.TimeOnly))

	end := time.Now().Add(4 * time.Second).Truncate(time.Second)
	l.waitComplete(t, c, start, end, 60*time.Second)

	// Fencing: once the session could not be confirmed for its timeout (plus the check's own tick), no
	// leader fired anything until ZooKeeper was back.
	execs, err := c.Store().ListExecutions(t.Context(), store.ExecutionFilter{Job: "tick", Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	fenceBy := stopped.Add(sessionTimeout + time.Second)
	for _, e := range execs {
		if e.FiredAt.After(fenceBy) && e.FiredAt.Before(restarted) {
			t.Errorf("execution %s fired at %s while ZooKeeper was down (since %s)", e.ID, e.FiredAt.Format(time.StampMilli), stopped.Format(time.StampMilli))
		}
	}
}
