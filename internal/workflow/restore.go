package workflow

import (
	"maps"
	"slices"
)

// Restore rebuilds a run from what was recorded of it, the way a new leader takes a run over: marks are
// the nodes a person marked succeeded (node → why), recorded the partitions known to be under way
// (Running) or ended (Succeeded, Failed), by node. The rules are replayed from the start: a node that
// becomes ready and has a partition recorded is started, its ended partitions ended, and so on; a ready
// node with nothing recorded is left ready, and a started node's partitions with nothing recorded are left
// running: both are what the caller has to dispatch. Records of nodes that never become ready (a rerun
// decided them again) are ignored, as are records naming a node or partition the definition lacks.
//
// What the caller records decides what a rerun keeps: passing only the partitions that succeeded (in any
// round) and those of the current round is a rerun from the point of failure; passing nothing from before
// a reset is the reset.
func Restore(d Definition, frequency string, marks map[string]string, recorded map[string]map[string]State) (*Run, error) {
	return RestoreWith(d, frequency, marks, recorded, nil)
}

// RestoreWith is Restore for a run some of whose nodes have their partitions from elsewhere (partitions:
// node → its list, as SetPartitions would have set it).
func RestoreWith(d Definition, frequency string, marks map[string]string, recorded map[string]map[string]State, partitions map[string][]string) (*Run, error) {
	r, err := NewRun(d, frequency)
	if err != nil {
		return nil, err
	}
	for name, parts := range partitions {
		if i, ok := r.index[name]; ok {
			if r.dynamic == nil {
				r.dynamic = map[int][]string{}
			}
			r.dynamic[i] = slices.Clone(parts)
		}
	}
	// A node whose every partition succeeded stays succeeded, and one with a partition under way stays
	// running, whatever runs again before it (a rerun keeps both); the others are decided again from there.
	var again []int
	for _, i := range r.order {
		rec, parts := recorded[d.Nodes[i].Name], r.partitions(i)
		done, under := len(rec) > 0, false
		for _, p := range parts {
			done = done && rec[p] == Succeeded
			under = under || rec[p] == Running
		}
		if !done && !under {
			again = append(again, i)
			continue
		}
		kept := make(map[string]State, len(parts))
		for _, p := range parts {
			kept[p] = Running // not recorded: to dispatch
			if s, ok := rec[p]; ok {
				kept[p] = s
			}
		}
		r.nodes[i] = nodeRun{state: Succeeded, parts: kept}
		r.ready = slices.DeleteFunc(r.ready, func(name string) bool { return name == d.Nodes[i].Name })
		if under {
			r.nodes[i].state = Running
		}
	}
	r.reevaluate(again)
	// A mark is applied where the node stands once the record is replayed up to it: a node that ran
	// keeps its partitions' ends, one that did not is ended at once, as it was when the person marked it.
	var frontier []string
	for {
		ready := r.Ready()
		for _, name := range ready {
			rec := recorded[name]
			_, marked := marks[name]
			switch {
			case len(rec) == 0 && marked:
				_ = r.MarkSucceeded(name, marks[name])
			case len(rec) == 0:
				frontier = append(frontier, name)
			case r.Start(name) == nil:
				for _, p := range slices.Sorted(maps.Keys(rec)) {
					if s := rec[p]; s == Succeeded || s == Failed {
						_ = r.EndPartition(name, p, s == Succeeded) // a partition the node lacks is not its
					}
				}
				if marked {
					// A node is marked only once it ended (or before it started): what a rerun left out
					// of its record had failed.
					for _, p := range r.Pending(name) {
						_ = r.EndPartition(name, p, false)
					}
					_ = r.MarkSucceeded(name, marks[name])
				}
			}
		}
		if len(ready) > 0 {
			continue
		}
		applied := false
		for _, name := range slices.Sorted(maps.Keys(marks)) {
			if s, _ := r.State(name); s == Failed || s == Blocked || s == Waiting {
				applied = r.MarkSucceeded(name, marks[name]) == nil || applied
			}
		}
		if !applied {
			break
		}
	}
	// A mark may have decided a frontier node again (and made it ready again, or not).
	seen := map[string]bool{}
	r.ready = slices.DeleteFunc(frontier, func(name string) bool {
		s, _ := r.State(name)
		drop := seen[name] || s != Ready
		seen[name] = true
		return drop
	})
	return r, nil
}

// Partitions returns a node's partitions ("" alone for an unpartitioned node), nil for an unknown node.
func (r *Run) Partitions(name string) []string {
	i, ok := r.index[name]
	if !ok {
		return nil
	}
	return r.partitions(i)
}

// Pending returns a running node's partitions that are still running, in the definition's order.
func (r *Run) Pending(name string) []string {
	i, n, err := r.node(name)
	if err != nil || n.state != Running {
		return nil
	}
	var out []string
	for _, p := range r.partitions(i) {
		if n.parts[p] == Running {
			out = append(out, p)
		}
	}
	return out
}

// NodeStatus is one node's place in a run, for people.
type NodeStatus struct {
	Name   string `json:"name"`
	Job    string `json:"job"`
	Group  string `json:"group,omitempty"`
	State  State  `json:"state"`
	Reason string `json:"reason,omitempty"`
	// Partitions counts the node's partitions by state, once it started (an unpartitioned node has one).
	Partitions map[State]int `json:"partitions,omitempty"`
	// Failed names the partitions that failed (at most 100).
	Failed []string `json:"failed,omitempty"`
}

// Status returns every node's status, in the definition's order.
func (r *Run) Status() []NodeStatus {
	out := make([]NodeStatus, len(r.nodes))
	for i, n := range r.nodes {
		node := r.def.Nodes[i]
		st := NodeStatus{Name: node.Name, Job: node.Job, Group: node.Group, State: n.state, Reason: n.reason}
		if n.parts != nil {
			st.Partitions = map[State]int{}
			for _, p := range r.partitions(i) {
				s := n.parts[p]
				st.Partitions[s]++
				if s == Failed && len(st.Failed) < 100 {
					st.Failed = append(st.Failed, p)
				}
			}
		}
		out[i] = st
	}
	return out
}

// Failed reports whether some node failed or was blocked (and was not marked succeeded).
func (r *Run) Failed() bool {
	for _, n := range r.nodes {
		if n.state == Failed || n.state == Blocked {
			return true
		}
	}
	return false
}

// Definition returns the definition the run runs.
func (r *Run) Definition() Definition { return r.def }
