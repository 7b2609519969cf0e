package server

// Regressions of the second review of batch workflows (each failed before its fix).

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/wire"
	"github.com/clover-sched/clover/internal/workflow"
)

// sortedRuns lists open runs in a fixed order (newest batch name first), as a store may.
type sortedRuns struct{ *fakeBatchStore }

func (s sortedRuns) ListBatchRuns(ctx context.Context, batch string, open bool, limit int) ([]store.BatchRun, error) {
	out, err := s.fakeBatchStore.ListBatchRuns(ctx, batch, open, limit)
	slices.SortFunc(out, func(a, b store.BatchRun) int { return strings.Compare(b.ID, a.ID) })
	return out, err
}

func lockDefs() (workflow.Definition, workflow.Definition) {
	a := workflow.Definition{Name: "a", Nodes: []workflow.Node{{Name: "n", Job: "step", Locks: []workflow.Lock{{Name: "L"}}}}}
	b := workflow.Definition{Name: "b", Nodes: []workflow.Node{{Name: "n", Job: "step", Locks: []workflow.Lock{{Name: "L"}}}}}
	return a, b
}

// at takeover, runs are taken one by one and each is advanced before the next run's executions are
// counted at the gate: run b's waiting node takes lock L while run a's execution still holds it.
func TestTakeoverCountsEveryRunsHoldersBeforeOpeningTheGate(t *testing.T) {
	fs := newFakeStore(noSchedule("step", nil))
	da, db := lockDefs()
	bs := newFakeBatchStore(fs, da, db)
	h := newBatchHarness(t, fs, bs, "c1", "c2")
	h.establish()
	if _, err := h.op(batchOpNote{op: "run", batch: "a", cycle: "x", who: "ops"}); err != nil {
		t.Fatal(err)
	}
	dA := dispatchOf(h, "a/x/n")
	if dA == nil {
		t.Fatal("a/x/n not dispatched")
	}
	h.ack(h.sent[len(h.sent)-1].peer, dA)
	if _, err := h.op(batchOpNote{op: "run", batch: "b", cycle: "x", who: "ops"}); err != nil {
		t.Fatal(err)
	}
	if dispatchOf(h, "b/x/n") != nil {
		t.Fatal("b/x/n dispatched while a/x/n holds L")
	}
	h.flushBatch()
	// Failover.
	h2 := newBatchHarness(t, fs, bs, "c1", "c2")
	h2.l.batchStore = sortedRuns{bs}
	h2.l.epoch = 8
	h2.now = h.now.Add(time.Second)
	h2.establish()
	if err := h2.l.fireBatchDue(context.Background()); err != nil {
		t.Fatal(err)
	}
	if dispatchOf(h2, "b/x/n") != nil {
		t.Errorf("after takeover b/x/n was dispatched while a/x/n (still running) holds exclusive lock L; gate exclusive[L]=%q", h2.l.gate.exclusive["L"])
	}
}

