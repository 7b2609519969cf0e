package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/clover-sched/clover/internal/job"
)

// Buckets returns the history buckets (archived: the archive's), newest scheduled first.
//
// It reads the index documents of buckets only when it does not know them yet or they may still change: a
// sealed bucket's document never changes, so each process keeps those it has read. The buckets are found
// by listing collection names (which FerretDB answers from memory), and a document by its _id. So a read
// costs what changed since the last one, not the size of the history.
func (s *Store) Buckets(ctx context.Context, archived bool) ([]Bucket, error) {
	prefix, coll := historyPrefix, s.historyIndex
	if archived {
		prefix, coll = archivePrefix, s.archiveIndex
	}
	names, err := s.db.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		return nil, fmt.Errorf("store: list history buckets: %w", err)
	}
	now := time.Now()
	names = slices.DeleteFunc(names, func(name string) bool { return !strings.HasPrefix(name, prefix) })
	s.bucketsMu.Lock()
	unknown := 0
	for _, name := range names {
		if b, ok := s.buckets[name]; !ok || !b.sealed(now) {
			unknown++
		}
	}
	s.bucketsMu.Unlock()
	fetched := map[string]Bucket{}
	if unknown > bucketLookups {
		// A process that has not read the index yet (or long ago): one read of the whole index costs less
		// than a read by _id per bucket, each of which scans the index on FerretDB.
		all, err := s.readIndex(ctx, coll)
		if err != nil {
			return nil, err
		}
		for _, b := range all {
			fetched[b.Name] = b
		}
	}
	var buckets []Bucket
	for _, name := range names {
		s.bucketsMu.Lock()
		b, known := s.buckets[name]
		s.bucketsMu.Unlock()
		if f, ok := fetched[name]; ok {
			b, known = f, true
			if b.sealed(now) {
				s.bucketsMu.Lock()
				s.buckets[name] = b
				s.bucketsMu.Unlock()
			}
		} else if unknown > bucketLookups && (!known || !b.sealed(now)) {
			continue // not indexed when the index was read
		}
		if !known || !b.sealed(now) {
			b = Bucket{}
			err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: name}}).Decode(&b)
			switch {
			case errors.Is(err, mongo.ErrNoDocuments):
				continue // created, not yet indexed; or moved since the listing
			case err != nil:
				return nil, fmt.Errorf("store: read history index %s: %w", name, err)
			}
			if b.sealed(now) {
				s.bucketsMu.Lock()
				s.buckets[name] = b
				s.bucketsMu.Unlock()
			}
		}
		buckets = append(buckets, b)
	}
	s.bucketsMu.Lock()
	for name := range s.buckets {
		if strings.HasPrefix(name, prefix) && !slices.Contains(names, name) {
			delete(s.buckets, name) // moved or dropped
		}
	}
	s.bucketsMu.Unlock()
	slices.SortFunc(buckets, func(a, b Bucket) int {
		return cmp.Or(b.LastScheduled.Compare(a.LastScheduled), strings.Compare(b.Name, a.Name))
	})
	return buckets, nil
}

// readIndex reads every document of a bucket index (history_index or archive_index).
func (s *Store) readIndex(ctx context.Context, coll *mongo.Collection) ([]Bucket, error) {
	cur, err := coll.Find(ctx, bson.D{})
	if err != nil {
		return nil, fmt.Errorf("store: read %s: %w", coll.Name(), err)
	}
	buckets, err := decodeEach[Bucket](ctx, s, "history bucket", cur)
	if err != nil {
		return nil, fmt.Errorf("store: read %s: %w", coll.Name(), err)
	}
	return buckets, nil
}

// bucketLookups is how many index documents Buckets reads one by one before it reads the whole index
// instead.
const bucketLookups = 20

// readBucket returns the executions of a bucket that match filter, decoded. A bucket that is gone (moved
// to the archive meanwhile) holds nothing.
func (s *Store) readBucket(ctx context.Context, name string, filter bson.D) ([]job.Execution, error) {
	cur, err := s.db.Collection(name).Find(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	recs, err := decodeEach[historyRecord](ctx, s, "history record", cur)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	out := make([]job.Execution, 0, len(recs))
	for _, r := range recs {
		e, err := r.execution()
		if err != nil {
			s.logger.Error("skipped a history record that does not decode", "bucket", name, "err", err)
			continue
		}
		out = append(out, e)
	}
	return out, nil
}

// findInBuckets looks for execution id in buckets, those whose scheduled times may hold it first.
func (s *Store) findInBuckets(ctx context.Context, buckets []Bucket, id string) (job.Execution, bool, error) {
	at, timed := scheduledFromID(id)
	order := slices.Clone(buckets)
	if timed {
		// Buckets that span the id's time first; the rest cannot hold it.
		order = slices.DeleteFunc(order, func(b Bucket) bool { return at.Before(b.FirstScheduled) || at.After(b.LastScheduled) })
	}
	for _, b := range order {
		var rec historyRecord
		err := s.db.Collection(b.Name).FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&rec)
		switch {
		case errors.Is(err, mongo.ErrNoDocuments):
			continue
		case err != nil:
			return job.Execution{}, false, fmt.Errorf("read %s: %w", b.Name, err)
		}
		e, err := rec.execution()
		if err != nil {
			return job.Execution{}, false, err
		}
		return e, true, nil
	}
	return job.Execution{}, false, nil
}

