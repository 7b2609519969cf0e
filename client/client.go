package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clover-sched/clover/internal/config"
	"github.com/clover-sched/clover/internal/election"
	"github.com/clover-sched/clover/internal/fallback"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/logx"
	"github.com/clover-sched/clover/internal/registry"
	"github.com/clover-sched/clover/internal/schedule"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/transport"
	"github.com/clover-sched/clover/internal/wire"
	"github.com/clover-sched/clover/internal/workflow"
	"github.com/clover-sched/clover/internal/zksession"
)

// HandlerFunc runs one execution. Returning an error marks it failed; its text is the error reported.
type HandlerFunc func(ctx context.Context, jc JobContext) error

// JobContext is what a handler gets to know about the execution it runs.
type JobContext struct {
	ExecutionID string
	Job         string
	Client      string // the id of the client running it
	Params      map[string]string
	ScheduledAt time.Time
	Attempt     int
	Run         int        // 1, then 2 for the first retry...
	Shard       *job.Shard // the part of a sharded firing this execution is; nil when not sharded
	Trigger     job.Trigger
	Logger      *slog.Logger // lines also reach the execution's output tail
	Output      io.Writer    // the execution's output; its tail is reported with the result

	progress func(percent int, message string)
	runDir   string   // the run's journal directory, for runShell; "" when not journaled
	shellEnv []string // the client's environment variables a shell command gets (see shellEnviron)
	spawn    *spawner // starts the command's process (at the jobs' priority); nil: exec.Cmd.Start
}

// Progress reports how far the run has got: percent from 0 to 100 and a short message (cut to 200 bytes).
// The leader hears of it with the next heartbeat and shows it in `clover exec live`; the line also goes
// to the execution's output. It costs nothing to call often: only the last report is sent.
func (jc JobContext) Progress(percent int, message string) {
	if jc.progress != nil {
		jc.progress(percent, message)
	}
}

// Client serves jobs. Create it with New, add handlers and declarations, then Run it.
type Client struct {
	cfg    Config
	logger *slog.Logger
	now    func() time.Time
	// memberKey signs its registration (keyring.MemberKey); nil in insecure mode.
	memberKey []byte

	mu        sync.Mutex
	handlers  map[string]HandlerFunc
	declared  []job.Spec
	batches   []workflow.Definition     // declared, of declared jobs
	seen      byRun[decision]           // what we answered for each run of an execution
	active    byRun[*activeRun]         // runs under way here, from acceptance until their result is produced
	pending   byRun[*pendingReport]     // results not yet confirmed by a receipt
	acks      byRun[*pendingReport]     // accepted acks not yet confirmed by a receipt
	requests  map[string]*pendingReport // run requests not yet confirmed by a receipt, by request id
	localBusy map[string]bool           // local jobs whose last run has not ended
	running   int                       // slots taken
	width     int                       // resource width taken

	maxEpoch atomic.Int64
	leader   atomic.Pointer[string] // id of the current leader, as the election says; nil or "" when unknown
	outbox   *transport.Outbox
	stats    Stats
	dropLog  logx.Limiter

	boot        int64           // when this process started, Unix nanoseconds: part of request ids
	reqSeq      atomic.Int64    // numbers this process's run requests
	lastReceipt atomic.Int64    // when a server last confirmed anything, Unix nanoseconds
	queue       *fallback.Queue // nil when no fallback queue is configured
	journal     *journal        // nil until Run opens it
	runEnded    chan struct{}   // a run ended (drain waits on it); buffered, never blocks
	journaled   byRun[string]   // journal directories of runs under way or not yet confirmed (under mu)
	queueStore  atomic.Pointer[store.Store]
	queueLog    logx.Limiter
	// capacityFrom says where cfg.Capacity came from, for the start log.
	capacityFrom string
	spawn        *spawner // starts shell job processes; nil until Run starts it
	zk           atomic.Pointer[zksession.Session]
	// outputReads bounds the output asks answered at once (see onOutputAsk): readers of output never
	// take the client from its runs.
	outputReads chan struct{}
}

// ZooKeeperLosses reports how many times this client's ZooKeeper session expired (losing its registration)
// and how many times its connection dropped while it held one.
func (c *Client) ZooKeeperLosses() (expired, disconnected int64) {
	if s := c.zk.Load(); s != nil {
		return s.Losses()
	}
	return 0, 0
}

