// Package histfill fills a store with the history of ended executions, shaped as Clover writes it (an
// execution, its ack and its result with an output tail), so that benchmarks and tests can measure what a
// cluster does with months of history behind it without running for months.
package histfill

import (
	"context"
	"fmt"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/store"
)

// batch is how many executions one insert carries (their events go in a second insert).
const batch = 2000

// Fill records n ended executions of jobs (round-robin), one every spacing, the newest scheduled at end,
// as closed executions: in the history, not in the open set. One in ten failed. It returns when they are
// recorded; executions recorded before are skipped.
func Fill(ctx context.Context, s *store.Store, jobs []string, n int, end time.Time, spacing time.Duration) error {
	if len(jobs) == 0 {
		return fmt.Errorf("histfill: no jobs")
	}
	output := "extracted 1204 rows from ledger; wrote report to /var/reports/eod.csv\n"
	for start := 0; start < n; start += batch {
		var (
			execs  []job.Execution
			events []job.Event
		)
		for i := start; i < min(start+batch, n); i++ {
			name := jobs[i%len(jobs)]
			at := end.Add(-time.Duration(n-1-i) * spacing).UTC()
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
			execs = append(execs, e)
			events = append(events,
				job.Event{
					ID: job.EventID(e.ID, job.EventAcked, 1), ExecID: e.ID, Job: name, Kind: job.EventAcked,
					Attempt: 1, Run: 1, Client: client, At: at.Add(10 * time.Millisecond),
				},
				job.Event{
					ID: job.EventID(e.ID, job.EventFinished, 1), ExecID: e.ID, Job: name, Kind: job.EventFinished,
					Attempt: 1, Run: 1, Client: client, At: at.Add(250 * time.Millisecond),
					Result: &job.Result{Status: status, ExitCode: code, Duration: job.Duration(240 * time.Millisecond), Output: output},
				})
		}
		if err := s.InsertClosed(ctx, execs, events); err != nil {
			return fmt.Errorf("histfill: %w", err)
		}
	}
	return nil
}
