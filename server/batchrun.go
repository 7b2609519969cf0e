package server

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/workflow"
)

// Batch runs on the leader (design record 22). The loop keeps, per open run, the graph's state machine
// (workflow.Run): an execution's end (forget, the one end-of-execution hook) ends its partition, which
// decides the nodes after it by counts, and the nodes made ready are started and their partitions fired
// through the same path as any firing (recorded off the loop, dispatched by routing, retried, timed out,
// orphaned by the job's rules). Nothing rescans the graph.
//
// What a new leader needs is in the store: the run (its state and round), the end of every partition
// (inserted as each ends), the operations (marks), and the executions themselves, keyed by run, node,
// partition and round, so that dispatching one again meets the first dispatch's key. The run is rebuilt
// from those (workflow.Restore) with the executions still open as running; a partition started and not
// known to have ended is fired again under the same key, and one whose end was lost (recorded in the
// history before its end was) is looked up (checkBatches).

// batchStore is what the leader needs of the store for batches; nil in unit tests (no batches).
type batchStore interface {
	GetBatch(ctx context.Context, name string) (store.Batch, error)
	PutBatch(ctx context.Context, def workflow.Definition, expectVersion int64, who, message string, now time.Time) (store.Batch, error)
	ListBatches(ctx context.Context) ([]store.Batch, error)
	GetBatchRevision(ctx context.Context, name string, v int64) (store.BatchRevision, error)
	CreateBatchRun(ctx context.Context, r store.BatchRun) error
	SaveBatchRun(ctx context.Context, r store.BatchRun) error
	GetBatchRun(ctx context.Context, id string) (store.BatchRun, error)
	ListBatchRuns(ctx context.Context, batch string, open bool, limit int) ([]store.BatchRun, error)
	InsertBatchEnds(ctx context.Context, ends []store.BatchEnd) error
	ListBatchEnds(ctx context.Context, run string) ([]store.BatchEnd, error)
	InsertBatchOperation(ctx context.Context, op store.BatchOperation) error
	ListBatchOperations(ctx context.Context, run string) ([]store.BatchOperation, error)
	GetExecution(ctx context.Context, id string) (job.Execution, error)
	ListResources(ctx context.Context) ([]store.Resource, error)
}

var _ batchStore = (*store.Store)(nil)

// batchSlot is one partition of one node of a run, in one round: what one execution runs.
type batchSlot struct {
	run, node, partition string
	round                int
	id                   string    // its execution's id
	firedAt              time.Time // when this term fired it (zero: inherited)
	unknown              bool      // it ended without this term learning how: the store is asked
	waiting              bool      // it waits at the gate for its node's locks and resources (batchgate.go)
	due                  bool      // it is in batchDue, to be fired at the end of the loop's turn
}

// batchRun is a run the loop follows.
type batchRun struct {
	doc store.BatchRun
	def workflow.Definition
	wf  *workflow.Run
	// ends are the ends that count in the current round, by node and partition (see considered).
	ends map[string]map[string]store.BatchEnd
	// dispatched: the executions fired (or inherited) for the run that have not ended, by id.
	dispatched map[string]*batchSlot
	// toFire: partitions of started nodes not fired yet (the run is paused or stopping).
	toFire []*batchSlot
	// held: the partitions (node, partition) some slot in dispatched or toFire stands for, so that a node
	// started again never gets a second slot for one (queuePending), without a scan of either.
	held map[[2]string]bool
	// index: node name → its place in def.Nodes; sources: the nodes others take their partitions from.
	index   map[string]int
	sources map[string]bool
}

// node returns the node named name, by index (a graph may have tens of thousands).
func (r *batchRun) node(name string) (workflow.Node, bool) {
	i, ok := r.index[name]
	if !ok {
		return workflow.Node{}, false
	}
	return r.def.Nodes[i], true
}

func (r *batchRun) hold(s *batchSlot)   { r.held[[2]string{s.node, s.partition}] = true }
func (r *batchRun) unhold(s *batchSlot) { delete(r.held, [2]string{s.node, s.partition}) }

// considered reports whether end counts in a run at round, reset at resetRound: a success counts in
// every round after it (a rerun does not repeat it), a failure only in its own round (a rerun repeats it),
// and nothing from before a reset.
func considered(end store.BatchEnd, round, resetRound int) bool {
	return end.Round >= resetRound && (end.Succeeded || end.Round == round)
}

