package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/http/pprof"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/clover-sched/clover/internal/fallback"
	"github.com/clover-sched/clover/internal/registry"
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
