package server

import (
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/wire"
)

// resultGrace is how long the leader waits for a reported result to be recorded before it records it.
const resultGrace = time.Minute

// finishLocally records the end of the current run of an execution that no client will report. Unless
// final, the retry policy applies (callers pass final when the run may still be going somewhere and the
// job may not run twice, or when someone ended the execution). note says who decided, if not the leader.
func (l *leader) finishLocally(f *flight, status job.State, reason, note string, final bool) {
	final = final || status != job.StateFailed
	run := max(f.run, 1)
	ev := job.Event{
		ID: job.EventID(f.exec.ID, job.EventFinished, run), ExecID: f.exec.ID, Job: f.exec.Job,
		Kind: job.EventFinished, Attempt: f.attempt, Run: run, Client: f.client, At: l.now().UTC(), Note: note,
		Result: &job.Result{Status: status, ExitCode: -1, Error: reason, Final: final},
	}
	l.persist(ev)
	if status == job.StateFailed {
		l.logger.Warn("execution run failed by the leader", "execution", f.exec.ID, "run", run, "reason", reason)
	}
	l.metrics.finished.WithLabelValues(string(status)).Inc()
	if !final && run < f.exec.RunLimit() {
		l.release(f.client, f.exec.Width)
		l.toWaiting(f)
		f.stopping = ""
		f.retryAt = l.now().Add(l.retryDelay(f.exec.Job, run+1))
		l.to(f, phaseRetrying)
		return
	}
	l.forget(f.exec.ID, status)
}

func (l *leader) onAck(a *wire.Ack) {
	f, ok := l.flights[a.ExecID]
	if !ok || max(a.Run, 1) < f.run {
		return
	}
	if run := max(a.Run, 1); a.Accepted && run > f.run {
		// A later run than the loop knows of runs there (an earlier term started a retry): adopt it.
		l.adoptRun(f, run, a.From)
		return
	}
	if a.Accepted {
		// Whatever attempt it answers, the execution runs there (an earlier term may have released it
		// from a queue, or sent it before this term held it).
		switch f.phase {
		case phaseWaiting, phaseQueued, phaseDispatched, phaseRunning:
			f.attempt = max(f.attempt, a.Attempt)
			l.toRunning(f, a.From, l.now())
		}
		// Orphaned: a heartbeat that lists it resumes it. Reporting or retrying: the ack is older than
		// the result.
		return
	}
	if f.phase != phaseDispatched || a.Attempt != f.attempt || a.From != f.client {
		return // a stale refusal
	}
	if f.stopping != "" {
		l.finishLocally(f, job.StateFailed, "stopped before it ran: "+f.stopping, "", true)
		return
	}
	if a.Code == wire.RefuseLate {
		l.askStore(f, "late") // it may have run it before; the store tells
	}
	l.logger.Debug("client refused execution", "execution", a.ExecID, "client", a.From, "reason", a.Reason)
	if f.refused == nil {
		f.refused = map[string]time.Time{}
	}
	f.refused[a.From] = l.now()
	l.release(f.client, f.exec.Width)
	if a.Code == wire.RefuseBusy {
		// It holds more than the leader counts (a local run, a heartbeat not yet seen): nothing more
		// goes to it until the next count, rather than one refusal after another (see room.go).
		l.fullPipes[a.From] = true
	}
	l.toWaiting(f) // the next tick offers it to another client, or to this one after refuseBackoff
}

// onResult notes that a run ended. The execution is forgotten once a server has recorded the result,
// unless a retry follows.
func (l *leader) onResult(r *wire.Result) {
	f, ok := l.flights[r.ExecID]
	switch {
	case !ok || f.phase == phaseReporting || max(r.Run, 1) < f.run:
		return
	case f.phase == phaseRetrying && max(r.Run, 1) == f.run:
		return // the failed run's result, sent again: its retry is under way
	}
	now := l.now()
	if f.holds(now) {
		l.release(f.client, f.exec.Width) // room for the next one now, not at the next count
		l.line.roomFreed = true
	}
	if f.phase == phaseRunning && r.Result.Status == job.StateSucceeded {
		l.observeRuntime(f.exec.Job, time.Duration(r.Result.Duration))
	}
	f.result, f.resultAt, f.client = r, now, r.From
	l.to(f, phaseReporting)
	if r.Result.Status == job.StateFailed && !r.Result.Final && !f.stopFinal && f.run < f.exec.RunLimit() {
		f.retryAt = now.Add(l.retryDelay(f.exec.Job, f.run+1))
	} else {
		l.wake(f.exec.Job) // it no longer holds the job's queue
	}
}

