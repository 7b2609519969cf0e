package client

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/clover-sched/clover/internal/fallback"
	"github.com/clover-sched/clover/internal/wire"
)

// pendingReport is an ack or a result waiting for a receipt. It is sent at next, then again with a
// doubling backoff, so that a server that is slow to record reports is not buried under re-sends.
type pendingReport struct {
	frame []byte
	next  time.Time
	wait  time.Duration
	sent  bool // handed to the outbox at least once: only then can a server have recorded it
	// keep: the result does not replace it (the ack of a local run carries the execution itself, which
	// servers must record before the result means anything).
	keep bool
	// What the fallback queue needs: the entry's kind ("" for a report never queued, such as the ack of a
	// dispatched run, which the leader re-sends), the execution, when the report was made, and whether it
	// is queued already. A queued report is still re-sent until a receipt: the queue is the safety net,
	// the servers the way.
	kind    fallback.Kind
	execID  string
	created time.Time
	queued  bool
}

// byRun maps an execution id and a run number to a value. Retries are new runs of the same execution id,
// and what is known about each run (its answer, its reports) must not be confused with another's.
type byRun[T any] map[string]map[int]T

func (m byRun[T]) get(id string, run int) (T, bool) {
	v, ok := m[id][run]
	return v, ok
}

func (m byRun[T]) put(id string, run int, v T) {
	runs := m[id]
	if runs == nil {
		runs = map[int]T{}
		m[id] = runs
	}
	runs[run] = v
}

func (m byRun[T]) del(id string, run int) {
	if runs, ok := m[id]; ok {
		delete(runs, run)
		if len(runs) == 0 {
			delete(m, id)
		}
	}
}

func (m byRun[T]) has(id string, run int) bool {
	_, ok := m[id][run]
	return ok
}

// newest is the highest run known for id.
func (m byRun[T]) newest(id string) (int, bool) {
	n, ok := 0, false
	for run := range m[id] {
		n, ok = max(n, run), true
	}
	return n, ok
}

func (m byRun[T]) len() int {
	n := 0
	for _, runs := range m {
		n += len(runs)
	}
	return n
}

// confirm handles a receipt naming id without its run (from a server that does not send runs), so it
// cannot say which run's report a server recorded. It clears every report of id whose run is at most the newest run of id
// with a report already sent (a report never sent cannot have been recorded):
//   - clearing an older run is safe: a run n+1 exists only because the leader learned how run n ended, and
//     the leader keeps a reported result until it is recorded (it records it itself after a minute);
//   - the newest run is cleared too, even though the receipt may be a late one meant for an older run.
//     That window is small (a receipt of run n arriving after run n+1 reported), and it is covered the
//     same way: the leader heard run n+1's report when a server got it.
//
// Matching each receipt to one run would need runs in receipts; keeping a report too long only costs
// re-sends, which servers answer with a receipt again, but a report kept forever would never stop.
func confirm(m byRun[*pendingReport], id string) {
	newest, found := 0, false
	for run, p := range m[id] {
		if p.sent && (!found || run > newest) {
			newest, found = run, true
		}
	}
	if !found {
		return
	}
	for run := range m[id] {
		if run <= newest {
			m.del(id, run)
		}
	}
}

// maxReportBackoff caps the backoff of re-sent reports.
const maxReportBackoff = 30 * time.Second

