package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/clover-sched/clover/internal/job"
)

const (
	// DefaultListLimit and MaxListLimit bound ExecutionFilter.Limit.
	DefaultListLimit = 50
	MaxListLimit     = 1000
	// MaxStateScan is how many executions, newest first, ListExecutions folds at most to find Limit of them in
	// a given state. A state is known only after folding the events, so it cannot be a query condition.
	MaxStateScan = 5000
	// foldBatch bounds the ids in one $in query for events.
	foldBatch = 1000
)

// InsertExecutions records fired executions with one unordered bulk insert, after their copies in the open
// set (see ReadOpenSet). An execution whose id is stored already is not inserted and not an error: its id is returned in duplicates, in no particular order. That is
// how a firing made by another (possibly deposed) leader is detected, but also how a retry of an insert that
// reached the server before its reply was lost looks: compare the stored execution's Server and Epoch if it
// matters. Any other failure is returned as err; then some executions may have been inserted.
//
// Duplicates are slow on FerretDB 1.24: it inserts in groups of 100, and inserts every document of a group
// that holds a duplicate again by itself (about 1 ms each). Avoid re-inserting firings known to exist.
func (s *Store) InsertExecutions(ctx context.Context, execs []job.Execution) (duplicates []string, err error) {
	if len(execs) == 0 {
		return nil, nil
	}
	docs := make([]any, len(execs))
	for i, e := range execs {
		if e.ID == "" {
			return nil, fmt.Errorf("store: insert executions: execution %d (job %s) has no id", i, e.Job)
		}
		docs[i] = storedExecutionDoc(e)
	}
	if err := insertIgnoringDuplicates(ctx, s.openExecs, docs); err != nil {
		return nil, fmt.Errorf("store: insert executions: open set: %w", err)
	}
	_, err = s.execs.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	dups, err := duplicateIndexes(err)
	if err != nil {
		return nil, fmt.Errorf("store: insert executions: %w", err)
	}
	for _, i := range dups {
		duplicates = append(duplicates, execs[i].ID)
	}
	return duplicates, nil
}

// InsertEvents records events with one unordered bulk insert, after their copies in the open set. An event
// whose id is stored already is skipped and counted in duplicates: a fact reported twice is recorded once.
func (s *Store) InsertEvents(ctx context.Context, events []job.Event) (duplicates int, err error) {
	if len(events) == 0 {
		return 0, nil
	}
	docs := make([]any, len(events))
	for i, ev := range events {
		if ev.ID == "" {
			return 0, fmt.Errorf("store: insert events: event %d (execution %s) has no id", i, ev.ExecID)
		}
		ev.At = storedTime(ev.At)
		docs[i] = ev
	}
	if err := insertIgnoringDuplicates(ctx, s.openEvents, docs); err != nil {
		return 0, fmt.Errorf("store: insert events: open set: %w", err)
	}
	_, err = s.events.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	dups, err := duplicateIndexes(err)
	if err != nil {
		return 0, fmt.Errorf("store: insert events: %w", err)
	}
	return len(dups), nil
}

// GetExecution returns the execution with id, folded with its events, or ErrNotFound.
func (s *Store) GetExecution(ctx context.Context, id string) (job.Execution, error) {
	var e job.Execution
	err := s.execs.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&e)
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
		return job.Execution{}, fmt.Errorf("%w: execution %s", ErrNotFound, id)
	case err != nil:
		return job.Execution{}, fmt.Errorf("store: get execution %s: %w", id, err)
	}
	execs := []job.Execution{e}
	if err := s.fold(ctx, execs); err != nil {
		return job.Execution{}, fmt.Errorf("store: get execution %s: %w", id, err)
	}
	return execs[0], nil
}

// ExecutionFilter selects executions for ListExecutions. Zero fields select everything.
type ExecutionFilter struct {
	Job    string
	State  job.State
	Limit  int       // DefaultListLimit if 0 or less, at most MaxListLimit
	Before time.Time // only executions scheduled strictly before it, to page back in time
}

// ListExecutions returns executions, newest scheduled first (ties by id, descending), folded with their
// events. With State set it folds at most the newest MaxStateScan executions that match the other fields
// and returns those in that state: older ones are missed, unless the caller pages with Before.
func (s *Store) ListExecutions(ctx context.Context, f ExecutionFilter) ([]job.Execution, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultListLimit
	}
	limit = min(limit, MaxListLimit)
	switch f.State {
	case "", job.StatePending, job.StateRunning, job.StateRetrying, job.StateOrphaned, job.StateSucceeded, job.StateFailed, job.StateSkipped:
	default:
		return nil, fmt.Errorf("store: list executions: unknown state %q", f.State)
	}

	filter := jobFilter(f.Job)
	if !f.Before.IsZero() {
		filter = append(filter, bson.E{Key: "scheduled_at", Value: bson.D{{Key: "$lt", Value: f.Before}}})
	}
	scan, chunk := limit, limit
	if f.State != "" {
		scan, chunk = MaxStateScan, foldBatch
	}
	opts := options.Find().SetSort(bson.D{{Key: "scheduled_at", Value: -1}}).SetLimit(int64(scan))
	cur, err := s.execs.Find(ctx, filter, opts)
	if err != nil {
		return nil, fmt.Errorf("store: list executions: %w", err)
	}
	defer cur.Close(ctx)

	var out []job.Execution
	page := make([]job.Execution, 0, chunk)
	for len(out) < limit {
		page = page[:0]
		for len(page) < chunk && cur.Next(ctx) {
			var e job.Execution
			if err := cur.Decode(&e); err != nil {
				return nil, fmt.Errorf("store: list executions: %w", err)
			}
			page = append(page, e)
		}
		if err := cur.Err(); err != nil {
			return nil, fmt.Errorf("store: list executions: %w", err)
		}
		if len(page) == 0 {
			break
		}
		if err := s.fold(ctx, page); err != nil {
			return nil, fmt.Errorf("store: list executions: %w", err)
		}
		for _, e := range page {
			if f.State == "" || e.State == f.State {
				out = append(out, e)
			}
		}
	}
	out = out[:min(len(out), limit)]
	slices.SortStableFunc(out, func(a, b job.Execution) int {
		return cmp.Or(b.ScheduledAt.Compare(a.ScheduledAt), cmp.Compare(b.ID, a.ID))
	})
	return out, nil
}

