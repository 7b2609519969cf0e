package integration

import (
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/histfill"
)

// takeoverBound is how long after the leader's SIGKILL the new leader must have fired, whatever the
// history: ZooKeeper's session timeout (1.5 s here) and the time to read what is in flight, with room for a
// loaded machine. Before the open set, a new leader read a day of history first: with this test's history
// it took over 15 s, and with 100,000 executions it never took over.
const takeoverBound = 10 * time.Second

// A leader killed over a large history is replaced as fast as over none: the new leader reads what is in
// flight, not the history, and every second still runs exactly once.
func TestTakeoverOverALargeHistoryFiresWithinTheBound(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c, l, start := startTicking(t, Options{Servers: 2, Clients: 1})
	const history = 50_000
	filled := time.Now()
	if err := histfill.Fill(t.Context(), c.Store(), []string{"eod-a", "eod-b", "eod-c"}, history, time.Now().Add(-time.Minute), time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("filled %d executions and %d events in %s", history, 2*history, time.Since(filled).Round(time.Millisecond))

	leader, _ := c.WaitLeader(10 * time.Second)
	leader.Kill()
	killed := time.Now()
	due := killed.Truncate(time.Second).Add(time.Second) // the first second due after the kill
	l.waitRunAfter(t, c, due, 60*time.Second)
	took := time.Since(killed) // an upper bound: polled
	t.Logf("SIGKILL of %s -> the run for %s recorded in the ledger: %s", leader.ID, due.Format(time.TimeOnly), took.Round(time.Millisecond))
	if took > takeoverBound {
		t.Errorf("the new leader fired %s after the old one was killed, want within %s\n%s", took, takeoverBound, c.Logs(40))
	}
	end := time.Now().Add(2 * time.Second).Truncate(time.Second)
	l.waitComplete(t, c, start, end, 30*time.Second)
}
