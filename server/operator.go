package server

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/job"
)

// Operator actions on executions, applied by the leader loop: stop a run, rerun or close an orphaned
// execution, and list what is in flight.

// execAction is a request from the API to act on one execution.
type execAction struct {
	id     string
	action string    // "stop", "rerun" or "done"
	status job.State // done: succeeded or failed
	note   string    // who asks, and why
	reply  chan error
}

// inflightRequest asks the loop for a view of its flights.
type inflightRequest struct {
	job   string // only this job's; "" for all
	limit int    // the oldest limit of them
	reply chan []api.InFlight
}

// backlogRequest asks the loop for a summary of its flights and backlog.
type backlogRequest struct{ reply chan api.Backlog }

// activityRequest asks the loop for its minute counts.
type activityRequest struct {
	minutes int
	reply   chan api.Activity
}

// heartbeatsRequest asks the loop when it last heard from each client.
type heartbeatsRequest struct{ reply chan heartbeatsReply }

type heartbeatsReply struct {
	heard map[string]time.Time
	start time.Time // when the term began: it could hear nothing before
}

var (
	errNotInFlight = errors.New("the leader does not track this execution as open (it has ended, or is unknown)")
	errNotOrphaned = errors.New("the execution is not orphaned")
)

// act applies an operator's action.
func (l *leader) act(a execAction) error {
	note := a.note
	if note == "" {
		note = "operator"
	}
	f, ok := l.flights[a.id]
	if ph, recording := l.recording[a.id]; recording && a.action == "stop" {
		// Stopped once recorded, before any client is sent it.
		ph.stopping, ph.stopFinal = "by "+note, true
		return nil
	}
	if !ok {
		return errNotInFlight
	}
	switch a.action {
	case "stop":
		l.stop(f, "by "+note, true)
		return nil
	case "rerun":
		if f.phase != phaseOrphaned {
			return errNotOrphaned
		}
		l.persist(job.Event{
			ID: job.EventID(f.exec.ID, job.EventRerun, f.attempt), ExecID: f.exec.ID, Job: f.exec.Job, Kind: job.EventRerun,
			Attempt: f.attempt, Run: f.run, Client: f.client, At: l.now().UTC(), Note: note,
		})
		// Not to the client that vanished with it: if it comes back it still remembers the run as
		// accepted, and would only answer so.
		f.exclude = f.client
		l.toWaiting(f)
		l.logger.Warn("orphaned execution rerun by an operator", "execution", f.exec.ID, "note", note)
		l.dispatch(f, l.now())
		return nil
	case "done":
		if f.phase != phaseOrphaned {
			return errNotOrphaned
		}
		if a.status != job.StateSucceeded && a.status != job.StateFailed {
			return fmt.Errorf("status %q: want succeeded or failed", a.status)
		}
		l.finishLocally(f, a.status, "marked "+string(a.status)+" by "+note, note, true)
		return nil
	}
	return fmt.Errorf("unknown action %q", a.action)
}

// inflight returns the leader's view of its flights, oldest first.
func (l *leader) inflight(jobName string, limit int) []api.InFlight {
	out := make([]api.InFlight, 0, len(l.flights)+len(l.recording))
	now := l.now()
	for _, f := range l.all() {
		if jobName != "" && f.exec.Job != jobName {
			continue
		}
		v := api.InFlight{
			ID: f.exec.ID, Job: f.exec.Job, Client: f.client, Attempt: f.attempt, Run: max(f.run, 1),
			ScheduledAt: f.exec.ScheduledAt, Overdue: f.overdue, Shard: f.exec.Shard,
		}
		if f.progress != nil && max(f.progress.Run, 1) == max(f.run, 1) {
			p := *f.progress
			v.Progress = &p
		}
		v.Status, v.Since = f.status(now)
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b api.InFlight) int {
		if c := a.ScheduledAt.Compare(b.ScheduledAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out[:min(len(out), limit)]
}
