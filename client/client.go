package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clover-sched/clover/internal/election"
	"github.com/clover-sched/clover/internal/fallback"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/logx"
	"github.com/clover-sched/clover/internal/registry"
	"github.com/clover-sched/clover/internal/schedule"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/transport"
	"github.com/clover-sched/clover/internal/wire"
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
	runDir   string // the run's journal directory, for runShell; "" when not journaled
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

	mu        sync.Mutex
	handlers  map[string]HandlerFunc
	declared  []job.Spec
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

// decision is how a client answered the dispatches of one run of an execution.
type decision struct {
	accepted bool
	code     string
	reason   string
	attempt  int
	acceptBy time.Time
}

// activeRun is a run under way here.
type activeRun struct {
	width    int
	local    string // the job's name for a run of a local job, "" otherwise
	cancel   context.CancelCauseFunc
	progress *wire.Progress // the handler's last progress report; nil before the first (under c.mu)
}

// stopError is the cause of a run's context when the leader stopped it.
type stopError struct{ reason string }

func (e *stopError) Error() string { return "stopped: " + e.reason }

// pendingReport is an ack or a result waiting for a receipt. It is sent at next, then again with a
// doubling backoff, so that a server that is slow to record reports is not buried under re-sends.
type pendingReport struct {
	frame []byte
	next  time.Time
	wait  time.Duration
	sent  bool // handed to the outbox at least once: only then can a server have recorded it
	// keep: the result does not replace it (the ack of a local run carries the execution itself, which
	// servers must record before the result means anything).
	keep bool
	// What the fallback queue needs: the entry's kind ("" for a report never queued, such as the ack of a
	// dispatched run, which the leader re-sends), the execution, when the report was made, and whether it
	// is queued already. A queued report is still re-sent until a receipt: the queue is the safety net,
	// the servers the way.
	kind    fallback.Kind
	execID  string
	created time.Time
	queued  bool
}

// byRun maps an execution id and a run number to a value. Retries are new runs of the same execution id,
// and what is known about each run (its answer, its reports) must not be confused with another's.
type byRun[T any] map[string]map[int]T

func (m byRun[T]) get(id string, run int) (T, bool) {
	v, ok := m[id][run]
	return v, ok
}

func (m byRun[T]) put(id string, run int, v T) {
	runs := m[id]
	if runs == nil {
		runs = map[int]T{}
		m[id] = runs
	}
	runs[run] = v
}

func (m byRun[T]) del(id string, run int) {
	if runs, ok := m[id]; ok {
		delete(runs, run)
		if len(runs) == 0 {
			delete(m, id)
		}
	}
}

func (m byRun[T]) has(id string, run int) bool {
	_, ok := m[id][run]
	return ok
}

// newest is the highest run known for id.
func (m byRun[T]) newest(id string) (int, bool) {
	n, ok := 0, false
	for run := range m[id] {
		n, ok = max(n, run), true
	}
	return n, ok
}

func (m byRun[T]) len() int {
	n := 0
	for _, runs := range m {
		n += len(runs)
	}
	return n
}

// confirm handles a receipt naming id without its run (from a server that does not send runs), so it
// cannot say which run's report a server recorded. It clears every report of id whose run is at most the newest run of id
// with a report already sent (a report never sent cannot have been recorded):
//   - clearing an older run is safe: a run n+1 exists only because the leader learned how run n ended, and
//     the leader keeps a reported result until it is recorded (it records it itself after a minute);
//   - the newest run is cleared too, even though the receipt may be a late one meant for an older run.
//     That window is small (a receipt of run n arriving after run n+1 reported), and it is covered the
//     same way: the leader heard run n+1's report when a server got it.
//
// Matching each receipt to one run would need runs in receipts; keeping a report too long only costs
// re-sends, which servers answer with a receipt again, but a report kept forever would never stop.
func confirm(m byRun[*pendingReport], id string) {
	newest, found := 0, false
	for run, p := range m[id] {
		if p.sent && (!found || run > newest) {
			newest, found = run, true
		}
	}
	if !found {
		return
	}
	for run := range m[id] {
		if run <= newest {
			m.del(id, run)
		}
	}
}

// runOf is a dispatch's run with its default: 0 means 1.
func runOf(n int) int { return max(n, 1) }