// scheduledFromID is the scheduled time an execution id carries (job@<RFC 3339>[~shard][@client]), if any.
func scheduledFromID(id string) (time.Time, bool) {
	_, rest, ok := strings.Cut(id, "@")
	if !ok {
		return time.Time{}, false
	}
	if i := strings.IndexAny(rest, "~@"); i >= 0 {
		rest = rest[:i]
	}
	t, err := time.Parse(time.RFC3339Nano, rest)
	if err != nil {
		return time.Time{}, false
	}
	return storedTime(t), true
}

// Sizes says how much the store holds of executions, by where they are.
type Sizes struct {
	OpenExecutions int64 `json:"open_executions"`
	OpenEvents     int64 `json:"open_events"`
	History        int64 `json:"history"` // records in the history's buckets
	HistoryBuckets int   `json:"history_buckets"`
	Archive        int64 `json:"archive"`
	ArchiveBuckets int   `json:"archive_buckets"`
	FenceDays      int   `json:"fence_days"` // fence collections, one per day of scheduled time
}

// ExecutionSizes counts what the store holds of executions: the open set by counting it (it is bounded),
// the history and the archive from their indexes, the fences by their collections.
func (s *Store) ExecutionSizes(ctx context.Context) (Sizes, error) {
	var z Sizes
	var err error
	if z.OpenExecutions, z.OpenEvents, err = s.open.count(ctx); err != nil {
		return z, fmt.Errorf("store: sizes: %w", err)
	}
	for _, archived := range []bool{false, true} {
		buckets, err := s.Buckets(ctx, archived)
		if err != nil {
			return z, err
		}
		var n int64
		for _, b := range buckets {
			n += int64(b.Count)
		}
		if archived {
			z.Archive, z.ArchiveBuckets = n, len(buckets)
		} else {
			z.History, z.HistoryBuckets = n, len(buckets)
		}
	}
	names, err := s.db.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		return z, fmt.Errorf("store: sizes: %w", err)
	}
	for _, name := range names {
		if strings.HasPrefix(name, fencePrefix) && len(name) == len(fencePrefix)+8 {
			z.FenceDays++
		}
	}
	return z, nil
}

// FinishedBetween returns the ids of the executions whose last run ended in [from, to) (on their client's
// clock) and whose end is recorded, in the open set or the history. It reads every history bucket: for
// benchmarks, not for a hot path.
func (s *Store) FinishedBetween(ctx context.Context, from, to time.Time) (map[string]bool, error) {
	ids := map[string]bool{}
	window := bson.D{{Key: "$gte", Value: from.UTC()}, {Key: "$lt", Value: to.UTC()}}
	buckets, err := s.Buckets(ctx, false)
	if err != nil {
		return nil, err
	}
	idOnly := options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}})
	for _, b := range buckets {
		if b.LastClosed.Before(from) {
			continue
		}
		cur, err := s.db.Collection(b.Name).Find(ctx, bson.D{{Key: "finished_at", Value: window}}, idOnly)
		if err != nil {
			return nil, fmt.Errorf("store: finished between: %w", err)
		}
		var rows []struct {
			ID string `bson:"_id"`
		}
		if err := cur.All(ctx, &rows); err != nil {
			return nil, fmt.Errorf("store: finished between: %w", err)
		}
		for _, r := range rows {
			ids[r.ID] = true
		}
	}
	events, err := s.open.findEvents(ctx, bson.D{{Key: "kind", Value: job.EventFinished}, {Key: "at", Value: window}})
	if err != nil {
		return nil, fmt.Errorf("store: finished between: %w", err)
	}
	for _, ev := range events {
		ids[ev.ExecID] = true
	}
	return ids, nil
}

// InHistory returns which of ids the history (or the archive) holds.
func (s *Store) InHistory(ctx context.Context, ids []string) (map[string]bool, error) {
	found := map[string]bool{}
	if len(ids) == 0 {
		return found, nil
	}
	// One read per bucket for all the ids it may hold, not one per id and bucket: on FerretDB every read
	// scans its bucket, and a sweep's recheck of thousands of a batch's executions (ids without a time,
	// so any bucket may hold them) was thousands of scans per bucket.
	for _, archived := range []bool{false, true} {
		buckets, err := s.Buckets(ctx, archived)
		if err != nil {
			return nil, err
		}
		for _, b := range buckets {
			var want []string
			for _, id := range ids {
				if found[id] {
					continue
				}
				if at, timed := scheduledFromID(id); timed && (at.Before(b.FirstScheduled) || at.After(b.LastScheduled)) {
					continue // the bucket cannot hold it
				}
				want = append(want, id)
			}
			if len(want) == 0 {
				continue
			}
			type idOnly struct {
				ID string `bson:"_id"`
			}
			got, err := findAll[idOnly](ctx, s, b.Name, "history "+b.Name, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: want}}}},
				options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}))
			if err != nil {
				return nil, fmt.Errorf("store: in history: %w", err)
			}
			for _, r := range got {
				found[r.ID] = true
			}
		}
	}
	return found, nil
}
