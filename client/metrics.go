package client

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/clover-sched/clover/internal/pprofhttp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// serveMetrics serves /metrics and /healthz on cfg.MetricsListen until ctx ends. The series read the
// client's counters when scraped: nothing is counted twice.
func (c *Client) serveMetrics(ctx context.Context, ln net.Listener) {
	reg := prometheus.NewRegistry()
	counter := func(name, help string, v *atomic.Int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v.Load()) })
	}
	gauge := func(name, help string, f func() int) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return float64(f()) })
	}
	reg.MustRegister(
		counter("clover_client_accepted_total", "Runs this client accepted.", &c.stats.Accepted),
		counter("clover_client_refused_total", "Dispatches this client refused (busy, no handler, late).", &c.stats.Refused),
		counter("clover_client_succeeded_total", "Runs that succeeded here.", &c.stats.Succeeded),
		counter("clover_client_failed_total", "Runs that failed here (stopped and timed out included).", &c.stats.Failed),
		counter("clover_client_stopped_total", "Runs stopped by the leader.", &c.stats.Stopped),
		counter("clover_client_local_fired_total", "Runs of local jobs this client fired.", &c.stats.LocalFired),
		counter("clover_client_requests_total", "Run requests of the application.", &c.stats.Requested),
		counter("clover_client_fallback_queued_total", "Reports put in the fallback queue because no server confirmed them.", &c.stats.FallbackQueued),
		counter("clover_client_frames_dropped_total", "Frames from servers that did not decode or were of a wrong kind.", &c.stats.Dropped),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "clover_client_zookeeper_sessions_expired_total",
			Help: "Times this client's ZooKeeper session expired (its registration was lost: the leader counts its runs lost)."},
			func() float64 { e, _ := c.ZooKeeperLosses(); return float64(e) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "clover_client_zookeeper_disconnects_total",
			Help: "Times this client's ZooKeeper connection dropped while it held a session."},
			func() float64 { _, d := c.ZooKeeperLosses(); return float64(d) }),
		gauge("clover_client_running", "Runs under way here.", func() int {
			c.mu.Lock()
			defer c.mu.Unlock()
			return c.running
		}),
		gauge("clover_client_pending_results", "Results no server has confirmed yet.", c.PendingResults),
		gauge("clover_client_spooled", "Reports in the local spool, waiting for MongoDB.", c.Spooled),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		c.logger.Error("metrics endpoint stopped", "err", err)
	}
}

// serveDebug serves Go's profiles on cfg.DebugListen until ctx ends.
func (c *Client) serveDebug(ctx context.Context, ln net.Listener) {
	srv := &http.Server{Handler: pprofhttp.Handler(), ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 2 * time.Minute}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		c.logger.Error("debug endpoint stopped", "err", err)
	}
}
