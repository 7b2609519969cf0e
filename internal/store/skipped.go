package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/clover-sched/clover/internal/job"
)

// A firing the leader skips where it fires it (its job's overlap or misfire policy says so) never runs, so
// it never needs the open set: it is recorded ended at once, its id in the fence, marked skipped, then its
// record in the history. Under overload most firings may be skipped, and each one recorded as a run is
// (an open-set copy, a finished event, then the closer's read and deletes, which scan the open set on
// FerretDB) cost the store about five times what these two inserts cost.
//
// Without the open-set copy:
//   - A firing made again to run (a deposed leader, a catch-up) finds the fence taken, and its own copy
//     would be the only one, without an end: InsertExecutions drops it, the history having the execution
//     (see dropResurrected).
//   - A skip whose fence landed and whose record did not (the leader died, the store failed in between) is
//     recorded by the next RecordSkipped of the same firing, which finds the fence marked skipped and the
//     execution nowhere else. If the firing is made again to run instead, it has not run, and it runs.
//   - The leader skips firings this way only where nothing else needs the copy (server: skipsDirect).

// SkipSeries names the leader's series of buckets for RecordSkipped.
const SkipSeries = "s"

// HistorySeries names a term's own series of history buckets, written by one writer the store keeps for it.
type HistorySeries struct {
	Epoch  int64
	Series string // in the buckets' names: apart from the closer's (see newSeriesWriter)
	Span   time.Duration
	Size   int
}

// seriesWriters are the history writers of RecordSkipped, one per term and series, each used under its
// lock: the leader records skips from its loop and from its inserter.
type seriesWriters struct {
	mu      sync.Mutex
	writers map[HistorySeries]*lockedWriter
	newest  int64 // the newest term that wrote: an older one's writer is gone, and a new one would reuse its buckets' names
}

type lockedWriter struct {
	mu sync.Mutex
	w  *HistoryWriter
}

// seriesWriter returns the writer of into, and forgets those of older terms.
func (s *Store) seriesWriter(into HistorySeries) (*lockedWriter, error) {
	s.series.mu.Lock()
	defer s.series.mu.Unlock()
	if s.series.writers == nil {
		s.series.writers = map[HistorySeries]*lockedWriter{}
	}
	if w, ok := s.series.writers[into]; ok {
		return w, nil
	}
	if into.Epoch < s.series.newest {
		return nil, fmt.Errorf("term %d has ended here: term %d writes the history", into.Epoch, s.series.newest)
	}
	s.series.newest = into.Epoch
	for k := range maps.Keys(s.series.writers) {
		if k.Epoch < into.Epoch {
			delete(s.series.writers, k)
		}
	}
	w := &lockedWriter{w: s.newSeriesWriter(into.Epoch, into.Series, into.Span, into.Size)}
	s.series.writers[into] = w
	return w, nil
}

// RecordSkipped records executions skipped where they were fired, each folded with the finished event
// that says why (State skipped, a final Result): the id in the fence of its scheduled day, marked skipped,
// then the execution in the history, in the term's series of buckets. An execution the fence holds already
// was fired before and is returned in duplicates, unless it is a skip whose history record is missing, which
// is recorded now. On an error some may have been recorded; recording them again is safe.
func (s *Store) RecordSkipped(ctx context.Context, into HistorySeries, execs []job.Execution, now time.Time) (duplicates []string, err error) {
	if len(execs) == 0 {
		return nil, nil
	}
	byDay := map[string][]int{}
	for i, e := range execs {
		if e.ID == "" {
			return nil, fmt.Errorf("store: record skipped: execution %d (job %s) has no id", i, e.Job)
		}
		if e.State != job.StateSkipped || e.Result == nil {
			return nil, fmt.Errorf("store: record skipped: execution %s is %s, not skipped", e.ID, e.State)
		}
		day := fenceName(e.ScheduledAt)
		byDay[day] = append(byDay[day], i)
	}
	fresh := make([]bool, len(execs))
	var dups []int
	for _, day := range slices.Sorted(maps.Keys(byDay)) {
		idx := byDay[day]
		fence := make([]any, len(idx))
		for j, i := range idx {
			e := execs[i]
			fence[j] = fenceDoc{ID: e.ID, Job: e.Job, ScheduledAt: storedTime(e.ScheduledAt), Epoch: e.Epoch, Skipped: true}
			fresh[i] = true
		}
		_, err := s.db.Collection(day).InsertMany(ctx, fence, options.InsertMany().SetOrdered(false))
		dupIdx, err := duplicateIndexes(err)
		if err != nil {
			return nil, fmt.Errorf("store: record skipped: %w", err)
		}
		for _, j := range dupIdx {
			fresh[idx[j]] = false
			dups = append(dups, idx[j])
		}
	}
	missing, err := s.unrecordedSkips(ctx, execs, dups)
	if err != nil {
		return nil, fmt.Errorf("store: record skipped: %w", err)
	}
	var record []job.Execution
	for i, e := range execs {
		switch {
		case fresh[i] || missing[e.ID]:
			record = append(record, e)
		default:
			duplicates = append(duplicates, e.ID)
		}
	}
	if len(record) == 0 {
		return duplicates, nil
	}
	lw, err := s.seriesWriter(into)
	if err != nil {
		return nil, fmt.Errorf("store: record skipped: %w", err)
	}
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if err := lw.w.Append(ctx, record, now); err != nil {
		return nil, fmt.Errorf("store: record skipped: %w", err)
	}
	return duplicates, nil
}

