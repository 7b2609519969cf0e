package workflow

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

// randomGraph is a graph of n nodes whose edges go forward, with every flag, some partitions and
// frequencies.
func randomGraph(rng *rand.Rand, n int) Definition {
	d := Definition{Name: "g"}
	for i := range n {
		node := Node{Name: fmt.Sprintf("n%d", i), Job: "j"}
		if rng.IntN(3) == 0 {
			node.Partitions = []string{"A", "B", "C"}
		}
		if rng.IntN(6) == 0 {
			node.Frequencies = []string{"M"}
		}
		d.Nodes = append(d.Nodes, node)
	}
	flags := []Flag{OnSuccess, OnSuccess, OnSuccess, OnFailure, OnCompletion, Disabled}
	for to := 1; to < n; to++ {
		for from := range to {
			if rng.IntN(n) < 2 {
				d.Edges = append(d.Edges, Edge{From: d.Nodes[from].Name, To: d.Nodes[to].Name, Flag: flags[rng.IntN(len(flags))]})
			}
		}
	}
	return d
}

// live drives a run the way the leader does, recording what it dispatches and how each partition ends,
// and stops after steps ends: the record a new leader would read.
type live struct {
	run      *Run
	running  map[string]map[string]bool // node → partitions dispatched and not ended
	recorded map[string]map[string]State
	marks    map[string]string
}

func (l *live) dispatchReady() {
	for _, n := range l.run.Ready() {
		if err := l.run.Start(n); err != nil {
			panic(err)
		}
		for _, p := range l.run.Pending(n) {
			if l.running[n] == nil {
				l.running[n] = map[string]bool{}
			}
			l.running[n][p] = true
			if l.recorded[n] == nil {
				l.recorded[n] = map[string]State{}
			}
			l.recorded[n][p] = Running
		}
	}
}

// step ends one running partition, at random; it reports false when nothing runs.
func (l *live) step(rng *rand.Rand) bool {
	var names []string
	for n, ps := range l.running {
		if len(ps) > 0 {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return false
	}
	slices.Sort(names)
	n := names[rng.IntN(len(names))]
	var ps []string
	for p := range l.running[n] {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	p := ps[rng.IntN(len(ps))]
	delete(l.running[n], p)
	ok := rng.IntN(4) != 0
	l.recorded[n][p] = map[bool]State{true: Succeeded, false: Failed}[ok]
	if err := l.run.EndPartition(n, p, ok); err != nil {
		panic(err)
	}
	// A person marks some failed node succeeded now and then.
	if s, _ := l.run.State(n); s == Failed && rng.IntN(3) == 0 {
		l.marks[n] = "checked by hand"
		if err := l.run.MarkSucceeded(n, "checked by hand"); err != nil {
			panic(err)
		}
	}
	l.dispatchReady()
	return true
}

// frontier is what a run has left to dispatch: ready nodes, and running nodes' partitions not dispatched.
func frontier(r *Run, dispatched map[string]map[string]State) (ready []string, undispatched []string) {
	ready = r.Ready()
	slices.Sort(ready)
	for _, st := range r.Status() {
		if st.State != Running {
			continue
		}
		for _, p := range r.Pending(st.Name) {
			if _, ok := dispatched[st.Name][p]; !ok {
				undispatched = append(undispatched, st.Name+"/"+p)
			}
		}
	}
	return ready, undispatched
}

// A run restored from its record at any point, by a new leader, is the run that was live: every node in
// the same state with the same partitions, nothing to dispatch that was dispatched, and what was ready
// ready again. And a restore that keeps only what succeeded (and what still runs) is a rerun from the
// point of failure.
func TestARunRestoredFromItsRecordIsTheLiveRun(t *testing.T) {
	for seed := range uint64(2000) {
		rng := rand.New(rand.NewPCG(seed, 7))
		d := randomGraph(rng, 2+rng.IntN(14))
		freq := []string{"D", "M"}[rng.IntN(2)]
		r, err := NewRun(d, freq)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		l := &live{run: r, running: map[string]map[string]bool{}, recorded: map[string]map[string]State{}, marks: map[string]string{}}
		l.dispatchReady()
		for stop := rng.IntN(30); stop > 0 && l.step(rng); stop-- {
		}
		got, err := Restore(d, freq, l.marks, l.recorded)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		// (A skipped node's reason names the first rule that skipped it, which may differ by the order the
		// record is replayed in; a skipped node is skipped either way.)
		if want, have := skippedAlike(r.Status()), skippedAlike(got.Status()); !reflect.DeepEqual(want, have) {
			t.Fatalf("seed %d: restored\n%+v\nlive\n%+v", seed, have, want)
		}
		if ready, undispatched := frontier(got, l.recorded); len(ready) > 0 || len(undispatched) > 0 {
			t.Fatalf("seed %d: the restored run would dispatch again %v %v", seed, ready, undispatched)
		}

		// A rerun from failure: keep the partitions that succeeded and those running.
		kept := map[string]map[string]State{}
		for n, ps := range l.recorded {
			for p, s := range ps {
				if s == Succeeded || s == Running {
					if kept[n] == nil {
						kept[n] = map[string]State{}
					}
					kept[n][p] = s
				}
			}
		}
		rerun := r.Rerun()
		restored, err := Restore(d, freq, l.marks, kept)
		if err != nil {
			t.Fatal(err)
		}
		// The restored run starts at once a failed node some of whose partitions succeeded; the rerun
		// leaves it ready, and the leader starts it. Started alike, they must decide alike: states,
		// reasons, and the partitions of running nodes (what is left to dispatch). (The rerun keeps the
		// partition counts of nodes not started again for people; the restored run counts only what it
		// replayed.)
		for k, x := range []*Run{rerun, restored} {
			for _, n := range x.Ready() {
				if err := x.Start(n); err != nil {
					t.Fatalf("seed %d: %s: %v", seed, []string{"rerun", "restored"}[k], err)
				}
			}
		}
		if want, have := decisions(rerun), decisions(restored); !reflect.DeepEqual(want, have) {
			t.Fatalf("seed %d: rerun restored\n%+v\nlive rerun\n%+v", seed, have, want)
		}
	}
}

func skippedAlike(out []NodeStatus) []NodeStatus {
	for i := range out {
		if out[i].State == Skipped {
			out[i].Reason = ""
		}
	}
	return out
}

func decisions(r *Run) []NodeStatus {
	out := skippedAlike(r.Status())
	for i := range out {
		if out[i].State != Running {
			out[i].Partitions, out[i].Failed = nil, nil
		}
	}
	return out
}
