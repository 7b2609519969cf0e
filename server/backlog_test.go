package server

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/registry"
)

// openOf is how many executions of the job the leader holds, and the oldest one's scheduled time.
func (h *harness) openOf(name string) (n int, oldest time.Time) {
	for _, f := range h.l.openByJob[name] {
		n++
		if oldest.IsZero() || f.exec.ScheduledAt.Before(oldest) {
			oldest = f.exec.ScheduledAt
		}
	}
	return n, oldest
}

// skippedOf counts the executions of the job recorded skipped with a reason that contains part.
func (h *harness) skippedOf(name, part string) int {
	n := 0
	for _, ev := range h.skipEvents() {
		if ev.Job == name && strings.Contains(ev.Result.Error, part) {
			n++
		}
	}
	return n
}

// skipEvents are the finished events of the executions recorded skipped: persisted by the leader (one in
// the open set), or with the execution skipped where it was fired (RecordSkipped).
func (h *harness) skipEvents() []job.Event {
	var out []job.Event
	for _, ev := range h.events {
		if ev.Kind == job.EventFinished && ev.Result != nil && ev.Result.Status == job.StateSkipped {
			out = append(out, ev)
		}
	}
	h.store.mu.Lock()
	defer h.store.mu.Unlock()
	for _, id := range slices.Sorted(maps.Keys(h.store.skippedAtFiring)) {
		out = append(out, h.store.execs[id].Runs...)
	}
	return out
}

// With no client to take them, executions fired on schedule do not wait past the misfire threshold
// without bound: each job's misfire policy decides (skip: all skipped; fire-once: the latest stands for
// the others; fire-all: the latest Limit wait), counted, and the leader holds a bounded number of them.
func TestExecutionsNoClientTakesGoToTheMisfirePolicy(t *testing.T) {
	allow := func(policy string, limit int) func(*job.Spec) {
		return func(s *job.Spec) { s.Overlap, s.Misfire = job.OverlapAllow, job.Misfire{Policy: policy, Limit: limit} }
	}
	h := newHarness(t, newFakeStore(
		spec("skip", "@every 1s", allow(job.MisfireSkip, 0)),
		spec("once", "@every 1s", allow(job.MisfireFireOnce, 0)),
		spec("all", "@every 1s", allow(job.MisfireFireAll, 3)),
	)) // no client
	h.establish()
	threshold := h.l.cfg.MisfireThreshold
	steps := int((threshold + 10*time.Second) / time.Second)
	for range steps {
		h.advance(time.Second)
	}
	cut := h.now.Add(-threshold)
	// skip and fire-once: nothing older than the threshold is held; the ones within it wait.
	for _, name := range []string{"skip", "once"} {
		n, oldest := h.openOf(name)
		if oldest.Before(cut) || n > int(threshold/time.Second)+1 {
			t.Errorf("%s: %d held, the oldest scheduled %s (threshold cut %s)", name, n, oldest.Format(time.TimeOnly), cut.Format(time.TimeOnly))
		}
		if got := h.skippedOf(name, "misfire: no client could take it"); got < steps-n-1 {
			t.Errorf("%s: %d recorded skipped as misfires, want %d", name, got, steps-n)
		}
	}
	// fire-all: 3 older than the threshold still wait.
	n, oldest := h.openOf("all")
	older := 0
	for _, f := range h.l.openByJob["all"] {
		if f.exec.ScheduledAt.Before(cut) {
			older++
		}
	}
	if older != 3 {
		t.Errorf("all: %d executions older than the threshold wait (of %d, oldest %s), want the fire-all limit 3", older, n, oldest.Format(time.TimeOnly))
	}
	if got := testutil.ToFloat64(h.l.metrics.misfires.WithLabelValues("waiting")); got == 0 {
		t.Error("the misfires are not counted")
	}
	// A client comes: the ones left run; none of the skipped ones does.
	h.clients = []registry.Member{{ID: "a", Handlers: []string{"shell"}}}
	h.dirty = true
	h.advance(time.Second)
	for _, s := range h.sentTo("a") {
		if s.d.ScheduledAt.Before(cut.Add(-3*time.Second)) && s.d.Job != "all" {
			t.Errorf("%s was dispatched although it was recorded skipped", s.d.ExecID)
		}
	}
}

