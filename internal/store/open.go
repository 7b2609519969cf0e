package store

import (
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

// The open set: what a new leader must know, in two collections whose size depends on what is in flight,
// not on history.
//
//   - open_executions holds a copy of every execution that has not been closed: inserted before the
//     execution itself (so an execution never exists without its copy), removed by CloseExecutions once the
//     leader knows the execution ended and its end is recorded.
//   - open_events holds a copy of every event, inserted before the event itself; removed with its
//     execution's copy. An event reported after its execution was closed (a late re-send) leaves a stray
//     copy behind, which ReadOpenSet names so that the leader removes it.
//
// Why copies rather than a query on executions: FerretDB 1.24 on SQLite answers every read by scanning the
// collection (it pushes down only a filter on _id alone, and even that does not use the _id index because
// the expressions differ), so a read of the big collections costs time in proportion to history. A leader
// reads only these two, in full, at takeover.
//
// The leader also keeps each job's latest scheduled firing in the set after it ended (see the server's
// closer): its scheduled time is where the job's schedule resumes, so no read of history is needed for it.

// ReadOpenSet returns every execution in the open set, folded with its events (terminal ones included:
// closed but not yet removed, or kept as their job's latest firing), oldest scheduled first, and the ids of
// executions whose events are in the set without their execution: closed, with late events left behind.
//
// Events are read before executions: an event is inserted after its execution's copy, so every event read
// has its copy read too unless the execution was closed in between.
func (s *Store) ReadOpenSet(ctx context.Context) (execs []job.Execution, stray []string, err error) {
	execs, events, err := s.open.read(ctx, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("store: read open set: %w", err)
	}
	byExec := groupEvents(events)
	for i := range execs {
		execs[i].Fold(byExec[execs[i].ID])
		delete(byExec, execs[i].ID)
	}
	for id := range byExec {
		stray = append(stray, id)
	}
	slices.Sort(stray)
	slices.SortStableFunc(execs, func(a, b job.Execution) int { return a.ScheduledAt.Compare(b.ScheduledAt) })
	return execs, stray, nil
}

// OpenByID returns the executions with these ids that are in the open set, folded. An execution that ended
// and was closed is not returned.
func (s *Store) OpenByID(ctx context.Context, ids []string) ([]job.Execution, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	execs, events, err := s.open.read(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("store: open executions by id: %w", err)
	}
	byExec := groupEvents(events)
	for i := range execs {
		execs[i].Fold(byExec[execs[i].ID])
	}
	return execs, nil
}

// MaxCloseBatch is the most ids one CloseExecutions deletes with one command per collection: each such
// delete scans the open set on FerretDB, so fewer, larger ones close more a second.
const MaxCloseBatch = 4000

// CloseExecutions removes executions (and their events) from the open set: they ended, and their end is
// recorded. The execution's copy goes first, so that a failure half way leaves stray events (which
// ReadOpenSet reports), never an execution without the events that ended it. Closing an id that is not in
// the set is not an error.
func (s *Store) CloseExecutions(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	if err := s.open.remove(ctx, ids); err != nil {
		return fmt.Errorf("store: close executions: %w", err)
	}
	return nil
}

// insertIgnoringDuplicates inserts docs into coll; a document whose _id is there already is not an error.
func insertIgnoringDuplicates(ctx context.Context, coll *mongo.Collection, docs []any) error {
	_, err := coll.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	if _, err := duplicateIndexes(err); err != nil {
		return err
	}
	return nil
}

func groupEvents(events []job.Event) map[string][]job.Event {
	byExec := make(map[string][]job.Event)
	for _, ev := range events {
		byExec[ev.ExecID] = append(byExec[ev.ExecID], ev)
	}
	return byExec
}

// openSetMigration names the cluster document that records that the open set was filled from the
// executions recorded before it existed.
const openSetMigration = "migration-open-set"

// MigrateOpenSet fills the open set, once per database, with the executions recorded since since that
// have not ended: they were recorded by a version without the open set, and a leader that reads only the
// open set would not see them. It scans the executions of that window once; later calls return at once.
func (s *Store) MigrateOpenSet(ctx context.Context, since time.Time) (migrated int, err error) {
	err = s.cluster.FindOne(ctx, bson.D{{Key: "_id", Value: openSetMigration}}).Err()
	switch {
	case err == nil:
		return 0, nil
	case !errors.Is(err, mongo.ErrNoDocuments):
		return 0, fmt.Errorf("store: migrate open set: %w", err)
	}
	open, err := s.scanOpenExecutions(ctx, since)
	if err != nil {
		return 0, fmt.Errorf("store: migrate open set: %w", err)
	}
	if len(open) > 0 {
		docs := make([]job.Execution, len(open))
		ids := make([]string, len(open))
		for i, e := range open {
			docs[i], ids[i] = storedExecutionDoc(e), e.ID
		}
		if _, err := s.open.insertCopies(ctx, docs); err != nil {
			return 0, fmt.Errorf("store: migrate open set: %w", err)
		}
		cur, err := s.events.Find(ctx, bson.D{{Key: "exec_id", Value: bson.D{{Key: "$in", Value: ids}}}})
		if err != nil {
			return 0, fmt.Errorf("store: migrate open set: %w", err)
		}
		events, err := decodeEach[job.Event](ctx, s, "event", cur)
		if err != nil {
			return 0, fmt.Errorf("store: migrate open set: %w", err)
		}
		if len(events) > 0 {
			if _, err := s.open.insertEvents(ctx, events); err != nil {
				return 0, fmt.Errorf("store: migrate open set: %w", err)
			}
		}
	}
	_, err = s.cluster.InsertOne(ctx, bson.D{{Key: "_id", Value: openSetMigration}, {Key: "at", Value: storedTime(time.Now())}, {Key: "migrated", Value: len(open)}})
	if err != nil && !mongo.IsDuplicateKeyError(err) {
		return 0, fmt.Errorf("store: migrate open set: %w", err)
	}
	return len(open), nil
}

// storedExecutionDoc is e as its document is stored: the derived fields are not (their bson tags say "-").
func storedExecutionDoc(e job.Execution) job.Execution {
	e.ScheduledAt, e.FiredAt = storedTime(e.ScheduledAt), storedTime(e.FiredAt)
	return e
}

// InsertClosed records executions that ended (folded) as Clover records them once they are closed: their
// ids in the fences and their records in the history through w, outside the open set. For tools that fill a
// store (the bench's history scenario, an import); Clover itself records through InsertExecutions,
// InsertEvents and the closer. Duplicates are skipped.
func (s *Store) InsertClosed(ctx context.Context, w *HistoryWriter, execs []job.Execution, now time.Time) error {
	byDay := map[string][]any{}
	for _, e := range execs {
		day := fenceName(e.ScheduledAt)
		byDay[day] = append(byDay[day], fenceDoc{ID: e.ID, Job: e.Job, ScheduledAt: storedTime(e.ScheduledAt), Epoch: e.Epoch})
	}
	for day, docs := range byDay {
		if err := insertIgnoringDuplicates(ctx, s.db.Collection(day), docs); err != nil {
			return fmt.Errorf("store: insert closed executions: %w", err)
		}
	}
	return w.Append(ctx, execs, now)
}

// InsertLegacy records executions and their events as versions before the open set and the history did:
// in the executions and execution_events collections. For upgrade tests and for comparing with those
// versions. Duplicates are skipped.
func (s *Store) InsertLegacy(ctx context.Context, execs []job.Execution, events []job.Event) error {
	if len(execs) > 0 {
		docs := make([]any, len(execs))
		for i, e := range execs {
			docs[i] = storedExecutionDoc(e)
		}
		if err := insertIgnoringDuplicates(ctx, s.execs, docs); err != nil {
			return fmt.Errorf("store: insert legacy executions: %w", err)
		}
	}
	if len(events) > 0 {
		docs := make([]any, len(events))
		for i, ev := range events {
			ev.At = storedTime(ev.At)
			docs[i] = ev
		}
		if err := insertIgnoringDuplicates(ctx, s.events, docs); err != nil {
			return fmt.Errorf("store: insert legacy events: %w", err)
		}
	}
	return nil
}
