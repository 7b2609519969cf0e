package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/registry"
	"github.com/clover-sched/clover/internal/wire"
)

// Found in review: a rerunnable run that was acked (started) and then lost is turned into "skipped" by
// misfireStale instead of being rerun, and the skip's event id is the one the client's real result
// would use.
func TestALostRunOfARerunnableJobIsRerunNotSkipped(t *testing.T) {
	for name, mut := range map[string]func(*job.Spec){
		"skip policy": func(s *job.Spec) { s.Rerunnable = true; s.Misfire.Policy = job.MisfireSkip },
		"default fire-once, overlap allow, later firings open": func(s *job.Spec) {
			s.Rerunnable = true
			s.Overlap = job.OverlapAllow
			s.Schedule = "@every 20s"
		},
	} {
		t.Run(name, func(t *testing.T) {
			fs := newFakeStore(spec("r", "@at 2026-03-01T12:00:01Z", func(s *job.Spec) { s.Routing.Strategy = job.RouteFirst; mut(s) }))
			h := newHarness(t, fs, "a", "b")
			h.establish()
			h.advance(time.Second)
			if len(h.sent) == 0 {
				h.advance(19 * time.Second)
			}
			d := h.lastTo("a")
			h.ack("a", d)
			// It runs for 20 s, listed in a's heartbeats (past the misfire threshold).
			for range 20 {
				h.heartbeat("a", d.ExecID)
				h.advance(time.Second)
			}
			// a is starved: its heartbeats stop listing the run; the lease lapses.
			for range 2 * h.l.cfg.LeaseTimeout / time.Second {
				h.advance(time.Second)
			}
			att := firstAttemptsAll(h.sent)
			st := h.state(d.ExecID)
			t.Logf("attempts to %v, state %s, skipped events %d", att, st, h.skippedOf("r", "misfire"))
			if st == job.StateSkipped {
				t.Errorf("a run that was started (acked) and lost is recorded skipped; attempts %v", att)
			}
			// The client's real result now collides with the skip event's id.
			if ev, ok := fs.events[job.EventID(d.ExecID, job.EventFinished, 1)]; ok {
				t.Logf("finished/1 event holds: %s %q", ev.Result.Status, ev.Result.Error)
			}
		})
	}
}

// Found in review: an operator's rerun of an orphan is turned into a skip when no other client takes it at once.
func TestAnOperatorsRerunIsNeverSkippedAsAMisfire(t *testing.T) {
	fs := newFakeStore(spec("o", "@at 2026-03-01T12:00:01Z", func(s *job.Spec) {
		s.Routing.Strategy = job.RouteFirst
		s.Misfire.Policy = job.MisfireSkip
	}))
	h := newHarness(t, fs, "a", "b")
	h.establish()
	h.advance(time.Second)
	d := h.lastTo("a")
	h.ack("a", d)
	for range 2 * h.l.cfg.LeaseTimeout / time.Second {
		h.advance(time.Second)
	}
	if got := h.state(d.ExecID); got != job.StateOrphaned {
		t.Fatalf("state %s, want orphaned", got)
	}
	h.down["b"] = true // b's pipe is full right now
	if err := h.l.act(execAction{id: d.ExecID, action: "rerun", note: "alice"}); err != nil {
		t.Fatal(err)
	}
	h.down["b"] = false
	h.advance(time.Second)
	h.advance(time.Second)
	st := h.state(d.ExecID)
	t.Logf("after the rerun: state %s, attempts %v", st, firstAttemptsAll(h.sent))
	if st == job.StateSkipped {
		t.Error("an operator's rerun was recorded skipped as a misfire")
	}
}

// Found in review: rerunnable dispatched to a client that departed unanswered: it may have started it, yet it
// is skipped (no rerun) under the skip policy once it is past the threshold.
func TestAnExecutionSentToAClientThatLeftIsNeverSkippedAsAMisfire(t *testing.T) {
	fs := newFakeStore(spec("r", "@at 2026-03-01T12:00:01Z", func(s *job.Spec) {
		s.Rerunnable = true
		s.Misfire.Policy = job.MisfireSkip
		s.Routing.Strategy = job.RouteFirst
	}))
	h := newHarness(t, fs, "a", "b")
	h.establish()
	h.now = h.now.Add(time.Second)
	// the loop fires late: 14 s after its time (within the threshold)
	h.advance(14 * time.Second)
	if len(h.sent) == 0 {
		t.Fatal("nothing sent")
	}
	gone := h.sent[0].peer
	h.clients = slices.DeleteFunc(h.clients, func(m registry.Member) bool { return m.ID == gone })
	h.down[gone] = true
	h.l.rebuildEligibility()
	for range 12 {
		h.advance(time.Second)
	}
	st := h.state(h.sent[0].d.ExecID)
	t.Logf("attempts %v, state %s", firstAttemptsAll(h.sent), st)
	if st == job.StateSkipped {
		t.Error("a dispatch that the departed client may have started was recorded skipped")
	}
}

