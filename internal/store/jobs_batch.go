package store

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/clover-sched/clover/internal/job"
)

// Writes of many jobs at once, for the bulk API. Each job's write succeeds or fails on its own (errs[i] is
// the i-th job's, nil when it succeeded): nothing is undone when another fails, since neither FerretDB nor
// a MongoDB without a replica set has transactions.
//
// Reads of many jobs on FerretDB: one read by _id costs a few microseconds a job in the collection plus a
// round trip, a read of anything else decodes every job (50-90 microseconds each). So a few names are read
// one by one, in parallel, and more in one read of {_id: {$in: names}}; MongoDB answers the latter from
// its _id index whatever the number.

// perNameReads is how many names GetJobs reads one by one on FerretDB, rather than in one scan.
const perNameReads = 32

// UpdatesOneByOne reports whether UpdateJobs writes one job a request (FerretDB), each write costing a
// scan of the jobs in SQLite: about 13 ms at 1,000 jobs, 40 ms at 4,000 on the 2-core test machine. A
// caller that serializes its writes per job had then better update a job at a time with UpdateJob, holding
// each job's lock for its own write only, than hold every lock for the whole batch.
func (s *Store) UpdatesOneByOne() bool { return s.ferret }

// GetJobs returns the jobs of names that exist, by name.
func (s *Store) GetJobs(ctx context.Context, names []string) (map[string]job.Spec, error) {
	out := make(map[string]job.Spec, len(names))
	if s.ferret && len(names) <= perNameReads {
		var (
			mu       sync.Mutex
			wg       sync.WaitGroup
			firstErr error
		)
		sem := make(chan struct{}, 8)
		for _, name := range names {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				spec, err := s.GetJob(ctx, name)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					out[name] = spec
				case !errors.Is(err, ErrNotFound) && firstErr == nil:
					firstErr = err
				}
			})
		}
		wg.Wait()
		return out, firstErr
	}
	cur, err := s.jobs.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: names}}}})
	if err != nil {
		return nil, fmt.Errorf("store: get %d jobs: %w", len(names), err)
	}
	specs, err := decodeEach[job.Spec](ctx, s, "job", cur)
	if err != nil {
		return nil, fmt.Errorf("store: get %d jobs: %w", len(names), err)
	}
	for _, spec := range specs {
		out[spec.Name] = spec
	}
	return out, nil
}

// CreateJobs stores new jobs as given, in one unordered insert. errs[i] wraps ErrExists if a job named
// specs[i].Name exists.
func (s *Store) CreateJobs(ctx context.Context, specs []job.Spec) []error {
	errs := make([]error, len(specs))
	if len(specs) == 0 {
		return errs
	}
	docs := make([]any, len(specs))
	for i, spec := range specs {
		docs[i] = storedSpec(spec)
	}
	_, err := s.jobs.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	if err == nil {
		return errs
	}
	failed, ok := writeErrors(err)
	if !ok {
		return fill(errs, fmt.Errorf("store: create %d jobs: %w", len(specs), err))
	}
	for i, we := range failed {
		if isDuplicateKeyCode(we.Code) {
			errs[i] = fmt.Errorf("%w: job %s", ErrExists, specs[i].Name)
		} else {
			errs[i] = fmt.Errorf("%w: create job %s: %s", ErrRefused, specs[i].Name, we.Message)
		}
	}
	return errs
}

