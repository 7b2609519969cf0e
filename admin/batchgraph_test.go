package admin

import (
	"encoding/xml"
	"strings"
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/workflow"
)

// The graph places a node right of what it waits for, colors it by state, collapses partitions to
// counts, escapes names, and is well-formed XML; the Gantt has a bar per execution.
func TestTheGraphAndTheGanttAreDrawnOnTheServer(t *testing.T) {
	nodes := []workflow.NodeStatus{
		{Name: "extract", Job: "x", State: workflow.Failed, Partitions: map[workflow.State]int{workflow.Succeeded: 2, workflow.Failed: 1}, Failed: []string{"B"}},
		{Name: "summary", Job: "r", State: workflow.Blocked},
		{Name: "alert", Job: "r", State: workflow.Succeeded},
	}
	edges := []workflow.Edge{{From: "extract", To: "summary"}, {From: "extract", To: "alert", Flag: workflow.OnFailure}}
	svg := string(drawGraph(nodes, edges))
	if err := xml.Unmarshal([]byte(svg), new(any)); err != nil {
		t.Fatalf("not well-formed: %v\n%s", err, svg)
	}
	for _, want := range []string{`class="node st-failed" id="graph-node-extract"`, "1 of 3 failed", `class="node st-blocked"`, `class="edge flag-failed"`, `href="#node-summary"`} {
		if !strings.Contains(svg, want) {
			t.Errorf("graph lacks %q", want)
		}
	}
	if x := func(name string) string {
		i := strings.Index(svg, `id="graph-node-`+name+`"`)
		return svg[i : i+200]
	}; strings.Contains(x("summary"), `x="10"`) || !strings.Contains(x("extract"), `x="10"`) {
		t.Errorf("summary must be drawn right of extract:\n%s\n%s", x("extract"), x("summary"))
	}
	if drawGraph(make([]workflow.NodeStatus, maxDrawnNodes+1), nil) != "" {
		t.Error("a graph past maxDrawnNodes is drawn")
	}
	t0 := time.Date(2026, 12, 31, 1, 0, 0, 0, time.UTC)
	gantt := string(drawGantt([]job.Execution{
		{ID: "y/c/extract/A", BatchNode: "extract", BatchPartition: "A", State: job.StateSucceeded, FiredAt: t0, FinishedAt: t0.Add(time.Minute)},
		{ID: "y/c/extract/B~r2", BatchNode: "extract", BatchPartition: "B", BatchRound: 2, State: job.StateRunning, FiredAt: t0.Add(30 * time.Second)},
	}, t0.Add(2*time.Minute)))
	if err := xml.Unmarshal([]byte(gantt), new(any)); err != nil {
		t.Fatalf("not well-formed: %v", err)
	}
	if strings.Count(gantt, `class="bar `) != 2 || !strings.Contains(gantt, "extract/B (round 2)") || !strings.Contains(gantt, "+2m0s") {
		t.Errorf("gantt:\n%s", gantt)
	}
}
