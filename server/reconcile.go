package server

import (
	"context"
	"slices"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/wire"
)

// reconcile asks the store, off the loop, about executions the loop is unsure of: those waiting for a
// check (see flight.check), at once, and now and then those in flight for a long time, since a result
// note can be lost (a relay to a server that just stopped leading, a full queue) and a client stops
// re-sending once any server has recorded its result.
func (l *leader) reconcile(ctx context.Context, now time.Time) {
	if l.reconciling {
		return
	}
	periodic := now.Sub(l.lastReconcile) >= reconcileEvery
	var ids, checked, unsent []string
	for id, f := range l.flights {
		switch {
		case f.check:
			ids, checked = append(ids, id), append(checked, id)
			if neverSent(f) {
				unsent = append(unsent, id)
			}
		case periodic && l.longOpen(f, now):
			ids = append(ids, id)
		}
	}
	if periodic {
		l.lastReconcile = now
	}
	if len(ids) == 0 {
		return
	}
	l.reconciling = true
	l.metrics.storeCheckReads.Inc()
	if n := len(ids) - len(checked); n > 0 {
		l.metrics.storeChecks.WithLabelValues("periodic").Add(float64(n))
	}
	go func() {
		sctx, cancel := context.WithTimeout(ctx, 4*storeTimeout)
		defer cancel()
		note := reconciledNote{checked: checked}
		// The history first: an execution it has that the open set, read after, still holds pending is
		// a copy nothing ends (see endedElsewhere). Read the other way round, one that ended and was
		// closed between the two reads would look like one.
		hctx, hcancel := context.WithTimeout(ctx, 4*storeTimeout)
		recorded, herr := l.store.InHistory(hctx, unsent)
		hcancel()
		execs, err := l.store.OpenByID(sctx, ids)
		if err != nil {
			note.checked = nil // unsure still: check again on a later tick
		} else {
			for _, id := range ids {
				if !slices.ContainsFunc(execs, func(e job.Execution) bool { return e.ID == id }) {
					note.closed = append(note.closed, id)
				}
			}
			if herr != nil {
				// The rest of the answer stands; those the history was to be asked about stay checked.
				l.metrics.storeErrors.WithLabelValues("in_history").Inc()
				l.logger.Warn("cannot look up held firings in the history; they stay held", "executions", len(unsent), "err", herr)
				note.checked = slices.DeleteFunc(note.checked, func(id string) bool { return slices.Contains(unsent, id) })
			} else {
				note.inHistory = endedElsewhere(unsent, execs, recorded)
			}
		}
		note.execs = execs
		if len(note.checked) > 0 && l.fallback != nil {
			note.checked = l.notInFallback(sctx, note.checked)
		}
		l.tell(ctx, note)
	}()
}

// neverSent reports whether f is a firing this term has not sent, held for a store check before it is:
// one inherited, or adopted from an earlier term, on the schedule. Only such a firing can be a copy a
// deposed leader left (see endedElsewhere).
func neverSent(f *flight) bool {
	return !f.sentOnce && (f.phase == phaseWaiting || f.phase == phaseQueued) && keepsSchedule(f.exec.Trigger) && f.exec.Attempt == 0
}

// endedElsewhere returns which of the unsent executions are pending in the open set (execs) and yet were
// recorded in the history (recorded, read before execs). A firing skipped where it was fired goes straight
// to the history (store.RecordSkipped), and a deposed leader that fired it too may have left a copy in the
// open set that nothing ends: it inserted the copy after this or an earlier term read the open set, and
// died before its fence insert (which would have found the skip and dropped the copy). Such a copy,
// inherited, must not run: its firing was decided. A pending copy whose fence alone says skipped (the
// skip's record was never written) is not in the history, and runs, as a firing made again to run does.
func endedElsewhere(unsent []string, execs []job.Execution, recorded map[string]bool) []string {
	var out []string
	for _, e := range execs {
		if e.State == job.StatePending && e.Attempt == 0 && recorded[e.ID] && slices.Contains(unsent, e.ID) {
			out = append(out, e.ID)
		}
	}
	return out
}

// endRecordedCopy ends a pending copy of an execution the history has (see endedElsewhere) without running
// it. Its end is what the history says; the copy gets an end of its own so that it can be closed, and its
// close looks in the history first, so the record stays the only one.
func (l *leader) endRecordedCopy(e job.Execution, now time.Time) {
	l.logger.Warn("an execution pending in the open set is recorded ended in the history: this copy does not run", "execution", e.ID)
	l.persist(skipEvent(e, "recorded ended in the history already (a copy left by a deposed leader or a failed insert)", now))
	l.maybeRecorded[e.ID] = true
	if _, tracked := l.flights[e.ID]; tracked {
		l.forget(e.ID, job.StateSkipped)
		return
	}
	l.activity.ended(now, job.StateSkipped)
	l.ended(e)
}

