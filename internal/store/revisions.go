package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/clover-sched/clover/internal/job"
)

// A job's revisions are its definition's history: one immutable document per version, whatever made the
// change (the API, the console, `config apply`, a client's declaration, a rollback), keyed by job and
// version so that recording one again (a retry) changes nothing. A deleted job leaves a revision of the
// definition it had (Action "deleted") and a tombstone that keeps its version counting: a job made again
// under that name, or restored, goes on from there, and its revisions never collide with the old ones.

const (
	collRevisions  = "job_revisions"
	collTombstones = "job_tombstones"
)

// Revision actions: what made a version.
const (
	RevisionCreated    = "created"
	RevisionUpdated    = "updated"
	RevisionPaused     = "paused"
	RevisionResumed    = "resumed"
	RevisionDeleted    = "deleted"
	RevisionRolledBack = "rolled back"
	RevisionRestored   = "restored"
	RevisionDeclared   = "declared" // by a client (job.Spec.Source names it)
)

// Revision is one version of a job's definition.
type Revision struct {
	ID      string    `bson:"_id" json:"-"`
	Job     string    `bson:"job" json:"job"`
	Version int64     `bson:"version" json:"version"`
	Action  string    `bson:"action" json:"action"`
	Spec    job.Spec  `bson:"spec" json:"spec"` // the definition at this version (for a deletion: as it was deleted)
	At      time.Time `bson:"at" json:"at"`
	Who     string    `bson:"who" json:"who"`                     // the caller's name, "client:<id>" for a declaration
	Via     string    `bson:"via,omitempty" json:"via,omitempty"` // the console or server it came through
	Message string    `bson:"message,omitempty" json:"message,omitempty"`
	From    int64     `bson:"from,omitempty" json:"from,omitempty"` // a rollback's or restore's source version
	Tags    []string  `bson:"tags,omitempty" json:"tags,omitempty"` // tagged revisions are never pruned
}

// RevisionID is the key of version v of job name: the version zero-padded, so that ids sort as versions.
func RevisionID(name string, v int64) string { return fmt.Sprintf("%s@%012d", name, v) }

// InsertRevisions records revisions, and returns each one's error; one already recorded with the same
// definition (a retry) is left as it was. One recorded with another definition is ErrRevisionTaken: the
// job's versions started again (its deletion's tombstone was lost), and this version's history is the
// older job's.
func (s *Store) InsertRevisions(ctx context.Context, revs []Revision) []error {
	errs := make([]error, len(revs))
	if len(revs) == 0 {
		return errs
	}
	docs := make([]any, len(revs))
	for i, r := range revs {
		r.ID, r.At, r.Spec = RevisionID(r.Job, r.Version), storedTime(r.At), storedSpec(r.Spec)
		r.Spec.Stats = nil
		revs[i], docs[i] = r, r
	}
	_, err := s.revisions.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	if err == nil {
		return errs
	}
	var bw mongo.BulkWriteException
	if !errors.As(err, &bw) || bw.WriteConcernError != nil || len(bw.WriteErrors) == 0 {
		return fillErrs(errs, fmt.Errorf("store: record revisions: %w", err))
	}
	for _, we := range bw.WriteErrors {
		if we.Index < 0 || we.Index >= len(revs) {
			continue
		}
		r := revs[we.Index]
		if we.Code != 11000 {
			errs[we.Index] = fmt.Errorf("store: record revision %d of %s: %s", r.Version, r.Job, we.Message)
			continue
		}
		had, gerr := s.GetRevision(ctx, r.Job, r.Version)
		switch {
		case gerr != nil:
			errs[we.Index] = gerr
		case !had.Spec.CreatedAt.Equal(r.Spec.CreatedAt) || had.Action != r.Action:
			errs[we.Index] = fmt.Errorf("%w: version %d of %s is recorded for a job created %s", ErrRevisionTaken, r.Version, r.Job, had.Spec.CreatedAt.Format(time.RFC3339))
		}
	}
	return errs
}

