package store

import (
	"context"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/clover-sched/clover/internal/job"
)

// CreateJob stores a new job as given (set its Version, usually 1). It returns ErrExists if a job of that
// name exists.
func (s *Store) CreateJob(ctx context.Context, spec job.Spec) error {
	_, err := s.jobs.InsertOne(ctx, storedSpec(spec))
	switch {
	case mongo.IsDuplicateKeyError(err):
		return fmt.Errorf("%w: job %s", ErrExists, spec.Name)
	case err != nil:
		return fmt.Errorf("store: create job %s: %w", spec.Name, err)
	}
	return nil
}

// ReplaceJob replaces the job named spec.Name if its stored version is expectVersion, and stores spec with
// Version expectVersion+1 whatever spec.Version says. It returns ErrNotFound if there is no such job and
// ErrConflict if its version is another.
//
// On MongoDB the check and the write are one atomic step. On FerretDB 1.24 they are not (it queries, then
// writes): two concurrent replaces expecting the same version can both succeed, and the last one wins.
func (s *Store) ReplaceJob(ctx context.Context, spec job.Spec, expectVersion int64) error {
	spec = storedSpec(spec)
	spec.Version = expectVersion + 1
	filter := bson.D{{Key: "_id", Value: spec.Name}, {Key: "version", Value: expectVersion}}
	res, err := s.jobs.ReplaceOne(ctx, filter, spec)
	if err != nil {
		return fmt.Errorf("store: replace job %s: %w", spec.Name, err)
	}
	if res.MatchedCount == 1 {
		return nil
	}
	cur, err := s.GetJob(ctx, spec.Name)
	if err != nil {
		return err
	}
	return fmt.Errorf("%w: job %s is at version %d, not %d", ErrConflict, spec.Name, cur.Version, expectVersion)
}

// GetJob returns the job named name, or ErrNotFound.
func (s *Store) GetJob(ctx context.Context, name string) (job.Spec, error) {
	return getByID[job.Spec](ctx, s.jobs, "job", name)
}

// ListJobs returns every job, sorted by name.
func (s *Store) ListJobs(ctx context.Context) ([]job.Spec, error) {
	cur, err := s.jobs.Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("store: list jobs: %w", err)
	}
	specs, err := decodeEach[job.Spec](ctx, s, "job", cur)
	if err != nil {
		return nil, fmt.Errorf("store: list jobs: %w", err)
	}
	return specs, nil
}

// DeleteJob deletes the job named name, or returns ErrNotFound. Its executions stay as history.
func (s *Store) DeleteJob(ctx context.Context, name string) error {
	res, err := s.jobs.DeleteOne(ctx, bson.D{{Key: "_id", Value: name}})
	if err != nil {
		return fmt.Errorf("store: delete job %s: %w", name, err)
	}
	if res.DeletedCount == 0 {
		return fmt.Errorf("%w: job %s", ErrNotFound, name)
	}
	return nil
}

func storedSpec(spec job.Spec) job.Spec {
	spec.CreatedAt = storedTime(spec.CreatedAt)
	spec.UpdatedAt = storedTime(spec.UpdatedAt)
	spec.ActiveSince = storedTime(spec.ActiveSince)
	return spec
}

// CountJobs counts the jobs.
func (s *Store) CountJobs(ctx context.Context) (int64, error) {
	n, err := s.jobs.CountDocuments(ctx, bson.D{})
	if err != nil {
		return 0, fmt.Errorf("store: count jobs: %w", err)
	}
	return n, nil
}
