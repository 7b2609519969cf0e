package api

import "github.com/clover-sched/clover/internal/job"

// The operations of a bulk request (BatchOp.Op).
const (
	BatchCreate = "create"
	BatchUpdate = "update"
	BatchDelete = "delete"
)

// Bounds of one bulk request: a client with more sends several (clover job apply sends MaxBatchOps a
// request). MaxBatchBody allows MaxBatchOps definitions of 8 KiB each; the other routes take 1 MiB.
const (
	MaxBatchOps  = 1000
	MaxBatchBody = 8 << 20
)

// BatchRequest is the body of POST /api/v1/jobs:batch. Each operation succeeds or fails on its own, as
// the single-job route would answer it; none is undone when another fails.
type BatchRequest struct {
	Ops []BatchOp `json:"ops"`
}

// BatchOp is one operation of a bulk request.
type BatchOp struct {
	Op string `json:"op"` // create, update or delete
	// Name is the job of an update or a delete (an update may leave it out: Job.Name names it).
	Name string `json:"name,omitempty"`
	// Job is the definition a create or an update stores.
	Job *job.Spec `json:"job,omitempty"`
	// Version, when not 0, makes an update or a delete conditional: it is made only if the job is at this
	// version (else 409). An update may give it as Job.Version instead, as PUT /api/v1/jobs/{name} does.
	Version int64 `json:"version,omitempty"`
}

// BatchResponse answers a bulk request: one result per operation, in the order of the request.
type BatchResponse struct {
	Results   []BatchResult `json:"results"`
	Succeeded int           `json:"succeeded"`
	Failed    int           `json:"failed"`
}

// BatchResult is the outcome of one operation: the status the single-job route would have answered
// (201, 200, 204; 400, 404, 409, 507...), and the error when it failed.
type BatchResult struct {
	Op      string `json:"op"`
	Name    string `json:"name"`
	Status  int    `json:"status"`
	Version int64  `json:"version,omitempty"` // the job's version after a create or an update
	Error   string `json:"error,omitempty"`
}
