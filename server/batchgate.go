package server

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/workflow"
)

// The gate holds batch executions back until the locks and resources their node names are free (the
// design's mutex locks, Control-M's control and quantitative resources). It is the leader's, rebuilt each
// term from what runs: a lock is held by an execution from the moment it is fired until it ends, so every
// terminal transition releases it (the end hook), and a new term counts as held only what is still open,
// which releases the locks of executions that ended under the old one. A node takes all it needs at once
// or nothing, so two nodes cannot each hold what the other waits for. Waiting is first come, first served
// per lock: a lock a waiter could not take is reserved for it against later waiters in the same pass, so
// a stream of shared holders cannot starve an exclusive one.

// holding is what one execution holds.
type holding struct {
	locks     []workflow.Lock
	resources map[string]int
}

type batchGate struct {
	exclusive map[string]string          // lock → its exclusive holder
	shared    map[string]map[string]bool // lock → its shared holders
	used      map[string]int             // resource → units held
	capacity  map[string]int             // resource → capacity (0: unknown, nothing can take it)
	holders   map[string]holding         // execution id → what it holds
	waiting   []*batchSlot               // in the order they came
}

func newBatchGate() *batchGate {
	return &batchGate{exclusive: map[string]string{}, shared: map[string]map[string]bool{}, used: map[string]int{},
		capacity: map[string]int{}, holders: map[string]holding{}}
}

// needs reports whether a node takes anything at the gate.
func needs(n workflow.Node) bool { return len(n.Locks) > 0 || len(n.Resources) > 0 }

// free reports whether id could take h now, given the locks and resources reserved by earlier waiters.
func (g *batchGate) free(h holding, reserved map[string]bool) bool {
	for _, l := range h.locks {
		if reserved["lock:"+l.Name] || g.exclusive[l.Name] != "" || !l.Shared && len(g.shared[l.Name]) > 0 {
			return false
		}
	}
	for r, units := range h.resources {
		if reserved["resource:"+r] || g.used[r]+units > g.capacity[r] {
			return false
		}
	}
	return true
}

// fits reports whether h could ever be taken: no resource asks more than its capacity.
func (g *batchGate) fits(h holding) bool {
	for r, units := range h.resources {
		if units > g.capacity[r] {
			return false
		}
	}
	return true
}

// take records id as holding h, whether it is free or not (a new term counts what runs as held).
func (g *batchGate) take(id string, h holding) {
	if _, ok := g.holders[id]; ok {
		return
	}
	g.holders[id] = h
	for _, l := range h.locks {
		if l.Shared {
			if g.shared[l.Name] == nil {
				g.shared[l.Name] = map[string]bool{}
			}
			g.shared[l.Name][id] = true
		} else {
			g.exclusive[l.Name] = id
		}
	}
	for r, units := range h.resources {
		g.used[r] += units
	}
}

// release gives back what id holds; false if it held nothing.
func (g *batchGate) release(id string) bool {
	h, ok := g.holders[id]
	if !ok {
		return false
	}
	delete(g.holders, id)
	for _, l := range h.locks {
		if l.Shared {
			delete(g.shared[l.Name], id)
			if len(g.shared[l.Name]) == 0 {
				delete(g.shared, l.Name)
			}
		} else if g.exclusive[l.Name] == id {
			delete(g.exclusive, l.Name)
		}
	}
	for r, units := range h.resources {
		if g.used[r] -= units; g.used[r] <= 0 {
			delete(g.used, r)
		}
	}
	return true
}

// reserve marks what h asks for as taken for the rest of a pass.
func reserve(h holding, reserved map[string]bool) {
	for _, l := range h.locks {
		reserved["lock:"+l.Name] = true
	}
	for r := range h.resources {
		reserved["resource:"+r] = true
	}
}

func holdingOf(n workflow.Node) holding {
	return holding{locks: n.Locks, resources: n.Resources}
}

