package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readconcern"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"
)

// Errors callers tell apart with errors.Is.
var (
	ErrNotFound = errors.New("store: not found")
	ErrExists   = errors.New("store: already exists")
	ErrConflict = errors.New("store: version conflict")
	ErrFenced   = errors.New("store: fenced by a newer leader")
	// ErrRefused: the database refused one document of a bulk write itself (an invalid field name, a
	// document too large); writing it again would be refused again.
	ErrRefused = errors.New("store: write refused")
)

// DefaultServerSelectionTimeout bounds how long an operation waits for a reachable server, so that a down
// database fails Open (and every later call) quickly instead of hanging. A serverSelectionTimeoutMS in the
// URI overrides it.
const DefaultServerSelectionTimeout = 5 * time.Second

const (
	collCluster    = "cluster"
	collJobs       = "jobs"
	collExecutions = "executions"
	collEvents     = "execution_events"
	collOpenExecs  = "open_executions"
	collOpenEvents = "open_events"
	collJobStats   = "job_stats"
	collFallback   = "fallback"
	collAlerts     = "alerts"
	collContacts   = "contacts"
	collNotes      = "notifications"
	collNoteClaims = "notification_claims"
	collAudit      = "audit"
)

// Suffixes of the databases that hold what is written most, beside the one named in Open: the open set,
// written by every firing and report; the audit log and the jobs' revisions, written by every API write
// beside the job itself. On FerretDB each database is a SQLite file of its own, with its own write lock:
// writers that share a file queue in SQLite's busy handler, which sleeps a millisecond or more each time
// it finds the file locked (measured in docs/design.md, 23). On MongoDB the split costs nothing.
//
// A store is split when it is made (Open finds its database empty) or by SplitDatabases, offline; one
// written by an earlier version keeps them in its own database until then, since every server, of any
// version, must read and write them in one place.
const (
	OpenSuffix      = "_open"
	AuditSuffix     = "_audit"
	RevisionsSuffix = "_revisions"
	// MaxDatabaseName bounds the name given to Open: MongoDB takes names shorter than 64 bytes, suffixes
	// included.
	MaxDatabaseName = 63 - len(RevisionsSuffix)
)

// Databases names the databases a store named database may use: its own first.
func Databases(database string) []string {
	return []string{database, database + OpenSuffix, database + AuditSuffix, database + RevisionsSuffix}
}

// layoutDoc names the cluster document that says the store is split.
const layoutDoc = "store-layout"

// Store is Clover's state in MongoDB: one database, and when split the three others of Databases. It is
// safe for concurrent use.
type Store struct {
	logger  *slog.Logger
	client  *mongo.Client
	db      *mongo.Database
	dbName  string
	cluster *mongo.Collection
	jobs    *mongo.Collection
	execs   *mongo.Collection
	events  *mongo.Collection
	// openExecs and openEvents are the open set (see ReadOpenSet).
	openExecs  *mongo.Collection
	openEvents *mongo.Collection
	// open holds the open set's documents: in openExecs and openEvents, or partitioned in their database.
	open openSet
	// newOpenSet: the form a store this Open makes keeps its open set in (WithOpenSet).
	newOpenSet string
	// historyIndex and archiveIndex list the history's buckets (see Bucket).
	historyIndex *mongo.Collection
	archiveIndex *mongo.Collection
	bucketsMu    sync.Mutex
	buckets      map[string]Bucket // sealed buckets' index documents, by name (see Buckets)
	series       seriesWriters     // RecordSkipped's
	stats        *mongo.Collection
	fallback     *mongo.Collection
	alerts       *mongo.Collection
	contacts     *mongo.Collection
	notes        *mongo.Collection // notifications
	claims       *mongo.Collection // notification_claims
	auditDB      *mongo.Database   // the audit log's days (see InsertAudits)
	auditDays    sync.Map          // day collections this process has indexed, by name
	revisions    *mongo.Collection // job_revisions
	tombstones   *mongo.Collection // job_tombstones
	noIndexes    bool
	// ferret: the server is FerretDB, which reads every document for any filter but {_id: x}; some
	// writes are then made differently (see versionFilter).
	ferret bool
}

// Option changes a Store opened by Open.
type Option func(*Store)

// WithoutIndexes opens the store without creating indexes, for a process that only inserts into and
// reads its own entries of the fallback queue: its database user then needs no more rights than that.
func WithoutIndexes() Option { return func(s *Store) { s.noIndexes = true } }

