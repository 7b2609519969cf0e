package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/clover-sched/clover/internal/workflow"
)

// A batch (a graph of jobs, see package workflow) is kept as its revisions, one immutable document per
// version keyed batch@version, and a copy of the latest in the batches collection for listing. The
// revision's insert is the write's version check: two writers of the same next version meet on its key,
// and the second gets ErrConflict, on FerretDB as on MongoDB. A run records the version it runs, and reads
// that revision, so editing a batch never changes a run under way.
//
// A batch run is one document keyed batch/cycle: starting the same cycle twice meets the key. Its state
// changes are updates (made by the leader, a few per run: an operator's pause, the end). What happens in
// it is inserted: the end of each node's partition (batch_ends, keyed by run, node, partition and round,
// so that recording one twice changes nothing) and every operation asked of it (batch_ops). No document
// grows with the graph or its fan-out.

const (
	collBatches         = "batches"
	collBatchRevisions  = "batch_revisions"
	collBatchRuns       = "batch_runs"
	collBatchEnds       = "batch_ends"
	collBatchOperations = "batch_ops"
)

// Batch is the latest version of a batch's definition.
type Batch struct {
	Name       string              `bson:"_id" json:"name"`
	Version    int64               `bson:"version" json:"version"`
	Definition workflow.Definition `bson:"definition" json:"definition"`
	UpdatedAt  time.Time           `bson:"updated_at" json:"updated_at"`
	UpdatedBy  string              `bson:"updated_by,omitempty" json:"updated_by,omitempty"`
	Deleted    bool                `bson:"deleted,omitempty" json:"-"`
}

// BatchRevision is one version of a batch's definition.
type BatchRevision struct {
	ID         string              `bson:"_id" json:"-"`
	Batch      string              `bson:"batch" json:"batch"`
	Version    int64               `bson:"version" json:"version"`
	Action     string              `bson:"action" json:"action"` // created, updated, deleted
	Definition workflow.Definition `bson:"definition" json:"definition"`
	At         time.Time           `bson:"at" json:"at"`
	Who        string              `bson:"who" json:"who"`
	Message    string              `bson:"message,omitempty" json:"message,omitempty"`
	Tags       []string            `bson:"tags,omitempty" json:"tags,omitempty"` // the one thing of a revision that changes
}

// SetBatchRevisionTags replaces the tags of version v of a batch.
func (s *Store) SetBatchRevisionTags(ctx context.Context, name string, v int64, tags []string) error {
	update := bson.D{{Key: "$set", Value: bson.D{{Key: "tags", Value: tags}}}}
	if len(tags) == 0 {
		update = bson.D{{Key: "$unset", Value: bson.D{{Key: "tags", Value: ""}}}}
	}
	res, err := s.db.Collection(collBatchRevisions).UpdateOne(ctx, bson.D{{Key: "_id", Value: BatchRevisionID(name, v)}}, update)
	if err != nil {
		return fmt.Errorf("store: tag version %d of batch %s: %w", v, name, err)
	}
	if res.MatchedCount == 0 {
		return fmt.Errorf("%w: batch %s has no version %d", ErrNotFound, name, v)
	}
	return nil
}

// findAll runs a query on coll and decodes every document it finds; what names them in errors.
func findAll[T any](ctx context.Context, s *Store, coll, what string, filter bson.D, opts ...options.Lister[options.FindOptions]) ([]T, error) {
	cur, err := s.db.Collection(coll).Find(ctx, filter, opts...)
	if err != nil {
		return nil, fmt.Errorf("store: list %s: %w", what, err)
	}
	out, err := decodeEach[T](ctx, s, what, cur)
	if err != nil {
		return nil, fmt.Errorf("store: list %s: %w", what, err)
	}
	return out, nil
}

// BatchRevisionID is the key of version v of batch name, zero-padded so that ids sort as versions.
func BatchRevisionID(name string, v int64) string { return fmt.Sprintf("%s@%012d", name, v) }

