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
)

// storeLayout is what the layout document (layoutDoc) says.
type storeLayout struct {
	// Split: the open set, the audit log and the revisions are in databases of their own (OpenSuffix).
	Split bool
	// OpenSet is the open set's form: OpenSetSingle (also when absent) or OpenSetPartitioned.
	OpenSet string
}

// The layout document's split field is true for a split store whose open set is single, and the string
// splitPartitioned for one whose open set is partitioned: a version before the partitioned form decodes
// split as a boolean, and so fails to open such a store rather than read an empty open set where the
// partitions are not (its takeover would inherit nothing, and its records be strays to the others).
const splitPartitioned = "partitioned"

// readLayout reads the layout document: found is false when there is none (a new store, or one written
// before the split).
func (s *Store) readLayout(ctx context.Context) (found bool, lay storeLayout, err error) {
	var doc struct {
		Split   bson.RawValue `bson:"split"`
		OpenSet string        `bson:"open_set"`
	}
	err = s.cluster.FindOne(ctx, bson.D{{Key: "_id", Value: layoutDoc}}).Decode(&doc)
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
		return false, lay, nil
	case err != nil:
		return false, lay, fmt.Errorf("store: read the store's layout: %w", err)
	}
	lay.OpenSet = doc.OpenSet
	if b, ok := doc.Split.BooleanOK(); ok {
		lay.Split = b
	} else if str, ok := doc.Split.StringValueOK(); ok && str == splitPartitioned {
		lay.Split = true
		if lay.OpenSet == "" {
			lay.OpenSet = OpenSetPartitioned
		}
	} else if doc.Split.Type != 0 {
		return false, lay, fmt.Errorf("store: the store's layout document of %s says split is %s, which this version does not know", s.dbName, doc.Split)
	}
	return true, lay, nil
}

// chooseLayout reads the store's layout (see OpenSuffix): its layout document, or, when its database holds
// nothing a server made, the one this Open makes: split, with the open set in the form WithOpenSet asked
// for. The document is inserted before any collection is made, so a server that finds collections reads
// it again before taking the store for one written by an earlier version (every Open of those made its
// indexed collections). A store opened WithoutIndexes (a client's fallback queue, whose user may read
// nothing else) does not ask: it touches neither the open set, the audit log nor the revisions.
func (s *Store) chooseLayout(ctx context.Context) (storeLayout, error) {
	if s.noIndexes {
		return storeLayout{}, nil
	}
	read := func() (bool, storeLayout, error) { return s.readLayout(ctx) }
	for range 3 {
		found, lay, err := read()
		if found || err != nil {
			return lay, err
		}
		names, err := s.db.ListCollectionNames(ctx, bson.D{})
		if err != nil {
			return storeLayout{}, fmt.Errorf("store: list the collections of %s: %w", s.dbName, err)
		}
		// The cluster collection holds the document itself; a client's fallback queue may come first.
		names = slices.DeleteFunc(names, func(n string) bool { return n == collCluster || n == collFallback })
		if len(names) > 0 {
			if found, lay, err := read(); found || err != nil {
				return lay, err
			}
			return storeLayout{}, nil // written by an earlier version: SplitDatabases splits it
		}
		doc := bson.D{{Key: "_id", Value: layoutDoc}, {Key: "split", Value: true}, {Key: "at", Value: storedTime(time.Now())}}
		if s.newOpenSet == OpenSetPartitioned {
			doc[1].Value = splitPartitioned
			doc = append(doc, bson.E{Key: "open_set", Value: s.newOpenSet})
		}
		_, err = s.cluster.InsertOne(ctx, doc)
		if err == nil {
			return storeLayout{Split: true, OpenSet: s.newOpenSet}, nil
		}
		if !mongo.IsDuplicateKeyError(err) {
			return storeLayout{}, fmt.Errorf("store: record the store's layout: %w", err)
		}
		// Another server made it meanwhile: read what it says.
	}
	return storeLayout{}, fmt.Errorf("store: the store's layout document of %s is made and gone", s.dbName)
}

// useOpenSet keeps the open set in the form the layout names, in the database useSplitLayout chose.
func (s *Store) useOpenSet(form string) error {
	switch form {
	case "", OpenSetSingle:
		s.open = singleOpenSet{s: s, copies: s.openExecs, evts: s.openEvents}
	case OpenSetPartitioned:
		s.open = &partitionedOpenSet{s: s, db: s.openExecs.Database(), indexed: map[string]bool{}}
	default:
		// A newer version's form: reading the open set where it is not would lead blind.
		return fmt.Errorf("store: the open set of %s is kept as %q, which this version does not know", s.dbName, form)
	}
	return nil
}

// OpenSetForm names the form the open set is kept in.
func (s *Store) OpenSetForm() string {
	if _, ok := s.open.(*partitionedOpenSet); ok {
		return OpenSetPartitioned
	}
	return OpenSetSingle
}

