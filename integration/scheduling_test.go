package integration

import (
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	cleanupBinary()
	osExit(code)
}

// A job every second, two servers, two clients: each scheduled second runs exactly once, on one client,
// and the firings spread over both clients.
func TestEverySecondRunsOnceOnOneClient(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c, l, start := startTicking(t, Options{Servers: 2, Clients: 2})
	end := start.Add(8 * time.Second)
	l.waitComplete(t, c, start, end, 30*time.Second)

	runs := l.runs(t)
	clients := map[string]int{}
	for _, r := range runs {
		clients[r.client]++
	}
	if len(clients) != 2 {
		t.Fatalf("runs went to %v, want both clients", clients)
	}

	// What ran is what the store says: succeeded, on the client that ran it.
	testenv.WaitFor(t, 10*time.Second, "results recorded", func() bool {
		e, err := c.Store().GetExecution(t.Context(), job.ExecutionID("tick", end))
		return err == nil && e.State == job.StateSucceeded
	})
	for s := start; !s.After(end); s = s.Add(time.Second) {
		e, err := c.Store().GetExecution(t.Context(), job.ExecutionID("tick", s))
		if err != nil {
			t.Fatalf("execution at %s: %v", s, err)
		}
		ran := bySecond(runs)[s.Unix()][0].client
		if e.State != job.StateSucceeded || e.Client != ran {
			t.Errorf("execution %s: state %s on %q, but the ledger says it ran on %q", e.ID, e.State, e.Client, ran)
		}
	}
}

// SIGKILL the leader: the standby leads within the session timeout plus one second, and across the change
// no scheduled second is lost and none runs twice.
func TestLeaderKilledStandbyTakesOver(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c, l, start := startTicking(t, Options{Servers: 2, Clients: 2})
	old, oldEpoch := c.WaitLeader(10 * time.Second)
	killed := time.Now()
	old.Kill()
	standby := c.otherServer(old)
	testenv.WaitFor(t, 10*time.Second, "the standby to lead", func() bool { return c.isLeading(standby) })
	took := time.Since(killed)
	t.Logf("failover after SIGKILL took %s (session timeout %s)", took, c.opts.SessionTimeout)
	if limit := c.opts.SessionTimeout + time.Second; took > limit {
		t.Errorf("standby led %s after the kill, want within %s", took, limit)
	}
	_, newEpoch := c.WaitLeader(5 * time.Second)
	if newEpoch <= oldEpoch {
		t.Errorf("epoch went from %d to %d, want it to grow", oldEpoch, newEpoch)
	}

	end := time.Now().Add(4 * time.Second).Truncate(time.Second)
	l.waitComplete(t, c, start, end, 30*time.Second)
}

// Kill a client: once its registration is gone, every firing goes to the other client, and none is lost
// or doubled.
func TestClientKilledFiringsMoveToTheOther(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c, l, start := startTicking(t, Options{Servers: 2, Clients: 2})
	victim, survivor := c.Clients[0], c.Clients[1]
	victim.Kill()
	c.WaitClients(1, 10*time.Second)
	gone := time.Now().Add(time.Second).Truncate(time.Second)
	end := gone.Add(4 * time.Second)
	l.waitComplete(t, c, start, end, 30*time.Second)
	runs := l.runs(t)
	for _, r := range runs {
		if !r.scheduled.Before(gone) && r.client != survivor.ID {
			t.Errorf("%s ran on %s after it was gone", r.execID, r.client)
		}
	}
}