// buildRun rebuilds a run from its record: the revision it runs, its ends, its marks (in doc), and the
// executions of it still open (running, by id). The caller fires what it returns in toFire.
func buildRun(doc store.BatchRun, def workflow.Definition, ends []store.BatchEnd, running []job.Execution) (*batchRun, error) {
	run := &batchRun{doc: doc, def: def, ends: map[string]map[string]store.BatchEnd{}, dispatched: map[string]*batchSlot{}, held: map[[2]string]bool{},
		index: make(map[string]int, len(def.Nodes)), sources: map[string]bool{}}
	for i, n := range def.Nodes {
		run.index[n.Name] = i
		if src, ok := strings.CutPrefix(n.PartitionsFrom, "node:"); ok {
			run.sources[src] = true
		}
	}
	reset := max(doc.ResetRound, 1)
	for _, e := range ends {
		if considered(e, doc.Round, reset) {
			run.keepEnd(e)
		}
	}
	recorded := map[string]map[string]workflow.State{}
	set := func(node, part string, s workflow.State) {
		if recorded[node] == nil {
			recorded[node] = map[string]workflow.State{}
		}
		recorded[node][part] = s
	}
	for node, parts := range run.ends {
		for part, e := range parts {
			set(node, part, map[bool]workflow.State{true: workflow.Succeeded, false: workflow.Failed}[e.Succeeded])
		}
	}
	for _, e := range running {
		if e.BatchRound < reset {
			continue
		}
		if end, ok := run.ends[e.BatchNode][e.BatchPartition]; ok && end.Round >= e.BatchRound {
			continue // it ended; its flight is on its way out
		}
		set(e.BatchNode, e.BatchPartition, workflow.Running)
		s := &batchSlot{run: doc.ID, node: e.BatchNode, partition: e.BatchPartition, round: e.BatchRound, id: e.ID}
		run.dispatched[e.ID] = s
		run.hold(s)
	}
	dynamic := map[string][]string{}
	for _, n := range def.Nodes {
		if n.PartitionsFrom != "" {
			if parts, err := resolvePartitions(run, n); err == nil {
				dynamic[n.Name] = parts
			}
		}
	}
	wf, err := workflow.RestoreWith(def, doc.Frequency, doc.Marks, recorded, dynamic)
	if err != nil {
		return nil, fmt.Errorf("batch run %s: %w", doc.ID, err)
	}
	run.wf = wf
	// Started nodes' partitions that nothing runs: fire them (again: the key meets a first dispatch).
	for _, st := range wf.Status() {
		if st.State == workflow.Running {
			run.queuePending(st.Name)
		}
	}
	return run, nil
}

func markReason(who, why string) string {
	if why == "" {
		return "by " + who
	}
	return "by " + who + ": " + why
}

// keepEnd records an end that counts, over an earlier one of the same partition.
func (r *batchRun) keepEnd(e store.BatchEnd) {
	if r.ends[e.Node] == nil {
		r.ends[e.Node] = map[string]store.BatchEnd{}
	}
	if prev, ok := r.ends[e.Node][e.Partition]; !ok || prev.Round <= e.Round {
		r.ends[e.Node][e.Partition] = e
	}
}

// queuePending adds the running node's partitions that nothing runs to toFire.
func (r *batchRun) queuePending(node string) {
	for _, p := range r.wf.Pending(node) {
		if !r.held[[2]string{node, p}] {
			s := &batchSlot{run: r.doc.ID, node: node, partition: p, round: r.doc.Round, id: job.BatchExecutionID(r.doc.ID, node, p, r.doc.Round)}
			r.toFire = append(r.toFire, s)
			r.hold(s)
		}
	}
}

// advance starts the nodes that became ready and fires what they run, while the run is running.
func (l *leader) advance(run *batchRun) {
	if run.doc.State != store.RunRunning {
		return
	}
	for _, name := range run.wf.Ready() {
		if n, ok := run.node(name); ok && n.PartitionsFrom != "" {
			parts, err := resolvePartitions(run, n)
			if err == nil {
				err = run.wf.SetPartitions(name, parts)
			}
			if err != nil {
				l.logger.Warn("batch: a node's partitions could not be taken; it fails", "run", run.doc.ID, "node", name, "err", err)
				_ = run.wf.Fail(name, err.Error())
				l.notifyNode(run, n, "failed", n.Handlers.OnFailure, err.Error())
				continue
			}
		}
		if err := run.wf.Start(name); err != nil {
			l.logger.Error("batch: cannot start a ready node", "run", run.doc.ID, "node", name, "err", err)
			continue
		}
		if n, ok := run.node(name); ok {
			l.notifyNode(run, n, "started", n.Handlers.OnStart, "")
		}
		run.queuePending(name)
	}
	if len(run.toFire) > 0 {
		slots := run.toFire
		run.toFire = nil
		l.gateOrFire(run, slots)
	}
}

