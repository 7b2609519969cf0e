package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/clover-sched/clover/internal/job"
)

// Where an execution is, in its life:
//
//	fired ──▶ fence (executions_<day>, its id only matters) + open set (a copy, and its events)
//	ended ──▶ closed by the leader: folded into one record of a history bucket, out of the open set
//	skipped where fired ──▶ fence (marked skipped) + its record in the history at once (skipped.go)
//	older than history.keep ──▶ its bucket renamed into the archive; dropped after history.archive_keep
//
// Reads look in the open set, then the history, then the archive (and, for a store written by a version
// before the history, the executions and events it recorded then).

const (
	// DefaultListLimit and MaxListLimit bound ExecutionFilter.Limit.
	DefaultListLimit = 50
	MaxListLimit     = 1000
	// foldBatch bounds the ids in one $in query.
	foldBatch = 1000
	// fencePrefix names the collections that hold the ids of the executions fired on one day (UTC) of
	// their scheduled time: executions_20261202.
	fencePrefix = "executions_"
)

// fenceName is the collection holding the id of an execution scheduled at.
func fenceName(at time.Time) string { return fencePrefix + at.UTC().Format("20060102") }

// fenceDoc is what the fence keeps of an execution: its id (the key that makes a firing happen once) and,
// for people reading the database, a few words about it.
type fenceDoc struct {
	ID          string    `bson:"_id"`
	Job         string    `bson:"job"`
	ScheduledAt time.Time `bson:"scheduled_at"`
	Epoch       int64     `bson:"epoch"`
	// Skipped: recorded by RecordSkipped, ended where it was fired; no open-set copy of it is kept.
	Skipped bool `bson:"skipped,omitempty"`
}

// InsertExecutions records fired executions: a copy of each in the open set (see ReadOpenSet), then its
// id in the fence of its scheduled day, with unordered bulk inserts. An execution whose id is in the fence
// already is not recorded again and not an error: its id is returned in duplicates, in no particular
// order. That is how a firing made by another (possibly deposed) leader is detected, but also how a retry
// of an insert that reached the server before its reply was lost looks. Any other failure is returned as
// err; then some executions may have been recorded.
//
// The scheduled time is the same for every server that fires an execution (a request's is the time the
// application asked), so a firing and its repetition meet in the same fence.
func (s *Store) InsertExecutions(ctx context.Context, execs []job.Execution) (duplicates []string, err error) {
	if len(execs) == 0 {
		return nil, nil
	}
	docs := make([]job.Execution, len(execs))
	byDay := map[string][]int{}
	for i, e := range execs {
		if e.ID == "" {
			return nil, fmt.Errorf("store: insert executions: execution %d (job %s) has no id", i, e.Job)
		}
		docs[i] = storedExecutionDoc(e)
		day := fenceName(e.ScheduledAt)
		byDay[day] = append(byDay[day], i)
	}
	copyDups, err := s.open.insertCopies(ctx, docs)
	if err != nil {
		return nil, fmt.Errorf("store: insert executions: open set: %w", err)
	}
	freshCopy := make([]bool, len(execs))
	for i := range freshCopy {
		freshCopy[i] = !slices.Contains(copyDups, i)
	}
	for _, day := range slices.Sorted(maps.Keys(byDay)) {
		idx := byDay[day]
		fence := make([]any, len(idx))
		for j, i := range idx {
			e := execs[i]
			fence[j] = fenceDoc{ID: e.ID, Job: e.Job, ScheduledAt: storedTime(e.ScheduledAt), Epoch: e.Epoch}
		}
		_, err := s.db.Collection(day).InsertMany(ctx, fence, options.InsertMany().SetOrdered(false))
		dups, err := duplicateIndexes(err)
		if err != nil {
			return nil, fmt.Errorf("store: insert executions: %w", err)
		}
		for _, j := range dups {
			e := execs[idx[j]]
			duplicates = append(duplicates, e.ID)
			if freshCopy[idx[j]] {
				if err := s.dropResurrected(ctx, e); err != nil {
					return nil, fmt.Errorf("store: insert executions: %w", err)
				}
			}
		}
	}
	return duplicates, nil
}

// dropResurrected removes the open-set copy of e that InsertExecutions just inserted when the execution had
// been fired before and has since ended and been closed (its record is in the history): a firing made
// again (by a deposed leader, or a catch-up from an older last firing) must not bring back a copy without
// the events that ended it, which a later leader would take for a pending execution and run again (a firing
// skipped where it was fired is in the history at once, see RecordSkipped). A copy whose execution is not
// in the history is left: it may be the only copy of a firing made at the same moment by another leader, or
// one whose skip was half recorded (its fence, not its record), which has not run and may run now.
func (s *Store) dropResurrected(ctx context.Context, e job.Execution) error {
	closed, err := s.InHistory(ctx, []string{e.ID})
	if err != nil || !closed[e.ID] {
		return err
	}
	if err := s.open.dropCopy(ctx, e.ID, e.Epoch); err != nil {
		return fmt.Errorf("drop the copy of %s, ended before: %w", e.ID, err)
	}
	return nil
}

