package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

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
