package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/http/pprof"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/clover-sched/clover/internal/fallback"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/registry"
	"github.com/clover-sched/clover/internal/schedule"
	"github.com/clover-sched/clover/internal/store"
)

// maxBody bounds a request body: job definitions are small.
const maxBody = 1 << 20

// routes is the REST API. Reads are answered by any server from the store and its registry view; writes
// are made by the leader, so a follower forwards them (reverse proxy) to the leader's API.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
	// Go profiles, for the people who run Clover: the API listens on a private address.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /api/v1/cluster", s.getCluster)
	mux.HandleFunc("GET /api/v1/jobs", s.listJobs)
	mux.HandleFunc("GET /api/v1/jobs/{name}", s.getJob)
	mux.HandleFunc("GET /api/v1/jobs/{name}/next", s.nextFires)
	mux.HandleFunc("POST /api/v1/jobs", s.onLeader(s.createJob))
	mux.HandleFunc("PUT /api/v1/jobs/{name}", s.onLeader(s.updateJob))
	mux.HandleFunc("DELETE /api/v1/jobs/{name}", s.onLeader(s.deleteJob))
	mux.HandleFunc("POST /api/v1/jobs/{name}/trigger", s.onLeader(s.triggerJob))
	mux.HandleFunc("POST /api/v1/jobs/{name}/pause", s.onLeader(s.pauseJob(true)))
	mux.HandleFunc("POST /api/v1/jobs/{name}/resume", s.onLeader(s.pauseJob(false)))
	mux.HandleFunc("GET /api/v1/executions", s.listExecutions)
	mux.HandleFunc("GET /api/v1/executions/{id}", s.getExecution)
	mux.HandleFunc("POST /api/v1/executions/{id}/stop", s.onLeader(s.execAction("stop")))
	mux.HandleFunc("POST /api/v1/executions/{id}/rerun", s.onLeader(s.execAction("rerun")))
	mux.HandleFunc("POST /api/v1/executions/{id}/done", s.onLeader(s.execAction("done")))
	mux.HandleFunc("GET /api/v1/inflight", s.onLeader(s.getInflight))
	mux.HandleFunc("GET /api/v1/fallback", s.getFallback)
	mux.HandleFunc("GET /api/v1/heartbeats", s.onLeader(s.getHeartbeats))
	mux.HandleFunc("GET /api/v1/alerts", s.listAlerts)
	mux.HandleFunc("POST /api/v1/alerts/clear", s.clearAlert)
	s.contactRoutes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Errorf("no route for %s %s", r.Method, r.URL.Path))
	})
	return mux
}

// apiError is the body of every error response.
type apiError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, apiError{Error: err.Error()})
}

// storeStatus maps a store error to an HTTP status.
func storeStatus(err error) int {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, store.ErrExists), errors.Is(err, store.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, errOverlap), errors.Is(err, errNotOrphaned), errors.Is(err, errLocalMode):
		return http.StatusConflict
	case errors.Is(err, errNotInFlight):
		return http.StatusNotFound
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, errUnconfirmed):
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// leaderWait is how long a write waits for a leader to be known (an election in progress) before it is
// refused.
const leaderWait = 5 * time.Second

// onLeader runs h when this server leads and otherwise proxies the request to the leader. During an
// election it waits up to leaderWait for one, so that a write made during a failover succeeds.
func (s *Server) onLeader(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var (
			info serverInfo
			ok   bool
		)
		deadline := time.NewTimer(leaderWait)
		defer deadline.Stop()
		for {
			if s.lead.Load() != nil {
				h(w, r)
				return
			}
			if info, _, ok = s.leaderInfo(); ok && info.ID != s.cfg.ID {
				break
			}
			select {
			case <-r.Context().Done():
				return
			case <-deadline.C:
			case <-time.After(50 * time.Millisecond):
				continue
			}
			break
		}
		if !ok || info.APIAddr == "" || info.ID == s.cfg.ID || r.Header.Get("X-Clover-Forwarded-By") != "" {
			writeError(w, http.StatusServiceUnavailable, errors.New("no leader is available to take this write; retry shortly"))
			return
		}
		target := &url.URL{Scheme: "http", Host: info.APIAddr}
		proxy := httputil.NewSingleHostReverseProxy(target)
		proxy.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
			writeError(w, http.StatusBadGateway, fmt.Errorf("forward to leader %s at %s: %w", info.ID, info.APIAddr, err))
		}
		r.Header.Set("X-Clover-Forwarded-By", s.cfg.ID)
		proxy.ServeHTTP(w, r)
	}
}

// ClusterStatus is the body of GET /api/v1/cluster.
type ClusterStatus struct {
	Server  string            `json:"server"` // the server that answered
	Leader  *LeaderStatus     `json:"leader"`
	Servers []registry.Member `json:"servers"`
	Clients []registry.Member `json:"clients"`
}

// LeaderStatus names the leader and its term.
type LeaderStatus struct {
	ID      string `json:"id"`
	Epoch   int64  `json:"epoch"`
	APIAddr string `json:"api_addr"`
}

func (s *Server) getCluster(w http.ResponseWriter, r *http.Request) {
	st := ClusterStatus{Server: s.cfg.ID, Servers: s.servers.Members(), Clients: s.clients.Members()}
	if info, epoch, ok := s.leaderInfo(); ok {
		st.Leader = &LeaderStatus{ID: info.ID, Epoch: epoch, APIAddr: info.APIAddr}
	}
	writeJSON(w, http.StatusOK, st)
}

