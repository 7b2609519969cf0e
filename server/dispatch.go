package server

import (
	"context"
	"slices"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/wire"
)

// flight is an execution the leader has fired (or inherited) and not yet seen finish.
//
// The rules that keep an execution from running on two clients:
//   - a dispatch carries an accept-by instant; a client never starts it after that instant, and answers a
//     re-sent dispatch with its first answer (it runs an execution id at most once);
//   - while the client it was sent to is registered, the leader only ever sends it the same frame again
//     (every AckTimeout) until the client acknowledges or refuses it: silence is not a refusal, a late ack
//     is still an ack;
//   - it goes to another client only after an explicit refusal, or when the client has left the registry
//     and accept-by plus AckTimeout has passed, so that it can no longer start it;
//   - an execution inherited from an earlier term waits (heldUntil) until any dispatch of that term is past
//     its accept-by, since we cannot know to whom it was sent.
//
// Each new dispatch (to a client, after a refusal or a departure) is a new attempt.
type flight struct {
	exec      job.Execution
	attempt   int    // the attempt last dispatched
	client    string // the client it was last sent to (or that acked it); "" while it waits for one
	frame     []byte
	sentAt    time.Time
	acceptBy  time.Time
	acked     bool
	ackedAt   time.Time
	heldUntil time.Time
	lostAt    time.Time            // when its running client was first seen gone
	refused   map[string]time.Time // client -> when it refused
	sentOnce  bool
	resend    time.Duration // wait before the next re-send of the same frame; doubles up to maxResend
	// check: before it goes to another client, the store must say it has not finished. Set when the client
	// it was sent to refused it as late or left: that client may have run it and forgotten since.
	check bool
	// result is the outcome a client reported, kept until a server says it is recorded (recordedNote):
	// until then the execution is neither re-sent nor given up, and if no server records it within
	// resultGrace the leader records it itself.
	result   *wire.Result
	resultAt time.Time
}

// resultGrace is how long the leader waits for a reported result to be recorded before it records it.
const resultGrace = time.Minute

// maxResend caps the backoff between re-sends of an unanswered dispatch.
const maxResend = 30 * time.Second

// refuseBackoff is how long a client that refused an execution is not offered it again.
const refuseBackoff = time.Second

// dispatch sends f, as a new attempt, to a client that serves its job, in round-robin order. It returns
// false when no client took it; the execution then waits and is tried again on every tick.
func (l *leader) dispatch(f *flight, now time.Time) bool {
	if f.check || now.Before(f.heldUntil) || !l.confirmed() {
		return false
	}
	now = l.now() // the caller's now may predate a slow store write: measure and set deadlines from the send
	cands := slices.DeleteFunc(slices.Clone(l.candidates(f.exec)), func(id string) bool {
		at, ok := f.refused[id]
		return ok && now.Sub(at) < refuseBackoff
	})
	if len(cands) == 0 {
		f.client = ""
		return false
	}
	attempt := f.attempt + 1
	acceptBy := now.Add(l.cfg.AcceptWindow)
	frame, err := wire.Encode(&wire.Dispatch{
		Header:      wire.Header{From: l.cfg.ID, Epoch: l.epoch, SentAt: now},
		ExecID:      f.exec.ID,
		Job:         f.exec.Job,
		Handler:     f.exec.Handler,
		Params:      f.exec.Params,
		Timeout:     f.exec.Timeout,
		ScheduledAt: f.exec.ScheduledAt,
		Attempt:     attempt,
		Trigger:     f.exec.Trigger,
		AcceptBy:    acceptBy,
	})
	if err != nil {
		// Only an oversized frame (huge params) gets here; it can never be sent, so end it as failed.
		l.logger.Error("cannot encode dispatch", "execution", f.exec.ID, "err", err)
		l.endLocally(f, job.EventFinished, "dispatch could not be encoded: "+err.Error())
		return false
	}
	start := l.rr[f.exec.Job]
	l.rr[f.exec.Job] = start + 1
	for i := range cands {
		c := cands[(start+i)%len(cands)]
		if err := l.send(c, frame); err != nil {
			continue
		}
		if !f.sentOnce {
			l.metrics.fireLateness.Observe(now.Sub(f.exec.ScheduledAt).Seconds())
			f.sentOnce = true
		} else {
			l.metrics.redispatches.Inc()
		}
		l.metrics.dispatches.Inc()
		f.attempt, f.client, f.frame, f.sentAt, f.acceptBy = attempt, c, frame, now, acceptBy
		f.resend = l.cfg.AckTimeout
		return true
	}
	f.client = ""
	return false
}

// candidates are the live clients that serve the execution's job by name or its handler, sorted.
func (l *leader) candidates(e job.Execution) []string {
	a, b := l.byJob[e.Job], l.byHandle[e.Handler]
	if len(b) == 0 {
		return a
	}
	if len(a) == 0 {
		return b
	}
	out := append(slices.Clone(a), b...)
	slices.Sort(out)
	return slices.Compact(out)
}

func (l *leader) rebuildEligibility() {
	l.byJob, l.byHandle, l.live = map[string][]string{}, map[string][]string{}, map[string]bool{}
	for _, m := range l.members() { // sorted by id
		l.live[m.ID] = true
		for _, j := range m.Jobs {
			l.byJob[j] = append(l.byJob[j], m.ID)
		}
		for _, h := range m.Handlers {
			l.byHandle[h] = append(l.byHandle[h], m.ID)
		}
	}
	for name := range l.rr {
		if _, ok := l.jobs[name]; !ok {
			delete(l.rr, name)
		}
	}
}

