package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/store"
)

// batchJobs serves POST /api/v1/jobs:batch: the creations in one insert, the updates in one read and one
// bulk write, the deletions likewise, each operation answered on its own with the status its single-job
// route would give. Not all-or-nothing: neither FerretDB nor a MongoDB without a replica set has
// transactions, and an operator loading thousands of jobs wants the good ones in and a list of the bad.
//
// A job may appear in one operation of a request only, so that the order of the operations never
// matters (creations are made before updates, updates before deletions). The request's whole body is
// refused only when it cannot be read, holds no operation or more than api.MaxBatchOps.
func (s *Server) batchJobs(w http.ResponseWriter, r *http.Request) {
	r, ok := withMessage(w, r, revisionNote{})
	if !ok {
		return
	}
	var req api.BatchRequest
	dec := json.NewDecoder(r.Body) // bounded by the route's MaxBody
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		status := http.StatusBadRequest
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			status = http.StatusRequestEntityTooLarge
		}
		writeError(w, status, fmt.Errorf("bulk request: %w", err))
		return
	}
	switch n := len(req.Ops); {
	case n == 0:
		writeError(w, http.StatusBadRequest, errors.New("bulk request: no operations (ops)"))
		return
	case n > api.MaxBatchOps:
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("bulk request: %d operations, at most %d a request: send several", n, api.MaxBatchOps))
		return
	}

	now := s.now().UTC()
	b := &batch{results: make([]api.BatchResult, len(req.Ops)), before: map[int]int64{}}
	seen := make(map[string]int, len(req.Ops))
	for i, op := range req.Ops {
		res := &b.results[i]
		res.Op = op.Op
		spec, version, err := checkOp(op)
		res.Name = spec.Name
		if j, dup := seen[spec.Name]; err == nil && dup {
			err = fmt.Errorf("job %s is in operations %d and %d of this request: a job may be in one only", spec.Name, j, i)
		}
		if err != nil {
			res.Status, res.Error = http.StatusBadRequest, err.Error()
			continue
		}
		seen[spec.Name] = i
		switch op.Op {
		case api.BatchCreate:
			b.creates = append(b.creates, s.stampNew(spec))
			b.createAt = append(b.createAt, i)
		case api.BatchUpdate:
			spec.Version = version
			b.updates = append(b.updates, spec)
			b.updateAt = append(b.updateAt, i)
		case api.BatchDelete:
			b.deletes = append(b.deletes, spec.Name)
			b.deleteVersions = append(b.deleteVersions, version)
			b.deleteAt = append(b.deleteAt, i)
		}
	}
	b.run(s, r, now)

	// One audit entry per operation, written together; the route's own entry would say less.
	noteAudit(r).itemized = true
	c := callerOf(r.Context())
	resp := api.BatchResponse{Results: b.results}
	entries := make([]store.AuditEntry, len(b.results))
	for i, res := range b.results {
		entries[i] = store.AuditEntry{
			At: now, Who: c.Name, Role: c.Role, Via: c.via(), Server: s.cfg.ID,
			Action: "POST /api/v1/jobs:batch " + res.Op, Target: res.Name, Status: res.Status,
			Before: b.before[i], After: res.Version, Error: res.Error,
		}
		if res.Error == "" {
			resp.Succeeded++
		} else {
			resp.Failed++
		}
	}
	s.auditEntries(r, entries...)
	writeJSON(w, http.StatusOK, resp)
}

// batch is a bulk request's operations, sorted by kind, with the position of each in the request.
type batch struct {
	results                      []api.BatchResult
	before                       map[int]int64 // the version each operation replaced or deleted
	creates                      []job.Spec
	updates                      []job.Spec // Version: the version expected, 0 for any
	deletes                      []string
	deleteVersions               []int64
	createAt, updateAt, deleteAt []int
}

func (b *batch) run(s *Server, r *http.Request, now time.Time) {
	ctx := r.Context()
	if len(b.creates) > 0 {
		for k, err := range s.createJobs(ctx, b.creates) {
			b.answer(b.createAt[k], http.StatusCreated, b.creates[k].Version, err)
		}
	}
	if len(b.updates) > 0 {
		names := make([]string, len(b.updates))
		for k, spec := range b.updates {
			names[k] = spec.Name
		}
		out, errs := s.updateJobs(ctx, names, func(k int, cur job.Spec) (job.Spec, error) {
			return replaced(cur, b.updates[k], now)
		})
		for k, err := range errs {
			if err == nil {
				b.before[b.updateAt[k]] = out[k].Version - 1
			}
			b.answer(b.updateAt[k], http.StatusOK, out[k].Version, err)
		}
	}
	if len(b.deletes) > 0 {
		old, errs := s.deleteJobs(ctx, b.deletes, b.deleteVersions)
		for k, err := range errs {
			b.before[b.deleteAt[k]] = old[k].Version
			b.answer(b.deleteAt[k], http.StatusNoContent, 0, err)
		}
	}
}

func (b *batch) answer(i, ok int, version int64, err error) {
	res := &b.results[i]
	if err != nil {
		res.Status, res.Error = storeStatus(err), err.Error()
		return
	}
	res.Status, res.Version = ok, version
}

// checkOp checks one operation and returns the job it writes (a creation or update's definition, or just
// the name of a deletion) and the version it is conditional on (0: none).
func checkOp(op api.BatchOp) (job.Spec, int64, error) {
	var spec job.Spec
	if op.Job != nil {
		spec = *op.Job
	}
	if spec.Name == "" {
		spec.Name = op.Name
	}
	if op.Name != "" && spec.Name != op.Name {
		return spec, 0, fmt.Errorf("job name %q differs from the operation's name %q; a job cannot be renamed", spec.Name, op.Name)
	}
	if err := job.ValidateName(spec.Name); err != nil {
		return spec, 0, err
	}
	switch op.Op {
	case api.BatchCreate, api.BatchUpdate:
		if op.Job == nil {
			return spec, 0, fmt.Errorf("job %s: %s needs the job's definition (job)", spec.Name, op.Op)
		}
		version := op.Version
		switch {
		case op.Op == api.BatchCreate:
			version = 0 // as POST /api/v1/jobs, a creation makes version 1 whatever it is given
		case version == 0:
			version = spec.Version
		case spec.Version != 0 && spec.Version != version:
			return spec, 0, fmt.Errorf("job %s: version %d and job.version %d differ", spec.Name, op.Version, spec.Version)
		}
		return spec, version, validateSpec(spec)
	case api.BatchDelete:
		if op.Job != nil {
			return spec, 0, fmt.Errorf("job %s: a deletion takes a name (and a version), not a definition", spec.Name)
		}
		return spec, op.Version, nil
	}
	return spec, 0, fmt.Errorf("job %s: op %q: want %s, %s or %s", spec.Name, op.Op, api.BatchCreate, api.BatchUpdate, api.BatchDelete)
}