// ackDelay is how long an accepted execution's ack waits before it is sent: a run that ends sooner reports
// only its result, which says more, and halves the reports of short jobs.
const ackDelay = 200 * time.Millisecond

// maxReportBackoff caps the backoff of re-sent reports.
const maxReportBackoff = 30 * time.Second

// Option changes a Client built by New.
type Option func(*Client)

// WithLogger sets the logger; the default is slog.Default().
func WithLogger(l *slog.Logger) Option { return func(c *Client) { c.logger = l } }

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option { return func(c *Client) { c.now = now } }

// New checks cfg and returns a client. The shell handler is available when cfg.Handlers names it.
func New(cfg Config, opts ...Option) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("client: config: %w", err)
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
	}
	for _, o := range opts {
		o(c)
	}
	c.logger = c.logger.With("component", "client", "client", cfg.ID)
	if c.cfg.StateDir == "" {
		c.cfg.StateDir = filepath.Join(os.TempDir(), "clover-state")
	}
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
	return m, nil
}

// Run serves until ctx ends. It returns an error if it cannot start (ZooKeeper unreachable, endpoint in
// use); once started, outages of servers or ZooKeeper are waited out, not returned.
func (c *Client) Run(ctx context.Context) error {
	sess, err := zksession.Connect(ctx, c.cfg.ZooKeeper.Servers, c.cfg.ZooKeeper.Root, c.cfg.ZooKeeper.SessionTimeout, c.logger)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	defer sess.Close()
	inbox, err := transport.Listen(c.cfg.Listen)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	c.outbox = transport.NewOutbox(c.logger)
	defer c.outbox.Close()
	var metricsLn net.Listener
	if c.cfg.MetricsListen != "" {
		if metricsLn, err = net.Listen("tcp", c.cfg.MetricsListen); err != nil {
			return fmt.Errorf("client: metrics_listen %s: %w", c.cfg.MetricsListen, err)
		}
	}
	if c.cfg.Fallback.Enabled() {
		if err := c.openQueue(); err != nil {
			return fmt.Errorf("client: %w", err)
		}
		defer c.closeQueue()
	}
	if c.journal, err = openJournal(c.cfg.StateDir, c.cfg.ID); err != nil {
		return fmt.Errorf("client: %w", err)
	}
	// Before registering: a re-sent dispatch of a journaled run must find it known.
	c.recoverRuns()
	m, err := c.member(inbox.Endpoint())
	if err != nil {
		return fmt.Errorf("client: declarations: %w", err)
	}
	servers := registry.NewCache(sess, registry.KindServers, c.logger)
	el := election.New(sess, sess.Path("election"), c.cfg.ID, nil, c.logger)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	// A component that fails ends Run with its error, rather than leaving a client registered but deaf
	// (its process exits non-zero and its supervisor restarts it; its journal carries the runs over).
	errc := make(chan error, 1)
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
	if metricsLn != nil {
		wg.Go(func() { c.serveMetrics(ctx, metricsLn) })
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
	c.logger.Info("client started", "endpoint", inbox.Endpoint(), "jobs", m.Jobs, "handlers", m.Handlers)
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
		peers := map[string]string{}
		for _, m := range servers.Members() {
			peers[m.ID] = m.Endpoint
		}
		c.outbox.SetPeers(peers)
		select {
		case <-ctx.Done():
			return
		case <-servers.Changes():
		}
	}
}

// receive handles one frame from a server. Nothing a server sends can crash the client: frames that do not
// decode, and kinds a client does not take, are dropped and counted.
func (c *Client) receive(frame []byte, peer string) {
	m, err := wire.Decode(frame)
	if err != nil {
		c.stats.Dropped.Add(1)
		c.dropLog.Warn(c.logger, "dropped undecodable frame", "peer", peer, "bytes", len(frame), "err", err)
		return
	}
	switch x := m.(type) {
	case *wire.Dispatch:
		c.onDispatch(x)
	case *wire.Stop:
		c.onStop(x)
	case *wire.Receipt:
		c.lastReceipt.Store(c.now().UnixNano())
		c.mu.Lock()
		for _, id := range x.Requests {
			delete(c.requests, id)
		}
		for i, id := range x.ExecIDs {
			if i < len(x.ExecRuns) {
				c.pending.del(id, runOf(x.ExecRuns[i]))
			} else {
				confirm(c.pending, id)
			}
		}
		for i, id := range x.Acked {
			if i < len(x.AckedRuns) {
				c.acks.del(id, runOf(x.AckedRuns[i]))
			} else {
				confirm(c.acks, id)
			}
		}
		c.mu.Unlock()
	default:
		c.stats.Dropped.Add(1)
		c.dropLog.Warn(c.logger, "dropped frame of a kind clients do not take", "peer", peer, "kind", m.Kind().String(), "from", wire.From(m))
	}
}

