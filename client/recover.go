package client

import (
	"fmt"
	"time"

	"github.com/clover-sched/clover/internal/fallback"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/wire"
)

// recoverRuns takes up the runs the journal holds from before a restart, before the client registers:
//   - a run whose result was made is reported again (servers may not have it);
//   - a shell run whose command ended while the client was down is reported with the exit status and
//     output its wrapper left;
//   - a shell run whose command still runs is watched again: it holds its slot, heartbeats list it (the
//     leader then sees it running again, even if it had orphaned it) and it reports when it ends;
//   - any other run died with the client (a Go handler runs in its process), or its outcome is unknown
//     (the command left no exit status): it is reported failed, for good (final: no retry, since the run
//     may have done part of its work and the job may not be one that can run twice), so that the
//     execution ends with a clear error instead of waiting for a person.
func (c *Client) recoverRuns() {
	if c.journal == nil {
		return
	}
	runs, bad := c.journal.runs()
	for _, err := range bad {
		c.logger.Error("a journaled run cannot be read; it is left for a person to look at", "err", err)
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range runs {
		d, run := r.rec.Dispatch, r.rec.Run
		// A re-sent dispatch of it gets the answer it got before the restart; it never runs twice here.
		c.seen.put(d.ExecID, run, decision{accepted: true, attempt: d.Attempt, acceptBy: d.AcceptBy})
		c.journaled.put(d.ExecID, run, r.dir)
		if r.pid > 0 {
			ctx, ar := c.startRunLocked(d.ExecID, run, d.Width, "")
			c.logger.Info("a run started before the restart is still going; watching it again", "execution", d.ExecID, "run", run, "pid", r.pid)
			go c.runHandler(ctx, &d, run, watchAdopted(r.pid, r.dir), ar, r.dir, r.rec.StartedAt)
			continue
		}
		frame := r.result
		if frame == nil {
			var err error
			if frame, err = c.recoveredResult(r, now); err != nil {
				c.logger.Error("cannot report a journaled run", "execution", d.ExecID, "err", err)
				continue
			}
		}
		c.logger.Info("reporting a run that ended while the client was down", "execution", d.ExecID, "run", run)
		c.pending.put(d.ExecID, run, &pendingReport{
			frame: frame, next: now, wait: c.cfg.ResultRetry,
			kind: fallback.KindResult, execID: d.ExecID, created: now,
		})
	}
}

// recoveredResult is the result frame of a journaled run that ended without a report.
func (c *Client) recoveredResult(r journaledRun, now time.Time) ([]byte, error) {
	d := r.rec.Dispatch
	finished := now
	res := job.Result{Status: job.StateFailed, ExitCode: -1}
	switch {
	case r.statusOK:
		out := newTail(job.MaxOutput)
		outputTail(r.dir, job.MaxOutput, out)
		res.Output = out.String()
		if !r.endedAt.IsZero() {
			finished = r.endedAt
		}
		res.ExitCode = r.status
		if r.status == 0 {
			res.Status = job.StateSucceeded
		} else {
			res.Error = fmt.Sprintf("exit status %d (it ended while its client was down)", r.status)
		}
	case r.rec.Shell:
		res.Error = "the command's process ended without leaving its exit status while its client was down (killed, or the machine restarted); not retried: it may have done part of its work"
		res.Final = true
	default:
		res.Error = "its client stopped while it ran (a Go handler runs in the client's process); not retried: it may have done part of its work"
		res.Final = true
	}
	if finished.Before(r.rec.StartedAt) {
		finished = r.rec.StartedAt
	}
	res.Duration = job.Duration(finished.Sub(r.rec.StartedAt))
	if res.Status == job.StateSucceeded {
		c.stats.Succeeded.Add(1)
	} else {
		c.stats.Failed.Add(1)
	}
	return wire.Encode(&wire.Result{
		Header: wire.Header{From: c.cfg.ID, Epoch: d.Epoch, SentAt: now},
		ExecID: d.ExecID, Job: d.Job, Attempt: d.Attempt, Run: r.rec.Run, Result: res,
		StartedAt: r.rec.StartedAt, FinishedAt: finished,
	})
}