// UpdateJobs is UpdateJob for many jobs: it reads them, hands each to change (i: its position in names)
// and writes every change, each conditional on the version read: in one unordered bulk write on MongoDB,
// one request a job (a few at a time) on FerretDB. It returns each job as stored.
func (s *Store) UpdateJobs(ctx context.Context, names []string, change func(i int, cur job.Spec) (job.Spec, error)) ([]job.Spec, []error) {
	out, errs := make([]job.Spec, len(names)), make([]error, len(names))
	cur, err := s.GetJobs(ctx, names)
	if err != nil {
		return out, fill(errs, err)
	}
	var (
		models []mongo.WriteModel
		at     []int // the position in names of each model
	)
	for i, name := range names {
		c, ok := cur[name]
		if !ok {
			errs[i] = fmt.Errorf("%w: job %s", ErrNotFound, name)
			continue
		}
		next, err := change(i, c)
		if err != nil {
			errs[i] = err
			continue
		}
		next = storedSpec(next)
		next.Name, next.Version = name, c.Version+1
		out[i] = next
		models = append(models, mongo.NewReplaceOneModel().SetFilter(s.versionFilter(name, c.Version)).SetReplacement(next))
		at = append(at, i)
	}
	if len(models) == 0 {
		return out, errs
	}
	var matched int64
	if s.ferret {
		// One statement a request: FerretDB 1.24 keeps the read of each statement of an update command
		// open until the whole command ends (a deferred close in a loop), and a command of a hundred
		// statements had not ended after three minutes.
		matched = s.eachWrite(ctx, len(models), func(ctx context.Context, m int) (int64, error) {
			res, err := s.jobs.ReplaceOne(ctx, s.versionFilter(names[at[m]], 0), out[at[m]])
			if err != nil {
				errs[at[m]] = fmt.Errorf("store: replace job %s: %w", names[at[m]], err)
				return 0, err
			}
			return res.MatchedCount, nil
		})
	} else {
		res, _, ok := s.bulkJobs(ctx, "replace", models, names, at, errs)
		if !ok {
			return out, errs
		}
		if res != nil {
			matched = res.MatchedCount
		}
	}
	written := 0
	for _, i := range at {
		if errs[i] == nil {
			written++
		}
	}
	if matched == int64(written) {
		for _, i := range at {
			if errs[i] == nil {
				out[i] = AsStored(out[i])
			}
		}
		return out, errs
	}
	// Some writes matched nothing (changed or deleted since the read): the count does not say which, so
	// read back the jobs written. A job holds what this write stored when it has its version and update
	// time.
	s.resolve(ctx, names, at, errs, func(i int, now job.Spec, found bool) error {
		switch {
		case !found:
			return fmt.Errorf("%w: job %s", ErrNotFound, names[i])
		case now.Version == out[i].Version && now.UpdatedAt.Equal(out[i].UpdatedAt):
			out[i] = now
			return nil
		default:
			return conflict(names[i], now.Version, out[i].Version-1)
		}
	})
	return out, errs
}

// DeleteJobs deletes the jobs of names, each only at the version expect[i] says unless that is 0 (expect
// may be nil), and returns each as it was.
func (s *Store) DeleteJobs(ctx context.Context, names []string, expect []int64) ([]job.Spec, []error) {
	out, errs := make([]job.Spec, len(names)), make([]error, len(names))
	cur, err := s.GetJobs(ctx, names)
	if err != nil {
		return out, fill(errs, err)
	}
	var (
		models []mongo.WriteModel
		ids    []string
		at     []int
	)
	for i, name := range names {
		c, ok := cur[name]
		switch {
		case !ok:
			errs[i] = fmt.Errorf("%w: job %s", ErrNotFound, name)
			continue
		case i < len(expect) && expect[i] != 0 && expect[i] != c.Version:
			errs[i] = conflict(name, c.Version, expect[i])
			continue
		}
		out[i] = c
		models = append(models, mongo.NewDeleteOneModel().SetFilter(s.versionFilter(name, c.Version)))
		ids = append(ids, name)
		at = append(at, i)
	}
	if len(at) == 0 {
		return out, errs
	}
	var deleted, refused int64
	if s.ferret {
		// One statement: FerretDB runs each statement of a bulk write as its own query and transaction.
		res, err := s.jobs.DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}})
		if err != nil {
			for _, i := range at {
				errs[i] = fmt.Errorf("store: delete job %s: %w", names[i], err)
			}
			return out, errs
		}
		deleted = res.DeletedCount
	} else {
		res, n, ok := s.bulkJobs(ctx, "delete", models, names, at, errs)
		if !ok {
			return out, errs
		}
		if res != nil {
			deleted = res.DeletedCount
		}
		refused = int64(n)
	}
	if deleted == int64(len(at))-refused {
		return out, errs
	}
	// Some deletes matched nothing: a job still there was changed since the read; one gone is deleted,
	// whoever deleted it.
	s.resolve(ctx, names, at, errs, func(i int, now job.Spec, found bool) error {
		if found {
			return conflict(names[i], now.Version, out[i].Version)
		}
		return nil
	})
	return out, errs
}

