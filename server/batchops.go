package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/workflow"
)

// The operations on batch runs, made by the loop: start, pause, resume, stop, rerun, reset, skip. Each is
// written to the store before it is answered (a run's state is an update, a few per run; the operation is
// inserted), so that a new leader does what the old one said.

// batchOpNote asks the loop for an operation on a run.
type batchOpNote struct {
	op           string // run, pause, resume, stop, rerun, reset, skip
	batch, cycle string
	node         string // skip: the node
	frequency    string // run
	params       map[string]string
	rerun        bool   // run: a run of the cycle exists: rerun it from the point of failure
	trigger      string // run: what started it (api, schedule); "" is api
	who, why     string
	reply        chan batchOpReply
}

type batchOpReply struct {
	run store.BatchRun
	err error
}

// batchStatusNote asks the loop for a run's status (nil: the loop does not follow it).
type batchStatusNote struct {
	id    string
	reply chan *api.BatchRunStatus
}

// batchLookedUp is what the store said of executions whose end the loop did not learn (checkBatches).
type batchLookedUp struct {
	found   []job.Execution
	missing []string
}

var (
	// errBadRequest: what was asked is wrong (a 400), as the error says.
	errBadRequest     = errors.New("bad request")
	errBatchRunExists = errors.New("a run of this cycle exists: rerun it (--rerun) or give another cycle")
	errBatchState     = errors.New("not possible in the run's state")
	errNoBatches      = errors.New("this server keeps no batches")
)

// BatchOp asks the term for an operation on a run and returns the run as it stands after it.
func (l *leader) BatchOp(ctx context.Context, n batchOpNote) (store.BatchRun, error) {
	n.reply = make(chan batchOpReply, 1)
	rep, err := askTerm(ctx, l, n, n.reply)
	if err != nil {
		return store.BatchRun{}, err
	}
	return rep.run, rep.err
}

// BatchStatus asks the term for the live status of a run it follows; nil if it follows none by that id.
func (l *leader) BatchStatus(ctx context.Context, id string) (*api.BatchRunStatus, error) {
	reply := make(chan *api.BatchRunStatus, 1)
	return askTerm(ctx, l, batchStatusNote{id: id, reply: reply}, reply)
}

// loadBatchRuns takes over the open runs, once the open executions are tracked (takeOver): each is
// claimed for this term (a deposed term's late saves are refused from then on) and rebuilt. A run that
// cannot be loaded (its revision unreadable, the store slow) is tried again on the tick: one run must not
// keep the cluster from having a leader.
func (l *leader) loadBatchRuns(ctx context.Context) error {
	if l.batchStore == nil {
		return nil
	}
	var docs []store.BatchRun
	err := l.retryRead(ctx, "read the open batch runs", func(ctx context.Context) error {
		var err error
		docs, err = l.batchStore.ListBatchRuns(ctx, "", true, 0)
		return err
	})
	if err != nil {
		return err
	}
	if err := l.retryRead(ctx, "read the batch resources", l.loadResources); err != nil {
		return err
	}
	if err := l.loadBatchSchedules(ctx); err != nil {
		return err
	}
	// Every run is loaded, and what its executions hold counted at the gate, before any run moves on: a
	// run moved on first could let a waiter through a lock a run loaded after it holds.
	var taken []*batchRun
	for _, doc := range docs {
		run, err := l.takeRun(ctx, doc)
		if err != nil {
			if errors.Is(err, store.ErrFenced) {
				return err
			}
			l.unloaded[doc.ID] = doc
			l.logger.Warn("batch: a run could not be taken over; trying again on the tick", "run", doc.ID, "err", err)
			continue
		}
		taken = append(taken, run)
	}
	for _, run := range taken {
		l.advance(run)
		l.finishIfDone(run)
	}
	l.openGate()
	clear(l.openSetEnds)
	if len(docs) > 0 {
		l.logger.Info("batch runs taken over", "runs", len(docs)-len(l.unloaded), "left_for_later", len(l.unloaded))
	}
	return nil
}

// takeRun claims an open run for this term, rebuilds it and counts what its executions hold at the gate;
// the caller moves it on.
func (l *leader) takeRun(ctx context.Context, doc store.BatchRun) (*batchRun, error) {
	sctx, cancel := storeCtx(ctx)
	defer cancel()
	run, err := l.loadRun(sctx, doc)
	if err != nil {
		return nil, err
	}
	run.doc.Epoch = l.epoch
	run.doc.Seq++
	if err := l.batchStore.SaveBatchRun(sctx, run.doc); err != nil {
		return nil, err
	}
	l.runs[doc.ID] = run
	delete(l.unloaded, doc.ID)
	// What runs holds its locks and resources, whatever they are now (their ends release them).
	for id, s := range run.dispatched {
		if n, ok := run.node(s.node); ok && needs(n) {
			l.gate.take(id, holdingOf(n))
		}
	}
	return run, nil
}

