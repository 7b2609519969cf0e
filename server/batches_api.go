package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/workflow"
)

// The batch routes (see api.Routes): definitions are written to the store by the server that leads (so
// that a write is checked against the jobs the leader knows); runs and their operations are made by the
// leader loop (batchops.go).

// writeList answers a list read from the store: [] rather than null when it is empty.
func writeList[T any](w http.ResponseWriter, list []T, err error) {
	if err != nil {
		writeError(w, storeStatus(err), err)
		return
	}
	if list == nil {
		list = []T{}
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) listBatches(w http.ResponseWriter, r *http.Request) {
	out, err := s.store.ListBatches(r.Context())
	writeList(w, out, err)
}

func (s *Server) getBatch(w http.ResponseWriter, r *http.Request) {
	b, err := s.store.GetBatch(r.Context(), r.PathValue("name"))
	if err != nil {
		writeError(w, storeStatus(err), err)
		return
	}
	writeJSON(w, http.StatusOK, definitionOf(b))
}

func definitionOf(b store.Batch) workflow.Definition {
	d := b.Definition
	d.Version = b.Version
	return d
}

// putBatch creates a batch (version 0) or replaces it at the version the body carries.
func (s *Server) putBatch(w http.ResponseWriter, r *http.Request) {
	message, ok := batchMessage(w, r)
	if !ok {
		return
	}
	var def workflow.Definition
	if err := decodeBody(r, &def); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("batch body: %w", err))
		return
	}
	name := r.PathValue("name")
	if def.Name == "" {
		def.Name = name
	}
	if def.Name != name {
		writeError(w, http.StatusBadRequest, fmt.Errorf("batch body names %q, the path %q", def.Name, name))
		return
	}
	if err := s.checkBatch(r, def); err != nil {
		writeError(w, storeStatus(err), err)
		return
	}
	expect := def.Version
	def.Version = 0
	def.Source = apiSource(def.Source)
	b, err := s.store.PutBatch(r.Context(), def, expect, callerOf(r.Context()).Name, message, s.now())
	if err != nil {
		writeError(w, storeStatus(err), err)
		return
	}
	note := noteAudit(r)
	note.before, note.after = expect, b.Version
	s.tellBatchChanged(def.Name)
	writeJSON(w, http.StatusOK, definitionOf(b))
}

// checkBatch refuses a definition the graph's rules refuse, or whose nodes name jobs that do not exist or
// run in local mode (fired by their clients only).
func (s *Server) checkBatch(r *http.Request, def workflow.Definition) error {
	if err := def.Validate(); err != nil {
		return fmt.Errorf("%w: %w", errBadRequest, err)
	}
	checked := map[string]bool{}
	for _, n := range def.Nodes {
		if err := job.ValidateParams("batch "+def.Name+": node "+n.Name+": params", n.Params); err != nil {
			return fmt.Errorf("%w: %w", errBadRequest, err)
		}
		if checked[n.Job] {
			continue
		}
		checked[n.Job] = true
		spec, err := s.store.GetJob(r.Context(), n.Job)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return fmt.Errorf("%w: batch %s: node %s: job %s does not exist", errBadRequest, def.Name, n.Name, n.Job)
		case err != nil:
			return err
		case spec.Mode == job.ModeLocal:
			return fmt.Errorf("%w: batch %s: node %s: job %s: %w", errBadRequest, def.Name, n.Name, n.Job, errLocalMode)
		}
	}
	return nil
}

func batchMessage(w http.ResponseWriter, r *http.Request) (string, bool) {
	if _, ok := withMessage(w, r, revisionNote{}); !ok {
		return "", false
	}
	return r.URL.Query().Get("message"), true
}

func (s *Server) deleteBatch(w http.ResponseWriter, r *http.Request) {
	message, ok := batchMessage(w, r)
	if !ok {
		return
	}
	var version int64
	if v := r.URL.Query().Get("version"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("version %q: want a positive number", v))
			return
		}
		version = n
	}
	if err := s.store.DeleteBatch(r.Context(), r.PathValue("name"), version, callerOf(r.Context()).Name, message, s.now()); err != nil {
		writeError(w, storeStatus(err), err)
		return
	}
	s.tellBatchChanged(r.PathValue("name"))
	w.WriteHeader(http.StatusNoContent)
}

