package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// AuditEntry records one write made through the API (or refused to an authenticated caller): who, with
// which role, what, when, and the version of the thing before and after. Entries are only ever inserted.
type AuditEntry struct {
	ID     string    `bson:"_id" json:"id"`
	At     time.Time `bson:"at" json:"at"`
	Who    string    `bson:"who" json:"who"`
	Role   string    `bson:"role" json:"role"`
	Via    string    `bson:"via,omitempty" json:"via,omitempty"` // the server that forwarded the call
	Server string    `bson:"server" json:"server"`               // the server that made (or refused) it
	Action string    `bson:"action" json:"action"`               // the route: "POST /api/v1/jobs/{name}/trigger"
	Target string    `bson:"target,omitempty" json:"target,omitempty"`
	Status int       `bson:"status" json:"status"` // the HTTP status answered
	Before int64     `bson:"before,omitempty" json:"before,omitempty"`
	After  int64     `bson:"after,omitempty" json:"after,omitempty"`
	Error  string    `bson:"error,omitempty" json:"error,omitempty"`
}

// InsertAudit records e; its ID and time are set if empty.
func (s *Store) InsertAudit(ctx context.Context, e AuditEntry) error {
	return s.InsertAudits(ctx, []AuditEntry{e})
}

// InsertAudits records entries in one insert; their IDs and times are set if empty.
func (s *Store) InsertAudits(ctx context.Context, entries []AuditEntry) error {
	docs := make([]any, len(entries))
	for i, e := range entries {
		if e.At.IsZero() {
			e.At = time.Now()
		}
		e.At = storedTime(e.At)
		if e.ID == "" {
			b := make([]byte, 6)
			_, _ = rand.Read(b)
			e.ID = e.At.Format("20060102T150405.000Z") + "-" + hex.EncodeToString(b)
		}
		docs[i] = e
	}
	switch len(docs) {
	case 0:
		return nil
	case 1:
		if _, err := s.audit.InsertOne(ctx, docs[0]); err != nil {
			return fmt.Errorf("store: insert audit entry: %w", err)
		}
		return nil
	}
	if _, err := s.audit.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false)); err != nil {
		return fmt.Errorf("store: insert %d audit entries: %w", len(docs), err)
	}
	return nil
}

// ListAudit returns up to limit entries, newest first, made before before (all when zero) and, when who
// is set, by that caller only.
func (s *Store) ListAudit(ctx context.Context, who string, before AuditCursor, limit int) ([]AuditEntry, error) {
	filter := bson.D{}
	if who != "" {
		filter = append(filter, bson.E{Key: "who", Value: who})
	}
	switch {
	case !before.At.IsZero() && before.ID != "":
		// Entries of the same millisecond as the last one shown come after it by id.
		at := storedTime(before.At)
		filter = append(filter, bson.E{Key: "$or", Value: bson.A{
			bson.D{{Key: "at", Value: bson.D{{Key: "$lt", Value: at}}}},
			bson.D{{Key: "at", Value: at}, {Key: "_id", Value: bson.D{{Key: "$lt", Value: before.ID}}}},
		}})
	case !before.At.IsZero():
		filter = append(filter, bson.E{Key: "at", Value: bson.D{{Key: "$lt", Value: storedTime(before.At)}}})
	}
	opts := options.Find().SetSort(bson.D{{Key: "at", Value: -1}, {Key: "_id", Value: -1}})
	if limit > 0 {
		opts.SetLimit(int64(limit))
	}
	cur, err := s.audit.Find(ctx, filter, opts)
	if err != nil {
		return nil, fmt.Errorf("store: list audit: %w", err)
	}
	out, err := decodeEach[AuditEntry](ctx, s, "audit entry", cur)
	if err != nil {
		return nil, fmt.Errorf("store: list audit: %w", err)
	}
	return out, nil
}

// AuditCursor is where a page of the audit log starts: before the entry at At with id ID (the last one of
// the page before), or before At when ID is empty; the zero value starts at the newest.
type AuditCursor struct {
	At time.Time
	ID string
}

// PruneAudit deletes entries older than cutoff and returns how many.
func (s *Store) PruneAudit(ctx context.Context, cutoff time.Time) (int64, error) {
	res, err := s.audit.DeleteMany(ctx, bson.D{{Key: "at", Value: bson.D{{Key: "$lt", Value: storedTime(cutoff)}}}})
	if err != nil {
		return 0, fmt.Errorf("store: prune audit: %w", err)
	}
	return res.DeletedCount, nil
}