// notInFallback drops from checked the executions whose report waits in the fallback queue: the store
// does not know yet how their run went, but the replay will tell it, so deciding now (rerun, orphan) would
// be wrong. They stay unchecked and are asked about again on a later tick.
func (l *leader) notInFallback(ctx context.Context, checked []string) []string {
	waiting, err := l.fallback.FallbackWaitingFor(ctx, checked)
	if err != nil {
		return nil // unsure: ask again later
	}
	if len(waiting) == 0 {
		return checked
	}
	l.logger.Info("runs reported through the fallback queue; waiting for the replay before deciding", "executions", waiting)
	return slices.DeleteFunc(checked, func(id string) bool { return slices.Contains(waiting, id) })
}

// applyReconciled brings the flights in line with what the store says of them.
func (l *leader) applyReconciled(n reconciledNote) {
	l.reconciling = false
	now := l.now()
	for _, id := range n.closed {
		if f, ok := l.flights[id]; ok && f.phase != phaseReporting {
			l.logger.Info("execution ended and was closed by another term; no longer followed", "execution", id)
			l.forgetClosed(id)
		}
	}
	for _, id := range n.inHistory {
		f, ok := l.flights[id]
		if !ok || f.sentOnce || f.phase != phaseWaiting && f.phase != phaseQueued {
			continue
		}
		l.endRecordedCopy(f.exec, now)
	}
	for _, e := range n.execs {
		f, ok := l.flights[e.ID]
		if !ok || f.phase == phaseReporting {
			continue
		}
		switch {
		case e.State.Terminal():
			if e.Result != nil && f.result == nil {
				f.result = &wire.Result{ExecID: e.ID, Job: e.Job, Result: *e.Result} // forget hands its output on
			}
			l.forget(e.ID, e.State)
		case e.State == job.StateRetrying:
			if f.phase != phaseRetrying && e.Run > f.run {
				// A failed run the loop never heard of: its retry is due after the backoff.
				l.toWaiting(f)
				f.run, f.check = e.Run-1, false
				f.retryAt = e.FinishedAt.Add(l.retryDelay(e.Job, e.Run))
				l.to(f, phaseRetrying)
			}
		case e.State == job.StateRunning && l.learnsRunning(f, e.Run):
			// A recorded ack the loop never heard of (perhaps of a run an earlier term started).
			l.toRunning(f, e.Client, now)
			f.ackedAt, f.leaseUntil, f.run = now, now.Add(l.cfg.LeaseTimeout), max(e.Run, f.run)
			f.attempt = max(f.attempt, e.Attempt)
			f.retryAt, f.verify, f.heldUntil = time.Time{}, false, time.Time{}
		}
	}
	for _, id := range n.checked {
		f, ok := l.flights[id]
		if !ok {
			continue
		}
		f.check = false
		l.logger.Debug("store check done", "execution", id, "phase", f.phase, "departed", f.departed)
		if f.departed != "" && f.phase == phaseWaiting && !l.rerunnable(f) {
			// Sent to a client that went away without a word: it may have started the run and died before
			// its ack was recorded. A job that must not run twice is not sent again blindly.
			f.client = f.departed
			l.orphan(f, "sent to client "+f.departed+", which went away without answering: it may have started it")
		}
		f.departed = ""
	}
}

// learnsRunning reports whether a store answer that run of f is running tells the loop something it
// must act on: a recorded ack it missed. An answer read before the loop learned more (the run failed and
// a retry waits; a later run was dispatched) is stale and changes nothing.
func (l *leader) learnsRunning(f *flight, run int) bool {
	switch f.phase {
	case phaseOrphaned, phaseReporting:
		return false
	case phaseRunning, phaseRetrying:
		return run > f.run
	}
	return run >= f.run // waiting, queued, dispatched: a recorded ack of this run (or a later one)
}

// longOpen reports whether f has been open long enough that a lost report may be why: a run going for
// reconcileEvery, a dispatch unanswered as long, an orphan.
func (l *leader) longOpen(f *flight, now time.Time) bool {
	switch f.phase {
	case phaseRunning:
		return now.Sub(f.ackedAt) > reconcileEvery
	case phaseOrphaned:
		return true
	case phaseReporting, phaseRetrying:
		return false
	}
	return f.sentOnce && now.Sub(f.sentAt) > reconcileEvery
}

// askStore sets f.check: the next reconcile asks the store about f before the loop acts on it.
func (l *leader) askStore(f *flight, reason string) {
	if !f.check {
		l.metrics.storeChecks.WithLabelValues(reason).Inc()
	}
	f.check = true
}
