package store

import (
	"strings"
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/job"
)

// Every form of execution id is placed by the id alone: by the time it carries, its batch run, or in the
// untimed partition; an execution's reports, placed by the id alone, meet its copy.
func TestPartitionOfEveryIDForm(t *testing.T) {
	at := time.Date(2026, 12, 4, 10, 5, 17, 250_000_000, time.UTC)
	longName := strings.Repeat("b", 128)
	for _, tc := range []struct {
		name string
		id   string
		want string
	}{
		{"on schedule", job.ExecutionID("nightly", at), "open_p20261204T100510"},
		{"at a span's first instant", job.ExecutionID("j", at.Truncate(10*time.Second)), "open_p20261204T100510"},
		{"at a span's last millisecond", job.ExecutionID("j", at.Truncate(10*time.Second).Add(10*time.Second-time.Millisecond)), "open_p20261204T100510"},
		{"in another zone", job.ExecutionID("j", at.In(time.FixedZone("X", 5*3600))), "open_p20261204T100510"},
		{"a shard", job.ShardExecutionID(job.ExecutionID("split", at), 3), "open_p20261204T100510"},
		{"a local firing", job.LocalExecutionID("local.job", at, "client-1"), "open_p20261204T100510"},
		{"a local firing of a client named with a slash", job.LocalExecutionID("local.job", at, "host/1"), "open_p20261204T100510"},
		{"a shard of a local firing", job.ShardExecutionID(job.LocalExecutionID("l", at, "c"), 0), "open_p20261204T100510"},
		{"a manual trigger", job.ManualExecutionID("j", "tok"), "open_untimed"},
		{"a run request", job.RequestExecutionID("j", "req/1@x"), "open_untimed"},
		{"a run request whose id looks like a time", job.RequestExecutionID("j", at.Format(time.RFC3339Nano)), "open_untimed"},
		{"a batch node", job.BatchExecutionID(BatchRunID("eod", "2026-12-04"), "load", "", 1), "open_b_eod~2026-12-04"},
		{"a batch node's partition in a later round", job.BatchExecutionID(BatchRunID("eod", "2026-12-04"), "load", "p-7", 3), "open_b_eod~2026-12-04"},
		{"a batch of long names", job.BatchExecutionID(BatchRunID(longName, "c"), "n", "", 1), "open_b_h"},
		{"not an id", "", "open_untimed"},
		{"a slash first", "/x@" + at.Format(time.RFC3339Nano), "open_p20261204T100510"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := PartitionOf(tc.id)
			switch {
			case !strings.HasPrefix(p.Name, tc.want) || tc.want != "open_b_h" && p.Name != tc.want:
				t.Fatalf("PartitionOf(%q) = %q; want %q", tc.id, p.Name, tc.want)
			case len(p.Name) > 100:
				t.Fatalf("PartitionOf(%q) = %q: %d bytes, more than a namespace leaves room for", tc.id, p.Name, len(p.Name))
			}
			if strings.HasPrefix(tc.want, "open_p") && (p.Start.After(at.Add(time.Hour)) || !p.Start.Equal(p.Start.Truncate(PartitionSpan))) {
				t.Fatalf("start %v is not a span's start", p.Start)
			}
		})
	}
}

// Two batch runs never share a partition, whatever their names: a partition goes with its run.
func TestBatchPartitionsAreTheirRuns(t *testing.T) {
	seen := map[string]string{}
	for _, run := range [][2]string{{"a.b", "c"}, {"a", "b.c"}, {"a-b", "c"}, {"a", "b-c"}, {strings.Repeat("x", 100), "1"}, {strings.Repeat("x", 100), "2"}} {
		p := PartitionOf(job.BatchExecutionID(BatchRunID(run[0], run[1]), "n", "", 1))
		if prev, dup := seen[p.Name]; dup {
			t.Fatalf("runs %s and %v share %s", prev, run, p.Name)
		}
		seen[p.Name] = run[0] + "/" + run[1]
	}
}