// LayoutChanged reports whether the store was split after s opened it: its layout document says split
// while s reads and writes where an earlier version did. A process holding such a Store must open it
// again (a server exits: see the server's watchLayout); a split Store never goes back.
func (s *Store) LayoutChanged(ctx context.Context) (bool, error) {
	if s.noIndexes || s.Split() {
		return false, nil
	}
	_, lay, err := s.readLayout(ctx)
	if err != nil {
		return false, err
	}
	return lay.Split, nil
}

// useSplitLayout points the open set, the audit log and the revisions at their own databases.
func (s *Store) useSplitLayout() {
	open := s.client.Database(s.dbName + OpenSuffix)
	s.openExecs, s.openEvents = open.Collection(collOpenExecs), open.Collection(collOpenEvents)
	s.auditDB = s.client.Database(s.dbName + AuditSuffix)
	s.revisions = s.client.Database(s.dbName + RevisionsSuffix).Collection(collRevisions)
	_ = s.useOpenSet(s.OpenSetForm()) // the form it had, in the new database: a known one
}

// Split reports whether the open set, the audit log and the revisions are in databases of their own.
func (s *Store) Split() bool { return s.openExecs.Database().Name() != s.dbName }

// SplitDatabases moves the open set, the audit log and the revisions of a store written by an earlier
// version to databases of their own (see OpenSuffix), with every server stopped: a server reads and writes
// them where its Open found them, so one running meanwhile would act on what is no longer there. The new
// collections are emptied of what an earlier, cut-short split left (until the store is marked split no
// server writes there), indexed and filled; then the store is marked split and the old collections are
// dropped. Run on a store marked split, it only drops the old collections a split cut short left: their
// documents were copied, and the servers have written in the new ones since. It reports how many
// documents it moved.
func (s *Store) SplitDatabases(ctx context.Context) (moved int, err error) {
	_, doc, err := s.readLayout(ctx)
	if err != nil {
		return 0, fmt.Errorf("store: split: %w", err)
	}
	names, err := s.db.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		return 0, fmt.Errorf("store: split: list the collections of %s: %w", s.dbName, err)
	}
	s.useSplitLayout()
	type move struct {
		name string
		to   *mongo.Collection
	}
	moves := []move{{collOpenExecs, s.openExecs}, {collOpenEvents, s.openEvents}, {collRevisions, s.revisions}}
	for _, name := range names {
		if _, ok := auditCollection(name); ok {
			moves = append(moves, move{name, s.auditDB.Collection(name)})
		}
	}
	if !doc.Split {
		for _, m := range moves {
			if err := m.to.Drop(ctx); err != nil {
				return 0, fmt.Errorf("store: split: empty %s of %s: %w", m.name, m.to.Database().Name(), err)
			}
		}
		if err := s.createIndexes(ctx); err != nil {
			return 0, fmt.Errorf("store: split: %w", err)
		}
		for _, m := range moves {
			if day, ok := auditCollection(m.name); ok && !day.IsZero() {
				s.auditDay(ctx, m.name) // indexed before it is filled
			}
		}
		for _, m := range moves {
			n, err := copyCollection(ctx, s.db.Collection(m.name), m.to)
			moved += n
			if err != nil {
				return moved, fmt.Errorf("store: split: move %s of %s to %s: %w", m.name, s.dbName, m.to.Database().Name(), err)
			}
		}
		_, err = s.cluster.UpdateOne(ctx, bson.D{{Key: "_id", Value: layoutDoc}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "split", Value: true}, {Key: "at", Value: storedTime(time.Now())}}}},
			options.UpdateOne().SetUpsert(true))
		if err != nil {
			return moved, fmt.Errorf("store: split: record the store's layout: %w", err)
		}
	}
	for _, m := range moves {
		if err := s.db.Collection(m.name).Drop(ctx); err != nil {
			return moved, fmt.Errorf("store: split: drop %s of %s (copied; run the split again): %w", m.name, s.dbName, err)
		}
	}
	return moved, nil
}

// copyCollection copies every document of from into to, as stored, a batch at a time; one in to already
// is left as it is.
func copyCollection(ctx context.Context, from, to *mongo.Collection) (int, error) {
	cur, err := from.Find(ctx, bson.D{})
	if err != nil {
		return 0, err
	}
	defer cur.Close(context.WithoutCancel(ctx))
	var (
		batch  []any
		copied int
	)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := insertIgnoringDuplicates(ctx, to, batch); err != nil {
			return err
		}
		copied += len(batch)
		batch = batch[:0]
		return nil
	}
	for cur.Next(ctx) {
		batch = append(batch, slices.Clone(cur.Current))
		if len(batch) == 1000 {
			if err := flush(); err != nil {
				return copied, err
			}
		}
	}
	if err := cur.Err(); err != nil {
		return copied, err
	}
	return copied, flush()
}
