package client

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/transport"
	"github.com/clover-sched/clover/internal/wire"
)

// decision is how a client answered the dispatches of one run of an execution.
type decision struct {
	accepted bool
	code     string
	reason   string
	attempt  int
	acceptBy time.Time
}

// runOf is a dispatch's run with its default: 0 means 1.
func runOf(n int) int { return max(n, 1) }

// ackDelay is how long an accepted execution's ack waits before it is sent: a run that ends sooner reports
// only its result, which says more, and halves the reports of short jobs.
const ackDelay = 200 * time.Millisecond

// receive handles one frame from a server. With CURVE, only a holder of the servers' secret key can have
// sent it (the inbox takes the client role). Nothing a server sends can crash the client: frames that do not
// decode, and kinds a client does not take, are dropped and counted.
func (c *Client) receive(frame []byte, from transport.Sender) {
	m, err := wire.Decode(frame)
	if err != nil {
		c.stats.Dropped.Add(1)
		c.dropLog.Warn(c.logger, "dropped undecodable frame", "peer", from.Addr, "bytes", len(frame), "err", err)
		return
	}
	switch x := m.(type) {
	case *wire.Dispatch:
		c.onDispatch(x)
	case *wire.Stop:
		c.onStop(x)
	case *wire.OutputAsk:
		c.onOutputAsk(x)
	case *wire.Receipt:
		c.lastReceipt.Store(c.now().UnixNano())
		c.mu.Lock()
		for _, id := range x.Requests {
			delete(c.requests, id)
		}
		for i, id := range x.ExecIDs {
			if i < len(x.ExecRuns) {
				c.pending.del(id, runOf(x.ExecRuns[i]))
			} else {
				confirm(c.pending, id)
			}
		}
		for i, id := range x.Acked {
			if i < len(x.AckedRuns) {
				c.acks.del(id, runOf(x.AckedRuns[i]))
			} else {
				confirm(c.acks, id)
			}
		}
		c.mu.Unlock()
	default:
		c.stats.Dropped.Add(1)
		c.dropLog.Warn(c.logger, "dropped frame of a kind clients do not take", "peer", from.Addr, "kind", m.Kind().String(), "from", wire.From(m))
	}
}

// fenced reports whether a frame of the leader with epoch comes from a deposed leader, counting it if so,
// and otherwise raises the newest epoch seen.
func (c *Client) fenced(epoch int64) bool {
	if epoch < c.maxEpoch.Load() {
		c.stats.StaleEpoch.Add(1)
		return true
	}
	c.raiseEpoch(epoch)
	return false
}

func (c *Client) onDispatch(d *wire.Dispatch) {
	if c.fenced(d.Epoch) {
		c.logger.Warn("ignored dispatch from a deposed leader", "execution", d.ExecID, "from", d.From, "epoch", d.Epoch, "current_epoch", c.maxEpoch.Load())
		return
	}
	now := c.now()
	run := runOf(d.Run)

	c.mu.Lock()
	// A run of an execution runs here at most once: a dispatch of a run seen before gets the same answer,
	// unless it was refused and this is a later attempt (the leader offers it again, say after capacity
	// freed up). A retry is a new run of the same execution id, and a new decision.
	if prev, ok := c.seen.get(d.ExecID, run); ok && (prev.accepted || d.Attempt <= prev.attempt) {
		c.mu.Unlock()
		c.stats.Duplicates.Add(1)
		c.ack(d, run, prev.accepted, prev.code, prev.reason, true)
		return
	}
	// A late re-send of a run older than one already decided (whose own answer is forgotten): the leader
	// has moved on to the later run and needs no answer for this one, and it must not run now.
	if newest, ok := c.seen.newest(d.ExecID); ok && run < newest {
		c.mu.Unlock()
		c.stats.Duplicates.Add(1)
		c.logger.Debug("ignored dispatch of an earlier run", "execution", d.ExecID, "run", run, "newest_run", newest)
		return
	}
	h, shell := c.resolve(d)
	var code, reason string
	switch {
	case h == nil:
		code, reason = wire.RefuseNoHandler, fmt.Sprintf("no handler %q on this client", d.Handler)
	case now.After(d.AcceptBy):
		code, reason = wire.RefuseLate, "accept-by has passed; the leader may have given it to another client"
	case c.running >= c.cfg.Capacity:
		code, reason = wire.RefuseBusy, fmt.Sprintf("at capacity (%d running)", c.running)
	case c.cfg.Width > 0 && c.width+d.Width > c.cfg.Width:
		code, reason = wire.RefuseBusy, fmt.Sprintf("width %d does not fit (%d of %d taken)", d.Width, c.width, c.cfg.Width)
	}
	accepted := code == ""
	c.seen.put(d.ExecID, run, decision{accepted: accepted, code: code, reason: reason, attempt: d.Attempt, acceptBy: d.AcceptBy})
	var ctx context.Context
	var ar *activeRun
	if accepted {
		ctx, ar = c.startRunLocked(d.ExecID, run, d.Width, "")
		ar.token = d.Token
	}
	c.mu.Unlock()

	c.ack(d, run, accepted, code, reason, false)
	if !accepted {
		c.stats.Refused.Add(1)
		return
	}
	c.stats.Accepted.Add(1)
	go c.execute(ctx, d, run, h, shell, ar)
}

