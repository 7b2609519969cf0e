package workflow

import (
	"fmt"
	"maps"
	"slices"
)

// State is where a node stands in a run.
type State string

const (
	Waiting   State = "waiting"   // some edges into it are not resolved yet
	Ready     State = "ready"     // it may start: the frontier
	Running   State = "running"   // started; its partitions are under way
	Succeeded State = "succeeded" // every partition succeeded (or a person marked it so)
	Failed    State = "failed"    // it ran, and a partition failed
	Skipped   State = "skipped"   // it did not run (off the frequency, or a failure branch not taken); counts as succeeded after it
	Blocked   State = "blocked"   // it will not run: a node before it failed (or was blocked) where its edge wanted success
)

// Terminal reports whether s is an end: nothing changes it but a rerun or a mark.
func (s State) Terminal() bool {
	return s == Succeeded || s == Failed || s == Skipped || s == Blocked
}

// The state machine of a node (transitions in one place: decide, Start, Fail, EndPartition, MarkSucceeded):
//
//	waiting --(every edge in resolved)--> ready | skipped | blocked
//	ready   --Start-->                   running
//	ready   --Fail-->                    failed (it cannot start: its partitions could not be taken)
//	running --(every partition ended)--> succeeded | failed
//	failed, blocked, ready, waiting --MarkSucceeded--> succeeded
//
// A node that ends resolves the edges out of it; a rerun from failure starts a new Run that keeps what
// succeeded.

type nodeRun struct {
	state  State
	reason string // why it is skipped or blocked, for people
	unmet  int    // edges in that are not resolved yet
	// blocked, notTaken: an edge in resolved against it (a failure before it; a branch not taken).
	blocked  bool
	notTaken string
	parts    map[string]State // its partitions' states once it starts ("" for an unpartitioned node)
}

// Run is one run of a batch, at a frequency.
type Run struct {
	def       Definition
	frequency string
	index     map[string]int // node name → position in def.Nodes
	out       [][]int        // node → its enabled edges out (positions in def.Edges)
	in        [][]int        // node → its enabled edges in
	order     []int          // the nodes in an order where every edge goes forward
	nodes     []nodeRun
	ready     []string         // became ready, in the order they did, not yet taken by Start
	dynamic   map[int][]string // partitions set when the node starts (SetPartitions)
}

// NewRun starts a run of d at frequency: the nodes with no edge in are decided at once.
func NewRun(d Definition, frequency string) (*Run, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	r := &Run{def: d, frequency: frequency, index: map[string]int{}, out: make([][]int, len(d.Nodes)), in: make([][]int, len(d.Nodes)),
		nodes: make([]nodeRun, len(d.Nodes))}
	for i, n := range d.Nodes {
		r.index[n.Name] = i
	}
	for i, e := range d.Edges {
		if e.Flag == Disabled {
			continue
		}
		from, to := r.index[e.From], r.index[e.To]
		r.out[from] = append(r.out[from], i)
		r.in[to] = append(r.in[to], i)
	}
	r.order = r.topological()
	r.reevaluate(r.order)
	return r, nil
}

// reevaluate puts the nodes of set (in graph order) back to waiting and decides each as far as the nodes
// before it allow: an edge from a node that has ended is resolved at once, one from a node that has not
// is counted. Deciding one may decide others after it, as any end does.
func (r *Run) reevaluate(set []int) {
	again := map[string]bool{}
	for _, i := range set {
		again[r.def.Nodes[i].Name] = true
	}
	r.ready = slices.DeleteFunc(r.ready, func(name string) bool { return again[name] }) // decided again below
	for _, i := range set {
		n := &r.nodes[i]
		*n = nodeRun{state: Waiting, parts: n.parts}
		for _, ei := range r.in[i] {
			e := r.def.Edges[ei]
			p := r.index[e.From]
			if s := r.nodes[p].state; s.Terminal() {
				r.resolve(e, s, n)
			} else {
				n.unmet++
			}
		}
	}
	for _, i := range set {
		if r.nodes[i].state == Waiting && r.nodes[i].unmet == 0 {
			r.decide(i)
		}
	}
}

// resolve applies to node m what edge e says of its node before, ended in state s.
func (r *Run) resolve(e Edge, s State, m *nodeRun) {
	switch flag := e.Flag; {
	case s == Blocked:
		m.blocked = true
	case flag == OnFailure && s == Failed, flag == OnCompletion, (flag == "" || flag == OnSuccess) && (s == Succeeded || s == Skipped):
		// satisfied
	case s == Failed:
		m.blocked = true // it wanted success
	default:
		m.notTaken = fmt.Sprintf("%s did not fail", e.From) // a failure branch, not taken
	}
}