// Found in review: jobs that no client can take (fire-once keeps the latest of each) keep the backlog full for
// ever, and a healthy job with an idle client stops firing.
func TestExecutionsNobodyCanTakeDoNotStopOtherJobsFiring(t *testing.T) {
	var specs []job.Spec
	for i := range 100 {
		specs = append(specs, spec(fmt.Sprintf("orphan%03d", i), "@every 1s", func(s *job.Spec) { s.Handler = "nobody-has-it" }))
	}
	specs = append(specs, spec("healthy", "@every 1s", nil))
	fs := newFakeStore(specs...)
	h := newHarness(t, fs, "a")
	h.l.cfg.Limits.Backlog = 100
	h.establish()
	for range 60 {
		h.advance(time.Second)
		// a runs whatever it gets at once
		for _, s := range h.sentTo("a") {
			if _, ok := h.l.flights[s.d.ExecID]; ok && h.l.flights[s.d.ExecID].phase == phaseDispatched {
				h.finish("a", s.d, job.StateSucceeded)
			}
		}
	}
	last := time.Time{}
	n := 0
	for _, e := range fs.folded() {
		if e.Job == "healthy" {
			n++
			if e.ScheduledAt.After(last) {
				last = e.ScheduledAt
			}
		}
	}
	t.Logf("healthy: %d executions, last scheduled %s (now %s); backlog %d", n, last.Sub(t0), h.now.Sub(t0), h.l.backlog.count)
	if h.now.Sub(last) > 30*time.Second {
		t.Errorf("the healthy job has not fired for %s: the backlog stays full of executions no client can take", h.now.Sub(last))
	}
}

var _ = wire.Ack{}

type failNthInsert struct {
	*fakeStore
	calls, fail int
}

func (s *failNthInsert) InsertExecutions(ctx context.Context, execs []job.Execution) ([]string, error) {
	s.calls++
	if s.calls == s.fail {
		return nil, errors.New("timeout")
	}
	return s.fakeStore.InsertExecutions(ctx, execs)
}

// Found in review: a replace firing recorded in an insert that succeeded, while a later insert of the same fire()
// failed: its stops are dropped for good; the replaced run goes on next to its replacement.
func TestAReplacingFiringStopsItsPredecessorWhenALaterInsertFails(t *testing.T) {
	specs := []job.Spec{spec("aaa-replace", "@every 1h", func(s *job.Spec) { s.Overlap = job.OverlapReplace })}
	for i := range 300 {
		specs = append(specs, shellJob(fmt.Sprintf("j%03d", i), "@every 1h", created))
	}
	fs := newFakeStore(specs...)
	h := newHarness(t, fs, "a", "b")
	h.establish()
	// The replace job's first run is going on a.
	old := h.l.jobs["aaa-replace"].spec
	if err := h.l.fire(context.Background(), []firing{{spec: old, at: t0.Add(-time.Second), trigger: job.TriggerManual}}, h.now); err != nil {
		t.Fatal(err)
	}
	first := h.sent[len(h.sent)-1].d
	h.ack(h.sent[len(h.sent)-1].peer, first)
	// Then a firing of it and 300 others, in two inserts (256 + 45); the second fails.
	fw := &failNthInsert{fakeStore: fs, fail: fs.insertCount() + 2}
	h.l.store = fw
	fw.calls = fs.insertCount()
	var frs []firing
	frs = append(frs, firing{spec: old, at: t0, trigger: job.TriggerSchedule})
	for i := range 300 {
		frs = append(frs, firing{spec: h.l.jobs[fmt.Sprintf("j%03d", i)].spec, at: t0, trigger: job.TriggerSchedule})
	}
	if err := h.l.fire(context.Background(), frs, h.now); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		h.advance(250 * time.Millisecond)
	}
	replacement := job.ExecutionID("aaa-replace", t0)
	_, recorded := fs.execs[replacement]
	t.Logf("inserts %v; replacement recorded %v; stops sent %d; old still tracked %v (phase %v)", fs.inserts, recorded, len(h.stops),
		h.l.flights[first.ExecID] != nil, h.l.flights[first.ExecID].phase)
	if recorded && len(h.stops) == 0 {
		t.Error("the replacement was recorded and dispatched but the run it replaces was never stopped")
	}
}

