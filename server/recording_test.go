package server

import (
	"context"
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/wire"
)

// asyncInserts makes h's leader hand its inserts over as a server does; the test makes them (make).
type asyncInserts struct {
	h         *harness
	chunks    []*insertChunk
	failedGen int
}

func withAsyncInserts(h *harness) *asyncInserts {
	a := &asyncInserts{h: h, failedGen: -1}
	h.l.pipe.submit = func(c *insertChunk) { a.chunks = append(a.chunks, c) }
	return a
}

// make makes the oldest insert handed over and hands the loop its answer.
func (a *asyncInserts) make() insertedNote {
	a.h.t.Helper()
	if len(a.chunks) == 0 {
		a.h.t.Fatal("no insert was handed over")
	}
	c := a.chunks[0]
	a.chunks = a.chunks[1:]
	n := a.h.l.insertChunk(context.Background(), c, &a.failedGen)
	if err := a.h.l.handle(context.Background(), n); err != nil {
		a.h.t.Fatal(err)
	}
	return n
}

func TestAnExecutionBeingRecordedIsOpenForTheOverlapPoliciesAndSentOnlyOnceRecorded(t *testing.T) {
	fs := newFakeStore(spec("forbid", "@every 1s", nil))
	h := newHarness(t, fs, "a")
	h.establish()
	ins := withAsyncInserts(h)
	h.advance(time.Second)
	first := job.ExecutionID("forbid", t0.Add(time.Second))
	if len(h.sent) != 0 {
		t.Fatalf("sent %d dispatches before the insert was made", len(h.sent))
	}
	if got := h.l.backlogView().ByStatus["recording"]; got != 1 {
		t.Fatalf("backlog shows %d recording, want 1", got)
	}
	// The next second comes due while the first is still on its way: forbid skips it.
	h.now = h.now.Add(time.Second)
	if err := h.l.fireDue(context.Background()); err != nil {
		t.Fatal(err)
	}
	ins.make()
	if len(h.sent) != 1 || h.sent[0].d.ExecID != first {
		t.Fatalf("after the first insert: sent %+v, want one dispatch of %s", h.sent, first)
	}
	ins.make()
	second := job.ExecutionID("forbid", t0.Add(2*time.Second))
	var skipped bool
	for _, ev := range h.events {
		if ev.ExecID == second && ev.Kind == job.EventFinished && ev.Result.Status == job.StateSkipped {
			skipped = true
		}
	}
	if !skipped {
		t.Fatalf("%s was not recorded skipped while %s was being recorded (events %+v)", second, first, h.events)
	}
	if len(h.sent) != 1 {
		t.Fatalf("sent %d dispatches, want 1", len(h.sent))
	}
}

func TestAStopAskedWhileAnExecutionIsRecordedEndsItBeforeAnyClientIsSentIt(t *testing.T) {
	fs := newFakeStore(spec("j", "@every 1h", nil))
	h := newHarness(t, fs, "a")
	h.establish()
	ins := withAsyncInserts(h)
	id := job.ExecutionID("j", t0.Add(time.Hour))
	h.advance(time.Hour)
	if err := h.l.act(execAction{id: id, action: "stop", note: "alice"}); err != nil {
		t.Fatalf("stop while recording: %v", err)
	}
	ins.make()
	if len(h.sent) != 0 {
		t.Fatalf("a stopped execution was sent: %+v", h.sent)
	}
	if _, open := h.l.flights[id]; open {
		t.Fatalf("%s is still followed after its stop", id)
	}
	var ended *job.Result
	for _, ev := range h.events {
		if ev.ExecID == id && ev.Kind == job.EventFinished {
			ended = ev.Result
		}
	}
	if ended == nil || ended.Status != job.StateFailed {
		t.Fatalf("%s ended with %+v, want failed (stopped)", id, ended)
	}
}