// While the backlog is at limits.backlog, nothing more fires on schedule (a manual trigger still does);
// when room comes back, the times held back go to the misfire policy (fire-once: one catch-up stands for
// those older than the threshold).
func TestAFullBacklogHoldsBackScheduledFirings(t *testing.T) {
	const jobs = 150
	var specs []job.Spec
	for i := range jobs {
		specs = append(specs, spec(fmt.Sprintf("j%03d", i), "@every 1s", func(s *job.Spec) { s.Overlap = job.OverlapAllow }))
	}
	fs := newFakeStore(specs...)
	h := newHarness(t, fs) // no client
	h.l.cfg.Limits.Backlog = 100
	h.establish()
	h.advance(time.Second) // fires all 150 (one insert); they wait: the backlog is over its limit
	fired := len(fs.ids())
	if fired != jobs {
		t.Fatalf("%d executions after the first second, want %d", fired, jobs)
	}
	for range 20 {
		h.advance(time.Second)
	}
	if got := len(fs.ids()); got != fired {
		t.Fatalf("%d executions recorded while the backlog was full, want none beyond the first %d", got-fired, fired)
	}
	if h.l.backlog.count < 100 {
		t.Fatalf("backlog %d, want it full", h.l.backlog.count)
	}
	if got := testutil.ToFloat64(h.l.metrics.backlogFull); got == 0 {
		t.Error("clover_backlog_full_total not counted")
	}
	if _, err := h.l.trigger(context.Background(), "j000", nil); err != nil {
		t.Fatalf("a manual trigger while the backlog is full: %v", err)
	}

	// A client with room comes: the waiting ones go, then the jobs fire again, the times they missed by
	// more than the threshold folded into one catch-up each.
	h.clients = []registry.Member{{ID: "a", Handlers: []string{"shell"}}}
	h.dirty = true
	h.advance(time.Second)
	h.advance(time.Second)
	var catchUp *job.Execution
	for _, e := range fs.folded() {
		if e.Job == "j001" && e.Trigger == job.TriggerCatchUp {
			catchUp = &e
		}
	}
	if catchUp == nil || catchUp.Missed == 0 {
		t.Fatalf("j001: no catch-up execution standing for the missed times after the backlog emptied: %+v", catchUp)
	}
}

// A firing of many executions is recorded in inserts of the sizer's size, and an insert that fails puts
// back only the firings it and the later ones held: each execution is dispatched once.
func TestFiringsAreRecordedInInsertsSizedToTheStore(t *testing.T) {
	const jobs = 1000
	var specs []job.Spec
	for i := range jobs {
		specs = append(specs, shellJob(fmt.Sprintf("j%04d", i), "@every 1m", created))
	}
	fs := newFakeStore(specs...)
	h := newHarness(t, fs, "a")
	h.establish()
	fs.mu.Lock()
	fs.failInsert = 0
	fs.mu.Unlock()
	// The first minute's firings: the loop takes one insert's worth per turn.
	h.now = h.now.Add(time.Minute)
	for turn := 0; len(fs.ids()) < jobs; turn++ {
		if turn == 2 {
			fs.mu.Lock()
			fs.failInsert = 1 // this insert lands, but its answer is lost
			fs.mu.Unlock()
		}
		if turn > 50 {
			t.Fatalf("only %d of %d fired after %d turns", len(fs.ids()), jobs, turn)
		}
		if err := h.l.fireDue(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	h.advance(0) // the tick retries what the failed insert put back
	h.advance(0)
	for _, n := range fs.inserts {
		if n > maxInsert {
			t.Errorf("an insert of %d executions (max %d)", n, maxInsert)
		}
	}
	if fs.inserts[0] > firstInsert {
		t.Errorf("first insert %d, want at most %d", fs.inserts[0], firstInsert)
	}
	seen := map[string]int{}
	for _, s := range h.sentTo("a") {
		seen[s.d.ExecID]++
	}
	if len(seen) != jobs {
		t.Errorf("%d executions dispatched, want %d", len(seen), jobs)
	}
	for id, n := range seen {
		if n > 1 {
			t.Errorf("%s dispatched %d times", id, n)
		}
	}
}

func TestTheInsertSizerFollowsTheStoresLatency(t *testing.T) {
	var s insertSizer
	perExec := time.Millisecond // a store that takes 1 ms an execution: 300 in the target
	for range 40 {
		n := s.batch()
		s.observe(n, time.Duration(n)*perExec, nil)
	}
	if got := s.batch(); got < 250 || got > 350 {
		t.Errorf("settled on %d, want about %d", got, int(insertTarget/perExec))
	}
	before := s.batch()
	s.observe(before, 5*time.Second, fmt.Errorf("timeout"))
	if got := s.batch(); got != before/2 {
		t.Errorf("after a failed insert: %d, want %d", got, before/2)
	}
	for range 40 {
		s.observe(s.batch(), time.Microsecond, nil) // a fast store
	}
	if got := s.batch(); got != maxInsert {
		t.Errorf("on a fast store: %d, want the maximum %d", got, maxInsert)
	}
	for range 40 {
		s.observe(s.batch(), 5*time.Second, errors.New("context deadline exceeded")) // one that times out
	}
	if got := s.batch(); got != minInsert {
		t.Errorf("on a store that times out: %d, want the minimum %d", got, minInsert)
	}
}