// loadResources reads the resources' capacities.
func (l *leader) loadResources(ctx context.Context) error {
	rs, err := l.batchStore.ListResources(ctx)
	if err != nil {
		return err
	}
	clear(l.gate.capacity)
	for _, r := range rs {
		l.gate.capacity[r.Name] = r.Capacity
	}
	return nil
}

// loadRun rebuilds a run from the store and the executions this term follows; the ends found in the open
// set at takeover count too (their records are on their way).
func (l *leader) loadRun(ctx context.Context, doc store.BatchRun) (*batchRun, error) {
	rev, err := l.batchStore.GetBatchRevision(ctx, doc.Batch, doc.Version)
	if err != nil {
		return nil, err
	}
	ends, err := l.batchStore.ListBatchEnds(ctx, doc.ID)
	if err != nil {
		return nil, err
	}
	ends = append(ends, l.openSetEnds[doc.ID]...)
	var running []job.Execution
	for _, f := range l.flights {
		if f.exec.BatchRun == doc.ID {
			running = append(running, f.exec)
		}
	}
	for _, f := range l.recording {
		if f.exec.BatchRun == doc.ID {
			running = append(running, f.exec)
		}
	}
	return buildRun(doc, rev.Definition, ends, running)
}

// openSetEnded is told of an execution found ended in the open set, which this term did not follow (at
// takeover, or by a sweep), before it is closed: the end of its partition is recorded first, and a run
// the term follows takes it as any end.
func (l *leader) openSetEnded(e job.Execution) {
	if e.BatchRun == "" {
		return
	}
	if run := l.runs[e.BatchRun]; run != nil && run.dispatched[e.ID] != nil {
		l.batchEnded(e, e.State, resultOutput(e.Result))
		return
	}
	end := store.BatchEnd{Run: e.BatchRun, Node: e.BatchNode, Partition: e.BatchPartition, Round: max(e.BatchRound, 1),
		Succeeded: e.State == job.StateSucceeded, Execution: e.ID, At: l.now(), Output: lastLine(resultOutput(e.Result))}
	l.persistBatchEnd(end)
	l.openSetEnds[e.BatchRun] = append(l.openSetEnds[e.BatchRun], end)
}

