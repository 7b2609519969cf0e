// Package histfill fills a store with the history of ended executions, shaped as Clover writes it (an
// execution that was acknowledged and ended with an output tail, closed into the history), so that
// benchmarks and tests can measure what a cluster does with months of history behind it without running
// for months.
package histfill

import (
	"context"
	"fmt"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/store"
)

// batch is how many executions one insert carries.
const batch = 2000

// Options say what to fill.
type Options struct {
	Jobs    []string      // the executions' jobs, round-robin
	N       int           // how many executions
	End     time.Time     // the newest one's scheduled time
	Spacing time.Duration // between scheduled times
	// Fill names its history buckets after Fill, a number that no leader's epoch is (leaders' are
	// positive): each fill of one store needs its own. 0 means -1.
	Fill int64
	// Legacy fills the layout of the versions before the open set and the history (executions and
	// execution_events), to compare with them.
	Legacy bool
}

// Fill records o.N ended executions, one in ten failed, as closed executions: in the history (or the legacy
// collections), not in the open set. It returns when they are recorded; executions recorded before are
// skipped.
func Fill(ctx context.Context, s *store.Store, o Options) error {
	if len(o.Jobs) == 0 {
		return fmt.Errorf("histfill: no jobs")
	}
	w := s.NewHistoryWriter(-max(-o.Fill, 1), time.Hour, 0)
	output := "extracted 1204 rows from ledger; wrote report to /var/reports/eod.csv\n"
	for start := 0; start < o.N; start += batch {
		var (
			execs  []job.Execution
			events []job.Event
		)
		for i := start; i < min(start+batch, o.N); i++ {
			name := o.Jobs[i%len(o.Jobs)]
			at := o.End.Add(-time.Duration(o.N-1-i) * o.Spacing).UTC()
			e := job.Execution{
				ID: job.ExecutionID(name, at), Job: name, ScheduledAt: at, FiredAt: at.Add(3 * time.Millisecond),
				Trigger: job.TriggerSchedule, Epoch: 1, Server: "server-1", Handler: job.HandlerShell,
				Params: map[string]string{"command": "eod-extract --date ${date}"}, Timeout: job.Duration(time.Minute),
			}
			client := fmt.Sprintf("client-%d", i%3+1)
			status, code := job.StateSucceeded, 0
			if i%10 == 9 {
				status, code = job.StateFailed, 1
			}
			evs := []job.Event{
				{
					ID: job.EventID(e.ID, job.EventAcked, 1), ExecID: e.ID, Job: name, Kind: job.EventAcked,
					Attempt: 1, Run: 1, Client: client, At: at.Add(10 * time.Millisecond),
				},
				{
					ID: job.EventID(e.ID, job.EventFinished, 1), ExecID: e.ID, Job: name, Kind: job.EventFinished,
					Attempt: 1, Run: 1, Client: client, At: at.Add(250 * time.Millisecond),
					Result: &job.Result{Status: status, ExitCode: code, Duration: job.Duration(240 * time.Millisecond), Output: output},
				},
			}
			if !o.Legacy {
				e.Fold(evs)
			}
			execs, events = append(execs, e), append(events, evs...)
		}
		var err error
		if o.Legacy {
			err = s.InsertLegacy(ctx, execs, events)
		} else {
			err = s.InsertClosed(ctx, w, execs, time.Now())
		}
		if err != nil {
			return fmt.Errorf("histfill: %w", err)
		}
	}
	return nil
}
