package main

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/store"
)

// The store's ceilings: how fast FerretDB takes raw small documents in bulk, and how many executions a
// second it records when each is written as the server writes one. The second over the first says how
// much of the store's raw speed an execution's shape costs; raising it is the store's work, not Clover's
// scheduling.

// storeBatch is the executions (or raw documents) of one bulk write: the size of a firing of 500 jobs, and
// half the most the intake and the closer write at once (1,000).
const storeBatch = 500

// rawDocRate inserts small documents (an id, a job name, a number, a time) with unordered InsertMany of
// storeBatch into a scratch collection for about d, after one batch not timed, and returns documents a
// second.
func rawDocRate(ctx context.Context, uri string, d time.Duration) (float64, error) {
	cl, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		return 0, fmt.Errorf("store ceiling: connect: %w", err)
	}
	defer func() { _ = cl.Disconnect(context.Background()) }()
	coll := cl.Database("bench_ceiling_raw").Collection("raw")
	n := 0
	insert := func() error {
		docs := make([]any, storeBatch)
		now := time.Now().UTC()
		for i := range docs {
			docs[i] = bson.D{{Key: "_id", Value: fmt.Sprintf("raw-%09d", n)}, {Key: "job", Value: "bench-raw"},
				{Key: "n", Value: n}, {Key: "at", Value: now}}
			n++
		}
		if _, err := coll.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false)); err != nil {
			return fmt.Errorf("store ceiling: raw insert: %w", err)
		}
		return nil
	}
	if err := insert(); err != nil { // creates the collection
		return 0, err
	}
	start, timed := time.Now(), 0
	for timed == 0 || time.Since(start) < d {
		if err := insert(); err != nil {
			return 0, err
		}
		timed += storeBatch
	}
	return float64(timed) / time.Since(start).Seconds(), nil
}

// executionCeiling is what the Clover-shaped measurements found.
type executionCeiling struct {
	// recorded: executions a second fired and reported (acked, finished): what "recorded" means to the
	// scenarios, and the store ceiling they are compared with.
	recorded float64
	// closed: the same, each also moved into the history, as the server's closer does once it ended: what the
	// store sustains for good (the open set stays small).
	closed float64
	// Each stage's own rate in the second measurement: executions over the time that stage spent in the store.
	fire, report, close float64
}

// executionRates measures executionCeiling, each figure over about d on a scratch database of its own.
func executionRates(ctx context.Context, uri string, d time.Duration) (executionCeiling, error) {
	var c executionCeiling
	rec, err := executionRate(ctx, uri, "bench_ceiling_recorded", d, false)
	if err != nil {
		return c, err
	}
	all, err := executionRate(ctx, uri, "bench_ceiling_closed", d, true)
	if err != nil {
		return c, err
	}
	c.recorded, c.closed = rec[len(rec)-1].done, all[len(all)-1].done
	c.fire, c.report, c.close = all[0].alone, all[1].alone, all[2].alone
	return c, nil
}

// stageRate is what one stage of executionRate did: executions it finished a second over the whole
// measurement, and over the time it spent in the store (alone).
type stageRate struct{ done, alone float64 }