// onBatchOp applies an operation.
func (l *leader) onBatchOp(ctx context.Context, n batchOpNote) batchOpReply {
	if l.batchStore == nil {
		return batchOpReply{err: errNoBatches}
	}
	if !l.confirmed() {
		return batchOpReply{err: errUnconfirmed}
	}
	if n.op == "run" {
		return l.startRun(ctx, n)
	}
	id := store.BatchRunID(n.batch, n.cycle)
	run, err := l.followRun(ctx, id)
	if err != nil {
		return batchOpReply{err: err}
	}
	doc := run.doc
	doc.Epoch = l.epoch
	doc.Seq++
	rebuild := false
	switch n.op {
	case "pause":
		if doc.State != store.RunRunning {
			return batchOpReply{run: run.doc, err: fmt.Errorf("batch run %s is %s: %w", id, doc.State, errBatchState)}
		}
		doc.State = store.RunPaused
	case "resume":
		if doc.State != store.RunPaused {
			return batchOpReply{run: run.doc, err: fmt.Errorf("batch run %s is %s, not paused: %w", id, doc.State, errBatchState)}
		}
		doc.State = store.RunRunning
	case "stop":
		if doc.State != store.RunRunning && doc.State != store.RunPaused {
			return batchOpReply{run: run.doc, err: fmt.Errorf("batch run %s is %s: %w", id, doc.State, errBatchState)}
		}
		doc.State, doc.Reason = store.RunStopping, "stopped by "+n.who
	case "rerun":
		switch {
		case doc.State == store.RunStopping || doc.State == store.RunSucceeded:
			return batchOpReply{run: run.doc, err: fmt.Errorf("batch run %s is %s: nothing to rerun: %w", id, doc.State, errBatchState)}
		case len(n.params) > 0 || n.frequency != "" && n.frequency != doc.Frequency:
			return batchOpReply{run: run.doc, err: fmt.Errorf("%w: batch run %s: a rerun keeps the run's frequency and parameters; start another cycle to change them", errBadRequest, id)}
		}
		if doc.State != store.RunPaused { // a paused run stays paused: resume starts what the rerun decided
			doc.State = store.RunRunning
		}
		doc.Round, doc.Reason, doc.EndedAt, rebuild = doc.Round+1, "", time.Time{}, true
	case "reset":
		if n := underway(run); n > 0 {
			return batchOpReply{run: run.doc, err: fmt.Errorf("batch run %s has %d executions under way: stop it first: %w", id, n, errBatchState)}
		}
		// Every node back to not started; the run waits for a resume.
		doc.Round++
		doc.State, doc.ResetRound, doc.Reason, doc.EndedAt, doc.Marks, rebuild = store.RunPaused, doc.Round, "", time.Time{}, nil, true
	case "skip":
		st, _ := run.wf.State(n.node)
		switch {
		case st == "":
			return batchOpReply{run: run.doc, err: fmt.Errorf("batch run %s has no node %q: %w", id, n.node, store.ErrNotFound)}
		case doc.State == store.RunStopping:
			return batchOpReply{run: run.doc, err: fmt.Errorf("batch run %s is %s: %w", id, doc.State, errBatchState)}
		case st == workflow.Running || st == workflow.Succeeded || st == workflow.Skipped:
			return batchOpReply{run: run.doc, err: fmt.Errorf("batch run %s: node %s is %s: only a node not running and not done may be marked succeeded: %w", id, n.node, st, errBatchState)}
		}
		doc.Marks = maps.Clone(doc.Marks)
		if doc.Marks == nil {
			doc.Marks = map[string]string{}
		}
		doc.Marks[n.node] = markReason(n.who, n.why)
		if !doc.State.Open() {
			doc.State, doc.Reason, doc.EndedAt = store.RunRunning, "", time.Time{}
		}
	default:
		return batchOpReply{err: fmt.Errorf("unknown batch operation %q", n.op)}
	}
	// The run's document first: the state, the round and the marks are one write; the operation is then
	// recorded for people (a failure to record it is logged, the operation stands).
	sctx, cancel := storeCtx(ctx)
	defer cancel()
	if err := l.batchStore.SaveBatchRun(sctx, doc); err != nil {
		return batchOpReply{run: run.doc, err: err}
	}
	op := store.BatchOperation{ID: doc.ID + "#" + uuid.NewString(), Run: doc.ID, Op: n.op, Node: n.node, Round: doc.Round, Who: n.who, Why: n.why, At: l.now()}
	if err := l.batchStore.InsertBatchOperation(sctx, op); err != nil {
		l.logger.Warn("batch: an operation was made but not recorded among the run's operations", "run", doc.ID, "op", n.op, "err", err)
	}
	run.doc = doc
	l.runs[doc.ID] = run
	delete(l.finished, doc.ID)
	l.finishedOrder = slices.DeleteFunc(l.finishedOrder, func(id string) bool { return id == doc.ID })
	switch {
	case n.op == "skip":
		if err := run.wf.MarkSucceeded(n.node, doc.Marks[n.node]); err != nil {
			l.logger.Error("batch: a mark saved could not be applied", "run", doc.ID, "node", n.node, "err", err)
		}
	case n.op == "stop":
		l.stopRun(run, "batch run "+doc.ID+" stopped by "+n.who)
	case rebuild:
		if n.op == "reset" {
			clear(run.ends)
			clear(run.dispatched) // only slots waiting at the gate, never fired
			clear(run.held)
		}
		l.rebuildRun(run)
	}
	l.logger.Info("batch operation", "run", doc.ID, "op", n.op, "node", n.node, "who", n.who, "state", doc.State, "round", doc.Round)
	l.advance(run)
	l.openGate() // what waited while the run was paused may go now
	l.finishIfDone(run)
	return batchOpReply{run: run.doc}
}

// stopRun stops what the run has under way: its executions, those waiting at the gate (never fired), and
// those whose insert failed and waits for a retry (they are stopped once recorded, never sent).
func (l *leader) stopRun(run *batchRun, reason string) {
	for id, s := range run.dispatched {
		if s.waiting {
			delete(run.dispatched, id)
			run.unhold(s)
			continue
		}
		l.stopOpen(id, reason)
	}
	for _, s := range run.toFire {
		run.unhold(s)
	}
	for i := range l.unsaved {
		if b := l.unsaved[i].batch; b != nil && b.run == run.doc.ID {
			l.unsaved[i].stop = reason
		}
	}
	run.toFire = nil
}

