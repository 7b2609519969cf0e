package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/schedule"
	"github.com/clover-sched/clover/internal/store"
)

// listJobs answers every job, or with limit (or any filter) a page of them in name order after after.
func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var (
		jobs []job.Spec
		err  error
	)
	paged := false
	for _, k := range []string{"limit", "after", "q", "state", "handler", "source", "client", "label", "contact"} {
		paged = paged || q.Has(k)
	}
	if paged {
		p := store.JobPage{After: q.Get("after"), Text: q.Get("q"), Limit: 100,
			Handler: q.Get("handler"), Source: q.Get("source"), Client: q.Get("client"), Label: q.Get("label"), Contact: q.Get("contact")}
		if v := p.Label; v != "" {
			if name, _, ok := strings.Cut(v, "="); !ok || name == "" || strings.ContainsAny(name, ".$") {
				writeError(w, http.StatusBadRequest, fmt.Errorf("query label=%q: want name=value, the name without '.' or '$'", v))
				return
			}
		}
		if v := q.Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1000 {
				writeError(w, http.StatusBadRequest, fmt.Errorf("query limit=%q: must be a number from 1 to 1000", v))
				return
			}
			p.Limit = n
		}
		switch v := q.Get("state"); v {
		case "":
		case "paused", "active":
			paused := v == "paused"
			p.Paused = &paused
		default:
			writeError(w, http.StatusBadRequest, fmt.Errorf("query state=%q: must be paused or active", v))
			return
		}
		jobs, err = s.store.ListJobsPage(r.Context(), p)
	} else {
		jobs, err = s.store.ListJobs(r.Context())
	}
	if err != nil {
		writeError(w, storeStatus(err), err)
		return
	}
	if jobs == nil {
		jobs = []job.Spec{}
	}
	writeJSON(w, http.StatusOK, jobs)
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request) {
	spec, err := s.store.GetJob(r.Context(), r.PathValue("name"))
	if err != nil {
		writeError(w, storeStatus(err), err)
		return
	}
	// Stats (misfires, average runtime) are the leader's bookkeeping: shown when there are some.
	if st, err := s.store.GetStats(r.Context(), spec.Name); err == nil {
		spec.Stats = &st
	}
	writeJSON(w, http.StatusOK, spec)
}

func (s *Server) nextFires(w http.ResponseWriter, r *http.Request) {
	spec, err := s.store.GetJob(r.Context(), r.PathValue("name"))
	if err != nil {
		writeError(w, storeStatus(err), err)
		return
	}
	n := 10
	if v := r.URL.Query().Get("n"); v != "" {
		if n, err = strconv.Atoi(v); err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("query n=%q: must be a number from 1 to 1000", v))
			return
		}
	}
	sched, err := schedule.Parse(spec.Schedule, spec.TimeZone)
	if err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Errorf("job %s: stored schedule: %w", spec.Name, err))
		return
	}
	times := []time.Time{}
	for t := s.now(); len(times) < n; {
		t = sched.Next(t)
		if t.IsZero() {
			break
		}
		times = append(times, t)
	}
	writeJSON(w, http.StatusOK, map[string]any{"job": spec.Name, "schedule": spec.Schedule, "time_zone": sched.Location().String(), "next": times})
}

// decodeSpec reads a job definition; unknown fields are refused so that a typo is not silently ignored.
func decodeSpec(r *http.Request) (job.Spec, error) {
	var spec job.Spec
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		return spec, fmt.Errorf("job definition: %w", err)
	}
	return spec, nil
}

// validateSpec checks a definition before it is stored; the CLI checks with the same function.
func validateSpec(spec job.Spec) error { return schedule.ValidateSpec(spec) }

// apiSource is the source recorded for a job written through the API: "api", or "config:NAME" when
// `clover config apply` wrote it (it deletes only the jobs of its own source). A caller cannot claim to be a
// client: client declarations are owned by the leader's rules.
func apiSource(given string) string {
	if name, ok := strings.CutPrefix(given, "config:"); ok && name != "" {
		return given
	}
	return "api"
}

