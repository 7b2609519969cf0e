package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clover-sched/clover/internal/election"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/logx"
	"github.com/clover-sched/clover/internal/registry"
	"github.com/clover-sched/clover/internal/schedule"
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
	Trigger     job.Trigger
	Logger      *slog.Logger // lines also reach the execution's output tail
	Output      io.Writer    // the execution's output; its tail is reported with the result
}

// Client serves jobs. Create it with New, add handlers and declarations, then Run it.
type Client struct {
	cfg    Config
	logger *slog.Logger
	now    func() time.Time

	mu       sync.Mutex
	handlers map[string]HandlerFunc
	declared []job.Spec
	seen     map[string]decision       // execution id -> what we answered
	active   map[string]bool           // executions running here
	pending  map[string]*pendingReport // results not yet confirmed by a receipt
	acks     map[string]*pendingReport // accepted acks not yet confirmed by a receipt
	running  int

	maxEpoch atomic.Int64
	outbox   *transport.Outbox
	stats    Stats
	dropLog  logx.Limiter
}

// Stats counts what a client did; read it with Stats().
type Stats struct {
	Accepted, Refused, Duplicates, StaleEpoch, Succeeded, Failed, Dropped atomic.Int64
}

type decision struct {
	accepted bool
	code     string
	reason   string
	attempt  int
	acceptBy time.Time
}

// pendingReport is an ack or a result waiting for a receipt. It is sent at next, then again with a
// doubling backoff, so that a server that is slow to record reports is not buried under re-sends.
type pendingReport struct {
	frame []byte
	next  time.Time
	wait  time.Duration
}

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
		handlers: map[string]HandlerFunc{},
		seen:     map[string]decision{},
		pending:  map[string]*pendingReport{},
		acks:     map[string]*pendingReport{},
		active:   map[string]bool{},
	}
	for _, o := range opts {
		o(c)
	}
	c.logger = c.logger.With("component", "client", "client", cfg.ID)
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
	m, err := c.member(inbox.Endpoint())
	if err != nil {
		return fmt.Errorf("client: declarations: %w", err)
	}
	servers := registry.NewCache(sess, registry.KindServers, c.logger)
	el := election.New(sess, sess.Path("election"), c.cfg.ID, nil, c.logger)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { _ = inbox.Run(ctx, c.receive) })
	wg.Go(func() { servers.Run(ctx) })
	wg.Go(func() { c.watchServers(ctx, servers) })
	wg.Go(func() {
		for l := range el.Observe(ctx) {
			c.raiseEpoch(l.Epoch)
		}
	})
	wg.Go(func() { c.resendLoop(ctx) })

	// Register last: the leader dispatches as soon as it sees us, so the inbox must already be served.
	reg, err := registry.Register(ctx, sess, registry.KindClients, m, c.logger)
	if err != nil {
		cancel()
		wg.Wait()
		return fmt.Errorf("client: %w", err)
	}
	c.logger.Info("client started", "endpoint", inbox.Endpoint(), "jobs", m.Jobs, "handlers", m.Handlers)
	<-ctx.Done()
	closeCtx, done := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer done()
	_ = reg.Close(closeCtx)
	wg.Wait()
	c.logger.Info("client stopped")
	return nil
}

func (c *Client) raiseEpoch(e int64) {
	for {
		cur := c.maxEpoch.Load()
		if e <= cur || c.maxEpoch.CompareAndSwap(cur, e) {
			return
		}
	}
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
	case *wire.Receipt:
		c.mu.Lock()
		for _, id := range x.ExecIDs {
			delete(c.pending, id)
		}
		for _, id := range x.Acked {
			delete(c.acks, id)
		}
		c.mu.Unlock()
	default:
		c.stats.Dropped.Add(1)
		c.dropLog.Warn(c.logger, "dropped frame of a kind clients do not take", "peer", peer, "kind", m.Kind().String(), "from", wire.From(m))
	}
}

func (c *Client) onDispatch(d *wire.Dispatch) {
	if d.Epoch < c.maxEpoch.Load() {
		c.stats.StaleEpoch.Add(1)
		c.logger.Warn("ignored dispatch from a deposed leader", "execution", d.ExecID, "from", d.From, "epoch", d.Epoch, "current_epoch", c.maxEpoch.Load())
		return
	}
	c.raiseEpoch(d.Epoch)
	now := c.now()

	c.mu.Lock()
	// An execution runs here at most once: a dispatch seen before gets the same answer, unless it was
	// refused and this is a later attempt (the leader offers it again, say after capacity freed up).
	if prev, ok := c.seen[d.ExecID]; ok && (prev.accepted || d.Attempt <= prev.attempt) {
		c.mu.Unlock()
		c.stats.Duplicates.Add(1)
		c.ack(d, prev.accepted, prev.code, prev.reason, true)
		return
	}
	h := c.resolve(d)
	var code, reason string
	switch {
	case h == nil:
		code, reason = wire.RefuseNoHandler, fmt.Sprintf("no handler %q on this client", d.Handler)
	case now.After(d.AcceptBy):
		code, reason = wire.RefuseLate, "accept-by has passed; the leader may have given it to another client"
	case c.running >= c.cfg.Capacity:
		code, reason = wire.RefuseBusy, fmt.Sprintf("at capacity (%d running)", c.running)
	}
	accepted := code == ""
	c.seen[d.ExecID] = decision{accepted: accepted, code: code, reason: reason, attempt: d.Attempt, acceptBy: d.AcceptBy}
	if accepted {
		c.running++
		c.active[d.ExecID] = true
	}
	c.mu.Unlock()

	c.ack(d, accepted, code, reason, false)
	if !accepted {
		c.stats.Refused.Add(1)
		return
	}
	c.stats.Accepted.Add(1)
	go c.execute(d, h)
}

