package api

import (
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/workflow"
)

// Batch workflows: a batch is a named graph of jobs (workflow.Definition), run for a cycle. (The bulk job
// request, POST /api/v1/jobs:batch, is another thing: see BatchRequest.)

// BatchRunRequest is the body of POST /api/v1/batches/{name}/runs: start a run for a cycle.
type BatchRunRequest struct {
	// Cycle names the run (a business date, "2026-12-15"): a batch runs once per cycle.
	Cycle string `json:"cycle"`
	// Frequency selects the nodes that run ("D", "W", "M", or any name a node lists); empty: those that
	// list none.
	Frequency string `json:"frequency,omitempty"`
	// Params are given to every node's job, over the job's own where it lets a firing change them.
	Params map[string]string `json:"params,omitempty"`
	// Rerun: when the cycle has a run already, rerun it from the point of failure instead of refusing.
	Rerun bool   `json:"rerun,omitempty"`
	Why   string `json:"why,omitempty"`
}

// ResourceRequest is the body of PUT /api/v1/resources/{name}: how many units of a counted resource batch
// nodes may hold at once.
type ResourceRequest struct {
	Capacity int `json:"capacity"`
}

// BatchOperationRequest is the body of an operation on a run (pause, resume, stop, rerun, reset, skip).
type BatchOperationRequest struct {
	Why string `json:"why,omitempty"`
}

// BatchRunStatus is a run and where each of its nodes stands.
type BatchRunStatus struct {
	Run   store.BatchRun        `json:"run"`
	Nodes []workflow.NodeStatus `json:"nodes"`
	// Edges are the graph's, as in the version the run runs.
	Edges []workflow.Edge `json:"edges,omitempty"`
	// Running counts the executions under way; Executions names them (at most 1,000).
	Running    int      `json:"running"`
	Executions []string `json:"executions,omitempty"`
	// Waiting names the executions waiting for their node's locks or resources, or for a client that may
	// run them (none serves the job, or carries the labels its job and node ask), and what they wait for.
	Waiting    []string               `json:"waiting,omitempty"`
	Operations []store.BatchOperation `json:"operations,omitempty"`
	// Live: the leader follows the run and answered; otherwise the status is rebuilt from the store.
	Live bool `json:"live"`
}