// PutBatch stores def as the version after expectVersion (0: a new batch, or one deleted), recorded as
// made by who. ErrConflict if the batch is at another version, or another writer took the version.
func (s *Store) PutBatch(ctx context.Context, def workflow.Definition, expectVersion int64, who, message string, now time.Time) (Batch, error) {
	cur, err := s.GetBatch(ctx, def.Name)
	var have int64
	switch {
	case errors.Is(err, ErrNotFound):
		have = 0
	case err != nil:
		return Batch{}, err
	default:
		have = cur.Version
	}
	last, err := s.latestBatchRevision(ctx, def.Name)
	if err != nil {
		return Batch{}, err
	}
	deleted := last.Action == RevisionDeleted
	switch {
	case expectVersion == 0 && have != 0 && !cur.Deleted:
		return Batch{}, fmt.Errorf("%w: batch %s", ErrExists, def.Name)
	case expectVersion != 0 && (deleted || have != expectVersion):
		return Batch{}, fmt.Errorf("%w: batch %s is at version %d, not %d", ErrConflict, def.Name, have, expectVersion)
	}
	action := RevisionUpdated
	if expectVersion == 0 {
		action = RevisionCreated
	}
	// A batch made again under a deleted one's name goes on from its versions.
	next := max(have, last.Version) + 1
	return s.writeBatch(ctx, def, next, action, who, message, now)
}

// writeBatch records version v of def: its revision (the version check), then the batches copy.
func (s *Store) writeBatch(ctx context.Context, def workflow.Definition, v int64, action, who, message string, now time.Time) (Batch, error) {
	now = storedTime(now)
	rev := BatchRevision{ID: BatchRevisionID(def.Name, v), Batch: def.Name, Version: v, Action: action, Definition: def, At: now, Who: who, Message: message}
	if _, err := s.db.Collection(collBatchRevisions).InsertOne(ctx, rev); err != nil {
		if mongo.IsDuplicateKeyError(err) {
			return Batch{}, fmt.Errorf("%w: batch %s: version %d was written by someone else meanwhile", ErrConflict, def.Name, v)
		}
		return Batch{}, fmt.Errorf("store: record batch %s version %d: %w", def.Name, v, err)
	}
	b := Batch{Name: def.Name, Version: v, Definition: def, UpdatedAt: now, UpdatedBy: who, Deleted: action == RevisionDeleted}
	_, err := s.db.Collection(collBatches).ReplaceOne(ctx, bson.D{{Key: "_id", Value: def.Name}}, b, options.Replace().SetUpsert(true))
	if err != nil {
		return Batch{}, fmt.Errorf("store: write batch %s: %w", def.Name, err)
	}
	return b, nil
}

// DeleteBatch deletes a batch at expectVersion (0: whatever its version). Its revisions stay, and a
// "deleted" one is added; runs of it keep the revisions they ran.
func (s *Store) DeleteBatch(ctx context.Context, name string, expectVersion int64, who, message string, now time.Time) error {
	cur, err := s.GetBatch(ctx, name)
	if err != nil {
		return err
	}
	if expectVersion != 0 && cur.Version != expectVersion {
		return fmt.Errorf("%w: batch %s is at version %d, not %d", ErrConflict, name, cur.Version, expectVersion)
	}
	_, err = s.writeBatch(ctx, cur.Definition, cur.Version+1, RevisionDeleted, who, message, now)
	return err
}

// GetBatch returns the latest version of a batch; ErrNotFound if there is none or it was deleted.
func (s *Store) GetBatch(ctx context.Context, name string) (Batch, error) {
	b, err := getByID[Batch](ctx, s.db.Collection(collBatches), "batch", name)
	if err == nil && b.Deleted {
		return b, fmt.Errorf("%w: batch %s (deleted at version %d)", ErrNotFound, name, b.Version)
	}
	return b, err
}

// ListBatches returns every batch not deleted, by name.
func (s *Store) ListBatches(ctx context.Context) ([]Batch, error) {
	return findAll[Batch](ctx, s, collBatches, "batches", bson.D{{Key: "deleted", Value: bson.D{{Key: "$ne", Value: true}}}},
		options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
}

// GetBatchRevision returns version v of a batch.
func (s *Store) GetBatchRevision(ctx context.Context, name string, v int64) (BatchRevision, error) {
	return getByID[BatchRevision](ctx, s.db.Collection(collBatchRevisions), "batch revision", BatchRevisionID(name, v))
}

// ListBatchRevisions returns a batch's revisions, newest first.
func (s *Store) ListBatchRevisions(ctx context.Context, name string) ([]BatchRevision, error) {
	return findAll[BatchRevision](ctx, s, collBatchRevisions, "revisions of batch "+name, bson.D{{Key: "batch", Value: name}},
		options.Find().SetSort(bson.D{{Key: "_id", Value: -1}}))
}

func (s *Store) latestBatchRevision(ctx context.Context, name string) (BatchRevision, error) {
	var r BatchRevision
	err := s.db.Collection(collBatchRevisions).FindOne(ctx, bson.D{{Key: "batch", Value: name}},
		options.FindOne().SetSort(bson.D{{Key: "_id", Value: -1}})).Decode(&r)
	if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		return r, fmt.Errorf("store: latest revision of batch %s: %w", name, err)
	}
	return r, nil
}