// WithOpenSet sets the form (OpenSetSingle, OpenSetPartitioned) in which a store that Open makes keeps
// its open set; a store that exists keeps the form it was made with. The default is OpenSetSingle: the
// partitioned form is not finished (nothing drops an emptied partition yet).
func WithOpenSet(form string) Option { return func(s *Store) { s.newOpenSet = form } }

// WithLogger sets where the store reports documents it had to skip; the default is slog.Default().
func WithLogger(l *slog.Logger) Option { return func(s *Store) { s.logger = l } }

// Open connects to the server at uri, checks that it answers, and creates the indexes Clover needs in
// database (creating existing indexes again is a no-op).
func Open(ctx context.Context, uri, database string, opts ...Option) (*Store, error) {
	clientOpts := options.Client().SetServerSelectionTimeout(DefaultServerSelectionTimeout).ApplyURI(uri)
	// Fencing rests on inserts that a new primary still holds after a failover, and a new leader must read
	// only what cannot be rolled back: majority writes and reads unless the URI says otherwise (w=,
	// readConcernLevel=). FerretDB ignores both.
	if clientOpts.WriteConcern == nil {
		clientOpts.SetWriteConcern(writeconcern.Majority())
	}
	if clientOpts.ReadConcern == nil {
		clientOpts.SetReadConcern(readconcern.Majority())
	}
	client, err := mongo.Connect(clientOpts)
	if err != nil {
		return nil, fmt.Errorf("store: connect: %w", err)
	}
	if database == "" || len(database) > MaxDatabaseName {
		_ = client.Disconnect(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("store: database name %q: must be 1 to %d bytes long (its siblings add %q)", database, MaxDatabaseName, RevisionsSuffix)
	}
	db := client.Database(database)
	s := &Store{
		logger:       slog.Default(),
		client:       client,
		db:           db,
		dbName:       database,
		buckets:      map[string]Bucket{},
		cluster:      db.Collection(collCluster),
		jobs:         db.Collection(collJobs),
		execs:        db.Collection(collExecutions),
		events:       db.Collection(collEvents),
		openExecs:    db.Collection(collOpenExecs),
		openEvents:   db.Collection(collOpenEvents),
		historyIndex: db.Collection(collHistoryIndex),
		archiveIndex: db.Collection(collArchiveIndex),
		stats:        db.Collection(collJobStats),
		fallback:     db.Collection(collFallback),
		alerts:       db.Collection(collAlerts),
		contacts:     db.Collection(collContacts),
		notes:        db.Collection(collNotes),
		claims:       db.Collection(collNoteClaims),
		auditDB:      db,
		revisions:    db.Collection(collRevisions),
		tombstones:   db.Collection(collTombstones),
	}
	for _, o := range opts {
		o(s)
	}
	s.logger = s.logger.With("component", "store")
	s.open = singleOpenSet{s: s, copies: s.openExecs, evts: s.openEvents}
	switch s.newOpenSet {
	case "", OpenSetSingle, OpenSetPartitioned:
	default:
		// Refused before anything is written: a layout document naming it would refuse every Open after.
		_ = client.Disconnect(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("store: open set form %q: must be %s or %s", s.newOpenSet, OpenSetSingle, OpenSetPartitioned)
	}
	err = s.Ping(ctx)
	if err == nil {
		s.ferret = isFerretDB(ctx, db)
		var lay storeLayout
		if lay, err = s.chooseLayout(ctx); err == nil {
			if lay.Split {
				s.useSplitLayout()
			}
			err = s.useOpenSet(lay.OpenSet)
		}
	}
	if err == nil && !s.noIndexes {
		s.tellOpenSetForm()
		err = s.createIndexes(ctx)
	}
	if err != nil {
		_ = client.Disconnect(context.WithoutCancel(ctx))
		return nil, err
	}
	return s, nil
}

// tellOpenSetForm logs the open set's form when it is not the one asked for (the store's first opener
// chose), and warns of the partitioned form, which is not finished.
func (s *Store) tellOpenSetForm() {
	form := s.OpenSetForm()
	if asked := s.newOpenSet; asked != "" && asked != form {
		s.logger.Warn("the store keeps its open set in another form than the one asked for; the store's own form is used", "database", s.dbName, "form", form, "asked", asked)
	}
	if form == OpenSetPartitioned {
		s.logger.Warn("the open set is partitioned: not finished, for tests (emptied partitions are not dropped yet, and a version before it cannot open this store)", "database", s.dbName)
	}
}

// isFerretDB reports whether db is served by FerretDB, which names its own version in buildInfo. A server
// that does not answer is taken for MongoDB: the writes made for MongoDB are correct on both, only slower
// on FerretDB.
func isFerretDB(ctx context.Context, db *mongo.Database) bool {
	var info struct {
		FerretDB string `bson:"ferretdbVersion"`
	}
	if err := db.RunCommand(ctx, bson.D{{Key: "buildInfo", Value: 1}}).Decode(&info); err != nil {
		return false
	}
	return info.FerretDB != ""
}

func (s *Store) createIndexes(ctx context.Context) error {
	for _, ix := range []struct {
		coll   *mongo.Collection
		models []mongo.IndexModel
	}{
		{s.cluster, []mongo.IndexModel{index("epoch", bson.D{{Key: "epoch", Value: -1}})}},
		{s.execs, []mongo.IndexModel{
			index("job_scheduled_at", bson.D{{Key: "job", Value: 1}, {Key: "scheduled_at", Value: -1}}),
			index("scheduled_at", bson.D{{Key: "scheduled_at", Value: 1}}),
			// MigrateOpenSet also looks for executions fired, not only scheduled, since a time.
			index("fired_at", bson.D{{Key: "fired_at", Value: 1}}),
		}},
		{s.events, []mongo.IndexModel{
			index("exec_id", bson.D{{Key: "exec_id", Value: 1}}),
			index("job_at", bson.D{{Key: "job", Value: 1}, {Key: "at", Value: 1}}),
		}},
		{s.fallback, []mongo.IndexModel{
			index("state_order", bson.D{{Key: "state", Value: 1}, {Key: "client", Value: 1}, {Key: "boot", Value: 1}, {Key: "seq", Value: 1}}),
			index("exec_id", bson.D{{Key: "exec_id", Value: 1}}),
		}},
		{s.notes, []mongo.IndexModel{
			index("state_next_attempt", bson.D{{Key: "state", Value: 1}, {Key: "next_attempt", Value: 1}}),
			index("alert_key_created_at", bson.D{{Key: "alert_key", Value: 1}, {Key: "created_at", Value: -1}}),
		}},
		{s.revisions, []mongo.IndexModel{index("job_version", bson.D{{Key: "job", Value: 1}, {Key: "version", Value: -1}})}},
		// The job list's filters (the console's): which jobs name a contact, are pinned to a client.
		{s.jobs, []mongo.IndexModel{
			index("contacts", bson.D{{Key: "contacts", Value: 1}}),
			index("routing_clients", bson.D{{Key: "routing.clients", Value: 1}}),
			index("handler", bson.D{{Key: "handler", Value: 1}}),
		}},
		{s.db.Collection(collBatchRevisions), []mongo.IndexModel{index("batch_id", bson.D{{Key: "batch", Value: 1}, {Key: "_id", Value: -1}})}},
		{s.db.Collection(collBatchRuns), []mongo.IndexModel{
			index("batch_started_at", bson.D{{Key: "batch", Value: 1}, {Key: "started_at", Value: -1}}),
			index("state", bson.D{{Key: "state", Value: 1}}),
		}},
		{s.db.Collection(collBatchEnds), []mongo.IndexModel{index("run", bson.D{{Key: "run", Value: 1}})}},
		{s.db.Collection(collBatchOperations), []mongo.IndexModel{index("run_at", bson.D{{Key: "run", Value: 1}, {Key: "at", Value: 1}})}},
		{s.claims, []mongo.IndexModel{
			index("notification_attempt", bson.D{{Key: "notification", Value: 1}, {Key: "attempt", Value: 1}, {Key: "gen", Value: -1}}),
		}},
	} {
		if err := createEach(ctx, ix.coll, ix.models); err != nil {
			return err
		}
	}
	if _, partitioned := s.open.(*partitionedOpenSet); partitioned {
		return nil // each partition's events are indexed when first written
	}
	if err := createEach(ctx, s.openEvents, []mongo.IndexModel{index("exec_id", bson.D{{Key: "exec_id", Value: 1}})}); err != nil {
		return err
	}
	// An execution's identity (see job.Execution): the executions of one firing, of one batch run.
	return createEach(ctx, s.openExecs, []mongo.IndexModel{
		index("firing", bson.D{{Key: "firing", Value: 1}}),
		index("batch_run_node", bson.D{{Key: "batch_run", Value: 1}, {Key: "batch_node", Value: 1}}),
	})
}

// createEach creates the indexes models on coll.
func createEach(ctx context.Context, coll *mongo.Collection, models []mongo.IndexModel) error {
	// One index a command: FerretDB 1.24 panics, and drops the connection, when a createIndexes command
	// names two or more indexes that exist already (its validateIndexesForCreation deletes from the slice
	// it indexes), which is every Open after the first.
	for _, m := range models {
		if _, err := coll.Indexes().CreateOne(ctx, m); err != nil {
			return fmt.Errorf("store: create indexes on %s: %w", coll.Name(), err)
		}
	}
	return nil
}

func index(name string, keys bson.D) mongo.IndexModel {
	return mongo.IndexModel{Keys: keys, Options: options.Index().SetName(name)}
}

// Close disconnects from the server.
func (s *Store) Close(ctx context.Context) error {
	if err := s.client.Disconnect(ctx); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// Ping checks that the server answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.client.Ping(ctx, nil); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

// storedTime is t as a BSON date gives it back: UTC, whole milliseconds, no monotonic reading.
func storedTime(t time.Time) time.Time {
	return t.UTC().Truncate(time.Millisecond)
}

// duplicateIndexes returns the positions of the documents an unordered bulk insert refused because their
// _id existed. err is returned as it is if anything else went wrong.
func duplicateIndexes(err error) ([]int, error) {
	if err == nil {
		return nil, nil
	}
	// InsertMany reports a BulkWriteException, InsertOne a WriteException; accept both so that no change of
	// call or driver version turns a duplicate into a failure.
	var (
		writeErrs []mongo.WriteError
		concern   *mongo.WriteConcernError
		bwe       mongo.BulkWriteException
		we        mongo.WriteException
	)
	switch {
	case errors.As(err, &bwe):
		for _, e := range bwe.WriteErrors {
			writeErrs = append(writeErrs, e.WriteError)
		}
		concern = bwe.WriteConcernError
	case errors.As(err, &we):
		writeErrs, concern = we.WriteErrors, we.WriteConcernError
	default:
		return nil, err
	}
	if concern != nil || len(writeErrs) == 0 {
		return nil, err
	}
	dups := make([]int, 0, len(writeErrs))
	for _, e := range writeErrs {
		if !isDuplicateKeyCode(e.Code) {
			return nil, err
		}
		dups = append(dups, e.Index)
	}
	return dups, nil
}

// isDuplicateKeyCode matches the codes mongo.IsDuplicateKeyError accepts for a single write error.
func isDuplicateKeyCode(code int) bool {
	return code == 11000 || code == 11001 || code == 12582
}

// decodeEach decodes every document of cur into a T. A document that does not decode (written by someone
// else, or by an older version) is logged and skipped rather than failing the whole read: one bad document
// must not keep a leader from starting.
func decodeEach[T any](ctx context.Context, s *Store, what string, cur *mongo.Cursor) ([]T, error) {
	defer cur.Close(ctx)
	var out []T
	for cur.Next(ctx) {
		var v T
		if err := cur.Decode(&v); err != nil {
			s.logger.Error("skipped a document that does not decode", "what", what, "id", cur.Current.Lookup("_id").String(), "err", err)
			continue
		}
		out = append(out, v)
	}
	if err := cur.Err(); err != nil {
		return out, err
	}
	return out, nil
}

// IsRefusedWrite reports whether err says the database refused a document itself (a write error other
// than a duplicate key: an invalid field name, a document too large), as opposed to failing to answer.
// Writing the same document again would be refused again.
func IsRefusedWrite(err error) bool {
	var (
		bwe mongo.BulkWriteException
		we  mongo.WriteException
	)
	var writeErrs []mongo.WriteError
	switch {
	case errors.As(err, &bwe):
		for _, e := range bwe.WriteErrors {
			writeErrs = append(writeErrs, e.WriteError)
		}
	case errors.As(err, &we):
		writeErrs = we.WriteErrors
	}
	for _, e := range writeErrs {
		if !isDuplicateKeyCode(e.Code) {
			return true
		}
	}
	return false
}

// getByID reads the document _id = id of coll into a T. what names the kind in errors ("job", "alert"):
// ErrNotFound reads "store: not found: job x", any other failure "store: get job x: ...".
func getByID[T any](ctx context.Context, coll *mongo.Collection, what, id string) (T, error) {
	var v T
	err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&v)
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
		var zero T
		return zero, fmt.Errorf("%w: %s %s", ErrNotFound, what, id)
	case err != nil:
		var zero T
		return zero, fmt.Errorf("store: get %s %s: %w", what, id, err)
	}
	return v, nil
}
