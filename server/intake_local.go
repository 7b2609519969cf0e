package server

import (
	"context"
	"errors"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/store"
)

// The leader's own writes go through the intake's queue, in order with each other: the events it
// produces (an execution it ended), a batch run's records, and the closes of executions in the open set,
// so that an execution leaves the open set only after what records its end.

// localWrite is an event the leader produced, or the close of an execution it saw end (see closeOpen).
type localWrite struct {
	event *job.Event
	// batchEnd and batchRun are a batch run's records (batchrun.go): written after the events before them
	// and before the closes after them, so that an execution leaves the open set only once the end of its
	// batch partition is recorded (a new term finds either the end or the execution).
	batchEnd *store.BatchEnd
	batchRun *store.BatchRun
	close    string
	epoch    int64 // of the term that asks for the close
	recheck  bool  // the close looks in the history first (see leaderDeps.closeOpen)
}

// batchRecords is what the intake needs to write batch runs' records; the store has it (unit tests'
// fakes may not, and then write none).
type batchRecords interface {
	InsertBatchEnds(ctx context.Context, ends []store.BatchEnd) error
	SaveBatchRun(ctx context.Context, r store.BatchRun) error
}

// persist queues an event the leader itself produced (an execution it ended).
func (in *intake) persist(ev job.Event) {
	select {
	case in.local <- localWrite{event: &ev}:
	default:
		// The store is far behind; record it synchronously rather than lose an execution's end. The wait
		// is bounded by storeTimeout.
		ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		defer cancel()
		if _, err := in.store.InsertEvents(ctx, []job.Event{ev}); err != nil {
			in.logger.Error("recording an execution's end failed", "execution", ev.ExecID, "err", err)
		}
	}
}

// persistBatch queues a batch run's end of a partition, or its state, in order with the events and closes.
func (in *intake) persistBatch(end *store.BatchEnd, run *store.BatchRun) {
	select {
	case in.local <- localWrite{batchEnd: end, batchRun: run}:
	default:
		// The store is far behind; write it now rather than lose it (bounded by storeTimeout).
		ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		defer cancel()
		if err := in.writeBatch(ctx, []localWrite{{batchEnd: end, batchRun: run}}); err != nil {
			in.logger.Error("recording a batch run's record failed", "err", err)
		}
	}
}

// writeBatch writes the batch records of local, ends first; a run's state refused as stale (a newer save,
// a newer term) is dropped, not retried.
func (in *intake) writeBatch(ctx context.Context, local []localWrite) error {
	var ends []store.BatchEnd
	var runs []store.BatchRun
	for _, w := range local {
		if w.batchEnd != nil {
			ends = append(ends, *w.batchEnd)
		}
		if w.batchRun != nil {
			runs = append(runs, *w.batchRun)
		}
	}
	if len(ends) == 0 && len(runs) == 0 {
		return nil
	}
	bw, ok := in.store.(batchRecords)
	if !ok {
		return nil
	}
	if err := bw.InsertBatchEnds(ctx, ends); err != nil {
		return err
	}
	for _, r := range runs {
		err := bw.SaveBatchRun(ctx, r)
		switch {
		case errors.Is(err, store.ErrFenced), errors.Is(err, store.ErrConflict):
			in.logger.Info("a batch run's state was not saved: a newer one was", "run", r.ID, "state", r.State, "err", err)
		case err != nil:
			return err
		}
	}
	return nil
}

// closeOpen queues the close of an execution in the open set behind the events queued before it, so that
// an execution leaves the open set only once its end is recorded. When the queue is full it is dropped: the
// leader's sweep closes it later.
func (in *intake) closeOpen(epoch int64, id string, recheck bool) {
	select {
	case in.local <- localWrite{close: id, epoch: epoch, recheck: recheck}:
	default:
	}
}
