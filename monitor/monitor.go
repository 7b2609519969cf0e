package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/clover-sched/clover/internal/config"
	"github.com/clover-sched/clover/internal/election"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/notify"
	"github.com/clover-sched/clover/internal/registry"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/zksession"
)

// Monitor watches a cluster. Create it with New and start it with Run.
//
// Concurrency: Run starts the registry caches, an observer of the servers' election (it writes
// leaderWatch), the monitors' own campaign (it sets active), the notification dispatcher, the HTTP
// endpoint, and the check loop. The check loop alone owns the checker's state and talks to the store
// about alerts; the dispatcher alone sends. They share only the store.
type Monitor struct {
	cfg      Config
	logger   *slog.Logger
	registry *prometheus.Registry
	now      func() time.Time
	senders  map[string]notify.Sender
	api      apiAccess // how it reads the servers' API

	active  atomic.Bool // this monitor won the monitors' election
	metrics *metrics

	mu    sync.Mutex
	store *store.Store // nil until MongoDB answers

	// Owned by the check loop.
	unreachable map[string]time.Time // "zookeeper", "mongodb" -> since when
	mailedDown  map[string]bool      // direct mails sent about MongoDB being down, by episode
	absent      map[string]int       // alert key -> checks in a row that did not find its problem
	pruned      time.Time            // when old notifications were last deleted
}

// Option changes a Monitor built by New.
type Option func(*Monitor)

// WithLogger sets the logger; the default is slog.Default().
func WithLogger(l *slog.Logger) Option { return func(m *Monitor) { m.logger = l } }

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option { return func(m *Monitor) { m.now = now } }

// WithSender replaces the sender of a channel ("email", "webhook"), for tests.
func WithSender(channel string, s notify.Sender) Option {
	return func(m *Monitor) { m.senders[channel] = s }
}

// New checks cfg and returns a monitor.
func New(cfg Config, opts ...Option) (*Monitor, error) {
	if err := cfg.Mongo.ReadURIFile(); err != nil {
		return nil, fmt.Errorf("monitor: config: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("monitor: config: %w", err)
	}
	m := &Monitor{
		cfg: cfg, logger: slog.Default(), registry: prometheus.NewRegistry(), now: time.Now,
		senders:     map[string]notify.Sender{"webhook": notify.NewWebhookSender(10*time.Second, cfg.WebhookAllowPrivate)},
		unreachable: map[string]time.Time{}, mailedDown: map[string]bool{}, absent: map[string]int{},
	}
	if cfg.SMTP.Host != "" {
		mailer, err := notify.NewSMTPSender(cfg.SMTP)
		if err != nil {
			return nil, fmt.Errorf("monitor: smtp: %w", err)
		}
		m.senders["email"] = mailer
	}
	for _, o := range opts {
		o(m)
	}
	m.logger = m.logger.With("component", "monitor", "monitor", cfg.ID)
	m.metrics = newMetrics(m.registry, &m.active)
	return m, nil
}

// Run watches until ctx ends. It returns an error only if it cannot start (ZooKeeper unreachable, the
// listen address taken).
func (m *Monitor) Run(ctx context.Context) error {
	zkOpts, access, err := m.security()
	if err != nil {
		return fmt.Errorf("monitor: %w", err)
	}
	m.api = access
	sess, err := zksession.Connect(ctx, m.cfg.ZooKeeper.Servers, m.cfg.ZooKeeper.Root, m.cfg.ZooKeeper.SessionTimeout, m.logger, zkOpts...)
	if err != nil {
		return fmt.Errorf("monitor: %w", err)
	}
	defer sess.Close()
	ln, err := net.Listen("tcp", m.cfg.Listen)
	if err != nil {
		return fmt.Errorf("monitor: listen %s: %w", m.cfg.Listen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	api := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute}

	servers := registry.NewCache(sess, registry.KindServers, m.logger)
	clients := registry.NewCache(sess, registry.KindClients, m.logger)
	lw := &leaderWatch{}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { servers.Run(ctx) })
	wg.Go(func() { clients.Run(ctx) })
	wg.Go(func() {
		for l := range election.New(sess, sess.Path("election"), m.cfg.ID, nil, m.logger).Observe(ctx) {
			lw.observe(l.ID, m.now())
		}
	})
	wg.Go(func() { m.campaign(ctx, sess) })
	wg.Go(func() { m.openStore(ctx) })
	wg.Go(func() {
		if err := api.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.logger.Error("metrics endpoint stopped", "err", err)
		}
	})
	wg.Go(func() {
		<-ctx.Done()
		sctx, done := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer done()
		_ = api.Shutdown(sctx)
	})
	m.logger.Info("monitor started", "listen", ln.Addr().String(), "zookeeper", m.cfg.ZooKeeper.Servers, "smtp", m.cfg.SMTP.Host)
	if m.senders["email"] == nil {
		m.logger.Warn("smtp.host is not set: alerts are recorded (`clover alert list`) and sent to webhooks, not mailed; configure it on every monitor")
	}
	m.checkLoop(ctx, sess, servers, clients, lw)
	cancel()
	wg.Wait()
	if st := m.getStore(); st != nil {
		sctx, done := context.WithTimeout(context.Background(), 2*time.Second)
		defer done()
		_ = st.Close(sctx)
	}
	m.logger.Info("monitor stopped")
	return nil
}

