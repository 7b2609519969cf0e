package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
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

// The audit log is kept a day at a time: an entry goes to the collection of its day (UTC), audit_<yyyymmdd>,
// in the audit's database. A page of it reads the newest days until it is full, and keeping it bounded
// (PruneAudit) drops whole days: on FerretDB every other filter reads the whole collection, so one
// collection for all time would make both a scan of every entry ever made. A store of an earlier version
// has one collection, audit: its entries are listed with the days' and pruned by a delete, until none is
// left.

const auditDayPrefix = collAudit + "_"

// auditDayName is the collection of the entries made on t's day.
func auditDayName(t time.Time) string { return auditDayPrefix + t.UTC().Format("20060102") }

// auditCollection reports whether name is a collection of the audit log and, for a day's, the day; the
// earlier versions' single collection has the zero time.
func auditCollection(name string) (day time.Time, ok bool) {
	if name == collAudit {
		return time.Time{}, true
	}
	digits, found := strings.CutPrefix(name, auditDayPrefix)
	if !found || len(digits) != 8 {
		return time.Time{}, false
	}
	day, err := time.Parse("20060102", digits)
	return day, err == nil
}

// InsertAudits records entries, a day's in one insert; their IDs and times are set if empty.
func (s *Store) InsertAudits(ctx context.Context, entries []AuditEntry) error {
	byDay := map[string][]any{}
	var days []string
	for _, e := range entries {
		if e.At.IsZero() {
			e.At = time.Now()
		}
		e.At = storedTime(e.At)
		if e.ID == "" {
			b := make([]byte, 6)
			_, _ = rand.Read(b)
			e.ID = e.At.Format("20060102T150405.000Z") + "-" + hex.EncodeToString(b)
		}
		day := auditDayName(e.At)
		if byDay[day] == nil {
			days = append(days, day)
		}
		byDay[day] = append(byDay[day], e)
	}
	for _, day := range days {
		coll, err := s.auditDay(ctx, day)
		if err != nil {
			return err
		}
		docs := byDay[day]
		if len(docs) == 1 {
			_, err = coll.InsertOne(ctx, docs[0])
		} else {
			_, err = coll.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
		}
		if err != nil {
			return fmt.Errorf("store: insert %d audit entries into %s: %w", len(docs), day, err)
		}
	}
	return nil
}

// auditDay returns the day collection name, indexed by time the first time this process writes to it:
// MongoDB then pages a day's entries in order without sorting them all.
func (s *Store) auditDay(ctx context.Context, name string) (*mongo.Collection, error) {
	coll := s.auditDB.Collection(name)
	if _, done := s.auditDays.Load(name); done || s.noIndexes {
		return coll, nil
	}
	if _, err := coll.Indexes().CreateOne(ctx, index("at", bson.D{{Key: "at", Value: -1}})); err != nil {
		return nil, fmt.Errorf("store: index the audit log's %s: %w", name, err)
	}
	s.auditDays.Store(name, true)
	return coll, nil
}

// auditCollections returns the audit log's collections, the newest day first and the earlier versions'
// single collection, if there is one, last.
func (s *Store) auditCollections(ctx context.Context) (days []string, legacy bool, err error) {
	names, err := s.auditDB.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		return nil, false, fmt.Errorf("store: list the audit log's days: %w", err)
	}
	for _, name := range names {
		switch day, ok := auditCollection(name); {
		case ok && day.IsZero():
			legacy = true
		case ok:
			days = append(days, name)
		}
	}
	slices.Sort(days)
	slices.Reverse(days)
	return days, legacy, nil
}

// ListAudit returns up to limit entries (all when 0), newest first, made before before (all when zero)
// and, when who is set, by that caller only. It reads the days from the newest (past before's day) until it
// has limit entries: a day's are all newer than an earlier day's.
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
	days, legacy, err := s.auditCollections(ctx)
	if err != nil {
		return nil, err
	}
	var out []AuditEntry
	read := func(name string, limit int) error {
		opts := options.Find().SetSort(bson.D{{Key: "at", Value: -1}, {Key: "_id", Value: -1}})
		if limit > 0 {
			opts.SetLimit(int64(limit))
		}
		cur, err := s.auditDB.Collection(name).Find(ctx, filter, opts)
		if err != nil {
			return fmt.Errorf("store: list audit (%s): %w", name, err)
		}
		page, err := decodeEach[AuditEntry](ctx, s, "audit entry", cur)
		if err != nil {
			return fmt.Errorf("store: list audit (%s): %w", name, err)
		}
		out = append(out, page...)
		return nil
	}
	var lastDay string
	if !before.At.IsZero() {
		lastDay = auditDayName(before.At)
	}
	for _, day := range days {
		if limit > 0 && len(out) >= limit {
			break
		}
		if lastDay != "" && day > lastDay {
			continue // entries after the page's start
		}
		if err := read(day, limit-len(out)); err != nil {
			return nil, err
		}
	}
	if legacy {
		// Written before the days (or by a server of an earlier version meanwhile): any time.
		if err := read(collAudit, limit); err != nil {
			return nil, err
		}
		slices.SortStableFunc(out, func(a, b AuditEntry) int {
			if c := b.At.Compare(a.At); c != 0 {
				return c
			}
			return strings.Compare(b.ID, a.ID)
		})
		if limit > 0 && len(out) > limit {
			out = out[:limit]
		}
	}
	return out, nil
}

// AuditCursor is where a page of the audit log starts: before the entry at At with id ID (the last one of
// the page before), or before At when ID is empty; the zero value starts at the newest.
type AuditCursor struct {
	At time.Time
	ID string
}

// PruneAudit drops the days of the audit log that ended before cut and deletes the entries of the earlier
// versions' single collection made before cut (the collection is kept: a server of an earlier version may
// still be writing to it). It returns how many days and entries it removed.
func (s *Store) PruneAudit(ctx context.Context, cut time.Time) (int, error) {
	days, legacy, err := s.auditCollections(ctx)
	if err != nil {
		return 0, err
	}
	removed := 0
	for _, name := range days {
		if day, _ := auditCollection(name); day.Add(24 * time.Hour).After(cut) {
			continue
		}
		if err := s.auditDB.Collection(name).Drop(ctx); err != nil {
			return removed, fmt.Errorf("store: prune audit: drop %s: %w", name, err)
		}
		s.auditDays.Delete(name)
		removed++
	}
	if !legacy {
		return removed, nil
	}
	old := s.auditDB.Collection(collAudit)
	res, err := old.DeleteMany(ctx, bson.D{{Key: "at", Value: bson.D{{Key: "$lt", Value: storedTime(cut)}}}})
	if err != nil {
		return removed, fmt.Errorf("store: prune audit: %w", err)
	}
	removed += int(res.DeletedCount)
	return removed, nil
}
