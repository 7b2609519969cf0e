package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/keyring"
	"github.com/clover-sched/clover/internal/registry"
	"github.com/clover-sched/clover/internal/store"
)

// maxBody bounds a request body: job definitions are small (a route may allow more: api.Route.MaxBody).
const maxBody = 1 << 20

// routes is the REST API: exactly the routes of api.Routes (it fails if a route has no handler here, or a
// handler no route), so the OpenAPI document describes what is served. Reads are answered by any server
// from the store and its registry view; writes are made by the leader, so a follower forwards them
// (reverse proxy) to the leader's API.
func (s *Server) routes() (http.Handler, error) {
	handlers := map[string]http.HandlerFunc{
		"GET /api/v1/openapi.json":                                     s.getOpenAPI,
		"GET /api/v1/cluster":                                          s.getCluster,
		"GET /api/v1/jobs":                                             s.listJobs,
		"GET /api/v1/jobs/{name}":                                      s.getJob,
		"GET /api/v1/jobs/{name}/next":                                 s.nextFires,
		"POST /api/v1/jobs":                                            s.createJob,
		"PUT /api/v1/jobs/{name}":                                      s.updateJob,
		"DELETE /api/v1/jobs/{name}":                                   s.deleteJob,
		"POST /api/v1/jobs:batch":                                      s.batchJobs,
		"POST /api/v1/jobs/{name}/trigger":                             s.triggerJob,
		"GET /api/v1/jobs/{name}/revisions":                            s.listRevisions,
		"GET /api/v1/jobs/{name}/revisions/{version}":                  s.getRevision,
		"GET /api/v1/jobs/{name}/diff":                                 s.diffJob,
		"POST /api/v1/jobs/{name}/rollback":                            s.rollbackJob,
		"POST /api/v1/jobs/{name}/restore":                             s.restoreJob,
		"POST /api/v1/jobs/{name}/revisions/{version}/tags":            s.tagRevision(true),
		"DELETE /api/v1/jobs/{name}/revisions/{version}/tags/{tag}":    s.tagRevision(false),
		"POST /api/v1/jobs/{name}/pause":                               s.pauseJob(true),
		"POST /api/v1/jobs/{name}/resume":                              s.pauseJob(false),
		"GET /api/v1/batches":                                          s.listBatches,
		"GET /api/v1/batches/{name}":                                   s.getBatch,
		"PUT /api/v1/batches/{name}":                                   s.putBatch,
		"DELETE /api/v1/batches/{name}":                                s.deleteBatch,
		"GET /api/v1/batches/{name}/revisions":                         s.listBatchRevisions,
		"POST /api/v1/batches/{name}/revisions/{version}/tags":         s.tagBatchRevision(true),
		"DELETE /api/v1/batches/{name}/revisions/{version}/tags/{tag}": s.tagBatchRevision(false),
		"POST /api/v1/batches/{name}/runs":                             s.startBatchRun,
		"GET /api/v1/batches/{name}/runs":                              s.listBatchRuns,
		"GET /api/v1/batches/{name}/runs/{cycle}":                      s.getBatchRun,
		"GET /api/v1/batches/{name}/runs/{cycle}/executions":           s.batchRunExecutions,
		"POST /api/v1/batches/{name}/runs/{cycle}/pause":               s.batchRunOp("pause"),
		"POST /api/v1/batches/{name}/runs/{cycle}/resume":              s.batchRunOp("resume"),
		"POST /api/v1/batches/{name}/runs/{cycle}/stop":                s.batchRunOp("stop"),
		"POST /api/v1/batches/{name}/runs/{cycle}/rerun":               s.batchRunOp("rerun"),
		"POST /api/v1/batches/{name}/runs/{cycle}/reset":               s.batchRunOp("reset"),
		"POST /api/v1/batches/{name}/runs/{cycle}/nodes/{node}/skip":   s.batchRunOp("skip"),
		"GET /api/v1/resources":                                        s.listResources,
		"PUT /api/v1/resources/{name}":                                 s.putResource,
		"GET /api/v1/executions":                                       s.listExecutions,
		"GET /api/v1/executions/{id}":                                  s.getExecution,
		"GET /api/v1/executions/{id}/output":                           s.getOutput,
		"POST /api/v1/executions/{id}/stop":                            s.execAction("stop"),
		"POST /api/v1/executions/{id}/rerun":                           s.execAction("rerun"),
		"POST /api/v1/executions/{id}/done":                            s.execAction("done"),
		"GET /api/v1/inflight":                                         s.getInflight,
		"GET /api/v1/backlog":                                          s.getBacklog,
		"GET /api/v1/heartbeats":                                       s.getHeartbeats,
		"GET /api/v1/activity":                                         s.getActivity,
		"GET /api/v1/fallback":                                         s.getFallback,
		"GET /api/v1/alerts":                                           s.listAlerts,
		"POST /api/v1/alerts/clear":                                    s.clearAlert,
		"GET /api/v1/contacts":                                         s.listContacts,
		"POST /api/v1/contacts":                                        s.createContact,
		"GET /api/v1/contacts/{name}":                                  s.getContact,
		"DELETE /api/v1/contacts/{name}":                               s.deleteContact,
		"GET /api/v1/notifications":                                    s.listNotifications,
		"GET /api/v1/audit":                                            s.listAudit,
		"GET /api/v1/zookeeper":                                        s.getZNode,
	}
	mux := http.NewServeMux()
	for _, rt := range api.Routes {
		h, ok := handlers[rt.Pattern()]
		if !ok {
			return nil, fmt.Errorf("server: route %s has no handler", rt.Pattern())
		}
		delete(handlers, rt.Pattern())
		if rt.Leader {
			h = s.onLeader(h)
		}
		if rt.Role == "" {
			return nil, fmt.Errorf("server: route %s names no role", rt.Pattern())
		}
		h = s.guard(rt, h)
		if rt.MaxBody > maxBody {
			h = bulkDeadline(h)
		}
		mux.HandleFunc(rt.Pattern(), h)
	}
	for pattern := range handlers {
		return nil, fmt.Errorf("server: handler %s is not in api.Routes (nor in the OpenAPI document)", pattern)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	metrics := promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}).ServeHTTP
	if !s.cfg.API.PublicMetrics {
		metrics = s.guard(api.Route{Method: "GET", Path: "/metrics", Role: keyring.RoleViewer}, metrics)
	}
	mux.HandleFunc("GET /metrics", metrics)
	mux.HandleFunc("/ui/", s.serveConsole)
	mux.HandleFunc("GET /ui", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ui/", http.StatusMovedPermanently) })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Errorf("no route for %s %s", r.Method, r.URL.Path))
	})
	return mux, nil
}

