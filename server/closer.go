package server

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/store"
)

// closer takes ended executions out of the store's open set into the history, in batches, off the
// intake's goroutine: it reads each execution with its events from the open set, appends it folded to the
// history (one record, written once), then removes it from the open set. An execution the open set says has
// not ended is left there: only what the store records as ended ever leaves the open set. Batching matters on
// FerretDB, where a read or a delete reads the whole open set: once a second for everything that ended in
// that second costs what once per execution would cost each time.
//
// Concurrency: add is called by the intake's goroutine, run owns the writes; mu guards pending and epoch.
type closer struct {
	store   closeStore
	span    time.Duration // of a history bucket
	size    int           // of a history bucket
	now     func() time.Time
	logger  *slog.Logger
	metrics *metrics
	writer  *store.HistoryWriter // run's own

	mu      sync.Mutex
	pending []string
	epoch   int64 // the newest term that asked for a close
	wake    chan struct{}
}

// closeStore is what the closer needs of the store.
type closeStore interface {
	OpenByID(ctx context.Context, ids []string) ([]job.Execution, error)
	CloseExecutions(ctx context.Context, ids []string) error
	NewHistoryWriter(epoch int64, span time.Duration, size int) *store.HistoryWriter
}

var _ closeStore = (*store.Store)(nil)

// closeEvery is how often the closer writes what it gathered.
const closeEvery = time.Second

// maxPendingCloses bounds what waits while the store refuses the closes; beyond it closes are dropped (the
// leader's sweep finds those executions ended and closes them later).
const maxPendingCloses = 100_000

func newCloser(st closeStore, h History, now func() time.Time, logger *slog.Logger, m *metrics) *closer {
	return &closer{store: st, span: h.bucketSpan(), size: h.BucketSize, now: now, logger: logger.With("component", "closer"), metrics: m, wake: make(chan struct{}, 1)}
}

// add queues the close of ids asked by the term of epoch.
func (c *closer) add(epoch int64, ids []string) {
	if len(ids) == 0 {
		return
	}
	c.mu.Lock()
	if room := maxPendingCloses - len(c.pending); room > 0 {
		c.pending = append(c.pending, ids[:min(len(ids), room)]...)
	}
	c.epoch = max(c.epoch, epoch)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *closer) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
		}
		c.mu.Lock()
		ids, epoch := c.pending, c.epoch
		c.pending = nil
		c.mu.Unlock()
		slices.Sort(ids)
		ids = slices.Compact(ids)
		for chunk := range slices.Chunk(ids, closeBatch) {
			if err := c.close(ctx, epoch, chunk); err != nil {
				if ctx.Err() != nil {
					return
				}
				c.metrics.storeErrors.WithLabelValues("close_executions").Inc()
				c.logger.Warn("closing ended executions failed; they are closed again later", "executions", len(chunk), "err", err)
				c.add(epoch, chunk)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(closeEvery):
		}
	}
}

// closeBatch bounds the executions one close reads and removes at once.
const closeBatch = 1000

// close moves the ended executions among ids from the open set to the history.
func (c *closer) close(ctx context.Context, epoch int64, ids []string) error {
	sctx, cancel := storeCtx(ctx)
	defer cancel()
	execs, err := c.store.OpenByID(sctx, ids)
	if err != nil {
		return err
	}
	open := map[string]bool{}
	var ended []job.Execution
	for _, e := range execs {
		if e.State.Terminal() {
			ended = append(ended, e)
		} else {
			open[e.ID] = true
			c.logger.Warn("asked to close an execution the store says has not ended; it stays open", "execution", e.ID, "state", e.State)
		}
	}
	if c.writer == nil || c.writer.Epoch() < epoch {
		c.writer = c.store.NewHistoryWriter(epoch, c.span, c.size)
	}
	if err := c.writer.Append(sctx, ended, c.now()); err != nil {
		return err
	}
	// Ids without an execution in the open set are closed too: their events are strays.
	return c.store.CloseExecutions(sctx, slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return open[id] }))
}