// ErrRevisionTaken: a revision's key holds another definition (see InsertRevisions).
var ErrRevisionTaken = errors.New("revision taken")

func fillErrs(errs []error, err error) []error {
	for i := range errs {
		errs[i] = err
	}
	return errs
}

// GetRevision returns version v of job name, or ErrNotFound.
func (s *Store) GetRevision(ctx context.Context, name string, v int64) (Revision, error) {
	var r Revision
	err := s.revisions.FindOne(ctx, bson.D{{Key: "_id", Value: RevisionID(name, v)}}).Decode(&r)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return r, fmt.Errorf("%w: job %s has no version %d (never made, or pruned)", ErrNotFound, name, v)
	}
	if err != nil {
		return r, fmt.Errorf("store: read revision %d of %s: %w", v, name, err)
	}
	return r, nil
}

// ListRevisions returns the revisions of job name whose versions are in [from, to), newest first: a
// page of its history by version (pruned versions are missing from it). One query: on MongoDB by the
// (job, version) index; FerretDB reads the collection once, which is cheaper than a read by key per
// version (each of which reads it too).
func (s *Store) ListRevisions(ctx context.Context, name string, from, to int64) ([]Revision, error) {
	from = max(from, 1)
	if to <= from {
		return nil, nil
	}
	cur, err := s.revisions.Find(ctx, bson.D{{Key: "job", Value: name}, {Key: "version", Value: bson.D{{Key: "$gte", Value: from}, {Key: "$lt", Value: to}}}},
		options.Find().SetSort(bson.D{{Key: "version", Value: -1}}))
	if err != nil {
		return nil, fmt.Errorf("store: list revisions of %s: %w", name, err)
	}
	out, err := decodeEach[Revision](ctx, s, "revision", cur)
	if err != nil {
		return nil, fmt.Errorf("store: list revisions of %s: %w", name, err)
	}
	return out, nil
}

// TaggedRevisions returns the tagged revisions of job name, newest first.
func (s *Store) TaggedRevisions(ctx context.Context, name string) ([]Revision, error) {
	cur, err := s.revisions.Find(ctx, bson.D{{Key: "job", Value: name}, {Key: "tags", Value: bson.D{{Key: "$exists", Value: true}, {Key: "$ne", Value: bson.A{}}}}},
		options.Find().SetSort(bson.D{{Key: "version", Value: -1}}))
	if err != nil {
		return nil, fmt.Errorf("store: list tagged revisions of %s: %w", name, err)
	}
	out, err := decodeEach[Revision](ctx, s, "revision", cur)
	if err != nil {
		return nil, fmt.Errorf("store: list tagged revisions of %s: %w", name, err)
	}
	return out, nil
}

// SetRevisionTags replaces the tags of version v of job name, or returns ErrNotFound.
func (s *Store) SetRevisionTags(ctx context.Context, name string, v int64, tags []string) error {
	update := bson.D{{Key: "$set", Value: bson.D{{Key: "tags", Value: tags}}}}
	if len(tags) == 0 {
		update = bson.D{{Key: "$unset", Value: bson.D{{Key: "tags", Value: ""}}}}
	}
	res, err := s.revisions.UpdateOne(ctx, bson.D{{Key: "_id", Value: RevisionID(name, v)}}, update)
	if err != nil {
		return fmt.Errorf("store: tag revision %d of %s: %w", v, name, err)
	}
	if res.MatchedCount == 0 {
		return fmt.Errorf("%w: job %s has no version %d (never made, or pruned)", ErrNotFound, name, v)
	}
	return nil
}

// RevisionKey names one revision (to prune).
type RevisionKey struct {
	Job     string
	Version int64
}