// campaign keeps this monitor in the monitors' election; active says whether it leads.
func (m *Monitor) campaign(ctx context.Context, sess *zksession.Session) {
	el := election.New(sess, sess.Path("monitor-election"), m.cfg.ID, nil, m.logger)
	el.Lead(ctx, func(termCtx context.Context, term *election.Term) error {
		m.active.Store(true)
		m.logger.Info("this monitor is the active one", "epoch", term.Epoch())
		<-termCtx.Done()
		m.active.Store(false)
		if ctx.Err() == nil {
			m.logger.Info("this monitor is no longer the active one")
		}
		return nil
	})
}

// openStore connects to MongoDB, retrying until it answers, then runs the notification dispatcher: every
// monitor delivers what is queued (claims keep two from sending the same), even the passive ones.
func (m *Monitor) openStore(ctx context.Context) {
	for ctx.Err() == nil {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		st, err := store.Open(sctx, m.cfg.Mongo.URI, m.cfg.Mongo.Database, store.WithLogger(m.logger), store.WithOpenSet(m.cfg.Mongo.OpenSet))
		cancel()
		if err == nil {
			m.mu.Lock()
			m.store = st
			m.mu.Unlock()
			d := notify.NewDispatcher(st, m.senders, notify.WithLogger(m.logger), notify.WithRegisterer(m.registry), notify.WithOwner(m.cfg.ID))
			d.Run(ctx)
			return
		}
		m.logger.Warn("MongoDB unreachable; retrying", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
}

func (m *Monitor) getStore() *store.Store {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.store
}

// checkLoop checks the cluster every Interval while this monitor is active. A monitor that cannot reach
// ZooKeeper cannot know whether it is still the active one; it checks anyway once ZooKeeper has been
// unreachable for Unreachable, so that someone says so: notification ids keep two monitors from mailing
// the same alert twice.
func (m *Monitor) checkLoop(ctx context.Context, sess *zksession.Session, servers, clients *registry.Cache, lw *leaderWatch) {
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	var ck *checker
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := m.now()
		zkDown := m.since("zookeeper", !sess.Healthy(m.cfg.ZooKeeper.SessionTimeout), now)
		if !m.active.Load() && (zkDown.IsZero() || now.Sub(zkDown) < m.cfg.Unreachable) {
			continue
		}
		st := m.getStore()
		if st == nil {
			m.mongoDown(ctx, now)
			continue
		}
		if !synced(servers) || !synced(clients) {
			continue // an empty registry view would report every member gone
		}
		if ck == nil {
			ck = newChecker(m.cfg, m.now, m.logger, servers, clients, st, lw)
			ck.http, ck.scheme, ck.token = m.api.client, m.api.scheme, m.api.token
		}
		cctx, cancel := context.WithTimeout(ctx, 4*m.cfg.Interval+10*time.Second)
		m.cycle(cctx, ck, st, now, !zkDown.IsZero())
		cancel()
	}
}

func synced(c *registry.Cache) bool {
	select {
	case <-c.Synced():
		return true
	default:
		return false
	}
}

// since tracks when a condition began: the zero time while it does not hold.
func (m *Monitor) since(what string, holds bool, now time.Time) time.Time {
	if !holds {
		delete(m.unreachable, what)
		return time.Time{}
	}
	if _, ok := m.unreachable[what]; !ok {
		m.unreachable[what] = now
	}
	return m.unreachable[what]
}

// mongoDown tells the operators directly that MongoDB is unreachable: alerts and the outbox live there.
// Sent once per episode by this monitor; without MongoDB two monitors cannot agree, so each may send it.
func (m *Monitor) mongoDown(ctx context.Context, now time.Time) {
	since := m.since("mongodb", true, now)
	if now.Sub(since) < m.cfg.Unreachable || m.mailedDown[since.String()] {
		return
	}
	m.mailedDown[since.String()] = true
	p := problem(kindMongoDB, "")
	p.Since, p.Where = since, config.RedactURI(m.cfg.Mongo.URI)
	p.What = "the monitor cannot reach MongoDB: no state can be read or recorded"
	p.WhatToDo = "Check MongoDB. The servers cannot fire either while it is down; clients keep their reports in the fallback queue's local spool."
	m.logger.Error(p.What, "since", since)
	sender := m.senders["email"]
	if sender == nil {
		return
	}
	for _, to := range m.cfg.Operators {
		if !strings.Contains(to, "@") {
			continue // a contact name: its address is in MongoDB
		}
		n := m.notification(p, to, "email", store.NotifyProblem, time.Time{}, since)
		go func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if err := sender.Send(sctx, n); err != nil {
				m.logger.Error("could not mail that MongoDB is down", "to", to, "err", err)
			}
		}()
	}
}