// unrecordedSkips returns, of the executions at dups whose fence was taken, those marked skipped on the
// fence and found neither in the open set nor in the history: a skip whose history record was never written.
// One found open is some leader's execution (an open copy is inserted before its fence); one in the
// history has its record.
func (s *Store) unrecordedSkips(ctx context.Context, execs []job.Execution, dups []int) (map[string]bool, error) {
	if len(dups) == 0 {
		return nil, nil
	}
	ids := make([]string, len(dups))
	for k, i := range dups {
		ids[k] = execs[i].ID
	}
	open, err := s.OpenByID(ctx, ids)
	if err != nil {
		return nil, err
	}
	known, err := s.InHistory(ctx, ids)
	if err != nil {
		return nil, err
	}
	for _, e := range open {
		known[e.ID] = true
	}
	out := map[string]bool{}
	for _, i := range dups {
		e := execs[i]
		if known[e.ID] {
			continue
		}
		skipped, err := s.fenceSaysSkipped(ctx, e.ID, e.ScheduledAt)
		if err != nil {
			return nil, err
		}
		if skipped {
			out[e.ID] = true
		}
	}
	return out, nil
}

// fenceSaysSkipped reports whether the fence holds id marked skipped.
func (s *Store) fenceSaysSkipped(ctx context.Context, id string, at time.Time) (bool, error) {
	var doc fenceDoc
	err := s.db.Collection(fenceName(at)).FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&doc)
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("read the fence of %s: %w", id, err)
	}
	return doc.Skipped, nil
}

// skipBucketsRead bounds the buckets LatestSkipped reads: the newest of the skip series.
const skipBucketsRead = 64

// LatestSkipped returns, for each job, the latest scheduled time of a firing of its schedule that was
// skipped where it was fired, as far as the newest buckets of the skip series (series) tell. A new leader
// learns where each job's schedule stands from the open set, which holds each job's latest firing that
// ran or runs; a later one skipped there and then is only in the history. One older than these buckets is
// owed again, found in the fence and not run: it costs a lookup, not a run.
func (s *Store) LatestSkipped(ctx context.Context, series string) (map[string]time.Time, error) {
	names, err := s.db.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		return nil, fmt.Errorf("store: latest skipped: list buckets: %w", err)
	}
	names = slices.DeleteFunc(names, func(name string) bool { // history_e<epoch>_<series><n>
		rest, ok := strings.CutPrefix(name, historyPrefix+"e")
		_, n, found := strings.Cut(rest, "_")
		return !ok || !found || !strings.HasPrefix(n, series)
	})
	slices.Sort(names) // epochs and numbers are zero-padded: newest last
	names = names[max(0, len(names)-skipBucketsRead):]
	out := map[string]time.Time{}
	if len(names) == 0 {
		return out, nil
	}
	buckets, err := findAll[Bucket](ctx, s, collHistoryIndex, "history index", bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: names}}}})
	if err != nil {
		return nil, fmt.Errorf("store: latest skipped: %w", err)
	}
	for _, b := range buckets {
		for _, c := range b.Counts {
			if c.State == job.StateSkipped && c.LastOnSchedule.After(out[c.Job]) {
				out[c.Job] = c.LastOnSchedule
			}
		}
	}
	return out, nil
}