// FallbackStatus is the answer of GET /api/v1/fallback: the queue as the store holds it, and, from the
// leader, how its replay goes.
type FallbackStatus struct {
	fallback.Status
	Leader string          `json:"leader,omitempty"`
	Replay *ReplayProgress `json:"replay,omitempty"` // present when the server asked leads
}

// getFallback is answered by any server: while no leader is elected the queue is what operators most need
// to see. Replay progress is the leader's; a follower names the leader to ask.
func (s *Server) getFallback(w http.ResponseWriter, r *http.Request) {
	st, err := s.store.FallbackStatus(r.Context())
	if err != nil {
		writeError(w, storeStatus(err), err)
		return
	}
	out := FallbackStatus{Status: st}
	if info, _, ok := s.leaderInfo(); ok {
		out.Leader = info.ID
	}
	if l := s.lead.Load(); l != nil && l.replay != nil {
		p := l.replay.get()
		out.Replay = &p
	}
	writeJSON(w, http.StatusOK, out)
}

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
	now := s.now().UTC()
	spec.Source, spec.Version = apiSource(spec.Source), 1
	spec.CreatedAt, spec.UpdatedAt, spec.ActiveSince = now, now, now
	if err := s.store.CreateJob(r.Context(), spec); err != nil {
		writeError(w, storeStatus(err), err)
		return
	}
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
	s.jobChanged(name)
	s.respondJob(w, r, http.StatusOK, name)
}

func (s *Server) deleteJob(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
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
		s.jobChanged(name)
		s.respondJob(w, r, http.StatusOK, name)
	}
}

// TriggerResponse is the body of a successful trigger.
type TriggerResponse struct {
	Execution string `json:"execution"`
}

func (s *Server) triggerJob(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Params map[string]string `json:"params"`
	}
	if r.ContentLength != 0 {
		dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil && !errors.Is(err, io.EOF) {
			writeError(w, http.StatusBadRequest, fmt.Errorf("trigger body: %w", err))
			return
		}
	}
	reply := make(chan triggerReply, 1)
	rep, ok := askLoop(s, w, r, triggerRequest{name: r.PathValue("name"), params: body.Params, reply: reply}, reply)
	if !ok {
		return
	}
	if rep.err != nil {
		writeError(w, storeStatus(rep.err), rep.err)
		return
	}
	writeJSON(w, http.StatusAccepted, TriggerResponse{Execution: rep.id})
}

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

// ExecActionRequest is the optional body of stop, rerun and done.
type ExecActionRequest struct {
	Status job.State `json:"status,omitempty"` // done: succeeded or failed
	Note   string    `json:"note,omitempty"`   // who acts, and why; recorded with the event
}

// execAction stops a run, or decides for an orphaned execution (rerun, done).
func (s *Server) execAction(action string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var body ExecActionRequest
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
		writeJSON(w, http.StatusAccepted, map[string]string{"execution": id, "action": action})
	}
}

// getInflight shows the leader's live view of open executions: waiting for a client, queued, running...
func (s *Server) getInflight(w http.ResponseWriter, r *http.Request) {
	reply := make(chan []InFlight, 1)
	out, ok := askLoop(s, w, r, inflightRequest{job: r.URL.Query().Get("job"), reply: reply}, reply)
	if ok {
		writeJSON(w, http.StatusOK, out)
	}
}

// listAlerts lists the alerts, open ones by default (?state=cleared, ?state=all).
func (s *Server) listAlerts(w http.ResponseWriter, r *http.Request) {
	state := r.URL.Query().Get("state")
	switch state {
	case "":
		state = store.AlertOpen
	case "all":
		state = ""
	case store.AlertOpen, store.AlertCleared:
	default:
		writeError(w, http.StatusBadRequest, fmt.Errorf("state %q: want open, cleared or all", state))
		return
	}
	alerts, err := s.store.ListAlerts(r.Context(), state)
	if err != nil {
		writeError(w, storeStatus(err), err)
		return
	}
	if alerts == nil {
		alerts = []store.Alert{}
	}
	writeJSON(w, http.StatusOK, alerts)
}

// clearAlert clears the open alert ?key=, as an operator who knows the problem is dealt with (a member
// removed on purpose). The monitor sends the recovery message, and raises it again if it finds it again.
func (s *Server) clearAlert(w http.ResponseWriter, r *http.Request) {
	key := r.URL.Query().Get("key")
	if key == "" {
		writeError(w, http.StatusBadRequest, errors.New("key: required (the alert's key, as clover alert list shows it)"))
		return
	}
	cleared, err := s.store.ClearAlert(r.Context(), key, s.now())
	if err != nil {
		writeError(w, storeStatus(err), err)
		return
	}
	if !cleared {
		writeError(w, http.StatusNotFound, fmt.Errorf("alert %s is not open", key))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"cleared": key})
}

// getHeartbeats says when the leader last heard each registered client.
func (s *Server) getHeartbeats(w http.ResponseWriter, r *http.Request) {
	reply := make(chan heartbeatsReply, 1)
	rep, ok := askLoop(s, w, r, heartbeatsRequest{reply: reply}, reply)
	if !ok {
		return
	}
	out := []ClientHeartbeat{}
	for _, m := range s.clients.Members() {
		hb := ClientHeartbeat{Client: m.ID, LastAt: rep.heard[m.ID], Since: m.StartedAt}
		if rep.start.After(hb.Since) {
			hb.Since = rep.start // a client is only as silent as this term could hear
		}
		out = append(out, hb)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) jobChanged(name string) {
	if l := s.lead.Load(); l != nil {
		l.notify(jobChanged{name: name})
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
