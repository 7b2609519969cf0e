package server

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/registry"
	"github.com/clover-sched/clover/internal/wire"
)

// The execution lifecycle, one transition per case: a flight is brought to a phase through the loop's own
// handlers, one event is applied, and the phase it ends in is checked ("ended": no longer followed). The
// diagram in docs/design.md is this table.
func TestLifecycleTransitions(t *testing.T) {
	const ended = phase(255) // not followed any more
	type setup func(h *harness) *flight
	// A manual trigger of job j (no schedule of its own), with clients a and b.
	fired := func(h *harness) *flight {
		id, err := h.l.trigger(context.Background(), "j", nil)
		if err != nil {
			h.t.Fatal(err)
		}
		return h.l.flights[id]
	}
	sentTo := func(f *flight) *wire.Dispatch {
		return &wire.Dispatch{ExecID: f.exec.ID, Job: f.exec.Job, Attempt: f.attempt, Run: f.run}
	}
	dispatched := fired
	waiting := func(h *harness) *flight { h.down["a"], h.down["b"] = true, true; return fired(h) }
	running := func(h *harness) *flight { f := fired(h); h.ack(f.client, sentTo(f)); return f }
	reporting := func(h *harness) *flight {
		f := running(h)
		h.l.onResult(&wire.Result{Header: wire.Header{From: f.client}, ExecID: f.exec.ID, Job: "j", Attempt: f.attempt, Run: 1,
			Result: job.Result{Status: job.StateFailed, ExitCode: 1}})
		return f
	}
	retrying := func(h *harness) *flight { f := reporting(h); h.l.recorded(f.exec.ID, 1); return f }
	orphaned := func(h *harness) *flight {
		f := running(h)
		h.l.lose(f, "test: its client vanished")
		return f
	}
	queued := func(h *harness) *flight { running(h); return fired(h) }

	leaves := func(h *harness, f *flight) { // its client leaves; the dispatch can no longer be started
		h.clients = slices.DeleteFunc(h.clients, func(m registry.Member) bool { return m.ID == f.client })
		h.dirty = true
		h.advance(h.l.cfg.AcceptWindow + 2*h.l.cfg.AckTimeout)
	}
	timesOut := func(h *harness, f *flight) { // it runs on, listed by its client, past its timeout
		client := f.client
		for range 3 * h.l.cfg.TimeoutGrace / time.Second {
			if g, ok := h.l.flights[f.exec.ID]; !ok || g.phase != phaseRunning {
				return
			}
			h.heartbeat(client, f.exec.ID)
			h.advance(time.Second)
		}
	}
	storeSays := func(state job.State, run int) func(h *harness, f *flight) {
		return func(h *harness, f *flight) {
			h.l.applyReconciled(reconciledNote{execs: []job.Execution{{ID: f.exec.ID, Job: "j", State: state, Run: run, Client: "a"}}})
		}
	}
	for name, tc := range map[string]struct {
		overlap    string
		rerunnable bool
		timeout    time.Duration
		from       setup
		want       phase // after setup
		event      func(h *harness, f *flight)
		then       phase
	}{
		"fired with no client: waiting": {from: waiting, want: phaseWaiting, event: func(h *harness, f *flight) {}, then: phaseWaiting},
		"waiting, a client frees: dispatched": {from: waiting, want: phaseWaiting, event: func(h *harness, f *flight) {
			h.down["a"], h.down["b"] = false, false
			h.advance(time.Second)
		}, then: phaseDispatched},
		"dispatched, acked: running":                {from: dispatched, want: phaseDispatched, event: func(h *harness, f *flight) { h.ack(f.client, sentTo(f)) }, then: phaseRunning},
		"dispatched, listed by its client: running": {from: dispatched, want: phaseDispatched, event: func(h *harness, f *flight) { h.heartbeat(f.client, f.exec.ID) }, then: phaseRunning},
		"dispatched, refused: waiting": {from: dispatched, want: phaseDispatched, event: func(h *harness, f *flight) {
			h.l.onAck(&wire.Ack{Header: wire.Header{From: f.client}, ExecID: f.exec.ID, Job: "j", Attempt: f.attempt, Run: 1, Code: wire.RefuseBusy})
		}, then: phaseWaiting},
		"dispatched, result: reporting": {from: dispatched, want: phaseDispatched, event: func(h *harness, f *flight) {
			h.l.onResult(&wire.Result{Header: wire.Header{From: f.client}, ExecID: f.exec.ID, Job: "j", Attempt: f.attempt, Run: 1, Result: job.Result{Status: job.StateSucceeded}})
		}, then: phaseReporting},
		"running, result recorded: ended":                    {from: running, want: phaseRunning, event: func(h *harness, f *flight) { h.finish(f.client, sentTo(f), job.StateSucceeded) }, then: ended},
		"running, lost, rerunnable: waiting":                 {rerunnable: true, from: running, want: phaseRunning, event: func(h *harness, f *flight) { h.l.lose(f, "test") }, then: phaseWaiting},
		"running, lost: orphaned":                            {from: running, want: phaseRunning, event: func(h *harness, f *flight) { h.l.lose(f, "test") }, then: phaseOrphaned},
		"running, stopped: running until its client reports": {from: running, want: phaseRunning, event: func(h *harness, f *flight) { h.l.stop(f, "test", true) }, then: phaseRunning},
		"reporting a failure, recorded: retrying":            {from: reporting, want: phaseReporting, event: func(h *harness, f *flight) { h.l.recorded(f.exec.ID, 1) }, then: phaseRetrying},
		"reporting, an old ack: reporting":                   {from: reporting, want: phaseReporting, event: func(h *harness, f *flight) { h.ack(f.client, sentTo(f)) }, then: phaseReporting},
		"retrying, due: dispatched":                          {from: retrying, want: phaseRetrying, event: func(h *harness, f *flight) { h.advance(time.Minute) }, then: phaseDispatched},
		"retrying, the failed run's result again: retrying": {from: retrying, want: phaseRetrying, event: func(h *harness, f *flight) {
			h.l.onResult(&wire.Result{Header: wire.Header{From: f.client}, ExecID: f.exec.ID, Job: "j", Attempt: f.attempt, Run: 1, Result: job.Result{Status: job.StateFailed}})
		}, then: phaseRetrying},
		"retrying, stopped: ended":                {from: retrying, want: phaseRetrying, event: func(h *harness, f *flight) { h.l.stop(f, "test", true) }, then: ended},
		"orphaned, listed by its client: running": {from: orphaned, want: phaseOrphaned, event: func(h *harness, f *flight) { h.heartbeat(f.client, f.exec.ID) }, then: phaseRunning},
		"orphaned, result: reporting": {from: orphaned, want: phaseOrphaned, event: func(h *harness, f *flight) {
			h.l.onResult(&wire.Result{Header: wire.Header{From: f.client}, ExecID: f.exec.ID, Job: "j", Attempt: f.attempt, Run: 1, Result: job.Result{Status: job.StateSucceeded}})
		}, then: phaseReporting},
		"orphaned, marked done: ended": {from: orphaned, want: phaseOrphaned, event: func(h *harness, f *flight) {
			if err := h.l.act(execAction{id: f.exec.ID, action: "done", status: job.StateFailed}); err != nil {
				h.t.Fatal(err)
			}
		}, then: ended},
		"orphaned, rerun by an operator: dispatched": {from: orphaned, want: phaseOrphaned, event: func(h *harness, f *flight) {
			if err := h.l.act(execAction{id: f.exec.ID, action: "rerun"}); err != nil {
				h.t.Fatal(err)
			}
		}, then: phaseDispatched},
		"orphaned, an ack: orphaned until listed": {from: orphaned, want: phaseOrphaned, event: func(h *harness, f *flight) { h.ack(f.client, sentTo(f)) }, then: phaseOrphaned},
		"queued, the one before ends: dispatched": {overlap: job.OverlapQueue, from: queued, want: phaseQueued, event: func(h *harness, f *flight) {
			for _, o := range h.l.openByJob["j"] {
				if o != f {
					h.finish(o.client, sentTo(o), job.StateSucceeded)
				}
			}
		}, then: phaseDispatched},
		"queued, stopped: ended": {overlap: job.OverlapQueue, from: queued, want: phaseQueued, event: func(h *harness, f *flight) { h.l.stop(f, "test", true) }, then: ended},
		"queued, acked (an earlier term released it): running": {overlap: job.OverlapQueue, from: queued, want: phaseQueued, event: func(h *harness, f *flight) {
			h.l.onAck(&wire.Ack{Header: wire.Header{From: "b"}, ExecID: f.exec.ID, Job: "j", Attempt: 1, Run: 1, Accepted: true})
		}, then: phaseRunning},
		"dispatched, its client left, rerunnable: waiting":            {rerunnable: true, from: dispatched, want: phaseDispatched, event: leaves, then: phaseWaiting},
		"dispatched, its client left: orphaned (it may have started)": {from: dispatched, want: phaseDispatched, event: leaves, then: phaseOrphaned},
		"dispatched, the store has its ack: running":                  {from: dispatched, want: phaseDispatched, event: storeSays(job.StateRunning, 1), then: phaseRunning},
		"retrying, a stale store answer that it runs: retrying":       {from: retrying, want: phaseRetrying, event: storeSays(job.StateRunning, 1), then: phaseRetrying},
		"retrying, the store has the retry running: running":          {from: retrying, want: phaseRetrying, event: storeSays(job.StateRunning, 2), then: phaseRunning},
		"running, the store says it ended: ended":                     {from: running, want: phaseRunning, event: storeSays(job.StateSucceeded, 1), then: ended},
		"running, timed out, rerunnable: retrying": {rerunnable: true, timeout: time.Second, from: running, want: phaseRunning, event: func(h *harness, f *flight) {
			timesOut(h, f)
		}, then: phaseRetrying},
		"running, timed out: ended (it may still run)": {timeout: time.Second, from: running, want: phaseRunning, event: func(h *harness, f *flight) {
			timesOut(h, f)
		}, then: ended},
	} {
		t.Run(name, func(t *testing.T) {
			overlap := tc.overlap
			if overlap == "" {
				overlap = job.OverlapAllow
			}
			fs := newFakeStore(spec("j", "@at 2099-01-01T00:00:00Z", func(s *job.Spec) {
				s.Overlap, s.Rerunnable, s.Timeout = overlap, tc.rerunnable, job.Duration(tc.timeout)
				s.Retry = job.Retry{Max: 1, Delay: job.Duration(time.Second)}
			}))
			h := newHarness(t, fs, "a", "b")
			h.establish()
			f := tc.from(h)
			if f == nil || f.phase != tc.want {
				t.Fatalf("set-up: %+v, want phase %s", f, tc.want)
			}
			tc.event(h, f)
			got := ended
			if g, ok := h.l.flights[f.exec.ID]; ok {
				got = g.phase
			}
			if got != tc.then {
				t.Fatalf("phase %s after the event, want %s", got, tc.then)
			}
		})
	}
}

