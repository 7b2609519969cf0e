package server

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/clover-sched/clover/internal/job"
)

// checkFlights runs on every tick: it retries firings the store refused, sends what waits for a client,
// re-sends what was not acknowledged, hands on what a departed client can no longer start, starts due
// retries, releases queued executions, enforces timeouts, leases and stops, and raises overdue alarms.
func (l *leader) checkFlights(ctx context.Context) error {
	// Apply the notes already waiting first: an ack queued behind a slow store write is not silence, and
	// re-sending its dispatch would only add load.
	if err := l.drainNotes(ctx); err != nil {
		return err
	}
	// A registry change whose note was dropped (a full queue) is still seen here.
	if l.clientsDirty() {
		l.rebuildEligibility()
		l.applyDeclarations(ctx)
	}
	now := l.now()
	if err := l.retryUnsaved(ctx, now); err != nil {
		return err
	}
	l.checkBatches(ctx, now)
	if l.batchStore != nil && l.confirmed() {
		l.fireBatchSchedules(ctx, now)
	}
	if len(l.flights) > 0 && !l.confirmed() {
		return errUnconfirmed
	}
	l.rebuildUsage()
	clear(l.fullPipes)
	lostAfter := l.cfg.ZooKeeper.SessionTimeout + l.cfg.AckTimeout
	var held backlogUse // what still waits once this tick has sent what it could
	// Executions that want a client are sent oldest first, so that those that waited longest get the room
	// that frees up; the rest are looked at in any order (sorting every flight on every tick would cost
	// the loop dearly when tens of thousands wait for the store).
	var want, stale []*flight
	orphans := 0
	for _, f := range l.flights {
		switch f.phase {
		case phaseReporting:
			if now.Sub(f.resultAt) > resultGrace {
				l.recordResult(f)
			}
		case phaseOrphaned:
			orphans++
		case phaseRetrying:
			if !now.Before(f.retryAt) {
				want = append(want, f)
			}
		case phaseQueued:
			if !l.skipStaleQueued(f, now) {
				want = append(want, f)
			}
		case phaseRunning:
			l.checkRunning(f, now, lostAfter)
		case phaseWaiting:
			switch {
			case f.check:
				held.add(f)
			case l.stale(f, now):
				stale = append(stale, f)
			default:
				want = append(want, f)
			}
		case phaseDispatched:
			if l.checkDispatched(f, now) {
				held.add(f)
			}
		}
	}
	for _, f := range l.recording {
		held.add(f)
	}
	want = append(want, l.misfireStale(stale, now)...)
	slices.SortFunc(want, byFiring)
	for _, f := range want {
		if _, ok := l.flights[f.exec.ID]; !ok {
			continue // ended by an earlier one (replace)
		}
		switch f.phase {
		case phaseRetrying:
			l.startRetry(f, now)
		case phaseQueued:
			if !l.firstInQueue(f) {
				held.add(f)
				continue
			}
			l.to(f, phaseWaiting)
			f.readyAt = now
			if !l.dispatch(f, now) {
				held.add(f)
			}
		default:
			if !l.dispatch(f, now) {
				held.add(f)
			}
		}
	}
	l.backlog = held
	l.line.reset(want, now)
	l.metrics.inflight.Set(float64(len(l.flights)))
	l.metrics.orphaned.Set(float64(orphans))
	l.metrics.waiting.Set(float64(held.count))
	l.metrics.backlogBytes.Set(float64(held.bytes))
	l.reconcile(ctx, now)
	l.saveStats(ctx, now)
	l.sweepOpen(ctx, now)
	return nil
}

// checkDispatched watches a dispatch its client has not answered: it re-sends the frame, ends a stopped
// one once its client can no longer start it, and gives it back once its client left. It reports whether
// f now waits for the store.
func (l *leader) checkDispatched(f *flight, now time.Time) bool {
	switch {
	case f.stopping != "":
		// Stopped after it was sent, before any ack: it is not sent again; once its client can no longer
		// start it, it never ran.
		switch {
		case now.After(f.acceptBy.Add(l.cfg.AckTimeout)):
			l.finishLocally(f, job.StateFailed, "stopped before it ran: "+f.stopping, "", true)
		case now.Sub(f.stopSentAt) >= l.cfg.AckTimeout && l.live[f.client]:
			l.sendStop(f, now)
		}
	case f.check:
		return true
	case !l.live[f.client] || l.incarnation(f.client) != f.sentInc:
		// The client left, or restarted without memory of what it was sent.
		if now.After(f.acceptBy.Add(l.cfg.AckTimeout)) {
			// It can no longer start it. Whether it did before it went, the store tells if its ack was
			// recorded; if not, nobody can tell (see applyReconciled).
			l.logger.Debug("the client of an unanswered dispatch went away; checking the store", "execution", f.exec.ID, "client", f.client)
			l.release(f.client, f.exec.Width)
			f.departed = f.client
			f.mayHaveRun = true
			l.askStore(f, "departed")
			l.toWaiting(f)
			return true
		}
	case now.Sub(f.sentAt) >= f.resend:
		if err := l.send(f.client, f.frame); err == nil {
			f.sentAt = now
			f.resend = min(2*f.resend, maxResend)
			l.metrics.resends.Inc()
		}
	}
	return false
}

