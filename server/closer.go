package server

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
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
	batch   int                  // ids one close handles; halved when a close times out, grown back after

	mu      sync.Mutex
	pending []closeReq
	// queued: the ids pending or being closed. The sweep finds what waits here still in the open set and
	// asks again, with a recheck of the history: one close each is enough.
	queued map[string]bool
	epoch  int64 // the newest term that asked for a close
	wake   chan struct{}
}

// closeReq is one execution to close; recheck: it may be in the history already (see leaderDeps.closeOpen).
type closeReq struct {
	id      string
	recheck bool
}

// closeStore is what the closer needs of the store.
type closeStore interface {
	OpenByID(ctx context.Context, ids []string) ([]job.Execution, error)
	CloseExecutions(ctx context.Context, ids []string) error
	InHistory(ctx context.Context, ids []string) (map[string]bool, error)
	NewHistoryWriter(epoch int64, span time.Duration, size int) *store.HistoryWriter
}

var _ closeStore = (*store.Store)(nil)

const (
	// closeEvery is how often the closer writes what it gathered, unless closing takes long (closePause).
	closeEvery = time.Second
	// closeDuty and maxClosePause: see closePause.
	closeDuty     = 9
	maxClosePause = time.Minute
	// maxPendingCloses bounds what waits while the store refuses the closes; beyond it closes are dropped
	// (the leader's sweep finds those executions ended and closes them later).
	maxPendingCloses = 100_000
	// maxCloseBatch and minCloseBatch bound the ids one close reads and removes at once. Large: on FerretDB a
	// read or delete by a list of ids scans the open set whatever the list's length, so a close of 8,000
	// ids moved 600 executions a second where closes of 500 moved 200 (measured: docs/design.md, 19).
	maxCloseBatch = store.MaxCloseBatch
	minCloseBatch = 50
)

func newCloser(st closeStore, h History, now func() time.Time, logger *slog.Logger, m *metrics) *closer {
	return &closer{
		store: st, span: h.bucketSpan(), size: h.BucketSize, now: now, logger: logger.With("component", "closer"),
		metrics: m, wake: make(chan struct{}, 1), batch: maxCloseBatch, queued: map[string]bool{},
	}
}

// add queues the closes asked by the term of epoch.
func (c *closer) add(epoch int64, reqs []closeReq) {
	if len(reqs) == 0 {
		return
	}
	c.mu.Lock()
	dropped := 0
	for _, r := range reqs {
		switch {
		case c.queued[r.id]:
			// Pending or under way: that close does it (and rechecks if it fails, see retry).
		case len(c.pending) >= maxPendingCloses:
			dropped++
		default:
			c.pending = append(c.pending, r)
			c.queued[r.id] = true
		}
	}
	if dropped > 0 {
		c.metrics.closesDropped.Add(float64(dropped))
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
		reqs, epoch := c.pending, c.epoch
		c.pending = nil
		c.mu.Unlock()
		slices.SortFunc(reqs, func(a, b closeReq) int { return strings.Compare(a.id, b.id) })
		reqs = slices.CompactFunc(reqs, func(a, b closeReq) bool { return a.id == b.id })
		// Paused after in proportion to the round, unless it was behind (more than one close) or failed:
		// then the pause is the least, so that what waits cannot feed its own wait.
		var spent time.Duration
		behind := len(reqs) > c.batch
		for len(reqs) > 0 {
			chunk := reqs[:min(c.batch, len(reqs))]
			reqs = reqs[len(chunk):]
			began := time.Now()
			err := c.close(ctx, epoch, chunk)
			switch {
			case err == nil:
				spent += time.Since(began)
				c.batch = min(c.batch*2, maxCloseBatch)
				c.done(chunk)
				continue
			case ctx.Err() != nil:
				return
			case errors.Is(err, context.DeadlineExceeded):
				// A large open set on a slow store: smaller closes, each within its deadline.
				c.batch = max(c.batch/2, minCloseBatch)
			}
			behind = true
			c.metrics.storeErrors.WithLabelValues("close_executions").Inc()
			c.logger.Warn("closing ended executions failed; they are closed again later", "executions", len(chunk), "err", err)
			c.retry(epoch, chunk)
		}
		pause := closePause(spent)
		if behind {
			pause = closeEvery
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
	}
}

// done forgets the ids of a close that succeeded.
func (c *closer) done(reqs []closeReq) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range reqs {
		delete(c.queued, r.id)
	}
}

// retry queues a failed close again, each id rechecked: the failure may have come after its history record
// was written (before the delete), and a second record must not be.
func (c *closer) retry(epoch int64, reqs []closeReq) {
	c.mu.Lock()
	for _, r := range reqs {
		r.recheck = true
		c.pending = append(c.pending, r) // still queued: add would take them for a duplicate
	}
	c.epoch = max(c.epoch, epoch)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// closePause is how long the closer waits after a round of closes that took spent. A close's reads and
// deletes scan the open set on FerretDB, whatever the number of ids, so closing often costs the store time in
// proportion to the set's size each time: waiting in proportion to the time a round took keeps the closer's
// share of the store's time near 1/(1+closeDuty) however large the set grows (the kept firings of many jobs),
// at the price of executions waiting longer to be closed (they are readable in the open set meanwhile).
func closePause(spent time.Duration) time.Duration {
	return min(max(closeEvery, closeDuty*spent), maxClosePause)
}

// close moves the ended executions among reqs from the open set to the history.
func (c *closer) close(ctx context.Context, epoch int64, reqs []closeReq) error {
	sctx, cancel := context.WithTimeout(ctx, 4*storeTimeout)
	defer cancel()
	ids := make([]string, len(reqs))
	var recheck []string
	for i, r := range reqs {
		ids[i] = r.id
		if r.recheck {
			recheck = append(recheck, r.id)
		}
	}
	execs, err := c.store.OpenByID(sctx, ids)
	if err != nil {
		return err
	}
	recorded, err := c.store.InHistory(sctx, recheck)
	if err != nil {
		return err
	}
	open := map[string]bool{}
	var ended []job.Execution
	for _, e := range execs {
		switch {
		case !e.State.Terminal():
			open[e.ID] = true
			c.logger.Warn("asked to close an execution the store says has not ended; it stays open", "execution", e.ID, "state", e.State)
		case !recorded[e.ID]: // one already in the history (its closer died before taking it out) is not recorded twice
			ended = append(ended, e)
		}
	}
	if c.writer == nil || c.writer.Epoch() < epoch {
		c.writer = c.store.NewHistoryWriter(epoch, c.span, c.size)
	}
	if err := c.writer.Append(sctx, ended, c.now()); err != nil {
		return err
	}
	// Ids without an execution in the open set are closed too: their events are strays.
	return c.store.CloseExecutions(sctx, slices.DeleteFunc(ids, func(id string) bool { return open[id] }))
}
