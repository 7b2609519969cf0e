// Package workflow holds the rules of batch workflows (issue 17): a batch is a named graph of nodes, each
// running a job (in partitions, on the run's frequencies), joined by edges whose control flag says when
// the node after may start. A Run applies the rules to one run of a batch, event by event: it keeps for
// every node the count of its edges not yet resolved, and a node whose count reaches zero is decided at
// once (ready, skipped or blocked). Nothing rescans the graph, so a run of n nodes and e edges costs
// O(n + e) over its whole life.
//
// This package is the graph's rules only. The leader keeps a Run per open batch run and dispatches what
// it makes ready through the execution path (server/batchrun.go); a new leader rebuilds each Run from what
// the store recorded with Restore.
package workflow
