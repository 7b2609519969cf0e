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
	pending  map[string]*pendingResult // results not yet confirmed by a receipt
	acks     map[string]*pendingResult // accepted acks not yet confirmed by a receipt
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
	reason   string
	attempt  int
	acceptBy time.Time
}

type pendingResult struct {
	frame  []byte
	sentAt time.Time
}

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
		pending:  map[string]*pendingResult{},
		acks:     map[string]*pendingResult{},
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
		ID: c.cfg.ID, Endpoint: endpoint, Capacity: c.cfg.Capacity, Labels: c.cfg.Labels,
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
		c.ack(d, prev.accepted, prev.reason)
		return
	}
	h, reason := c.resolve(d)
	switch {
	case now.After(d.AcceptBy):
		reason = "accept-by has passed; the leader may have given it to another client"
	case h != nil && c.running >= c.cfg.Capacity:
		reason = fmt.Sprintf("at capacity (%d running)", c.running)
	}
	accepted := h != nil && reason == ""
	c.seen[d.ExecID] = decision{accepted: accepted, reason: reason, attempt: d.Attempt, acceptBy: d.AcceptBy}
	if accepted {
		c.running++
	}
	c.mu.Unlock()

	c.ack(d, accepted, reason)
	if !accepted {
		c.stats.Refused.Add(1)
		return
	}
	c.stats.Accepted.Add(1)
	go c.execute(d, h)
}

// resolve finds the handler for a dispatch: a Go handler named like the job's handler, then the shell
// handler if offered, then a Go handler named like the job.
func (c *Client) resolve(d *wire.Dispatch) (HandlerFunc, string) {
	if h, ok := c.handlers[d.Handler]; ok {
		return h, ""
	}
	if d.Handler == job.HandlerShell && slices.Contains(c.cfg.Handlers, job.HandlerShell) {
		return runShell, ""
	}
	if h, ok := c.handlers[d.Job]; ok {
		return h, ""
	}
	return nil, fmt.Sprintf("no handler %q on this client", d.Handler)
}

// ack answers a dispatch. An accepted ack is kept and sent again until a server confirms it is recorded:
// a new leader that finds an execution without a recorded ack may give it to another client.
func (c *Client) ack(d *wire.Dispatch, accepted bool, reason string) {
	now := c.now()
	frame, err := wire.Encode(&wire.Ack{
		Header: wire.Header{From: c.cfg.ID, Epoch: d.Epoch, SentAt: now},
		ExecID: d.ExecID, Job: d.Job, Attempt: d.Attempt, Accepted: accepted, Reason: reason, At: now,
	})
	if err != nil {
		c.logger.Error("cannot encode ack", "execution", d.ExecID, "err", err)
		return
	}
	if accepted {
		c.mu.Lock()
		if _, done := c.pending[d.ExecID]; !done {
			c.acks[d.ExecID] = &pendingResult{frame: frame, sentAt: now}
		}
		c.mu.Unlock()
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
	delete(c.acks, d.ExecID) // the result says more than the ack
	if encErr == nil {
		c.pending[d.ExecID] = &pendingResult{frame: frame, sentAt: finished}
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

// resendLoop sends acks and results again until a server confirms them, and forgets old answers to
// dispatches.
func (c *Client) resendLoop(ctx context.Context) {
	t := time.NewTicker(c.cfg.ResultRetry / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := c.now()
		var frames [][]byte
		c.mu.Lock()
		for _, m := range []map[string]*pendingResult{c.acks, c.pending} {
			for _, p := range m {
				if now.Sub(p.sentAt) >= c.cfg.ResultRetry {
					p.sentAt = now
					frames = append(frames, p.frame)
				}
			}
		}
		// The same dispatch is re-sent only until its accept-by; after that the leader knows our answer
		// (the ack is re-sent until recorded) or gives the execution to another client. A minute past
		// accept-by is far beyond any re-send.
		for id, d := range c.seen {
			if now.Sub(d.acceptBy) > time.Minute {
				delete(c.seen, id)
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

// PendingResults is the number of results not yet confirmed by a server.
func (c *Client) PendingResults() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}