// resendLoop sends held acks when they are due and re-sends acks and results until a server confirms
// them, each with its own doubling backoff, and forgets old answers to dispatches.
func (c *Client) resendLoop(ctx context.Context) {
	t := time.NewTicker(ackDelay / 2)
	defer t.Stop()
	var lastPrune time.Time
	var done []confirmedRun // journaled runs whose result a server confirmed
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := c.now()
		var frames [][]byte
		var undelivered []*pendingReport
		resend := func(p *pendingReport) {
			if !now.Before(p.next) {
				p.next = now.Add(p.wait)
				p.wait = min(2*p.wait, maxReportBackoff)
				p.sent = true
				frames = append(frames, p.frame)
			}
			if c.queue != nil && p.kind != "" && !p.queued && c.undeliverable(p, now) {
				undelivered = append(undelivered, p)
			}
		}
		c.mu.Lock()
		for _, m := range []byRun[*pendingReport]{c.acks, c.pending} {
			for _, runs := range m {
				for _, p := range runs {
					resend(p)
				}
			}
		}
		// Requests in the order the application made them: one that is late must not overtake another.
		for _, p := range slices.SortedFunc(maps.Values(c.requests), func(a, b *pendingReport) int { return a.created.Compare(b.created) }) {
			resend(p)
		}
		// The leader re-sends a dispatch whose answer it has not heard, with a backoff. Keep every answer
		// while its run goes on or its reports wait for a receipt, and for decisionMemory after accept-by.
		// A re-send that comes later is refused as late, and the leader checks the store before it hands
		// the execution to anyone else.
		if now.Sub(lastPrune) > 5*time.Second {
			lastPrune = now
			for id, runs := range c.seen {
				for run, d := range runs {
					if !c.acks.has(id, run) && !c.pending.has(id, run) && !c.active.has(id, run) && now.Sub(d.acceptBy) > decisionMemory {
						c.seen.del(id, run)
					}
				}
			}
		}
		// A run whose result a server confirmed (or the fallback queue took) is out of the journal, at the
		// next tick: its slot then serves the next run. (Every 5 s, a busy client's slots waited that long,
		// and its runs made new ones meanwhile: a new directory and files, each a new inode.)
		for id, runs := range c.journaled {
			for run, dir := range runs {
				if !c.pending.has(id, run) && !c.active.has(id, run) {
					c.journaled.del(id, run)
					done = append(done, confirmedRun{id, run, dir})
				}
			}
		}
		c.mu.Unlock()
		for _, r := range done { // file work, not under the lock
			if err := c.journal.end(r.id, r.run, r.dir); err != nil {
				c.logger.Warn("cannot take a run out of the journal; a restart reports it again", "execution", r.id, "err", err)
			}
		}
		done = done[:0]
		for _, f := range frames {
			if _, err := c.outbox.SendAny(f); err != nil {
				break
			}
		}
		c.toFallback(ctx, undelivered)
	}
}

// decisionMemory is how long after its accept-by a client remembers how it answered a dispatch.
const decisionMemory = time.Minute

// heartbeatLoop sends a heartbeat every LeaseRenew: it renews the leases of the runs under way here. The
// leader treats a run that no heartbeat lists for a while as lost.
func (c *Client) heartbeatLoop(ctx context.Context) {
	t := time.NewTicker(c.cfg.LeaseRenew)
	defer t.Stop()
	for {
		c.heartbeat()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// heartbeat sends one heartbeat listing the executions running here (from acceptance until their result
// is produced) to the leader if it is known and registered, else to any server (which passes it on).
func (c *Client) heartbeat() {
	c.mu.Lock()
	var running, tokens []string
	var runs []int
	var progress []wire.Progress
	for _, id := range slices.Sorted(maps.Keys(c.active)) {
		for _, run := range slices.Sorted(maps.Keys(c.active[id])) {
			running, runs, tokens = append(running, id), append(runs, run), append(tokens, c.active[id][run].token)
			if p := c.active[id][run].progress; p != nil {
				progress = append(progress, *p)
			}
		}
	}
	// Runs that ended and whose result waits for a receipt: this client still answers for them.
	var ended []string
	var endedRuns []int
	for _, id := range slices.Sorted(maps.Keys(c.pending)) {
		for _, run := range slices.Sorted(maps.Keys(c.pending[id])) {
			ended, endedRuns = append(ended, id), append(endedRuns, run)
		}
	}
	c.mu.Unlock()
	frame, err := wire.Encode(&wire.Heartbeat{
		Header:  wire.Header{From: c.cfg.ID, Epoch: c.maxEpoch.Load(), SentAt: c.now()},
		Running: running, Runs: runs, Tokens: tokens, Capacity: c.cfg.Capacity, Ended: ended, EndedRuns: endedRuns, Progress: progress,
	})
	if err != nil {
		c.logger.Error("cannot encode heartbeat", "err", err)
		return
	}
	if l := c.leaderID(); l != "" && slices.Contains(c.outbox.Peers(), l) {
		if err := c.outbox.Send(l, frame); err == nil {
			return
		}
	}
	if _, err := c.outbox.SendAny(frame); err != nil {
		c.logger.Debug("heartbeat not sent", "err", err)
	}
}

// PendingResults is the number of results not yet confirmed by a server.
func (c *Client) PendingResults() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pending.len()
}

// confirmedRun is a journaled run whose result a server confirmed.
type confirmedRun struct {
	id  string
	run int
	dir string
}