// Stats counts what a client did; read it with Stats().
type Stats struct {
	Accepted, Refused, Duplicates, StaleEpoch, Succeeded, Failed, Dropped atomic.Int64
	// Stopped counts runs stopped by the leader (they count as failed too).
	Stopped atomic.Int64
	// LocalFired counts runs of local jobs this client fired; LocalSkipped the firings it skipped because
	// the job's previous run was still running.
	LocalFired, LocalSkipped atomic.Int64
	// Requested counts run requests of the application; FallbackQueued the reports put in the fallback
	// queue because no server confirmed them.
	Requested, FallbackQueued atomic.Int64
}

func (e *stopError) Error() string { return "stopped: " + e.reason }

// Option changes a Client built by New.
type Option func(*Client)

// WithLogger sets the logger; the default is slog.Default().
func WithLogger(l *slog.Logger) Option { return func(c *Client) { c.logger = l } }

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option { return func(c *Client) { c.now = now } }

// New checks cfg and returns a client. The shell handler is available when cfg.Handlers names it.
func New(cfg Config, opts ...Option) (*Client, error) {
	if f := cfg.Fallback.MongoURIFile; f != "" {
		uri, err := config.ReadURIFile("fallback.mongo_uri_file", f)
		if err != nil {
			return nil, fmt.Errorf("client: config: %w", err)
		}
		cfg.Fallback.MongoURI = uri
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("client: config: %w", err)
	}
	capacityFrom := "configured"
	if cfg.Capacity == 0 {
		cfg.Capacity, capacityFrom = DefaultCapacity()
		capacityFrom = "derived: " + capacityFrom
	}
	c := &Client{
		cfg: cfg, logger: slog.Default(), now: time.Now,
		handlers:  map[string]HandlerFunc{},
		seen:      byRun[decision]{},
		pending:   byRun[*pendingReport]{},
		acks:      byRun[*pendingReport]{},
		active:    byRun[*activeRun]{},
		localBusy: map[string]bool{},
		requests:  map[string]*pendingReport{},
		journaled: byRun[string]{},
		runEnded:  make(chan struct{}, 1),

		outputReads: make(chan struct{}, 4),

		capacityFrom: capacityFrom,
	}
	for _, o := range opts {
		o(c)
	}
	c.logger = c.logger.With("component", "client", "client", cfg.ID)

	c.boot = c.now().UnixNano()
	for _, j := range cfg.Jobs {
		if err := c.Declare(j.Spec()); err != nil {
			return nil, fmt.Errorf("client: config: %w", err)
		}
	}
	return c, nil
}

// Handle registers a Go handler under name. A job whose handler (or, for a declared job, whose name) is
// name runs it. Register handlers before Run.
func (c *Client) Handle(name string, h HandlerFunc) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.handlers[name] = h
}

