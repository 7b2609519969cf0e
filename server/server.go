package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clover-sched/clover/admin"
	"github.com/clover-sched/clover/internal/config"
	"github.com/clover-sched/clover/internal/election"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/logx"
	"github.com/clover-sched/clover/internal/pprofhttp"
	"github.com/clover-sched/clover/internal/registry"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/transport"
	"github.com/clover-sched/clover/internal/wire"
	"github.com/clover-sched/clover/internal/zkacl"
	"github.com/clover-sched/clover/internal/zksession"
)

// Server is one member of the cluster. Create it with New and start it with Run.
type Server struct {
	cfg      Config
	ui       atomic.Pointer[admin.Console] // the web console, once the keys are loaded
	logger   *slog.Logger
	registry *prometheus.Registry
	metrics  *metrics
	now      func() time.Time

	sess     *zksession.Session
	store    *store.Store
	outputs  outputAsks // asks for output waiting for their clients' answers
	inbox    *transport.Inbox
	outbox   *transport.Outbox
	clients  *registry.Cache
	servers  *registry.Cache
	election *election.Election
	intake   *intake
	sec      *security

	apiAddr      string      // resolved API listen address
	ignoring     atomic.Bool // some registered clients are not admitted (see admittedClients)
	ignoredMu    sync.Mutex
	ignored      map[string]string              // client id -> why it is not admitted, as last logged
	dropLog      logx.Limiter                   // rate-limits warnings repeated per request
	clientsDirty atomic.Bool                    // the client registry changed since the leader loop last looked
	leaderAt     atomic.Pointer[observedLeader] // the leader as last observed; nil when none
	lead         atomic.Pointer[leader]         // this server's leader loop while it leads
	jobLocks     jobLocks                       // see jobwrites.go
	room         jobRoom                        // the jobs under limits.jobs
	auditLog     groupCommit[store.AuditEntry]  // see auditEntries
	revisionLog  groupCommit[store.Revision]    // see recordRevisions
	prunes       revisionPrunes                 // revisions out of their window, deleted in the background
	tombs        tombstoneCache                 // deleted jobs' last versions (see continueVersions)
	tombstoneLog groupCommit[store.Tombstone]   // see buryJobs
	creates      groupCommit[job.Spec]          // see createJobs
}

// Option changes a Server built by New.
type Option func(*Server)

// WithLogger sets the logger; the default is slog.Default().
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.logger = l } }

// WithRegistry sets the Prometheus registry the server's metrics go to and /metrics serves.
func WithRegistry(r *prometheus.Registry) Option { return func(s *Server) { s.registry = r } }

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option { return func(s *Server) { s.now = now } }

