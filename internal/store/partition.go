package store

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"
)

// The partitioned open set (docs/design.md, record 19; see partitionedOpenSet): each execution's copy and
// events live in collections chosen from its id alone, so that a partition can be read once, when
// everything in it has ended, and dropped, instead of every close scanning the whole set. Every writer
// places an execution the same way whatever it knows of it: the leader knows the whole execution, an
// intake recording a report knows only its id.

// PartitionSpan is how much scheduled time one time partition holds.
const PartitionSpan = 10 * time.Second

const (
	partitionTimePrefix  = "open_p"
	partitionBatchPrefix = "open_b_"
	// partitionUntimed holds the executions whose id carries no time: manual triggers and run requests,
	// a small share of firings, closed by their ids as the single open set is.
	partitionUntimed = "open_untimed"
	// maxReadableBatchRun bounds the batch run ids a partition is named after as they are; longer ones
	// (a batch name and a cycle may be 128 characters each) are named by their hash, within the 255
	// bytes a MongoDB namespace may have.
	maxReadableBatchRun = 96
)

// Partition is where an execution goes in the partitioned open set.
type Partition struct {
	Name string
	// Start is the first scheduled time a time partition holds; zero for a batch run's.
	Start time.Time
}

// PartitionOf places the execution id:
//   - an id that carries its scheduled time (a firing on schedule, a catch-up, a shard of either, a
//     client's local firing) goes to the time partition of that time;
//   - a batch run's execution (run/node[/partition][~r<round>]) goes to its run's partition, dropped with
//     the run;
//   - an id without a time (a manual trigger, a run request) goes to the untimed partition. (Placing it
//     by the scheduled time only the leader knows would make a follower's intake relay its reports.)
func PartitionOf(id string) Partition {
	if i := strings.IndexAny(id, "@/"); i > 0 && id[i] == '/' {
		return batchPartition(id)
	}
	if at, timed := scheduledFromID(id); timed {
		return timePartition(at)
	}
	return Partition{Name: partitionUntimed}
}

func timePartition(at time.Time) Partition {
	start := at.UTC().Truncate(PartitionSpan)
	return Partition{Name: partitionTimePrefix + start.Format("20060102T150405"), Start: start}
}

// batchPartition names the partition of a batch execution id after its run: the id's first two parts
// (batch/cycle), whose characters are letters, digits, '.', '_' and '-', joined by '~', which neither has.
func batchPartition(id string) Partition {
	parts := strings.SplitN(id, "/", 3)
	run := parts[0]
	if len(parts) > 1 {
		run += "~" + strings.SplitN(parts[1], "~", 2)[0]
	}
	if len(run) > maxReadableBatchRun || strings.ContainsAny(run, "$\x00") {
		sum := sha256.Sum256([]byte(run))
		return Partition{Name: partitionBatchPrefix + "h" + hex.EncodeToString(sum[:16])}
	}
	return Partition{Name: partitionBatchPrefix + run}
}
