package store

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// Entries that share a millisecond are paged by id: each is listed once, none skipped at a page's edge.
func TestAuditPagesKeepEntriesOfTheSameMillisecond(t *testing.T) {
	s := testStore(t)
	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	var entries []AuditEntry
	for i := range 7 {
		entries = append(entries, AuditEntry{ID: fmt.Sprintf("x-%02d", i), At: at.Add(time.Duration(i/3) * time.Millisecond), Who: "alice", Action: "POST /api/v1/jobs"})
	}
	if err := s.InsertAudits(t.Context(), entries); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	var cursor AuditCursor
	for pages := 0; ; pages++ {
		if pages > 7 {
			t.Fatal("more pages than entries")
		}
		page, err := s.ListAudit(t.Context(), "alice", cursor, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page {
			seen[e.ID]++
		}
		if len(page) < 2 {
			break
		}
		last := page[len(page)-1]
		cursor = AuditCursor{At: last.At, ID: last.ID}
	}
	if len(seen) != 7 {
		t.Fatalf("listed %v, want the 7 entries", seen)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s listed %d times", id, n)
		}
	}
}

// The audit log is kept a day at a time: pages run across the days and an earlier version's single
// collection in time order; pruning moves that collection's entries into their days (one cut short is
// finished) and drops the days that ended before the cut, with the earlier entries made before it.
func TestTheAuditLogIsKeptADayAtATime(t *testing.T) {
	t.Parallel()
	s := testStore(t)
	ctx := t.Context()
	day := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	at := func(d, h int) time.Time { return day.Add(time.Duration(d)*24*time.Hour + time.Duration(h)*time.Hour) }
	var entries []AuditEntry
	for d := range 3 {
		for _, h := range []int{1, 12, 23} {
			entries = append(entries, AuditEntry{ID: fmt.Sprintf("d%d-%02d", d, h), At: at(d, h), Who: "alice", Action: "PUT /api/v1/jobs/{name}"})
		}
	}
	if err := s.InsertAudits(ctx, entries); err != nil {
		t.Fatal(err)
	}
	// Entries an earlier version wrote, some newer than some of the days' (a server not yet upgraded),
	// and a move of them cut short.
	old := func(coll string, entries ...AuditEntry) {
		t.Helper()
		docs := make([]any, len(entries))
		for i, e := range entries {
			docs[i] = e
		}
		if _, err := s.auditDB.Collection(coll).InsertMany(ctx, docs); err != nil {
			t.Fatal(err)
		}
	}
	old(collAudit, AuditEntry{ID: "old-0", At: at(-1, 5), Who: "alice"}, AuditEntry{ID: "old-1", At: at(1, 6), Who: "alice"},
		AuditEntry{ID: "old-2", At: at(2, 2), Who: "alice"})
	old(auditMoving, AuditEntry{ID: "moving-0", At: at(1, 18), Who: "alice"})
	list := func() []string {
		t.Helper()
		var ids []string
		var cursor AuditCursor
		for pages := 0; ; pages++ {
			if pages > 20 {
				t.Fatal("more pages than entries")
			}
			page, err := s.ListAudit(ctx, "alice", cursor, 2)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range page {
				ids = append(ids, e.ID)
			}
			if len(page) < 2 {
				return ids
			}
			last := page[len(page)-1]
			cursor = AuditCursor{At: last.At, ID: last.ID}
		}
	}
	want := "d2-23 d2-12 old-2 d2-01 d1-23 moving-0 d1-12 old-1 d1-01 d0-23 d0-12 d0-01 old-0"
	if got := strings.Join(list(), " "); got != want {
		t.Fatalf("listed %s\nwant   %s", got, want)
	}
	// The cut falls in day 1: day 0 goes whole, day 1 stays whole, the earlier entries before it go, the
	// others move into their days.
	n, err := s.PruneAudit(ctx, at(1, 7))
	if err != nil || n != 3 {
		t.Fatalf("PruneAudit = %d, %v; want day 0 and the 2 earlier entries before the cut", n, err)
	}
	want = "d2-23 d2-12 old-2 d2-01 d1-23 moving-0 d1-12 d1-01"
	if got := strings.Join(list(), " "); got != want {
		t.Fatalf("after the prune listed %s\nwant   %s", got, want)
	}
	if _, legacy, err := s.auditCollections(ctx); err != nil || len(legacy) != 0 {
		t.Fatalf("after the prune the earlier collections %v (%v) are left; want them moved", legacy, err)
	}
	// A server of the earlier version still writing makes the collection again: moved the next time.
	old(collAudit, AuditEntry{ID: "old-3", At: at(2, 3), Who: "alice"})
	if n, err := s.PruneAudit(ctx, at(1, 7)); err != nil || n != 0 {
		t.Fatalf("PruneAudit again = %d, %v; want nothing left to remove", n, err)
	}
	want = "d2-23 d2-12 old-3 old-2 d2-01 d1-23 moving-0 d1-12 d1-01"
	if got := strings.Join(list(), " "); got != want {
		t.Fatalf("after the second prune listed %s\nwant   %s", got, want)
	}
	if _, legacy, err := s.auditCollections(ctx); err != nil || len(legacy) != 0 {
		t.Fatalf("after the second prune the earlier collections %v (%v) are left", legacy, err)
	}
}
