package integration

import (
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/histfill"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/testenv"
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
	o := histfill.Options{Jobs: []string{"eod-a", "eod-b", "eod-c"}, N: history, End: time.Now().Add(-time.Minute), Spacing: time.Second}
	if err := histfill.Fill(t.Context(), c.Store(), o); err != nil {
		t.Fatal(err)
	}
	t.Logf("filled the history with %d executions in %s", history, time.Since(filled).Round(time.Millisecond))

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

// With a short history.keep, ended executions move to the archive bucket by bucket while the leader is
// killed twice: every execution is at all times in the open set and history, or in the archive, never
// both and never neither, and `exec list --archived` finds the archived ones.
func TestHistoryMovesToTheArchiveAcrossLeaderKills(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c, l, start := startTicking(t, Options{Servers: 2, Clients: 1, ServerEnv: []string{"CLOVER_HISTORY_KEEP=15s"}})
	st := c.Store()
	archivedCount := func() int {
		buckets, err := st.Buckets(t.Context(), true)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, b := range buckets {
			n += b.Count
		}
		return n
	}
	for kill := range 2 {
		before := archivedCount()
		testenv.WaitFor(t, 2*time.Minute, "a bucket moved to the archive", func() bool { return archivedCount() > before })
		leader, _ := c.WaitLeader(10 * time.Second)
		leader.Kill()
		t.Logf("kill %d: %s killed with %d executions archived", kill+1, leader.ID, archivedCount())
		c.WaitLeader(30 * time.Second)
		c.Start(leader)
	}
	before := archivedCount()
	testenv.WaitFor(t, 2*time.Minute, "the new leader moves buckets too", func() bool { return archivedCount() > before })

	end := time.Now().Truncate(time.Second)
	l.waitComplete(t, c, start, end, 30*time.Second)
	// Moves go one way, live to archive: read the archive, the live executions, then the archive again.
	// An execution in the first archive read and the live one was in both at once; one in neither the live
	// read nor the second archive read was lost.
	archivedList := func() map[string]job.Execution {
		var execs []job.Execution
		if err := c.Call(c.AnyServer(), "GET", "/api/v1/executions?archived=true&limit=1000", nil, &execs); err != nil {
			t.Fatal(err)
		}
		m := map[string]job.Execution{}
		for _, e := range execs {
			m[e.ID] = e
		}
		return m
	}
	archived := archivedList()
	liveList, err := st.ListExecutions(t.Context(), store.ExecutionFilter{Limit: store.MaxListLimit})
	if err != nil {
		t.Fatal(err)
	}
	archivedAfter := archivedList()
	live := map[string]bool{}
	for _, e := range liveList {
		live[e.ID] = true
	}
	for _, e := range archived {
		if e.State != job.StateSucceeded {
			t.Errorf("archived %s is %s, want succeeded", e.ID, e.State)
		}
	}
	for _, r := range l.runs(t) {
		if r.scheduled.Before(start) || r.scheduled.After(end) {
			continue
		}
		_, before := archived[r.execID]
		_, after := archivedAfter[r.execID]
		switch {
		case before && live[r.execID]:
			t.Errorf("%s ran and is both live and archived", r.execID)
		case !live[r.execID] && !after:
			t.Errorf("%s ran and is neither live nor archived", r.execID)
		}
	}
	if len(archived) == 0 {
		t.Fatal("exec list --archived found nothing")
	}
	t.Logf("%d executions live, %d archived", len(live), len(archivedAfter))
}
