package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/store"
)

// The leader's side of the store's open set (store.ReadOpenSet): what a new leader reads at takeover
// instead of the history.
//
// Every execution enters the open set when it is recorded. The loop takes it out (closeOpen) once the
// execution has ended and its end is recorded or queued for recording ahead of the close, with one
// exception: each job's latest scheduled firing stays after it ended (kept), because its scheduled time is
// where the job's schedule resumes under the next leader. A firing skipped where it was fired never enters
// the set (store.RecordSkipped); the next leader reads the latest of those from the history
// (store.LatestSkipped), and the firing before it stays kept. It is taken out when a later firing of the job is
// recorded, or the job is deleted. What the loop never learns of (local runs, reports recorded after the
// term ended, a close lost with a dying server) is taken out by the sweep, which reads the set now and then
// and closes what ended there; so the set holds what is in flight, one firing per job, and at most a
// sweep's worth of the rest, or what ended during the closer's pause when that is longer (up to a minute
// on a slow store, see closePause).

// openSweepEvery is how often the leader reads the open set to close what ended without its knowledge.
const openSweepEvery = time.Minute

// keptFiring is a job's latest scheduled firing, ended, left in the open set for its scheduled time.
// recheck: it was found ended in the open set (an earlier term's, or one found in the history while open,
// see endedElsewhere), so it may be in the history already, and its close looks there first.
type keptFiring struct {
	id      string
	at      time.Time
	recheck bool
}

// openSwept is the open set as the sweep read it.
type openSwept struct {
	execs []job.Execution
	stray []string
	err   error
}

// keepsSchedule reports whether executions of trigger mark where their job's schedule stands.
func keepsSchedule(t job.Trigger) bool {
	return t == job.TriggerSchedule || t == job.TriggerCatchUp
}

// ended takes an execution that has ended (and whose end is recorded or queued ahead) out of the open set,
// or keeps it there if it is its job's latest scheduled firing in the set.
func (l *leader) ended(e job.Execution) {
	k, kept := l.kept[e.Job]
	if kept && k.id == e.ID {
		// Kept already; a sweep that finds it ended in the set tells nothing new: this term kept it.
		if l.maybeRecorded[e.ID] {
			delete(l.maybeRecorded, e.ID)
			k.recheck = true
			l.kept[e.Job] = k
		}
		return
	}
	recheck := l.mayBeRecorded(e.ID)
	_, exists := l.jobs[e.Job]
	if exists && keepsSchedule(e.Trigger) && !e.ScheduledAt.Before(l.lastOpened[e.Job]) {
		if kept {
			l.closeKept(k)
		}
		l.kept[e.Job] = keptFiring{id: e.ID, at: e.ScheduledAt, recheck: recheck}
		return
	}
	l.closeOpen(l.epoch, e.ID, recheck)
}

// mayBeRecorded reports whether an ended execution about to leave the open set may be in the history
// already, and forgets it: one found ended in the set (applyOpenSet) may have been recorded by a closer
// that died before it took it out, and one found in the history while it was open (maybeRecorded) is.
// The close of such an execution looks in the history first.
func (l *leader) mayBeRecorded(id string) bool {
	recorded := l.maybeRecorded[id]
	delete(l.maybeRecorded, id)
	return l.applyingOpenSet || recorded
}

// close asks for an ended execution to leave the open set for the history.
func (l *leader) close(id string) { l.closeOpen(l.epoch, id, l.mayBeRecorded(id)) }

// closeKept asks for a job's kept firing to leave the open set: with a look in the history first if it
// was found ended in the set, whichever term found it, so that a firing kept across terms is not recorded
// twice.
func (l *leader) closeKept(k keptFiring) {
	l.closeOpen(l.epoch, k.id, k.recheck || l.mayBeRecorded(k.id))
}

// firedLater closes the job's kept firing once a later one of the job is recorded (and so in the set).
func (l *leader) firedLater(e job.Execution) {
	if k, ok := l.kept[e.Job]; ok && keepsSchedule(e.Trigger) && k.at.Before(e.ScheduledAt) {
		l.closeKept(k)
		delete(l.kept, e.Job)
	}
}

