package client

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/clover-sched/clover/internal/fallback"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/wire"
	"github.com/clover-sched/clover/internal/workflow"
)

// RequestRun asks the cluster to run jobName now, with params over the job's own, on behalf of this
// client's application. It never waits for a server: the request is sent, re-sent until a server confirms
// it, and put in the fallback queue (if configured) when no server answers, to be replayed, once, by the
// next leader. The execution's id is job.RequestExecutionID(jobName, the returned id). It may be called
// before Run; the request goes out once the client runs.
func (c *Client) RequestRun(jobName string, params map[string]string) (string, error) {
	if err := job.ValidateName(jobName); err != nil {
		return "", fmt.Errorf("client: request run: %w", err)
	}
	now := c.now()
	id := c.cfg.ID + "." + strconv.FormatInt(c.boot, 36) + "." + strconv.FormatInt(c.reqSeq.Add(1), 10)
	frame, err := wire.Encode(&wire.Request{
		Header: wire.Header{From: c.cfg.ID, SentAt: now},
		ReqID:  id, Job: jobName, Params: maps.Clone(params), At: now,
	})
	if err != nil {
		return "", fmt.Errorf("client: request run of %s: %w", jobName, err)
	}
	c.mu.Lock()
	c.requests[id] = &pendingReport{
		frame: frame, next: now, wait: c.cfg.ResultRetry,
		kind: fallback.KindRequest, execID: job.RequestExecutionID(jobName, id), created: now,
	}
	c.mu.Unlock()
	c.stats.Requested.Add(1)
	return id, nil
}

// PendingRequests is the number of run requests no server has confirmed yet and the fallback queue does
// not hold.
func (c *Client) PendingRequests() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.requests)
}

// undeliverable reports whether report p should go to the fallback queue: it waited Fallback.After and no
// server confirmed anything since it was made. A server that confirms other reports is alive and only
// slow (under load reports wait seconds for a receipt): the queue would add writes to a busy database.
func (c *Client) undeliverable(p *pendingReport, now time.Time) bool {
	return now.Sub(p.created) >= c.cfg.Fallback.After && c.lastReceipt.Load() < p.created.UnixNano()
}

// toFallback queues undelivered reports in the order they were made, so that a local run's ack comes
// before its result. A report the queue could not keep stays in memory and is tried again later; those
// made after it wait too, to keep the order.
func (c *Client) toFallback(ctx context.Context, reports []*pendingReport) {
	slices.SortStableFunc(reports, func(a, b *pendingReport) int { return a.created.Compare(b.created) })
	for _, p := range reports {
		e, err := c.queue.Put(ctx, p.kind, p.execID, p.frame)
		if err != nil {
			c.queueLog.Error(c.logger, "report kept in memory only: the fallback queue is unreachable and the spool cannot take it", "kind", p.kind, "execution", p.execID, "err", err)
			return
		}
		c.mu.Lock()
		p.queued = true
		if p.kind == fallback.KindRequest {
			// The queue owns a request from now on, so that requests run in the order the application made
			// them: a re-send reaching a server that came back could overtake requests queued before it.
			// (Results and local acks are still re-sent: each is about its own execution, order does not
			// matter to them, and the servers learn of them sooner than from the replay.)
			for id, q := range c.requests {
				if q == p {
					delete(c.requests, id)
				}
			}
		}
		c.mu.Unlock()
		c.stats.FallbackQueued.Add(1)
		c.logger.Info("no server confirms reports; queued in the fallback queue", "kind", p.kind, "execution", p.execID, "entry", e.ID)
	}
}

// flushToFallback queues every report no server has confirmed, whatever its age: the client is stopping,
// and a report in memory would be lost with it. A report a server did record is replayed harmlessly.
func (c *Client) flushToFallback(ctx context.Context) {
	var reports []*pendingReport
	c.mu.Lock()
	for _, m := range []byRun[*pendingReport]{c.acks, c.pending} {
		for _, runs := range m {
			for _, p := range runs {
				if p.kind != "" && !p.queued {
					reports = append(reports, p)
				}
			}
		}
	}
	for _, p := range c.requests {
		if !p.queued {
			reports = append(reports, p)
		}
	}
	c.mu.Unlock()
	if len(reports) > 0 {
		c.logger.Info("stopping: queuing what no server confirmed", "reports", len(reports))
	}
	c.toFallback(ctx, reports)
}