// a paused run's slot waiting at the gate is never let through after resume if the lock was freed
// while it was paused (resume does not open the gate).
func TestResumeLetsAWaitingSlotThrough(t *testing.T) {
	fs := newFakeStore(noSchedule("step", nil))
	da, db := lockDefs()
	bs := newFakeBatchStore(fs, da, db)
	h := newBatchHarness(t, fs, bs, "c1")
	h.establish()
	if _, err := h.op(batchOpNote{op: "run", batch: "a", cycle: "x", who: "ops"}); err != nil {
		t.Fatal(err)
	}
	dA := dispatchOf(h, "a/x/n")
	h.ack("c1", dA)
	if _, err := h.op(batchOpNote{op: "run", batch: "b", cycle: "x", who: "ops"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.op(batchOpNote{op: "pause", batch: "b", cycle: "x", who: "ops"}); err != nil {
		t.Fatal(err)
	}
	h.finish("c1", dA, job.StateSucceeded) // L is free; b is paused, its slot stays waiting
	if err := h.l.fireBatchDue(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := h.op(batchOpNote{op: "resume", batch: "b", cycle: "x", who: "ops"}); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		h.advance(time.Second)
		if err := h.l.fireBatchDue(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if dispatchOf(h, "b/x/n") == nil {
		t.Errorf("b/x/n never dispatched after resume though L is free (exclusive[L]=%q, waiting %d)", h.l.gate.exclusive["L"], len(h.l.gate.waiting))
	}
}

// drainLookup applies the answer of a store lookup checkBatches started, as the loop would.
func drainLookup(t *testing.T, h *batchHarness) {
	t.Helper()
	for h.l.batchLooking {
		select {
		case n := <-h.l.notes:
			if err := h.l.handle(context.Background(), n); err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no lookup answer")
		}
	}
}

// a slot that passed the gate and waits in batchDue (inserts busy) is looked up by checkBatches as if
// fired; if its run is paused meanwhile it is moved back to toFire without giving its lock back: on resume
// it waits for the lock it holds itself, for ever; the lock is leaked for every other batch too.
func TestALookedUpUnfiredSlotDoesNotLeakItsLock(t *testing.T) {
	fs := newFakeStore(noSchedule("step", nil))
	_, db := lockDefs()
	bs := newFakeBatchStore(fs, db)
	h := newBatchHarness(t, fs, bs, "c1")
	h.establish()
	h.l.pipe.out = insertsInFlight // the inserts under way are not answered yet
	if _, err := h.op(batchOpNote{op: "run", batch: "b", cycle: "x", who: "ops"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.op(batchOpNote{op: "pause", batch: "b", cycle: "x", who: "ops"}); err != nil {
		t.Fatal(err)
	}
	h.advance(3 * time.Second) // checkBatches looks the unfired slot up
	t.Logf("looking %v dispatched %d batchDue %d", h.l.batchLooking, len(h.l.runs["b/x"].dispatched), len(h.l.batchDue))
	drainLookup(t, h)
	t.Logf("after lookup: dispatched %d toFire %d holders %v", len(h.l.runs["b/x"].dispatched), len(h.l.runs["b/x"].toFire), h.l.gate.holders)
	h.l.pipe.out = 0
	if err := h.l.fireBatchDue(context.Background()); err != nil { // the inserts answered while paused
		t.Fatal(err)
	}
	if _, err := h.op(batchOpNote{op: "resume", batch: "b", cycle: "x", who: "ops"}); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		h.advance(time.Second)
		drainLookup(t, h)
		if err := h.l.fireBatchDue(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if dispatchOf(h, "b/x/n") == nil {
		t.Errorf("b/x/n never dispatched: it waits for lock L, held by %q (itself)", h.l.gate.exclusive["L"])
	}
}

// stop does not stop a slot that passed the gate but was not fired yet (inserts busy): it is fired
// and dispatched after the run was stopped.
func TestStopReachesASlotNotFiredYet(t *testing.T) {
	fs := newFakeStore(noSchedule("step", nil))
	def := workflow.Definition{Name: "b", Nodes: []workflow.Node{{Name: "n", Job: "step"}}}
	bs := newFakeBatchStore(fs, def)
	h := newBatchHarness(t, fs, bs, "c1")
	h.establish()
	h.l.pipe.out = insertsInFlight
	if _, err := h.op(batchOpNote{op: "run", batch: "b", cycle: "x", who: "ops"}); err != nil {
		t.Fatal(err)
	}
	run, err := h.op(batchOpNote{op: "stop", batch: "b", cycle: "x", who: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	h.l.pipe.out = 0
	if err := h.l.fireBatchDue(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.advance(time.Second)
	if d := dispatchOf(h, "b/x/n"); d != nil {
		t.Errorf("b/x/n dispatched after the run was stopped (run state %s)", run.State)
	}
}

// the source node of partitions_from ends while its end is still queued and the term dies; the next
// term finds the execution ended in the open set and records its end without the output: the node that
// takes its partitions from it fails, and a rerun keeps the source's (empty) success.
func TestAnEndFoundInTheOpenSetKeepsItsOutput(t *testing.T) {
	fs := newFakeStore(noSchedule("step", nil))
	def := workflow.Definition{Name: "b", Nodes: []workflow.Node{
		{Name: "list", Job: "step"},
		{Name: "load", Job: "step", PartitionsFrom: "node:list"},
	}, Edges: []workflow.Edge{{From: "list", To: "load"}}}
	bs := newFakeBatchStore(fs, def)
	h := newBatchHarness(t, fs, bs, "c1")
	h.establish()
	if _, err := h.op(batchOpNote{op: "run", batch: "b", cycle: "x", who: "ops"}); err != nil {
		t.Fatal(err)
	}
	d := dispatchOf(h, "b/x/list")
	h.ack("c1", d)
	h.l.pipe.out = insertsInFlight       // load's inserts do not go out before the term dies
	h.finishWithOutput("c1", d, "A,B\n") // recorded; its batch end and its close stay queued: the term dies
	h2 := newBatchHarness(t, fs, bs, "c1")
	h2.l.epoch = 8
	h2.now = h.now.Add(time.Second)
	h2.establish()
	if err := h2.l.fireBatchDue(context.Background()); err != nil {
		t.Fatal(err)
	}
	run := h2.l.runs["b/x"]
	if run == nil {
		run = h2.l.finished["b/x"]
		t.Logf("the run ended at takeover: %s (%s)", run.doc.State, run.doc.Reason)
	}
	st, why := run.wf.State("load")
	if st != workflow.Running {
		t.Errorf("load after takeover: %s (%s), want running A and B", st, why)
	}
}

// a client's batch request is acted on by a term whose ZooKeeper session is not confirmed (a frozen
// leader): the run is created (onBatchOp refuses, requestBatch does not check).
func TestAnUnconfirmedTermStartsNoRequestedRun(t *testing.T) {
	fs := newFakeStore(noSchedule("step", nil))
	def := workflow.Definition{Name: "b", RequestedBy: []string{"c1"}, Nodes: []workflow.Node{{Name: "n", Job: "step"}}}
	bs := newFakeBatchStore(fs, def)
	h := newBatchHarness(t, fs, bs, "c1")
	h.establish()
	h.healthy = false
	err := h.l.request(context.Background(), &wire.Request{Header: wire.Header{From: "c1"}, ReqID: "c1.1", Batch: "b", Cycle: "x", At: h.now})
	if _, ok := bs.runs["b/x"]; ok {
		t.Errorf("an unconfirmed term created run b/x (request err %v)", err)
	}
}

// staleList answers ListBatchRuns with each run as it was one save ago: an earlier term's queued save
// landed between the new term's read and its claim.
type staleList struct{ *fakeBatchStore }

func (s staleList) ListBatchRuns(ctx context.Context, batch string, open bool, limit int) ([]store.BatchRun, error) {
	out, err := s.fakeBatchStore.ListBatchRuns(ctx, batch, open, limit)
	for i := range out {
		out[i].Seq--
	}
	return out, err
}

// a claim refused as ErrConflict (the stored run is one save ahead of the listing) leaves the run
// unloaded, and the tick retries it with the same stale document: it is never taken over.
func TestARunListedOneSaveAgoIsTakenOverOnTheTick(t *testing.T) {
	fs := newFakeStore(noSchedule("step", nil))
	def := workflow.Definition{Name: "b", Nodes: []workflow.Node{{Name: "n", Job: "step"}, {Name: "m", Job: "step"}}, Edges: []workflow.Edge{{From: "n", To: "m"}}}
	bs := newFakeBatchStore(fs, def)
	h := newBatchHarness(t, fs, bs, "c1")
	h.establish()
	if _, err := h.op(batchOpNote{op: "run", batch: "b", cycle: "x", who: "ops"}); err != nil {
		t.Fatal(err)
	}
	h.ack("c1", dispatchOf(h, "b/x/n"))
	h.flushBatch()
	h2 := newBatchHarness(t, fs, bs, "c1")
	h2.l.batchStore = staleList{bs}
	h2.l.epoch = 8
	h2.now = h.now.Add(time.Second)
	h2.establish()
	for range 5 {
		h2.advance(31 * time.Second)
	}
	if h2.l.runs["b/x"] == nil {
		t.Errorf("run b/x never taken over (unloaded: %v)", len(h2.l.unloaded))
	}
}

// a capacity lowered below what a waiting node asks: that node waits for ever, and its reservation
// keeps every later waiter of the resource out, though units are free.
func TestAWaiterThatCanNeverFitDoesNotBlockTheResource(t *testing.T) {
	fs := newFakeStore(noSchedule("step", nil))
	node := func(units int) []workflow.Node {
		return []workflow.Node{{Name: "n", Job: "step", Resources: map[string]int{"R": units}}}
	}
	bh := workflow.Definition{Name: "h", Nodes: node(1)}
	ba := workflow.Definition{Name: "a", Nodes: node(2)}
	bb := workflow.Definition{Name: "b", Nodes: node(1)}
	bs := newFakeBatchStore(fs, bh, ba, bb)
	h := newBatchHarness(t, fs, bs, "c1")
	h.establish()
	h.l.gate.capacity["R"] = 2
	for _, b := range []string{"h", "a"} {
		if _, err := h.op(batchOpNote{op: "run", batch: b, cycle: "x", who: "ops"}); err != nil {
			t.Fatal(err)
		}
	}
	dH := dispatchOf(h, "h/x/n")
	h.ack("c1", dH)
	h.l.gate.capacity["R"] = 1 // PUT /api/v1/resources/R {"capacity":1}
	h.l.openGate()
	h.finish("c1", dH, job.StateSucceeded)
	if _, err := h.op(batchOpNote{op: "run", batch: "b", cycle: "x", who: "ops"}); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		h.advance(time.Second)
		if err := h.l.fireBatchDue(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if dispatchOf(h, "b/x/n") == nil {
		t.Errorf("b/x/n (1 unit, 1 free) never dispatched: it waits behind a/x/n, which asks 2 of a capacity of 1: %v", h.l.batchStatus("b/x").Waiting)
	}
}