// underway counts the run's executions fired and not ended (not those waiting at the gate).
func underway(run *batchRun) int {
	n := 0
	for _, s := range run.dispatched {
		if !s.waiting {
			n++
		}
	}
	return n
}

// rebuildRun decides a run again from what this term knows of it: its ends that count in the current
// round, its marks, and what runs (a rerun, a reset).
func (l *leader) rebuildRun(run *batchRun) {
	var ends []store.BatchEnd
	for _, parts := range run.ends {
		for _, e := range parts {
			ends = append(ends, e)
		}
	}
	var running []job.Execution
	for id, s := range run.dispatched {
		running = append(running, job.Execution{ID: id, BatchRun: s.run, BatchNode: s.node, BatchPartition: s.partition, BatchRound: s.round})
	}
	next, err := buildRun(run.doc, run.def, ends, running)
	if err != nil {
		l.logger.Error("batch: cannot rebuild a run", "run", run.doc.ID, "err", err)
		return
	}
	for id, s := range run.dispatched { // keep what this term knows of them (when fired, unknown ends)
		next.dispatched[id] = s
		next.hold(s)
	}
	*run = *next
}

// followRun returns the run the loop follows, or loads a closed one from the store (to rerun it, or mark
// a node of it).
func (l *leader) followRun(ctx context.Context, id string) (*batchRun, error) {
	if run, ok := l.runs[id]; ok {
		return run, nil
	}
	if run, ok := l.finished[id]; ok {
		return run, nil // newer than the store, where its end may still be on its way
	}
	sctx, cancel := storeCtx(ctx)
	defer cancel()
	doc, err := l.batchStore.GetBatchRun(sctx, id)
	if err != nil {
		return nil, err
	}
	return l.loadRun(sctx, doc)
}

// startRun starts a run of a batch for a cycle.
func (l *leader) startRun(ctx context.Context, n batchOpNote) batchOpReply {
	if err := workflow.ValidName("cycle", n.cycle); err != nil {
		return batchOpReply{err: fmt.Errorf("%w: %w", errBadRequest, err)}
	}
	if n.frequency != "" {
		if err := workflow.ValidName("frequency", n.frequency); err != nil {
			return batchOpReply{err: fmt.Errorf("%w: %w", errBadRequest, err)}
		}
	}
	if err := job.ValidateParams("params", n.params); err != nil {
		return batchOpReply{err: fmt.Errorf("%w: %w", errBadRequest, err)}
	}
	id := store.BatchRunID(n.batch, n.cycle)
	if _, ok := l.runs[id]; ok && !n.rerun {
		return batchOpReply{run: l.runs[id].doc, err: fmt.Errorf("batch run %s: %w", id, errBatchRunExists)}
	}
	if _, ok := l.runs[id]; ok {
		n.op = "rerun"
		return l.onBatchOp(ctx, n)
	}
	sctx, cancel := storeCtx(ctx)
	b, err := l.batchStore.GetBatch(sctx, n.batch)
	cancel()
	if err != nil {
		return batchOpReply{err: err}
	}
	for _, node := range b.Definition.Nodes {
		e, ok := l.jobs[node.Job]
		switch {
		case !ok:
			return batchOpReply{err: fmt.Errorf("%w: batch %s: node %s: job %s does not exist", errBadRequest, n.batch, node.Name, node.Job)}
		case e.spec.Mode == job.ModeLocal:
			return batchOpReply{err: fmt.Errorf("%w: batch %s: node %s: job %s: %w", errBadRequest, n.batch, node.Name, node.Job, errLocalMode)}
		}
		if _, err := runParams(e.spec, node, n.params); err != nil {
			return batchOpReply{err: fmt.Errorf("%w: batch %s: %w", errBadRequest, n.batch, err)}
		}
	}
	if err := l.checkRunResources(b.Definition); err != nil {
		return batchOpReply{err: err}
	}
	doc := store.BatchRun{ID: id, Batch: n.batch, Cycle: n.cycle, Frequency: n.frequency, Params: n.params, Version: b.Version,
		State: store.RunRunning, Round: 1, StartedAt: l.now().UTC().Truncate(time.Millisecond), By: n.who, Trigger: cmp.Or(n.trigger, "api"),
		Epoch: l.epoch, Seq: 1}
	sctx, cancel = storeCtx(ctx)
	err = l.batchStore.CreateBatchRun(sctx, doc)
	if err != nil && !errors.Is(err, store.ErrExists) {
		// The answer may be lost with the run recorded: then it is this call's, and followed.
		if got, gerr := l.batchStore.GetBatchRun(sctx, id); gerr == nil && got.Epoch == l.epoch && got.StartedAt.Equal(doc.StartedAt) && got.By == doc.By {
			err = nil
		}
	}
	cancel()
	switch {
	case errors.Is(err, store.ErrExists) && n.rerun:
		n.op = "rerun"
		return l.onBatchOp(ctx, n)
	case errors.Is(err, store.ErrExists):
		return batchOpReply{err: fmt.Errorf("batch run %s: %w", id, errBatchRunExists)}
	case err != nil:
		return batchOpReply{err: err}
	}
	run, err := buildRun(doc, b.Definition, nil, nil)
	if err != nil {
		return batchOpReply{err: err}
	}
	l.runs[id] = run
	sctx, cancel = storeCtx(ctx)
	err = l.batchStore.InsertBatchOperation(sctx, store.BatchOperation{ID: id + "#" + uuid.NewString(), Run: id, Op: "run", Round: 1, Who: n.who, Why: n.why, At: l.now()})
	cancel()
	if err != nil {
		l.logger.Warn("batch: the run's start was not recorded among its operations", "run", id, "err", err)
	}
	l.logger.Info("batch run started", "run", id, "version", b.Version, "frequency", n.frequency, "who", n.who)
	l.advance(run)
	l.finishIfDone(run)
	return batchOpReply{run: run.doc}
}

