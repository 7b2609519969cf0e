package server

import (
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/wire"
)

// stop asks for f's run to end. A run on a client is stopped there (the client kills it and reports it
// failed); an execution that is not running ends at once, and a retry that is due never starts. final
// says the execution ends with it (an operator's stop, a replace); a timeout's stop leaves the retry
// policy to apply.
func (l *leader) stop(f *flight, reason string, final bool) {
	l.metrics.stops.Inc()
	switch {
	case f.phase == phaseOrphaned:
		// Its client may still run it: tell it to stop too.
		f.stopping = reason
		l.sendStop(f, l.now())
		l.finishLocally(f, job.StateFailed, "stopped while orphaned: "+reason, "stop", true)
	case !f.retryAt.IsZero():
		// The last run has ended (retrying, or reporting a failed run); the retry never starts.
		next := f.run + 1
		l.persist(job.Event{
			ID: job.EventID(f.exec.ID, job.EventFinished, next), ExecID: f.exec.ID, Job: f.exec.Job, Kind: job.EventFinished,
			Attempt: f.attempt, Run: next, At: l.now().UTC(), Note: "stop",
			Result: &job.Result{Status: job.StateFailed, ExitCode: -1, Error: "stopped before its retry: " + reason, Final: true},
		})
		f.retryAt, f.run = time.Time{}, next
		if f.phase != phaseReporting {
			l.forget(f.exec.ID, job.StateFailed)
		}
	case f.phase == phaseReporting:
		// It has ended already.
	case f.phase == phaseRunning || f.phase == phaseDispatched:
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
