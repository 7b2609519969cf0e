package server

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/wire"
)

// flight is an execution the leader has fired (or inherited) and not yet seen end.
//
// The rules that keep an execution from running on two clients:
//   - a dispatch carries an accept-by instant; a client never starts it after that instant, and answers a
//     re-sent dispatch with its first answer (it runs an execution id at most once per run);
//   - while the client it was sent to is registered, the leader only ever sends it the same frame again
//     (every AckTimeout) until the client acknowledges or refuses it: silence is not a refusal, a late ack
//     is still an ack;
//   - it goes to another client only after an explicit refusal, or when the client has left the registry
//     and accept-by plus AckTimeout has passed, so that it can no longer start it;
//   - an execution inherited from an earlier term waits (heldUntil) until any dispatch of that term is past
//     its accept-by, since we cannot know to whom it was sent;
//   - a running execution whose client is gone (or stopped renewing its lease) runs again elsewhere only
//     if its job is rerunnable; otherwise it is orphaned and waits for its client or an operator.
//
// Each new dispatch (to a client, after a refusal or a departure, for a retry) is a new attempt; each
// retry after a failed run is a new run.
type flight struct {
	exec      job.Execution
	progress  *wire.Progress // the run's last progress, from its client's heartbeat
	attempt   int            // the attempt last dispatched
	run       int            // the run under way, 1 first
	client    string         // the client it was last sent to (or that acked it); "" while it waits for one
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

	queued      bool      // waits for the job's earlier executions to end (overlap queue, or catch-up under forbid)
	catchUp     bool      // made by a catch-up firing, or inherited pending under forbid (see plan)
	retryAt     time.Time // a run failed: the next run is due then
	leaseUntil  time.Time // a running execution not listed in a heartbeat by then is lost
	orphaned    bool      // its client vanished mid-run and the job is not rerunnable: waits for a decision
	stopping    string    // why a stop was asked; "" if none
	stopFinal   bool      // the stop ends the execution (an operator's, a replace); a timeout's may be retried
	stopSentAt  time.Time
	verify      bool      // inherited retry: before the next run starts, the store must say none started
	exclude     string    // a client this execution must not go to again (an operator reran it elsewhere)
	sentInc     time.Time // the incarnation (registration time) of the client it was sent to
	departed    string    // the client it was sent to went away unanswered; the store check decides
	lossChecked bool      // its run looks lost, and the store was asked whether it ended
	listedAt    time.Time // when a heartbeat of its client last listed it
	overdue     bool      // the overdue alarm was raised for this run
}

// resultGrace is how long the leader waits for a reported result to be recorded before it records it.
const resultGrace = time.Minute

// maxResend caps the backoff between re-sends of an unanswered dispatch.
const maxResend = 30 * time.Second

// refuseBackoff is how long a client that refused an execution is not offered it again.
const refuseBackoff = time.Second

// track starts following f; forget stops. They keep the per-job index of open executions that the
// overlap policies read.
func (l *leader) track(f *flight) {
	l.flights[f.exec.ID] = f
	byJob := l.openByJob[f.exec.Job]
	if byJob == nil {
		byJob = map[string]*flight{}
		l.openByJob[f.exec.Job] = byJob
	}
	byJob[f.exec.ID] = f
	if f.orphaned {
		l.metrics.orphaned.Inc()
	}
}

func (l *leader) forget(id string) {
	f, ok := l.flights[id]
	if !ok {
		return
	}
	if f.orphaned {
		l.metrics.orphaned.Dec()
	}
	delete(l.flights, id)
	l.ended(f.exec)
	if byJob := l.openByJob[f.exec.Job]; byJob != nil {
		delete(byJob, id)
		if len(byJob) == 0 {
			delete(l.openByJob, f.exec.Job)
		} else {
			l.wake(f.exec.Job)
		}
	}
}

// wake notes that an execution of the job ended (or its run did): the next queued one may go now,
// rather than at the next tick (releaseWoken). A job catching up after a takeover gap runs its owed
// times one after another, and each tick waited for would make it later.
func (l *leader) wake(jobName string) {
	if l.woken == nil {
		l.woken = map[string]bool{}
	}
	l.woken[jobName] = true
}