// checkRunning watches a running execution: its client's presence and lease, its stop, its timeout and
// its overdue alarm.
func (l *leader) checkRunning(f *flight, now time.Time, lostAfter time.Duration) {
	switch {
	case !l.live[f.client]:
		if f.lostAt.IsZero() {
			f.lostAt = now
		} else if now.Sub(f.lostAt) > lostAfter {
			l.loseChecked(f, "client "+f.client+" left the cluster while running it")
		}
		return
	case !f.leaseUntil.IsZero() && now.After(f.leaseUntil):
		l.loseChecked(f, fmt.Sprintf("client %s did not renew the run's lease for %s", f.client, l.cfg.LeaseTimeout))
		return
	}
	f.lossChecked = false
	f.lostAt = time.Time{}
	if f.stopping != "" && now.Sub(f.stopSentAt) >= l.cfg.AckTimeout {
		l.sendStop(f, now)
	}
	if t := time.Duration(f.exec.Timeout); t > 0 {
		over := now.Sub(f.ackedAt) - t
		switch {
		case over > 2*l.cfg.TimeoutGrace:
			l.metrics.timeouts.Inc()
			reason := fmt.Sprintf("timed out: no result from client %s %s after the %s timeout", f.client, over.Round(time.Second), t)
			// The client may be hung with the run still going: retry only a job that may run twice.
			l.finishLocally(f, job.StateFailed, reason, "", f.stopFinal || !l.rerunnable(f))
			return
		case over > l.cfg.TimeoutGrace && f.stopping == "":
			l.stop(f, fmt.Sprintf("timed out after %s", t), false)
		}
	}
	l.checkOverdue(f, now)
}

// loseChecked loses f once the store has been asked whether its run ended: the result may be recorded
// with the news of it lost, and a run that ended must not be rerun or orphaned.
func (l *leader) loseChecked(f *flight, reason string) {
	if !f.lossChecked {
		f.lossChecked = true
		l.askStore(f, "loss")
		return
	}
	if !f.check {
		l.lose(f, reason)
	}
}

// lose handles a running execution whose client is gone or whose lease lapsed: a rerunnable job runs
// again elsewhere (a new attempt of the same run); any other is orphaned, never rerun blindly.
func (l *leader) lose(f *flight, reason string) {
	l.metrics.leaseLapses.Inc()
	ev := job.Event{
		ID: job.EventID(f.exec.ID, job.EventLost, f.attempt), ExecID: f.exec.ID, Job: f.exec.Job, Kind: job.EventLost,
		Attempt: f.attempt, Run: f.run, Client: f.client, At: l.now().UTC(), Note: reason,
	}
	switch {
	case f.stopping != "":
		l.finishLocally(f, job.StateFailed, "stopped ("+f.stopping+"); then "+reason, "", f.stopFinal || !l.rerunnable(f))
		return
	case l.rerunnable(f):
		l.persist(ev)
		l.logger.Warn("running execution lost; running it again elsewhere (the job is rerunnable)", "execution", f.exec.ID, "reason", reason)
		l.release(f.client, f.exec.Width)
		l.toWaiting(f)
		// Make sure the last dispatch can no longer be started by anyone before the next.
		f.heldUntil = f.acceptBy.Add(l.cfg.AckTimeout)
	default:
		l.release(f.client, f.exec.Width)
		l.orphan(f, reason)
	}
}

// orphan marks f orphaned: it may be running on a client that vanished, and its job must not run twice.
func (l *leader) orphan(f *flight, reason string) {
	now := l.now()
	l.persist(job.Event{
		ID: job.SeqEventID(f.exec.ID, job.EventOrphaned, f.attempt, now), ExecID: f.exec.ID, Job: f.exec.Job, Kind: job.EventOrphaned,
		Attempt: f.attempt, Run: f.run, Client: f.client, At: now.UTC(), Note: reason,
	})
	l.logger.Error("execution orphaned: its client vanished and the job is not rerunnable; "+
		"it waits for the client to come back, or for `clover exec rerun` or `clover exec done`",
		"execution", f.exec.ID, "client", f.client, "reason", reason)
	l.to(f, phaseOrphaned)
}

// drainNotes applies the notes waiting now, without waiting for more.
func (l *leader) drainNotes(ctx context.Context) error {
	for range cap(l.notes) {
		select {
		case n := <-l.notes:
			if err := l.handle(ctx, n); err != nil {
				return err
			}
		default:
			return nil
		}
	}
	return nil
}
