package server

import (
	"slices"
	"time"

	"github.com/clover-sched/clover/internal/job"
)

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
	// Swapped out first: a dispatch that ends an execution (it cannot be encoded) wakes its job again.
	woken := l.woken
	l.woken = nil
	now := l.now()
	for name := range woken {
		var queued []*flight
		for _, f := range l.openByJob[name] {
			if f.phase == phaseQueued {
				queued = append(queued, f)
			}
		}
		slices.SortFunc(queued, byFiring)
		for _, f := range queued {
			if !l.firstInQueue(f) {
				break
			}
			if l.skipStaleQueued(f, now) {
				continue
			}
			l.to(f, phaseWaiting)
			f.readyAt = now
			l.dispatch(f, now) // if no client takes it now, the tick offers it again
		}
	}
}

// skipStaleQueued skips an execution waiting in its job's queue under forbid (it caught up, or came due
// while the job caught up) that should no longer wait, and reports whether it did:
//   - an earlier execution of the job is orphaned (see errOrphanAhead);
//   - its time fell past the misfire threshold, so that a job slower than its schedule cannot build an
//     endless queue: the misfire policy decides (skip: skipped; fire-once: skipped once a later firing of
//     the job is recorded, which stands for it; fire-all: a time the job owed waits on, the misfire limit
//     having bounded how many were made, and one that came due while the job caught up is skipped).
//
// An execution an earlier term made may have been sent before: it is skipped only once the store says it
// was not (verify), and one this term sent never is.
func (l *leader) skipStaleQueued(f *flight, now time.Time) bool {
	spec := l.spec(f.exec)
	if f.sentOnce || spec.Overlap != "" && spec.Overlap != job.OverlapForbid {
		return false
	}
	orphanAhead := l.hasOrphan(f.exec.Job)
	if !orphanAhead && !f.exec.ScheduledAt.Before(now.Add(-l.cfg.MisfireThreshold)) {
		return false
	}
	if f.exec.Epoch != l.epoch || f.attempt > 0 || f.verify {
		// An earlier term's: it may have been sent and run. Once no dispatch of that term can be started
		// any more, the store tells whether it was (a recorded ack makes it running, see applyReconciled).
		// An own copy held for the check (verify, see adopt) waits for it too: the history may have it.
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
	case policy == job.MisfireFireAll && f.catchUp:
		return false // an owed time: fire-all runs it (the misfire limit bounded how many were made)
	case policy == job.MisfireFireAll:
		// A time that came due while the job caught up, not one it owed: past the threshold it is what
		// forbid skips, so that a run going for long after a takeover cannot gather a queue.
		return l.skipQueued(f, "misfire: came due while the job caught up, and waited past the misfire threshold (forbid)")
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
	l.skipOpen(f, reason)
	return true
}

// skipOpen records that an execution nothing was started for never runs, and stops following it.
func (l *leader) skipOpen(f *flight, reason string) {
	l.metrics.skipped.WithLabelValues(skipLabel(reason)).Inc()
	l.persist(job.Event{
		ID: job.EventID(f.exec.ID, job.EventFinished, 1), ExecID: f.exec.ID, Job: f.exec.Job, Kind: job.EventFinished, Run: 1,
		At: l.now().UTC(), Result: &job.Result{Status: job.StateSkipped, ExitCode: -1, Error: reason, Final: true},
	})
	l.logger.Info("firing skipped", "execution", f.exec.ID, "phase", f.phase, "reason", reason)
	l.forget(f.exec.ID, job.StateSkipped)
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

// firingID is the id of the firing an execution belongs to.
func firingID(e job.Execution) string { return job.FiringOf(e) }

// openCount is how many executions of the job are open for the overlap policies.
func (l *leader) openCount(jobName string) int {
	n := 0
	for _, f := range l.openByJob[jobName] {
		if f.active() {
			n++
		}
	}
	return n
}

// openFirings is how many firings of the job are open (the shards of one firing count once).
func (l *leader) openFirings(jobName string) int {
	seen := map[string]bool{}
	for _, f := range l.openByJob[jobName] {
		if f.active() {
			seen[firingID(f.exec)] = true
		}
	}
	return len(seen)
}

// errOrphanAhead is why a firing of a job under forbid does not wait behind an orphaned execution: an
// orphan ends only when its client returns or a person decides, so waiting would make every firing late.
const errOrphanAhead = "overlap: an earlier execution is orphaned (forbid)"

// hasOrphan reports whether the job has an orphaned execution.
func (l *leader) hasOrphan(jobName string) bool {
	for _, f := range l.openByJob[jobName] {
		if f.phase == phaseOrphaned {
			return true
		}
	}
	return false
}

// catchingUp reports whether the job has an open execution made by a catch-up firing: while it has, its
// new firings queue behind (forbid) rather than being skipped.
func (l *leader) catchingUp(jobName string) bool {
	for _, f := range l.openByJob[jobName] {
		if f.catchUp && f.active() {
			return true
		}
	}
	return false
}

// maxQueued bounds the executions of one job open or queued at once under the queue overlap policy.
const maxQueued = 100
