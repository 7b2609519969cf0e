package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
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

// batchWritten says the writes handed to the batch writer are done, or which were not.
type batchWritten struct{ failed []batchWrite }

// batchWrite is one write the loop leaves to the batch writer: an end, or a run's new state.
type batchWrite struct {
	end *store.BatchEnd
	run *store.BatchRun
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

// loadBatchRuns takes over the open runs, once the open executions are tracked (takeOver).
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
	for _, doc := range docs {
		err := l.retryRead(ctx, "read batch run "+doc.ID, func(ctx context.Context) error {
			run, err := l.loadRun(ctx, doc)
			if err == nil {
				l.runs[doc.ID] = run
			}
			return err
		})
		if err != nil {
			return err
		}
	}
	if err := l.retryRead(ctx, "read the batch resources", l.loadResources); err != nil {
		return err
	}
	if err := l.loadBatchSchedules(ctx); err != nil {
		return err
	}
	// What runs holds its locks and resources, whatever they are now (their ends release them).
	for _, run := range l.runs {
		for id, s := range run.dispatched {
			if n, ok := run.def.Node(s.node); ok && needs(n) {
				l.gate.take(id, holdingOf(n))
			}
		}
	}
	for _, run := range l.runs {
		l.advance(run)
		l.finishIfDone(run)
	}
	if len(docs) > 0 {
		l.logger.Info("batch runs taken over", "runs", len(docs))
	}
	return nil
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

// loadRun rebuilds a run from the store and the executions this term follows.
func (l *leader) loadRun(ctx context.Context, doc store.BatchRun) (*batchRun, error) {
	rev, err := l.batchStore.GetBatchRevision(ctx, doc.Batch, doc.Version)
	if err != nil {
		return nil, err
	}
	ends, err := l.batchStore.ListBatchEnds(ctx, doc.ID)
	if err != nil {
		return nil, err
	}
	ops, err := l.batchStore.ListBatchOperations(ctx, doc.ID)
	if err != nil {
		return nil, err
	}
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
	return buildRun(doc, rev.Definition, ends, ops, running)
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
	rebuild := false
	switch n.op {
	case "pause":
		if doc.State != store.RunRunning {
			return batchOpReply{run: doc, err: fmt.Errorf("batch run %s is %s: %w", id, doc.State, errBatchState)}
		}
		doc.State = store.RunPaused
	case "resume":
		if doc.State != store.RunPaused {
			return batchOpReply{run: doc, err: fmt.Errorf("batch run %s is %s, not paused: %w", id, doc.State, errBatchState)}
		}
		doc.State = store.RunRunning
	case "stop":
		if doc.State != store.RunRunning && doc.State != store.RunPaused {
			return batchOpReply{run: doc, err: fmt.Errorf("batch run %s is %s: %w", id, doc.State, errBatchState)}
		}
		doc.State, doc.Reason = store.RunStopping, "stopped by "+n.who
	case "rerun":
		if doc.State == store.RunStopping || doc.State == store.RunSucceeded {
			return batchOpReply{run: doc, err: fmt.Errorf("batch run %s is %s: nothing to rerun: %w", id, doc.State, errBatchState)}
		}
		doc.State, doc.Round, doc.Reason, doc.EndedAt, rebuild = store.RunRunning, doc.Round+1, "", time.Time{}, true
	case "reset":
		if n := underway(run); n > 0 {
			return batchOpReply{run: doc, err: fmt.Errorf("batch run %s has %d executions under way: stop it first: %w", id, n, errBatchState)}
		}
		// Every node back to not started; the run waits for a resume.
		doc.Round++
		doc.State, doc.ResetRound, doc.Reason, doc.EndedAt, rebuild = store.RunPaused, doc.Round, "", time.Time{}, true
	case "skip":
		if st, _ := run.wf.State(n.node); st == "" {
			return batchOpReply{run: doc, err: fmt.Errorf("batch run %s has no node %q: %w", id, n.node, store.ErrNotFound)}
		}
		if doc.State == store.RunStopping {
			return batchOpReply{run: doc, err: fmt.Errorf("batch run %s is %s: %w", id, doc.State, errBatchState)}
		}
		if err := run.wf.MarkSucceeded(n.node, "by "+n.who); err != nil {
			return batchOpReply{run: doc, err: fmt.Errorf("%w: %w", err, errBatchState)}
		}
		if !doc.State.Open() {
			doc.State, doc.Reason, doc.EndedAt = store.RunRunning, "", time.Time{}
		}
	default:
		return batchOpReply{err: fmt.Errorf("unknown batch operation %q", n.op)}
	}
	op := store.BatchOperation{ID: doc.ID + "#" + uuid.NewString(), Run: doc.ID, Op: n.op, Node: n.node, Round: doc.Round, Who: n.who, Why: n.why, At: l.now()}
	sctx, cancel := storeCtx(ctx)
	defer cancel()
	if err := l.batchStore.InsertBatchOperation(sctx, op); err != nil {
		l.undoMark(run, n)
		return batchOpReply{run: run.doc, err: err}
	}
	if err := l.batchStore.SaveBatchRun(sctx, doc); err != nil {
		l.undoMark(run, n)
		return batchOpReply{run: run.doc, err: err}
	}
	run.doc = doc
	l.runs[doc.ID] = run
	switch {
	case n.op == "skip":
		run.marks[n.node] = markReason(op)
	case n.op == "stop":
		for id, s := range run.dispatched {
			if s.waiting { // never fired: it just stops waiting
				delete(run.dispatched, id)
				continue
			}
			l.stopOpen(id, "batch run "+doc.ID+" stopped by "+n.who)
		}
		run.toFire = nil
	case rebuild:
		if n.op == "reset" {
			clear(run.marks)
			clear(run.ends)
			clear(run.dispatched) // only slots waiting at the gate, never fired
		}
		l.rebuildRun(run)
	}
	l.logger.Info("batch operation", "run", doc.ID, "op", n.op, "node", n.node, "who", n.who, "state", doc.State, "round", doc.Round)
	l.advance(run)
	l.finishIfDone(run)
	return batchOpReply{run: run.doc}
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

// undoMark takes back a mark the store did not record.
func (l *leader) undoMark(run *batchRun, n batchOpNote) {
	if n.op == "skip" {
		l.rebuildRun(run)
	}
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
	var ops []store.BatchOperation
	for node, why := range run.marks {
		ops = append(ops, store.BatchOperation{Op: "skip", Node: node, Round: run.doc.Round, Who: "", Why: why})
	}
	var running []job.Execution
	for id, s := range run.dispatched {
		running = append(running, job.Execution{ID: id, BatchRun: s.run, BatchNode: s.node, BatchPartition: s.partition, BatchRound: s.round})
	}
	next, err := buildRun(run.doc, run.def, ends, ops, running)
	if err != nil {
		l.logger.Error("batch: cannot rebuild a run", "run", run.doc.ID, "err", err)
		return
	}
	for id, s := range run.dispatched { // keep what this term knows of them (when fired, unknown ends)
		next.dispatched[id] = s
	}
	next.marks = run.marks // the reasons as recorded
	*run = *next
}

// followRun returns the run the loop follows, or loads a closed one from the store (to rerun it, or mark
// a node of it).
func (l *leader) followRun(ctx context.Context, id string) (*batchRun, error) {
	if run, ok := l.runs[id]; ok {
		return run, nil
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
		for k := range n.params {
			if _, has := e.spec.Params[k]; has && !slices.Contains(e.spec.Overridable, k) {
				return batchOpReply{err: fmt.Errorf("%w: param %s: job %s (node %s) does not let a firing change it (overridable)", errBadRequest, k, node.Job, node.Name)}
			}
		}
	}
	if err := l.checkRunResources(b.Definition); err != nil {
		return batchOpReply{err: err}
	}
	doc := store.BatchRun{ID: id, Batch: n.batch, Cycle: n.cycle, Frequency: n.frequency, Params: n.params, Version: b.Version,
		State: store.RunRunning, Round: 1, StartedAt: l.now().UTC().Truncate(time.Millisecond), By: n.who, Trigger: cmp.Or(n.trigger, "api"), Epoch: l.epoch}
	sctx, cancel = storeCtx(ctx)
	err = l.batchStore.CreateBatchRun(sctx, doc)
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
	run, err := buildRun(doc, b.Definition, nil, nil, nil)
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

// gateStatus says what the run's slots waiting at the gate wait for.
func (l *leader) gateStatus(run *batchRun, st *api.BatchRunStatus) {
	for _, s := range l.gate.waiting {
		if s.run != run.doc.ID || run.dispatched[s.id] != s || len(st.Waiting) >= 1000 {
			continue
		}
		n, _ := run.def.Node(s.node)
		st.Waiting = append(st.Waiting, s.id+" waits for "+l.gate.describe(holdingOf(n)))
	}
}

// flushBatchWrites hands the writes the loop made to a goroutine, one batch at a time, in order: ends
// in one insert, then the runs' states.
func (l *leader) flushBatchWrites(ctx context.Context) {
	if l.batchWriting || len(l.batchWrites) == 0 || l.batchStore == nil {
		return
	}
	writes := l.batchWrites
	l.batchWrites = nil
	l.batchWriting = true
	go func() {
		var failed []batchWrite
		var ends []store.BatchEnd
		for _, w := range writes {
			if w.end != nil {
				ends = append(ends, *w.end)
			}
		}
		sctx, cancel := storeCtx(ctx)
		if err := l.batchStore.InsertBatchEnds(sctx, ends); err != nil {
			l.logger.Warn("batch: recording ends failed; will retry", "ends", len(ends), "err", err)
			failed = writes // the runs' states wait behind their ends
		} else {
			for _, w := range writes {
				if w.run == nil {
					continue
				}
				err := l.batchStore.SaveBatchRun(sctx, *w.run)
				switch {
				case errors.Is(err, store.ErrFenced):
					l.logger.Warn("batch: a newer term owns the run", "run", w.run.ID)
				case err != nil:
					l.logger.Warn("batch: saving a run failed; will retry", "run", w.run.ID, "err", err)
					failed = append(failed, w)
				}
			}
		}
		cancel()
		if len(failed) > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
		l.tell(ctx, batchWritten{failed: failed})
	}()
}

// batchCheckEvery is how often the loop looks for batch executions whose end it did not learn.
const batchCheckEvery = 2 * time.Second

// checkBatches asks the store about executions fired for a run that the term no longer follows and
// whose end it did not hear of: a dispatch found already recorded and ended (a first dispatch by an
// earlier term), an end recorded by another term. Those not found at all are fired again.
func (l *leader) checkBatches(ctx context.Context, now time.Time) {
	if l.batchStore == nil || l.batchLooking || now.Sub(l.lastBatchCheck) < batchCheckEvery || len(l.runs) == 0 {
		return
	}
	l.lastBatchCheck = now
	unsaved := map[string]bool{}
	for _, fr := range l.unsaved {
		if fr.batch != nil {
			unsaved[fr.batch.id] = true
		}
	}
	var ids []string
	for _, run := range l.runs {
		for id, s := range run.dispatched {
			_, tracked := l.flights[id]
			_, recording := l.recording[id]
			switch {
			case tracked && !s.unknown, recording, unsaved[id], s.waiting:
			case s.unknown || now.Sub(s.firedAt) > 2*batchCheckEvery:
				ids = append(ids, id)
			}
			if len(ids) >= 500 {
				break
			}
		}
	}
	if len(ids) == 0 {
		return
	}
	l.batchLooking = true
	go func() {
		var n batchLookedUp
		for _, id := range ids {
			sctx, cancel := storeCtx(ctx)
			e, err := l.batchStore.GetExecution(sctx, id)
			cancel()
			switch {
			case errors.Is(err, store.ErrNotFound):
				n.missing = append(n.missing, id)
			case err != nil:
				l.logger.Warn("batch: cannot read an execution", "execution", id, "err", err)
			default:
				n.found = append(n.found, e)
			}
		}
		l.tell(ctx, n)
	}()
}

// applyBatchLookup acts on what the store said (see checkBatches).
func (l *leader) applyBatchLookup(n batchLookedUp) {
	l.batchLooking = false
	now := l.now()
	for _, e := range n.found {
		run := l.runs[e.BatchRun]
		if run == nil || run.dispatched[e.ID] == nil {
			continue
		}
		if e.State.Terminal() {
			if _, tracked := l.flights[e.ID]; tracked {
				continue // its flight ends it
			}
			s := run.dispatched[e.ID]
			delete(run.dispatched, e.ID)
			l.releaseGate(e.ID)
			l.endPartition(run, s, e.State == job.StateSucceeded, e.ID)
			continue
		}
		run.dispatched[e.ID].unknown = false
		l.inherit(e, now) // open, and followed by no one: this term takes it on
	}
	for _, id := range n.missing {
		for _, run := range l.runs {
			s, ok := run.dispatched[id]
			if !ok {
				continue
			}
			_, tracked := l.flights[id]
			_, recording := l.recording[id]
			switch {
			case tracked || recording:
			case run.doc.State == store.RunRunning:
				l.logger.Warn("batch: an execution fired for a run was not recorded; firing it again", "execution", id)
				s.firedAt = now
				l.batchDue = append(l.batchDue, s)
			default: // fired when the run goes on, if it does
				delete(run.dispatched, id)
				run.toFire = append(run.toFire, s)
				l.finishIfDone(run)
			}
		}
	}
}