// releaseWoken dispatches the queued executions that are first in their job's queue now.
func (l *leader) releaseWoken() {
	if len(l.woken) == 0 {
		return
	}
	now := l.now()
	for name := range l.woken {
		var queued []*flight
		for _, f := range l.openByJob[name] {
			if f.queued {
				queued = append(queued, f)
			}
		}
		slices.SortFunc(queued, byFiring)
		for _, f := range queued {
			if !l.firstInQueue(f) {
				break
			}
			f.queued = false
			l.dispatch(f, now) // if no client takes it now, the tick offers it again
		}
	}
	clear(l.woken)
}

// byFiring orders flights by when they were fired, then by id.
func byFiring(a, b *flight) int {
	if c := a.exec.FiredAt.Compare(b.exec.FiredAt); c != 0 {
		return c
	}
	return compareStrings(a.exec.ID, b.exec.ID)
}

// spec returns the definition of e's job, or one made from the execution if the job is gone.
func (l *leader) spec(e job.Execution) *job.Spec {
	if en, ok := l.jobs[e.Job]; ok {
		return &en.spec
	}
	return &job.Spec{Name: e.Job, Handler: e.Handler, Rerunnable: e.Rerunnable}
}

// dispatch sends f, as a new attempt, to a client chosen by its job's routing. It returns false when no
// client took it; the execution then waits and is tried again on every tick.
func (l *leader) dispatch(f *flight, now time.Time) bool {
	if f.check || f.queued || f.orphaned || f.stopping != "" || now.Before(f.heldUntil) || !l.confirmed() {
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
	frame, err := wire.Encode(&wire.Dispatch{
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
	})
	if err != nil {
		// Only an oversized frame (huge params) gets here; it can never be sent, so end it as failed.
		l.logger.Error("cannot encode dispatch", "execution", f.exec.ID, "err", err)
		l.finishLocally(f, job.StateFailed, "dispatch could not be encoded: "+err.Error(), "", true)
		return false
	}
	for _, c := range order {
		if err := l.send(c, frame); err != nil {
			// Its pipe is full (or gone): no more sends to it until the next tick or batch, rather than
			// encoding frames that cannot leave.
			l.fullPipes[c] = true
			continue
		}
		if !f.sentOnce {
			l.metrics.fireLateness.Observe(now.Sub(f.exec.ScheduledAt).Seconds())
			f.sentOnce = true
		} else {
			l.metrics.redispatches.Inc()
		}
		l.metrics.dispatches.Inc()
		l.logger.Debug("dispatched", "execution", f.exec.ID, "client", c, "attempt", attempt, "run", max(f.run, 1), "accept_by", acceptBy)
		f.attempt, f.client, f.frame, f.sentAt, f.acceptBy = attempt, c, frame, now, acceptBy
		f.sentInc = l.incarnation(c)
		f.resend = l.cfg.AckTimeout
		l.occupy(c, f.exec.Width)
		return true
	}
	f.client = ""
	return false
}

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
	if len(l.flights) > 0 && !l.confirmed() {
		return errUnconfirmed
	}
	l.rebuildUsage()
	clear(l.fullPipes)
	lostAfter := l.cfg.ZooKeeper.SessionTimeout + l.cfg.AckTimeout
	waiting := 0
	// Executions that want a client are sent oldest first, so that those that waited longest get the room
	// that frees up; the rest are looked at in any order (sorting every flight on every tick would cost
	// the loop dearly when tens of thousands wait for the store).
	var want []*flight
	for _, f := range l.flights {
		switch {
		case f.result != nil:
			if now.Sub(f.resultAt) > resultGrace {
				l.recordResult(f)
			}
		case f.orphaned:
		case !f.retryAt.IsZero():
			if !now.Before(f.retryAt) {
				want = append(want, f)
			}
		case f.queued:
			if !l.skipStaleQueued(f, now) {
				want = append(want, f)
			}
		case f.acked:
			l.checkRunning(f, now, lostAfter)
		case f.stopping != "":
			// Stopped after it was sent, before any ack: it is not sent again; once its client can no
			// longer start it, it never ran.
			switch {
			case now.After(f.acceptBy.Add(l.cfg.AckTimeout)):
				l.finishLocally(f, job.StateFailed, "stopped before it ran: "+f.stopping, "", true)
			case now.Sub(f.stopSentAt) >= l.cfg.AckTimeout && l.live[f.client]:
				l.sendStop(f, now)
			}
		case f.check:
			waiting++
		case f.client == "":
			want = append(want, f)
		case !l.live[f.client] || l.incarnation(f.client) != f.sentInc:
			// The client left, or restarted without memory of what it was sent.
			if now.After(f.acceptBy.Add(l.cfg.AckTimeout)) {
				// It can no longer start it. Whether it did before it went, the store tells if its ack
				// was recorded; if not, nobody can tell (see applyReconciled).
				l.logger.Debug("the client of an unanswered dispatch went away; checking the store", "execution", f.exec.ID, "client", f.client)
				l.release(f.client, f.exec.Width)
				f.departed = f.client
				l.askStore(f, "departed")
				f.client = ""
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
	slices.SortFunc(want, byFiring)
	for _, f := range want {
		if _, ok := l.flights[f.exec.ID]; !ok {
			continue // ended by an earlier one (replace)
		}
		switch {
		case !f.retryAt.IsZero():
			l.startRetry(f, now)
		case f.queued:
			if !l.firstInQueue(f) {
				waiting++
				continue
			}
			f.queued = false
			if !l.dispatch(f, now) {
				waiting++
			}
		default:
			if !l.dispatch(f, now) {
				waiting++
			}
		}
	}
	l.metrics.inflight.Set(float64(len(l.flights)))
	l.metrics.waiting.Set(float64(waiting))
	l.reconcile(ctx, now)
	l.saveStats(ctx, now)
	l.sweepOpen(ctx, now)
	return nil
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
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
		f.acked, f.client, f.lostAt, f.leaseUntil, f.overdue = false, "", time.Time{}, time.Time{}, false
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
	f.orphaned = true
	l.metrics.orphaned.Inc()
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
	f.acked, f.client, f.check, f.overdue, f.stopping, f.refused = false, "", false, false, "", nil
	l.metrics.retries.Inc()
	l.logger.Info("retrying execution", "execution", f.exec.ID, "run", f.run)
	l.dispatch(f, now)
}

// skipStaleQueued skips an execution waiting in its job's queue under forbid (it caught up, or came due
// while the job caught up) that should no longer wait, and reports whether it did:
//   - an earlier execution of the job is orphaned (see errOrphanAhead);
//   - its time fell past the misfire threshold, so that a job slower than its schedule cannot build an
//     endless queue: the misfire policy decides (skip: skipped; fire-once: skipped once a later firing of
//     the job is recorded, which stands for it; fire-all: it waits on, the queue being bounded by
//     maxQueued).
//
// An execution an earlier term made may have been sent before: it is skipped only once the store says it
// was not (verify), and one this term sent never is.
func (l *leader) skipStaleQueued(f *flight, now time.Time) bool {
	spec := l.spec(f.exec)
	if f.sentOnce || f.acked || spec.Overlap != "" && spec.Overlap != job.OverlapForbid {
		return false
	}
	orphanAhead := l.hasOrphan(f.exec.Job)
	if !orphanAhead && !f.exec.ScheduledAt.Before(now.Add(-l.cfg.MisfireThreshold)) {
		return false
	}
	if f.exec.Epoch != l.epoch || f.attempt > 0 {
		// An earlier term's: it may have been sent and run. Once no dispatch of that term can be started
		// any more, the store tells whether it was (a recorded ack makes it running, see applyReconciled).
		switch {
		case now.Before(f.heldUntil) || f.check:
			return false
		case f.verify:
			f.verify = false
			l.askStore(f, "verify")
			return false
		}
	}
	if orphanAhead {
		return l.skipQueued(f, errOrphanAhead)
	}
	policy := spec.Misfire.Policy
	switch {
	case policy == job.MisfireFireAll:
		return false
	case policy == job.MisfireSkip:
	default: // fire-once
		if l.lastFired[f.exec.Job].After(f.exec.ScheduledAt) {
			return l.skipQueued(f, "misfire: waited behind an earlier run past the misfire threshold; a later firing stands for it (fire-once)")
		}
		return false
	}
	return l.skipQueued(f, "misfire: waited behind an earlier run past the misfire threshold (policy skip)")
}

// skipQueued records that a queued execution never runs, and stops following it.
func (l *leader) skipQueued(f *flight, reason string) bool {
	if skipLabel(reason) == "misfire" {
		l.metrics.misfires.WithLabelValues("queued").Inc()
	}
	l.metrics.skipped.WithLabelValues(skipLabel(reason)).Inc()
	l.persist(job.Event{
		ID: job.EventID(f.exec.ID, job.EventFinished, 1), ExecID: f.exec.ID, Job: f.exec.Job, Kind: job.EventFinished, Run: 1,
		At: l.now().UTC(), Result: &job.Result{Status: job.StateSkipped, ExitCode: -1, Error: reason, Final: true},
	})
	l.logger.Info("queued firing skipped", "execution", f.exec.ID, "reason", reason)
	l.forget(f.exec.ID)
	return true
}

// firstInQueue reports whether no execution of f's job fired before it is still open.
// The shards of one firing are one entry in the queue.
func (l *leader) firstInQueue(f *flight) bool {
	mine := firingID(f.exec)
	for _, o := range l.openByJob[f.exec.Job] {
		theirs := firingID(o.exec)
		if theirs == mine || !o.active() {
			continue
		}
		if o.exec.FiredAt.Before(f.exec.FiredAt) || (o.exec.FiredAt.Equal(f.exec.FiredAt) && theirs < mine) {
			return false
		}
	}
	return true
}

// firingID is the id of the firing an execution belongs to: its own, or its shards' common prefix.
func firingID(e job.Execution) string {
	if e.Shard == nil {
		return e.ID
	}
	return strings.TrimSuffix(e.ID, fmt.Sprintf("~%d", e.Shard.Index))
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
		case periodic && f.result == nil && f.retryAt.IsZero() &&
			((f.acked && now.Sub(f.ackedAt) > reconcileEvery) || (!f.acked && f.sentOnce && now.Sub(f.sentAt) > reconcileEvery) || f.orphaned):
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
		execs, err := l.store.OpenByID(sctx, ids)
		if err != nil {
			note.checked = nil // unsure still: check again on a later tick
		} else {
			for _, id := range ids {
				if !slices.ContainsFunc(execs, func(e job.Execution) bool { return e.ID == id }) {
					note.closed = append(note.closed, id)
				}
			}
		}
		note.execs = execs
		if len(note.checked) > 0 && l.fallback != nil {
			note.checked = l.notInFallback(sctx, note.checked)
		}
		l.tell(ctx, note)
	}()
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
		if f, ok := l.flights[id]; ok && f.result == nil {
			l.logger.Info("execution ended and was closed by another term; no longer followed", "execution", id)
			l.forget(id)
		}
	}
	for _, e := range n.execs {
		f, ok := l.flights[e.ID]
		if !ok || f.result != nil {
			continue
		}
		switch {
		case e.State.Terminal():
			l.forget(e.ID)
		case e.State == job.StateRetrying:
			if f.retryAt.IsZero() && e.Run > f.run {
				// A failed run the loop never heard of: its retry is due after the backoff.
				f.run, f.acked, f.client, f.check = e.Run-1, false, "", false
				f.retryAt = e.FinishedAt.Add(l.retryDelay(e.Job, e.Run))
			}
		case e.State == job.StateRunning && !f.orphaned && (!f.acked || e.Run > f.run):
			// A recorded ack the loop never heard of (perhaps of a run an earlier term started).
			f.acked, f.ackedAt, f.client, f.lostAt, f.run = true, now, e.Client, time.Time{}, max(e.Run, f.run)
			f.queued = false // it runs: it waits for nothing
			f.attempt = max(f.attempt, e.Attempt)
			f.leaseUntil, f.retryAt, f.verify, f.heldUntil = now.Add(l.cfg.LeaseTimeout), time.Time{}, false, time.Time{}
		}
	}
	for _, id := range n.checked {
		f, ok := l.flights[id]
		if !ok {
			continue
		}
		f.check = false
		l.logger.Debug("store check done", "execution", id, "acked", f.acked, "departed", f.departed)
		if f.departed != "" && !f.acked && !f.orphaned && !l.rerunnable(f) {
			// Sent to a client that went away without a word: it may have started the run and died before
			// its ack was recorded. A job that must not run twice is not sent again blindly.
			f.client = f.departed
			l.orphan(f, "sent to client "+f.departed+", which went away without answering: it may have started it")
		}
		f.departed = ""
	}
}

// askStore sets f.check: the next reconcile asks the store about f before the loop acts on it.
func (l *leader) askStore(f *flight, reason string) {
	if !f.check {
		l.metrics.storeChecks.WithLabelValues(reason).Inc()
	}
	f.check = true
}

// rerunnable reports whether f's job may run twice.
func (l *leader) rerunnable(f *flight) bool {
	return f.exec.Rerunnable || l.spec(f.exec).Rerunnable
}

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
		f.acked, f.client, f.stopping = false, "", ""
		f.retryAt = l.now().Add(l.retryDelay(f.exec.Job, run+1))
		if f.orphaned {
			f.orphaned = false
			l.metrics.orphaned.Dec()
		}
		return
	}
	l.forget(f.exec.ID)
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
		// Whatever attempt it answers, the execution runs there.
		f.attempt = max(f.attempt, a.Attempt)
		if !f.acked {
			f.acked, f.ackedAt = true, l.now()
			f.leaseUntil = f.ackedAt.Add(l.cfg.LeaseTimeout)
		}
		f.queued = false // an earlier term released it from the queue
		f.client, f.lostAt = a.From, time.Time{}
		return
	}
	if f.acked || a.Attempt != f.attempt || a.From != f.client {
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
	f.client = "" // the next tick offers it to another client, or to this one after refuseBackoff
}