// bulkJobs makes models in one unordered bulk write on the jobs collection (MongoDB) and sets errs, at the
// position in names that at gives each model, for what failed: all of them when the write failed as a
// whole (ok false), else those the server refused (refused counts them). verb names the write in errors.
func (s *Store) bulkJobs(ctx context.Context, verb string, models []mongo.WriteModel, names []string, at []int, errs []error) (res *mongo.BulkWriteResult, refused int, ok bool) {
	res, err := s.jobs.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false))
	failed, ok := writeErrors(err)
	if err != nil && !ok {
		for _, i := range at {
			errs[i] = fmt.Errorf("store: %s job %s: %w", verb, names[i], err)
		}
		return nil, 0, false
	}
	for m, we := range failed {
		errs[at[m]] = fmt.Errorf("%w: %s job %s: %s", ErrRefused, verb, names[at[m]], we.Message)
	}
	return res, len(failed), true
}

// eachWrite makes n writes by _id, a few at a time, and returns the sum of what they return. On FerretDB
// a write by _id costs a scan of the collection in SQLite, and runs in parallel with the others' scans.
func (s *Store) eachWrite(ctx context.Context, n int, write func(ctx context.Context, m int) (int64, error)) int64 {
	var (
		mu    sync.Mutex
		sum   int64
		wg    sync.WaitGroup
		slots = make(chan struct{}, 4)
	)
	for m := range n {
		wg.Go(func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			k, err := write(ctx, m)
			if err == nil {
				mu.Lock()
				sum += k
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return sum
}

// resolve reads back the jobs names[at...] that have no error yet and sets each error to what judge says
// of the job as it is now. If the read fails, every one of them is given that error: whether its write
// happened is then unknown.
func (s *Store) resolve(ctx context.Context, names []string, at []int, errs []error, judge func(i int, now job.Spec, found bool) error) {
	var pending []string
	for _, i := range at {
		if errs[i] == nil {
			pending = append(pending, names[i])
		}
	}
	now, err := s.GetJobs(ctx, pending)
	for _, i := range at {
		if errs[i] != nil {
			continue
		}
		if err != nil {
			errs[i] = fmt.Errorf("store: job %s: outcome unknown: %w", names[i], err)
			continue
		}
		spec, found := now[names[i]]
		errs[i] = judge(i, spec, found)
	}
}

// writeErrors returns the write errors of an unordered bulk write by position in its models, and whether
// err is only such errors (nil is).
func writeErrors(err error) (map[int]mongo.WriteError, bool) {
	if err == nil {
		return nil, true
	}
	var (
		bwe mongo.BulkWriteException
		we  mongo.WriteException
		out = map[int]mongo.WriteError{}
	)
	switch {
	case errors.As(err, &bwe):
		if bwe.WriteConcernError != nil {
			return nil, false
		}
		for _, e := range bwe.WriteErrors {
			out[e.Index] = e.WriteError
		}
	case errors.As(err, &we):
		if we.WriteConcernError != nil {
			return nil, false
		}
		for _, e := range we.WriteErrors {
			out[e.Index] = e
		}
	default:
		return nil, false
	}
	return out, len(out) > 0
}

func fill(errs []error, err error) []error {
	for i := range errs {
		errs[i] = err
	}
	return errs
}
