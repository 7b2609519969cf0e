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

// InsertRevisions records revisions; one already recorded (same job and version) is left as it was.
func (s *Store) InsertRevisions(ctx context.Context, revs []Revision) error {
	if len(revs) == 0 {
		return nil
	}
	docs := make([]any, len(revs))
	for i, r := range revs {
		r.ID, r.At, r.Spec = RevisionID(r.Job, r.Version), storedTime(r.At), storedSpec(r.Spec)
		r.Spec.Stats = nil
		docs[i] = r
	}
	_, err := s.revisions.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	var bw mongo.BulkWriteException
	if errors.As(err, &bw) && bw.WriteConcernError == nil && !slices.ContainsFunc(bw.WriteErrors, func(e mongo.BulkWriteError) bool { return e.Code != 11000 }) {
		return nil // duplicates only: recorded before
	}
	if err != nil {
		return fmt.Errorf("store: record revisions: %w", err)
	}
	return nil
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
// page of its history by version (pruned versions are missing from it). On FerretDB, which reads every
// document for any other filter, each version is read by its key.
func (s *Store) ListRevisions(ctx context.Context, name string, from, to int64) ([]Revision, error) {
	from = max(from, 1)
	if to <= from {
		return nil, nil
	}
	if s.ferret {
		var out []Revision
		for v := to - 1; v >= from; v-- {
			r, err := s.GetRevision(ctx, name, v)
			switch {
			case errors.Is(err, ErrNotFound):
			case err != nil:
				return nil, err
			default:
				out = append(out, r)
			}
		}
		return out, nil
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

// PruneRevision deletes version v of job name unless it is tagged; it reports whether it did. Callers
// serialize it with tagging (the server's job locks): the check and the delete are two steps.
func (s *Store) PruneRevision(ctx context.Context, name string, v int64) (bool, error) {
	r, err := s.GetRevision(ctx, name, v)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil || len(r.Tags) > 0 {
		return false, err
	}
	res, err := s.revisions.DeleteOne(ctx, bson.D{{Key: "_id", Value: r.ID}})
	if err != nil {
		return false, fmt.Errorf("store: prune revision %d of %s: %w", v, name, err)
	}
	return res.DeletedCount == 1, nil
}

// Tombstone is what a deleted job leaves: its name and the version its deletion made.
type Tombstone struct {
	Job     string    `bson:"_id" json:"job"`
	Version int64     `bson:"version" json:"version"`
	At      time.Time `bson:"at" json:"at"`
}

// PutTombstones records deleted jobs' last versions (replacing older tombstones of the same names).
func (s *Store) PutTombstones(ctx context.Context, ts []Tombstone) error {
	for _, t := range ts {
		t.At = storedTime(t.At)
		if _, err := s.tombstones.ReplaceOne(ctx, bson.D{{Key: "_id", Value: t.Job}}, t, options.Replace().SetUpsert(true)); err != nil {
			return fmt.Errorf("store: record the deletion of %s: %w", t.Job, err)
		}
	}
	return nil
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