// executionRate records executions through internal/store's own functions, as the server does, for about
// d: the leader's firing (InsertExecutions: the open set's copy and the fence), the intake's reports
// (InsertEvents: an acked batch, then a finished batch; the intake skips an ack when the result comes in the
// same batch, so this is the dearer case) and, withClose, the closer's move into the history (OpenByID, a
// history bucket's Append, CloseExecutions). The stages run concurrently, each on its own goroutine, a batch
// handed from one to the next, as the leader loop, the intake and the closer do. The store is opened as a
// server opens it (indexes made), on scratch database db.
func executionRate(ctx context.Context, uri, db string, d time.Duration, withClose bool) ([]stageRate, error) {
	st, err := store.Open(ctx, uri, db)
	if err != nil {
		return nil, fmt.Errorf("store ceiling: open scratch store: %w", err)
	}
	defer st.Close(context.Background())
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	writer := st.NewHistoryWriter(1, time.Hour, store.DefaultBucketSize)
	stages := []func([]job.Execution) error{
		func(b []job.Execution) error { _, err := st.InsertExecutions(ctx, b); return err },
		func(b []job.Execution) error { return reportBatch(ctx, st, b) },
	}
	if withClose {
		stages = append(stages, func(b []job.Execution) error { return closeBatch(ctx, st, writer, b) })
	}
	base := time.Now().UTC().Truncate(time.Second).Add(-time.Hour)
	seq := 0
	batch := func() []job.Execution {
		execs := make([]job.Execution, storeBatch)
		now := time.Now().UTC()
		for i := range execs {
			// One job per execution, a second apart, as storeBatch jobs @every 1s give: distinct ids.
			at := base.Add(time.Duration(seq/storeBatch) * time.Second)
			name := fmt.Sprintf("ceiling-%05d", seq%storeBatch)
			id := job.ExecutionID(name, at)
			execs[i] = job.Execution{ID: id, Firing: id, Job: name, ScheduledAt: at, FiredAt: now, Trigger: job.TriggerSchedule,
				Epoch: 1, Server: "server-1", Handler: "noop", State: job.StatePending}
			seq++
		}
		return execs
	}
	// The first batch goes through every stage before the clock starts: collections and a bucket exist.
	warm := batch()
	for _, f := range stages {
		if err := f(warm); err != nil {
			return nil, fmt.Errorf("store ceiling: first batch: %w", err)
		}
	}

	type result struct {
		busy time.Duration
		n    int
		err  error
	}
	results := make([]chan result, len(stages))
	var in chan []job.Execution // nil for the first stage, which makes its batches until d has passed
	start := time.Now()
	for i, f := range stages {
		results[i] = make(chan result, 1)
		// Room for a full close's worth of batches: the closer takes everything that waits, up to
		// store.MaxCloseBatch ids, in one close.
		next := make(chan []job.Execution, store.MaxCloseBatch/storeBatch)
		gather := withClose && i == len(stages)-1
		go func(in <-chan []job.Execution, next chan<- []job.Execution, done chan<- result) {
			var r result
			defer func() { close(next); done <- r }()
			for {
				var b []job.Execution
				if in == nil {
					if r.n > 0 && time.Since(start) >= d {
						return
					}
					b = batch()
				} else {
					var ok bool
					if b, ok = <-in; !ok {
						return
					}
					for gather && len(b)+storeBatch <= store.MaxCloseBatch && len(in) > 0 {
						b = append(b, <-in...)
					}
				}
				t0 := time.Now()
				if r.err = f(b); r.err != nil {
					cancel()
					return
				}
				r.busy += time.Since(t0)
				r.n += len(b)
				select {
				case next <- b:
				case <-ctx.Done():
					return
				}
			}
		}(in, next, results[i])
		in = next
	}
	go func() { // the last stage's batches go nowhere
		for range in {
		}
	}()
	out := make([]stageRate, len(stages))
	var firstErr error
	for i := range stages {
		r := <-results[i]
		if r.err != nil && firstErr == nil {
			firstErr = fmt.Errorf("store ceiling: %w", r.err)
		}
		out[i] = stageRate{done: float64(r.n) / time.Since(start).Seconds(), alone: float64(r.n) / r.busy.Seconds()}
	}
	return out, firstErr
}

// reportBatch records an acked event for each execution, then a finished one, as two intake batches.
func reportBatch(ctx context.Context, st *store.Store, execs []job.Execution) error {
	if len(execs) == 0 {
		return nil
	}
	acked, finished := make([]job.Event, len(execs)), make([]job.Event, len(execs))
	now := time.Now().UTC()
	for i, e := range execs {
		acked[i] = job.Event{ID: job.EventID(e.ID, job.EventAcked, 1), ExecID: e.ID, Job: e.Job, Kind: job.EventAcked,
			Attempt: 1, Run: 1, Client: "client-1", At: now}
		finished[i] = job.Event{ID: job.EventID(e.ID, job.EventFinished, 1), ExecID: e.ID, Job: e.Job, Kind: job.EventFinished,
			Attempt: 1, Run: 1, Client: "client-1", At: now,
			Result: &job.Result{Status: job.StateSucceeded, Duration: job.Duration(time.Millisecond)}}
	}
	if _, err := st.InsertEvents(ctx, acked); err != nil {
		return err
	}
	_, err := st.InsertEvents(ctx, finished)
	return err
}

// closeBatch moves ended executions into the history as the server's closer does.
func closeBatch(ctx context.Context, st *store.Store, w *store.HistoryWriter, execs []job.Execution) error {
	ids := make([]string, len(execs))
	for i, e := range execs {
		ids[i] = e.ID
	}
	open, err := st.OpenByID(ctx, ids)
	if err != nil {
		return err
	}
	if err := w.Append(ctx, open, time.Now()); err != nil {
		return err
	}
	return st.CloseExecutions(ctx, ids)
}