// scanOpenExecutions returns the executions scheduled or fired at or after since that have not finished,
// folded, oldest scheduled first, by reading every execution since then and its events: the only way to
// know before the open set existed (MigrateOpenSet). Firing time counts too, so that manual runs and
// catch-ups, fired after since for an earlier scheduled time, are found.
func (s *Store) scanOpenExecutions(ctx context.Context, since time.Time) ([]job.Execution, error) {
	filter := bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: "scheduled_at", Value: bson.D{{Key: "$gte", Value: since}}}},
		bson.D{{Key: "fired_at", Value: bson.D{{Key: "$gte", Value: since}}}},
	}}}
	opts := options.Find().SetSort(bson.D{{Key: "scheduled_at", Value: 1}})
	cur, err := s.execs.Find(ctx, filter, opts)
	if err != nil {
		return nil, fmt.Errorf("store: open executions: %w", err)
	}
	execs, err := decodeEach[job.Execution](ctx, s, "execution", cur)
	if err != nil {
		return nil, fmt.Errorf("store: open executions: %w", err)
	}
	if err := s.fold(ctx, execs); err != nil {
		return nil, fmt.Errorf("store: open executions: %w", err)
	}
	return slices.DeleteFunc(execs, func(e job.Execution) bool { return e.State.Terminal() }), nil
}

// ExecutionsByID returns the executions with these ids that exist, folded, in one query. A leader uses it to
// learn what stands behind a firing it found already recorded.
func (s *Store) ExecutionsByID(ctx context.Context, ids []string) ([]job.Execution, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	cur, err := s.execs.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}})
	if err != nil {
		return nil, fmt.Errorf("store: executions by id: %w", err)
	}
	execs, err := decodeEach[job.Execution](ctx, s, "execution", cur)
	if err != nil {
		return nil, fmt.Errorf("store: executions by id: %w", err)
	}
	if err := s.fold(ctx, execs); err != nil {
		return nil, fmt.Errorf("store: executions by id: %w", err)
	}
	return execs, nil
}

// CountExecutions returns how many executions of jobName (of every job if jobName is "") are in each state;
// every state is in the map. The total, succeeded and skipped counts are exact (an execution succeeds or
// is skipped once). The open states (pending, running, retrying, orphaned) are counted among the newest
// MaxListLimit executions, and failed is what remains: an older execution that never ended counts as
// failed.
func (s *Store) CountExecutions(ctx context.Context, jobName string) (map[job.State]int64, error) {
	total, err := s.execs.CountDocuments(ctx, jobFilter(jobName))
	if err != nil {
		return nil, fmt.Errorf("store: count executions: %w", err)
	}
	finished := append(jobFilter(jobName), bson.E{Key: "kind", Value: job.EventFinished})
	counts := map[job.State]int64{}
	for _, st := range []job.State{job.StateSucceeded, job.StateSkipped} {
		n, err := s.events.CountDocuments(ctx, append(slices.Clip(finished), bson.E{Key: "result.status", Value: st}))
		if err != nil {
			return nil, fmt.Errorf("store: count executions: %w", err)
		}
		counts[st] = n
	}
	recent, err := s.ListExecutions(ctx, ExecutionFilter{Job: jobName, Limit: MaxListLimit})
	if err != nil {
		return nil, fmt.Errorf("store: count executions: %w", err)
	}
	open := []job.State{job.StatePending, job.StateRunning, job.StateRetrying, job.StateOrphaned}
	for _, st := range open {
		counts[st] = 0
	}
	var opened int64
	for _, e := range recent {
		if !e.State.Terminal() {
			counts[e.State]++
			opened++
		}
	}
	counts[job.StateFailed] = max(total-counts[job.StateSucceeded]-counts[job.StateSkipped]-opened, 0)
	return counts, nil
}

// fold reads the events of execs, with one query per foldBatch executions, and folds them in.
func (s *Store) fold(ctx context.Context, execs []job.Execution) error {
	for chunk := range slices.Chunk(execs, foldBatch) {
		ids := make([]string, len(chunk))
		for i, e := range chunk {
			ids[i] = e.ID
		}
		cur, err := s.events.Find(ctx, bson.D{{Key: "exec_id", Value: bson.D{{Key: "$in", Value: ids}}}})
		if err != nil {
			return fmt.Errorf("read events: %w", err)
		}
		var events []job.Event
		if err := cur.All(ctx, &events); err != nil {
			return fmt.Errorf("read events: %w", err)
		}
		byExec := make(map[string][]job.Event, len(chunk))
		for _, ev := range events {
			byExec[ev.ExecID] = append(byExec[ev.ExecID], ev)
		}
		for i := range chunk {
			chunk[i].Fold(byExec[chunk[i].ID])
		}
	}
	return nil
}

// jobFilter selects the documents of jobName, or all if it is "".
func jobFilter(jobName string) bson.D {
	if jobName == "" {
		return bson.D{}
	}
	return bson.D{{Key: "job", Value: jobName}}
}
