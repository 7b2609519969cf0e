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

// chooseLayout reports whether the store is split (see OpenSuffix): its layout document says so, or its
// database is empty and this Open makes it split. A store opened WithoutIndexes (a client's fallback
// queue, which reads neither the open set nor the audit log) only reads the document.
func (s *Store) chooseLayout(ctx context.Context) (split bool, err error) {
	var doc struct {
		Split bool `bson:"split"`
	}
	for range 2 {
		err := s.cluster.FindOne(ctx, bson.D{{Key: "_id", Value: layoutDoc}}).Decode(&doc)
		switch {
		case err == nil:
			return doc.Split, nil
		case !errors.Is(err, mongo.ErrNoDocuments):
			return false, fmt.Errorf("store: read the store's layout: %w", err)
		case s.noIndexes:
			return false, nil
		}
		names, err := s.db.ListCollectionNames(ctx, bson.D{})
		if err != nil {
			return false, fmt.Errorf("store: list the collections of %s: %w", s.dbName, err)
		}
		if len(names) > 0 {
			return false, nil // written by an earlier version: SplitDatabases splits it
		}
		_, err = s.cluster.InsertOne(ctx, bson.D{{Key: "_id", Value: layoutDoc}, {Key: "split", Value: true}, {Key: "at", Value: storedTime(time.Now())}})
		if err == nil {
			return true, nil
		}
		if !mongo.IsDuplicateKeyError(err) {
			return false, fmt.Errorf("store: record the store's layout: %w", err)
		}
		// Another server made it meanwhile: read what it says.
	}
	return false, fmt.Errorf("store: the store's layout document of %s is made and gone", s.dbName)
}

// useSplitLayout points the open set, the audit log and the revisions at their own databases.
func (s *Store) useSplitLayout() {
	open := s.client.Database(s.dbName + OpenSuffix)
	s.openExecs, s.openEvents = open.Collection(collOpenExecs), open.Collection(collOpenEvents)
	s.audit = s.client.Database(s.dbName + AuditSuffix).Collection(collAudit)
	s.revisions = s.client.Database(s.dbName + RevisionsSuffix).Collection(collRevisions)
}

// Split reports whether the open set, the audit log and the revisions are in databases of their own.
func (s *Store) Split() bool { return s.openExecs.Database().Name() != s.dbName }

// SplitDatabases moves the open set, the audit log and the revisions of a store written by an earlier
// version to databases of their own (see OpenSuffix), with every server stopped: a server reads and writes
// them where its Open found them, so one running meanwhile would act on what is no longer there. Each
// collection is copied (a document there already is left as it is), the store is marked split, then the
// old collections are dropped; a split cut short is finished by running it again. It reports how many
// documents it moved.
func (s *Store) SplitDatabases(ctx context.Context) (copied int, err error) {
	// The new collections are indexed before anything is copied into them (Open indexed the old ones).
	s.useSplitLayout()
	if err := s.createIndexes(ctx); err != nil {
		return 0, fmt.Errorf("store: split: %w", err)
	}
	moves := []struct {
		name string
		to   *mongo.Collection
	}{{collOpenExecs, s.openExecs}, {collOpenEvents, s.openEvents}, {collAudit, s.audit}, {collRevisions, s.revisions}}
	for _, m := range moves {
		n, err := copyCollection(ctx, s.db.Collection(m.name), m.to)
		copied += n
		if err != nil {
			return copied, fmt.Errorf("store: split: move %s of %s to %s: %w", m.name, s.dbName, m.to.Database().Name(), err)
		}
	}
	_, err = s.cluster.UpdateOne(ctx, bson.D{{Key: "_id", Value: layoutDoc}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "split", Value: true}, {Key: "at", Value: storedTime(time.Now())}}}},
		options.UpdateOne().SetUpsert(true))
	if err != nil {
		return copied, fmt.Errorf("store: split: record the store's layout: %w", err)
	}
	for _, m := range moves {
		if err := s.db.Collection(m.name).Drop(ctx); err != nil {
			return copied, fmt.Errorf("store: split: drop %s of %s (copied; run the split again): %w", m.name, s.dbName, err)
		}
	}
	return copied, nil
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
