package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/store"
)

// term is this server's leader term, or nil after writing the error a caller gets when there is none.
func (s *Server) term(w http.ResponseWriter) *leader {
	l := s.lead.Load()
	if l == nil {
		writeError(w, http.StatusServiceUnavailable, errors.New("leadership was lost; retry"))
	}
	return l
}

// unanswered reports whether err says that the term did not answer (rather than answered no).
func unanswered(err error) bool {
	return errors.Is(err, errTermBusy) || errors.Is(err, errNoAnswer) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// termError writes the error of a question the term could not answer.
func termError(w http.ResponseWriter, err error) {
	writeError(w, http.StatusServiceUnavailable, err)
}

// execAction stops a run, or decides for an orphaned execution (rerun, done).
func (s *Server) execAction(action string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var body api.ExecActionRequest
		if err := decodeBody(r, &body); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("%s body: %w", action, err))
			return
		}
		if action == "done" && body.Status == "" {
			body.Status = job.StateSucceeded
		}
		if len(body.Note) > 1024 {
			writeError(w, http.StatusBadRequest, errors.New("note: at most 1024 bytes"))
			return
		}
		id := r.PathValue("id")
		l := s.term(w)
		if l == nil {
			return
		}
		err := l.Act(r.Context(), id, action, body.Status, body.Note)
		if unanswered(err) {
			termError(w, err)
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
	l := s.term(w)
	if l == nil {
		return
	}
	limit := 1000
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10_000 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("limit %q: want a number from 1 to 10000", v))
			return
		}
		limit = n
	}
	out, err := l.InFlight(r.Context(), r.URL.Query().Get("job"), limit)
	if err != nil {
		termError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// getBacklog summarizes what the leader holds open and how full its backlog is.
func (s *Server) getBacklog(w http.ResponseWriter, r *http.Request) {
	l := s.term(w)
	if l == nil {
		return
	}
	out, err := l.Backlog(r.Context())
	if err != nil {
		termError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// maxSearchBack is how far back a search by text or client may read.
const maxSearchBack = 31 * 24 * time.Hour

// getActivity answers the leader's minute counts.
func (s *Server) getActivity(w http.ResponseWriter, r *http.Request) {
	n := 60
	if v := r.URL.Query().Get("minutes"); v != "" {
		m, err := strconv.Atoi(v)
		if err != nil || m < 1 || m > activityMinutes {
			writeError(w, http.StatusBadRequest, fmt.Errorf("query minutes=%q: must be a number from 1 to %d", v, activityMinutes))
			return
		}
		n = m
	}
	l := s.term(w)
	if l == nil {
		return
	}
	out, err := l.Activity(r.Context(), n)
	if err != nil {
		termError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// getHeartbeats says when the leader last heard each registered client.
func (s *Server) getHeartbeats(w http.ResponseWriter, r *http.Request) {
	l := s.term(w)
	if l == nil {
		return
	}
	heard, start, err := l.Heartbeats(r.Context())
	if err != nil {
		termError(w, err)
		return
	}
	out := []api.ClientHeartbeat{}
	for _, m := range s.clients.Members() {
		hb := api.ClientHeartbeat{Client: m.ID, LastAt: heard[m.ID], Since: m.StartedAt}
		if start.After(hb.Since) {
			hb.Since = start // a client is only as silent as this term could hear
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
	f.Client, f.Text = q.Get("client"), q.Get("text")
	if len(f.Text) > 200 {
		writeError(w, http.StatusBadRequest, errors.New("query text: at most 200 bytes"))
		return
	}
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("query since=%q: must be an RFC 3339 time", v))
			return
		}
		f.Since = t
	}
	// A text or client is matched after each history record is read: since bounds what a search reads.
	if (f.Text != "" || f.Client != "") && (f.Since.IsZero() || time.Since(f.Since) > maxSearchBack) {
		writeError(w, http.StatusBadRequest, fmt.Errorf("query text or client: needs since, at most %d days back", maxSearchBack/(24*time.Hour)))
		return
	}
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