// RunState is where a batch run stands.
type RunState string

const (
	RunRunning   RunState = "running"   // nodes start as they become ready
	RunPaused    RunState = "paused"    // no node starts; those running finish
	RunStopping  RunState = "stopping"  // its running executions were asked to stop; nothing starts
	RunStopped   RunState = "stopped"   // stopped, and nothing runs any more; a rerun goes on from there
	RunSucceeded RunState = "succeeded" // every node succeeded, was skipped, or was marked succeeded
	RunFailed    RunState = "failed"    // every node ended, and some failed or were blocked; a rerun goes on
)

// Open reports whether the leader follows runs in s: they have work that may still start or end.
func (s RunState) Open() bool { return s == RunRunning || s == RunPaused || s == RunStopping }

// BatchRun is one run of a batch, for a cycle (a business date, "2026-12-15"), at a frequency.
type BatchRun struct {
	ID        string            `bson:"_id" json:"id"` // batch/cycle
	Batch     string            `bson:"batch" json:"batch"`
	Cycle     string            `bson:"cycle" json:"cycle"`
	Frequency string            `bson:"frequency,omitempty" json:"frequency,omitempty"`
	Params    map[string]string `bson:"params,omitempty" json:"params,omitempty"`
	// Version is the revision of the batch the run runs.
	Version int64    `bson:"version" json:"version"`
	State   RunState `bson:"state" json:"state"`
	// Round counts the run's starts: 1, then one more for each rerun from failure or reset. An execution
	// of round r > 1 is keyed with it, so a partition runs at most once a round.
	Round int `bson:"round" json:"round"`
	// ResetRound: ends of rounds before it are forgotten (a reset puts every node back to not started).
	ResetRound int       `bson:"reset_round,omitempty" json:"reset_round,omitempty"`
	StartedAt  time.Time `bson:"started_at" json:"started_at"` // every execution of the run is scheduled at it
	EndedAt    time.Time `bson:"ended_at,omitempty" json:"ended_at,omitzero"`
	By         string    `bson:"by" json:"by"`
	Trigger    string    `bson:"trigger,omitempty" json:"trigger,omitempty"` // api, schedule, file, request
	Epoch      int64     `bson:"epoch" json:"epoch"`                         // the term that last wrote it
	Reason     string    `bson:"reason,omitempty" json:"reason,omitempty"`   // why it failed or stopped
	// Marks are the nodes a person marked succeeded (skip) since the last reset, with who and why: in
	// the run's document, so that a mark and the state it leads to are one write.
	Marks map[string]string `bson:"marks,omitempty" json:"marks,omitempty"`
	// Seq counts the run's saves: a save older than the one stored (a finish queued behind an
	// operator's rerun) is refused.
	Seq int64 `bson:"seq" json:"seq"`
}

// BatchRunID is the key of the run of batch for cycle.
func BatchRunID(batch, cycle string) string { return batch + "/" + cycle }

// CreateBatchRun records a new run; ErrExists if the batch has a run for the cycle.
func (s *Store) CreateBatchRun(ctx context.Context, r BatchRun) error {
	r.StartedAt = storedTime(r.StartedAt)
	if _, err := s.db.Collection(collBatchRuns).InsertOne(ctx, r); err != nil {
		if mongo.IsDuplicateKeyError(err) {
			return fmt.Errorf("%w: batch run %s", ErrExists, r.ID)
		}
		return fmt.Errorf("store: create batch run %s: %w", r.ID, err)
	}
	return nil
}