// Every execution that ends, whatever ends it, goes through forget once, and whoever waits on ends (the
// batch engine to come) hears how it ended.
func TestEveryEndIsHeardOnceWithItsOutcome(t *testing.T) {
	fs := newFakeStore(spec("j", "@at 2099-01-01T00:00:00Z", func(s *job.Spec) { s.Overlap = job.OverlapAllow }))
	h := newHarness(t, fs, "a")
	heard := map[string][]job.State{}
	h.l.onEnd = func(e job.Execution, outcome job.State) { heard[e.ID] = append(heard[e.ID], outcome) }
	h.establish()
	fire := func() *flight {
		id, err := h.l.trigger(context.Background(), "j", nil)
		if err != nil {
			t.Fatal(err)
		}
		return h.l.flights[id]
	}
	ok, stopped, done := fire(), fire(), fire()
	h.ack("a", &wire.Dispatch{ExecID: ok.exec.ID, Job: "j", Attempt: ok.attempt, Run: 1})
	h.finish("a", &wire.Dispatch{ExecID: ok.exec.ID, Job: "j", Attempt: ok.attempt, Run: 1}, job.StateSucceeded)
	h.l.stop(stopped, "test", true)
	h.l.lose(done, "test: its client vanished")
	if err := h.l.act(execAction{id: done.exec.ID, action: "done", status: job.StateFailed, note: "test"}); err != nil {
		t.Fatal(err)
	}
	// A stop before the ack ends once its client can no longer start it.
	for range 10 {
		h.advance(time.Second)
	}
	want := map[string][]job.State{
		ok.exec.ID: {job.StateSucceeded}, stopped.exec.ID: {job.StateFailed}, done.exec.ID: {job.StateFailed},
	}
	for id, w := range want {
		if !slices.Equal(heard[id], w) {
			t.Errorf("%s: heard %v, want %v", id, heard[id], w)
		}
	}
	if len(h.l.flights) != 0 {
		t.Fatalf("%d executions still followed", len(h.l.flights))
	}
}
