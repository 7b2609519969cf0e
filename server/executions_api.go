package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/store"
)

// askLoop hands a request to this server's leader loop and waits for its reply. It writes the error
// response itself and returns false when there is no answer.
func askLoop[T any](s *Server, w http.ResponseWriter, r *http.Request, note any, reply chan T) (T, bool) {
	var zero T
	l := s.lead.Load()
	if l == nil {
		writeError(w, http.StatusServiceUnavailable, errors.New("leadership was lost; retry"))
		return zero, false
	}
	if !l.notify(note) {
		writeError(w, http.StatusServiceUnavailable, errors.New("the leader is overloaded; retry"))
		return zero, false
	}
	select {
	case rep := <-reply:
		return rep, true
	case <-r.Context().Done():
		writeError(w, http.StatusServiceUnavailable, r.Context().Err())
	case <-time.After(10 * time.Second):
		writeError(w, http.StatusServiceUnavailable, errors.New("the leader did not answer within 10s"))
	}
	return zero, false
}

// execAction stops a run, or decides for an orphaned execution (rerun, done).
func (s *Server) execAction(action string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var body api.ExecActionRequest
		if r.ContentLength != 0 {
			dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&body); err != nil && !errors.Is(err, io.EOF) {
				writeError(w, http.StatusBadRequest, fmt.Errorf("%s body: %w", action, err))
				return
			}
		}
		if action == "done" && body.Status == "" {
			body.Status = job.StateSucceeded
		}
		if len(body.Note) > 1024 {
			writeError(w, http.StatusBadRequest, errors.New("note: at most 1024 bytes"))
			return
		}
		id := r.PathValue("id")
		reply := make(chan error, 1)
		err, ok := askLoop(s, w, r, execAction{id: id, action: action, status: body.Status, note: body.Note, reply: reply}, reply)
		if !ok {
			return
		}
		if err != nil {
			writeError(w, storeStatus(err), fmt.Errorf("%s %s: %w", action, id, err))
			return
		}
		writeJSON(w, http.StatusAccepted, api.ExecActionResponse{Execution: id, Action: action})
	}
}

// getInflight shows the leader's live view of open executions: waiting for a client, queued, running...
func (s *Server) getInflight(w http.ResponseWriter, r *http.Request) {
	reply := make(chan []api.InFlight, 1)
	out, ok := askLoop(s, w, r, inflightRequest{job: r.URL.Query().Get("job"), reply: reply}, reply)
	if ok {
		writeJSON(w, http.StatusOK, out)
	}
}

// getHeartbeats says when the leader last heard each registered client.
func (s *Server) getHeartbeats(w http.ResponseWriter, r *http.Request) {
	reply := make(chan heartbeatsReply, 1)
	rep, ok := askLoop(s, w, r, heartbeatsRequest{reply: reply}, reply)
	if !ok {
		return
	}
	out := []api.ClientHeartbeat{}
	for _, m := range s.clients.Members() {
		hb := api.ClientHeartbeat{Client: m.ID, LastAt: rep.heard[m.ID], Since: m.StartedAt}
		if rep.start.After(hb.Since) {
			hb.Since = rep.start // a client is only as silent as this term could hear
		}
		out = append(out, hb)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) listExecutions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := store.ExecutionFilter{Job: q.Get("job"), State: job.State(q.Get("state"))}
	switch v := q.Get("archived"); v {
	case "", "false":
	case "true":
		f.Archived = true
	default:
		writeError(w, http.StatusBadRequest, fmt.Errorf("query archived=%q: must be true or false", v))
		return
	}
	switch f.State {
	case "", job.StatePending, job.StateRunning, job.StateRetrying, job.StateOrphaned, job.StateSucceeded, job.StateFailed, job.StateSkipped:
	default:
		writeError(w, http.StatusBadRequest, fmt.Errorf("query state=%q: must be pending, running, retrying, orphaned, succeeded, failed or skipped", f.State))
		return
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("query limit=%q: must be a number from 1 to 1000", v))
			return
		}
		f.Limit = n
	}
	if v := q.Get("before"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("query before=%q: must be an RFC 3339 time", v))
			return
		}
		f.Before = t
	}
	f.BeforeID = q.Get("before_id")
	if f.BeforeID != "" && f.Before.IsZero() {
		writeError(w, http.StatusBadRequest, errors.New("query before_id: needs before"))
		return
	}
	execs, err := s.store.ListExecutions(r.Context(), f)
	if err != nil {
		writeError(w, storeStatus(err), err)
		return
	}
	if execs == nil {
		execs = []job.Execution{}
	}
	writeJSON(w, http.StatusOK, execs)
}

func (s *Server) getExecution(w http.ResponseWriter, r *http.Request) {
	e, err := s.store.GetExecution(r.Context(), r.PathValue("id"))
	if err != nil {
		writeError(w, storeStatus(err), err)
		return
	}
	writeJSON(w, http.StatusOK, e)
}
