package store

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang/snappy"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/clover-sched/clover/internal/job"
)

// History: the record of every execution that ended, one document each, folded once when the leader
// closes it (see CloseExecutions), in buckets of at most a set number of executions. A bucket is its own
// collection (history_e<epoch>_<n>), listed with what it holds in history_index. When a bucket is older
// than history.keep it is renamed into the archive (archive_e<epoch>_<n>, listed in archive_index), and an
// archived bucket older than history.archive_keep is dropped.
//
// Why buckets: FerretDB 1.24 answers every read by scanning the whole collection, so a read must only ever
// meet a bounded number of documents. A listing reads the index (one document per bucket) and the newest
// buckets it needs; a read by id reads the buckets whose scheduled times contain the id's. Moving and
// pruning are a rename and a drop, atomic and constant-time on every MongoDB-protocol server, instead of
// deletes that scan. On MongoDB the same layout needs no other index than _id.

// DefaultBucketSize is the most executions a history bucket holds unless the writer is told otherwise:
// small enough that FerretDB reads a bucket in tens of milliseconds.
const DefaultBucketSize = 1000

// sealMargin is how long after its SealBy a bucket that is not full is taken as sealed: room for the
// clocks of a deposed leader's writer (servers' clocks are assumed within a second of each other).
const sealMargin = 10 * time.Second

const (
	collHistoryIndex = "history_index"
	collArchiveIndex = "archive_index"
	historyPrefix    = "history_"
	archivePrefix    = "archive_"
)

// historyRecord is an ended execution as its bucket stores it: the fields reads filter on, and the whole
// folded execution as snappy-compressed JSON (its output tail compresses well, and one opaque field is
// cheaper for FerretDB to decode than the execution's nested fields).
type historyRecord struct {
	ID          string    `bson:"_id"`
	Job         string    `bson:"job"`
	State       job.State `bson:"state"`
	ScheduledAt time.Time `bson:"scheduled_at"`
	FinishedAt  time.Time `bson:"finished_at"`
	Doc         []byte    `bson:"doc"`
}

// Bucket is what history_index (or archive_index) says of one bucket.
type Bucket struct {
	Name           string    `bson:"_id" json:"name"`
	Epoch          int64     `bson:"epoch" json:"epoch"`
	Created        time.Time `bson:"created" json:"created"`
	FirstScheduled time.Time `bson:"first_scheduled" json:"first_scheduled"`
	LastScheduled  time.Time `bson:"last_scheduled" json:"last_scheduled"`
	LastClosed     time.Time `bson:"last_closed" json:"last_closed"` // when the newest execution was added
	// SealBy: no execution is added after it (a quiet cluster still starts a new bucket now and then, so
	// that a bucket moves to the archive soon after its executions are history.keep old).
	SealBy   time.Time     `bson:"seal_by" json:"seal_by"`
	Count    int           `bson:"count" json:"count"`
	Capacity int           `bson:"capacity" json:"capacity"` // the most it holds
	Counts   []BucketCount `bson:"counts" json:"counts"`
	Archived time.Time     `bson:"archived,omitempty" json:"archived,omitzero"`
}

// BucketCount is how many executions of a job ended in a state within a bucket.
type BucketCount struct {
	Job   string    `bson:"job" json:"job"`
	State job.State `bson:"state" json:"state"`
	N     int       `bson:"n" json:"n"`
}

// sealed reports whether no execution is added to b any more: it is full, or past its SealBy.
func (b *Bucket) sealed(now time.Time) bool {
	return b.Count >= cmp.Or(b.Capacity, DefaultBucketSize) || now.After(b.SealBy.Add(sealMargin))
}

func (b *Bucket) holds(jobName string, state job.State) bool {
	if jobName == "" && state == "" {
		return b.Count > 0
	}
	return slices.ContainsFunc(b.Counts, func(c BucketCount) bool {
		return c.N > 0 && (jobName == "" || c.Job == jobName) && (state == "" || c.State == state)
	})
}

