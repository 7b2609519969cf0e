package integration

import (
	"slices"
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/testenv"
)

// All servers down for longer than the misfire threshold: when one comes back, the times missed by more
// than the threshold are replaced by one catch-up run, the recent ones run each, and nothing runs twice.
func TestAllServersDownCatchUpOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	const threshold = 3 * time.Second
	c, l, start := startTicking(t, Options{Servers: 1, Clients: 1, ServerEnv: []string{"CLOVER_MISFIRE_THRESHOLD=" + threshold.String()}})

	srv := c.Servers[0]
	srv.Kill()
	killed := time.Now()
	var lastBefore time.Time
	for _, r := range l.runs(t) {
		if r.scheduled.After(lastBefore) {
			lastBefore = r.scheduled
		}
	}
	// Stay down well past the threshold.
	testenv.Poll(3*threshold, func() bool { return false })
	restarted := time.Now()
	c.Start(srv)
	c.WaitLeader(20 * time.Second)
	end := time.Now().Add(3 * time.Second).Truncate(time.Second)
	l.waitComplete(t, c, restarted.Add(time.Second).Truncate(time.Second), end, 30*time.Second)

	runs := l.runs(t)
	checkEverySecondOnce(t, runs, start, lastBefore)
	// One catch-up run stands for the missed times. It carries the latest of them as the leader saw it when
	// it took over, a moment after the restart: at the latest just before the restart.
	var catchUps []run
	var e job.Execution
	for _, r := range runs {
		if !r.scheduled.After(lastBefore) {
			continue
		}
		x, err := c.Store().GetExecution(t.Context(), r.execID)
		if err != nil {
			t.Fatal(err)
		}
		if x.Trigger == job.TriggerCatchUp {
			catchUps, e = append(catchUps, r), x
		}
	}
	if len(catchUps) != 1 || !catchUps[0].scheduled.Before(restarted) {
		t.Fatalf("catch-up runs after %s: %v, want 1 scheduled before the restart at %s (down since %s)",
			lastBefore.Format(time.TimeOnly), catchUps, restarted.Format(time.TimeOnly), killed.Format(time.TimeOnly))
	}
	// Times that were certainly past the threshold when the server came back did not run each.
	misfired := slices.DeleteFunc(slices.Clone(runs), func(r run) bool {
		return !r.scheduled.After(lastBefore) || !r.scheduled.Before(restarted.Add(-threshold)) || r.execID == e.ID
	})
	if len(misfired) != 0 {
		t.Fatalf("runs for the times missed between %s and %s besides the catch-up: %v",
			lastBefore.Format(time.TimeOnly), restarted.Add(-threshold).Format(time.TimeOnly), misfired)
	}
	// The catch-up run stands for every missed time; the metric counts them all.
	if e.Missed < 1 {
		t.Errorf("the catch-up run stands for %d other times, want at least 1", e.Missed)
	}
	if v, err := c.Metric(srv, "clover_misfires_total"); err != nil || v != float64(e.Missed+1) {
		t.Errorf("clover_misfires_total = %v (%v), want %d (the times the catch-up run stands for)", v, err, e.Missed+1)
	}
}
