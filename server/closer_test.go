package server

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/store"
)

// failingClose fails its first CloseExecutions, after the history record was written.
type failingClose struct {
	*store.Store
	failed bool
}

func (f *failingClose) CloseExecutions(ctx context.Context, ids []string) error {
	if !f.failed {
		f.failed = true
		return errors.New("connection reset")
	}
	return f.Store.CloseExecutions(ctx, ids)
}

// A close asked again while one is pending is not queued twice (the sweep asks for what waits in the
// closer), and a close that failed after its history record was written does not write a second one.
func TestACloseIsQueuedOnceAndItsRetryRecordsOnce(t *testing.T) {
	st := testStore(t, "t_closer_")
	fc := &failingClose{Store: st}
	c := newCloser(fc, DefaultConfig().History, time.Now, slog.New(slog.DiscardHandler), newMetrics(prometheus.NewRegistry()))
	at := time.Now().UTC().Truncate(time.Second)
	e := job.Execution{ID: job.ExecutionID("j", at), Firing: job.ExecutionID("j", at), Job: "j", ScheduledAt: at, FiredAt: at,
		Trigger: job.TriggerSchedule, Epoch: 1, Handler: "noop", State: job.StatePending}
	if _, err := st.InsertExecutions(t.Context(), []job.Execution{e}); err != nil {
		t.Fatal(err)
	}
	end := job.Event{ID: job.EventID(e.ID, job.EventFinished, 1), ExecID: e.ID, Job: "j", Kind: job.EventFinished, Run: 1, At: at,
		Result: &job.Result{Status: job.StateSucceeded, Final: true}}
	if _, err := st.InsertEvents(t.Context(), []job.Event{end}); err != nil {
		t.Fatal(err)
	}

	c.add(1, []closeReq{{id: e.ID}})
	c.add(1, []closeReq{{id: e.ID, recheck: true}}) // the sweep found it still in the open set
	if len(c.pending) != 1 {
		t.Fatalf("%d closes pending for one execution, want 1", len(c.pending))
	}
	reqs := c.pending
	c.pending = nil
	if err := c.close(t.Context(), 1, reqs); err == nil {
		t.Fatal("the first close should fail (after its history record)")
	}
	c.retry(1, reqs)
	if len(c.pending) != 1 || !c.pending[0].recheck {
		t.Fatalf("retried as %+v, want one close that rechecks the history", c.pending)
	}
	if err := c.close(t.Context(), 1, c.pending); err != nil {
		t.Fatal(err)
	}
	c.done(c.pending)
	z, err := st.ExecutionSizes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if z.History != 1 || z.OpenExecutions != 0 {
		t.Fatalf("history %d records, open set %d: want the execution recorded once and closed", z.History, z.OpenExecutions)
	}
	if len(c.queued) != 0 {
		t.Fatalf("queued after the close: %v", c.queued)
	}
}
