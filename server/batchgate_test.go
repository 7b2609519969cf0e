package server

import (
	"testing"

	"github.com/clover-sched/clover/internal/workflow"
)

// The gate's rules: exclusive excludes all, shared excludes only exclusive, resources count to their
// capacity, all or nothing, and a lock a waiter could not take is kept from later waiters in the same pass.
func TestTheGateHoldsLocksAndResources(t *testing.T) {
	g := newBatchGate()
	g.capacity["db"] = 3
	x := holding{locks: []workflow.Lock{{Name: "ledger"}}}
	sh := holding{locks: []workflow.Lock{{Name: "ledger", Shared: true}}}
	db2 := holding{resources: map[string]int{"db": 2}}
	both := holding{locks: []workflow.Lock{{Name: "other"}}, resources: map[string]int{"db": 2}}
	none := map[string]bool{}

	g.take("s1", sh)
	if !g.free(sh, none) || g.free(x, none) {
		t.Fatal("a shared holder must admit shared and refuse exclusive")
	}
	g.take("s2", sh)
	g.release("s1")
	if g.free(x, none) {
		t.Fatal("one shared holder left: exclusive must wait")
	}
	g.release("s2")
	if !g.free(x, none) {
		t.Fatal("no holder: exclusive must pass")
	}
	g.take("x1", x)
	if g.free(sh, none) || g.free(x, none) {
		t.Fatal("an exclusive holder admits nobody")
	}
	g.take("d1", db2)
	if g.free(db2, none) || !g.free(holding{resources: map[string]int{"db": 1}}, none) {
		t.Fatal("2 of 3 used: 2 more must wait, 1 may pass")
	}
	if g.free(both, none) {
		t.Fatal("all or nothing: the lock is free but the units are not")
	}
	reserved := map[string]bool{}
	reserve(x, reserved)
	g.release("x1")
	if g.free(sh, reserved) {
		t.Fatal("a lock an earlier waiter could not take is reserved for it in the pass")
	}
	if !g.release("d1") || g.release("d1") || len(g.used) != 0 || len(g.exclusive) != 0 || len(g.shared) != 0 {
		t.Fatalf("after every release: used %v exclusive %v shared %v", g.used, g.exclusive, g.shared)
	}
}
