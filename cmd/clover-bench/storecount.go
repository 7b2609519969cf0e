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

// eventsCollection is where internal/store keeps job.Event documents; the store has no query by time,
// so the count below reads the collection itself.
const eventsCollection = "execution_events"

// countFinished counts the executions that finished (on their client's clock) in [from, to) and whose end
// is recorded: one finished event per execution (job.EventID), so the count has no duplicates, unlike
// the servers' clover_executions_finished_total, which counts every result report recorded, re-sent
// ones too. It is one query, run after the window because on FerretDB it reads the whole collection.
func countFinished(c *integration.Cluster, from, to time.Time) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cl, err := mongo.Connect(options.Client().ApplyURI(c.Mongo.URI))
	if err != nil {
		return 0, fmt.Errorf("count finished executions: %w", err)
	}
	defer cl.Disconnect(context.Background())
	n, err := cl.Database(c.DB).Collection(eventsCollection).CountDocuments(ctx, bson.D{
		{Key: "kind", Value: job.EventFinished},
		{Key: "at", Value: bson.D{{Key: "$gte", Value: from.UTC()}, {Key: "$lt", Value: to.UTC()}}},
	})
	if err != nil {
		return 0, fmt.Errorf("count finished executions: %w", err)
	}
	return n, nil
}