// batchStatus is the live status of a run the loop follows.
func (l *leader) batchStatus(id string) *api.BatchRunStatus {
	run, ok := l.runs[id]
	if !ok {
		return nil
	}
	st := runStatus(run)
	l.gateStatus(run, st)
	l.clientStatus(run, st)
	return st
}

func runStatus(run *batchRun) *api.BatchRunStatus {
	st := &api.BatchRunStatus{Run: run.doc, Nodes: run.wf.Status(), Edges: run.def.Edges, Running: len(run.dispatched), Live: true}
	for _, s := range run.dispatched {
		if s.waiting {
			st.Running--
			continue
		}
		if len(st.Executions) < 1000 {
			st.Executions = append(st.Executions, s.id)
		}
	}
	slices.Sort(st.Executions)
	return st
}

// clientStatus says which of the run's executions no live client may take (none serves the job, or
// carries the labels its job and node ask), so that a node that cannot run is seen, not only "running".
func (l *leader) clientStatus(run *batchRun, st *api.BatchRunStatus) {
	var out []string
	// Whether a client may take an execution depends on its job and labels only: asked once per pair, not
	// once per execution (a fan-out has thousands waiting for a slot, and the status is polled).
	none := map[string]string{} // job and labels → why none may, or "" when some client may
	for id, s := range run.dispatched {
		if len(st.Waiting)+len(out) >= 1000 {
			break
		}
		f := l.flights[id]
		if s.waiting || f == nil || f.phase != phaseWaiting {
			continue
		}
		key := f.exec.Job + "\x00" + labelList(f.exec.Labels)
		why, asked := none[key]
		if !asked {
			spec := l.spec(f.exec)
			if len(l.eligible(f.exec, spec)) == 0 {
				why = "no live client serves job " + f.exec.Job
				if labels := labelList(spec.Routing.Labels, f.exec.Labels); labels != "" {
					why += " with labels " + labels
				}
			}
			none[key] = why
		}
		if why != "" {
			out = append(out, id+" waits for a client: "+why)
		}
	}
	slices.Sort(out)
	st.Waiting = append(st.Waiting, out...)
}

// labelList writes the labels of the maps as k=v, sorted.
func labelList(ms ...map[string]string) string {
	var out []string
	for _, m := range ms {
		for k, v := range m {
			out = append(out, k+"="+v)
		}
	}
	slices.Sort(out)
	return strings.Join(slices.Compact(out), ",")
}

// gateStatus says what the run's slots waiting at the gate wait for.
func (l *leader) gateStatus(run *batchRun, st *api.BatchRunStatus) {
	for _, s := range l.gate.waiting {
		if s.run != run.doc.ID || run.dispatched[s.id] != s || len(st.Waiting) >= 1000 {
			continue
		}
		n, _ := run.node(s.node)
		st.Waiting = append(st.Waiting, s.id+" waits for "+l.gate.describe(holdingOf(n)))
	}
}