// describe says what a waiting slot waits for, for people.
func (g *batchGate) describe(h holding) string {
	var out []string
	for _, l := range h.locks {
		switch {
		case g.exclusive[l.Name] != "":
			out = append(out, fmt.Sprintf("lock %s (held by %s)", l.Name, g.exclusive[l.Name]))
		case !l.Shared && len(g.shared[l.Name]) > 0:
			out = append(out, fmt.Sprintf("lock %s (shared by %d)", l.Name, len(g.shared[l.Name])))
		}
	}
	for _, r := range slices.Sorted(maps.Keys(h.resources)) {
		if g.used[r]+h.resources[r] > g.capacity[r] {
			out = append(out, fmt.Sprintf("resource %s (%d of %d used, %d asked)", r, g.used[r], g.capacity[r], h.resources[r]))
		}
	}
	if len(out) == 0 {
		return "earlier waiters"
	}
	return fmt.Sprint(out)
}

// gateOrFire passes slots of nodes that take nothing at the gate on to firing, and queues the others.
func (l *leader) gateOrFire(run *batchRun, slots []*batchSlot) {
	for _, s := range slots {
		run.dispatched[s.id] = s
		if n, ok := run.node(s.node); ok && needs(n) {
			s.waiting = true
			l.gate.waiting = append(l.gate.waiting, s)
			continue
		}
		s.due = true
		l.batchDue = append(l.batchDue, s)
	}
	l.openGate()
}

// openGate fires the waiting slots that can take what they need now, in the order they came. It stays
// shut while a run is not taken over yet: what that run's executions hold is not counted.
func (l *leader) openGate() {
	if len(l.unloaded) > 0 {
		return
	}
	reserved := map[string]bool{}
	kept := l.gate.waiting[:0]
	for _, s := range l.gate.waiting {
		run := l.runs[s.run]
		if run == nil || run.dispatched[s.id] != s || !s.waiting {
			continue // ended, stopped, or rebuilt meanwhile
		}
		n, _ := run.node(s.node)
		h := holdingOf(n)
		if run.doc.State != store.RunRunning || !l.gate.free(h, reserved) {
			if run.doc.State == store.RunRunning && l.gate.fits(h) {
				reserve(h, reserved) // one that can never fit (a capacity lowered) keeps nobody out
			}
			kept = append(kept, s)
			continue
		}
		l.gate.take(s.id, h)
		s.waiting = false
		s.due = true
		l.batchDue = append(l.batchDue, s)
	}
	clear(l.gate.waiting[len(kept):])
	l.gate.waiting = kept
}

// releaseGate gives back what an ended execution held, and lets waiters through.
func (l *leader) releaseGate(id string) {
	if l.gate.release(id) {
		l.openGate()
	}
}

// resourcesChanged tells the loop that a resource's capacity changed (PUT /api/v1/resources/{name}).
type resourcesChanged struct{ reply chan error }

// onResourcesChanged reads the capacities again and lets through the waiters that now fit.
func (l *leader) onResourcesChanged(ctx context.Context) error {
	if l.batchStore == nil {
		return nil
	}
	sctx, cancel := storeCtx(ctx)
	defer cancel()
	if err := l.loadResources(sctx); err != nil {
		return err
	}
	l.openGate()
	return nil
}

// checkRunResources refuses a run whose nodes ask for resources that do not exist or could never fit.
func (l *leader) checkRunResources(d workflow.Definition) error {
	for _, n := range d.Nodes {
		for _, r := range slices.Sorted(maps.Keys(n.Resources)) {
			if c := l.gate.capacity[r]; n.Resources[r] > c {
				return fmt.Errorf("%w: batch %s: node %s asks for %d of resource %s, whose capacity is %d (PUT /api/v1/resources/%s)", errBadRequest, d.Name, n.Name, n.Resources[r], r, c, r)
			}
		}
	}
	return nil
}
