package notify

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clover-sched/clover/internal/logx"
	"github.com/clover-sched/clover/internal/store"
)

// Sender delivers one notification of its channel. Send must return once ctx ends; an error means the
// notification was not delivered and will be tried again.
type Sender interface {
	Send(ctx context.Context, n store.Notification) error
}

// NotificationStore is the outbox the Dispatcher delivers from (implemented by *store.Store).
type NotificationStore interface {
	DueNotifications(ctx context.Context, now time.Time, limit int) ([]store.Notification, error)
	ClaimNotification(ctx context.Context, id, owner string, now, until time.Time) (store.Notification, bool, error)
	MarkNotificationSent(ctx context.Context, id string, at time.Time) error
	MarkNotificationRetry(ctx context.Context, id string, attempts int, nextAttempt time.Time, errText string) error
	MarkNotificationFailed(ctx context.Context, id, errText string) error
	CountNotifications(ctx context.Context, state string) (int64, error)
}

var _ NotificationStore = (*store.Store)(nil)

// Defaults of a Dispatcher.
const (
	DefaultPollInterval = time.Second
	DefaultMinBackoff   = time.Second
	DefaultMaxBackoff   = 5 * time.Minute
	DefaultMaxAttempts  = 50
	DefaultSendTimeout  = time.Minute
	DefaultWorkers      = 4
	DefaultBatch        = 200
)

// Dispatcher delivers the notifications the store holds pending, through the sender of each one's
// channel, and records the outcome: sent, tried again later with exponential backoff, or failed after
// MaxAttempts attempts.
//
// Concurrency: Run's loop polls the store and hands due notifications to one queue per channel, each
// drained by its own pool of workers; a full queue is skipped (the notification stays pending for the
// next poll), so a slow mail server holds up mail only, never the loop nor the webhooks. Each worker
// claims a notification in the store before sending it (store.ClaimNotification: another dispatcher on
// the same store sends it at most once), sends it with a timeout, and marks it. The in-flight set, shared
// by the loop and the workers under mu, keeps a notification that is still being sent from being queued
// again by the next poll. Callers never wait for any of this: they queue with store.EnqueueNotifications.
type Dispatcher struct {
	st       NotificationStore
	senders  map[string]Sender
	logger   *slog.Logger
	now      func() time.Time
	owner    string
	reg      prometheus.Registerer
	metrics  *metrics
	storeLog logx.Limiter

	poll                   time.Duration
	minBackoff, maxBackoff time.Duration
	maxAttempts            int
	sendTimeout, lease     time.Duration
	workers, batch         int

	mu       sync.Mutex
	inFlight map[string]bool
}

// Option changes a Dispatcher built by NewDispatcher.
type Option func(*Dispatcher)

// WithLogger sets the logger; the default is slog.Default(). Levels: debug for each delivery, info for
// none, warn for a failed attempt that will be retried and for store errors, error for a notification
// given up on.
func WithLogger(l *slog.Logger) Option { return func(d *Dispatcher) { d.logger = l } }

// WithRegisterer registers the dispatcher's metrics on reg; without it they are kept but not exported.
func WithRegisterer(reg prometheus.Registerer) Option { return func(d *Dispatcher) { d.reg = reg } }

// WithOwner names this dispatcher in its claims (the monitor's id); the default is "dispatcher".
func WithOwner(owner string) Option { return func(d *Dispatcher) { d.owner = owner } }

// WithClock replaces time.Now for every decision: what is due, leases, backoff.
func WithClock(now func() time.Time) Option { return func(d *Dispatcher) { d.now = now } }

// WithPollInterval sets how often the store is asked for due notifications (default 1s).
func WithPollInterval(p time.Duration) Option { return func(d *Dispatcher) { d.poll = p } }

// WithBackoff sets the wait after the first failed attempt, doubled after each further one up to max
// (default 1s to 5m).
func WithBackoff(first, max time.Duration) Option {
	return func(d *Dispatcher) { d.minBackoff, d.maxBackoff = first, max }
}