// fireBatchDue fires the partitions advance made due, in one plan: their inserts are chunked like any.
func (l *leader) fireBatchDue(ctx context.Context) error {
	if len(l.batchDue) == 0 || l.pipe.busy() {
		return nil // the inserts under way are answered first; scheduled firings take turns with these
	}
	n := min(len(l.batchDue), l.inserts.batch())
	due := l.batchDue[:n:n]
	l.batchDue = l.batchDue[n:]
	now := l.now()
	var firings []firing
	for _, s := range due {
		s.due = false
		run := l.runs[s.run]
		if run == nil || run.dispatched[s.id] != s {
			continue // ended, stopped or rebuilt meanwhile
		}
		if run.doc.State != store.RunRunning {
			// Paused or stopped since it was made due: it was never fired, so it just does not go.
			delete(run.dispatched, s.id)
			l.releaseGate(s.id)
			if run.doc.State == store.RunPaused {
				run.toFire = append(run.toFire, s)
			} else {
				run.unhold(s)
			}
			l.finishIfDone(run)
			continue
		}
		fr, err := l.batchFiring(run, s)
		if err != nil {
			// Nothing can run it: the partition fails, said where people look.
			l.logger.Warn("batch: a partition cannot run", "run", s.run, "node", s.node, "partition", s.partition, "err", err)
			delete(run.dispatched, s.id)
			run.unhold(s)
			l.releaseGate(s.id)
			l.endPartition(run, s, false, "", "")
			continue
		}
		s.firedAt = now
		firings = append(firings, fr)
	}
	return l.fire(ctx, firings, now)
}

// batchFiring is the firing of one slot: its node's job, with the job's parameters, then the node's,
// then the run's (those the job lets a firing change), then the run's context.
func (l *leader) batchFiring(run *batchRun, s *batchSlot) (firing, error) {
	node, ok := run.node(s.node)
	if !ok {
		return firing{}, fmt.Errorf("node %s is not in revision %d of batch %s", s.node, run.doc.Version, run.doc.Batch)
	}
	e, ok := l.jobs[node.Job]
	if !ok {
		return firing{}, fmt.Errorf("job %s does not exist", node.Job)
	}
	spec := e.spec
	if spec.Mode == job.ModeLocal {
		return firing{}, fmt.Errorf("job %s: %w", node.Job, errLocalMode)
	}
	if src := run.def.Source; strings.HasPrefix(src, "client:") && spec.Source != src {
		// Checked when it was declared, and again now: the job may have been taken over since (an API
		// edit, a delete and a new job of the name), and a client's batch never wraps others' jobs.
		return firing{}, fmt.Errorf("batch %s is declared by %s, and job %s is no longer that client's (its source is %s)", run.doc.Batch, src, node.Job, spec.Source)
	}
	// The batch decides when its executions run, and its partitions are its shards.
	spec.Overlap = job.OverlapAllow
	if spec.Routing.Strategy == job.RouteShardBroadcast {
		spec.Routing.Strategy = ""
	}
	params, err := runParams(spec, node, run.doc.Params)
	if err != nil {
		return firing{}, err
	}
	params["batch"], params["batch_cycle"], params["batch_node"] = run.doc.Batch, run.doc.Cycle, s.node
	params["batch_frequency"], params["batch_partition"] = run.doc.Frequency, s.partition
	return firing{spec: spec, at: run.doc.StartedAt, trigger: job.TriggerBatch, params: params, id: s.id, batch: s, labels: node.Labels}, nil
}