// jobGone closes the kept firing of a deleted job.
func (l *leader) jobGone(name string) {
	if k, ok := l.kept[name]; ok {
		l.closeKept(k)
		delete(l.kept, name)
	}
}

// takeOver reads the open set: it learns where each job's schedule stands, tracks the executions an
// earlier term left open, and closes what ended. A read that fails or times out is tried again, with a
// longer deadline each time, for as long as the term lasts: a slow store delays the first firing, it does
// not end the term (a new term would only read the same set again).
func (l *leader) takeOver(ctx context.Context, now time.Time) error {
	var (
		execs []job.Execution
		stray []string
	)
	err := l.retryRead(ctx, "read the open set", func(ctx context.Context) error {
		var err error
		execs, stray, err = l.store.ReadOpenSet(ctx)
		return err
	})
	if err != nil {
		return err
	}
	var skipped map[string]time.Time
	err = l.retryRead(ctx, "read the latest skipped firings", func(ctx context.Context) error {
		var err error
		skipped, err = l.store.LatestSkipped(ctx, store.SkipSeries)
		return err
	})
	if err != nil {
		return err
	}
	l.applyOpenSet(execs, stray, now, true)
	// After the open set, so that each job's latest firing there stays kept: a later one skipped where it
	// was fired is in the history only (see store.RecordSkipped), and would not be found there next time.
	for name, at := range skipped {
		if at.After(l.lastFired[name]) {
			l.lastFired[name] = at
		}
	}
	return nil
}

// applyOpenSet brings the loop in line with the open set as read at takeover (inherit: track what is open)
// or by a sweep (only close what ended and the loop does not track).
func (l *leader) applyOpenSet(execs []job.Execution, stray []string, now time.Time, inherit bool) {
	l.applyingOpenSet = true
	defer func() { l.applyingOpenSet = false }()
	for _, e := range execs {
		if keepsSchedule(e.Trigger) && e.ScheduledAt.After(l.lastFired[e.Job]) {
			l.lastFired[e.Job] = e.ScheduledAt
		}
		if keepsSchedule(e.Trigger) && e.ScheduledAt.After(l.lastOpened[e.Job]) {
			l.lastOpened[e.Job] = e.ScheduledAt
		}
	}
	for _, e := range execs { // oldest first: a job's latest ended firing is kept last
		switch {
		case !e.State.Terminal():
			if inherit {
				l.inherit(e, now)
			}
		case l.flights[e.ID] != nil:
			// The loop still follows it (its end is on the way): it closes it when it learns.
		default:
			l.openSetEnded(e) // a batch's: its partition's end is recorded before the close
			l.ended(e)
		}
	}
	for _, id := range stray {
		l.close(id)
	}
}

// sweepOpen reads the open set off the loop, now and then; applyOpenSet closes what ended there.
func (l *leader) sweepOpen(ctx context.Context, now time.Time) {
	if l.sweeping || now.Sub(l.lastSweep) < openSweepEvery {
		return
	}
	l.sweeping, l.lastSweep = true, now
	go func() {
		sctx, cancel := context.WithTimeout(ctx, 4*storeTimeout)
		defer cancel()
		execs, stray, err := l.store.ReadOpenSet(sctx)
		l.tell(ctx, openSwept{execs: execs, stray: stray, err: err})
	}()
}

func (l *leader) applySwept(n openSwept) {
	l.sweeping = false
	if n.err != nil {
		l.metrics.storeErrors.WithLabelValues("read_open_set").Inc()
		l.logger.Warn("reading the open set failed; the next sweep reads it again", "err", n.err)
		return
	}
	l.applyOpenSet(n.execs, n.stray, l.now(), false)
}

// migrateOpenSet fills the open set from the history once per database (a store written by a version
// without it).
func (l *leader) migrateOpenSet(ctx context.Context, now time.Time) error {
	return l.retryRead(ctx, "migrate the open set", func(ctx context.Context) error {
		n, err := l.store.MigrateOpenSet(ctx, now.Add(-l.cfg.OpenLookback))
		if n > 0 {
			l.logger.Info("open executions recorded before the open set existed were added to it", "executions", n)
		}
		return err
	})
}

