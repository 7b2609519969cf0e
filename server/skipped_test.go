package server

import (
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/clover-sched/clover/internal/job"
)

// A firing its overlap policy skips where it is fired is recorded ended at once (store.RecordSkipped):
// no open-set copy, no event, no close. The job's latest firing in the open set stays kept there, and a
// new leader learns from the history (store.LatestSkipped) that the skipped time was fired: it does not
// owe it again.
func TestAFiringSkippedWhereItIsFiredGoesStraightToTheHistory(t *testing.T) {
	fs := newFakeStore(spec("forbid", "@every 1s", nil))
	h, first := firstFiring(t, fs, "forbid")
	h.ack("a", h.sent[0].d)
	h.advance(time.Second) // the first still runs: forbid skips the second
	second := job.ExecutionID("forbid", t0.Add(2*time.Second))
	if st := h.state(second); st != job.StateSkipped {
		t.Fatalf("%s is %s, want skipped", second, st)
	}
	if !fs.skippedAtFiring[second] {
		t.Fatalf("%s was not recorded skipped where it was fired", second)
	}
	for _, ev := range h.events {
		if ev.ExecID == second {
			t.Fatalf("an event was persisted for %s, recorded ended already: %+v", second, ev)
		}
	}
	h.finish("a", h.sent[0].d, job.StateSucceeded)
	if slices.Contains(fs.closed, second) || slices.Contains(fs.closed, first) {
		t.Fatalf("closed %v: neither the skipped firing (never in the open set) nor the job's latest firing there", fs.closed)
	}

	next := newHarness(t, fs, "a")
	next.now = h.now
	next.establish()
	if got := next.l.lastFired["forbid"]; !got.Equal(t0.Add(2 * time.Second)) {
		t.Fatalf("the new leader has the job last fired at %s, want the skipped firing's %s", got, t0.Add(2*time.Second))
	}
	next.advance(time.Second)
	if dups := testutil.ToFloat64(next.l.metrics.duplicateFires); dups != 0 {
		t.Fatalf("the new leader fired %v firings recorded before", dups)
	}
	third := job.ExecutionID("forbid", t0.Add(3*time.Second))
	if len(next.sent) != 1 || next.sent[0].d.ExecID != third {
		t.Fatalf("the new leader sent %+v, want one dispatch of %s", next.sent, third)
	}
}

// A firing skipped long after its job's latest firing in the open set is recorded as a run is and ended
// (an open-set copy and a finished event): a new leader may not find a skip that old in the newest history
// buckets, and the open set's copy is what keeps a sparse job's schedule where it stands.
func TestASparseJobsSkipStaysInTheOpenSet(t *testing.T) {
	fs := newFakeStore(spec("hourly", "@every 1h", nil))
	h := newHarness(t, fs, "a")
	h.establish()
	h.advance(time.Hour)
	if len(h.sent) != 1 {
		t.Fatalf("sent %d dispatches, want 1", len(h.sent))
	}
	h.ack("a", h.sent[0].d)
	h.heartbeat("a", h.sent[0].d.ExecID)
	h.advance(time.Hour) // the first still runs: forbid skips the second
	second := job.ExecutionID("hourly", t0.Add(2*time.Hour))
	if st := h.state(second); st != job.StateSkipped {
		t.Fatalf("%s is %s, want skipped", second, st)
	}
	if fs.skippedAtFiring[second] {
		t.Fatalf("%s, an hour after the job's latest firing in the open set, was skipped straight into the history", second)
	}
	var event bool
	for _, ev := range h.events {
		event = event || (ev.ExecID == second && ev.Kind == job.EventFinished)
	}
	if !event {
		t.Fatalf("no finished event was persisted for %s", second)
	}
}