// runParams are a node's execution's parameters: the job's, the node's over them (written by the batch's
// author, but never the command: operating a batch never runs a command of one's choice), then the run's
// by the job's rules for a firing (job.Spec.MergeParams: only those it lists as overridable change).
func runParams(spec job.Spec, node workflow.Node, run map[string]string) (map[string]string, error) {
	base := spec
	base.Params = maps.Clone(spec.Params)
	if base.Params == nil {
		base.Params = map[string]string{}
	}
	for k, v := range node.Params {
		if job.SameParam(k, "command") {
			return nil, fmt.Errorf("node %s: params.%s: a batch never sets a job's command", node.Name, k)
		}
		for jk := range base.Params {
			if jk != k && job.SameParam(jk, k) {
				delete(base.Params, jk) // one variable: the node's spelling stands
			}
		}
		base.Params[k] = v
	}
	if node.Group != "" && !slices.ContainsFunc(slices.Collect(maps.Keys(node.Params)), func(k string) bool { return job.SameParam(k, "group") }) {
		for jk := range base.Params {
			if job.SameParam(jk, "group") {
				delete(base.Params, jk)
			}
		}
		base.Params["group"] = node.Group
	}
	merged, err := base.MergeParams(run)
	if err != nil {
		return nil, fmt.Errorf("node %s (job %s): %w", node.Name, spec.Name, err)
	}
	if node.Commands() {
		if spec.Handler != job.HandlerShell {
			return nil, fmt.Errorf("node %s: pre, post and handler commands run around a shell job's command; job %s's handler is %s", node.Name, spec.Name, spec.Handler)
		}
		h := node.Handlers
		for k, v := range map[string]string{"batch_pre": node.Pre, "batch_post": node.Post, "batch_on_start": h.OnStart.Command,
			"batch_on_success": h.OnSuccess.Command, "batch_on_failure": h.OnFailure.Command} {
			if v != "" {
				merged[k] = v
			}
		}
	}
	return merged, nil
}

// batchEnded is told of every execution that ends (forget, recordSkip): a batch's ends its partition.
func (l *leader) batchEnded(e job.Execution, outcome job.State, output string) {
	if e.BatchRun == "" {
		return
	}
	run := l.runs[e.BatchRun]
	if run == nil {
		return
	}
	s, ok := run.dispatched[e.ID]
	if !ok {
		return
	}
	if outcome == "" {
		s.unknown = true // another term or a server recorded it: checkBatches asks the store
		return
	}
	delete(run.dispatched, e.ID)
	run.unhold(s)
	l.releaseGate(e.ID)
	l.endPartition(run, s, outcome == job.StateSucceeded, e.ID, output)
}

// resultOutput is a stored result's output tail, "" without one. A tail that begins inside the line it
// ends with (the output was longer than what is kept) gives "", so that a cut list is never taken for
// a whole one.
func resultOutput(r *job.Result) string {
	if r == nil {
		return ""
	}
	if r.OutputBytes > int64(len(r.Output)) && !strings.Contains(strings.TrimRight(r.Output, "\n\r\t "), "\n") {
		return ""
	}
	return r.Output
}

// lastLine is the last line of output that is not blank, at most 4 KiB of it.
func lastLine(output string) string {
	lines := strings.Split(strings.TrimRight(output, "\n\r\t "), "\n")
	last := strings.TrimSpace(lines[len(lines)-1])
	if len(last) > 4<<10 {
		last = last[len(last)-4<<10:]
	}
	return last
}

// resolvePartitions are the partitions of a node that takes them from elsewhere: the run's parameter, or
// the last line of another node's output (its end in this round, or a success kept from an earlier one).
func resolvePartitions(run *batchRun, n workflow.Node) ([]string, error) {
	kind, name, _ := strings.Cut(n.PartitionsFrom, ":")
	var list string
	switch kind {
	case "param":
		v, ok := run.doc.Params[name]
		if !ok {
			return nil, fmt.Errorf("partitions_from %s: the run has no parameter %s", n.PartitionsFrom, name)
		}
		list = v
	default:
		end, ok := run.ends[name][""]
		if !ok {
			return nil, fmt.Errorf("partitions_from %s: %s has not ended", n.PartitionsFrom, name)
		}
		list = end.Output
	}
	parts, err := workflow.SplitPartitions(list)
	if err != nil {
		return nil, fmt.Errorf("partitions_from %s: %w", n.PartitionsFrom, err)
	}
	return parts, nil
}

