package store

import (
	"errors"
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/job"
)

func TestStatsAreUpsertedPerJob(t *testing.T) {
	t.Parallel()
	s := testStore(t)
	ctx := t.Context()
	if _, err := s.GetStats(ctx, "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetStats of a job without stats = %v, want ErrNotFound", err)
	}
	first := []job.Stats{
		{Job: "a", AvgRuntime: job.Duration(3 * time.Second), UpdatedAt: t0},
		{Job: "b", Misfires: 4, LastMisfireAt: t0.Add(1234567 * time.Nanosecond), UpdatedAt: t0},
	}
	if err := s.SaveStats(ctx, first); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveStats(ctx, []job.Stats{{Job: "a", AvgRuntime: job.Duration(5 * time.Second), Misfires: 1, UpdatedAt: t0.Add(time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	all, err := s.ListStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || time.Duration(all["a"].AvgRuntime) != 5*time.Second || all["a"].Misfires != 1 {
		t.Fatalf("stats %+v, want a replaced by the second save", all)
	}
	b, err := s.GetStats(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	if b.Misfires != 4 || !b.LastMisfireAt.Equal(storedTime(t0.Add(1234567*time.Nanosecond))) {
		t.Fatalf("stats of b %+v", b)
	}
}
