package main

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/clover-sched/clover/integration"
	"github.com/clover-sched/clover/internal/job"
)

// countFinished counts the executions that finished (on their client's clock) in [from, to) and whose end
// is recorded, each once (unlike the servers' clover_executions_finished_total, which counts every result
// report recorded, re-sent ones too). It is run after the window because it reads every history bucket.
// The finished events of a store written by a version before the open set (an -old binary such as
// acd91ff, in execution_events) are counted too.
func countFinished(c *integration.Cluster, from, to time.Time) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	ids, err := c.Store().FinishedBetween(ctx, from, to)
	if err != nil {
		return 0, fmt.Errorf("count finished executions: %w", err)
	}
	legacy, err := finishedLegacy(ctx, c, from, to)
	if err != nil {
		return 0, fmt.Errorf("count finished executions: %w", err)
	}
	for id := range legacy {
		ids[id] = true
	}
	return int64(len(ids)), nil
}

// finishedLegacy reads the execution ids of the finished events in execution_events, where versions before
// the open set recorded every event, and in the main database's open_events, where versions before the
// open set had a database of its own kept it (internal/store has no read of either by time: nothing but
// this needs one).
func finishedLegacy(ctx context.Context, c *integration.Cluster, from, to time.Time) (map[string]bool, error) {
	cl, err := mongo.Connect(options.Client().ApplyURI(c.Mongo.URI))
	if err != nil {
		return nil, fmt.Errorf("legacy events: %w", err)
	}
	defer func() { _ = cl.Disconnect(context.Background()) }()
	filter := bson.D{{Key: "kind", Value: job.EventFinished},
		{Key: "at", Value: bson.D{{Key: "$gte", Value: from.UTC()}, {Key: "$lt", Value: to.UTC()}}}}
	ids := map[string]bool{}
	for _, coll := range []string{"execution_events", "open_events"} {
		cur, err := cl.Database(c.DB).Collection(coll).Find(ctx, filter, options.Find().SetProjection(bson.D{{Key: "exec_id", Value: 1}}))
		if err != nil {
			return nil, fmt.Errorf("legacy events: %s: %w", coll, err)
		}
		var rows []struct {
			ExecID string `bson:"exec_id"`
		}
		if err := cur.All(ctx, &rows); err != nil {
			return nil, fmt.Errorf("legacy events: %s: %w", coll, err)
		}
		for _, r := range rows {
			ids[r.ExecID] = true
		}
	}
	return ids, nil
}