// fenced reports whether a frame of the leader with epoch comes from a deposed leader, counting it if so,
// and otherwise raises the newest epoch seen.
func (c *Client) fenced(epoch int64) bool {
	if epoch < c.maxEpoch.Load() {
		c.stats.StaleEpoch.Add(1)
		return true
	}
	c.raiseEpoch(epoch)
	return false
}

func (c *Client) onDispatch(d *wire.Dispatch) {
	if c.fenced(d.Epoch) {
		c.logger.Warn("ignored dispatch from a deposed leader", "execution", d.ExecID, "from", d.From, "epoch", d.Epoch, "current_epoch", c.maxEpoch.Load())
		return
	}
	now := c.now()
	run := runOf(d.Run)

	c.mu.Lock()
	// A run of an execution runs here at most once: a dispatch of a run seen before gets the same answer,
	// unless it was refused and this is a later attempt (the leader offers it again, say after capacity
	// freed up). A retry is a new run of the same execution id, and a new decision.
	if prev, ok := c.seen.get(d.ExecID, run); ok && (prev.accepted || d.Attempt <= prev.attempt) {
		c.mu.Unlock()
		c.stats.Duplicates.Add(1)
		c.ack(d, run, prev.accepted, prev.code, prev.reason, true)
		return
	}
	// A late re-send of a run older than one already decided (whose own answer is forgotten): the leader
	// has moved on to the later run and needs no answer for this one, and it must not run now.
	if newest, ok := c.seen.newest(d.ExecID); ok && run < newest {
		c.mu.Unlock()
		c.stats.Duplicates.Add(1)
		c.logger.Debug("ignored dispatch of an earlier run", "execution", d.ExecID, "run", run, "newest_run", newest)
		return
	}
	h, shell := c.resolve(d)
	var code, reason string
	switch {
	case h == nil:
		code, reason = wire.RefuseNoHandler, fmt.Sprintf("no handler %q on this client", d.Handler)
	case now.After(d.AcceptBy):
		code, reason = wire.RefuseLate, "accept-by has passed; the leader may have given it to another client"
	case c.running >= c.cfg.Capacity:
		code, reason = wire.RefuseBusy, fmt.Sprintf("at capacity (%d running)", c.running)
	case c.cfg.Width > 0 && c.width+d.Width > c.cfg.Width:
		code, reason = wire.RefuseBusy, fmt.Sprintf("width %d does not fit (%d of %d taken)", d.Width, c.width, c.cfg.Width)
	}
	accepted := code == ""
	c.seen.put(d.ExecID, run, decision{accepted: accepted, code: code, reason: reason, attempt: d.Attempt, acceptBy: d.AcceptBy})
	var ctx context.Context
	var ar *activeRun
	if accepted {
		ctx, ar = c.startRunLocked(d.ExecID, run, d.Width, "")
	}
	c.mu.Unlock()

	c.ack(d, run, accepted, code, reason, false)
	if !accepted {
		c.stats.Refused.Add(1)
		return
	}
	c.stats.Accepted.Add(1)
	go c.execute(ctx, d, run, h, shell, ar)
}

// startRunLocked takes a slot and the width for a run and lists it as active; c.mu is held. The context
// returned is canceled, with a *stopError cause, when the leader stops the run.
func (c *Client) startRunLocked(id string, run, width int, local string) (context.Context, *activeRun) {
	ctx, cancel := context.WithCancelCause(context.Background())
	ar := &activeRun{width: width, local: local, cancel: cancel}
	c.running++
	c.width += width
	c.active.put(id, run, ar)
	if local != "" {
		c.localBusy[local] = true
	}
	return ctx, ar
}