func (s *Server) createJob(w http.ResponseWriter, r *http.Request) {
	r, ok := withMessage(w, r, revisionNote{})
	if !ok {
		return
	}
	spec, err := decodeSpec(r)
	if err == nil {
		err = validateSpec(spec)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	spec = s.stampNew(spec)
	specs := []job.Spec{spec}
	if err := s.createJobs(r.Context(), specs)[0]; err != nil {
		writeError(w, storeStatus(err), err)
		return
	}
	created := store.AsStored(specs[0]) // its version may go on from a deleted job's
	note := noteAudit(r)
	note.target, note.after = spec.Name, created.Version
	writeJSON(w, http.StatusCreated, created)
}

// stampNew makes spec a new job's first version, written through the API now.
func (s *Server) stampNew(spec job.Spec) job.Spec {
	now := s.now().UTC()
	spec.Source, spec.Version = apiSource(spec.Source), 1
	spec.CreatedAt, spec.UpdatedAt, spec.ActiveSince = now, now, now
	return spec
}

func (s *Server) updateJob(w http.ResponseWriter, r *http.Request) {
	r, ok := withMessage(w, r, revisionNote{})
	if !ok {
		return
	}
	name := r.PathValue("name")
	spec, err := decodeSpec(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if spec.Name == "" {
		spec.Name = name
	}
	if spec.Name != name {
		writeError(w, http.StatusBadRequest, fmt.Errorf("job name %q in the body differs from %q in the path; a job cannot be renamed", spec.Name, name))
		return
	}
	if err := validateSpec(spec); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	now := s.now().UTC()
	out, errs := s.updateJobs(r.Context(), []string{name}, func(_ int, cur job.Spec) (job.Spec, error) {
		return replaced(cur, spec, now)
	})
	if errs[0] != nil {
		writeError(w, storeStatus(errs[0]), errs[0])
		return
	}
	note := noteAudit(r)
	note.before, note.after = out[0].Version-1, out[0].Version
	writeJSON(w, http.StatusOK, out[0])
}

// replaced is the job that a PUT of spec makes of cur at now, or ErrConflict when spec names a version
// other than cur's.
func replaced(cur, spec job.Spec, now time.Time) (job.Spec, error) {
	if spec.Version != 0 && spec.Version != cur.Version {
		return job.Spec{}, fmt.Errorf("%w: job %s: version %d was given but the stored version is %d; read it again",
			store.ErrConflict, cur.Name, spec.Version, cur.Version)
	}
	spec.Source = apiSource(spec.Source)
	spec.CreatedAt, spec.UpdatedAt, spec.ActiveSince, spec.PausedAt = cur.CreatedAt, now, cur.ActiveSince, cur.PausedAt
	// Pausing is done by pause and resume only, so that a PUT that leaves the field out does not resume.
	spec.Paused = cur.Paused
	if spec.Schedule != cur.Schedule || spec.TimeZone != cur.TimeZone {
		spec.ActiveSince = now // the new schedule owes nothing from before it existed
	}
	return spec, nil
}

func (s *Server) deleteJob(w http.ResponseWriter, r *http.Request) {
	r, ok := withMessage(w, r, revisionNote{})
	if !ok {
		return
	}
	name := r.PathValue("name")
	old, errs := s.deleteJobs(r.Context(), []string{name}, nil)
	if errs[0] != nil {
		writeError(w, storeStatus(errs[0]), errs[0])
		return
	}
	noteAudit(r).before = old[0].Version
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) pauseJob(pause bool) http.HandlerFunc {
	action := store.RevisionResumed
	if pause {
		action = store.RevisionPaused
	}
	return func(w http.ResponseWriter, r *http.Request) {
		r, ok := withMessage(w, r, revisionNote{action: action})
		if !ok {
			return
		}
		name := r.PathValue("name")
		var same *job.Spec // the job, already as asked
		now := s.now().UTC()
		out, errs := s.updateJobs(r.Context(), []string{name}, func(_ int, cur job.Spec) (job.Spec, error) {
			if cur.Paused == pause {
				same = &cur
				return job.Spec{}, errUnchanged
			}
			// ActiveSince stays: the fire times missed while paused go to the job's misfire policy on
			// resume (fire-once runs one catch-up, skip records them skipped).
			cur.Paused, cur.UpdatedAt = pause, now
			if pause {
				cur.PausedAt = now
			}
			return cur, nil
		})
		switch {
		case same != nil:
			writeJSON(w, http.StatusOK, *same)
		case errs[0] != nil:
			writeError(w, storeStatus(errs[0]), errs[0])
		default:
			note := noteAudit(r)
			note.before, note.after = out[0].Version-1, out[0].Version
			writeJSON(w, http.StatusOK, out[0])
		}
	}
}

// errUnchanged: a pause of a paused job (or a resume of a running one) writes nothing.
var errUnchanged = errors.New("unchanged")

func (s *Server) triggerJob(w http.ResponseWriter, r *http.Request) {
	var body api.TriggerRequest
	if err := decodeBody(r, &body); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("trigger body: %w", err))
		return
	}
	l := s.term(w)
	if l == nil {
		return
	}
	id, err := l.Trigger(r.Context(), r.PathValue("name"), body.Params)
	switch {
	case unanswered(err):
		termError(w, err)
		return
	case err != nil:
		writeError(w, storeStatus(err), err)
		return
	}
	writeJSON(w, http.StatusAccepted, api.TriggerResponse{Execution: id})
}