// New checks cfg and returns a Server that has not started anything yet.
func New(cfg Config, opts ...Option) (*Server, error) {
	if err := cfg.Mongo.ReadURIFile(); err != nil {
		return nil, fmt.Errorf("server: config: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("server: config: %w", err)
	}
	s := &Server{cfg: cfg, logger: slog.Default(), now: time.Now}
	for _, o := range opts {
		o(s)
	}
	if s.registry == nil {
		s.registry = prometheus.NewRegistry()
	}
	s.logger = s.logger.With("component", "server", "server", cfg.ID)
	s.metrics = newMetrics(s.registry)
	return s, nil
}

// serverInfo is what a server publishes in its registry node and election candidate node.
type serverInfo struct {
	ID       string `json:"id"`
	Endpoint string `json:"endpoint"`
	APIAddr  string `json:"api_addr"`
}

// Run starts the server and blocks until ctx ends or a component fails; then it stops everything it
// started (resigning leadership first, so a standby takes over at once rather than after a session timeout).
func (s *Server) Run(ctx context.Context) error {
	routes, err := s.routes()
	if err != nil {
		return err
	}
	if s.sec, err = s.loadSecurity(); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	ui, err := s.newConsole(routes)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	s.ui.Store(ui)
	var tlsConfig *tls.Config
	if s.cfg.API.TLS.Enabled() {
		if tlsConfig, err = serverTLS(s.cfg.API.TLS); err != nil {
			return fmt.Errorf("server: %w", err)
		}
	}
	s.sess, err = zksession.Connect(ctx, s.cfg.ZooKeeper.Servers, s.cfg.ZooKeeper.Root, s.cfg.ZooKeeper.SessionTimeout, s.logger, s.sec.zk...)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	defer s.sess.Close()
	if !s.sec.insecure() {
		secured, err := zkacl.SecureIfOpen(s.sess)
		if err != nil {
			return fmt.Errorf("server: %w", err)
		}
		if len(secured) > 0 {
			s.logger.Warn("the ZooKeeper tree was open to anyone (made by an earlier version or an insecure run): set the servers' ACLs", "nodes", len(secured))
		}
	}
	if err := refuseDuringSplit(s.sess); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	s.store, err = store.Open(ctx, s.cfg.Mongo.URI, s.cfg.Mongo.Database, store.WithOpenSet(s.cfg.Mongo.OpenSet))
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	defer s.store.Close(context.WithoutCancel(ctx))
	s.inbox, err = transport.Listen(s.cfg.Listen, transport.Options{MaxFrame: wire.MaxFrame, Curve: s.sec.curve})
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	inboxRunning := false
	defer func() {
		if !inboxRunning {
			s.inbox.Close() // the start failed before the inbox ran (Run closes it otherwise)
		}
	}()
	endpoint, err := config.Advertise(s.inbox.Endpoint(), s.cfg.Advertise)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	ln, err := net.Listen("tcp", s.cfg.API.Listen)
	if err != nil {
		return fmt.Errorf("server: listen api %s: %w", s.cfg.API.Listen, err)
	}
	if s.apiAddr, err = config.Advertise(ln.Addr().String(), s.cfg.API.Advertise); err != nil {
		ln.Close()
		return fmt.Errorf("server: api.%w", err)
	}
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
	}
	var debugLn net.Listener
	if s.cfg.DebugListen != "" {
		if debugLn, err = net.Listen("tcp", s.cfg.DebugListen); err != nil {
			ln.Close()
			return fmt.Errorf("server: debug_listen %s: %w", s.cfg.DebugListen, err)
		}
	}
	s.outbox = transport.NewOutbox(s.logger, s.sec.curve)
	defer s.outbox.Close()

	info := serverInfo{ID: s.cfg.ID, Endpoint: endpoint, APIAddr: s.apiAddr}
	value, _ := json.Marshal(info)
	reg, err := registry.Register(ctx, s.sess, registry.KindServers, registry.Member{
		ID: s.cfg.ID, Endpoint: info.Endpoint, APIAddr: info.APIAddr, StartedAt: s.now().UTC(),
	}, s.logger)
	if err != nil {
		ln.Close()
		return fmt.Errorf("server: %w", err)
	}
	s.clients = registry.NewCache(s.sess, registry.KindClients, s.logger)
	s.servers = registry.NewCache(s.sess, registry.KindServers, s.logger)
	s.election = election.New(s.sess, s.sess.Path("election"), s.cfg.ID, value, s.logger)
	s.intake = newIntake(s.intakeDeps(), newCloser(s.store, s.cfg.History, s.now, s.logger, s.metrics))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	start := func(name string, f func(context.Context) error) {
		wg.Go(func() {
			if err := f(ctx); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("server: %s: %w", name, err)
			}
		})
	}
	inboxRunning = true
	start("inbox", func(ctx context.Context) error { return s.inbox.Run(ctx, s.intake.receive) })
	start("clients cache", func(ctx context.Context) error { s.clients.Run(ctx); return nil })
	start("servers cache", func(ctx context.Context) error { s.servers.Run(ctx); return nil })
	start("peers", s.watchPeers)
	start("leader observer", s.observeLeader)
	start("intake", s.intake.run)
	start("leadership", s.monitorLeadership)
	start("store layout", s.watchLayout)

	api := newHTTPServer(routes)
	start("api", func(ctx context.Context) error {
		if err := api.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	var debug *http.Server
	if debugLn != nil {
		debug = newHTTPServer(pprofhttp.Handler())
		start("debug", func(ctx context.Context) error {
			if err := debug.Serve(debugLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	s.logger.Info("server started", "endpoint", info.Endpoint, "api", s.apiAddr, "tls", tlsConfig != nil,
		"secure", !s.sec.insecure(), "debug", s.cfg.DebugListen, "zookeeper", s.cfg.ZooKeeper.Servers)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		s.logger.Error("server stopping after a failure", "err", runErr)
	}
	cancel()
	shutdownCtx, done := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer done()
	_ = api.Shutdown(shutdownCtx)
	if debug != nil {
		_ = debug.Shutdown(shutdownCtx)
	}
	wg.Wait()
	_ = s.election.Resign(shutdownCtx)
	_ = reg.Close(shutdownCtx)
	s.logger.Info("server stopped")
	return runErr
}

// watchPeers keeps the outbox connected to every client (dispatches, receipts) and every other server
// (forwarding to the leader).
func (s *Server) watchPeers(ctx context.Context) error {
	for {
		peers := map[string]transport.Peer{}
		for _, m := range s.admittedClients() {
			peers[m.ID] = transport.Peer{Endpoint: m.Endpoint}
		}
		for _, m := range s.servers.Members() {
			if m.ID != s.cfg.ID {
				peers[m.ID] = transport.Peer{Endpoint: m.Endpoint, Server: true}
			}
		}
		s.outbox.SetPeers(peers)
		s.clientsDirty.Store(true)
		if l := s.lead.Load(); l != nil {
			l.ClientsChanged()
		}
		// While some registered clients are not admitted, look again every few seconds: a key added to
		// the allowlist admits its client without a registry change.
		// And every half minute anyway: a key removed from it stops admitting its client.
		recheck := time.After(30 * time.Second)
		if s.ignoring.Load() {
			recheck = time.After(5 * time.Second)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.clients.Changes():
		case <-s.servers.Changes():
		case <-recheck:
		}
	}
}

// observedLeader is the leader's published info, decoded once when it changes: followers read it for every
// report they relay.
type observedLeader struct {
	info  serverInfo
	epoch int64
}

// observeLeader keeps leaderAt current, for forwarding and for the API.
func (s *Server) observeLeader(ctx context.Context) error {
	for l := range s.election.Observe(ctx) {
		if l.ID == "" {
			s.leaderAt.Store(nil)
			continue
		}
		var info serverInfo
		if err := json.Unmarshal(l.Value, &info); err != nil || info.ID == "" {
			info = serverInfo{ID: l.ID} // written by someone else: we know its id only
		}
		s.leaderAt.Store(&observedLeader{info: info, epoch: l.Epoch})
	}
	return nil
}

// leaderInfo returns the current leader's published info, if there is a leader.
func (s *Server) leaderInfo() (serverInfo, int64, bool) {
	l := s.leaderAt.Load()
	if l == nil {
		return serverInfo{}, 0, false
	}
	return l.info, l.epoch, true
}
