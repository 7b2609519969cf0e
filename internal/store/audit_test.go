package store

import (
	"fmt"
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
