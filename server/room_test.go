package server

import (
	"context"
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/wire"
)

// roomHarness is a leader with one client "a" of slots slots and a job j without a schedule, so that
// what it runs is what the test triggers.
func roomHarness(t *testing.T, slots int) *harness {
	fs := newFakeStore(spec("j", "@at 2099-01-01T00:00:00Z", func(s *job.Spec) { s.Overlap = job.OverlapAllow }))
	h := newHarness(t, fs, "a")
	h.clients[0].Capacity = slots
	h.establish()
	return h
}

// triggerAll triggers j n times, a millisecond apart, so that each is a later firing than the one before.
func (h *harness) triggerAll(n int) []*flight {
	h.t.Helper()
	var out []*flight
	for range n {
		id, err := h.l.trigger(context.Background(), "j", nil)
		if err != nil {
			h.t.Fatal(err)
		}
		out = append(out, h.l.flights[id])
		h.now = h.now.Add(time.Millisecond)
	}
	return out
}

func sentDispatch(f *flight) *wire.Dispatch {
	return &wire.Dispatch{ExecID: f.exec.ID, Job: f.exec.Job, Attempt: f.attempt, Run: max(f.run, 1)}
}

// A slot freed by a result goes to the oldest waiting execution at once, not at the next tick: otherwise a
// slot serves at most one short run a tick.
func TestRoomFreedBetweenTicksGoesToTheOldestWaiting(t *testing.T) {
	h := roomHarness(t, 1)
	fs := h.triggerAll(3)
	h.advance(0) // a tick: the two that found no room wait
	if fs[0].phase != phaseDispatched || fs[1].phase != phaseWaiting || fs[2].phase != phaseWaiting {
		t.Fatalf("set-up: phases %s, %s, %s", fs[0].phase, fs[1].phase, fs[2].phase)
	}
	for i := range 2 {
		h.ack("a", sentDispatch(fs[i]))
		h.finish("a", sentDispatch(fs[i]), job.StateSucceeded) // no tick
		if fs[i+1].phase != phaseDispatched || h.lastTo("a").ExecID != fs[i+1].exec.ID {
			t.Fatalf("after run %d ended: the next is %s, the last dispatch %s", i, fs[i+1].phase, h.lastTo("a").ExecID)
		}
		if i == 0 && fs[2].phase != phaseWaiting {
			t.Fatalf("the newest took room that was not there: %s", fs[2].phase)
		}
	}
	if n := len(h.sentTo("a")); n != 3 {
		t.Fatalf("%d dispatches, want 3", n)
	}
}

// A leader that cannot confirm its term hands out no room: a deposed leader must not dispatch.
func TestRoomFreedIsNotOfferedByAnUnconfirmedLeader(t *testing.T) {
	h := roomHarness(t, 1)
	fs := h.triggerAll(2)
	h.advance(0)
	h.ack("a", sentDispatch(fs[0]))
	h.healthy = false
	h.finish("a", sentDispatch(fs[0]), job.StateSucceeded)
	if fs[1].phase != phaseWaiting || len(h.sentTo("a")) != 1 {
		t.Fatalf("an unconfirmed leader dispatched: %s, %d sent", fs[1].phase, len(h.sentTo("a")))
	}
}

// An execution that waited past the misfire threshold is left to the tick, which applies its job's misfire
// policy; the room goes to the next one.
func TestRoomFreedSkipsWhatTheMisfirePolicyDecides(t *testing.T) {
	fs := newFakeStore(spec("s", "@every 1s", func(s *job.Spec) { s.Overlap = job.OverlapAllow }))
	h := newHarness(t, fs, "a")
	h.clients[0].Capacity = 1
	h.establish()
	h.advance(time.Second) // t0+1s: dispatched, and runs
	first := h.l.flights[job.ExecutionID("s", t0.Add(time.Second))]
	if first == nil || first.phase != phaseDispatched {
		t.Fatalf("set-up: %v", first)
	}
	h.ack("a", sentDispatch(first))
	h.advance(time.Second) // t0+2s: waits
	late := h.l.flights[job.ExecutionID("s", t0.Add(2*time.Second))]
	if late == nil || late.phase != phaseWaiting {
		t.Fatalf("set-up: %v", late)
	}
	h.now = h.now.Add(h.l.cfg.MisfireThreshold + time.Second) // no tick: late is stale now
	h.heartbeat("a", first.exec.ID)                           // first still holds its slot, until its end
	h.finish("a", sentDispatch(first), job.StateSucceeded)
	if late.phase != phaseWaiting || len(h.sentTo("a")) != 1 {
		t.Fatalf("a stale execution was dispatched between ticks: %s, %d sent", late.phase, len(h.sentTo("a")))
	}
}