// SaveBatchRun writes a run's state, round, marks and end, unless a newer term wrote it (ErrFenced) or a
// newer save of it is stored (ErrConflict: r.Seq is not above the stored one).
func (s *Store) SaveBatchRun(ctx context.Context, r BatchRun) error {
	r.StartedAt = storedTime(r.StartedAt)
	if !r.EndedAt.IsZero() {
		r.EndedAt = storedTime(r.EndedAt)
	}
	filter := bson.D{{Key: "_id", Value: r.ID}, {Key: "epoch", Value: bson.D{{Key: "$lte", Value: r.Epoch}}},
		{Key: "seq", Value: bson.D{{Key: "$lt", Value: r.Seq}}}}
	res, err := s.db.Collection(collBatchRuns).ReplaceOne(ctx, filter, r)
	if err != nil {
		return fmt.Errorf("store: save batch run %s: %w", r.ID, err)
	}
	if res.MatchedCount == 0 {
		cur, err := s.GetBatchRun(ctx, r.ID)
		switch {
		case err != nil:
			return err
		case cur.Epoch > r.Epoch:
			return fmt.Errorf("%w: batch run %s was written by a newer term than %d", ErrFenced, r.ID, r.Epoch)
		}
		return fmt.Errorf("%w: batch run %s: save %d is stored, not older than %d", ErrConflict, r.ID, cur.Seq, r.Seq)
	}
	return nil
}

// GetBatchRun returns a run by its key.
func (s *Store) GetBatchRun(ctx context.Context, id string) (BatchRun, error) {
	return getByID[BatchRun](ctx, s.db.Collection(collBatchRuns), "batch run", id)
}

// ListBatchRuns returns runs, newest started first: of one batch (or all, batch ""), only the open ones
// if open, at most limit (0: all).
func (s *Store) ListBatchRuns(ctx context.Context, batch string, open bool, limit int) ([]BatchRun, error) {
	filter := bson.D{}
	if batch != "" {
		filter = append(filter, bson.E{Key: "batch", Value: batch})
	}
	if open {
		filter = append(filter, bson.E{Key: "state", Value: bson.D{{Key: "$in", Value: bson.A{RunRunning, RunPaused, RunStopping}}}})
	}
	opts := options.Find().SetSort(bson.D{{Key: "started_at", Value: -1}, {Key: "_id", Value: -1}})
	if limit > 0 {
		opts.SetLimit(int64(limit))
	}
	return findAll[BatchRun](ctx, s, collBatchRuns, "batch runs", filter, opts)
}

// BatchEnd is how one partition of one node ended in one round of a run ("" for an unpartitioned node).
type BatchEnd struct {
	ID        string    `bson:"_id" json:"-"`
	Run       string    `bson:"run" json:"run"`
	Node      string    `bson:"node" json:"node"`
	Partition string    `bson:"partition,omitempty" json:"partition,omitempty"`
	Round     int       `bson:"round" json:"round"`
	Succeeded bool      `bson:"succeeded" json:"succeeded"`
	Execution string    `bson:"execution" json:"execution"`
	At        time.Time `bson:"at" json:"at"`
	// Output is the last line of the execution's output, kept for the nodes that take their partitions
	// from this one (workflow.Node.PartitionsFrom).
	Output string `bson:"output,omitempty" json:"output,omitempty"`
}

// BatchEndID keys an end: once per run, node, partition and round.
func BatchEndID(run, node, partition string, round int) string {
	return fmt.Sprintf("%s/%s/%s/%d", run, node, partition, round)
}

// InsertBatchEnds records ends; one recorded before is left as it was.
func (s *Store) InsertBatchEnds(ctx context.Context, ends []BatchEnd) error {
	if len(ends) == 0 {
		return nil
	}
	docs := make([]any, len(ends))
	for i, e := range ends {
		e.ID, e.At = BatchEndID(e.Run, e.Node, e.Partition, e.Round), storedTime(e.At)
		docs[i] = e
	}
	_, err := s.db.Collection(collBatchEnds).InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	if _, err := duplicateIndexes(err); err != nil {
		return fmt.Errorf("store: record batch ends: %w", err)
	}
	return nil
}

// ListBatchEnds returns every end recorded in a run.
func (s *Store) ListBatchEnds(ctx context.Context, run string) ([]BatchEnd, error) {
	return findAll[BatchEnd](ctx, s, collBatchEnds, "ends of batch run "+run, bson.D{{Key: "run", Value: run}})
}