// cycle runs every check and brings the alerts and notifications up to date.
func (m *Monitor) cycle(ctx context.Context, ck *checker, st *store.Store, now time.Time, zkDown bool) {
	open, err := st.ListAlerts(ctx, store.AlertOpen)
	if err != nil {
		m.logger.Warn("cannot read alerts", "err", err)
		m.metrics.checkErrors.WithLabelValues("alerts").Inc()
		m.mongoDown(ctx, now)
		return
	}
	m.since("mongodb", false, now)
	openByKey := map[string]store.Alert{}
	openDown, openFailing := map[string]store.Alert{}, map[string]store.Alert{}
	for _, a := range open {
		openByKey[a.Key] = a
		switch a.Kind {
		case kindServerDown, kindClientDown:
			openDown[a.Key] = a
		case kindJobFailing:
			openFailing[a.Key] = a
		}
	}
	specs, err := st.ListJobs(ctx)
	if err != nil {
		m.logger.Warn("cannot read jobs", "err", err)
		m.metrics.checkErrors.WithLabelValues("jobs").Inc()
		return
	}
	jobs := map[string]job.Spec{}
	for _, s := range specs {
		jobs[s.Name] = s
	}

	var found []Problem
	if zkDown {
		// The registry and the election cannot be read: member and leader checks would report stale news.
		p := problem(kindZooKeeper, m.cfg.ID)
		p.Since, p.Where = m.unreachable["zookeeper"], strings.Join(m.cfg.ZooKeeper.Servers, ",")
		p.What = fmt.Sprintf("monitor %s cannot reach ZooKeeper (%s): if the servers cannot either, none leads and nothing fires", m.cfg.ID, p.Where)
		p.WhatToDo = "Check the ZooKeeper ensemble (a majority must be up) and the network from this monitor to it. " +
			"Firing resumes by itself when the servers reach it again."
		found = append(found, p)
		for key, a := range openByKey { // keep what was open: nothing can be known of it now
			if ownKinds[a.Kind] && a.Kind != kindZooKeeper {
				found = append(found, fromAlert(openByKey[key]))
			}
		}
	} else {
		leadership, leaderAPI := ck.leadership(now)
		found = append(found, leadership...)
		found = append(found, ck.membership(now, openDown)...)
		silent, heard := ck.responsiveness(ctx, now, leaderAPI)
		found = append(found, silent...)
		found = append(found, ck.jobsWithoutClient(now, specs)...)
		flights, seen := ck.inflight(ctx, now, leaderAPI, jobs)
		found = append(found, flights...)
		// What the leader's view says cannot be known without it (a failover, its API slow): keep it as is.
		have := map[string]bool{}
		for _, p := range found {
			have[p.Key] = true
		}
		for _, a := range open {
			if have[a.Key] {
				continue // seen again (a partial view of the leader's executions shows it)
			}
			if (!heard && a.Kind == kindClientSilent) || (!seen && (a.Kind == kindOrphaned || a.Kind == kindOverdue || a.Kind == kindWaiting)) {
				found = append(found, fromAlert(a))
			}
		}
		failing, err := ck.failures(ctx, jobs, openFailing)
		if err != nil {
			m.logger.Warn("cannot read failed executions", "err", err)
			m.metrics.checkErrors.WithLabelValues("executions").Inc()
			for key, a := range openFailing { // unsure: keep them as they are
				_ = key
				failing = append(failing, fromAlert(a))
			}
		}
		found = append(found, failing...)
	}
	m.metrics.checks.Inc()
	if !m.active.Load() && !zkDown {
		return // lost the lead during this check: the new active monitor decides
	}
	ck.held(m.reconcile(ctx, st, now, found, openByKey, zkDown))
	if now.Sub(m.pruned) >= time.Hour {
		m.pruned = now
		keep := make([]string, 0, len(openByKey))
		for key := range openByKey {
			keep = append(keep, key)
		}
		if n, err := st.PruneNotifications(ctx, now.Add(-m.cfg.KeepNotifications), keep); err != nil {
			m.logger.Warn("cannot prune old notifications", "err", err)
		} else if n > 0 {
			m.logger.Info("pruned old notifications", "deleted", n)
		}
	}
}