// onStop stops a run the leader wants stopped: its context is canceled (the shell handler kills the
// command's whole process group) and it reports a final failure.
func (c *Client) onStop(s *wire.Stop) {
	if c.fenced(s.Epoch) {
		c.logger.Warn("ignored stop from a deposed leader", "execution", s.ExecID, "from", s.From, "epoch", s.Epoch, "current_epoch", c.maxEpoch.Load())
		return
	}
	reason := s.Reason
	if reason == "" {
		reason = "asked by " + s.From
	}
	c.mu.Lock()
	runs := slices.Collect(maps.Values(c.active[s.ExecID]))
	c.mu.Unlock()
	if len(runs) == 0 {
		c.logger.Debug("stop of an execution that does not run here", "execution", s.ExecID, "from", s.From)
		return
	}
	c.logger.Info("stopping execution", "execution", s.ExecID, "reason", reason)
	for _, ar := range runs {
		ar.cancel(&stopError{reason: reason})
	}
}

// resolve finds the handler for a dispatch: a Go handler named like the job's handler, then the shell
// handler if offered (shell), then a Go handler named like the job.
func (c *Client) resolve(d *wire.Dispatch) (h HandlerFunc, shell bool) {
	if h, ok := c.handlers[d.Handler]; ok {
		return h, false
	}
	if d.Handler == job.HandlerShell && slices.Contains(c.cfg.Handlers, job.HandlerShell) {
		return runShell, true
	}
	if h, ok := c.handlers[d.Job]; ok {
		return h, false
	}
	return nil, false
}

// ack answers a dispatch of run. A refusal, or the answer to a dispatch seen before (now), goes out at
// once. A new acceptance is held for ackDelay (a short run reports its result instead), then sent and
// re-sent until a server confirms it is recorded: a new leader that finds an execution without a recorded
// ack may, after a while, give it to another client.
func (c *Client) ack(d *wire.Dispatch, run int, accepted bool, code, reason string, now bool) {
	at := c.now()
	frame, err := wire.Encode(&wire.Ack{
		Header: wire.Header{From: c.cfg.ID, Epoch: d.Epoch, SentAt: at},
		ExecID: d.ExecID, Job: d.Job, Attempt: d.Attempt, Run: run, Accepted: accepted, Code: code, Reason: reason, At: at,
	})
	if err != nil {
		c.logger.Error("cannot encode ack", "execution", d.ExecID, "err", err)
		return
	}
	if accepted && !now {
		c.mu.Lock()
		if !c.pending.has(d.ExecID, run) {
			c.acks.put(d.ExecID, run, &pendingReport{frame: frame, next: at.Add(ackDelay), wait: c.cfg.ResultRetry})
		}
		c.mu.Unlock()
		return
	}
	if _, err := c.outbox.SendAny(frame); err != nil {
		// The leader re-sends the dispatch and gets the same answer then.
		c.logger.Debug("ack not sent", "execution", d.ExecID, "err", err)
	}
}

// execute journals a run of a dispatched execution, then runs it (see runHandler). A run the journal
// cannot take runs all the same: refusing work because a disk is full would be worse than the orphan it
// may leave if the client dies.
func (c *Client) execute(ctx context.Context, d *wire.Dispatch, run int, h HandlerFunc, shell bool, ar *activeRun) {
	started := c.now()
	dir, err := c.journal.begin(d, run, shell, started)
	if err != nil {
		c.logger.Error("run not journaled: if this client dies before it ends, its execution stays orphaned", "execution", d.ExecID, "err", err)
	} else {
		c.mu.Lock()
		c.journaled.put(d.ExecID, run, dir)
		c.mu.Unlock()
	}
	c.runHandler(ctx, d, run, h, ar, dir, started)
}