// resolve finds the handler for a dispatch: a Go handler named like the job's handler, then the shell
// handler if offered, then a Go handler named like the job.
func (c *Client) resolve(d *wire.Dispatch) HandlerFunc {
	if h, ok := c.handlers[d.Handler]; ok {
		return h
	}
	if d.Handler == job.HandlerShell && slices.Contains(c.cfg.Handlers, job.HandlerShell) {
		return runShell
	}
	if h, ok := c.handlers[d.Job]; ok {
		return h
	}
	return nil
}

// ack answers a dispatch. A refusal, or the answer to a dispatch seen before (now), goes out at once. A new
// acceptance is held for ackDelay (a short run reports its result instead), then sent and re-sent until a
// server confirms it is recorded: a new leader that finds an execution without a recorded ack may, after
// a while, give it to another client.
func (c *Client) ack(d *wire.Dispatch, accepted bool, code, reason string, now bool) {
	at := c.now()
	frame, err := wire.Encode(&wire.Ack{
		Header: wire.Header{From: c.cfg.ID, Epoch: d.Epoch, SentAt: at},
		ExecID: d.ExecID, Job: d.Job, Attempt: d.Attempt, Accepted: accepted, Code: code, Reason: reason, At: at,
	})
	if err != nil {
		c.logger.Error("cannot encode ack", "execution", d.ExecID, "err", err)
		return
	}
	if accepted && !now {
		c.mu.Lock()
		if _, done := c.pending[d.ExecID]; !done {
			c.acks[d.ExecID] = &pendingReport{frame: frame, next: at.Add(ackDelay), wait: c.cfg.ResultRetry}
		}
		c.mu.Unlock()
		return
	}
	if _, err := c.outbox.SendAny(frame); err != nil {
		// The leader re-sends the dispatch and gets the same answer then.
		c.logger.Debug("ack not sent", "execution", d.ExecID, "err", err)
	}
}

// execute runs the handler and reports its result.
func (c *Client) execute(d *wire.Dispatch, h HandlerFunc) {
	ctx := context.Background()
	if d.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(d.Timeout))
		defer cancel()
	}
	out := newTail(job.MaxOutput)
	jc := JobContext{
		ExecutionID: d.ExecID, Job: d.Job, Client: c.cfg.ID, Params: d.Params, ScheduledAt: d.ScheduledAt,
		Attempt: d.Attempt, Trigger: d.Trigger, Output: out,
		Logger: slog.New(slog.NewTextHandler(out, nil)).With("execution", d.ExecID),
	}
	started := c.now()
	err := safeCall(ctx, h, jc)
	finished := c.now()

	res := job.Result{Status: job.StateSucceeded, Duration: job.Duration(finished.Sub(started)), Output: out.String()}
	if err != nil {
		res.Status, res.Error, res.ExitCode = job.StateFailed, err.Error(), 1
		var ee interface{ ExitCode() int }
		if errors.As(err, &ee) {
			res.ExitCode = ee.ExitCode()
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			res.Error = fmt.Sprintf("timed out after %s: %v", time.Duration(d.Timeout), err)
		}
		c.stats.Failed.Add(1)
	} else {
		c.stats.Succeeded.Add(1)
	}
	frame, encErr := wire.Encode(&wire.Result{
		Header: wire.Header{From: c.cfg.ID, Epoch: d.Epoch, SentAt: finished},
		ExecID: d.ExecID, Job: d.Job, Attempt: d.Attempt, Result: res, StartedAt: started, FinishedAt: finished,
	})
	c.mu.Lock()
	c.running--
	delete(c.active, d.ExecID)
	delete(c.acks, d.ExecID) // the result says more than the ack
	if encErr == nil {
		c.pending[d.ExecID] = &pendingReport{frame: frame, next: finished.Add(c.cfg.ResultRetry), wait: 2 * c.cfg.ResultRetry}
	}
	c.mu.Unlock()
	if encErr != nil {
		c.logger.Error("cannot encode result", "execution", d.ExecID, "err", encErr)
		return
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
		c.mu.Lock()
		for _, m := range []map[string]*pendingReport{c.acks, c.pending} {
			for _, p := range m {
				if !now.Before(p.next) {
					p.next = now.Add(p.wait)
					p.wait = min(2*p.wait, maxReportBackoff)
					frames = append(frames, p.frame)
				}
			}
		}
		// The leader re-sends a dispatch whose answer it has not heard, with a backoff. Keep every answer
		// while its execution runs or its reports wait for a receipt, and for decisionMemory after
		// accept-by. A re-send that
		// comes later is refused as late, and the leader checks the store before it hands the execution
		// to anyone else.
		if now.Sub(lastPrune) > 5*time.Second {
			lastPrune = now
			for id, d := range c.seen {
				_, ackPending := c.acks[id]
				_, resultPending := c.pending[id]
				if !ackPending && !resultPending && !c.active[id] && now.Sub(d.acceptBy) > decisionMemory {
					delete(c.seen, id)
				}
			}
		}
		c.mu.Unlock()
		for _, f := range frames {
			if _, err := c.outbox.SendAny(f); err != nil {
				break
			}
		}
	}
}

// decisionMemory is how long after its accept-by a client remembers how it answered a dispatch.
const decisionMemory = time.Minute

// PendingResults is the number of results not yet confirmed by a server.
func (c *Client) PendingResults() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}