// Declare declares a job this client serves; the leader creates it in the cluster if it does not exist.
// Call it before Run.
func (c *Client) Declare(spec job.Spec) error {
	if err := spec.Validate(); err != nil {
		return err
	}
	if _, err := schedule.Parse(spec.Schedule, spec.TimeZone); err != nil {
		return fmt.Errorf("job %s: %w", spec.Name, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if slices.ContainsFunc(c.declared, func(s job.Spec) bool { return s.Name == spec.Name }) {
		return fmt.Errorf("job %s: declared twice", spec.Name)
	}
	c.declared = append(c.declared, spec)
	return nil
}

// DeclareBatch declares a batch (a graph of jobs, see package workflow) of jobs this client declares;
// the leader creates it, or keeps it as declared, unless the API or a job file maintains a batch of that
// name. Batches of other jobs are made through the API, the CLI or job files: a client may not make others'
// jobs run. Call it before Run, after declaring its jobs.
func (c *Client) DeclareBatch(def workflow.Definition) error {
	if err := def.Validate(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range def.Nodes {
		if !slices.ContainsFunc(c.declared, func(s job.Spec) bool { return s.Name == n.Job }) {
			return fmt.Errorf("batch %s: node %s: job %s is not declared by this client (declare it first)", def.Name, n.Name, n.Job)
		}
		if len(n.Locks) > 0 || len(n.Resources) > 0 {
			return fmt.Errorf("batch %s: node %s: a client's batch may not take locks or resources (the cluster's, shared by every batch: make the batch with a job file or the API)", def.Name, n.Name)
		}
	}
	if slices.ContainsFunc(c.batches, func(d workflow.Definition) bool { return d.Name == def.Name }) {
		return fmt.Errorf("batch %s: declared twice", def.Name)
	}
	def.Version, def.Source = 0, ""
	c.batches = append(c.batches, def)
	return nil
}

// Stats returns the client's counters.
func (c *Client) Stats() *Stats { return &c.stats }

// member is what the client publishes in ZooKeeper.
func (c *Client) member(endpoint string) (registry.Member, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := registry.Member{
		ID: c.cfg.ID, Endpoint: endpoint, Capacity: c.cfg.Capacity, Width: c.cfg.Width, Labels: c.cfg.Labels,
		StartedAt: c.now().UTC(),
	}
	handlers := slices.Clone(c.cfg.Handlers)
	for name := range c.handlers {
		handlers = append(handlers, name)
	}
	slices.Sort(handlers)
	m.Handlers = slices.Compact(handlers)
	for _, s := range c.declared {
		m.Jobs = append(m.Jobs, s.Name)
	}
	if len(c.declared) > 0 {
		b, err := json.Marshal(c.declared)
		if err != nil {
			return m, err
		}
		m.Declared = b
	}
	if len(c.batches) > 0 {
		b, err := json.Marshal(c.batches)
		if err != nil {
			return m, err
		}
		m.DeclaredBatches = b
	}
	return m, nil
}

// Run serves until ctx ends. It returns an error if it cannot start (ZooKeeper unreachable, endpoint in
// use); once started, outages of servers or ZooKeeper are waited out, not returned.
func (c *Client) Run(ctx context.Context) error {
	curve, access, err := c.security()
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	sess, err := zksession.Connect(ctx, c.cfg.ZooKeeper.Servers, c.cfg.ZooKeeper.Root, c.cfg.ZooKeeper.SessionTimeout, c.logger, access...)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	defer sess.Close()
	c.zk.Store(sess)
	inbox, err := transport.Listen(c.cfg.Listen, transport.Options{MaxFrame: wire.MaxFrame, Curve: curve})
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	inboxRunning := false
	defer func() {
		if !inboxRunning {
			inbox.Close() // the start failed before the inbox ran (Run closes it otherwise)
		}
	}()
	endpoint, err := config.Advertise(inbox.Endpoint(), c.cfg.Advertise)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	c.outbox = transport.NewOutbox(c.logger, curve)
	defer c.outbox.Close()
	if c.spawn, err = newSpawner(c.cfg.JobNice, c.cfg.JobCgroup); err != nil {
		return fmt.Errorf("client: %w", err)
	}
	if c.spawn.unlowered != nil {
		c.logger.Warn("cannot lower the priority of job processes: jobs that saturate the machine can starve this client", "err", c.spawn.unlowered)
	}
	defer c.spawn.close() // after the drain: runs that end during it may still start processes (retries do not)
	var metricsLn, debugLn net.Listener
	if c.cfg.MetricsListen != "" {
		if metricsLn, err = net.Listen("tcp", c.cfg.MetricsListen); err != nil {
			return fmt.Errorf("client: metrics_listen %s: %w", c.cfg.MetricsListen, err)
		}
	}
	if c.cfg.DebugListen != "" {
		if debugLn, err = net.Listen("tcp", c.cfg.DebugListen); err != nil {
			return fmt.Errorf("client: debug_listen %s: %w", c.cfg.DebugListen, err)
		}
	}
	if c.cfg.Fallback.Enabled() {
		if err := c.openQueue(); err != nil {
			return fmt.Errorf("client: %w", err)
		}
		defer c.closeQueue()
	}
	c.openJournal()
	defer c.journal.close()
	// Before registering: a re-sent dispatch of a journaled run must find it known.
	c.recoverRuns()
	m, err := c.member(endpoint)
	if err != nil {
		return fmt.Errorf("client: declarations: %w", err)
	}
	if c.memberKey != nil {
		m.Kind = registry.KindClients // signed as the servers read it
		m = m.Signed(c.memberKey)
	}
	servers := registry.NewCache(sess, registry.KindServers, c.logger)
	el := election.New(sess, sess.Path("election"), c.cfg.ID, nil, c.logger)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	// A component that fails ends Run with its error, rather than leaving a client registered but deaf
	// (its process exits non-zero and its supervisor restarts it; its journal carries the runs over).
	errc := make(chan error, 1)
	inboxRunning = true
	wg.Go(func() {
		if err := inbox.Run(ctx, c.receive); err != nil && ctx.Err() == nil {
			errc <- fmt.Errorf("client: inbox: %w", err)
		}
	})
	wg.Go(func() { servers.Run(ctx) })
	wg.Go(func() { c.watchServers(ctx, servers) })
	wg.Go(func() {
		for l := range el.Observe(ctx) {
			c.raiseEpoch(l.Epoch)
			c.setLeader(l.ID)
		}
	})
	wg.Go(func() { c.resendLoop(ctx) })
	wg.Go(func() { c.heartbeatLoop(ctx) })
	wg.Go(func() { c.watchFiles(ctx) })
	if metricsLn != nil {
		wg.Go(func() { c.serveMetrics(ctx, metricsLn) })
	}
	if debugLn != nil {
		wg.Go(func() { c.serveDebug(ctx, debugLn) })
	}
	if c.queue != nil {
		wg.Go(func() { c.queue.Run(ctx) })
		wg.Go(func() { c.declareIfAlone(ctx) })
	}

	// Register last: the leader dispatches as soon as it sees us, so the inbox must already be served.
	reg, err := registry.Register(ctx, sess, registry.KindClients, m, c.logger)
	if err != nil {
		cancel()
		wg.Wait()
		return fmt.Errorf("client: %w", err)
	}
	// Local jobs fire once we are registered: the leader creates their definitions from our declarations.
	c.startLocal(ctx, &wg)
	c.logger.Info("client started", "endpoint", endpoint, "bound", inbox.Endpoint(), "secure", curve != nil, "jobs", m.Jobs, "handlers", m.Handlers,
		"capacity", c.cfg.Capacity, "capacity_from", c.capacityFrom, "job_nice", c.cfg.JobNice, "job_cgroup", c.cfg.JobCgroup,
		"session_timeout", c.cfg.ZooKeeper.SessionTimeout)
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		c.logger.Error("client stopping after a failure", "err", runErr)
		cancel()
	}
	// Runs under way get a moment to end and report (the inbox is closed: no new run starts); the client
	// stays registered meanwhile, so the leader does not count them lost.
	c.drain(shutdownGrace)
	closeCtx, done := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer done()
	_ = reg.Close(closeCtx)
	// A client may not delete its node (ZooKeeper would then let it delete others'): it goes with the
	// session, closed now rather than after the fallback flush, so the leader stops choosing this client.
	sess.Close()
	wg.Wait()
	if c.queue != nil {
		// What no server confirmed goes to the fallback queue rather than away with the process.
		flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		c.flushToFallback(flushCtx)
		cancel()
	}
	c.logger.Info("client stopped")
	return runErr
}

// openJournal opens the run journal. A client whose journal cannot be opened runs all the same, as it
// does when one run cannot be journaled: refusing all work would be worse than the orphans it may leave if
// it dies.
func (c *Client) openJournal() {
	dir := c.cfg.StateDir
	if dir == "" {
		var err error
		if dir, err = defaultStateDir(); err != nil {
			c.logger.Error("runs are not journaled: if this client dies mid-run, its executions stay orphaned", "err", err)
			return
		}
	}
	j, err := openJournal(dir, c.cfg.ID)
	if err != nil {
		c.logger.Error("runs are not journaled: if this client dies mid-run, its executions stay orphaned", "err", err)
		return
	}
	c.journal = j
}

// shutdownGrace is how long a stopping client waits for its runs under way to end.
const shutdownGrace = 5 * time.Second

// drain waits until no run is under way here, or for at most grace (a wall-clock wait: the injected clock
// dates reports, it does not pace a shutdown). Each run that ends wakes it.
func (c *Client) drain(grace time.Duration) {
	timeout := time.NewTimer(grace)
	defer timeout.Stop()
	logged := false
	for {
		c.mu.Lock()
		n := c.active.len()
		c.mu.Unlock()
		if n == 0 {
			return
		}
		if !logged {
			c.logger.Info("stopping: waiting for the runs under way", "runs", n, "grace", grace)
			logged = true
		}
		select {
		case <-c.runEnded:
		case <-timeout.C:
			c.logger.Warn("stopping with runs still under way; a restart with the same id and state_dir reports them", "runs", n)
			return
		}
	}
}

func (c *Client) raiseEpoch(e int64) {
	for {
		cur := c.maxEpoch.Load()
		if e <= cur || c.maxEpoch.CompareAndSwap(cur, e) {
			return
		}
	}
}

// setLeader records the id of the current leader ("" when there is none).
func (c *Client) setLeader(id string) { c.leader.Store(&id) }

// leaderID is the id of the current leader, or "" when unknown.
func (c *Client) leaderID() string {
	if p := c.leader.Load(); p != nil {
		return *p
	}
	return ""
}

func (c *Client) watchServers(ctx context.Context, servers *registry.Cache) {
	for {
		peers := map[string]transport.Peer{}
		for _, m := range servers.Members() {
			peers[m.ID] = transport.Peer{Endpoint: m.Endpoint, Server: true}
		}
		c.outbox.SetPeers(peers)
		select {
		case <-ctx.Done():
			return
		case <-servers.Changes():
		}
	}
}
