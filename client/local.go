package client

import (
	"context"
	"maps"
	"sync"
	"time"

	"github.com/clover-sched/clover/internal/fallback"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/schedule"
	"github.com/clover-sched/clover/internal/wire"
)

// startLocal starts firing the declared jobs in local mode: one goroutine per job, until ctx ends.
func (c *Client) startLocal(ctx context.Context, wg *sync.WaitGroup) {
	c.mu.Lock()
	var local []job.Spec
	for _, s := range c.declared {
		if s.Mode == job.ModeLocal {
			local = append(local, s)
		}
	}
	c.mu.Unlock()
	for _, s := range local {
		wg.Go(func() { c.localLoop(ctx, s) })
	}
}

// localLoop fires a local job on its schedule, on the client's clock. Fire times missed while the client
// was down, or while it could not keep up (a timer that fired a whole period late), are not caught up: the
// next fire time is always the first one after the last firing and after now.
func (c *Client) localLoop(ctx context.Context, spec job.Spec) {
	sched, err := schedule.Parse(spec.Schedule, spec.TimeZone)
	if err != nil { // Declare checked it
		c.logger.Error("local job: bad schedule", "job", spec.Name, "err", err)
		return
	}
	last := c.now()
	for {
		next := sched.Next(last)
		if next.IsZero() {
			c.logger.Info("local job has no fire time left", "job", spec.Name)
			return
		}
		t := time.NewTimer(next.Sub(c.now()))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		c.fireLocal(spec, next)
		last = next
		if now := c.now(); now.After(last) {
			last = now
		}
	}
}

// fireLocal makes the execution of a local job scheduled at, runs it and reports it: the ack, which carries
// the execution (servers record it from there), goes out at once and is re-sent until a receipt; the result
// follows as for any run. A firing while the job's previous run is still under way is skipped.
func (c *Client) fireLocal(spec job.Spec, at time.Time) {
	now := c.now()
	id := job.LocalExecutionID(spec.Name, at, c.cfg.ID)
	d := &wire.Dispatch{
		Header: wire.Header{From: c.cfg.ID, SentAt: now},
		ExecID: id, Job: spec.Name, Handler: spec.Handler, Params: maps.Clone(spec.Params), Timeout: spec.Timeout,
		ScheduledAt: at, Attempt: 1, Run: 1, Trigger: job.TriggerLocal, Width: spec.Routing.Width, AcceptBy: now,
	}
	c.mu.Lock()
	if c.localBusy[spec.Name] {
		c.mu.Unlock()
		c.stats.LocalSkipped.Add(1)
		c.logger.Info("overlap: previous run still running", "job", spec.Name, "scheduled_at", at)
		return
	}
	if c.seen.has(id, 1) {
		c.mu.Unlock()
		return // fired already (the clock went back)
	}
	h, _ := c.resolve(d)
	if h == nil {
		c.mu.Unlock()
		c.dropLog.Warn(c.logger, "local job not fired: no handler on this client", "job", spec.Name, "handler", spec.Handler)
		return
	}
	// Local runs take a slot and their width like any other, so that dispatches are refused meanwhile, but
	// they are never refused themselves: the client's own jobs come first.
	c.seen.put(id, 1, decision{accepted: true, attempt: 1, acceptBy: now})
	ctx, ar := c.startRunLocked(id, 1, d.Width, spec.Name)
	c.mu.Unlock()
	c.stats.Accepted.Add(1)
	c.stats.LocalFired.Add(1)

	exec := &job.Execution{
		ID: id, Firing: id, Job: spec.Name, ScheduledAt: at, FiredAt: now, Trigger: job.TriggerLocal, Epoch: 0, Server: "",
		// Never rerunnable: a local run belongs to the client that fired it, no other client runs it.
		Handler: spec.Handler, Params: d.Params, Timeout: spec.Timeout, MaxRuns: 1,
		Width: spec.Routing.Width,
	}
	frame, err := wire.Encode(&wire.Ack{
		Header: wire.Header{From: c.cfg.ID, SentAt: now},
		ExecID: id, Job: spec.Name, Attempt: 1, Run: 1, Accepted: true, At: now, Local: exec,
	})
	if err != nil {
		c.logger.Error("cannot encode the ack of a local run", "execution", id, "err", err)
	} else {
		// No ackDelay: servers insert the execution document when they get this ack.
		c.mu.Lock()
		c.acks.put(id, 1, &pendingReport{
			frame: frame, next: now.Add(c.cfg.ResultRetry), wait: 2 * c.cfg.ResultRetry, sent: true, keep: true,
			kind: fallback.KindAck, execID: id, created: now,
		})
		c.mu.Unlock()
		if _, err := c.outbox.SendAny(frame); err != nil {
			c.logger.Debug("ack of a local run not sent yet", "execution", id, "err", err)
		}
	}
	// Not journaled: a local run's execution reaches the servers with its ack, which the journal does not
	// keep; a local run cut short by the client's death is lost with it, as its next firing comes anyway.
	go c.runHandler(ctx, d, 1, h, ar, "", now)
}
