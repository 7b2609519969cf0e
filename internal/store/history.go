package store

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/golang/snappy"
	"go.mongodb.org/mongo-driver/v2/bson"
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
	// LastOnSchedule is the latest scheduled time among them of a firing of the job's schedule (see
	// LatestSkipped).
	LastOnSchedule time.Time `bson:"last_on_schedule,omitempty" json:"last_on_schedule,omitzero"`
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
	if (e.Trigger == job.TriggerSchedule || e.Trigger == job.TriggerCatchUp) && at.After(b.Counts[i].LastOnSchedule) {
		b.Counts[i].LastOnSchedule = at
	}
}

// HistoryWriter appends ended executions to the history, filling one bucket after the other. A leader makes
// one per term (NewHistoryWriter), so two leaders never write the same bucket. It is not safe for
// concurrent use.
type HistoryWriter struct {
	s      *Store
	epoch  int64
	series string // in the buckets' names, apart from other writers of the same term
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

// newSeriesWriter is NewHistoryWriter for a second writer of the same term, whose buckets are named apart
// (history_e<epoch>_<series><n>).
func (s *Store) newSeriesWriter(epoch int64, series string, span time.Duration, size int) *HistoryWriter {
	w := s.NewHistoryWriter(epoch, span, size)
	w.series = series
	return w
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
				Name: fmt.Sprintf("%se%010d_%s%06d", historyPrefix, w.epoch, w.series, w.n), Epoch: w.epoch,
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