// declareIfAlone queues this client's declarations when it finds no server after Fallback.After: the
// leader that comes back creates the jobs even if this client is gone by then. (A client that finds a
// server needs no entry: the leader reads the declarations from ZooKeeper.)
func (c *Client) declareIfAlone(ctx context.Context) {
	c.mu.Lock()
	declared := slices.Clone(c.declared)
	c.mu.Unlock()
	if len(declared) == 0 {
		return
	}
	t := time.NewTimer(c.cfg.Fallback.After)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return
	case <-t.C:
	}
	if len(c.outbox.Peers()) > 0 {
		return
	}
	payload, err := json.Marshal(declared)
	if err != nil {
		c.logger.Error("cannot encode declarations for the fallback queue", "err", err)
		return
	}
	if _, err := c.queue.Put(ctx, fallback.KindDeclare, "", payload); err != nil {
		c.logger.Error("declarations not queued", "err", err)
		return
	}
	c.stats.FallbackQueued.Add(1)
	c.logger.Info("no server is up; declarations queued in the fallback queue", "jobs", len(declared))
}

// openQueue opens the fallback queue. MongoDB may be down now: the queue connects when it first needs to,
// and spools meanwhile.
func (c *Client) openQueue() error {
	f := c.cfg.Fallback
	if err := os.MkdirAll(f.SpoolDir, 0o700); err != nil {
		return fmt.Errorf("fallback spool dir: %w", err)
	}
	open := func(ctx context.Context) (fallback.Appender, error) {
		st, err := store.Open(ctx, f.MongoURI, f.Database, store.WithLogger(c.logger), store.WithoutIndexes())
		if err != nil {
			return nil, err
		}
		c.queueStore.Store(st)
		return st, nil
	}
	q, err := fallback.NewQueue(c.cfg.ID, f.SpoolDir, f.SpoolMaxBytes, open, c.logger.With("part", "fallback"), c.now)
	if err != nil {
		return err
	}
	// A secure cluster replays only entries signed with the client's registration key.
	q.SignWith(c.memberKey)
	c.mu.Lock() // Spooled may be called by the application at any time
	c.queue = q
	c.mu.Unlock()
	return nil
}

func (c *Client) closeQueue() {
	_ = c.queue.Close()
	if st := c.queueStore.Load(); st != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = st.Close(ctx)
	}
}

// Spooled is the number of reports in the local spool, waiting for MongoDB.
func (c *Client) Spooled() int {
	c.mu.Lock()
	q := c.queue
	c.mu.Unlock()
	if q == nil {
		return 0
	}
	return q.Spooled()
}

// RequestBatchRun asks the cluster to start a run of batch for cycle, at frequency, with params, on
// behalf of this client (the batch must list it in requested_by); note says why, for people. It is sent
// and confirmed like RequestRun's requests, and queued in the fallback queue when no server is up. A cycle
// runs once: asking again for one that ran, or one another client asked for, is harmless.
func (c *Client) RequestBatchRun(batch, cycle, frequency string, params map[string]string, note string) (string, error) {
	if err := workflow.ValidName("batch", batch); err != nil {
		return "", fmt.Errorf("client: request batch run: %w", err)
	}
	if err := workflow.ValidName("cycle", cycle); err != nil {
		return "", fmt.Errorf("client: request batch run of %s: %w", batch, err)
	}
	now := c.now()
	id := c.cfg.ID + "." + strconv.FormatInt(c.boot, 36) + "." + strconv.FormatInt(c.reqSeq.Add(1), 10)
	frame, err := wire.Encode(&wire.Request{
		Header: wire.Header{From: c.cfg.ID, SentAt: now},
		ReqID:  id, Batch: batch, Cycle: cycle, Frequency: frequency, Params: maps.Clone(params), Note: note, At: now,
	})
	if err != nil {
		return "", fmt.Errorf("client: request batch run of %s: %w", batch, err)
	}
	c.mu.Lock()
	c.requests[id] = &pendingReport{
		frame: frame, next: now, wait: c.cfg.ResultRetry,
		kind: fallback.KindRequest, execID: batch + "/" + cycle, created: now,
	}
	c.mu.Unlock()
	c.stats.Requested.Add(1)
	return id, nil
}