// decide settles node i once every edge into it is resolved.
func (r *Run) decide(i int) {
	n := &r.nodes[i]
	node := r.def.Nodes[i]
	switch {
	case n.blocked:
		r.end(i, Blocked, "a node before it did not end as its edge asks")
	case n.notTaken != "":
		r.end(i, Skipped, n.notTaken)
	case len(node.Frequencies) > 0 && !slices.Contains(node.Frequencies, r.frequency):
		r.end(i, Skipped, fmt.Sprintf("not on frequency %q", r.frequency))
	default:
		n.state = Ready
		r.ready = append(r.ready, node.Name)
	}
}

// end puts node i in a terminal state and resolves the edges out of it.
func (r *Run) end(i int, s State, reason string) {
	r.nodes[i].state, r.nodes[i].reason = s, reason
	for _, ei := range r.out[i] {
		e := r.def.Edges[ei]
		j := r.index[e.To]
		m := &r.nodes[j]
		if m.state != Waiting {
			continue // decided already (it ran on an earlier branch, or was kept by a rerun)
		}
		r.resolve(e, s, m)
		if m.unmet--; m.unmet == 0 {
			r.decide(j)
		}
	}
}

// Ready returns the nodes that became ready since the last call, in the order they did: the frontier to
// dispatch. Each is returned once.
func (r *Run) Ready() []string {
	out := r.ready
	r.ready = nil
	return out
}

// Start starts a ready node: its partitions (or the node itself) are under way.
func (r *Run) Start(name string) error {
	i, n, err := r.node(name)
	if err != nil {
		return err
	}
	if n.state != Ready {
		return fmt.Errorf("batch %s: node %s is %s, not ready", r.def.Name, name, n.state)
	}
	n.state = Running
	if n.parts == nil {
		n.parts = map[string]State{}
		for _, p := range r.partitions(i) {
			n.parts[p] = Running
		}
	} else {
		for p, s := range n.parts {
			if s != Succeeded {
				n.parts[p] = Running // a rerun runs again only what did not succeed
			}
		}
	}
	return nil
}

// partitions of node i: its items, or the one unnamed partition.
func (r *Run) partitions(i int) []string {
	if p := r.dynamic[i]; len(p) > 0 {
		return p
	}
	if p := r.def.Nodes[i].Partitions; len(p) > 0 {
		return p
	}
	return []string{""}
}

// SetPartitions gives a node whose partitions come from elsewhere (Node.PartitionsFrom) its partitions;
// only before it starts.
func (r *Run) SetPartitions(name string, parts []string) error {
	i, n, err := r.node(name)
	if err != nil {
		return err
	}
	if n.state == Running || n.state.Terminal() {
		return fmt.Errorf("batch %s: node %s is %s: its partitions are set", r.def.Name, name, n.state)
	}
	if r.dynamic == nil {
		r.dynamic = map[int][]string{}
	}
	r.dynamic[i] = slices.Clone(parts)
	n.parts = nil
	return nil
}

// Fail ends a ready node as failed without running it (what it needs to start is missing: its
// partitions could not be taken); the nodes after it are decided as after any failure.
func (r *Run) Fail(name, why string) error {
	i, n, err := r.node(name)
	if err != nil {
		return err
	}
	if n.state != Ready {
		return fmt.Errorf("batch %s: node %s is %s, not ready", r.def.Name, name, n.state)
	}
	r.ready = slices.DeleteFunc(r.ready, func(s string) bool { return s == name })
	r.end(i, Failed, why)
	return nil
}

// EndPartition records how a partition of a running node ended ("" for an unpartitioned node). When the
// last one ends, the node ends (failed if any partition failed) and the nodes after it are decided.
func (r *Run) EndPartition(name, partition string, ok bool) error {
	i, n, err := r.node(name)
	if err != nil {
		return err
	}
	if n.state != Running {
		return fmt.Errorf("batch %s: node %s is %s, not running", r.def.Name, name, n.state)
	}
	s, has := n.parts[partition]
	switch {
	case !has:
		return fmt.Errorf("batch %s: node %s has no partition %q", r.def.Name, name, partition)
	case s != Running:
		return fmt.Errorf("batch %s: node %s partition %q ended already (%s)", r.def.Name, name, partition, s)
	}
	n.parts[partition] = Failed
	if ok {
		n.parts[partition] = Succeeded
	}
	failed := 0
	for _, ps := range n.parts {
		if ps == Running {
			return nil
		}
		if ps == Failed {
			failed++
		}
	}
	if failed > 0 {
		r.end(i, Failed, fmt.Sprintf("%d of %d partitions failed", failed, len(n.parts)))
	} else {
		r.end(i, Succeeded, "")
	}
	return nil
}