// onResult notes that a run ended. The execution is forgotten once a server has recorded the result,
// unless a retry follows.
func (l *leader) onResult(r *wire.Result) {
	f, ok := l.flights[r.ExecID]
	if !ok || f.result != nil || max(r.Run, 1) < f.run {
		return
	}
	now := l.now()
	if f.holds(now) {
		l.release(f.client, f.exec.Width) // room for the next one now, not at the next count
	}
	f.result, f.resultAt, f.client = r, now, r.From
	defer func() {
		if !f.active() {
			l.wake(f.exec.Job)
		}
	}()
	if f.orphaned {
		f.orphaned = false
		l.metrics.orphaned.Dec()
	}
	if f.acked && r.Result.Status == job.StateSucceeded {
		l.observeRuntime(f.exec.Job, time.Duration(r.Result.Duration))
	}
	if r.Result.Status == job.StateFailed && !r.Result.Final && !f.stopFinal && f.run < f.exec.RunLimit() {
		f.retryAt = now.Add(l.retryDelay(f.exec.Job, f.run+1))
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
	case f.result != nil && max(f.result.Run, 1) == run:
		f.result = nil
		if f.retryAt.IsZero() {
			l.forget(id)
		}
	case run < f.run || f.result != nil:
		// An earlier run's: nothing left to do for it.
	case f.exec.RunLimit() > 1 && !f.stopFinal:
		l.askStore(f, "recorded")
	default:
		l.forget(id)
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
	f.run, f.client, f.acked, f.ackedAt, f.lostAt = run, client, true, now, time.Time{}
	f.retryAt, f.verify, f.check, f.heldUntil, f.overdue, f.queued = time.Time{}, false, false, time.Time{}, false, false
	f.leaseUntil = now.Add(l.cfg.LeaseTimeout)
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
		if !ok || f.result != nil {
			continue
		}
		switch {
		case f.client == h.From && run == f.run:
			f.leaseUntil, f.lossChecked, f.listedAt = now.Add(l.cfg.LeaseTimeout), false, now
			for _, p := range h.Progress {
				if p.ExecID == id && max(p.Run, 1) == run {
					f.progress = &p
				}
			}
			switch {
			case f.orphaned:
				f.orphaned, f.acked, f.ackedAt = false, true, now
				l.metrics.orphaned.Dec()
				l.persist(job.Event{
					ID: job.SeqEventID(id, job.EventResumed, f.attempt, now), ExecID: id, Job: f.exec.Job, Kind: job.EventResumed,
					Attempt: f.attempt, Run: f.run, Client: h.From, At: now.UTC(), Note: "its client lists it as running",
				})
				l.logger.Info("orphaned execution is running again on its client", "execution", id, "client", h.From)
			case !f.acked:
				f.acked, f.ackedAt = true, now
			}
		case f.client == "" && !f.acked && !f.orphaned && f.stopping == "" &&
			((f.retryAt.IsZero() && run == f.run) || (!f.retryAt.IsZero() && run == f.run+1)):
			l.adoptRun(f, run, h.From)
		}
	}
	// Runs that ended there, whose result is on its way: the lease holds (no loss, no orphan), the slot
	// does not.
	for i, id := range h.Ended {
		if f, ok := l.flights[id]; ok && f.client == h.From && h.EndedRunOf(i) == f.run && f.result == nil {
			f.leaseUntil, f.lossChecked = now.Add(l.cfg.LeaseTimeout), false
			f.listedAt = time.Time{}
			if !f.acked {
				f.acked, f.ackedAt = true, now.Add(-holdFor) // it ran there; it holds no slot
			}
		}
	}
}