// InsertEvents records events in the open set with one unordered bulk insert. An event whose id is there
// already is skipped and counted in duplicates: a fact reported twice is recorded once. (One reported again
// after its execution was closed is left behind as stray; the leader's sweep removes it.)
func (s *Store) InsertEvents(ctx context.Context, events []job.Event) (duplicates int, err error) {
	if len(events) == 0 {
		return 0, nil
	}
	docs := make([]job.Event, len(events))
	for i, ev := range events {
		if ev.ID == "" {
			return 0, fmt.Errorf("store: insert events: event %d (execution %s) has no id", i, ev.ExecID)
		}
		ev.At = storedTime(ev.At)
		docs[i] = ev
	}
	dups, err := s.open.insertEvents(ctx, docs)
	if err != nil {
		return 0, fmt.Errorf("store: insert events: %w", err)
	}
	return dups, nil
}

// ExecutionRecorded reports whether execution id, scheduled at, was ever fired: its fence holds it (for as
// long as the fence is kept, see PruneFences), or a store written before the fence existed does.
func (s *Store) ExecutionRecorded(ctx context.Context, id string, at time.Time) (bool, error) {
	for _, coll := range []*mongo.Collection{s.db.Collection(fenceName(at)), s.execs} {
		err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: id}}, options.FindOne().SetProjection(bson.D{{Key: "_id", Value: 1}})).Err()
		switch {
		case err == nil:
			return true, nil
		case !errors.Is(err, mongo.ErrNoDocuments):
			return false, fmt.Errorf("store: execution recorded %s: %w", id, err)
		}
	}
	return false, nil
}

// GetExecution returns the execution with id, as far as it is known: in the open set, the history, the
// archive, or among the executions a version before the history recorded. ErrNotFound if none.
func (s *Store) GetExecution(ctx context.Context, id string) (job.Execution, error) {
	open, err := s.OpenByID(ctx, []string{id})
	if err != nil {
		return job.Execution{}, fmt.Errorf("store: get execution %s: %w", id, err)
	}
	if len(open) > 0 {
		return open[0], nil
	}
	for _, archived := range []bool{false, true} {
		buckets, err := s.Buckets(ctx, archived)
		if err != nil {
			return job.Execution{}, fmt.Errorf("store: get execution %s: %w", id, err)
		}
		e, ok, err := s.findInBuckets(ctx, buckets, id)
		if err != nil {
			return job.Execution{}, fmt.Errorf("store: get execution %s: %w", id, err)
		}
		if ok {
			return e, nil
		}
	}
	e, err := s.legacyExecution(ctx, id)
	if err != nil {
		return job.Execution{}, err
	}
	return e, nil
}

// legacyExecution reads an execution recorded by a version before the history: its document in the
// executions collection, folded with its events.
func (s *Store) legacyExecution(ctx context.Context, id string) (job.Execution, error) {
	var e job.Execution
	err := s.execs.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&e)
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
		return job.Execution{}, fmt.Errorf("%w: execution %s", ErrNotFound, id)
	case err != nil:
		return job.Execution{}, fmt.Errorf("store: get execution %s: %w", id, err)
	}
	cur, err := s.events.Find(ctx, bson.D{{Key: "exec_id", Value: id}})
	if err != nil {
		return job.Execution{}, fmt.Errorf("store: get execution %s: %w", id, err)
	}
	events, err := decodeEach[job.Event](ctx, s, "event", cur)
	if err != nil {
		return job.Execution{}, fmt.Errorf("store: get execution %s: %w", id, err)
	}
	e.Fold(events)
	return e, nil
}

// ExecutionsByID returns the executions with these ids that are known (see GetExecution).
func (s *Store) ExecutionsByID(ctx context.Context, ids []string) ([]job.Execution, error) {
	var out []job.Execution
	for _, id := range ids {
		e, err := s.GetExecution(ctx, id)
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			return nil, err
		default:
			out = append(out, e)
		}
	}
	return out, nil
}

// ExecutionFilter selects executions for ListExecutions. Zero fields select everything.
type ExecutionFilter struct {
	Job    string
	State  job.State
	Limit  int       // DefaultListLimit if 0 or less, at most MaxListLimit
	Before time.Time // only executions scheduled strictly before it, to page back in time
	// BeforeID, with Before, also lets through executions scheduled at Before whose id sorts before it: the
	// next page after one that ended with that execution, so that ties at the page boundary are not lost.
	BeforeID string
	// Archived lists the archive (executions older than history.keep) instead of the open set and the
	// history.
	Archived bool
	// Client: only those whose last run was on this client.
	Client string
	// Text: only those whose result's error or output contains it, in any case (the console's logs search).
	Text string
	// Since: only those scheduled at or after it; buckets older than it are not read, which is what
	// bounds a search for text that is rare.
	Since time.Time
}

// matchesText reports whether e's result mentions text (any case).
func matchesText(e job.Execution, text string) bool {
	if text == "" {
		return true
	}
	if e.Result == nil {
		return false
	}
	t := strings.ToLower(text)
	return strings.Contains(strings.ToLower(e.Result.Error), t) || strings.Contains(strings.ToLower(e.Result.Output), t)
}