// runHandler runs the handler and reports its result. started is when the run started (before a restart,
// for a run the journal gave back); dir its journal directory.
func (c *Client) runHandler(ctx context.Context, d *wire.Dispatch, run int, h HandlerFunc, ar *activeRun, dir string, started time.Time) {
	defer ar.cancel(nil)
	if d.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, started.Add(time.Duration(d.Timeout)))
		defer cancel()
	}
	out := newTail(job.MaxOutput)
	jc := JobContext{
		ExecutionID: d.ExecID, Job: d.Job, Client: c.cfg.ID, Params: d.Params, ScheduledAt: d.ScheduledAt,
		Attempt: d.Attempt, Run: run, Shard: d.Shard, Trigger: d.Trigger, Output: out,
		Logger: slog.New(slog.NewTextHandler(out, nil)).With("execution", d.ExecID),
		runDir: dir,
	}
	jc.progress = func(percent int, message string) {
		percent = min(max(percent, 0), 100)
		if len(message) > wire.MaxProgressMessage {
			message = strings.ToValidUTF8(message[:wire.MaxProgressMessage], "")
		}
		fmt.Fprintf(out, "progress %d%%: %s\n", percent, message)
		c.mu.Lock()
		ar.progress = &wire.Progress{ExecID: d.ExecID, Run: run, Percent: percent, Message: message, At: c.now()}
		c.mu.Unlock()
	}
	err := safeCall(ctx, h, jc)
	var stopped *stopError
	errors.As(context.Cause(ctx), &stopped) // a stop asked before the handler returned
	finished := c.now()

	res := job.Result{Status: job.StateSucceeded, Duration: job.Duration(finished.Sub(started)), Output: out.String()}
	switch {
	case stopped != nil:
		// Stopped on purpose: no retry may follow, whatever the job's policy.
		res.Status, res.Error, res.ExitCode, res.Final = job.StateFailed, stopped.Error(), 1, true
		var ee interface{ ExitCode() int }
		if errors.As(err, &ee) && ee.ExitCode() > 0 {
			res.ExitCode = ee.ExitCode()
		}
		c.stats.Stopped.Add(1)
		c.stats.Failed.Add(1)
	case err != nil:
		res.Status, res.Error, res.ExitCode = job.StateFailed, err.Error(), 1
		var ee interface{ ExitCode() int }
		if errors.As(err, &ee) {
			res.ExitCode = ee.ExitCode()
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			res.Error = fmt.Sprintf("timed out after %s: %v", time.Duration(d.Timeout), err)
		}
		c.stats.Failed.Add(1)
	default:
		c.stats.Succeeded.Add(1)
	}
	frame, encErr := wire.Encode(&wire.Result{
		Header: wire.Header{From: c.cfg.ID, Epoch: d.Epoch, SentAt: finished},
		ExecID: d.ExecID, Job: d.Job, Attempt: d.Attempt, Run: run, Result: res, StartedAt: started, FinishedAt: finished,
	})
	defer func() {
		select {
		case c.runEnded <- struct{}{}:
		default:
		}
	}()
	c.mu.Lock()
	c.running--
	c.width -= ar.width
	c.active.del(d.ExecID, run)
	if ar.local != "" {
		delete(c.localBusy, ar.local)
	}
	if p, ok := c.acks.get(d.ExecID, run); ok && !p.keep {
		c.acks.del(d.ExecID, run) // the result says more than the ack
	}
	if encErr == nil {
		c.pending.put(d.ExecID, run, &pendingReport{
			frame: frame, next: finished.Add(c.cfg.ResultRetry), wait: 2 * c.cfg.ResultRetry, sent: true,
			kind: fallback.KindResult, execID: d.ExecID, created: finished,
		})
	}
	c.mu.Unlock()
	if encErr != nil {
		c.logger.Error("cannot encode result", "execution", d.ExecID, "err", encErr)
		return
	}
	if dir != "" {
		// Not synced: lost only with the machine, and then the run's exit status tells the same.
		_ = os.WriteFile(filepath.Join(dir, "result"), frame, 0o600)
	}
	_, _ = c.outbox.SendAny(frame)
}

func safeCall(ctx context.Context, h HandlerFunc, jc JobContext) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return h(ctx, jc)
}

