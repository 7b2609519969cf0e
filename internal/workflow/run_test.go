package workflow

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func def(edges ...Edge) Definition {
	d := Definition{Name: "eod"}
	seen := map[string]bool{}
	for _, e := range edges {
		for _, n := range []string{e.From, e.To} {
			if !seen[n] {
				seen[n] = true
				d.Nodes = append(d.Nodes, Node{Name: n, Job: "job-" + n})
			}
		}
	}
	d.Edges = edges
	return d
}

func e(from, to string, flag Flag) Edge { return Edge{From: from, To: to, Flag: flag} }

// run starts a run and plays it: each node that becomes ready is started and ends as outcome says
// (true: success; a node missing from it succeeds), until nothing is ready. It returns the run and the
// order the nodes started in.
func play(t *testing.T, r *Run, outcome map[string]bool) []string {
	t.Helper()
	var started []string
	for {
		ready := r.Ready()
		if len(ready) == 0 {
			return started
		}
		for _, n := range ready {
			if err := r.Start(n); err != nil {
				t.Fatal(err)
			}
			started = append(started, n)
			ok, given := outcome[n]
			if err := r.EndPartition(n, "", ok || !given); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func states(r *Run, names ...string) string {
	var out []string
	for _, n := range names {
		s, _ := r.State(n)
		out = append(out, n+"="+string(s))
	}
	return strings.Join(out, " ")
}

func TestDefinitionsAreValidatedWithTheFaultNamed(t *testing.T) {
	for name, tc := range map[string]struct {
		d    Definition
		want string
	}{
		"cycle":          {def(e("a", "b", ""), e("b", "c", ""), e("c", "a", OnFailure)), "batch eod: cycle: a → b → c → a"},
		"disabled cycle": {def(e("a", "b", ""), e("b", "a", Disabled)), "cycle: a → b → a"},
		"unknown node":   {Definition{Name: "eod", Nodes: []Node{{Name: "a", Job: "j"}}, Edges: []Edge{e("a", "x", "")}}, `edges[0]: to "x": no such node`},
		"bad flag":       {def(e("a", "b", "sometimes")), `edges[0]: flag "sometimes"`},
		"repeated edge":  {def(e("a", "b", ""), e("a", "b", OnFailure)), "a → b is given twice"},
		"self":           {Definition{Name: "eod", Nodes: []Node{{Name: "a", Job: "j"}}, Edges: []Edge{e("a", "a", "")}}, "a waits for itself"},
		"no job":         {Definition{Name: "eod", Nodes: []Node{{Name: "a"}}}, "node a: job is required"},
		"twice":          {Definition{Name: "eod", Nodes: []Node{{Name: "a", Job: "j"}, {Name: "a", Job: "j"}}}, "node a: named twice"},
		"partition":      {Definition{Name: "eod", Nodes: []Node{{Name: "a", Job: "j", Partitions: []string{"A", "A"}}}}, `partition "A": repeated`},
		"bad name":       {Definition{Name: "eod/x", Nodes: []Node{{Name: "a", Job: "j"}}}, `batch name "eod/x"`},
	} {
		t.Run(name, func(t *testing.T) {
			err := tc.d.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want %q", err, tc.want)
			}
			if strings.Contains(name, "cycle") && !errors.Is(err, ErrCycle) {
				t.Fatalf("%v is not ErrCycle", err)
			}
		})
	}
}

// Every control flag, for both outcomes of the node before.
func TestEachControlFlagDecidesTheNodeAfter(t *testing.T) {
	d := def(e("a", "onSuccess", OnSuccess), e("a", "onFailure", OnFailure), e("a", "onCompletion", OnCompletion), e("a", "disabled", Disabled),
		e("onFailure", "afterRecovery", OnSuccess), e("onSuccess", "afterSuccess", OnCompletion))
	for _, tc := range []struct {
		aOK  bool
		want string
	}{
		// A node that does not run counts as succeeded for the nodes after it (the design's rule), a branch
		// not taken as much as a node off the frequency.
		{true, "onSuccess=succeeded onFailure=skipped onCompletion=succeeded disabled=succeeded afterRecovery=succeeded afterSuccess=succeeded"},
		{false, "onSuccess=blocked onFailure=succeeded onCompletion=succeeded disabled=succeeded afterRecovery=succeeded afterSuccess=blocked"},
	} {
		r, err := NewRun(d, "D")
		if err != nil {
			t.Fatal(err)
		}
		play(t, r, map[string]bool{"a": tc.aOK})
		got := states(r, "onSuccess", "onFailure", "onCompletion", "disabled", "afterRecovery", "afterSuccess")
		if got != tc.want || !r.Done() {
			t.Errorf("a ok=%v:\n got %s\nwant %s (done %v)", tc.aOK, got, tc.want, r.Done())
		}
	}
}

// A node off the run's frequency does not run and counts as succeeded for the nodes after it, once the
// nodes before it have ended.
func TestANodeOffTheFrequencyIsSkippedAndCountsAsSucceeded(t *testing.T) {
	d := def(e("extract", "monthly", OnSuccess), e("monthly", "report", OnSuccess))
	d.Nodes[1].Frequencies = []string{"M"}
	for freq, want := range map[string][]string{"D": {"extract", "report"}, "M": {"extract", "monthly", "report"}} {
		r, err := NewRun(d, freq)
		if err != nil {
			t.Fatal(err)
		}
		if got := play(t, r, nil); !slices.Equal(got, want) {
			t.Errorf("frequency %s ran %v, want %v", freq, got, want)
		}
	}
	// Skipped only once the nodes before it ended; a failure before it still blocks what is after.
	r, _ := NewRun(d, "D")
	if s, _ := r.State("monthly"); s != Waiting {
		t.Fatalf("monthly before extract ended: %s", s)
	}
	play(t, r, map[string]bool{"extract": false})
	if got := states(r, "monthly", "report"); got != "monthly=blocked report=blocked" {
		t.Fatalf("after extract failed: %s", got)
	}
}

// The year-end batch: extract per department A, B, C; the head-office summary and the branch reports
// after it, in parallel; the final report after the summary. Partition B fails: only what depends on the
// extract stops; a rerun from failure runs partition B alone, then the rest, and nothing that succeeded
// twice.
func TestAFailedPartitionStopsItsDependentsAndARerunRepeatsOnlyIt(t *testing.T) {
	d := def(e("extract", "summary", OnSuccess), e("extract", "branches", OnSuccess), e("summary", "final", OnSuccess), e("audit", "final", OnSuccess))
	d.Nodes[0].Partitions = []string{"A", "B", "C"}
	r, err := NewRun(d, "Y")
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Ready(); !slices.Equal(got, []string{"extract", "audit"}) {
		t.Fatalf("ready at start: %v", got)
	}
	for _, n := range []string{"extract", "audit"} {
		if err := r.Start(n); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(r.EndPartition("extract", "A", true))
	must(r.EndPartition("extract", "B", false))
	if s, _ := r.State("extract"); s != Running {
		t.Fatalf("extract with C under way: %s", s)
	}
	must(r.EndPartition("audit", "", true))
	must(r.EndPartition("extract", "C", true))
	if err := r.EndPartition("extract", "C", true); err == nil {
		t.Fatal("a partition ended twice")
	}
	if got := states(r, "extract", "summary", "branches", "final", "audit"); got != "extract=failed summary=blocked branches=blocked final=blocked audit=succeeded" {
		t.Fatalf("after B failed: %s", got)
	}
	if _, why := r.State("extract"); why != "1 of 3 partitions failed" {
		t.Fatalf("why extract failed: %q", why)
	}

	again := r.Rerun()
	if got := again.Ready(); !slices.Equal(got, []string{"extract"}) {
		t.Fatalf("ready in the rerun: %v, want extract only", got)
	}
	must(again.Start("extract"))
	if a, b := again.PartitionState("extract", "A"), again.PartitionState("extract", "B"); a != Succeeded || b != Running {
		t.Fatalf("rerun partitions: A %s, B %s; want A kept, B running again", a, b)
	}
	if err := again.EndPartition("extract", "A", true); err == nil {
		t.Fatal("partition A, kept from the first run, ended again")
	}
	must(again.EndPartition("extract", "B", true))
	if got := play(t, again, nil); !slices.Equal(got, []string{"summary", "branches", "final"}) {
		t.Fatalf("the rerun ran %v after extract, want summary, branches, final", got)
	}
	if s, _ := again.State("audit"); s != Succeeded || !again.Done() {
		t.Fatalf("audit %s, done %v", s, again.Done())
	}
}

// A person marks a failed node succeeded: what it blocked is decided again; another failure stays.
func TestMarkingAFailedNodeSucceededDecidesWhatItBlocked(t *testing.T) {
	d := def(e("load", "post", OnSuccess), e("post", "mail", OnCompletion), e("other", "tail", OnSuccess))
	r, _ := NewRun(d, "D")
	play(t, r, map[string]bool{"load": false, "other": false})
	if got := states(r, "load", "post", "mail", "other", "tail"); got != "load=failed post=blocked mail=blocked other=failed tail=blocked" {
		t.Fatalf("before: %s", got)
	}
	if err := r.MarkSucceeded("load", "loaded by hand"); err != nil {
		t.Fatal(err)
	}
	if got := play(t, r, nil); !slices.Equal(got, []string{"post", "mail"}) {
		t.Fatalf("after the mark ran %v, want post, mail", got)
	}
	if got := states(r, "other", "tail"); got != "other=failed tail=blocked" {
		t.Fatalf("the other failure: %s", got)
	}
	if _, why := r.State("load"); why != "marked succeeded: loaded by hand" {
		t.Fatalf("why: %q", why)
	}
	if err := r.MarkSucceeded("post", "again"); err == nil {
		t.Fatal("a succeeded node was marked again")
	}
}

// A table of graphs, each run to its end with the outcomes given: the order of starts respects every
// edge, and each node starts at most once.
func TestEveryNodeStartsAfterWhatItWaitsForAndAtMostOnce(t *testing.T) {
	for name, tc := range map[string]struct {
		d       Definition
		fail    []string
		started []string
	}{
		"chain":                          {def(e("a", "b", ""), e("b", "c", ""), e("c", "d", "")), nil, []string{"a", "b", "c", "d"}},
		"diamond":                        {def(e("a", "b", ""), e("a", "c", ""), e("b", "d", ""), e("c", "d", "")), nil, []string{"a", "b", "c", "d"}},
		"diamond, b fails, d wants both": {def(e("a", "b", ""), e("a", "c", ""), e("b", "d", ""), e("c", "d", "")), []string{"b"}, []string{"a", "b", "c"}},
		"join on completion":             {def(e("a", "b", OnCompletion), e("c", "b", OnCompletion)), []string{"a", "c"}, []string{"a", "c", "b"}},
		"recovery then continue":         {def(e("a", "fix", OnFailure), e("fix", "b", OnSuccess), e("a", "b", OnCompletion)), []string{"a"}, []string{"a", "fix", "b"}},
	} {
		t.Run(name, func(t *testing.T) {
			r, err := NewRun(tc.d, "D")
			if err != nil {
				t.Fatal(err)
			}
			outcome := map[string]bool{}
			for _, f := range tc.fail {
				outcome[f] = false
			}
			got := play(t, r, outcome)
			if !slices.Equal(got, tc.started) {
				t.Fatalf("started %v, want %v", got, tc.started)
			}
			if !r.Done() {
				t.Fatal("the run did not end")
			}
		})
	}
}

// Ten thousand nodes in a chain, and one node with ten thousand after it: each is decided by the
// events of the nodes before it, none rescans the graph (the run ends; each node starts once).
func TestLargeGraphsRunByEvents(t *testing.T) {
	var chain []Edge
	for i := range 10000 {
		chain = append(chain, e(fmt.Sprint("n", i), fmt.Sprint("n", i+1), ""))
	}
	var fan []Edge
	for i := range 10000 {
		fan = append(fan, e("root", fmt.Sprint("leaf", i), ""))
	}
	for name, d := range map[string]Definition{"chain": def(chain...), "fan-out": def(fan...)} {
		r, err := NewRun(d, "D")
		if err != nil {
			t.Fatal(err)
		}
		if got := play(t, r, nil); len(got) != len(d.Nodes) || !r.Done() {
			t.Fatalf("%s: started %d of %d", name, len(got), len(d.Nodes))
		}
	}
}