func TestAFailedInsertHoldsTheLaterFiringsBackAndRetriesThemInOrderWithTheirIDs(t *testing.T) {
	fs := newFakeStore(shellJob("a", "@every 1s", created), shellJob("b", "@every 1s", created))
	h := newHarness(t, fs, "c1")
	h.establish()
	ins := withAsyncInserts(h)
	h.l.pipe.cap = 1 // an insert a firing
	h.advance(time.Second)
	if len(ins.chunks) != 2 {
		t.Fatalf("handed over %d inserts, want 2", len(ins.chunks))
	}
	fs.mu.Lock()
	fs.failInsert = 1 // the first lands, but its answer is lost
	fs.mu.Unlock()
	if n := ins.make(); n.err == nil || !n.tried {
		t.Fatalf("first insert: %+v, want a failure after it was made", n)
	}
	if n := ins.make(); n.tried {
		t.Fatal("the second insert of the failed generation was made")
	}
	if len(h.l.unsaved) != 2 {
		t.Fatalf("unsaved %d firings, want 2", len(h.l.unsaved))
	}
	// While they wait, later times do not fire.
	h.now = h.now.Add(time.Second)
	if err := h.l.fireDue(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(ins.chunks) != 0 {
		t.Fatalf("a later firing was handed over before the failed ones were retried: %+v", ins.chunks[0].plan)
	}
	if err := h.l.checkFlights(context.Background()); err != nil { // retries them
		t.Fatal(err)
	}
	for len(ins.chunks) > 0 {
		ins.make()
	}
	want := map[string]bool{job.ExecutionID("a", t0.Add(time.Second)): true, job.ExecutionID("b", t0.Add(time.Second)): true}
	for id := range want {
		if _, ok := h.l.flights[id]; !ok {
			t.Errorf("%s is not followed after the retry", id)
		}
	}
	if len(fs.execs) != 2 {
		t.Errorf("the store holds %d executions, want the 2 firings once each", len(fs.execs))
	}
	for _, s := range h.sent {
		if !want[s.d.ExecID] {
			t.Errorf("sent %s, want only the retried firings so far", s.d.ExecID)
		}
	}
	// Then the held-back second fires.
	h.advance(0)
	for len(ins.chunks) > 0 {
		ins.make()
	}
	if _, ok := h.l.flights[job.ExecutionID("a", t0.Add(2*time.Second))]; !ok {
		t.Error("the time held back while the failed firings waited did not fire after them")
	}
}

func TestAResultIsAppliedWhileAnInsertIsOnItsWay(t *testing.T) {
	fs := newFakeStore(shellJob("first", "@every 1h", created), shellJob("second", "0 30 13 * * ?", created))
	h := newHarness(t, fs, "a")
	h.establish()
	ins := withAsyncInserts(h)
	h.advance(time.Hour + time.Second)
	ins.make()
	if len(h.sent) != 1 {
		t.Fatalf("sent %d, want 1: %s, %s", len(h.sent), h.sent[0].d.ExecID, h.sent[1].d.ExecID)
	}
	d := h.sent[0].d
	h.now = h.now.Add(30 * time.Minute) // the second fires; its insert is on its way
	if err := h.l.fireDue(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(ins.chunks) != 1 {
		t.Fatalf("handed over %d inserts, want 1", len(ins.chunks))
	}
	// The first one's result arrives and is applied without waiting for the insert.
	if err := h.l.handle(context.Background(), resultNote{result: &wire.Result{
		Header: wire.Header{From: "a", Epoch: h.l.epoch}, ExecID: d.ExecID, Job: d.Job, Attempt: d.Attempt, Run: 1,
		Result: job.Result{Status: job.StateSucceeded, Final: true},
	}}); err != nil {
		t.Fatal(err)
	}
	if f := h.l.flights[d.ExecID]; f == nil || f.phase != phaseReporting {
		t.Fatalf("%s: %+v, want reporting while the other insert is on its way", d.ExecID, f)
	}
}