// maxReadTimeout caps the deadline of one try of a read the term cannot start without; maxEstablishWait
// is how long the term tries before it steps down, so that a server that cannot reach the store (while
// others may) lets another lead.
const (
	maxReadTimeout   = 2 * time.Minute
	maxEstablishWait = 5 * time.Minute
)

// retryRead runs read, which the term needs before it can act, until it succeeds or the term ends. Each try
// has a longer deadline than the one before (storeTimeout, then twice that, up to maxReadTimeout), so a
// read that is merely slow finishes eventually. A fenced store ends the term at once: a newer leader exists;
// so does a store that has not answered for maxEstablishWait.
func (l *leader) retryRead(ctx context.Context, what string, read func(ctx context.Context) error) error {
	timeout, began := storeTimeout, time.Now()
	for try := 1; ; try++ {
		sctx, cancel := context.WithTimeout(ctx, timeout)
		err := read(sctx)
		cancel()
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, store.ErrFenced):
			return fmt.Errorf("leader: %s: %w", what, err)
		case time.Since(began) > maxEstablishWait:
			return fmt.Errorf("leader: %s: the store has not answered for %s; stepping down: %w", what, maxEstablishWait, err)
		}
		l.metrics.storeErrors.WithLabelValues("establish").Inc()
		l.logger.Warn("a read the term needs failed; trying again (the term fires once it succeeds)",
			"what", what, "try", try, "timeout", timeout, "err", err)
		timeout = min(2*timeout, maxReadTimeout)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// inherit tracks an unfinished execution this term did not dispatch. If it is running, the client that
// runs it is watched (its lease starts now). If it waits for a retry or a decision, it goes on waiting. If
// it is pending, an earlier term may have sent it to a client we cannot name, so it waits until any such
// dispatch is past its accept-by: the client would have acknowledged it by then (clients re-send acks until
// recorded), or it can no longer start it.
func (l *leader) inherit(e job.Execution, now time.Time) {
	if _, ok := l.flights[e.ID]; ok {
		return
	}
	f := &flight{exec: e, attempt: e.Attempt, run: max(e.Run, 1)}
	if e.State == job.StatePending && e.Attempt == 0 && keepsSchedule(e.Trigger) {
		// It may be a copy nothing ends, of a firing the history has (see endedElsewhere): however it
		// ends, before or after the store check, its close looks there first.
		l.maybeRecorded[e.ID] = true
	}
	switch e.State {
	case job.StateRunning:
		l.toRunning(f, e.Client, now)
	case job.StateRetrying:
		// An earlier term may have dispatched the retry already: wait until such a dispatch is past its
		// accept-by, then ask the store (verify) before starting the run.
		f.run = max(e.Run-1, 1)
		f.retryAt = e.FinishedAt.Add(l.retryDelay(e.Job, e.Run))
		if held := now.Add(l.cfg.AcceptWindow + l.cfg.AckTimeout); f.retryAt.Before(held) {
			f.retryAt = held
		}
		f.phase, f.verify = phaseRetrying, true
	case job.StateOrphaned:
		f.phase, f.client = phaseOrphaned, e.Client // track counts it
	default:
		f.heldUntil, f.verify = now.Add(l.cfg.AcceptWindow+l.cfg.AckTimeout), true
		// A firing queued behind another stays queued under the new leader. Under forbid it is late by
		// now, as are those this term owes the job: they run one after another (see plan).
		switch overlap := l.spec(e).Overlap; {
		case e.Trigger == job.TriggerBatch:
			// A batch's executions are not its job's firings: the batch decides when they run.
		case overlap == job.OverlapQueue:
			f.phase = phaseQueued
		case overlap == "" || overlap == job.OverlapForbid:
			f.phase, f.catchUp = phaseQueued, true
		}
	}
	l.track(f)
}
