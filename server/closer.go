package server

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// closer takes ended executions out of the store's open set in batches, off the intake's goroutine: on
// FerretDB a delete reads the whole open set, so one delete a second for everything that ended in that
// second costs what one delete per execution would cost each time.
//
// Concurrency: add is called by the intake's goroutine, run owns the writes; mu guards pending.
type closer struct {
	store interface {
		CloseExecutions(ctx context.Context, ids []string) error
	}
	logger  *slog.Logger
	metrics *metrics

	mu      sync.Mutex
	pending []string
	wake    chan struct{}
}

// closeEvery is how often the closer writes what it gathered.
const closeEvery = time.Second

// maxPendingCloses bounds what waits while the store refuses the closes; beyond it closes are dropped (the
// leader's sweep finds those executions ended and closes them later).
const maxPendingCloses = 100_000

func newCloser(store interface {
	CloseExecutions(ctx context.Context, ids []string) error
}, logger *slog.Logger, m *metrics) *closer {
	return &closer{store: store, logger: logger.With("component", "closer"), metrics: m, wake: make(chan struct{}, 1)}
}

func (c *closer) add(ids []string) {
	if len(ids) == 0 {
		return
	}
	c.mu.Lock()
	if room := maxPendingCloses - len(c.pending); room > 0 {
		c.pending = append(c.pending, ids[:min(len(ids), room)]...)
	}
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
		ids := c.pending
		c.pending = nil
		c.mu.Unlock()
		if len(ids) > 0 {
			sctx, cancel := storeCtx(ctx)
			err := c.store.CloseExecutions(sctx, ids)
			cancel()
			if err != nil && ctx.Err() == nil {
				c.metrics.storeErrors.WithLabelValues("close_executions").Inc()
				c.logger.Warn("closing ended executions failed; they are closed again later", "executions", len(ids), "err", err)
				c.add(ids)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(closeEvery):
		}
	}
}
