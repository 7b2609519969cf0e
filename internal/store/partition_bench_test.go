package store

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/clover-sched/clover/internal/job"
)

// BenchmarkPartitionTurn measures what the partitioned open set planned in design 19 would cost a close,
// beside BenchmarkCloseRound (today's): 500 ended executions (a copy and two events each) in a partition
// of their own, renamed (sealed), read whole, folded and dropped. While it runs, a writer inserts
// batches of 100 executions into the next partition, as the leader would; it reports the writer's rate
// and its slowest insert. No insert races the seal here: on FerretDB an insert in flight as a collection
// is renamed can land in the renamed table after it was read, and go with the drop (design 19), so the
// leader seals a partition only once its own inserts into it have returned.
func BenchmarkPartitionTurn(b *testing.B) {
	const batch = 500
	s := testStore(b)
	ctx := b.Context()
	db := s.openExecs.Database()
	fill := func(coll *mongo.Collection, from int) []string {
		var docs []any
		var ids []string
		for i := range batch {
			e := execution("bench", t0.Add(time.Duration(from+i)*time.Second), job.TriggerSchedule)
			ids = append(ids, e.ID)
			docs = append(docs, storedExecutionDoc(e), acked(e, 1, e.ScheduledAt), finished(e, job.StateSucceeded, e.ScheduledAt))
		}
		if _, err := coll.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false)); err != nil {
			b.Fatal(err)
		}
		return ids
	}
	var (
		wctx, stop  = context.WithCancel(ctx)
		wg          sync.WaitGroup
		written     atomic.Int64
		slowest     atomic.Int64
		writerErr   error
		writerBatch = 100
	)
	wg.Go(func() { // the leader's inserts into the current partition
		next := db.Collection("open_p_current")
		for n := 0; wctx.Err() == nil; n++ {
			var docs []any
			for i := range writerBatch {
				e := execution("live", t0.Add(time.Duration(n*writerBatch+i)*time.Second), job.TriggerSchedule)
				docs = append(docs, storedExecutionDoc(e))
			}
			begun := time.Now()
			if _, err := next.InsertMany(wctx, docs, options.InsertMany().SetOrdered(false)); err != nil {
				if wctx.Err() == nil {
					writerErr = err
				}
				return
			}
			took := time.Since(begun).Nanoseconds()
			for old := slowest.Load(); took > old && !slowest.CompareAndSwap(old, took); old = slowest.Load() {
			}
			written.Add(int64(writerBatch))
		}
	})
	n, closed := 0, 0
	for b.Loop() {
		b.StopTimer()
		name := fmt.Sprintf("open_p%d", n)
		fill(db.Collection(name), n*batch)
		n++
		b.StartTimer()
		cmd := bson.D{{Key: "renameCollection", Value: db.Name() + "." + name}, {Key: "to", Value: db.Name() + "." + name + "_sealed"}}
		if err := s.client.Database("admin").RunCommand(ctx, cmd).Err(); err != nil {
			b.Fatalf("seal %s: %v", name, err)
		}
		sealed := db.Collection(name + "_sealed")
		cur, err := sealed.Find(ctx, bson.D{})
		if err != nil {
			b.Fatal(err)
		}
		byID := map[string]*job.Execution{}
		var events []job.Event
		for cur.Next(ctx) {
			if _, isEvent := cur.Current.Lookup("exec_id").StringValueOK(); isEvent {
				var ev job.Event
				if err := cur.Decode(&ev); err != nil {
					b.Fatal(err)
				}
				events = append(events, ev)
				continue
			}
			var e job.Execution
			if err := cur.Decode(&e); err != nil {
				b.Fatal(err)
			}
			byID[e.ID] = &e
		}
		if err := cur.Err(); err != nil {
			b.Fatal(err)
		}
		grouped := groupEvents(events)
		for id, e := range byID {
			e.Fold(grouped[id])
			if !e.State.Terminal() {
				b.Fatalf("%s read %s from its partition", id, e.State)
			}
		}
		if err := sealed.Drop(ctx); err != nil {
			b.Fatal(err)
		}
		closed += len(byID)
	}
	elapsed := b.Elapsed().Seconds()
	stop()
	wg.Wait()
	if writerErr != nil {
		b.Fatalf("the writer: %v", writerErr)
	}
	b.ReportMetric(float64(closed)/elapsed, "closes/s")
	b.ReportMetric(float64(written.Load())/elapsed, "writer-inserts/s")
	b.ReportMetric(float64(slowest.Load())/1e6, "writer-slowest-ms")
}