// stop asks for f's run to end. A run on a client is stopped there (the client kills it and reports it
// failed); an execution that is not running ends at once, and a retry that is due never starts. final
// says the execution ends with it (an operator's stop, a replace); a timeout's stop leaves the retry
// policy to apply.
func (l *leader) stop(f *flight, reason string, final bool) {
	l.metrics.stops.Inc()
	switch {
	case f.orphaned:
		// Its client may still run it: tell it to stop too.
		f.stopping = reason
		l.sendStop(f, l.now())
		l.finishLocally(f, job.StateFailed, "stopped while orphaned: "+reason, "stop", true)
	case !f.retryAt.IsZero():
		// The last run has ended; the retry never starts.
		next := f.run + 1
		l.persist(job.Event{
			ID: job.EventID(f.exec.ID, job.EventFinished, next), ExecID: f.exec.ID, Job: f.exec.Job, Kind: job.EventFinished,
			Attempt: f.attempt, Run: next, At: l.now().UTC(), Note: "stop",
			Result: &job.Result{Status: job.StateFailed, ExitCode: -1, Error: "stopped before its retry: " + reason, Final: true},
		})
		f.retryAt, f.run = time.Time{}, next
		if f.result == nil {
			l.forget(f.exec.ID)
		}
	case f.result != nil:
		// It has ended already.
	case f.client != "" && (f.acked || f.sentOnce):
		f.stopping, f.stopFinal = reason, final
		if final {
			l.persist(job.Event{
				ID: job.EventID(f.exec.ID, job.EventStopping, f.attempt), ExecID: f.exec.ID, Job: f.exec.Job, Kind: job.EventStopping,
				Attempt: f.attempt, Run: f.run, Client: f.client, At: l.now().UTC(), Note: reason,
			})
		}
		l.sendStop(f, l.now())
	default:
		l.finishLocally(f, job.StateFailed, "stopped before it ran: "+reason, "stop", true)
	}
}