// WithMaxAttempts sets after how many failed attempts a notification is given up (default 50).
func WithMaxAttempts(n int) Option { return func(d *Dispatcher) { d.maxAttempts = n } }

// WithSendTimeout bounds one attempt (default 1m). A claim lasts twice that and 10s more, so that the
// attempt is marked long before another dispatcher may take it over.
func WithSendTimeout(t time.Duration) Option { return func(d *Dispatcher) { d.sendTimeout = t } }

// WithWorkers sets how many notifications of one channel are sent at once (default 4).
func WithWorkers(n int) Option { return func(d *Dispatcher) { d.workers = n } }

// NewDispatcher returns a dispatcher of the notifications in st through senders, by channel
// (store.ChannelEmail, store.ChannelWebhook). A notification of a channel with no sender counts as a
// failed attempt: it is retried (a monitor with the sender configured may take it) and eventually failed.
func NewDispatcher(st NotificationStore, senders map[string]Sender, opts ...Option) *Dispatcher {
	d := &Dispatcher{
		st: st, senders: senders, logger: slog.Default(), now: time.Now, owner: "dispatcher",
		poll: DefaultPollInterval, minBackoff: DefaultMinBackoff, maxBackoff: DefaultMaxBackoff,
		maxAttempts: DefaultMaxAttempts, sendTimeout: DefaultSendTimeout, workers: DefaultWorkers, batch: DefaultBatch,
		inFlight: map[string]bool{},
	}
	for _, o := range opts {
		o(d)
	}
	d.poll = positive(d.poll, DefaultPollInterval)
	d.minBackoff = positive(d.minBackoff, DefaultMinBackoff)
	d.maxBackoff = max(d.maxBackoff, d.minBackoff)
	d.sendTimeout = positive(d.sendTimeout, DefaultSendTimeout)
	d.lease = 2*d.sendTimeout + 10*time.Second
	d.maxAttempts = max(d.maxAttempts, 1)
	d.workers = max(d.workers, 1)
	d.logger = d.logger.With("component", "notify", "owner", d.owner)
	d.metrics = newMetrics(d.reg)
	return d
}