// A deposed leader fires a firing the new leader has just skipped straight into the history, inserting its
// open-set copy after the new leader read the set, and dies before its fence insert (which would have met
// the skip and dropped the copy). The next leader inherits that copy, pending: it asks the store before
// sending it (verify), finds it recorded in the history, and ends the copy without running it; the
// close looks in the history first, so the skip stays the only record.
func TestAnInheritedCopyOfAFiringRecordedInTheHistoryDoesNotRun(t *testing.T) {
	fs, skipped := storeWithALeftCopy()
	var rechecked []string
	h := newHarness(t, fs, "a")
	h.l.closeOpen = func(epoch int64, id string, recheck bool) {
		if recheck {
			rechecked = append(rechecked, id)
		}
		fs.closeOpen(epoch, id, recheck)
	}
	h.establish()
	held := h.l.cfg.AcceptWindow + h.l.cfg.AckTimeout
	for h.now.Before(t0.Add(2 * held)) {
		h.advance(250 * time.Millisecond)
	}
	if len(h.sent) != 0 {
		t.Fatalf("sent %+v: a copy of a firing recorded ended in the history ran", h.sent)
	}
	if _, ok := h.l.flights[skipped.ID]; ok {
		t.Fatalf("%s is still followed", skipped.ID)
	}
	if st := h.state(skipped.ID); st != job.StateSkipped {
		t.Fatalf("the copy is %s, want skipped", st)
	}
	// The job's latest firing stays kept in the open set until the job's next one (here: its deletion),
	// and its close, in this term or the next, looks in the history first.
	if k := h.l.kept["once"]; k.id != skipped.ID || !k.recheck {
		t.Fatalf("kept %+v, want the job's latest firing %s, to be rechecked", k, skipped.ID)
	}
	next := newHarness(t, fs, "a")
	next.now = h.now
	next.l.closeOpen = h.l.closeOpen
	next.establish()
	if k := next.l.kept["once"]; k.id != skipped.ID || !k.recheck {
		t.Fatalf("the next term kept %+v, want %s, to be rechecked", k, skipped.ID)
	}
	next.l.jobGone("once")
	if !slices.Contains(rechecked, skipped.ID) {
		t.Fatalf("rechecked closes %v: the copy's close must look in the history first (it is recorded there)", rechecked)
	}
}

// A firing found recorded before, ended and closed (a deposed leader ran it; the store dropped the copy
// this insert brought back), is not in the open set: the job's kept firing stays there, as the latest one
// a new leader can find.
func TestAFiringClosedBeforeLeavesTheKeptFiringInPlace(t *testing.T) {
	fs := newFakeStore(shellJob("tick", "@every 1s", created))
	h, first := firstFiring(t, fs, "tick")
	h.ack("a", h.sent[0].d)
	h.finish("a", h.sent[0].d, job.StateSucceeded)
	if k := h.l.kept["tick"]; k.id != first {
		t.Fatalf("kept %+v, want %s", k, first)
	}
	second := firingCopy("tick", t0.Add(2*time.Second), 6)
	fs.mu.Lock()
	fs.execs[second.ID] = second // run and closed by an earlier term: in the history, not in the open set
	fs.shut[second.ID] = true
	fs.mu.Unlock()
	h.advance(time.Second)
	if dups := testutil.ToFloat64(h.l.metrics.duplicateFires); dups != 1 {
		t.Fatalf("%v duplicate firings, want 1 (%s)", dups, second.ID)
	}
	if slices.Contains(fs.closed, first) {
		t.Fatalf("closed %v: the job's kept firing left the open set for a firing that is not there", fs.closed)
	}
	if k := h.l.kept["tick"]; k.id != first {
		t.Fatalf("kept %+v, want %s still", k, first)
	}
	if got := h.l.lastOpened["tick"]; !got.Equal(t0.Add(time.Second)) {
		t.Fatalf("latest firing in the open set %s, want %s", got, t0.Add(time.Second))
	}
}

// A failed read of the history leaves the inherited copy held and checked again: it is never sent on an
// answer that did not ask the history.
func TestAnInheritedCopyStaysHeldWhileTheHistoryCannotBeRead(t *testing.T) {
	fs, skipped := storeWithALeftCopy()
	fs.failHistory = 3
	h := newHarness(t, fs, "a")
	h.establish()
	held := h.l.cfg.AcceptWindow + h.l.cfg.AckTimeout
	for h.now.Before(t0.Add(2*held)) || fs.failHistory > 0 {
		if h.now.After(t0.Add(time.Hour)) {
			t.Fatalf("the history was asked %d times fewer than expected", fs.failHistory)
		}
		h.advance(250 * time.Millisecond)
		if len(h.sent) != 0 {
			t.Fatalf("sent %+v while the history could not be read", h.sent)
		}
	}
	h.advance(250 * time.Millisecond)
	if len(h.sent) != 0 {
		t.Fatalf("sent %+v: a copy of a firing recorded ended in the history ran", h.sent)
	}
	if st := h.state(skipped.ID); st != job.StateSkipped {
		t.Fatalf("the copy is %s, want skipped once the history answered", st)
	}
}