// A client that refuses as busy holds more than the leader counts: its refusal frees nothing, and nothing
// more is sent to it before the next count, rather than one refusal after another.
func TestABusyRefusalFreesNoRoom(t *testing.T) {
	h := roomHarness(t, 2)
	fs := h.triggerAll(5)
	h.advance(0)
	if n := len(h.sentTo("a")); n != 2 {
		t.Fatalf("set-up: %d sent, want 2", n)
	}
	h.l.onAck(&wire.Ack{Header: wire.Header{From: "a"}, ExecID: fs[0].exec.ID, Job: "j", Attempt: fs[0].attempt, Run: 1, Code: wire.RefuseBusy})
	h.l.offerFreedRoom() // as the loop does after the note
	if n := len(h.sentTo("a")); n != 2 {
		t.Fatalf("%d sent after a busy refusal, want still 2", n)
	}
	// A later result gives room back, but not to the client that said it is full, until the next count.
	h.ack("a", sentDispatch(fs[1]))
	h.finish("a", sentDispatch(fs[1]), job.StateSucceeded)
	if n := len(h.sentTo("a")); n != 2 {
		t.Fatalf("%d sent to a busy client before the next count, want still 2", n)
	}
	h.advance(0) // the count: a has room again
	if n := len(h.sentTo("a")); n != 4 {
		t.Fatalf("%d sent after the next count, want 4", n)
	}
}

// Executions no client with room may take (their job is pinned to a full client) do not keep the room a
// result frees from the executions of other jobs behind them, however many there are.
func TestRoomFreedPassesOverAJobPinnedToAFullClient(t *testing.T) {
	fs := newFakeStore(
		spec("p", "@at 2099-01-01T00:00:00Z", func(s *job.Spec) { s.Overlap, s.Routing.Clients = job.OverlapAllow, []string{"a"} }),
		spec("q", "@at 2099-01-01T00:00:00Z", func(s *job.Spec) { s.Overlap = job.OverlapAllow }),
	)
	h := newHarness(t, fs, "a", "b")
	h.clients[0].Capacity, h.clients[1].Capacity = 1, 1
	h.establish()
	trigger := func(name string) *flight {
		id, err := h.l.trigger(context.Background(), name, nil)
		if err != nil {
			t.Fatal(err)
		}
		h.now = h.now.Add(time.Millisecond)
		return h.l.flights[id]
	}
	var ps []*flight
	for range 2*maxRoomMisses + 8 {
		ps = append(ps, trigger("p"))
	}
	q1, q2 := trigger("q"), trigger("q")
	h.advance(0)
	if ps[0].phase != phaseDispatched || q1.phase != phaseDispatched || q2.phase != phaseWaiting || ps[1].phase != phaseWaiting {
		t.Fatalf("set-up: p0 %s, p1 %s, q1 %s (on %s), q2 %s", ps[0].phase, ps[1].phase, q1.phase, q1.client, q2.phase)
	}
	h.ack(q1.client, sentDispatch(q1))
	h.finish(q1.client, sentDispatch(q1), job.StateSucceeded)
	if q2.phase != phaseDispatched || q2.client != "b" {
		t.Fatalf("the room b freed did not go to q's next: %s on %q", q2.phase, q2.client)
	}
}

// Room that the count made as firings are recorded finds goes first to what waited before them, then to
// them: oldest first, whichever way the room is found.
func TestRoomACountFindsGoesToWhatWaitedBeforeFreshFirings(t *testing.T) {
	h := roomHarness(t, 1)
	fs := h.triggerAll(2)
	h.advance(0) // the second waits
	h.now = h.now.Add(unansweredHold + time.Millisecond)
	// No tick: the first's dispatch, unanswered, holds its slot no more, which the next recording's count
	// finds.
	fresh := h.triggerAll(1)[0]
	if fs[1].phase != phaseDispatched || fresh.phase != phaseWaiting {
		t.Fatalf("the older waiting execution is %s, the fresh firing %s", fs[1].phase, fresh.phase)
	}
}