func (l *leader) sendStop(f *flight, now time.Time) {
	frame, err := wire.Encode(&wire.Stop{
		Header: wire.Header{From: l.cfg.ID, Epoch: l.epoch, SentAt: now}, ExecID: f.exec.ID, Reason: f.stopping,
	})
	if err == nil {
		_ = l.send(f.client, frame)
	}
	f.stopSentAt = now
}

// overdueSamples is how many recent successful runs the average runtime of a job weighs.
const overdueSamples = 10

// jobStats returns the stats of a job, made if it has none yet.
func (l *leader) jobStats(name string) *job.Stats {
	st, ok := l.stats[name]
	if !ok {
		st = &job.Stats{Job: name}
		l.stats[name] = st
	}
	return st
}

// observeRuntime adds a successful run's duration to its job's moving average.
func (l *leader) observeRuntime(jobName string, d time.Duration) {
	st := l.jobStats(jobName)
	if st.AvgRuntime == 0 {
		st.AvgRuntime = job.Duration(d)
	} else {
		avg := time.Duration(st.AvgRuntime)
		st.AvgRuntime = job.Duration(avg + (d-avg)/overdueSamples)
	}
	st.UpdatedAt = l.now().UTC()
	// A job whose average was never saved compares with none (0): the average of a job that takes less
	// than statsMinChange is not worth a write (the overdue alarm of a next leader learns it from the
	// first run it sees).
	if notable(time.Duration(l.savedAvg[jobName]), time.Duration(st.AvgRuntime)) {
		l.statsDirty[jobName] = true
	}
}