// MarkSucceeded ends a node that is not running as succeeded, by a person's decision (the design's "skip
// a node"): the nodes after it are decided as if it had run and succeeded.
func (r *Run) MarkSucceeded(name, why string) error {
	i, n, err := r.node(name)
	if err != nil {
		return err
	}
	switch n.state {
	case Running, Succeeded, Skipped:
		return fmt.Errorf("batch %s: node %s is %s: only a node not running and not done may be marked succeeded", r.def.Name, name, n.state)
	case Ready:
		r.ready = slices.DeleteFunc(r.ready, func(s string) bool { return s == name })
	}
	if n.state.Terminal() {
		// Failed or blocked: its edges out were resolved against what is after it. Those of the nodes after
		// it that did not run because of it are decided again.
		n.state, n.reason = Succeeded, "marked succeeded: "+why
		r.reevaluate(r.notRunAfter(i))
		return nil
	}
	r.end(i, Succeeded, "marked succeeded: "+why)
	return nil
}

// notRunAfter returns, in graph order, the nodes after node i (directly or not) that have not run and are
// not running: waiting, ready, blocked, or skipped as a branch not taken.
func (r *Run) notRunAfter(i int) []int {
	after := map[int]bool{}
	queue := []int{i}
	for len(queue) > 0 {
		k := queue[0]
		queue = queue[1:]
		for _, ei := range r.out[k] {
			j := r.index[r.def.Edges[ei].To]
			if !after[j] {
				after[j] = true
				queue = append(queue, j)
			}
		}
	}
	var out []int
	for _, j := range r.order {
		if after[j] && r.notRun(j) {
			out = append(out, j)
		}
	}
	return out
}

// notRun: node i has not run and is not running, and was not skipped for its frequency.
func (r *Run) notRun(i int) bool {
	switch r.nodes[i].state {
	case Waiting, Ready, Blocked:
		return true
	case Skipped:
		return !r.offFrequency(i)
	}
	return false
}

func (r *Run) offFrequency(i int) bool {
	f := r.def.Nodes[i].Frequencies
	return len(f) > 0 && !slices.Contains(f, r.frequency)
}

// State returns a node's state, and why when it is skipped or blocked.
func (r *Run) State(name string) (State, string) {
	_, n, err := r.node(name)
	if err != nil {
		return "", err.Error()
	}
	return n.state, n.reason
}

// PartitionState returns the state of a node's partition ("" for an unpartitioned node).
func (r *Run) PartitionState(name, partition string) State {
	_, n, err := r.node(name)
	if err != nil || n.parts == nil {
		return Waiting
	}
	return n.parts[partition]
}

// Done reports whether every node has ended.
func (r *Run) Done() bool {
	for _, n := range r.nodes {
		if !n.state.Terminal() {
			return false
		}
	}
	return true
}

// Rerun is a rerun from the point of failure: a new run that keeps every node that succeeded (and every
// partition that did) and every node still running (whose failed partitions are running again, to be
// dispatched by the caller like a started node's); the failed, the blocked, the skipped and what never
// ran are decided again from there. A node off the frequency is skipped again, but only once the nodes
// before it end again: kept skipped, it would let the nodes after it start before those it stands between.
func (r *Run) Rerun() *Run {
	next := &Run{def: r.def, frequency: r.frequency, index: r.index, out: r.out, in: r.in, order: r.order, nodes: make([]nodeRun, len(r.nodes)), dynamic: r.dynamic}
	var again []int
	for _, i := range r.order {
		n := r.nodes[i]
		if n.state == Succeeded {
			next.nodes[i] = nodeRun{state: n.state, reason: n.reason, parts: n.parts}
			continue
		}
		if n.state == Running { // its failed partitions run again now, beside those still running
			parts := maps.Clone(n.parts)
			for p, s := range parts {
				if s == Failed {
					parts[p] = Running
				}
			}
			next.nodes[i] = nodeRun{state: Running, parts: parts}
			continue
		}
		if n.parts != nil { // it ran and a partition failed: those that succeeded are kept
			kept := map[string]State{}
			for p, s := range n.parts {
				kept[p] = Failed
				if s == Succeeded {
					kept[p] = Succeeded
				}
			}
			next.nodes[i].parts = kept
		}
		again = append(again, i)
	}
	next.reevaluate(again)
	return next
}

// topological returns the nodes' positions in an order where every enabled edge goes forward (the
// definition has no cycle: Validate).
func (r *Run) topological() []int {
	in := make([]int, len(r.nodes))
	for i := range r.nodes {
		in[i] = len(r.in[i])
	}
	var queue, order []int
	for i := range r.nodes {
		if in[i] == 0 {
			queue = append(queue, i)
		}
	}
	for len(queue) > 0 {
		i := queue[0]
		queue = queue[1:]
		order = append(order, i)
		for _, ei := range r.out[i] {
			j := r.index[r.def.Edges[ei].To]
			if in[j]--; in[j] == 0 {
				queue = append(queue, j)
			}
		}
	}
	return order
}

func (r *Run) node(name string) (int, *nodeRun, error) {
	i, ok := r.index[name]
	if !ok {
		return 0, nil, fmt.Errorf("batch %s: no node %s", r.def.Name, name)
	}
	return i, &r.nodes[i], nil
}
