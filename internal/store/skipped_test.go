package store

import (
	"slices"
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/job"
)

// skippedExec is e ended where it was fired, as the leader hands it to RecordSkipped.
func skippedExec(e job.Execution) job.Execution {
	e.Fold([]job.Event{{
		ID: job.EventID(e.ID, job.EventFinished, 1), ExecID: e.ID, Job: e.Job, Kind: job.EventFinished, Run: 1,
		At: e.FiredAt, Result: &job.Result{Status: job.StateSkipped, ExitCode: -1, Error: "overlap: test", Final: true},
	}})
	return e
}

func TestRecordSkipped(t *testing.T) {
	t.Parallel()
	s := testStore(t)
	ctx := t.Context()
	now := time.Now()
	into := HistorySeries{Epoch: 3, Series: SkipSeries, Span: time.Hour, Size: 100}
	a := skippedExec(execution("j", t0, job.TriggerSchedule))
	b := skippedExec(execution("j", t0.Add(time.Minute), job.TriggerSchedule))
	manual := skippedExec(execution("j", t0.Add(time.Hour), job.TriggerManual))
	if dups, err := s.RecordSkipped(ctx, into, []job.Execution{a, b, manual}, now); err != nil || len(dups) > 0 {
		t.Fatalf("RecordSkipped = %v, %v", dups, err)
	}
	if e, err := s.GetExecution(ctx, a.ID); err != nil || e.State != job.StateSkipped || e.Result == nil || e.Result.Error != "overlap: test" {
		t.Fatalf("GetExecution of a skipped firing = %+v, %v", e, err)
	}
	if open, err := s.OpenByID(ctx, []string{a.ID, b.ID, manual.ID}); err != nil || len(open) > 0 {
		t.Fatalf("skipped firings in the open set: %+v, %v", open, err)
	}
	if got, err := s.ListExecutions(ctx, ExecutionFilter{Job: "j", State: job.StateSkipped}); err != nil || len(got) != 3 {
		t.Fatalf("ListExecutions of skipped = %d, %v; want 3", len(got), err)
	}
	// Only firings on the schedule say where it stands.
	if latest, err := s.LatestSkipped(ctx, SkipSeries); err != nil || !latest["j"].Equal(t0.Add(time.Minute)) || len(latest) != 1 {
		t.Fatalf("LatestSkipped = %v, %v; want j at %s", latest, err, t0.Add(time.Minute))
	}
	// The closer's buckets are another series: a skip it closed (one recorded as a run is) is not read.
	w := s.NewHistoryWriter(3, time.Hour, 0)
	if err := w.Append(ctx, []job.Execution{skippedExec(execution("j", t0.Add(time.Hour), job.TriggerSchedule))}, now); err != nil {
		t.Fatal(err)
	}
	if latest, err := s.LatestSkipped(ctx, SkipSeries); err != nil || !latest["j"].Equal(t0.Add(time.Minute)) {
		t.Fatalf("LatestSkipped after the closer wrote = %v, %v", latest, err)
	}

	// Recorded again (a retry whose answer was lost): duplicates, recorded once.
	if dups, err := s.RecordSkipped(ctx, into, []job.Execution{a, b}, now); err != nil || len(dups) != 2 {
		t.Fatalf("RecordSkipped again = %v, %v; want both duplicates", dups, err)
	}
	buckets, err := s.Buckets(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, bk := range buckets {
		total += bk.Count
	}
	if total != 4 {
		t.Fatalf("the history holds %d executions, want 4 (3 skipped here, 1 by the closer)", total)
	}

	// The same firing fired again to run (a deposed leader, a catch-up): a duplicate, and no copy of it is
	// left in the open set for a later leader to run.
	if dups, err := s.InsertExecutions(ctx, []job.Execution{execution("j", t0, job.TriggerSchedule)}); err != nil || !slices.Equal(dups, []string{a.ID}) {
		t.Fatalf("InsertExecutions of a skipped firing = %v, %v", dups, err)
	}
	if open, err := s.OpenByID(ctx, []string{a.ID}); err != nil || len(open) > 0 {
		t.Fatalf("a skipped firing fired again left %+v, %v in the open set", open, err)
	}

	// A firing recorded to run, then skipped by another term: a duplicate; it stays open, out of the history.
	r := execution("j", t0.Add(2*time.Minute), job.TriggerSchedule)
	mustInsert(t, s, []job.Execution{r}, nil)
	if dups, err := s.RecordSkipped(ctx, into, []job.Execution{skippedExec(r)}, now); err != nil || !slices.Equal(dups, []string{r.ID}) {
		t.Fatalf("RecordSkipped of a recorded run = %v, %v", dups, err)
	}
	if in, err := s.InHistory(ctx, []string{r.ID}); err != nil || in[r.ID] {
		t.Fatalf("a run skipped by another term is in the history: %v, %v", in, err)
	}
	if open, err := s.OpenByID(ctx, []string{r.ID}); err != nil || len(open) != 1 {
		t.Fatalf("a run skipped by another term left the open set: %+v, %v", open, err)
	}

	// A skip whose fence landed and whose history record did not (the leader died in between): the next
	// RecordSkipped records it; a run of the same firing instead keeps its copy (it never ran: it may).
	halfSkipped := func(at time.Time) job.Execution {
		t.Helper()
		e := skippedExec(execution("j", at, job.TriggerSchedule))
		fence := fenceDoc{ID: e.ID, Job: e.Job, ScheduledAt: storedTime(e.ScheduledAt), Epoch: e.Epoch, Skipped: true}
		if _, err := s.db.Collection(fenceName(e.ScheduledAt)).InsertOne(ctx, fence); err != nil {
			t.Fatal(err)
		}
		return e
	}
	d := halfSkipped(t0.Add(4 * time.Minute))
	if dups, err := s.InsertExecutions(ctx, []job.Execution{execution("j", d.ScheduledAt, job.TriggerSchedule)}); err != nil || len(dups) != 1 {
		t.Fatalf("InsertExecutions of a half-recorded skip = %v, %v", dups, err)
	}
	if open, err := s.OpenByID(ctx, []string{d.ID}); err != nil || len(open) != 1 || open[0].State != job.StatePending {
		t.Fatalf("a half-recorded skip fired again to run: open %+v, %v; want its pending copy", open, err)
	}
	c := halfSkipped(t0.Add(3 * time.Minute))
	if dups, err := s.RecordSkipped(ctx, into, []job.Execution{c}, now); err != nil || len(dups) > 0 {
		t.Fatalf("RecordSkipped of a half-recorded skip = %v, %v; want it recorded", dups, err)
	}
	if e, err := s.GetExecution(ctx, c.ID); err != nil || e.State != job.StateSkipped {
		t.Fatalf("GetExecution of a half-recorded skip after its retry = %+v, %v", e, err)
	}

	if _, err := s.RecordSkipped(ctx, into, []job.Execution{execution("j", t0.Add(5*time.Minute), job.TriggerSchedule)}, now); err == nil {
		t.Fatal("RecordSkipped took an execution that is not skipped")
	}
	// A term that ended here writes no more: a writer made again would reuse its buckets' names.
	if _, err := s.RecordSkipped(ctx, HistorySeries{Epoch: 4, Series: SkipSeries, Span: time.Hour, Size: 100}, []job.Execution{skippedExec(execution("j", t0.Add(6*time.Minute), job.TriggerSchedule))}, now); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RecordSkipped(ctx, into, []job.Execution{skippedExec(execution("j", t0.Add(7*time.Minute), job.TriggerSchedule))}, now); err == nil {
		t.Fatal("RecordSkipped wrote for term 3 after term 4")
	}
}
