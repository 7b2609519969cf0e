package jobdiff

import (
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/job"
)

func TestDiffNamesEachChangedFieldOnly(t *testing.T) {
	a := job.Spec{Name: "etl", Schedule: "0 0 2 * * ?", Handler: "shell", Params: map[string]string{"command": "run-etl", "region": "eu"},
		Contacts: []string{"ops"}, Version: 3, UpdatedAt: time.Unix(1, 0)}
	b := a
	b.Params = map[string]string{"command": "run-etl --full", "mode": "full"}
	b.Schedule, b.Retry.Max, b.Paused, b.Version, b.UpdatedAt = "0 0 3 * * ?", 2, true, 4, time.Unix(2, 0)
	b.Contacts = nil
	got := Format(Diff(a, b))
	want := "- contacts: [\"ops\"]\n" +
		"~ params.command: run-etl → run-etl --full\n" +
		"+ params.mode: full\n" +
		"- params.region: eu\n" +
		"+ paused: true\n" +
		"+ retry.max: 2\n" +
		"~ schedule: 0 0 2 * * ? → 0 0 3 * * ?\n"
	if got != want {
		t.Fatalf("diff:\n%s\nwant:\n%s", got, want)
	}
	if d := Diff(a, a); len(d) != 0 {
		t.Fatalf("a job against itself: %v", d)
	}
	c := a
	c.Version, c.UpdatedAt = 9, time.Unix(9, 0)
	if d := Diff(a, c); len(d) != 0 {
		t.Fatalf("only the server's bookkeeping changed, yet: %v", d)
	}
}
