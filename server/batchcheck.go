package server

import (
	"context"
	"errors"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/store"
)

// The safety net under a batch run's ends: an execution fired for a run whose end the term did not hear of
// (a dispatch that met an earlier term's recorded execution, an end recorded by another term) is looked up
// in the store, ended there, taken on if open, fired again if the store never saw it. It also retries the
// takeover of runs a term could not load at first.

// batchCheckEvery is how often the loop looks for batch executions whose end it did not learn.
const batchCheckEvery = 2 * time.Second

// checkBatches asks the store about executions fired for a run that the term no longer follows and
// whose end it did not hear of: a dispatch found already recorded and ended (a first dispatch by an
// earlier term), an end recorded by another term. Those not found at all are fired again.
func (l *leader) checkBatches(ctx context.Context, now time.Time) {
	if l.batchStore == nil || l.batchLooking || now.Sub(l.lastBatchCheck) < batchCheckEvery || len(l.runs)+len(l.unloaded) == 0 {
		return
	}
	l.lastBatchCheck = now
	unsaved := map[string]bool{}
	for _, fr := range l.unsaved {
		if fr.batch != nil {
			unsaved[fr.batch.id] = true
		}
	}
	if now.Sub(l.lastUnloadedTry) > 30*time.Second && len(l.unloaded) > 0 {
		l.lastUnloadedTry = now
		for id := range l.unloaded {
			sctx, cancel := storeCtx(ctx)
			doc, err := l.batchStore.GetBatchRun(sctx, id) // as it is now: an earlier term's late save may have landed
			cancel()
			var run *batchRun
			if err == nil && !doc.State.Open() {
				delete(l.unloaded, id) // ended meanwhile (an earlier term's last save)
				continue
			}
			if err == nil {
				run, err = l.takeRun(ctx, doc)
			}
			if err != nil {
				l.logger.Warn("batch: a run still cannot be taken over", "run", id, "err", err)
				continue
			}
			l.advance(run)
			l.finishIfDone(run)
		}
		l.openGate()
	}
	for id := range l.openSetEnds { // kept only for runs still to be taken over
		if _, ok := l.unloaded[id]; !ok {
			delete(l.openSetEnds, id)
		}
	}
	var ids []string
runs:
	for _, run := range l.runs {
		for id, s := range run.dispatched {
			_, tracked := l.flights[id]
			_, recording := l.recording[id]
			switch {
			case tracked && !s.unknown, recording, unsaved[id], s.waiting, s.due:
			case s.unknown || now.Sub(s.firedAt) > 2*batchCheckEvery:
				ids = append(ids, id)
			}
			if len(ids) >= 500 {
				break runs
			}
		}
	}
	if len(ids) == 0 {
		return
	}
	l.batchLooking = true
	go func() {
		var n batchLookedUp
		for _, id := range ids {
			sctx, cancel := storeCtx(ctx)
			e, err := l.batchStore.GetExecution(sctx, id)
			cancel()
			switch {
			case errors.Is(err, store.ErrNotFound):
				n.missing = append(n.missing, id)
			case err != nil:
				l.logger.Warn("batch: cannot read an execution", "execution", id, "err", err)
			default:
				n.found = append(n.found, e)
			}
		}
		l.tell(ctx, n)
	}()
}

// applyBatchLookup acts on what the store said (see checkBatches).
func (l *leader) applyBatchLookup(n batchLookedUp) {
	l.batchLooking = false
	now := l.now()
	for _, e := range n.found {
		run := l.runs[e.BatchRun]
		if run == nil || run.dispatched[e.ID] == nil {
			continue
		}
		if e.State.Terminal() {
			if _, tracked := l.flights[e.ID]; tracked {
				continue // its flight ends it
			}
			s := run.dispatched[e.ID]
			delete(run.dispatched, e.ID)
			run.unhold(s)
			l.releaseGate(e.ID)
			l.endPartition(run, s, e.State == job.StateSucceeded, e.ID, resultOutput(e.Result))
			continue
		}
		run.dispatched[e.ID].unknown = false
		l.inherit(e, now) // open, and followed by no one: this term takes it on
	}
	for _, id := range n.missing {
		for _, run := range l.runs {
			s, ok := run.dispatched[id]
			if !ok {
				continue
			}
			_, tracked := l.flights[id]
			_, recording := l.recording[id]
			switch {
			case tracked || recording:
			case run.doc.State == store.RunRunning:
				l.logger.Warn("batch: an execution fired for a run was not recorded; firing it again", "execution", id)
				s.firedAt, s.due = now, true
				l.batchDue = append(l.batchDue, s)
			default: // fired when the run goes on, if it does
				delete(run.dispatched, id)
				l.releaseGate(id)
				run.toFire = append(run.toFire, s)
				l.finishIfDone(run)
			}
		}
	}
}