// recorded notes that a server recorded the result of run of execution id (run 0: unknown, the run under
// way). A result the loop never heard of may be a failed run due for a retry: the store tells.
func (l *leader) recorded(id string, run int) {
	f, ok := l.flights[id]
	if !ok {
		return
	}
	if run == 0 {
		run = f.run
		if f.result != nil {
			run = max(f.result.Run, 1)
		}
	}
	switch {
	case f.phase == phaseReporting && max(f.result.Run, 1) == run:
		status := f.result.Result.Status
		if f.retryAt.IsZero() {
			l.forget(id, status) // it reads f.result (a batch partition's output)
			f.result = nil
		} else {
			f.result = nil
			l.to(f, phaseRetrying)
		}
	case run < f.run || f.phase == phaseReporting:
		// An earlier run's: nothing left to do for it.
	case f.exec.RunLimit() > 1 && !f.stopFinal:
		l.askStore(f, "recorded")
	default:
		l.forget(id, "") // a result this term never heard of: the store has it
	}
}

// adoptRun makes f follow run, which runs on client though the loop did not start it.
func (l *leader) adoptRun(f *flight, run int, client string) {
	if f.result != nil {
		// The earlier run's result waits to be recorded; record it now rather than lose it.
		l.recordResultEvent(f.result)
		f.result = nil
	}
	now := l.now()
	l.toRunning(f, client, now)
	f.run, f.ackedAt, f.leaseUntil = run, now, now.Add(l.cfg.LeaseTimeout)
	f.retryAt, f.verify, f.check, f.heldUntil, f.overdue = time.Time{}, false, false, time.Time{}, false
	l.logger.Info("adopted a run an earlier term started", "execution", f.exec.ID, "run", run, "client", client)
}

// recordResult records a result no server reported recorded (their write failed, or the news was lost):
// the event's id makes it a no-op if it was recorded after all.
func (l *leader) recordResult(f *flight) {
	r := f.result
	l.recordResultEvent(r)
	l.recorded(f.exec.ID, max(r.Run, 1))
}

func (l *leader) recordResultEvent(r *wire.Result) {
	res := r.Result
	run := max(r.Run, 1)
	l.persist(job.Event{
		ID: job.EventID(r.ExecID, job.EventFinished, run), ExecID: r.ExecID, Job: r.Job, Kind: job.EventFinished,
		Attempt: r.Attempt, Run: run, Client: r.From, At: r.FinishedAt.UTC(), Result: &res,
	})
}

// onHeartbeat renews the leases of the runs a client lists. A run listed by the client it was sent to is
// running there even if its ack has not arrived; an orphaned run listed by its client is running again; a
// run an earlier term sent there (the flight waits for a client, or for a retry) is adopted.
func (l *leader) onHeartbeat(h *wire.Heartbeat) {
	now := l.now()
	l.heard[h.From] = now
	for i, id := range h.Running {
		run := h.RunOf(i)
		f, ok := l.flights[id]
		if !ok {
			continue
		}
		switch {
		case f.client == h.From && run == f.run && (f.phase == phaseDispatched || f.phase == phaseRunning || f.phase == phaseOrphaned):
			f.leaseUntil, f.lossChecked, f.listedAt = now.Add(l.cfg.LeaseTimeout), false, now
			for _, p := range h.Progress {
				if p.ExecID == id && max(p.Run, 1) == run {
					f.progress = &p
				}
			}
			switch f.phase {
			case phaseOrphaned:
				f.ackedAt = now
				l.toRunning(f, h.From, now)
				l.persist(job.Event{
					ID: job.SeqEventID(id, job.EventResumed, f.attempt, now), ExecID: id, Job: f.exec.Job, Kind: job.EventResumed,
					Attempt: f.attempt, Run: f.run, Client: h.From, At: now.UTC(), Note: "its client lists it as running",
				})
				l.logger.Info("orphaned execution is running again on its client", "execution", id, "client", h.From)
			case phaseDispatched:
				l.toRunning(f, h.From, now)
			}
		case f.client == "" && f.stopping == "" &&
			((f.phase == phaseWaiting || f.phase == phaseQueued) && run == f.run || f.phase == phaseRetrying && run == f.run+1):
			// Only a run an earlier term sent there: its token shows it (an admitted client cannot take
			// over another's run by listing it).
			if l.checkRunToken != nil && !l.checkRunToken(id, run, h.From, h.TokenOf(i)) {
				l.metrics.framesDropped.WithLabelValues("bad_run_token").Inc()
				continue
			}
			l.adoptRun(f, run, h.From)
		}
	}
	// Runs that ended there, whose result is on its way: the lease holds (no loss, no orphan), the slot
	// does not.
	for i, id := range h.Ended {
		if f, ok := l.flights[id]; ok && f.client == h.From && h.EndedRunOf(i) == f.run &&
			(f.phase == phaseDispatched || f.phase == phaseRunning || f.phase == phaseOrphaned) {
			f.leaseUntil, f.lossChecked = now.Add(l.cfg.LeaseTimeout), false
			f.listedAt = time.Time{}
			if f.phase == phaseDispatched {
				l.toRunning(f, h.From, now.Add(-holdFor)) // it ran there; it holds no slot
				f.leaseUntil = now.Add(l.cfg.LeaseTimeout)
			}
		}
	}
}
