package histfill

import (
	"context"
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/testenv"
)

// What Fill records reads back as Clover wrote it: the oldest and the newest by id, newest first in a
// listing, one in ten failed.
func TestFillReadsBack(t *testing.T) {
	if testing.Short() {
		t.Skip("needs FerretDB")
	}
	f := testenv.StartFerretDB(t)
	s, err := store.Open(t.Context(), f.URI, "fill")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	end := time.Now().Add(-time.Hour).Truncate(time.Second)
	o := Options{Jobs: []string{"a", "b", "c"}, N: 2500, End: end, Spacing: time.Second}
	if err := Fill(t.Context(), s, o); err != nil {
		t.Fatal(err)
	}
	oldest := job.ExecutionID("a", end.Add(-2499*time.Second))
	newest := job.ExecutionID("a", end) // 2499 % 3 == 0
	for _, id := range []string{oldest, newest} {
		e, err := s.GetExecution(t.Context(), id)
		if err != nil || e.State.Terminal() == false || e.Result == nil {
			t.Fatalf("GetExecution(%s) = %+v, %v", id, e, err)
		}
	}
	list, err := s.ListExecutions(t.Context(), store.ExecutionFilter{Limit: 10})
	if err != nil || len(list) != 10 || list[0].ID != newest {
		t.Fatalf("ListExecutions = %d executions, first %v, %v; want 10, first %s", len(list), list, err, newest)
	}
	failed, err := s.ListExecutions(t.Context(), store.ExecutionFilter{State: job.StateFailed, Limit: store.MaxListLimit})
	if err != nil || len(failed) != 250 {
		t.Fatalf("failed = %d, %v; want 250", len(failed), err)
	}
}