// endPartition records how a slot ended and moves the run on.
func (l *leader) endPartition(run *batchRun, s *batchSlot, succeeded bool, execID, output string) {
	end := store.BatchEnd{Run: run.doc.ID, Node: s.node, Partition: s.partition, Round: s.round, Succeeded: succeeded, Execution: execID, At: l.now()}
	if run.sources[s.node] {
		end.Output = lastLine(output)
	}
	l.persistBatchEnd(end)
	if !considered(end, run.doc.Round, max(run.doc.ResetRound, 1)) {
		// An older round's failure ended after a rerun started: the rerun fires the partition again.
		if run.wf.PartitionState(s.node, s.partition) == workflow.Running {
			run.queuePending(s.node)
		}
		l.advance(run)
		l.finishIfDone(run)
		return
	}
	run.keepEnd(end)
	if st := run.wf.PartitionState(s.node, s.partition); st == workflow.Running {
		if err := run.wf.EndPartition(s.node, s.partition, succeeded); err != nil {
			l.logger.Error("batch: cannot end a partition", "run", run.doc.ID, "node", s.node, "partition", s.partition, "err", err)
		}
		if n, ok := run.node(s.node); ok {
			switch st, why := run.wf.State(s.node); st {
			case workflow.Succeeded:
				l.notifyNode(run, n, "succeeded", n.Handlers.OnSuccess, "")
			case workflow.Failed:
				l.notifyNode(run, n, "failed", n.Handlers.OnFailure, why)
			}
		}
	}
	l.advance(run)
	l.finishIfDone(run)
}

// persistBatchEnd records an end on the intake's ordered path: before the close of the execution that
// ended (forget closes it after this), so that the execution leaves the open set only once its batch end
// is recorded.
func (l *leader) persistBatchEnd(end store.BatchEnd) {
	if l.persistBatch != nil {
		l.persistBatch(&end, nil)
	}
}

// persistBatchRun records a run's new state on the same path, after the ends before it.
func (l *leader) persistBatchRun(doc store.BatchRun) {
	if l.persistBatch != nil {
		l.persistBatch(nil, &doc)
	}
}

// maxFinishedKept and maxFinishedWeight bound the finished runs a term keeps in memory (see keepFinished):
// in number, and in nodes and partition ends, so that a few 10,000-node runs are not held for ever.
const (
	maxFinishedKept   = 32
	maxFinishedWeight = 20_000
)

// keepFinished keeps a run that just ended, so that an operation on it (a rerun, a mark) starts from what
// the term knows, not from the store, where its last writes may still be on their way. The oldest go
// first: the store has caught up with them, or their saves are fenced by sequence against a later one.
func (l *leader) keepFinished(run *batchRun) {
	delete(l.finished, run.doc.ID)
	l.finishedOrder = slices.DeleteFunc(l.finishedOrder, func(id string) bool { return id == run.doc.ID })
	l.finished[run.doc.ID] = run
	l.finishedOrder = append(l.finishedOrder, run.doc.ID)
	weight := 0
	for _, id := range l.finishedOrder {
		weight += l.finished[id].weight()
	}
	for len(l.finishedOrder) > 1 && (len(l.finishedOrder) > maxFinishedKept || weight > maxFinishedWeight) {
		oldest := l.finishedOrder[0]
		weight -= l.finished[oldest].weight()
		delete(l.finished, oldest)
		l.finishedOrder = l.finishedOrder[1:]
	}
}

// weight is what a run holds in memory, in nodes and partition ends.
func (r *batchRun) weight() int {
	w := len(r.def.Nodes)
	for _, parts := range r.ends {
		w += len(parts)
	}
	return w
}

// finishIfDone ends the run once nothing runs and nothing can start: stopped, succeeded or failed.
func (l *leader) finishIfDone(run *batchRun) {
	if len(run.dispatched) > 0 {
		return
	}
	doc := run.doc
	switch {
	case doc.State == store.RunStopping:
		doc.State = store.RunStopped
	case !run.wf.Done():
		return
	case run.wf.Failed():
		doc.State, doc.Reason = store.RunFailed, failedNodes(run.wf)
	default:
		doc.State, doc.Reason = store.RunSucceeded, ""
	}
	doc.EndedAt, doc.Epoch = l.now(), l.epoch
	doc.Seq++
	run.doc = doc
	l.persistBatchRun(doc)
	delete(l.runs, doc.ID)
	l.keepFinished(run)
	l.logger.Info("batch run ended", "run", doc.ID, "state", doc.State, "round", doc.Round, "reason", doc.Reason)
}

// failedNodes names the nodes that failed or were blocked, for the run's reason.
func failedNodes(wf *workflow.Run) string {
	var failed, blocked []string
	for _, st := range wf.Status() {
		switch st.State {
		case workflow.Failed:
			failed = append(failed, st.Name)
		case workflow.Blocked:
			blocked = append(blocked, st.Name)
		}
	}
	out := fmt.Sprintf("failed: %v", failed)
	if len(blocked) > 0 {
		out += fmt.Sprintf("; blocked: %v", blocked)
	}
	return out
}
