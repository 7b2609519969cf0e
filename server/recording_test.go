package server

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/job"
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
	for _, ev := range h.skipEvents() {
		if ev.ExecID == second {
			skipped = true
		}
	}
	if !skipped {
		t.Fatalf("%s was not recorded skipped while %s was being recorded (skips %+v)", second, first, h.skipEvents())
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

// downStore fails inserts without recording anything while down.
type downStore struct {
	*fakeStore
	down bool
}

func (d *downStore) InsertExecutions(ctx context.Context, execs []job.Execution) ([]string, error) {
	if d.down {
		return nil, errors.New("store down")
	}
	return d.fakeStore.InsertExecutions(ctx, execs)
}

func (a *asyncInserts) drain() {
	for len(a.chunks) > 0 {
		a.make()
	}
}

// Found in review: the firings a long outage left were folded over the times fireDue held back meanwhile,
// which it then folded again: two catch-ups, every time counted twice.
func TestAnOutageLongerThanTheThresholdFoldsEachTimeOnce(t *testing.T) {
	fs := newFakeStore(shellJob("j", "@every 1s", created))
	h := newHarness(t, fs, "a")
	h.establish()
	ins := withAsyncInserts(h)
	ds := &downStore{fakeStore: fs, down: true}
	h.l.store = ds
	for range 4 * 45 { // 45 s down
		h.advance(250 * time.Millisecond)
		ins.drain()
	}
	ds.down = false
	for range 4 * 10 {
		h.advance(250 * time.Millisecond)
		ins.drain()
	}
	catchUps, covered := 0, 0
	for _, e := range fs.execs {
		covered += 1 + e.Missed
		if e.Trigger == job.TriggerCatchUp {
			catchUps++
		}
	}
	due := int(h.now.Sub(t0) / time.Second)
	if covered != due || catchUps != 1 {
		t.Errorf("%d executions, %d catch-ups, covering %d times; want %d times covered, by one catch-up", len(fs.execs), catchUps, covered, due)
	}
}

// Found in review: a stop asked while the execution was recorded went with its placeholder when the
// insert failed, and the retried execution was sent.
func TestAStopAskedWhileRecordingHoldsWhenTheInsertFails(t *testing.T) {
	fs := newFakeStore(shellJob("j", "@every 1h", created))
	h := newHarness(t, fs, "a")
	h.establish()
	ins := withAsyncInserts(h)
	ds := &downStore{fakeStore: fs, down: true}
	h.l.store = ds
	id := job.ExecutionID("j", t0.Add(time.Hour))
	h.advance(time.Hour)
	if err := h.l.act(execAction{id: id, action: "stop", note: "alice"}); err != nil {
		t.Fatal(err)
	}
	ins.drain()
	ds.down = false
	for range 8 {
		h.advance(250 * time.Millisecond)
		ins.drain()
	}
	if _, ok := fs.execs[id]; !ok {
		t.Fatalf("%s was never recorded", id)
	}
	if len(h.sent) != 0 {
		t.Errorf("the stopped %s was sent after its insert was retried: %d dispatches", id, len(h.sent))
	}
}

// Found in review: a firing owed again after a pause and resume, while its first insert was on its way,
// was re-planned from the unsaved firings once followed, and its placeholder took the followed flight's
// place among its job's open executions (the overlap policies stopped seeing it).
func TestAFollowedExecutionStaysAmongItsJobsOpenExecutions(t *testing.T) {
	fs := newFakeStore(shellJob("a", "@every 1s", created), shellJob("j", "@every 1s", created))
	h := newHarness(t, fs, "c1")
	h.establish()
	ins := withAsyncInserts(h)
	ds := &downStore{fakeStore: fs}
	h.l.store = ds
	h.advance(time.Second) // a@1, j@1 in one insert, on its way
	j := shellJob("j", "@every 1s", created)
	j.Paused = true
	h.l.setJob(j)
	j.Paused = false
	h.l.setJob(j) // resumed: owes j@1 again (not recorded yet)
	h.l.setJob(shellJob("b", "@every 1s", created))
	h.advance(time.Second)
	ins.make() // the first insert: j@1 followed
	ds.down = true
	ins.drain() // the rest fail
	ds.down = false
	for range 4 {
		h.advance(250 * time.Millisecond)
		ins.drain()
	}
	for id, f := range h.l.flights {
		if h.l.openByJob[f.exec.Job][id] != f {
			t.Errorf("%s is followed but not among its job's open executions (overlap policies do not see it)", id)
		}
	}
}

// A firing whose insert landed although it failed, retried after an outage longer than the threshold, is
// found in the store and taken on; a catch-up made in its stead would leave it pending and untracked.
func TestAFiringThatLandedUnansweredIsTakenOnAfterALongOutage(t *testing.T) {
	fs := newFakeStore(shellJob("j", "@every 5s", created))
	h := newHarness(t, fs, "a")
	h.establish()
	ins := withAsyncInserts(h)
	ds := &downStore{fakeStore: fs}
	h.l.store = ds
	landed := job.ExecutionID("j", t0.Add(5*time.Second))
	h.advance(5 * time.Second)
	fs.mu.Lock()
	fs.failInsert = 1 // it lands; its answer is lost
	fs.mu.Unlock()
	ins.drain()
	ds.down = true
	for range 4 * 30 {
		h.advance(250 * time.Millisecond)
		ins.drain()
	}
	ds.down = false
	for range 4 * 3 {
		h.advance(250 * time.Millisecond)
		ins.drain()
	}
	if _, ok := h.l.flights[landed]; !ok {
		t.Errorf("%s, recorded unanswered before the outage, is not followed after it", landed)
	}
	for _, e := range fs.folded() {
		if _, ok := h.l.flights[e.ID]; !ok && e.State == job.StatePending {
			t.Errorf("%s is pending in the store and not followed", e.ID)
		}
	}
}
