package store

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

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
// On MongoDB the check and the write are one atomic step. On FerretDB they are not (see versionFilter):
// two concurrent replaces expecting the same version can both succeed, and the last one wins.
func (s *Store) ReplaceJob(ctx context.Context, spec job.Spec, expectVersion int64) error {
	spec = storedSpec(spec)
	spec.Version = expectVersion + 1
	if s.ferret {
		cur, err := s.GetJob(ctx, spec.Name)
		if err != nil {
			return err
		}
		if cur.Version != expectVersion {
			return conflict(spec.Name, cur.Version, expectVersion)
		}
	}
	res, err := s.jobs.ReplaceOne(ctx, s.versionFilter(spec.Name, expectVersion), spec)
	if err != nil {
		return fmt.Errorf("store: replace job %s: %w", spec.Name, err)
	}
	if res.MatchedCount == 1 {
		return nil
	}
	return s.notAt(ctx, spec.Name, expectVersion)
}

// UpdateJob reads the job named name, hands it to change and stores what change returns as the next
// version (Name and Version are set), provided the job is still at the version read: else ErrConflict. It
// returns the job as stored. An error of change is returned as it is, and nothing is written.
//
// Two round trips, and on FerretDB two reads of one document by _id: the version check is part of the
// write on MongoDB, and the read on FerretDB (see versionFilter).
func (s *Store) UpdateJob(ctx context.Context, name string, change func(cur job.Spec) (job.Spec, error)) (job.Spec, error) {
	cur, err := s.GetJob(ctx, name)
	if err != nil {
		return job.Spec{}, err
	}
	next, err := change(cur)
	if err != nil {
		return job.Spec{}, err
	}
	next = storedSpec(next)
	next.Name, next.Version = name, cur.Version+1
	res, err := s.jobs.ReplaceOne(ctx, s.versionFilter(name, cur.Version), next)
	if err != nil {
		return job.Spec{}, fmt.Errorf("store: replace job %s: %w", name, err)
	}
	if res.MatchedCount != 1 {
		return job.Spec{}, s.notAt(ctx, name, cur.Version)
	}
	return AsStored(next), nil
}

// versionFilter selects job name at version. On FerretDB it selects by name only, and the caller checks
// the version by reading first: FerretDB answers any filter but {_id: x} by decoding every document of
// the collection (half a second at 3,000 jobs), and its conditional writes were a query followed by a
// separate write anyway, so they were never atomic there. The server serializes its own writes of one
// job (server/jobwrites.go), which is what keeps the check good on FerretDB.
func (s *Store) versionFilter(name string, version int64) bson.D {
	if s.ferret {
		return bson.D{{Key: "_id", Value: name}}
	}
	return bson.D{{Key: "_id", Value: name}, {Key: "version", Value: version}}
}

// notAt explains why a write of job name at version matched nothing: ErrNotFound or ErrConflict.
func (s *Store) notAt(ctx context.Context, name string, version int64) error {
	cur, err := s.GetJob(ctx, name)
	if err != nil {
		return err
	}
	return conflict(name, cur.Version, version)
}

func conflict(name string, have, want int64) error {
	return fmt.Errorf("%w: job %s is at version %d, not %d", ErrConflict, name, have, want)
}

// GetJob returns the job named name, or ErrNotFound.
func (s *Store) GetJob(ctx context.Context, name string) (job.Spec, error) {
	return getByID[job.Spec](ctx, s.jobs, "job", name)
}

// ListJobs returns every job, sorted by name.
func (s *Store) ListJobs(ctx context.Context) ([]job.Spec, error) {
	return s.ListJobsPage(ctx, JobPage{})
}

// JobPage asks for a page of jobs in name order: those after After, at most Limit of them, whose name,
// handler or source contains Text (any case), and paused or not if Paused is set. The other fields, when
// set, must match exactly: the handler, the source ("api", "client:<id>"), a client the job is pinned
// to, a label it asks of its clients (name=value), a contact it names.
type JobPage struct {
	After  string
	Limit  int
	Text   string
	Paused *bool

	Handler, Source, Client, Label, Contact string
}