// A firing retried after its insert failed finds its own copy pending (the store could not drop it: the
// history read of dropResurrected failed) while the history has the execution (it ran and was closed
// under an earlier term): the copy is ended, not sent.
func TestAnOwnCopyOfAFiringRecordedInTheHistoryIsNotSent(t *testing.T) {
	fs := newFakeStore(shellJob("tick", "@every 1s", created))
	h := newHarness(t, fs, "a")
	h.establish()
	id := job.ExecutionID("tick", t0.Add(time.Second))
	fs.execs[id] = firingCopy("tick", t0.Add(time.Second), h.l.epoch)
	fs.history = map[string]bool{id: true}
	h.advance(time.Second)
	for _, s := range h.sent {
		if s.d.ExecID == id {
			t.Fatalf("sent %s, whose execution the history has", id)
		}
	}
	if _, ok := h.l.flights[id]; ok {
		t.Fatalf("%s is followed", id)
	}
	if st := h.state(id); st != job.StateSkipped {
		t.Fatalf("the copy is %s, want skipped", st)
	}
	other := job.ExecutionID("tick", t0.Add(2*time.Second))
	fs.mu.Lock()     // the tick's sweep reads the store on a goroutine of its own
	fs.history = nil // the same copy from an insert whose answer was lost: sent
	fs.execs[other] = firingCopy("tick", t0.Add(2*time.Second), h.l.epoch)
	fs.mu.Unlock()
	h.advance(time.Second)
	if len(h.sent) != 1 || h.sent[0].d.ExecID != other {
		t.Fatalf("sent %+v, want one dispatch of %s", h.sent, other)
	}
}

// firingCopy is an open-set copy of the shell job's firing at scheduled, pending, made by the term of epoch.
func firingCopy(name string, scheduled time.Time, epoch int64) job.Execution {
	return job.Execution{ID: job.ExecutionID(name, scheduled), Job: name, ScheduledAt: scheduled, Epoch: epoch, Handler: "shell", Trigger: job.TriggerSchedule}
}

// storeWithALeftCopy is a store whose open set holds a pending copy of a job's only firing, left by the
// term of epoch 5 (a deposed leader's), while the history has that execution (skipped where it was fired).
func storeWithALeftCopy() (*fakeStore, job.Execution) {
	fs := newFakeStore(shellJob("once", "@at 2026-03-01T11:59:59Z", t0.Add(-time.Hour)))
	left := firingCopy("once", t0.Add(-time.Second), 5)
	fs.execs[left.ID] = left
	fs.history = map[string]bool{left.ID: true}
	return fs, left
}

// An execution this term follows that the store check finds closed by another term is not in the open
// set: forgetting it neither makes it the job's kept firing (a new term resumes the schedule from the kept
// firing, which must be in the set) nor asks for its close again.
func TestAFiringFoundClosedElsewhereIsNotKept(t *testing.T) {
	fs := newFakeStore(shellJob("tick", "@every 1s", created))
	h, first := firstFiring(t, fs, "tick")
	h.ack("a", h.sent[0].d)
	h.l.applyReconciled(reconciledNote{closed: []string{first}})
	if _, ok := h.l.flights[first]; ok {
		t.Fatalf("%s still followed after the store said it was closed", first)
	}
	if k, ok := h.l.kept["tick"]; ok && k.id == first {
		t.Fatalf("kept %+v: %s is not in the open set", k, first)
	}
	h.advance(time.Second) // the closer gets what the loop asked
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if slices.Contains(fs.closed, first) {
		t.Fatalf("closed %v: %s was closed by another term already", fs.closed, first)
	}
}

// firstFiring starts a term on fs with client a and fires job's first second, which it checks was sent,
// once, and returns the harness and that execution's id.
func firstFiring(t *testing.T, fs *fakeStore, jobName string) (*harness, string) {
	t.Helper()
	h := newHarness(t, fs, "a")
	h.establish()
	h.advance(time.Second)
	first := job.ExecutionID(jobName, t0.Add(time.Second))
	if len(h.sent) != 1 || h.sent[0].d.ExecID != first {
		t.Fatalf("sent %+v, want one dispatch of %s", h.sent, first)
	}
	return h, first
}
