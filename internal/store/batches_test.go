package store

import (
	"errors"
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/workflow"
)

func eodBatch(nodes ...string) workflow.Definition {
	d := workflow.Definition{Name: "eod"}
	for _, n := range nodes {
		d.Nodes = append(d.Nodes, workflow.Node{Name: n, Job: "j"})
	}
	return d
}

// A batch's writes are versioned by their revisions: a stale writer gets ErrConflict, a deleted batch
// made again goes on from its versions, and every version stays readable.
func TestBatchVersions(t *testing.T) {
	s := testStore(t)
	ctx := t.Context()
	b, err := s.PutBatch(ctx, eodBatch("a"), 0, "alice", "first", t0)
	if err != nil || b.Version != 1 {
		t.Fatalf("create: %+v, %v", b, err)
	}
	if _, err := s.PutBatch(ctx, eodBatch("a"), 0, "bob", "", t0); !errors.Is(err, ErrExists) {
		t.Fatalf("create again: %v, want ErrExists", err)
	}
	if b, err = s.PutBatch(ctx, eodBatch("a", "b"), 1, "alice", "", t0); err != nil || b.Version != 2 {
		t.Fatalf("update: %+v, %v", b, err)
	}
	if _, err := s.PutBatch(ctx, eodBatch("a", "c"), 1, "bob", "", t0); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale update: %v, want ErrConflict", err)
	}
	if err := s.DeleteBatch(ctx, "eod", 2, "alice", "gone", t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetBatch(ctx, "eod"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get deleted: %v, want ErrNotFound", err)
	}
	if list, err := s.ListBatches(ctx); err != nil || len(list) != 0 {
		t.Fatalf("list after delete: %v, %v", list, err)
	}
	if b, err = s.PutBatch(ctx, eodBatch("z"), 0, "carol", "", t0); err != nil || b.Version != 4 {
		t.Fatalf("create after delete: %+v, %v; want version 4", b, err)
	}
	revs, err := s.ListBatchRevisions(ctx, "eod")
	if err != nil || len(revs) != 4 {
		t.Fatalf("revisions: %d, %v", len(revs), err)
	}
	want := []string{RevisionCreated, RevisionDeleted, RevisionUpdated, RevisionCreated}
	for i, r := range revs {
		if r.Version != int64(4-i) || r.Action != want[i] {
			t.Errorf("revision %d: version %d %s, want %d %s", i, r.Version, r.Action, 4-i, want[i])
		}
	}
	if r, err := s.GetBatchRevision(ctx, "eod", 2); err != nil || len(r.Definition.Nodes) != 2 {
		t.Fatalf("revision 2: %+v, %v", r, err)
	}
}

// A run is keyed by batch and cycle; its state is saved only by its term or a newer one; its ends and
// operations are inserted, an end recorded twice kept once.
func TestBatchRuns(t *testing.T) {
	s := testStore(t)
	ctx := t.Context()
	run := BatchRun{ID: BatchRunID("eod", "2026-12-15"), Batch: "eod", Cycle: "2026-12-15", Version: 1, State: RunRunning, Round: 1, StartedAt: t0, By: "alice", Epoch: 3, Seq: 1}
	if err := s.CreateBatchRun(ctx, run); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateBatchRun(ctx, run); !errors.Is(err, ErrExists) {
		t.Fatalf("same cycle again: %v, want ErrExists", err)
	}
	run.State, run.Epoch, run.Seq = RunPaused, 4, 2
	if err := s.SaveBatchRun(ctx, run); err != nil {
		t.Fatal(err)
	}
	stale := run
	stale.State, stale.Epoch, stale.Seq = RunFailed, 3, 3
	if err := s.SaveBatchRun(ctx, stale); !errors.Is(err, ErrFenced) {
		t.Fatalf("save by an older term: %v, want ErrFenced", err)
	}
	late := run
	late.State, late.Seq = RunFailed, 2 // a save queued before the one stored
	if err := s.SaveBatchRun(ctx, late); !errors.Is(err, ErrConflict) {
		t.Fatalf("an older save: %v, want ErrConflict", err)
	}
	open, err := s.ListBatchRuns(ctx, "eod", true, 0)
	if err != nil || len(open) != 1 || open[0].State != RunPaused {
		t.Fatalf("open runs: %+v, %v", open, err)
	}
	ends := []BatchEnd{
		{Run: run.ID, Node: "extract", Partition: "A", Round: 1, Succeeded: true, Execution: "x", At: t0},
		{Run: run.ID, Node: "extract", Partition: "B", Round: 1, Succeeded: false, Execution: "y", At: t0},
	}
	if err := s.InsertBatchEnds(ctx, ends); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertBatchEnds(ctx, ends[:1]); err != nil {
		t.Fatalf("an end recorded again: %v", err)
	}
	got, err := s.ListBatchEnds(ctx, run.ID)
	if err != nil || len(got) != 2 {
		t.Fatalf("ends: %+v, %v", got, err)
	}
	if err := s.InsertBatchOperation(ctx, BatchOperation{ID: run.ID + "#1", Run: run.ID, Op: "pause", Who: "alice", At: t0}); err != nil {
		t.Fatal(err)
	}
	if ops, err := s.ListBatchOperations(ctx, run.ID); err != nil || len(ops) != 1 || ops[0].Who != "alice" {
		t.Fatalf("operations: %+v, %v", ops, err)
	}
}

// Runs that ended before the cut leave with their ends and operations; open ones and newer ones stay.
func TestOldBatchRunsArePruned(t *testing.T) {
	s := testStore(t)
	ctx := t.Context()
	mk := func(cycle string, state RunState, ended time.Time) {
		r := BatchRun{ID: BatchRunID("eod", cycle), Batch: "eod", Cycle: cycle, State: state, Round: 1, StartedAt: t0, EndedAt: ended, Seq: 1}
		if err := s.CreateBatchRun(ctx, r); err != nil {
			t.Fatal(err)
		}
		if err := s.InsertBatchEnds(ctx, []BatchEnd{{Run: r.ID, Node: "a", Round: 1, Succeeded: true, At: t0}}); err != nil {
			t.Fatal(err)
		}
		if err := s.InsertBatchOperation(ctx, BatchOperation{ID: r.ID + "#1", Run: r.ID, Op: "run", At: t0}); err != nil {
			t.Fatal(err)
		}
	}
	mk("old", RunSucceeded, t0.Add(time.Hour))
	mk("old-failed", RunFailed, t0.Add(time.Hour))
	mk("open", RunPaused, time.Time{})
	mk("new", RunSucceeded, t0.Add(48*time.Hour))
	n, err := s.PruneBatchRuns(ctx, t0.Add(24*time.Hour))
	if err != nil || n != 2 {
		t.Fatalf("pruned %d, %v; want 2", n, err)
	}
	for _, c := range []string{"old", "old-failed"} {
		if _, err := s.GetBatchRun(ctx, BatchRunID("eod", c)); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: %v", c, err)
		}
		if ends, _ := s.ListBatchEnds(ctx, BatchRunID("eod", c)); len(ends) != 0 {
			t.Errorf("%s kept %d ends", c, len(ends))
		}
	}
	for _, c := range []string{"open", "new"} {
		if _, err := s.GetBatchRun(ctx, BatchRunID("eod", c)); err != nil {
			t.Errorf("%s: %v", c, err)
		}
		if ops, _ := s.ListBatchOperations(ctx, BatchRunID("eod", c)); len(ops) != 1 {
			t.Errorf("%s lost its operations", c)
		}
	}
}
