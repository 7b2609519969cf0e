package store

import (
	"slices"
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/job"
)

// ended records n executions of jobName, one a minute from from, that succeeded, and closes them into the
// history with w.
func ended(t *testing.T, s *Store, w *HistoryWriter, jobName string, from time.Time, n int) []job.Execution {
	t.Helper()
	var execs []job.Execution
	var events []job.Event
	var ids []string
	for i := range n {
		e := execution(jobName, from.Add(time.Duration(i)*time.Minute), job.TriggerSchedule)
		execs = append(execs, e)
		events = append(events, acked(e, 1, e.ScheduledAt.Add(time.Second)), finished(e, job.StateSucceeded, e.ScheduledAt.Add(2*time.Second)))
		ids = append(ids, e.ID)
	}
	mustInsert(t, s, execs, events)
	closeInto(t, s, w, ids...)
	return execs
}

func TestHistoryBucketsArchiveAndPrune(t *testing.T) {
	t.Parallel()
	s := testStore(t)
	now := time.Now()
	w := s.NewHistoryWriter(5, time.Hour, 0)
	old := ended(t, s, w, "a", t0, 3)
	// A bucket is sealed once past its SealBy: the next append starts another.
	recent := func() []job.Execution {
		t.Helper()
		execs := []job.Execution{}
		for _, e := range []job.Execution{execution("a", t0.Add(time.Hour), job.TriggerSchedule)} {
			mustInsert(t, s, []job.Execution{e}, []job.Event{finished(e, job.StateFailed, e.ScheduledAt.Add(time.Second))})
			execs = append(execs, e)
		}
		got, err := s.OpenByID(t.Context(), []string{execs[0].ID})
		if err != nil || len(got) != 1 {
			t.Fatalf("OpenByID = %v, %v", got, err)
		}
		if err := w.Append(t.Context(), got, now.Add(2*time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := s.CloseExecutions(t.Context(), []string{execs[0].ID}); err != nil {
			t.Fatal(err)
		}
		return execs
	}()
	buckets, err := s.Buckets(t.Context(), false)
	if err != nil || len(buckets) != 2 {
		t.Fatalf("Buckets = %+v, %v; want 2", buckets, err)
	}
	if buckets[0].Count != 1 || buckets[1].Count != 3 || !buckets[0].holds("a", job.StateFailed) || buckets[1].holds("a", job.StateFailed) {
		t.Fatalf("buckets newest first = %+v", buckets)
	}

	// Nothing old enough: nothing moves. The first bucket, sealed and older than the cut, moves.
	if n, err := s.ArchiveBuckets(t.Context(), now.Add(-time.Hour), now.Add(3*time.Hour)); err != nil || n != 0 {
		t.Fatalf("ArchiveBuckets before anything is old = %d, %v", n, err)
	}
	if n, err := s.ArchiveBuckets(t.Context(), now.Add(time.Hour), now.Add(3*time.Hour)); err != nil || n != 1 {
		t.Fatalf("ArchiveBuckets = %d, %v; want 1 (the sealed one)", n, err)
	}
	live, err := s.ListExecutions(t.Context(), ExecutionFilter{})
	if err != nil || ids(live) != ids(recent) {
		t.Fatalf("live after the move = %s, %v; want %s", ids(live), err, ids(recent))
	}
	archived, err := s.ListExecutions(t.Context(), ExecutionFilter{Archived: true})
	slices.Reverse(old)
	if err != nil || ids(archived) != ids(old) {
		t.Fatalf("archive = %s, %v; want %s", ids(archived), err, ids(old))
	}
	if e, err := s.GetExecution(t.Context(), old[0].ID); err != nil || e.State != job.StateSucceeded {
		t.Fatalf("GetExecution of an archived execution = %+v, %v", e, err)
	}
	// Moving again moves nothing (TestArchiveFinishesAMoveCutShort covers a move cut short).
	if n, err := s.ArchiveBuckets(t.Context(), now.Add(time.Hour), now.Add(3*time.Hour)); err != nil || n != 0 {
		t.Fatalf("ArchiveBuckets again = %d, %v; want 0", n, err)
	}

	// InHistory finds ids in the history and the archive, timed or not, and nothing else.
	in, err := s.InHistory(t.Context(), []string{old[0].ID, recent[0].ID, "b/c1/n", "a@2001-01-01T00:00:00Z"})
	if err != nil || !in[old[0].ID] || !in[recent[0].ID] || in["b/c1/n"] || in["a@2001-01-01T00:00:00Z"] {
		t.Fatalf("InHistory = %v, %v; want the archived and the live one only", in, err)
	}

	if n, err := s.PruneArchive(t.Context(), now.Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("PruneArchive of nothing old = %d, %v", n, err)
	}
	if n, err := s.PruneArchive(t.Context(), now.Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("PruneArchive = %d, %v; want 1", n, err)
	}
	if archived, err := s.ListExecutions(t.Context(), ExecutionFilter{Archived: true}); err != nil || len(archived) != 0 {
		t.Fatalf("archive after the prune = %s, %v", ids(archived), err)
	}
}

func TestArchiveFinishesAMoveCutShort(t *testing.T) {
	t.Parallel()
	s := testStore(t)
	now := time.Now()
	w := s.NewHistoryWriter(5, time.Minute, 0)
	execs := ended(t, s, w, "a", t0, 2)
	buckets, err := s.Buckets(t.Context(), false)
	if err != nil || len(buckets) != 1 {
		t.Fatalf("Buckets = %v, %v", buckets, err)
	}
	later := now.Add(time.Hour)
	// A leader died after listing the bucket in the archive and renaming it, before unlisting it.
	b := buckets[0]
	ab := b
	ab.Name = archivePrefix + b.Name[len(historyPrefix):]
	if _, err := s.archiveIndex.InsertOne(t.Context(), ab); err != nil {
		t.Fatal(err)
	}
	if err := s.archiveBucket(t.Context(), b, later); err != nil {
		t.Fatal(err)
	}
	if _, err := s.historyIndex.InsertOne(t.Context(), b); err != nil { // listed again, as if never unlisted
		t.Fatal(err)
	}
	if n, err := s.ArchiveBuckets(t.Context(), later, later); err != nil || n != 1 {
		t.Fatalf("ArchiveBuckets = %d, %v; want the move finished", n, err)
	}
	live, _ := s.ListExecutions(t.Context(), ExecutionFilter{})
	archived, _ := s.ListExecutions(t.Context(), ExecutionFilter{Archived: true})
	if len(live) != 0 || len(archived) != len(execs) {
		t.Fatalf("live %s, archive %s; want every execution in the archive once", ids(live), ids(archived))
	}
}

func TestPruneFences(t *testing.T) {
	t.Parallel()
	s := testStore(t)
	day := 24 * time.Hour
	e1 := execution("a", t0, job.TriggerSchedule)
	e2 := execution("a", t0.Add(day), job.TriggerSchedule)
	mustInsert(t, s, []job.Execution{e1, e2}, nil)
	// The fence of t0's day is dropped once that day has ended before the cut; the next day's stays.
	if n, err := s.PruneFences(t.Context(), t0.Truncate(day).Add(day)); err != nil || n != 1 {
		t.Fatalf("PruneFences = %d, %v; want 1", n, err)
	}
	for e, want := range map[string]bool{e1.ID: false, e2.ID: true} {
		at := e1.ScheduledAt
		if e == e2.ID {
			at = e2.ScheduledAt
		}
		if got, err := s.ExecutionRecorded(t.Context(), e, at); err != nil || got != want {
			t.Errorf("ExecutionRecorded(%s) = %v, %v; want %v", e, got, err, want)
		}
	}
}
