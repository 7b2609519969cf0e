package server

import (
	"strings"
	"testing"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/wire"
)

func TestAnOutputAnswerReachesOnlyItsAskFromTheClientAsked(t *testing.T) {
	var o outputAsks
	id, answer := o.open("s1", "client-a")
	if other, _ := (&outputAsks{}).open("s1", "client-a"); other == id {
		t.Fatalf("two processes made the same ask id %q", id)
	}
	if o.deliver(&wire.Output{Header: wire.Header{From: "client-b"}, Ask: id, ExecID: "j@1"}) {
		t.Fatal("an answer from another client was taken")
	}
	if o.deliver(&wire.Output{Header: wire.Header{From: "client-a"}, Ask: "s1.99", ExecID: "j@1"}) {
		t.Fatal("an answer to an ask nobody made was taken")
	}
	if !o.deliver(&wire.Output{Header: wire.Header{From: "client-a"}, Ask: id, ExecID: "j@1", End: 3}) {
		t.Fatal("the answer was dropped")
	}
	if m := <-answer; m.End != 3 {
		t.Fatalf("answer %+v", m)
	}
	if o.deliver(&wire.Output{Header: wire.Header{From: "client-a"}, Ask: id, ExecID: "j@1"}) {
		t.Fatal("a second answer to the same ask was taken")
	}
	o.close(id)
}

func TestStoredOutputCountsOffsetsFromTheRunsStart(t *testing.T) {
	tail := strings.Repeat("t", 100)
	res := &job.Result{Output: tail, OutputBytes: 1000}
	tests := map[string]struct {
		offset           int64
		n                int
		start, next, end int64
	}{
		"from the start: only the tail is kept": {offset: 0, n: 64, start: 900, next: 964, end: 1000},
		"inside the tail":                       {offset: 950, n: 64, start: 950, next: 1000, end: 1000},
		"at the end":                            {offset: 1000, n: 64, start: 1000, next: 1000, end: 1000},
		"past the end":                          {offset: 5000, n: 64, start: 1000, next: 1000, end: 1000},
		"the last n bytes":                      {offset: -1, n: 10, start: 990, next: 1000, end: 1000},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := storedOutput(api.OutputChunk{}, res, tc.offset, tc.n)
			if c.Offset != tc.start || c.Next != tc.next || c.End != tc.end || !c.Ended || c.Source != "stored" || int64(len(c.Text)) != c.Next-c.Offset {
				t.Fatalf("chunk %+v, want %d-%d of %d", c, tc.start, tc.next, tc.end)
			}
		})
	}
	// An older result, without a count: its tail is all there is.
	if c := storedOutput(api.OutputChunk{}, &job.Result{Output: "abc"}, 0, 10); c.Offset != 0 || c.Text != "abc" || c.End != 3 {
		t.Fatalf("chunk %+v", c)
	}
}

func TestAChunkNeverEndsInsideACharacterWhileMoreMayFollow(t *testing.T) {
	data := []byte("né") // n, then é in two bytes
	c := withText(api.OutputChunk{}, 10, data[:2], false)
	if c.Text != "n" || c.Next != 11 {
		t.Fatalf("cut character kept: %+v", c)
	}
	if c := withText(api.OutputChunk{}, 10, data, false); c.Text != "né" || c.Next != 13 {
		t.Fatalf("whole character cut: %+v", c)
	}
	if c := withText(api.OutputChunk{}, 10, data[:2], true); c.Next != 12 {
		t.Fatalf("the end of an ended run was held back: %+v", c)
	}
	// A lone byte that may never be completed (Latin-1 é) is given rather than held for ever.
	if c := withText(api.OutputChunk{}, 16, []byte("\xe9"), false); c.Next != 17 {
		t.Fatalf("a reader at an incomplete last byte does not get on: %+v", c)
	}
}

func TestTheRunAskedIsTheNewestUnlessNamed(t *testing.T) {
	e := job.Execution{ID: "j@1", Run: 2, State: job.StateRetrying, Runs: []job.Event{{Run: 1, Client: "a", Result: &job.Result{Output: "first"}}}}
	if res, client := storedRun(e, 1); res == nil || res.Output != "first" || client != "a" {
		t.Fatalf("run 1: %v, %q", res, client)
	}
	if res, _ := storedRun(e, 2); res != nil {
		t.Fatalf("run 2 has not ended, yet %v", res)
	}
}
