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
}

// refuseBackoff is how long a client that refused an execution is not offered it again.
const refuseBackoff = time.Second

// dispatch sends f, as a new attempt, to a client that serves its job, in round-robin order. It returns
// false when no client took it; the execution then waits and is tried again on every tick.
func (l *leader) dispatch(f *flight, now time.Time) bool {
	if now.Before(f.heldUntil) || !l.confirmed() {
		return false
	}
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
		case f.acked:
			if l.live[f.client] {
				f.lostAt = time.Time{}
			} else if f.lostAt.IsZero() {
				f.lostAt = now
			} else if now.Sub(f.lostAt) > lostAfter {
				l.endLocally(f, job.EventLost, "client "+f.client+" left the cluster while running it")
			}
		case f.client == "":
			if !l.dispatch(f, now) {
				waiting++
			}
		case !l.live[f.client]:
			if now.After(f.acceptBy.Add(l.cfg.AckTimeout)) && !l.dispatch(f, now) {
				waiting++
			}
		case now.Sub(f.sentAt) >= l.cfg.AckTimeout:
			if err := l.send(f.client, f.frame); err == nil {
				f.sentAt = now
				l.metrics.redispatches.Inc()
			}
		}
	}
	l.metrics.inflight.Set(float64(len(l.flights)))
	l.metrics.waiting.Set(float64(waiting))
	l.reconcile(ctx, now)
	return nil
}

// reconcile checks, now and then and off the loop, whether executions the loop believes running have in
// fact finished: a result note can be lost (a relay to a server that just stopped leading, a full queue),
// and the client stops re-sending once any server has recorded the result.
func (l *leader) reconcile(ctx context.Context, now time.Time) {
	if l.reconciling || now.Sub(l.lastReconcile) < reconcileEvery {
		return
	}
	l.lastReconcile = now
	var ids []string
	for id, f := range l.flights {
		if f.acked && now.Sub(f.ackedAt) > reconcileEvery {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return
	}
	l.reconciling = true
	go func() {
		sctx, cancel := context.WithTimeout(ctx, 4*storeTimeout)
		defer cancel()
		execs, err := l.store.ExecutionsByID(sctx, ids)
		var finished []string
		if err == nil {
			for _, e := range execs {
				if e.State.Terminal() {
					finished = append(finished, e.ID)
				}
			}
		}
		l.notify(reconciledNote{finished: finished})
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
	l.logger.Debug("client refused execution", "execution", a.ExecID, "client", a.From, "reason", a.Reason)
	if f.refused == nil {
		f.refused = map[string]time.Time{}
	}
	f.refused[a.From] = l.now()
	f.client = "" // the next tick offers it to another client, or to this one after refuseBackoff
}

func (l *leader) forget(id string) {
	delete(l.flights, id)
}