// PruneRevisions deletes the revisions of keys that are not tagged, in one delete (the tag is checked by
// the delete itself, document by document), and returns how many it deleted.
func (s *Store) PruneRevisions(ctx context.Context, keys []RevisionKey) (int64, error) {
	if len(keys) == 0 {
		return 0, nil
	}
	ids := make(bson.A, len(keys))
	for i, k := range keys {
		ids[i] = RevisionID(k.Job, k.Version)
	}
	res, err := s.revisions.DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}, {Key: "tags", Value: bson.D{{Key: "$exists", Value: false}}}})
	if err != nil {
		return 0, fmt.Errorf("store: prune %d revisions: %w", len(keys), err)
	}
	return res.DeletedCount, nil
}

// Tombstone is what a deleted job leaves: its name and the version its deletion made.
type Tombstone struct {
	Job     string    `bson:"_id" json:"job"`
	Version int64     `bson:"version" json:"version"`
	At      time.Time `bson:"at" json:"at"`
}

// PutTombstones records deleted jobs' last versions (replacing older tombstones of the same names): one
// insert, and a replace only for a name deleted before. It returns each tombstone's error: the
// tombstones of several callers' deletions share the insert (a group commit), and one's failure is not
// another's.
func (s *Store) PutTombstones(ctx context.Context, ts []Tombstone) []error {
	errs := make([]error, len(ts))
	if len(ts) == 0 {
		return errs
	}
	docs := make([]any, len(ts))
	for i := range ts {
		ts[i].At = storedTime(ts[i].At)
		docs[i] = ts[i]
	}
	_, err := s.tombstones.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	if err == nil {
		return errs
	}
	var bw mongo.BulkWriteException
	if !errors.As(err, &bw) || bw.WriteConcernError != nil {
		for i := range errs {
			errs[i] = fmt.Errorf("store: record %d deleted jobs: %w", len(ts), err)
		}
		return errs
	}
	for _, we := range bw.WriteErrors {
		if we.Index < 0 || we.Index >= len(ts) {
			continue // not one of ours: nothing to tell of it
		}
		t := ts[we.Index]
		if we.Code != 11000 {
			errs[we.Index] = fmt.Errorf("store: record the deletion of %s: %s", t.Job, we.Message)
			continue
		}
		if _, err := s.tombstones.ReplaceOne(ctx, bson.D{{Key: "_id", Value: t.Job}}, t); err != nil {
			errs[we.Index] = fmt.Errorf("store: record the deletion of %s: %w", t.Job, err)
		}
	}
	return errs
}

// AllTombstones returns every deleted job's last version, by name.
func (s *Store) AllTombstones(ctx context.Context) (map[string]Tombstone, error) {
	cur, err := s.tombstones.Find(ctx, bson.D{})
	if err != nil {
		return nil, fmt.Errorf("store: read deleted jobs: %w", err)
	}
	ts, err := decodeEach[Tombstone](ctx, s, "tombstone", cur)
	if err != nil {
		return nil, fmt.Errorf("store: read deleted jobs: %w", err)
	}
	out := make(map[string]Tombstone, len(ts))
	for _, t := range ts {
		out[t.Job] = t
	}
	return out, nil
}

// Tombstones returns the tombstones of names that have one, by name.
func (s *Store) Tombstones(ctx context.Context, names []string) (map[string]Tombstone, error) {
	out := map[string]Tombstone{}
	if len(names) == 0 {
		return out, nil
	}
	filter := bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: names}}}}
	if len(names) == 1 {
		filter = bson.D{{Key: "_id", Value: names[0]}} // by key, on FerretDB too
	}
	cur, err := s.tombstones.Find(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("store: read deleted jobs: %w", err)
	}
	ts, err := decodeEach[Tombstone](ctx, s, "tombstone", cur)
	if err != nil {
		return nil, fmt.Errorf("store: read deleted jobs: %w", err)
	}
	for _, t := range ts {
		out[t.Job] = t
	}
	return out, nil
}