func (b *Bucket) add(e job.Execution, now time.Time) {
	at := storedTime(e.ScheduledAt)
	if b.Count == 0 || at.Before(b.FirstScheduled) {
		b.FirstScheduled = at
	}
	if at.After(b.LastScheduled) {
		b.LastScheduled = at
	}
	b.LastClosed = storedTime(now)
	b.Count++
	i := slices.IndexFunc(b.Counts, func(c BucketCount) bool { return c.Job == e.Job && c.State == e.State })
	if i < 0 {
		b.Counts = append(b.Counts, BucketCount{Job: e.Job, State: e.State})
		i = len(b.Counts) - 1
	}
	b.Counts[i].N++
}

// HistoryWriter appends ended executions to the history, filling one bucket after the other. A leader makes
// one per term (NewHistoryWriter), so two leaders never write the same bucket. It is not safe for
// concurrent use.
type HistoryWriter struct {
	s      *Store
	epoch  int64
	span   time.Duration
	size   int
	n      int
	bucket *Bucket
	seen   map[string]bool // ids in the current bucket, so a second close of one execution is not counted twice
}

// NewHistoryWriter returns a writer of buckets named after epoch, each written for span at most and holding
// size executions at most (DefaultBucketSize if 0 or less).
func (s *Store) NewHistoryWriter(epoch int64, span time.Duration, size int) *HistoryWriter {
	if size <= 0 {
		size = DefaultBucketSize
	}
	return &HistoryWriter{s: s, epoch: epoch, span: span, size: size}
}

// Epoch is the term whose buckets w writes.
func (w *HistoryWriter) Epoch() int64 { return w.epoch }

// Append records ended executions (folded: state, runs and result set) in the current bucket, starting a new
// one when it is full or old, and updates the bucket's index document. An execution recorded before is not
// recorded twice in one bucket; across buckets (a close retried by a later term) the reads keep one.
func (w *HistoryWriter) Append(ctx context.Context, execs []job.Execution, now time.Time) error {
	for len(execs) > 0 {
		if w.bucket == nil || w.bucket.Count >= w.size || now.After(w.bucket.SealBy) {
			w.n++
			w.bucket = &Bucket{
				Name: fmt.Sprintf("%se%010d_%06d", historyPrefix, w.epoch, w.n), Epoch: w.epoch,
				Created: storedTime(now), SealBy: storedTime(now.Add(w.span)), Capacity: w.size,
			}
			w.seen = map[string]bool{}
		}
		room := w.size - w.bucket.Count
		chunk := execs[:min(room, len(execs))]
		execs = execs[len(chunk):]
		docs := make([]any, 0, len(chunk))
		for _, e := range chunk {
			rec, err := newRecord(e)
			if err != nil {
				return fmt.Errorf("store: append history: %w", err)
			}
			docs = append(docs, rec)
		}
		if err := insertIgnoringDuplicates(ctx, w.s.db.Collection(w.bucket.Name), docs); err != nil {
			return fmt.Errorf("store: append history to %s: %w", w.bucket.Name, err)
		}
		next := *w.bucket
		next.Counts = slices.Clone(w.bucket.Counts)
		for _, e := range chunk {
			if !w.seen[e.ID] {
				next.add(e, now)
			}
		}
		_, err := w.s.historyIndex.ReplaceOne(ctx, bson.D{{Key: "_id", Value: next.Name}}, next, options.Replace().SetUpsert(true))
		if err != nil {
			return fmt.Errorf("store: index history bucket %s: %w", next.Name, err)
		}
		for _, e := range chunk {
			w.seen[e.ID] = true
		}
		*w.bucket = next
	}
	return nil
}

func newRecord(e job.Execution) (historyRecord, error) {
	e.ScheduledAt, e.FiredAt = storedTime(e.ScheduledAt), storedTime(e.FiredAt)
	data, err := json.Marshal(e)
	if err != nil {
		return historyRecord{}, fmt.Errorf("encode execution %s: %w", e.ID, err)
	}
	return historyRecord{ID: e.ID, Job: e.Job, State: e.State, ScheduledAt: e.ScheduledAt, FinishedAt: storedTime(e.FinishedAt), Doc: snappy.Encode(nil, data)}, nil
}

func (r historyRecord) execution() (job.Execution, error) {
	data, err := snappy.Decode(nil, r.Doc)
	if err != nil {
		return job.Execution{}, fmt.Errorf("execution %s: decompress: %w", r.ID, err)
	}
	var e job.Execution
	if err := json.Unmarshal(data, &e); err != nil {
		return job.Execution{}, fmt.Errorf("execution %s: decode: %w", r.ID, err)
	}
	return e, nil
}

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