func (f *fakeStore) insertCount() int { f.mu.Lock(); defer f.mu.Unlock(); return len(f.inserts) }

// Found in review: under overlap queue, a queued execution that waited behind its job's earlier run for longer
// than the threshold is skipped the first time a client refuses it (busy), though it never waited for a
// client for long: the age counts from ScheduledAt, not from when it became ready.
func TestAQueuedRunCountsItsMisfireAgeFromLeavingTheQueue(t *testing.T) {
	fs := newFakeStore(spec("q", "@every 5s", func(s *job.Spec) { s.Overlap = job.OverlapQueue }))
	h := newHarness(t, fs, "a")
	h.establish()
	h.advance(5 * time.Second)
	d := h.lastTo("a")
	h.ack("a", d)
	for range 25 { // the first run takes 25 s; 5 more queue behind it
		h.heartbeat("a", d.ExecID)
		h.advance(time.Second)
	}
	h.finish("a", d, job.StateSucceeded) // the next queued one goes out at once
	next := h.lastTo("a")
	if next.ExecID == d.ExecID {
		t.Fatal("the next queued one did not go out")
	}
	// a is busy for a moment and says so
	h.l.onAck(&wire.Ack{Header: wire.Header{From: "a"}, ExecID: next.ExecID, Attempt: next.Attempt, Run: 1, Accepted: false, Code: wire.RefuseBusy, Reason: "busy"})
	h.advance(250 * time.Millisecond)
	h.advance(time.Second)
	st := h.state(next.ExecID)
	t.Logf("queued run %s (scheduled %s, now %s) after one busy refusal: %s", next.ExecID, next.ScheduledAt.Sub(t0), h.now.Sub(t0), st)
	if st == job.StateSkipped {
		t.Error("a queued run was skipped as a misfire after one busy refusal")
	}
}

// Found in review: on a store whose insert latency is mostly fixed (queueing, w:majority, a loaded FerretDB),
// the sizer shrinks to its minimum and stays there, whatever the backlog of due firings.
func TestTheInsertSizerGrowsOnAStoreWithFixedLatency(t *testing.T) {
	var s insertSizer
	for range 60 {
		n := s.batch()
		s.observe(n, 400*time.Millisecond+time.Duration(n)*10*time.Microsecond, nil)
	}
	n := s.batch()
	t.Logf("settled at %d: %.0f executions/s, where one insert of %d would take %s (%.0f/s)", n,
		float64(n)/(0.4+float64(n)*1e-5), maxInsert, 400*time.Millisecond+maxInsert*10*time.Microsecond, maxInsert/(0.4+maxInsert*1e-5))
	// A few manual triggers on a slow store shrink it too.
	var m insertSizer
	m.size = 2048
	for range 5 {
		m.observe(1, 500*time.Millisecond, nil)
	}
	if m.batch() != 2048 {
		t.Errorf("after 5 single-execution inserts of 500 ms: batch %d, want 2048 unchanged", m.batch())
	}
	if n == minInsert {
		t.Errorf("stuck at the minimum %d", n)
	}
}

// Found in review: fire-all's limit counts executions, not firings: the cut can fall inside a sharded firing.
func TestFireAllKeepsWholeShardedFirings(t *testing.T) {
	fs := newFakeStore(spec("sh", "@every 10s", func(s *job.Spec) {
		s.Overlap = job.OverlapAllow
		s.Routing.Strategy, s.Routing.Shards = job.RouteShardBroadcast, 4
		s.Misfire = job.Misfire{Policy: job.MisfireFireAll, Limit: 3}
		s.Handler = "nobody-has-it"
	}))
	h := newHarness(t, fs, "a")
	h.establish()
	for range 60 {
		h.advance(time.Second)
	}
	byFiring := map[string]int{}
	for _, f := range h.l.openByJob["sh"] {
		byFiring[job.FiringOf(f.exec)]++
	}
	t.Logf("open shards by firing: %v", byFiring)
	for id, n := range byFiring {
		if n != 4 {
			t.Errorf("firing %s: %d of its 4 shards left open, the others skipped", id, n)
		}
	}
}
