package server

import (
	"context"
	"errors"
	"time"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/wire"
)

// The term's methods: what the rest of the server (the API, the intake, the registry watch) asks of the
// leader term. The loop owns the term's state; each method hands it a note and, for a question, waits for
// the answer. Nothing outside the term builds a note.

var (
	// errTermBusy: the loop's queue is full; the caller may retry.
	errTermBusy = errors.New("the leader is overloaded; retry")
	// errNoAnswer: the loop did not answer in time (a slow store, or the term is ending).
	errNoAnswer = errors.New("the leader did not answer within 10s")
)

// answerWithin bounds how long a caller waits for the loop's answer.
const answerWithin = 10 * time.Second

// askTerm hands the loop a question and waits for its answer, the caller's context or answerWithin.
func askTerm[T any](ctx context.Context, l *leader, note any, reply chan T) (T, error) {
	var zero T
	if !l.notify(note) {
		return zero, errTermBusy
	}
	t := time.NewTimer(answerWithin)
	defer t.Stop()
	select {
	case rep := <-reply:
		return rep, nil
	case <-ctx.Done():
		return zero, ctx.Err()
	case <-t.C:
		return zero, errNoAnswer
	}
}

// Trigger fires job name now, with params over its own, and returns the id of the firing.
func (l *leader) Trigger(ctx context.Context, name string, params map[string]string) (string, error) {
	reply := make(chan triggerReply, 1)
	rep, err := askTerm(ctx, l, triggerRequest{name: name, params: params, reply: reply}, reply)
	if err != nil {
		return "", err
	}
	return rep.id, rep.err
}

// Act applies an operator's action (stop, rerun, done) to execution id.
func (l *leader) Act(ctx context.Context, id, action string, status job.State, note string) error {
	reply := make(chan error, 1)
	err, askErr := askTerm(ctx, l, execAction{id: id, action: action, status: status, note: note, reply: reply}, reply)
	if askErr != nil {
		return askErr
	}
	return err
}

// InFlight is the live view of the executions the term follows (of jobName, or all), the oldest limit.
func (l *leader) InFlight(ctx context.Context, jobName string, limit int) ([]api.InFlight, error) {
	reply := make(chan []api.InFlight, 1)
	return askTerm(ctx, l, inflightRequest{job: jobName, limit: limit, reply: reply}, reply)
}

// Backlog summarizes what the term follows and how full its backlog is.
func (l *leader) Backlog(ctx context.Context) (api.Backlog, error) {
	reply := make(chan api.Backlog, 1)
	return askTerm(ctx, l, backlogRequest{reply: reply}, reply)
}

// Activity is the term's minute counts over the last n minutes.
func (l *leader) Activity(ctx context.Context, n int) (api.Activity, error) {
	reply := make(chan api.Activity, 1)
	return askTerm(ctx, l, activityRequest{minutes: n, reply: reply}, reply)
}

// Heartbeats says when the term last heard each client, and since when it could hear any.
func (l *leader) Heartbeats(ctx context.Context) (heard map[string]time.Time, since time.Time, err error) {
	reply := make(chan heartbeatsReply, 1)
	rep, err := askTerm(ctx, l, heartbeatsRequest{reply: reply}, reply)
	return rep.heard, rep.start, err
}

// JobChanged says that job name was created, changed or deleted in the store; the loop reads it again.
// A writer that knows what it stored says JobsWritten or JobsDeleted instead, which costs the loop no read.
func (l *leader) JobChanged(name string) { l.notify(jobChanged{name: name}) }

// JobsWritten hands the loop job definitions as they were just stored. The caller holds their write locks
// (jobLocks), so that the definitions of one job reach the loop in the order they were stored.
func (l *leader) JobsWritten(specs ...job.Spec) { l.changes.put(specs, nil) }

// JobsDeleted says that jobs were just deleted from the store; the caller holds their write locks.
func (l *leader) JobsDeleted(names ...string) { l.changes.put(nil, names) }

// ClientsChanged says that the registry of clients changed.
func (l *leader) ClientsChanged() { l.notify(clientsChanged{}) }

// Report hands the loop a client's report: an ack, a result, a heartbeat or a run request. A client's
// re-send of a report already handed on (resent) goes only while the loop's queue is at most half full.
func (l *leader) Report(m wire.Message, resent bool) {
	var note any
	switch x := m.(type) {
	case *wire.Ack:
		note = ackNote{ack: x}
	case *wire.Result:
		note = resultNote{result: x}
	case *wire.Heartbeat:
		note = heartbeatNote{hb: x}
	case *wire.Request:
		note = requestNote{req: x}
	default:
		return
	}
	if resent {
		l.notifySpare(note)
	} else {
		l.notify(note)
	}
}

// Recorded says that a server recorded the results of these runs (runs: the run of each id; empty from an
// older server).
func (l *leader) Recorded(ids []string, runs []int) { l.notify(recordedNote{ids: ids, runs: runs}) }
