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
)

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) {
	jobs, err := s.store.ListJobs(r.Context())
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

func validateSpec(spec job.Spec) error {
	if err := spec.Validate(); err != nil {
		return err
	}
	if _, err := schedule.Parse(spec.Schedule, spec.TimeZone); err != nil {
		return fmt.Errorf("job %s: %w", spec.Name, err)
	}
	return nil
}

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
	spec, err := decodeSpec(r)
	if err == nil {
		err = validateSpec(spec)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if err := checkJobRoom(r.Context(), s.store, s.cfg.Limits.Jobs); err != nil {
		writeError(w, storeStatus(err), err)
		return
	}
	now := s.now().UTC()
	spec.Source, spec.Version = apiSource(spec.Source), 1
	spec.CreatedAt, spec.UpdatedAt, spec.ActiveSince = now, now, now
	if err := s.store.CreateJob(r.Context(), spec); err != nil {
		writeError(w, storeStatus(err), err)
		return
	}
	note := noteAudit(r)
	note.target, note.after = spec.Name, spec.Version
	s.jobChanged(spec.Name)
	s.respondJob(w, r, http.StatusCreated, spec.Name)
}

func (s *Server) updateJob(w http.ResponseWriter, r *http.Request) {
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
	cur, err := s.store.GetJob(r.Context(), name)
	if err != nil {
		writeError(w, storeStatus(err), err)
		return
	}
	expect := cur.Version
	if spec.Version != 0 && spec.Version != cur.Version {
		writeError(w, http.StatusConflict, fmt.Errorf("job %s: version %d was given but the stored version is %d; read it again", name, spec.Version, cur.Version))
		return
	}
	now := s.now().UTC()
	spec.Source, spec.Version = apiSource(spec.Source), cur.Version+1
	spec.CreatedAt, spec.UpdatedAt, spec.ActiveSince, spec.PausedAt = cur.CreatedAt, now, cur.ActiveSince, cur.PausedAt
	// Pausing is done by pause and resume only, so that a PUT that leaves the field out does not resume.
	spec.Paused = cur.Paused
	if spec.Schedule != cur.Schedule || spec.TimeZone != cur.TimeZone {
		spec.ActiveSince = now // the new schedule owes nothing from before it existed
	}
	if err := s.store.ReplaceJob(r.Context(), spec, expect); err != nil {
		writeError(w, storeStatus(err), err)
		return
	}
	note := noteAudit(r)
	note.before, note.after = expect, spec.Version
	s.jobChanged(name)
	s.respondJob(w, r, http.StatusOK, name)
}

func (s *Server) deleteJob(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if cur, err := s.store.GetJob(r.Context(), name); err == nil {
		noteAudit(r).before = cur.Version
	}
	if err := s.store.DeleteJob(r.Context(), name); err != nil {
		writeError(w, storeStatus(err), err)
		return
	}
	s.jobChanged(name)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) pauseJob(pause bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		cur, err := s.store.GetJob(r.Context(), name)
		if err != nil {
			writeError(w, storeStatus(err), err)
			return
		}
		if cur.Paused == pause {
			writeJSON(w, http.StatusOK, cur)
			return
		}
		now := s.now().UTC()
		next := cur
		// ActiveSince stays: the fire times missed while paused go to the job's misfire policy on resume
		// (fire-once runs one catch-up, skip records them skipped).
		next.Paused, next.Version, next.UpdatedAt = pause, cur.Version+1, now
		if pause {
			next.PausedAt = now
		}
		if err := s.store.ReplaceJob(r.Context(), next, cur.Version); err != nil {
			writeError(w, storeStatus(err), err)
			return
		}
		note := noteAudit(r)
		note.before, note.after = cur.Version, next.Version
		s.jobChanged(name)
		s.respondJob(w, r, http.StatusOK, name)
	}
}

func (s *Server) triggerJob(w http.ResponseWriter, r *http.Request) {
	var body api.TriggerRequest
	if r.ContentLength != 0 {
		dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil && !errors.Is(err, io.EOF) {
			writeError(w, http.StatusBadRequest, fmt.Errorf("trigger body: %w", err))
			return
		}
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

func (s *Server) jobChanged(name string) {
	if l := s.lead.Load(); l != nil {
		l.JobChanged(name)
	}
}

func (s *Server) respondJob(w http.ResponseWriter, r *http.Request, status int, name string) {
	spec, err := s.store.GetJob(r.Context(), name)
	if err != nil {
		writeError(w, storeStatus(err), err)
		return
	}
	writeJSON(w, status, spec)
}
