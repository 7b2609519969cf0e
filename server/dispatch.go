package server

import (
	"slices"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/wire"
)

// maxResend caps the backoff between re-sends of an unanswered dispatch.
const maxResend = 30 * time.Second

// refuseBackoff is how long a client that refused an execution is not offered it again.
const refuseBackoff = time.Second

// dispatch sends f, as a new attempt, to a client chosen by its job's routing. It returns false when no
// client took it; the execution then waits and is tried again on every tick.
func (l *leader) dispatch(f *flight, now time.Time) bool {
	if f.phase != phaseWaiting || f.check || f.stopping != "" || now.Before(f.heldUntil) || !l.confirmed() {
		return false
	}
	if f.verify {
		// Inherited: an earlier term may have sent it and its client may have run it meanwhile, with the
		// news lost; the store tells before anyone else gets it.
		f.verify = false
		l.askStore(f, "verify")
		return false
	}
	now = l.now() // the caller's now may predate a slow store write: measure and set deadlines from the send
	spec := l.spec(f.exec)
	cands := slices.DeleteFunc(l.eligible(f.exec, spec), func(id string) bool {
		at, ok := f.refused[id]
		return id == f.exclude || l.fullPipes[id] || ok && now.Sub(at) < refuseBackoff
	})
	order := l.route(f.exec, spec, cands)
	if len(order) == 0 {
		f.client = ""
		return false
	}
	attempt := f.attempt + 1
	acceptBy := now.Add(l.cfg.AcceptWindow)
	d := &wire.Dispatch{
		Header:      wire.Header{From: l.cfg.ID, Epoch: l.epoch, SentAt: now},
		ExecID:      f.exec.ID,
		Job:         f.exec.Job,
		Handler:     f.exec.Handler,
		Params:      f.exec.Params,
		Timeout:     f.exec.Timeout,
		ScheduledAt: f.exec.ScheduledAt,
		Attempt:     attempt,
		Run:         max(f.run, 1),
		Trigger:     f.exec.Trigger,
		Width:       f.exec.Width,
		Shard:       f.exec.Shard,
		AcceptBy:    acceptBy,
	}
	// The frame names its client (its run token), so it is encoded for each one tried.
	encode := func(client string) ([]byte, error) {
		if l.runToken != nil {
			d.Token = l.runToken(d.ExecID, d.Run, client)
		}
		return wire.Encode(d)
	}
	if _, err := encode(order[0]); err != nil {
		// Only an oversized frame (huge params) gets here; it can never be sent, so end it as failed.
		l.logger.Error("cannot encode dispatch", "execution", f.exec.ID, "err", err)
		l.finishLocally(f, job.StateFailed, "dispatch could not be encoded: "+err.Error(), "", true)
		return false
	}
	for _, c := range order {
		frame, err := encode(c)
		if err != nil {
			continue
		}
		if err := l.send(c, frame); err != nil {
			// Its pipe is full (or gone): no more sends to it until the next tick or batch, rather than
			// encoding frames that cannot leave.
			l.fullPipes[c] = true
			continue
		}
		if !f.sentOnce {
			l.metrics.fireLateness.Observe(now.Sub(f.exec.ScheduledAt).Seconds())
			l.activity.dispatched(now, now.Sub(f.exec.ScheduledAt) > lateAfter)
			f.sentOnce = true
		} else {
			l.metrics.redispatches.Inc()
		}
		l.metrics.dispatches.Inc()
		l.logger.Debug("dispatched", "execution", f.exec.ID, "client", c, "attempt", attempt, "run", max(f.run, 1), "accept_by", acceptBy)
		f.attempt, f.client, f.frame, f.sentAt, f.acceptBy = attempt, c, frame, now, acceptBy
		l.to(f, phaseDispatched)
		f.sentInc = l.incarnation(c)
		f.resend = l.cfg.AckTimeout
		l.occupy(c, f.exec.Width)
		return true
	}
	f.client = ""
	return false
}

// startRetry dispatches the next run of an execution whose run failed.
func (l *leader) startRetry(f *flight, now time.Time) {
	switch {
	case f.check:
		return // the store is being read
	case f.verify:
		// An earlier term may have started this run already: ask the store before starting it.
		f.verify = false
		l.askStore(f, "verify")
		return
	}
	f.retryAt = time.Time{}
	f.run++
	f.check, f.stopping, f.refused = false, "", nil
	l.toWaiting(f)
	l.metrics.retries.Inc()
	l.logger.Info("retrying execution", "execution", f.exec.ID, "run", f.run)
	l.dispatch(f, now)
}