// tellBatchChanged tells the leader term, if this server leads, to arm the batch's schedule again; the
// next term reads every batch anyway.
func (s *Server) tellBatchChanged(name string) {
	if l := s.lead.Load(); l != nil {
		l.notify(batchChanged{name: name})
	}
}

func (s *Server) listBatchRevisions(w http.ResponseWriter, r *http.Request) {
	out, err := s.store.ListBatchRevisions(r.Context(), r.PathValue("name"))
	switch {
	case err != nil:
		writeError(w, storeStatus(err), err)
	case len(out) == 0:
		writeError(w, http.StatusNotFound, fmt.Errorf("%w: batch %s", store.ErrNotFound, r.PathValue("name")))
	default:
		writeJSON(w, http.StatusOK, out)
	}
}

func (s *Server) startBatchRun(w http.ResponseWriter, r *http.Request) {
	var body api.BatchRunRequest
	if err := decodeBody(r, &body); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("batch run body: %w", err))
		return
	}
	s.batchOp(w, r, batchOpNote{op: "run", batch: r.PathValue("name"), cycle: body.Cycle, frequency: body.Frequency,
		params: body.Params, rerun: body.Rerun, why: body.Why}, http.StatusCreated)
}

// batchRunOp serves an operation on a run: pause, resume, stop, rerun, reset, or skip (of a node).
func (s *Server) batchRunOp(op string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var body api.BatchOperationRequest
		if err := decodeBody(r, &body); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("%s body: %w", op, err))
			return
		}
		s.batchOp(w, r, batchOpNote{op: op, batch: r.PathValue("name"), cycle: r.PathValue("cycle"), node: r.PathValue("node"), why: body.Why}, http.StatusOK)
	}
}

func (s *Server) batchOp(w http.ResponseWriter, r *http.Request, n batchOpNote, status int) {
	if len(n.why) > maxRevisionMessage {
		writeError(w, http.StatusBadRequest, fmt.Errorf("why: %d bytes, at most %d", len(n.why), maxRevisionMessage))
		return
	}
	n.who = callerOf(r.Context()).Name
	l := s.term(w)
	if l == nil {
		return
	}
	run, err := l.BatchOp(r.Context(), n)
	switch {
	case unanswered(err):
		termError(w, err)
	case err != nil:
		writeError(w, storeStatus(err), err)
	default:
		noteAudit(r).target = run.ID
		writeJSON(w, status, run)
	}
}

func (s *Server) listBatchRuns(w http.ResponseWriter, r *http.Request) {
	limit := 50
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("limit %q: want 1-1000", v))
			return
		}
		limit = n
	}
	out, err := s.store.ListBatchRuns(r.Context(), r.PathValue("name"), r.URL.Query().Get("open") == "true", limit)
	writeList(w, out, err)
}

// getBatchRun answers from the leader's live view of a run it follows, else from the store.
func (s *Server) getBatchRun(w http.ResponseWriter, r *http.Request) {
	id := store.BatchRunID(r.PathValue("name"), r.PathValue("cycle"))
	l := s.term(w)
	if l == nil {
		return
	}
	st, err := l.BatchStatus(r.Context(), id)
	if err != nil {
		termError(w, err)
		return
	}
	if st == nil {
		doc, err := s.store.GetBatchRun(r.Context(), id)
		if err != nil {
			writeError(w, storeStatus(err), err)
			return
		}
		rev, err := s.store.GetBatchRevision(r.Context(), doc.Batch, doc.Version)
		if err != nil {
			writeError(w, storeStatus(err), err)
			return
		}
		ends, err := s.store.ListBatchEnds(r.Context(), id)
		if err != nil {
			writeError(w, storeStatus(err), err)
			return
		}
		run, err := buildRun(doc, rev.Definition, ends, nil)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
		st = runStatus(run)
		st.Live, st.Running, st.Executions = false, 0, nil
	}
	ops, err := s.store.ListBatchOperations(r.Context(), id)
	if err != nil {
		writeError(w, storeStatus(err), err)
		return
	}
	st.Operations = ops
	slices.SortFunc(st.Operations, func(a, b store.BatchOperation) int { return a.At.Compare(b.At) })
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) listResources(w http.ResponseWriter, r *http.Request) {
	out, err := s.store.ListResources(r.Context())
	writeList(w, out, err)
}