// resendLoop sends held acks when they are due and re-sends acks and results until a server confirms
// them, each with its own doubling backoff, and forgets old answers to dispatches.
func (c *Client) resendLoop(ctx context.Context) {
	t := time.NewTicker(ackDelay / 2)
	defer t.Stop()
	var lastPrune time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := c.now()
		var frames [][]byte
		var undelivered []*pendingReport
		resend := func(p *pendingReport) {
			if !now.Before(p.next) {
				p.next = now.Add(p.wait)
				p.wait = min(2*p.wait, maxReportBackoff)
				p.sent = true
				frames = append(frames, p.frame)
			}
			if c.queue != nil && p.kind != "" && !p.queued && c.undeliverable(p, now) {
				undelivered = append(undelivered, p)
			}
		}
		c.mu.Lock()
		for _, m := range []byRun[*pendingReport]{c.acks, c.pending} {
			for _, runs := range m {
				for _, p := range runs {
					resend(p)
				}
			}
		}
		// Requests in the order the application made them: one that is late must not overtake another.
		for _, p := range slices.SortedFunc(maps.Values(c.requests), func(a, b *pendingReport) int { return a.created.Compare(b.created) }) {
			resend(p)
		}
		// The leader re-sends a dispatch whose answer it has not heard, with a backoff. Keep every answer
		// while its run goes on or its reports wait for a receipt, and for decisionMemory after accept-by.
		// A re-send that comes later is refused as late, and the leader checks the store before it hands
		// the execution to anyone else.
		if now.Sub(lastPrune) > 5*time.Second {
			lastPrune = now
			for id, runs := range c.seen {
				for run, d := range runs {
					if !c.acks.has(id, run) && !c.pending.has(id, run) && !c.active.has(id, run) && now.Sub(d.acceptBy) > decisionMemory {
						c.seen.del(id, run)
					}
				}
			}
			// A run whose result a server confirmed (or the fallback queue took) is out of the journal.
			for id, runs := range c.journaled {
				for run, dir := range runs {
					if !c.pending.has(id, run) && !c.active.has(id, run) {
						c.journaled.del(id, run)
						if err := c.journal.end(dir); err != nil {
							c.logger.Warn("cannot remove a run from the journal; a restart reports it again", "execution", id, "err", err)
						}
					}
				}
			}
		}
		c.mu.Unlock()
		for _, f := range frames {
			if _, err := c.outbox.SendAny(f); err != nil {
				break
			}
		}
		c.toFallback(ctx, undelivered)
	}
}

// decisionMemory is how long after its accept-by a client remembers how it answered a dispatch.
const decisionMemory = time.Minute

