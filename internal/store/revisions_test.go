package store

import (
	"errors"
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/job"
)

func TestRevisionsAreKeyedByJobAndVersionAndPrunedUnlessTagged(t *testing.T) {
	t.Parallel()
	s := testStore(t)
	ctx := t.Context()
	born := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	rev := func(v int64, created time.Time) Revision {
		return Revision{Job: "ledger", Version: v, Action: RevisionUpdated, At: born.Add(time.Duration(v) * time.Minute),
			Spec: job.Spec{Name: "ledger", Schedule: "@daily", Handler: "shell", Version: v, CreatedAt: created}}
	}
	var revs []Revision
	for v := int64(1); v <= 5; v++ {
		revs = append(revs, rev(v, born))
	}
	for _, err := range s.InsertRevisions(ctx, revs) {
		if err != nil {
			t.Fatal(err)
		}
	}
	// Recorded again (a retry): nothing changes, no error. The same version of a job made again: refused.
	errs := s.InsertRevisions(ctx, []Revision{rev(2, born), rev(3, born.Add(time.Hour)), rev(6, born)})
	if errs[0] != nil || !errors.Is(errs[1], ErrRevisionTaken) || errs[2] != nil {
		t.Fatalf("a retry, a collision and a new one: %v", errs)
	}
	page, err := s.ListRevisions(ctx, "ledger", 2, 6)
	if err != nil || len(page) != 4 || page[0].Version != 5 || page[3].Version != 2 {
		t.Fatalf("versions [2, 6): %d revisions (%v)", len(page), err)
	}
	if err := s.SetRevisionTags(ctx, "ledger", 2, []string{"keep"}); err != nil {
		t.Fatal(err)
	}
	n, err := s.PruneRevisions(ctx, []RevisionKey{{"ledger", 1}, {"ledger", 2}, {"ledger", 99}})
	if err != nil || n != 1 {
		t.Fatalf("pruned %d (%v), want 1: the tagged one stays, a missing one is nothing", n, err)
	}
	if _, err := s.GetRevision(ctx, "ledger", 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("version 1 after the prune: %v", err)
	}
	if r, err := s.GetRevision(ctx, "ledger", 2); err != nil || len(r.Tags) != 1 {
		t.Fatalf("the tagged version 2: %+v, %v", r, err)
	}
	if tagged, err := s.TaggedRevisions(ctx, "ledger"); err != nil || len(tagged) != 1 {
		t.Fatalf("tagged: %d (%v)", len(tagged), err)
	}
	if err := s.SetRevisionTags(ctx, "ledger", 2, nil); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.PruneRevisions(ctx, []RevisionKey{{"ledger", 2}}); n != 1 {
		t.Fatal("an untagged revision was not pruned")
	}

	if err := errors.Join(s.PutTombstones(ctx, []Tombstone{{Job: "ledger", Version: 7, At: born}, {Job: "other", Version: 2, At: born}})...); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(s.PutTombstones(ctx, []Tombstone{{Job: "ledger", Version: 12, At: born}})...); err != nil {
		t.Fatal(err)
	}
	all, err := s.AllTombstones(ctx)
	if err != nil || all["ledger"].Version != 12 || all["other"].Version != 2 {
		t.Fatalf("tombstones: %+v (%v)", all, err)
	}
	one, err := s.Tombstones(ctx, []string{"ledger"})
	if err != nil || one["ledger"].Version != 12 || len(one) != 1 {
		t.Fatalf("the tombstone of ledger: %+v (%v)", one, err)
	}
}