// startRunLocked takes a slot and the width for a run and lists it as active; c.mu is held. The context
// returned is canceled, with a *stopError cause, when the leader stops the run.
func (c *Client) startRunLocked(id string, run, width int, local string) (context.Context, *activeRun) {
	ctx, cancel := context.WithCancelCause(context.Background())
	ar := &activeRun{width: width, local: local, cancel: cancel}
	c.running++
	c.width += width
	c.active.put(id, run, ar)
	if local != "" {
		c.localBusy[local] = true
	}
	return ctx, ar
}

// onStop stops a run the leader wants stopped: its context is canceled (the shell handler kills the
// command's whole process group) and it reports a final failure.
func (c *Client) onStop(s *wire.Stop) {
	if c.fenced(s.Epoch) {
		c.logger.Warn("ignored stop from a deposed leader", "execution", s.ExecID, "from", s.From, "epoch", s.Epoch, "current_epoch", c.maxEpoch.Load())
		return
	}
	reason := s.Reason
	if reason == "" {
		reason = "asked by " + s.From
	}
	c.mu.Lock()
	runs := slices.Collect(maps.Values(c.active[s.ExecID]))
	c.mu.Unlock()
	if len(runs) == 0 {
		c.logger.Debug("stop of an execution that does not run here", "execution", s.ExecID, "from", s.From)
		return
	}
	c.logger.Info("stopping execution", "execution", s.ExecID, "reason", reason)
	for _, ar := range runs {
		ar.cancel(&stopError{reason: reason})
	}
}

// resolve finds the handler for a dispatch: a Go handler named like the job's handler, then the shell
// handler if offered (shell), then a Go handler named like the job.
func (c *Client) resolve(d *wire.Dispatch) (h HandlerFunc, shell bool) {
	if h, ok := c.handlers[d.Handler]; ok {
		return h, false
	}
	if d.Handler == job.HandlerShell && slices.Contains(c.cfg.Handlers, job.HandlerShell) {
		if !c.ownCommand(d) {
			return nil, false
		}
		return runShell, true
	}
	if h, ok := c.handlers[d.Job]; ok {
		return h, false
	}
	return nil, false
}

// ownCommand reports whether a shell dispatch of a job this client declares runs the command it declares.
// Another client declaring the job differently may have had its version stored first: this client then
// refuses it rather than run a command it never declared. (Shell jobs it does not declare were written by
// an admin.)
func (c *Client) ownCommand(d *wire.Dispatch) bool {
	for _, s := range c.declared {
		if s.Name == d.Job && s.Handler == job.HandlerShell {
			return s.Params["command"] == d.Params["command"]
		}
	}
	return true
}

// ack answers a dispatch of run. A refusal, or the answer to a dispatch seen before (now), goes out at
// once. A new acceptance is held for ackDelay (a short run reports its result instead), then sent and
// re-sent until a server confirms it is recorded: a new leader that finds an execution without a recorded
// ack may, after a while, give it to another client.
func (c *Client) ack(d *wire.Dispatch, run int, accepted bool, code, reason string, now bool) {
	at := c.now()
	frame, err := wire.Encode(&wire.Ack{
		Header: wire.Header{From: c.cfg.ID, Epoch: d.Epoch, SentAt: at},
		ExecID: d.ExecID, Job: d.Job, Attempt: d.Attempt, Run: run, Accepted: accepted, Code: code, Reason: reason, At: at,
		Token: d.Token,
	})
	if err != nil {
		c.logger.Error("cannot encode ack", "execution", d.ExecID, "err", err)
		return
	}
	if accepted && !now {
		c.mu.Lock()
		if !c.pending.has(d.ExecID, run) {
			c.acks.put(d.ExecID, run, &pendingReport{frame: frame, next: at.Add(ackDelay), wait: c.cfg.ResultRetry})
		}
		c.mu.Unlock()
		return
	}
	if _, err := c.outbox.SendAny(frame); err != nil {
		// The leader re-sends the dispatch and gets the same answer then.
		c.logger.Debug("ack not sent", "execution", d.ExecID, "err", err)
	}
}