func positive(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Run delivers until ctx ends, then waits for the sends under way to end (ctx ends them too).
func (d *Dispatcher) Run(ctx context.Context) {
	queues := make(map[string]chan store.Notification, len(d.senders))
	var wg sync.WaitGroup
	for channel, s := range d.senders {
		q := make(chan store.Notification, d.workers)
		queues[channel] = q
		for range d.workers {
			wg.Go(func() {
				for n := range q {
					d.deliver(ctx, s, n)
				}
			})
		}
	}
	defer func() {
		for _, q := range queues {
			close(q)
		}
		wg.Wait()
	}()
	tick := time.NewTicker(d.poll)
	defer tick.Stop()
	for {
		d.pollOnce(ctx, queues)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// pollOnce hands every due notification that is not being sent here already to its channel's queue.
func (d *Dispatcher) pollOnce(ctx context.Context, queues map[string]chan store.Notification) {
	due, err := d.st.DueNotifications(ctx, d.now(), d.batch)
	if err != nil {
		if ctx.Err() == nil {
			d.storeLog.Warn(d.logger, "cannot read due notifications; trying again", "err", err)
		}
		return
	}
	for _, n := range due {
		if !d.begin(n.ID) {
			continue
		}
		q, ok := queues[n.Channel]
		if !ok {
			// Not ours to try: another monitor may have a sender for this channel. Claiming it here would
			// spend its attempts and delay it.
			d.end(n.ID)
			continue
		}
		select {
		case q <- n:
		default: // the channel's workers are all busy: the next poll offers it again
			d.end(n.ID)
		}
	}
	if d.reg != nil {
		if c, err := d.st.CountNotifications(ctx, store.NotificationPending); err == nil {
			d.metrics.pending.Set(float64(c))
		}
	}
}

func (d *Dispatcher) begin(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.inFlight[id] {
		return false
	}
	d.inFlight[id] = true
	return true
}

func (d *Dispatcher) end(id string) {
	d.mu.Lock()
	delete(d.inFlight, id)
	d.mu.Unlock()
}

// deliver claims n, sends it and records how it went.
func (d *Dispatcher) deliver(ctx context.Context, s Sender, n store.Notification) {
	defer d.end(n.ID)
	if ctx.Err() != nil {
		return
	}
	now := d.now()
	claimed, ok, err := d.st.ClaimNotification(ctx, n.ID, d.owner, now, now.Add(d.lease))
	if err != nil {
		if ctx.Err() == nil {
			d.storeLog.Warn(d.logger, "cannot claim a notification; trying again", "notification", n.ID, "err", err)
		}
		return
	}
	if !ok {
		d.logger.Debug("notification taken by another dispatcher, or settled", "notification", n.ID)
		return
	}
	n = claimed // as it stands now: Attempts is the attempt claimed
	sendCtx, cancel := context.WithTimeout(ctx, d.sendTimeout)
	start := time.Now()
	err = s.Send(sendCtx, n)
	cancel()
	d.metrics.sendSeconds.WithLabelValues(n.Channel).Observe(time.Since(start).Seconds())
	// Record the outcome even when ctx ended meanwhile: a sent notification left unmarked would be sent
	// again once the claim expires.
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	d.settle(mctx, n, err)
}

// settle records the outcome of the attempt n.Attempts+1 at n. Metrics count what happened to the
// notification even if the store then fails to record it.
func (d *Dispatcher) settle(ctx context.Context, n store.Notification, sendErr error) {
	log := d.logger.With("notification", n.ID, "channel", n.Channel, "to", n.To)
	attempts := n.Attempts + 1
	var err error
	switch {
	case sendErr == nil:
		d.metrics.sent.WithLabelValues(n.Channel).Inc()
		log.Debug("notification sent", "attempts", attempts)
		err = d.st.MarkNotificationSent(ctx, n.ID, d.now())
	case attempts >= d.maxAttempts:
		d.metrics.failed.WithLabelValues(n.Channel).Inc()
		log.Error("notification given up", "attempts", attempts, "err", sendErr)
		err = d.st.MarkNotificationFailed(ctx, n.ID, sendErr.Error())
	default:
		wait := d.backoff(attempts)
		d.metrics.retries.WithLabelValues(n.Channel).Inc()
		log.Warn("notification not delivered; will retry", "attempts", attempts, "retry_in", wait, "err", sendErr)
		err = d.st.MarkNotificationRetry(ctx, n.ID, attempts, d.now().Add(wait), sendErr.Error())
	}
	if err != nil {
		d.storeLog.Warn(d.logger, "cannot record a notification's delivery", "notification", n.ID, "err", err)
	}
}

// backoff is the wait after failed attempt number attempts (1 is the first): minBackoff doubled for each
// attempt after the first, at most maxBackoff.
func (d *Dispatcher) backoff(attempts int) time.Duration {
	wait := d.minBackoff
	for i := 1; i < attempts && wait < d.maxBackoff; i++ {
		wait *= 2
	}
	return min(wait, d.maxBackoff)
}

// metrics are the dispatcher's series; registered only when a Registerer is given.
type metrics struct {
	sent        *prometheus.CounterVec // by channel
	failed      *prometheus.CounterVec // by channel
	retries     *prometheus.CounterVec // by channel
	pending     prometheus.Gauge
	sendSeconds *prometheus.HistogramVec // by channel
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clover_notifications_sent_total",
			Help: "Notifications this process delivered, by channel."}, []string{"channel"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clover_notifications_failed_total",
			Help: "Notifications given up after their last attempt failed, by channel (alert on increase)."}, []string{"channel"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clover_notification_retries_total",
			Help: "Failed delivery attempts that will be tried again, by channel."}, []string{"channel"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "clover_notifications_pending",
			Help: "Notifications waiting for delivery in the store, by any dispatcher, at the last poll."}),
		sendSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "clover_notification_send_seconds",
			Help: "Time one delivery attempt took, by channel.", Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}},
			[]string{"channel"}),
	}
	if reg != nil {
		reg.MustRegister(m.sent, m.failed, m.retries, m.pending, m.sendSeconds)
	}
	return m
}