// ListJobsPage returns a page of jobs. The name is the key, so a page starts where the last one ended
// whatever was created or deleted in between (a cursor, not an offset).
func (s *Store) ListJobsPage(ctx context.Context, p JobPage) ([]job.Spec, error) {
	filter := bson.D{}
	if p.After != "" {
		filter = append(filter, bson.E{Key: "_id", Value: bson.D{{Key: "$gt", Value: p.After}}})
	}
	if p.Text != "" {
		re := bson.Regex{Pattern: regexp.QuoteMeta(p.Text), Options: "i"}
		filter = append(filter, bson.E{Key: "$or", Value: bson.A{
			bson.D{{Key: "_id", Value: re}}, bson.D{{Key: "handler", Value: re}}, bson.D{{Key: "source", Value: re}},
		}})
	}
	if p.Paused != nil {
		filter = append(filter, bson.E{Key: "paused", Value: *p.Paused})
	}
	for _, f := range []struct{ key, value string }{
		{"handler", p.Handler}, {"source", p.Source}, {"routing.clients", p.Client}, {"contacts", p.Contact},
	} {
		if f.value != "" {
			filter = append(filter, bson.E{Key: f.key, Value: f.value}) // an array matches when it holds the value
		}
	}
	if name, value, ok := strings.Cut(p.Label, "="); ok && name != "" && !strings.ContainsAny(name, ".$") {
		filter = append(filter, bson.E{Key: "routing.labels." + name, Value: value})
	}
	opts := options.Find().SetSort(bson.D{{Key: "_id", Value: 1}})
	if p.Limit > 0 {
		opts.SetLimit(int64(p.Limit))
	}
	cur, err := s.jobs.Find(ctx, filter, opts)
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

// DeleteJobAt deletes the job named name, only at version expect unless expect is 0, and returns it as it
// was; ErrNotFound or ErrConflict otherwise. One round trip when expect is 0 (the deleted document comes
// back with the delete).
func (s *Store) DeleteJobAt(ctx context.Context, name string, expect int64) (job.Spec, error) {
	filter := bson.D{{Key: "_id", Value: name}}
	if expect != 0 {
		if s.ferret {
			cur, err := s.GetJob(ctx, name)
			if err != nil {
				return job.Spec{}, err
			}
			if cur.Version != expect {
				return job.Spec{}, conflict(name, cur.Version, expect)
			}
		}
		filter = s.versionFilter(name, expect)
	}
	var old job.Spec
	err := s.jobs.FindOneAndDelete(ctx, filter).Decode(&old)
	switch {
	case errors.Is(err, mongo.ErrNoDocuments) && expect != 0:
		return job.Spec{}, s.notAt(ctx, name, expect)
	case errors.Is(err, mongo.ErrNoDocuments):
		return job.Spec{}, fmt.Errorf("%w: job %s", ErrNotFound, name)
	case err != nil:
		return job.Spec{}, fmt.Errorf("store: delete job %s: %w", name, err)
	}
	return old, nil
}

// AsStored is spec as a read would return it after it is written: times in UTC milliseconds, empty
// lists and maps absent, no Stats. The server answers a write with it, and hands it to the leader, without
// reading the job back.
func AsStored(spec job.Spec) job.Spec {
	b, err := bson.Marshal(storedSpec(spec))
	if err != nil {
		return storedSpec(spec) // not reached: a job.Spec always encodes
	}
	var out job.Spec
	if err := bson.Unmarshal(b, &out); err != nil {
		return storedSpec(spec)
	}
	return out
}

func storedSpec(spec job.Spec) job.Spec {
	spec.CreatedAt = storedTime(spec.CreatedAt)
	spec.UpdatedAt = storedTime(spec.UpdatedAt)
	spec.ActiveSince = storedTime(spec.ActiveSince)
	if !spec.PausedAt.IsZero() {
		spec.PausedAt = storedTime(spec.PausedAt)
	}
	spec.Stats = nil
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
