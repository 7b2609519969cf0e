package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/clover-sched/clover/internal/schedule"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/wire"
)

// Batches with a schedule start runs on their own. A scheduled run's cycle is its fire time written in
// the batch's cycle format, and a cycle runs once (its run's key): a term that fires a time an earlier
// term fired meets the run, and a term that starts after a fire time it missed starts that cycle late,
// once, unless it ran. Times before the batch was last written are never caught up (a batch defined at
// 09:00 with a 01:00 schedule does not start today's run on the next failover).

// batchCatchUp bounds how far back a new term looks for a scheduled run nobody started.
const batchCatchUp = 24 * time.Hour

type batchSchedule struct {
	batch   store.Batch
	sched   *schedule.Schedule
	next    time.Time
	written time.Time // no catch-up before it
}

// batchChanged tells the loop a batch was written or deleted (its schedule may have changed).
type batchChanged struct{ name string }

// loadBatchSchedules reads the batches and arms the scheduled ones, catching up on the latest fire time
// since a day ago (or since the batch was written) whose cycle never ran.
func (l *leader) loadBatchSchedules(ctx context.Context) error {
	var batches []store.Batch
	err := l.retryRead(ctx, "read the batches", func(ctx context.Context) error {
		var err error
		batches, err = l.batchStore.ListBatches(ctx)
		return err
	})
	if err != nil {
		return err
	}
	for _, b := range batches {
		l.armBatch(b, true)
	}
	return nil
}

// armBatch installs (or removes) a batch's schedule; catchUp also fires its latest missed time.
func (l *leader) armBatch(b store.Batch, catchUp bool) {
	delete(l.batchScheds, b.Name)
	if b.Deleted || b.Definition.Schedule == "" {
		return
	}
	sched, err := schedule.Parse(b.Definition.Schedule, b.Definition.TimeZone)
	if err != nil {
		l.logger.Error("batch schedule skipped: bad schedule in store", "batch", b.Name, "err", err)
		return
	}
	now := l.now()
	bs := &batchSchedule{batch: b, sched: sched, next: sched.Next(now), written: b.UpdatedAt}
	if catchUp {
		from := now.Add(-batchCatchUp)
		if b.UpdatedAt.After(from) {
			from = b.UpdatedAt
		}
		if latest := sched.Latest(from, now); !latest.IsZero() {
			bs.next = latest
		}
	}
	if !bs.next.IsZero() {
		l.batchScheds[b.Name] = bs
	}
}

// fireBatchSchedules starts the scheduled runs that are due.
func (l *leader) fireBatchSchedules(ctx context.Context, now time.Time) {
	for name, bs := range l.batchScheds {
		if bs.next.After(now) {
			continue
		}
		at := bs.next
		bs.next = bs.sched.Next(now)
		if bs.next.IsZero() {
			delete(l.batchScheds, name)
		}
		d := bs.batch.Definition
		n := batchOpNote{op: "run", batch: name, cycle: at.In(bs.sched.Location()).Format(d.Layout()), frequency: d.Frequency,
			who: "schedule", why: "scheduled at " + at.UTC().Format(time.RFC3339), trigger: "schedule"}
		rep := l.startRun(ctx, n)
		switch {
		case errors.Is(rep.err, errBatchRunExists):
			l.logger.Debug("scheduled batch run exists already", "batch", name, "cycle", n.cycle)
		case rep.err != nil:
			l.logger.Error("scheduled batch run not started", "batch", name, "cycle", n.cycle, "err", rep.err)
		}
	}
}

// onBatchChanged re-reads a batch written through the API and arms its schedule again.
func (l *leader) onBatchChanged(ctx context.Context, name string) {
	sctx, cancel := storeCtx(ctx)
	b, err := l.batchStore.GetBatch(sctx, name)
	cancel()
	switch {
	case errors.Is(err, store.ErrNotFound):
		delete(l.batchScheds, name)
	case err != nil:
		l.logger.Warn("cannot read a changed batch; its schedule is as it was", "batch", name, "err", err)
	default:
		l.armBatch(b, false)
	}
}

// requestBatch starts the run a client asked for (a file arrived, an application asked), if the batch
// lists the client in requested_by. A cycle that ran already is the request done, not refused: a re-send,
// or a second client seeing the same file.
func (l *leader) requestBatch(ctx context.Context, r *wire.Request) error {
	if l.batchStore == nil {
		return fmt.Errorf("%w: request %s: %v", errRefused, r.ReqID, errNoBatches)
	}
	sctx, cancel := storeCtx(ctx)
	b, err := l.batchStore.GetBatch(sctx, r.Batch)
	cancel()
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("%w: request %s: %v", errRefused, r.ReqID, err)
	case err != nil:
		return err
	case !slices.Contains(b.Definition.RequestedBy, r.From):
		return fmt.Errorf("%w: request %s: batch %s does not list client %s in requested_by", errRefused, r.ReqID, r.Batch, r.From)
	}
	why := "requested by client " + r.From
	if r.Note != "" {
		why += ": " + r.Note
	}
	rep := l.startRun(ctx, batchOpNote{op: "run", batch: r.Batch, cycle: r.Cycle, frequency: r.Frequency, params: r.Params,
		who: "client:" + r.From, why: why, trigger: "request"})
	switch {
	case rep.err == nil:
		return nil
	case errors.Is(rep.err, errBatchRunExists):
		l.logger.Info("a requested batch run exists already", "run", store.BatchRunID(r.Batch, r.Cycle), "client", r.From)
		return nil
	case errors.Is(rep.err, errBadRequest):
		return fmt.Errorf("%w: request %s: %v", errRefused, r.ReqID, rep.err)
	}
	return rep.err
}