// ArchiveBuckets moves every sealed history bucket (full, or past its SealBy) whose newest execution was
// added before cut into the archive: a rename, so an execution is in exactly one of the two at any time.
// It is idempotent and resumable: a move cut short is finished by the next call. It returns how many
// buckets it moved.
func (s *Store) ArchiveBuckets(ctx context.Context, cut, now time.Time) (int, error) {
	// The whole index, not Buckets: a move cut short between the rename and the unlisting leaves an index
	// document without its collection, which Buckets does not show and this must finish.
	buckets, err := s.readIndex(ctx, s.historyIndex)
	if err != nil {
		return 0, err
	}
	moved := 0
	var errs []error
	for _, b := range buckets {
		if !b.LastClosed.Before(cut) || !b.sealed(now) {
			continue
		}
		if err := s.archiveBucket(ctx, b, now); err != nil {
			if ctx.Err() != nil {
				return moved, err
			}
			errs = append(errs, err) // one bucket that cannot move does not hold up the others
			continue
		}
		moved++
	}
	return moved, errors.Join(errs...)
}

// archiveBucket lists b in the archive index, renames its collection, then removes it from the history
// index; each step is a no-op when done before.
func (s *Store) archiveBucket(ctx context.Context, b Bucket, now time.Time) error {
	to := archivePrefix + strings.TrimPrefix(b.Name, historyPrefix)
	ab := b
	ab.Name, ab.Archived = to, storedTime(now)
	if _, err := s.archiveIndex.InsertOne(ctx, ab); err != nil && !mongo.IsDuplicateKeyError(err) {
		return fmt.Errorf("store: archive %s: index: %w", b.Name, err)
	}
	names, err := s.db.ListCollectionNames(ctx, bson.D{{Key: "name", Value: b.Name}})
	if err != nil {
		return fmt.Errorf("store: archive %s: %w", b.Name, err)
	}
	if len(names) > 0 {
		cmd := bson.D{{Key: "renameCollection", Value: s.dbName + "." + b.Name}, {Key: "to", Value: s.dbName + "." + to}}
		if err := s.client.Database("admin").RunCommand(ctx, cmd).Err(); err != nil {
			return fmt.Errorf("store: archive %s: rename: %w", b.Name, err)
		}
	}
	if _, err := s.historyIndex.DeleteOne(ctx, bson.D{{Key: "_id", Value: b.Name}}); err != nil {
		return fmt.Errorf("store: archive %s: unindex: %w", b.Name, err)
	}
	return nil
}

// PruneArchive drops the archived buckets whose newest execution was added before cut, and returns how many
// it dropped.
func (s *Store) PruneArchive(ctx context.Context, cut time.Time) (int, error) {
	buckets, err := s.readIndex(ctx, s.archiveIndex) // the whole index: a drop cut short left a document behind
	if err != nil {
		return 0, err
	}
	dropped := 0
	for _, b := range buckets {
		if !b.LastClosed.Before(cut) {
			continue
		}
		if err := s.db.Collection(b.Name).Drop(ctx); err != nil {
			return dropped, fmt.Errorf("store: prune archive %s: %w", b.Name, err)
		}
		if _, err := s.archiveIndex.DeleteOne(ctx, bson.D{{Key: "_id", Value: b.Name}}); err != nil {
			return dropped, fmt.Errorf("store: prune archive %s: unindex: %w", b.Name, err)
		}
		dropped++
	}
	return dropped, nil
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
	if z.OpenExecutions, err = s.openExecs.CountDocuments(ctx, bson.D{}); err != nil {
		return z, fmt.Errorf("store: sizes: %w", err)
	}
	if z.OpenEvents, err = s.openEvents.CountDocuments(ctx, bson.D{}); err != nil {
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
	events, err := s.readOpenEvents(ctx, bson.D{{Key: "kind", Value: job.EventFinished}, {Key: "at", Value: window}})
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
	for _, archived := range []bool{false, true} {
		buckets, err := s.Buckets(ctx, archived)
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			if found[id] {
				continue
			}
			_, ok, err := s.findInBuckets(ctx, buckets, id)
			if err != nil {
				return nil, fmt.Errorf("store: in history: %w", err)
			}
			found[id] = ok
		}
	}
	return found, nil
}