// BatchOperation is one operation asked of a run (or of one of its nodes): who asked, when, and why.
type BatchOperation struct {
	ID    string    `bson:"_id" json:"id"`
	Run   string    `bson:"run" json:"run"`
	Op    string    `bson:"op" json:"op"` // run, pause, resume, stop, rerun, reset, skip
	Node  string    `bson:"node,omitempty" json:"node,omitempty"`
	Round int       `bson:"round" json:"round"` // the run's round when it was asked
	Who   string    `bson:"who" json:"who"`
	Why   string    `bson:"why,omitempty" json:"why,omitempty"`
	At    time.Time `bson:"at" json:"at"`
}

// InsertBatchOperation records an operation; its id must be unique (the caller makes it).
func (s *Store) InsertBatchOperation(ctx context.Context, op BatchOperation) error {
	op.At = storedTime(op.At)
	if _, err := s.db.Collection(collBatchOperations).InsertOne(ctx, op); err != nil && !mongo.IsDuplicateKeyError(err) {
		return fmt.Errorf("store: record operation %s on batch run %s: %w", op.Op, op.Run, err)
	}
	return nil
}

// ListBatchOperations returns the operations asked of a run, oldest first.
func (s *Store) ListBatchOperations(ctx context.Context, run string) ([]BatchOperation, error) {
	return findAll[BatchOperation](ctx, s, collBatchOperations, "operations of batch run "+run, bson.D{{Key: "run", Value: run}},
		options.Find().SetSort(bson.D{{Key: "at", Value: 1}, {Key: "_id", Value: 1}}))
}

const collResources = "batch_resources"

// Resource is a counted resource batch nodes hold units of while they run (Control-M's quantitative
// resources): its capacity is how many units may be held at once.
type Resource struct {
	Name      string    `bson:"_id" json:"name"`
	Capacity  int       `bson:"capacity" json:"capacity"`
	UpdatedAt time.Time `bson:"updated_at" json:"updated_at"`
	UpdatedBy string    `bson:"updated_by,omitempty" json:"updated_by,omitempty"`
}

// PutResource sets a resource's capacity.
func (s *Store) PutResource(ctx context.Context, r Resource) error {
	r.UpdatedAt = storedTime(r.UpdatedAt)
	_, err := s.db.Collection(collResources).ReplaceOne(ctx, bson.D{{Key: "_id", Value: r.Name}}, r, options.Replace().SetUpsert(true))
	if err != nil {
		return fmt.Errorf("store: set resource %s: %w", r.Name, err)
	}
	return nil
}

// ListResources returns every resource, by name.
func (s *Store) ListResources(ctx context.Context) ([]Resource, error) {
	return findAll[Resource](ctx, s, collResources, "resources", bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
}

// PruneBatchRuns deletes the runs that ended before cut (succeeded, failed or stopped), with their ends
// and operations, at most 1,000 runs a call; it returns how many runs it deleted. The batches' revisions
// stay.
func (s *Store) PruneBatchRuns(ctx context.Context, cut time.Time) (int, error) {
	filter := bson.D{
		{Key: "state", Value: bson.D{{Key: "$in", Value: bson.A{RunSucceeded, RunFailed, RunStopped}}}},
		{Key: "ended_at", Value: bson.D{{Key: "$lt", Value: storedTime(cut)}}},
	}
	cur, err := s.db.Collection(collBatchRuns).Find(ctx, filter, options.Find().SetLimit(1000).SetProjection(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return 0, fmt.Errorf("store: find old batch runs: %w", err)
	}
	var docs []struct {
		ID string `bson:"_id"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return 0, fmt.Errorf("store: find old batch runs: %w", err)
	}
	if len(docs) == 0 {
		return 0, nil
	}
	ids := make(bson.A, len(docs))
	for i, d := range docs {
		ids[i] = d.ID
	}
	// Ends and operations first: a run deleted last is found again by the next call if this one stops.
	for _, coll := range []string{collBatchEnds, collBatchOperations} {
		if _, err := s.db.Collection(coll).DeleteMany(ctx, bson.D{{Key: "run", Value: bson.D{{Key: "$in", Value: ids}}}}); err != nil {
			return 0, fmt.Errorf("store: prune %s: %w", coll, err)
		}
	}
	res, err := s.db.Collection(collBatchRuns).DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}})
	if err != nil {
		return 0, fmt.Errorf("store: prune batch runs: %w", err)
	}
	return int(res.DeletedCount), nil
}