// ListExecutions returns executions, newest scheduled first (ties by id, descending): those in the open set
// and the history, or the archive's. It reads the open set and then buckets from the newest, skipping those
// whose index says they hold nothing that matches, and stops as soon as no older bucket can change the
// answer: what it reads depends on the limit and on how rare the match is, not on the size of the history.
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
	match := func(e job.Execution) bool {
		return (f.Job == "" || e.Job == f.Job) && (f.State == "" || e.State == f.State) &&
			(f.Client == "" || e.Client == f.Client) && (f.Since.IsZero() || !e.ScheduledAt.Before(f.Since)) &&
			matchesText(e, f.Text) &&
			(f.Before.IsZero() || e.ScheduledAt.Before(f.Before) ||
				(f.BeforeID != "" && e.ScheduledAt.Equal(f.Before) && e.ID < f.BeforeID))
	}
	found := map[string]job.Execution{}
	if !f.Archived {
		open, _, err := s.ReadOpenSet(ctx)
		if err != nil {
			return nil, fmt.Errorf("store: list executions: %w", err)
		}
		for _, e := range open {
			if match(e) {
				found[e.ID] = e
			}
		}
	}
	buckets, err := s.Buckets(ctx, f.Archived)
	if err != nil {
		return nil, fmt.Errorf("store: list executions: %w", err)
	}
	var out []job.Execution
	sortNewest := func() {
		out = out[:0]
		for _, e := range found {
			out = append(out, e)
		}
		slices.SortFunc(out, func(a, b job.Execution) int {
			return cmp.Or(b.ScheduledAt.Compare(a.ScheduledAt), strings.Compare(b.ID, a.ID))
		})
	}
	sortNewest()
	filter := bson.D{}
	if f.Job != "" {
		filter = append(filter, bson.E{Key: "job", Value: f.Job})
	}
	if f.State != "" {
		filter = append(filter, bson.E{Key: "state", Value: f.State})
	}
	for _, b := range buckets { // newest last-scheduled first
		if len(out) >= limit && b.LastScheduled.Before(out[limit-1].ScheduledAt) {
			break // every later bucket holds only older executions
		}
		if !f.Since.IsZero() && b.LastScheduled.Before(f.Since) {
			break // and none of them is recent enough
		}
		if !b.holds(f.Job, f.State) || (!f.Before.IsZero() && b.FirstScheduled.After(f.Before)) {
			continue
		}
		execs, err := s.readBucket(ctx, b.Name, filter)
		if err != nil {
			return nil, fmt.Errorf("store: list executions: %w", err)
		}
		for _, e := range execs {
			if _, ok := found[e.ID]; !ok && match(e) {
				found[e.ID] = e
			}
		}
		sortNewest()
	}
	return out[:min(len(out), limit)], nil
}

// scanOpenExecutions returns the executions a version before the open set recorded, scheduled or fired at
// or after since, that have not finished, and each job's latest scheduled firing, folded, oldest scheduled
// first, by reading every execution since
// then and its events: the only way to know them (MigrateOpenSet). Firing time counts too, so that manual
// runs and catch-ups, fired after since for an earlier scheduled time, are found.
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
	if err := s.foldLegacy(ctx, execs); err != nil {
		return nil, fmt.Errorf("store: open executions: %w", err)
	}
	// Each job's latest scheduled firing goes too, ended or not: where its schedule resumes (the leader
	// reads it from the open set; without it a catch-up would start from the job's ActiveSince and fire
	// again times the old version fired, whose ids the new fences do not hold).
	latest := map[string]string{}
	for _, e := range execs { // oldest scheduled first
		if e.Trigger == job.TriggerSchedule || e.Trigger == job.TriggerCatchUp {
			latest[e.Job] = e.ID
		}
	}
	return slices.DeleteFunc(execs, func(e job.Execution) bool { return e.State.Terminal() && latest[e.Job] != e.ID }), nil
}

// foldLegacy reads the events a version before the open set recorded for execs, with one query per
// foldBatch executions, and folds them in.
func (s *Store) foldLegacy(ctx context.Context, execs []job.Execution) error {
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
		byExec := groupEvents(events)
		for i := range chunk {
			chunk[i].Fold(byExec[chunk[i].ID])
		}
	}
	return nil
}

// PruneFences drops the fences of the days (of scheduled time) that ended before cut. A firing that old is
// never made again, so its id need not be kept.
func (s *Store) PruneFences(ctx context.Context, cut time.Time) (int, error) {
	names, err := s.db.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		return 0, fmt.Errorf("store: prune fences: %w", err)
	}
	last := fenceName(cut.Add(-24 * time.Hour))
	dropped := 0
	for _, name := range names {
		if !strings.HasPrefix(name, fencePrefix) || len(name) != len(fencePrefix)+8 || name > last {
			continue
		}
		if err := s.db.Collection(name).Drop(ctx); err != nil {
			return dropped, fmt.Errorf("store: prune fences: drop %s: %w", name, err)
		}
		dropped++
	}
	return dropped, nil
}