// bulkWriteTimeout bounds the answer of a bulk route (api.Route.MaxBody over maxBody), past the server's
// WriteTimeout: a thousand updates on FerretDB take about 15 ms each per 1,000 jobs stored.
const bulkWriteTimeout = 15 * time.Minute

func bulkDeadline(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(bulkWriteTimeout))
		h(w, r)
	}
}

// getOpenAPI serves the API's OpenAPI document.
func (s *Server) getOpenAPI(w http.ResponseWriter, r *http.Request) {
	doc, err := api.OpenAPI()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(doc)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, api.Error{Error: err.Error()})
}

// storeStatus maps a store error to an HTTP status.
func storeStatus(err error) int {
	switch {
	case errors.Is(err, errBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, errBatchRunExists), errors.Is(err, errBatchState):
		return http.StatusConflict
	case errors.Is(err, errNoBatches):
		return http.StatusServiceUnavailable
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, job.ErrParams):
		return http.StatusBadRequest
	case errors.Is(err, errTooManyJobs):
		return http.StatusInsufficientStorage
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
		caller := callerOf(r.Context())
		if !ok || info.APIAddr == "" || info.ID == s.cfg.ID || caller.Via != "" {
			writeError(w, http.StatusServiceUnavailable, errors.New("no leader is available to take this write; retry shortly"))
			return
		}
		// The address comes from ZooKeeper: it must be a plain host:port, and the caller's token is not
		// sent there (signForward replaces it by the caller's signed identity).
		if err := registry.ValidAPIAddr(info.APIAddr); err != nil {
			writeError(w, http.StatusBadGateway, fmt.Errorf("leader %s publishes a bad api_addr %q: %w", info.ID, info.APIAddr, err))
			return
		}
		if err := s.signForward(r, caller); err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		noteAudit(r).forwarded = true
		r.Host = info.APIAddr
		r.Header.Del("Origin") // checked here; the leader would see it as foreign to its own address
		target := &url.URL{Scheme: s.sec.apiScheme(), Host: info.APIAddr}
		proxy := httputil.NewSingleHostReverseProxy(target)
		proxy.Transport = s.sec.forwardTransport()
		proxy.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
			writeError(w, http.StatusBadGateway, fmt.Errorf("forward to leader %s at %s: %w", info.ID, info.APIAddr, err))
		}
		proxy.ServeHTTP(w, r)
	}
}

func (s *Server) getCluster(w http.ResponseWriter, r *http.Request) {
	st := api.ClusterStatus{Server: s.cfg.ID, Servers: s.servers.Members(), Clients: s.clients.Members()}
	if info, epoch, ok := s.leaderInfo(); ok {
		st.Leader = &api.LeaderStatus{ID: info.ID, Epoch: epoch, APIAddr: info.APIAddr}
	}
	writeJSON(w, http.StatusOK, st)
}

// getFallback is answered by any server: while no leader is elected the queue is what operators most need
// to see. Replay progress is the leader's; a follower names the leader to ask.
func (s *Server) getFallback(w http.ResponseWriter, r *http.Request) {
	st, err := s.store.FallbackStatus(r.Context())
	if err != nil {
		writeError(w, storeStatus(err), err)
		return
	}
	out := api.FallbackStatus{Status: st}
	if info, _, ok := s.leaderInfo(); ok {
		out.Leader = info.ID
	}
	if l := s.lead.Load(); l != nil && l.replay != nil {
		p := l.replay.get()
		out.Replay = &p
	}
	writeJSON(w, http.StatusOK, out)
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

// decodeBody reads a small JSON body into v; an empty body leaves v as it is.
// Unknown fields are refused, so that a typo is not silently ignored.
func decodeBody(r *http.Request, v any) error {
	if r.ContentLength == 0 {
		return nil
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}
