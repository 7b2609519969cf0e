package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/clover-sched/clover/internal/fallback"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/wire"
)

// activeRun is a run under way here.
type activeRun struct {
	token    string // the dispatch's run token, listed in heartbeats
	width    int
	local    string // the job's name for a run of a local job, "" otherwise
	cancel   context.CancelCauseFunc
	progress *wire.Progress // the handler's last progress report; nil before the first (under c.mu)
	// output is what the handler writes to JobContext.Output (for a journaled shell run, only its tail at
	// the end: the command writes to a file in its run directory); under c.mu.
	output *outputLog
}

// outputKept is how much of a run's output written through JobContext.Output the client keeps for
// readers (see outputLog); the report has the last job.MaxOutput bytes of it.
const outputKept = 64 << 10

// stopError is the cause of a run's context when the leader stopped it.
type stopError struct{ reason string }

// execute journals a run of a dispatched execution, then runs it (see runHandler). A run the journal
// cannot take runs all the same: refusing work because a disk is full would be worse than the orphan it
// may leave if the client dies.
func (c *Client) execute(ctx context.Context, d *wire.Dispatch, run int, h HandlerFunc, shell bool, ar *activeRun) {
	started := c.now()
	dir, err := c.journal.begin(d, run, shell, started)
	switch {
	case errors.Is(err, errNoJournal):
	case err != nil:
		c.logger.Error("run not journaled: if this client dies before it ends, its execution stays orphaned", "execution", d.ExecID, "err", err)
	default:
		c.mu.Lock()
		c.journaled.put(d.ExecID, run, dir)
		c.mu.Unlock()
	}
	c.runHandler(ctx, d, run, h, ar, dir, started)
}

// runHandler runs the handler and reports its result. started is when the run started (before a restart,
// for a run the journal gave back); dir its journal directory.
func (c *Client) runHandler(ctx context.Context, d *wire.Dispatch, run int, h HandlerFunc, ar *activeRun, dir string, started time.Time) {
	defer ar.cancel(nil)
	if d.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, started.Add(time.Duration(d.Timeout)))
		defer cancel()
	}
	out := newOutputLog(outputKept)
	c.mu.Lock()
	ar.output = out
	c.mu.Unlock()
	jc := JobContext{
		ExecutionID: d.ExecID, Job: d.Job, Client: c.cfg.ID, Params: d.Params, ScheduledAt: d.ScheduledAt,
		Attempt: d.Attempt, Run: run, Shard: d.Shard, Trigger: d.Trigger, Output: out,
		Logger: slog.New(slog.NewTextHandler(out, nil)).With("execution", d.ExecID),
		runDir: dir, shellEnv: c.cfg.ShellEnv, spawn: c.spawn,
	}
	jc.progress = func(percent int, message string) {
		percent = min(max(percent, 0), 100)
		if len(message) > wire.MaxProgressMessage {
			message = strings.ToValidUTF8(message[:wire.MaxProgressMessage], "")
		}
		fmt.Fprintf(out, "progress %d%%: %s\n", percent, message)
		c.mu.Lock()
		ar.progress = &wire.Progress{ExecID: d.ExecID, Run: run, Percent: percent, Message: message, At: c.now()}
		c.mu.Unlock()
	}
	err := safeCall(ctx, h, jc)
	var stopped *stopError
	errors.As(context.Cause(ctx), &stopped) // a stop asked before the handler returned
	finished := c.now()

	res := job.Result{Status: job.StateSucceeded, Duration: job.Duration(finished.Sub(started)), Output: out.tail(job.MaxOutput), OutputBytes: out.size()}
	if dir != "" {
		res.OutputBytes = out.fileBytes(dir)
	}
	switch {
	case stopped != nil:
		// Stopped on purpose: no retry may follow, whatever the job's policy.
		res.Status, res.Error, res.ExitCode, res.Final = job.StateFailed, stopped.Error(), 1, true
		var ee interface{ ExitCode() int }
		if errors.As(err, &ee) && ee.ExitCode() > 0 {
			res.ExitCode = ee.ExitCode()
		}
		c.stats.Stopped.Add(1)
		c.stats.Failed.Add(1)
	case err != nil:
		res.Status, res.Error, res.ExitCode = job.StateFailed, err.Error(), 1
		var ee interface{ ExitCode() int }
		if errors.As(err, &ee) {
			res.ExitCode = ee.ExitCode()
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			res.Error = fmt.Sprintf("timed out after %s: %v", time.Duration(d.Timeout), err)
		}
		c.stats.Failed.Add(1)
	default:
		c.stats.Succeeded.Add(1)
	}
	frame, encErr := wire.Encode(&wire.Result{
		Header: wire.Header{From: c.cfg.ID, Epoch: d.Epoch, SentAt: finished},
		ExecID: d.ExecID, Job: d.Job, Attempt: d.Attempt, Run: run, Result: res, StartedAt: started, FinishedAt: finished,
		Token: d.Token,
	})
	defer func() {
		select {
		case c.runEnded <- struct{}{}:
		default:
		}
	}()
	if encErr == nil {
		// Before the run stops counting as under way: a restart from here on reports this result.
		_ = c.journal.result(d.ExecID, run, frame)
	}
	c.mu.Lock()
	c.running--
	c.width -= ar.width
	c.active.del(d.ExecID, run)
	if ar.local != "" {
		delete(c.localBusy, ar.local)
	}
	if p, ok := c.acks.get(d.ExecID, run); ok && !p.keep {
		c.acks.del(d.ExecID, run) // the result says more than the ack
	}
	if encErr == nil {
		c.pending.put(d.ExecID, run, &pendingReport{
			frame: frame, next: finished.Add(c.cfg.ResultRetry), wait: 2 * c.cfg.ResultRetry, sent: true,
			kind: fallback.KindResult, execID: d.ExecID, created: finished,
		})
	}
	c.mu.Unlock()
	if encErr != nil {
		c.logger.Error("cannot encode result", "execution", d.ExecID, "err", encErr)
		return
	}
	_, _ = c.outbox.SendAny(frame)
}

func safeCall(ctx context.Context, h HandlerFunc, jc JobContext) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return h(ctx, jc)
}
