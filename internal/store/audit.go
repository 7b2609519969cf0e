package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
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
// has one collection, audit: PruneAudit moves its entries into their days (it renames it audit_moving
// first, so that a server of that version still writing makes a new one, moved the next time), and until
// then its entries are listed with the days'.

const (
	auditDayPrefix = collAudit + "_"
	auditMoving    = collAudit + "_moving"
)

// auditDayName is the collection of the entries made on t's day.
func auditDayName(t time.Time) string { return auditDayPrefix + t.UTC().Format("20060102") }

// auditCollection reports whether name is a collection of the audit log and, for a day's, the day; an
// earlier version's single collection (audit, or audit_moving while PruneAudit moves it) has the zero time.
func auditCollection(name string) (day time.Time, ok bool) {
	if name == collAudit || name == auditMoving {
		return time.Time{}, true
	}
	digits, found := strings.CutPrefix(name, auditDayPrefix)
	if !found || len(digits) != 8 {
		return time.Time{}, false
	}
	day, err := time.Parse("20060102", digits)
	return day, err == nil
}

// InsertAudits records entries, a day's in one insert; their IDs and times are set if empty. A day whose
// insert fails does not keep the others from theirs.
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
	var errs []error
	for _, day := range days {
		coll, docs := s.auditDay(ctx, day), byDay[day]
		var err error
		if len(docs) == 1 {
			_, err = coll.InsertOne(ctx, docs[0])
		} else {
			_, err = coll.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("store: insert %d audit entries into %s: %w", len(docs), day, err))
		}
	}
	return errors.Join(errs...)
}

// auditDay returns the day collection name, indexed the first time this process writes to it, so that
// MongoDB pages a day's entries from the index. The index is a help, not a condition: an entry is
// inserted without it, and it is made again at the next write.
func (s *Store) auditDay(ctx context.Context, name string) *mongo.Collection {
	coll := s.auditDB.Collection(name)
	if _, done := s.auditDays.Load(name); done || s.noIndexes {
		return coll
	}
	if _, err := coll.Indexes().CreateOne(ctx, index("at_id", bson.D{{Key: "at", Value: -1}, {Key: "_id", Value: -1}})); err != nil {
		s.logger.Warn("the audit log's day has no index yet; made again at the next write", "collection", name, "err", err)
		return coll
	}
	s.auditDays.Store(name, true)
	return coll
}

// auditCollections returns the audit log's collections: the days, newest first, and an earlier version's
// single collection (audit, audit_moving).
func (s *Store) auditCollections(ctx context.Context) (days, legacy []string, err error) {
	names, err := s.auditDB.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		return nil, nil, fmt.Errorf("store: list the audit log's days: %w", err)
	}
	for _, name := range names {
		switch day, ok := auditCollection(name); {
		case ok && day.IsZero():
			legacy = append(legacy, name)
		case ok:
			days = append(days, name)
		}
	}
	slices.Sort(days)
	slices.Reverse(days)
	slices.Sort(legacy)
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
	for _, name := range legacy {
		// Written before the days (or by a server of an earlier version meanwhile): any time.
		if err := read(name, limit); err != nil {
			return nil, err
		}
	}
	if len(legacy) > 0 {
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

// PruneAudit moves the entries of an earlier version's single collection into their days (those made
// before cut are left out), then drops the days that ended before cut. It returns how many days and
// earlier entries it removed. Run again after a failure, it goes on: every step is idempotent.
func (s *Store) PruneAudit(ctx context.Context, cut time.Time) (int, error) {
	days, legacy, err := s.auditCollections(ctx)
	if err != nil {
		return 0, err
	}
	removed := 0
	if slices.Contains(legacy, auditMoving) {
		// A move cut short: finish it before taking the collection an earlier version may have made since.
		n, err := s.moveLegacyAudit(ctx, cut)
		removed += n
		if err != nil {
			return removed, err
		}
	}
	if slices.Contains(legacy, collAudit) {
		cmd := bson.D{{Key: "renameCollection", Value: s.auditDB.Name() + "." + collAudit}, {Key: "to", Value: s.auditDB.Name() + "." + auditMoving}}
		if err := s.client.Database("admin").RunCommand(ctx, cmd).Err(); err != nil {
			return removed, fmt.Errorf("store: prune audit: rename %s to %s: %w", collAudit, auditMoving, err)
		}
		n, err := s.moveLegacyAudit(ctx, cut)
		removed += n
		if err != nil {
			return removed, err
		}
		// Its entries may fall in days listed before the move.
		if days, _, err = s.auditCollections(ctx); err != nil {
			return removed, err
		}
	}
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
	return removed, nil
}

// moveLegacyAudit copies the entries of audit_moving made at or after cut into their days (one already
// there is left as it is), then drops it; it returns how many it left out.
func (s *Store) moveLegacyAudit(ctx context.Context, cut time.Time) (skipped int, err error) {
	from := s.auditDB.Collection(auditMoving)
	cur, err := from.Find(ctx, bson.D{})
	if err != nil {
		return 0, fmt.Errorf("store: prune audit: read %s: %w", auditMoving, err)
	}
	defer cur.Close(context.WithoutCancel(ctx))
	batches := map[string][]any{}
	flush := func(day string) error {
		if err := insertIgnoringDuplicates(ctx, s.auditDay(ctx, day), batches[day]); err != nil {
			return fmt.Errorf("store: prune audit: move entries into %s: %w", day, err)
		}
		delete(batches, day)
		return nil
	}
	now := time.Now()
	for cur.Next(ctx) {
		// An entry is moved as it is stored; one without a time (written by someone else) goes to today.
		t, ok := cur.Current.Lookup("at").TimeOK()
		if !ok {
			t = now
		} else {
			if t.Before(cut) {
				skipped++
				continue
			}
		}
		day := auditDayName(t)
		batches[day] = append(batches[day], slices.Clone(cur.Current))
		if len(batches[day]) == 1000 {
			if err := flush(day); err != nil {
				return skipped, err
			}
		}
	}
	if err := cur.Err(); err != nil {
		return skipped, fmt.Errorf("store: prune audit: read %s: %w", auditMoving, err)
	}
	for day := range batches {
		if err := flush(day); err != nil {
			return skipped, err
		}
	}
	if err := from.Drop(ctx); err != nil {
		return skipped, fmt.Errorf("store: prune audit: drop %s (moved): %w", auditMoving, err)
	}
	return skipped, nil
}
