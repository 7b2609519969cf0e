package store

import (
	"context"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/clover-sched/clover/internal/job"
)

// SaveStats writes the statistics of jobs, one document each (a single-document upsert, atomic on every
// MongoDB-protocol server).
func (s *Store) SaveStats(ctx context.Context, stats []job.Stats) error {
	for _, st := range stats {
		st.LastMisfireAt = storedTime(st.LastMisfireAt)
		st.UpdatedAt = storedTime(st.UpdatedAt)
		_, err := s.stats.ReplaceOne(ctx, bson.D{{Key: "_id", Value: st.Job}}, st, options.Replace().SetUpsert(true))
		if err != nil {
			return fmt.Errorf("store: save stats of job %s: %w", st.Job, err)
		}
	}
	return nil
}

// ListStats returns the statistics of every job that has some, by job name.
func (s *Store) ListStats(ctx context.Context) (map[string]job.Stats, error) {
	cur, err := s.stats.Find(ctx, bson.D{})
	if err != nil {
		return nil, fmt.Errorf("store: list stats: %w", err)
	}
	all, err := decodeEach[job.Stats](ctx, s, "job stats", cur)
	if err != nil {
		return nil, fmt.Errorf("store: list stats: %w", err)
	}
	out := make(map[string]job.Stats, len(all))
	for _, st := range all {
		out[st.Job] = st
	}
	return out, nil
}

// GetStats returns the statistics of one job, or ErrNotFound.
func (s *Store) GetStats(ctx context.Context, name string) (job.Stats, error) {
	return getByID[job.Stats](ctx, s.stats, "stats of job", name)
}
