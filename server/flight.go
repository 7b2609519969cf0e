package server

import (
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

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// rerunnable reports whether f's job may run twice.
func (l *leader) rerunnable(f *flight) bool {
	return f.exec.Rerunnable || l.spec(f.exec).Rerunnable
}

// active reports whether f is open for the overlap policies: not ended, or ended with a retry to come. A
// run whose result was reported has ended, even while the leader waits for the result to be recorded.
func (f *flight) active() bool {
	return f.result == nil || !f.retryAt.IsZero()
}

// holds reports whether f takes a slot on f.client: sent there within the last second and unanswered, or
// running there as far as the leader can tell: acknowledged or listed in a heartbeat within holdFor.
// The count errs towards free: a leader that is behind on its notes (a loaded store) must not starve
// clients that have room, and a client that is really full refuses (busy) and the execution goes to
// another. A run whose result note was lost stops being listed, so its slot frees within holdFor.
func (f *flight) holds(now time.Time) bool {
	switch {
	case f.client == "" || f.result != nil || f.orphaned || !f.retryAt.IsZero():
		return false
	case !f.acked:
		return f.sentOnce && now.Sub(f.sentAt) < unansweredHold
	}
	return now.Sub(f.ackedAt) < holdFor || now.Sub(f.listedAt) < holdFor
}

// unansweredHold is how long a dispatch holds a slot before any answer: a short run answers with its
// result within it, a long one with its ack (sent 200 ms after it starts).
const unansweredHold = time.Second

// holdFor is how long an acknowledged run holds its slot without a heartbeat that lists it: two heartbeat
// periods and some.
const holdFor = 5 * time.Second