// checkFlights runs on every tick: it retries firings the store refused, sends what waits for a client,
// re-sends what was not acknowledged, hands on what a departed client can no longer start, and gives up
// on running executions whose client left for good.
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
	if len(l.flights) > 0 && !l.confirmed() {
		return errUnconfirmed
	}
	lostAfter := l.cfg.ZooKeeper.SessionTimeout + l.cfg.AckTimeout
	waiting := 0
	for _, f := range l.flights {
		switch {
		case f.result != nil:
			if now.Sub(f.resultAt) > resultGrace {
				l.recordResult(f)
			}
		case f.acked:
			if l.live[f.client] {
				f.lostAt = time.Time{}
			} else if f.lostAt.IsZero() {
				f.lostAt = now
			} else if now.Sub(f.lostAt) > lostAfter {
				l.endLocally(f, job.EventLost, "client "+f.client+" left the cluster while running it")
			}
		case f.check:
			waiting++
		case f.client == "":
			if !l.dispatch(f, now) {
				waiting++
			}
		case !l.live[f.client]:
			if now.After(f.acceptBy.Add(l.cfg.AckTimeout)) {
				// It can no longer start it; whether it ran it, the store tells.
				f.client, f.check = "", true
				waiting++
			}
		case now.Sub(f.sentAt) >= f.resend:
			if err := l.send(f.client, f.frame); err == nil {
				f.sentAt = now
				f.resend = min(2*f.resend, maxResend)
				l.metrics.resends.Inc()
			}
		}
	}
	l.metrics.inflight.Set(float64(len(l.flights)))
	l.metrics.waiting.Set(float64(waiting))
	l.reconcile(ctx, now)
	return nil
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

// reconcile asks the store, off the loop, about executions the loop is unsure of: those waiting for a
// check (see flight.check), at once, and now and then those in flight for a long time, since a result
// note can be lost (a relay to a server that just stopped leading, a full queue) and a client stops
// re-sending once any server has recorded its result.
func (l *leader) reconcile(ctx context.Context, now time.Time) {
	if l.reconciling {
		return
	}
	periodic := now.Sub(l.lastReconcile) >= reconcileEvery
	var ids, checked []string
	for id, f := range l.flights {
		switch {
		case f.check:
			ids, checked = append(ids, id), append(checked, id)
		case periodic && ((f.acked && now.Sub(f.ackedAt) > reconcileEvery) || (!f.acked && f.sentOnce && now.Sub(f.sentAt) > reconcileEvery)):
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
	go func() {
		sctx, cancel := context.WithTimeout(ctx, 4*storeTimeout)
		defer cancel()
		note := reconciledNote{checked: checked, running: map[string]string{}}
		execs, err := l.store.ExecutionsByID(sctx, ids)
		if err != nil {
			note.checked = nil // unsure still: check again on a later tick
		}
		for _, e := range execs {
			switch {
			case e.State.Terminal():
				note.finished = append(note.finished, e.ID)
			case e.State == job.StateRunning:
				note.running[e.ID] = e.Client // a recorded ack the loop never heard of
			}
		}
		l.tell(ctx, note)
	}()
}

// endLocally records the end of an execution that no client will report, and forgets it. kind is
// EventLost when the client may yet report (its report then wins), EventFinished when nothing ever will.
func (l *leader) endLocally(f *flight, kind job.EventKind, reason string) {
	ev := job.Event{
		ID: job.EventID(f.exec.ID, kind, f.attempt), ExecID: f.exec.ID, Job: f.exec.Job,
		Kind: kind, Attempt: f.attempt, Client: f.client, At: l.now().UTC(),
		Result: &job.Result{Status: job.StateFailed, ExitCode: -1, Error: reason},
	}
	l.persist(ev)
	l.logger.Warn("execution failed by the leader", "execution", f.exec.ID, "reason", reason)
	status := string(job.StateFailed)
	if kind == job.EventLost {
		status = "lost"
	}
	l.metrics.finished.WithLabelValues(status).Inc()
	delete(l.flights, f.exec.ID)
}

func (l *leader) onAck(a *wire.Ack) {
	f, ok := l.flights[a.ExecID]
	if !ok {
		return
	}
	if a.Accepted {
		// Whatever attempt it answers, the execution runs there.
		if !f.acked {
			f.acked, f.ackedAt = true, l.now()
		}
		f.client, f.lostAt = a.From, time.Time{}
		return
	}
	if f.acked || a.Attempt != f.attempt || a.From != f.client {
		return // a stale refusal
	}
	if a.Code == wire.RefuseLate {
		f.check = true // it may have run it before; the store tells
	}
	l.logger.Debug("client refused execution", "execution", a.ExecID, "client", a.From, "reason", a.Reason)
	if f.refused == nil {
		f.refused = map[string]time.Time{}
	}
	f.refused[a.From] = l.now()
	f.client = "" // the next tick offers it to another client, or to this one after refuseBackoff
}

// onResult notes that the execution ended. It is forgotten once a server has recorded the result.
func (l *leader) onResult(r *wire.Result) {
	if f, ok := l.flights[r.ExecID]; ok && f.result == nil {
		f.result, f.resultAt, f.client = r, l.now(), r.From
	}
}

// recordResult records a result no server reported recorded (their write failed, or the news was lost):
// the event's id makes it a no-op if it was recorded after all.
func (l *leader) recordResult(f *flight) {
	r := f.result
	res := r.Result
	l.persist(job.Event{
		ID: job.EventID(r.ExecID, job.EventFinished, r.Attempt), ExecID: r.ExecID, Job: r.Job, Kind: job.EventFinished,
		Attempt: r.Attempt, Client: r.From, At: r.FinishedAt.UTC(), Result: &res,
	})
	l.forget(f.exec.ID)
}

func (l *leader) forget(id string) {
	delete(l.flights, id)
}