// notable reports whether an average runtime moved far enough from the one saved to be saved again: by
// a tenth and by statsMinChange. Every run of a job moves its average a little; saving each such move
// cost one store write per job every statsSaveEvery (on FerretDB about 8 ms each, in the way of the
// executions' and results' inserts: 5,000 jobs took 40 s), for no use to the overdue alarm. The leader
// keeps the exact average; the store's copy serves the next leader and `job get`.
func notable(saved, avg time.Duration) bool {
	diff := avg - saved
	if diff < 0 {
		diff = -diff
	}
	return diff >= statsMinChange && 10*diff >= saved
}

// statsMinChange is the least change of an average runtime that is saved.
const statsMinChange = 100 * time.Millisecond

// statsSaveEvery is how often changed job stats are written to the store.
const statsSaveEvery = 30 * time.Second

// statsSaveBatch bounds the jobs whose stats one save writes: on FerretDB each costs a write of 8 ms or more
// that holds up the inserts of executions and results, and a save must end well within storeTimeout. A
// leader with many new jobs saves their first stats over several saves.
const statsSaveBatch = 100

// saveStats writes the changed stats, off the loop.
func (l *leader) saveStats(ctx context.Context, now time.Time) {
	if l.savingStats || len(l.statsDirty) == 0 || now.Sub(l.lastStatsSave) < statsSaveEvery {
		return
	}
	batch := make([]job.Stats, 0, min(len(l.statsDirty), statsSaveBatch))
	for name := range l.statsDirty {
		if len(batch) == statsSaveBatch {
			break // the rest in the next save
		}
		delete(l.statsDirty, name)
		if st, ok := l.stats[name]; ok {
			batch = append(batch, *st)
			l.savedAvg[name] = st.AvgRuntime
		}
	}
	l.lastStatsSave, l.savingStats = now, true
	go func() {
		sctx, cancel := storeCtx(ctx)
		defer cancel()
		var failed []string
		if err := l.store.SaveStats(sctx, batch); err != nil && ctx.Err() == nil {
			l.metrics.storeErrors.WithLabelValues("save_stats").Inc()
			l.logger.Warn("saving job stats failed; they are saved again in the next save", "jobs", len(batch), "err", err)
			for _, st := range batch {
				failed = append(failed, st.Job)
			}
		}
		l.tell(ctx, statsSaved{failed: failed})
	}()
}