// putResource sets a resource's capacity and tells the leader, which lets through what now fits.
func (s *Server) putResource(w http.ResponseWriter, r *http.Request) {
	var body api.ResourceRequest
	if err := decodeBody(r, &body); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("resource body: %w", err))
		return
	}
	name := r.PathValue("name")
	if err := workflow.ValidName("resource", name); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if body.Capacity < 0 || body.Capacity > workflow.MaxUnits {
		writeError(w, http.StatusBadRequest, fmt.Errorf("capacity %d: want 0-%d", body.Capacity, workflow.MaxUnits))
		return
	}
	res := store.Resource{Name: name, Capacity: body.Capacity, UpdatedAt: s.now(), UpdatedBy: callerOf(r.Context()).Name}
	if err := s.store.PutResource(r.Context(), res); err != nil {
		writeError(w, storeStatus(err), err)
		return
	}
	if l := s.lead.Load(); l != nil {
		reply := make(chan error, 1)
		if err, askErr := askTerm(r.Context(), l, resourcesChanged{reply: reply}, reply); askErr != nil || err != nil {
			// Stored: the next term reads it; this one goes on with the capacity it had.
			s.logger.Warn("the leader did not take a resource's new capacity", "resource", name, "err", errors.Join(askErr, err))
		}
	}
	writeJSON(w, http.StatusOK, res)
}

// maxRunExecutions bounds the executions one answer reads (each is a lookup by id).
const maxRunExecutions = 500

// batchRunExecutions serves the executions of a run: those whose end the run recorded (the latest round
// first), then those under way, at most maxRunExecutions.
func (s *Server) batchRunExecutions(w http.ResponseWriter, r *http.Request) {
	id := store.BatchRunID(r.PathValue("name"), r.PathValue("cycle"))
	ends, err := s.store.ListBatchEnds(r.Context(), id)
	if err != nil {
		writeError(w, storeStatus(err), err)
		return
	}
	slices.SortFunc(ends, func(a, b store.BatchEnd) int { return b.At.Compare(a.At) })
	var ids []string
	seen := map[string]bool{}
	add := func(x string) {
		if x != "" && !seen[x] && len(ids) < maxRunExecutions {
			seen[x] = true
			ids = append(ids, x)
		}
	}
	for _, e := range ends {
		add(e.Execution)
	}
	if l := s.lead.Load(); l != nil {
		if st, err := l.BatchStatus(r.Context(), id); err == nil && st != nil {
			for _, x := range st.Executions {
				add(x)
			}
		}
	}
	execs, err := s.store.ExecutionsByID(r.Context(), ids)
	if state := job.State(r.URL.Query().Get("state")); state != "" && err == nil {
		execs = slices.DeleteFunc(execs, func(e job.Execution) bool { return e.State != state })
	}
	writeList(w, execs, err)
}

// tagBatchRevision adds or removes a tag of a batch's version.
func (s *Server) tagBatchRevision(add bool) http.HandlerFunc {
	return s.tagHandler(add, revisionTags{
		what: func(name string, v int64) string { return fmt.Sprintf("version %d of batch %s", v, name) },
		lock: func(name string) func() { return s.jobLocks.lock("batch/" + name) }, // no job has a '/'
		get: func(ctx context.Context, name string, v int64) (any, *[]string, error) {
			rev, err := s.store.GetBatchRevision(ctx, name, v)
			return &rev, &rev.Tags, err
		},
		set: func(ctx context.Context, name string, v int64, tags []string) error {
			return s.store.SetBatchRevisionTags(ctx, name, v, tags) // s.store is set after the routes are
		},
	})
}