// heartbeatLoop sends a heartbeat every LeaseRenew: it renews the leases of the runs under way here. The
// leader treats a run that no heartbeat lists for a while as lost.
func (c *Client) heartbeatLoop(ctx context.Context) {
	t := time.NewTicker(c.cfg.LeaseRenew)
	defer t.Stop()
	for {
		c.heartbeat()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// heartbeat sends one heartbeat listing the executions running here (from acceptance until their result
// is produced) to the leader if it is known and registered, else to any server (which passes it on).
func (c *Client) heartbeat() {
	c.mu.Lock()
	var running []string
	var runs []int
	var progress []wire.Progress
	for _, id := range slices.Sorted(maps.Keys(c.active)) {
		for _, run := range slices.Sorted(maps.Keys(c.active[id])) {
			running, runs = append(running, id), append(runs, run)
			if p := c.active[id][run].progress; p != nil {
				progress = append(progress, *p)
			}
		}
	}
	// Runs that ended and whose result waits for a receipt: this client still answers for them.
	var ended []string
	var endedRuns []int
	for _, id := range slices.Sorted(maps.Keys(c.pending)) {
		for _, run := range slices.Sorted(maps.Keys(c.pending[id])) {
			ended, endedRuns = append(ended, id), append(endedRuns, run)
		}
	}
	c.mu.Unlock()
	frame, err := wire.Encode(&wire.Heartbeat{
		Header:  wire.Header{From: c.cfg.ID, Epoch: c.maxEpoch.Load(), SentAt: c.now()},
		Running: running, Runs: runs, Capacity: c.cfg.Capacity, Ended: ended, EndedRuns: endedRuns, Progress: progress,
	})
	if err != nil {
		c.logger.Error("cannot encode heartbeat", "err", err)
		return
	}
	if l := c.leaderID(); l != "" && slices.Contains(c.outbox.Peers(), l) {
		if err := c.outbox.Send(l, frame); err == nil {
			return
		}
	}
	if _, err := c.outbox.SendAny(frame); err != nil {
		c.logger.Debug("heartbeat not sent", "err", err)
	}
}

// startLocal starts firing the declared jobs in local mode: one goroutine per job, until ctx ends.
func (c *Client) startLocal(ctx context.Context, wg *sync.WaitGroup) {
	c.mu.Lock()
	var local []job.Spec
	for _, s := range c.declared {
		if s.Mode == job.ModeLocal {
			local = append(local, s)
		}
	}
	c.mu.Unlock()
	for _, s := range local {
		wg.Go(func() { c.localLoop(ctx, s) })
	}
}

// localLoop fires a local job on its schedule, on the client's clock. Fire times missed while the client
// was down, or while it could not keep up (a timer that fired a whole period late), are not caught up: the
// next fire time is always the first one after the last firing and after now.
func (c *Client) localLoop(ctx context.Context, spec job.Spec) {
	sched, err := schedule.Parse(spec.Schedule, spec.TimeZone)
	if err != nil { // Declare checked it
		c.logger.Error("local job: bad schedule", "job", spec.Name, "err", err)
		return
	}
	last := c.now()
	for {
		next := sched.Next(last)
		if next.IsZero() {
			c.logger.Info("local job has no fire time left", "job", spec.Name)
			return
		}
		t := time.NewTimer(next.Sub(c.now()))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		c.fireLocal(spec, next)
		last = next
		if now := c.now(); now.After(last) {
			last = now
		}
	}
}

// fireLocal makes the execution of a local job scheduled at, runs it and reports it: the ack, which carries
// the execution (servers record it from there), goes out at once and is re-sent until a receipt; the result
// follows as for any run. A firing while the job's previous run is still under way is skipped.
func (c *Client) fireLocal(spec job.Spec, at time.Time) {
	now := c.now()
	id := job.LocalExecutionID(spec.Name, at, c.cfg.ID)
	d := &wire.Dispatch{
		Header: wire.Header{From: c.cfg.ID, SentAt: now},
		ExecID: id, Job: spec.Name, Handler: spec.Handler, Params: maps.Clone(spec.Params), Timeout: spec.Timeout,
		ScheduledAt: at, Attempt: 1, Run: 1, Trigger: job.TriggerLocal, Width: spec.Routing.Width, AcceptBy: now,
	}
	c.mu.Lock()
	if c.localBusy[spec.Name] {
		c.mu.Unlock()
		c.stats.LocalSkipped.Add(1)
		c.logger.Info("overlap: previous run still running", "job", spec.Name, "scheduled_at", at)
		return
	}
	if c.seen.has(id, 1) {
		c.mu.Unlock()
		return // fired already (the clock went back)
	}
	h, _ := c.resolve(d)
	if h == nil {
		c.mu.Unlock()
		c.dropLog.Warn(c.logger, "local job not fired: no handler on this client", "job", spec.Name, "handler", spec.Handler)
		return
	}
	// Local runs take a slot and their width like any other, so that dispatches are refused meanwhile, but
	// they are never refused themselves: the client's own jobs come first.
	c.seen.put(id, 1, decision{accepted: true, attempt: 1, acceptBy: now})
	ctx, ar := c.startRunLocked(id, 1, d.Width, spec.Name)
	c.mu.Unlock()
	c.stats.Accepted.Add(1)
	c.stats.LocalFired.Add(1)

	exec := &job.Execution{
		ID: id, Firing: id, Job: spec.Name, ScheduledAt: at, FiredAt: now, Trigger: job.TriggerLocal, Epoch: 0, Server: "",
		// Never rerunnable: a local run belongs to the client that fired it, no other client runs it.
		Handler: spec.Handler, Params: d.Params, Timeout: spec.Timeout, MaxRuns: 1,
		Width: spec.Routing.Width,
	}
	frame, err := wire.Encode(&wire.Ack{
		Header: wire.Header{From: c.cfg.ID, SentAt: now},
		ExecID: id, Job: spec.Name, Attempt: 1, Run: 1, Accepted: true, At: now, Local: exec,
	})
	if err != nil {
		c.logger.Error("cannot encode the ack of a local run", "execution", id, "err", err)
	} else {
		// No ackDelay: servers insert the execution document when they get this ack.
		c.mu.Lock()
		c.acks.put(id, 1, &pendingReport{
			frame: frame, next: now.Add(c.cfg.ResultRetry), wait: 2 * c.cfg.ResultRetry, sent: true, keep: true,
			kind: fallback.KindAck, execID: id, created: now,
		})
		c.mu.Unlock()
		if _, err := c.outbox.SendAny(frame); err != nil {
			c.logger.Debug("ack of a local run not sent yet", "execution", id, "err", err)
		}
	}
	// Not journaled: a local run's execution reaches the servers with its ack, which the journal does not
	// keep; a local run cut short by the client's death is lost with it, as its next firing comes anyway.
	go c.runHandler(ctx, d, 1, h, ar, "", now)
}

// PendingResults is the number of results not yet confirmed by a server.
func (c *Client) PendingResults() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pending.len()
}