// loadStats reads what earlier terms learned of the jobs; without it the overdue averages start afresh.
func (l *leader) loadStats(ctx context.Context) {
	sctx, cancel := storeCtx(ctx)
	defer cancel()
	all, err := l.store.ListStats(sctx)
	if err != nil {
		l.metrics.storeErrors.WithLabelValues("list_stats").Inc()
		l.logger.Warn("cannot read job stats; overdue averages start afresh", "err", err)
		return
	}
	for name, st := range all {
		l.stats[name] = &st
		l.savedAvg[name] = st.AvgRuntime
	}
}

// checkOverdue raises the overdue alarm once per run: runtime > max(After, Ratio × average runtime).
func (l *leader) checkOverdue(f *flight, now time.Time) {
	if f.overdue {
		return
	}
	o := l.spec(f.exec).Overdue
	limit := time.Duration(o.After)
	if o.Ratio > 0 {
		if st, ok := l.stats[f.exec.Job]; ok && st.AvgRuntime > 0 {
			limit = max(limit, time.Duration(o.Ratio*float64(st.AvgRuntime)))
		}
	}
	if limit <= 0 || now.Sub(f.ackedAt) <= limit {
		return
	}
	f.overdue = true
	l.metrics.overdue.Inc()
	l.logger.Warn("execution overdue", "execution", f.exec.ID, "client", f.client, "running_for", now.Sub(f.ackedAt).Round(time.Second), "limit", limit)
	l.persist(job.Event{
		ID: job.EventID(f.exec.ID, job.EventOverdue, f.attempt), ExecID: f.exec.ID, Job: f.exec.Job, Kind: job.EventOverdue,
		Attempt: f.attempt, Run: f.run, Client: f.client, At: now.UTC(),
		Note: fmt.Sprintf("running for %s, limit %s", now.Sub(f.ackedAt).Round(time.Second), limit),
	})
}
