package server

import (
	"strconv"
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
//
// Where a flight stands is its phase (the diagram is in docs/design.md, "The execution lifecycle"); every
// change of phase goes through to. Besides its phase, a flight may be held (heldUntil: an earlier term's
// dispatch may still be started), be waiting for the store (check: the loop does not act on it until the
// store answers), or be stopping (a stop was asked and sent to its client). It ends, whatever the reason,
// through forget.
type flight struct {
	phase     phase
	exec      job.Execution
	progress  *wire.Progress // the run's last progress, from its client's heartbeat
	attempt   int            // the attempt last dispatched
	run       int            // the run under way, 1 first
	client    string         // the client it was last sent to (or that acked it); "" while it waits for one
	frame     []byte
	sentAt    time.Time
	acceptBy  time.Time
	ackedAt   time.Time // when it became running
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

	catchUp     bool      // made by a catch-up firing, or inherited pending under forbid (see plan)
	retryAt     time.Time // retrying, or reporting a failed run: the next run is due then
	leaseUntil  time.Time // a running execution not listed in a heartbeat by then is lost
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
	// mayHaveRun: a client acked or listed it, or it went to a client that left unanswered: it may have
	// started somewhere, so it is never skipped as a misfire (see stale).
	mayHaveRun bool
	readyAt    time.Time // when it last left its job's queue; the misfire age counts from then
}

// phase is where an execution the leader follows stands in its lifecycle.
type phase uint8

const (
	// phaseWaiting: it wants a client (new, refused, or given back by a client that left or lost it).
	phaseWaiting phase = iota
	// phaseQueued: it waits for the job's earlier executions to end (overlap queue, or catch-up under
	// forbid), then waits for a client.
	phaseQueued
	// phaseDispatched: sent to f.client, which has not answered; the same frame is re-sent meanwhile.
	phaseDispatched
	// phaseRunning: its client acknowledged it or lists it in its heartbeats; it holds a lease.
	phaseRunning
	// phaseReporting: its run ended and its client reported how (f.result); the result waits to be
	// recorded. A failed run with a retry to come has retryAt set.
	phaseReporting
	// phaseRetrying: its last run failed and the retry policy runs it again at retryAt.
	phaseRetrying
	// phaseOrphaned: its client vanished mid-run (or unanswered) and its job must not run twice: it
	// waits for the client to come back or for a person.
	phaseOrphaned
	// phaseRecording: fired, on its way to the store. Only a placeholder in its job's open executions
	// (leader.recording, never leader.flights): the overlap policies count it, nothing acts on it; once
	// recorded it is tracked as a new flight (see recording.go).
	phaseRecording
)

var phaseNames = [...]string{"waiting", "queued", "dispatched", "running", "reporting", "retrying", "orphaned", "recording"}

func (p phase) String() string {
	if int(p) < len(phaseNames) {
		return phaseNames[p]
	}
	return "phase(" + strconv.Itoa(int(p)) + ")"
}

// to moves f to phase p. Leaving a phase releases nothing by itself: a slot is released where the run
// is known to have ended or moved (see release), since a client may hold it a little longer. (The tick
// counts the phases for the metrics.)
func (l *leader) to(f *flight, p phase) { f.phase = p }

// toRunning notes that f's run goes on at client, known since at. A run already known to be going keeps
// its start (its timeout and overdue alarm count from it).
func (l *leader) toRunning(f *flight, client string, at time.Time) {
	if f.phase != phaseRunning {
		f.ackedAt, f.leaseUntil = at, at.Add(l.cfg.LeaseTimeout)
	}
	f.client, f.lostAt, f.lossChecked = client, time.Time{}, false
	f.mayHaveRun = true
	l.to(f, phaseRunning)
}

// toWaiting gives f back to the dispatch: it wants a client again.
func (l *leader) toWaiting(f *flight) {
	f.client, f.lostAt, f.leaseUntil, f.overdue = "", time.Time{}, time.Time{}, false
	l.to(f, phaseWaiting)
}

// status is how the API and `clover exec live` show f.
func (f *flight) status(now time.Time) (status string, since time.Time) {
	switch f.phase {
	case phaseRetrying:
		return "retrying", f.retryAt
	case phaseRunning:
		if f.stopping != "" {
			return "stopping", f.ackedAt
		}
		return "running", f.ackedAt
	case phaseDispatched:
		if f.stopping != "" {
			return "stopping", time.Time{}
		}
		return "dispatched", time.Time{}
	case phaseWaiting:
		switch {
		case f.check:
			return "checking", time.Time{}
		case now.Before(f.heldUntil):
			return "held", time.Time{}
		}
		return "waiting", f.exec.FiredAt
	}
	return f.phase.String(), time.Time{}
}

// track starts following f; forget stops. They keep the per-job index of open executions that the
// overlap policies read, which leaves out a batch's executions: the batch decides when they run, and a
// job's own firings neither wait for them, nor skip for them, nor replace them.
func (l *leader) track(f *flight) {
	l.flights[f.exec.ID] = f
	if f.exec.Trigger == job.TriggerBatch {
		return
	}
	byJob := l.openByJob[f.exec.Job]
	if byJob == nil {
		byJob = map[string]*flight{}
		l.openByJob[f.exec.Job] = byJob
	}
	byJob[f.exec.ID] = f
}

// forget is the one way an execution stops being followed, whatever ended it: a result recorded, the
// leader's own decision, a skip, a stop, an operator, or another term. Callers record the outcome first
// (an event); forget takes the execution out of the open set (ended), wakes its job's queue, and tells
// whoever waits on executions ending (onEnd: the hook a batch engine needs). outcome is the state it
// ended in, "" when this term does not know it (another term or a server recorded it). Slots need no
// release here: the tick counts them from the flights that remain.
func (l *leader) forget(id string, outcome job.State) { l.unfollow(id, outcome, true) }

// forgetClosed is forget of an execution the store no longer has in its open set (closed by another
// term): it neither leaves the open set again nor becomes its job's kept firing, which must be one the
// open set holds (a new term resumes the job's schedule from it); the kept firing stays as it is.
func (l *leader) forgetClosed(id string) { l.unfollow(id, "", false) }

func (l *leader) unfollow(id string, outcome job.State, inOpenSet bool) {
	f, ok := l.flights[id]
	if !ok {
		return
	}
	delete(l.flights, id)
	l.activity.ended(l.now(), outcome)
	// A batch's partition end is recorded before the execution's close is queued (see persistBatchEnd).
	var output string
	if f.result != nil {
		output = resultOutput(&f.result.Result)
	}
	l.batchEnded(f.exec, outcome, output)
	if inOpenSet {
		l.ended(f.exec)
	} else {
		delete(l.maybeRecorded, id)
	}
	if l.onEnd != nil {
		l.onEnd(f.exec, outcome)
	}
	if byJob := l.openByJob[f.exec.Job]; byJob != nil {
		delete(byJob, id)
		if len(byJob) == 0 {
			delete(l.openByJob, f.exec.Job)
		} else {
			l.wake(f.exec.Job)
		}
	}
}

// byFiring orders flights by when they were fired, then by id.
func byFiring(a, b *flight) int {
	if c := a.exec.FiredAt.Compare(b.exec.FiredAt); c != 0 {
		return c
	}
	return strings.Compare(a.exec.ID, b.exec.ID)
}

// spec returns the definition of e's job, or one made from the execution if the job is gone.
func (l *leader) spec(e job.Execution) *job.Spec {
	if en, ok := l.jobs[e.Job]; ok {
		return &en.spec
	}
	return &job.Spec{Name: e.Job, Handler: e.Handler, Rerunnable: e.Rerunnable}
}

// rerunnable reports whether f's job may run twice.
func (l *leader) rerunnable(f *flight) bool {
	return f.exec.Rerunnable || l.spec(f.exec).Rerunnable
}

// active reports whether f is open for the overlap policies: not ended, or ended with a retry to come. A
// run whose result was reported has ended, even while the leader waits for the result to be recorded.
func (f *flight) active() bool {
	return f.phase != phaseReporting || !f.retryAt.IsZero()
}

// holds reports whether f takes a slot on f.client: sent there within the last second and unanswered, or
// running there as far as the leader can tell: acknowledged or listed in a heartbeat within holdFor.
// The count errs towards free: a leader that is behind on its notes (a loaded store) must not starve
// clients that have room, and a client that is really full refuses (busy) and the execution goes to
// another. A run whose result note was lost stops being listed, so its slot frees within holdFor.
func (f *flight) holds(now time.Time) bool {
	switch f.phase {
	case phaseDispatched:
		return f.sentOnce && now.Sub(f.sentAt) < unansweredHold
	case phaseRunning:
		return now.Sub(f.ackedAt) < holdFor || now.Sub(f.listedAt) < holdFor
	}
	return false
}

// unansweredHold is how long a dispatch holds a slot before any answer: a short run answers with its
// result within it, a long one with its ack (sent 200 ms after it starts).
const unansweredHold = time.Second

// holdFor is how long an acknowledged run holds its slot without a heartbeat that lists it: two heartbeat
// periods and some.
const holdFor = 5 * time.Second
