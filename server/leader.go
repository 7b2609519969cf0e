package server

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/registry"
	"github.com/clover-sched/clover/internal/schedule"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/wire"
)

// leader is the state of one leadership term: the jobs and when each fires next, and the executions in
// flight (fired, not yet finished).
//
// Concurrency: run's goroutine owns every field. Other goroutines reach it only through notes, a buffered
// channel: the intake delivers acks and results, the API delivers job changes and trigger requests,
// watchPeers delivers registry changes, and two helper goroutines (resyncJobs, reconcile) deliver what they
// read from the store, which is slow on FerretDB and must not stall firing. Store calls made from run's
// goroutine use the term's context with a deadline (storeTimeout): when the term ends (ZooKeeper
// disconnection or session expiry) the calls in progress are cancelled and the loop returns, and a hung
// store cannot freeze the loop for long. Cancelling does not undo a write already sent; what keeps a
// deposed term from acting is fencing (design record 2): confirmed() before every firing and every round
// of re-sends, the epoch claimed in the store at establishment, the execution keys, and clients that drop
// frames of an older epoch.
type leader struct {
	leaderDeps
	epoch  int64
	logger *slog.Logger
	notes  chan any
	start  time.Time // when the term was established

	jobs          map[string]*entry
	queue         fireQueue
	flights       map[string]*flight
	openByJob     map[string]map[string]*flight // job -> its open executions (the overlap policies read it)
	unsaved       []firing                      // firings not recorded because the store failed; retried on every tick
	rr            map[string]int                // round-robin position per job
	byJob         map[string][]string
	byHandle      map[string][]string
	live          map[string]bool            // ids of registered clients
	clients       map[string]registry.Member // registered clients by id
	started       map[string]time.Time       // registered clients' incarnations (registration times)
	fullPipes     map[string]bool            // clients whose send queue refused a frame this tick or batch
	usage         map[string]usage           // what each client holds (see routing.go)
	lastFired     map[string]time.Time       // job -> latest scheduled time recorded
	stats         map[string]*job.Stats      // job -> what the leader learned of it (saved now and then)
	statsDirty    map[string]bool            // jobs whose stats changed since the last save
	savedAvg      map[string]job.Duration    // job -> the average runtime last saved (or being saved)
	lastStatsSave time.Time
	savingStats   bool
	removed       map[string]time.Time // job -> when this term removed it, so that an older snapshot does not revive it
	declared      map[string]string    // client id -> fingerprint of the declarations last applied
	heard         map[string]time.Time // client id -> when its last heartbeat reached this term
	lastReconcile time.Time
	reconciling   bool
	kept          map[string]keptFiring // job -> its latest scheduled firing, ended, left in the open set
	lastSweep     time.Time
	sweeping      bool
	// applyingOpenSet: the closes asked now are of executions found ended in the open set (see close).
	applyingOpenSet bool
	woken           map[string]bool // jobs with an execution that just ended (see wake)
}

type entry struct {
	spec   job.Spec
	sched  *schedule.Schedule
	next   time.Time
	gen    int
	loaded time.Time // when this definition was installed
}

// Notes sent to the leader loop.
type (
	clientsChanged struct{}
	jobChanged     struct{ name string }
	jobsSnapshot   struct {
		specs []job.Spec
		taken time.Time
	}
	triggerRequest struct {
		name   string
		params map[string]string
		reply  chan triggerReply
	}
	triggerReply struct {
		id  string
		err error
	}
	ackNote       struct{ ack *wire.Ack }
	resultNote    struct{ result *wire.Result }
	heartbeatNote struct{ hb *wire.Heartbeat }
	recordedNote  struct { // results a server has recorded in the store
		ids  []string
		runs []int // the run of each id; empty from an older server (then: the run under way)
	}
	statsSaved     struct{ failed []string } // jobs whose save failed
	reconciledNote struct {
		execs   []job.Execution // what the store says of the executions asked about
		checked []string        // those asked about because of flight.check
		// closed: asked about and not in the open set, which a flight's execution leaves only once it ended
		// (another term's closer took it out).
		closed []string
	}
)

const (
	// storeTimeout bounds one store call made by the loop.
	storeTimeout = 5 * time.Second
	// reconcileEvery is how often executions long in flight are checked against the store, in case their
	// result note never reached the loop.
	reconcileEvery = 30 * time.Second
)

var errUnconfirmed = errors.New("leader: ZooKeeper has not confirmed the session recently; stepping down")

// leaderStore is what a leadership term needs of the store.
type leaderStore interface {
	ClaimEpoch(ctx context.Context, epoch int64, server string) error
	ListJobs(ctx context.Context) ([]job.Spec, error)
	GetJob(ctx context.Context, name string) (job.Spec, error)
	CreateJob(ctx context.Context, spec job.Spec) error
	ReplaceJob(ctx context.Context, spec job.Spec, expectVersion int64) error
	MigrateOpenSet(ctx context.Context, since time.Time) (int, error)
	ReadOpenSet(ctx context.Context) (execs []job.Execution, stray []string, err error)
	OpenByID(ctx context.Context, ids []string) ([]job.Execution, error)
	ExecutionRecorded(ctx context.Context, id string, scheduled time.Time) (bool, error)
	InsertExecutions(ctx context.Context, execs []job.Execution) (duplicates []string, err error)
	ListStats(ctx context.Context) (map[string]job.Stats, error)
	SaveStats(ctx context.Context, stats []job.Stats) error
}

var _ leaderStore = (*store.Store)(nil)

// leaderDeps is what a term uses of its server; tests supply their own.
type leaderDeps struct {
	cfg     Config
	metrics *metrics
	now     func() time.Time
	store   leaderStore
	healthy func(maxAge time.Duration) bool       // ZooKeeper confirmed the session within maxAge
	send    func(peer string, frame []byte) error // queue a frame for a client
	members func() []registry.Member              // the registered clients
	synced  <-chan struct{}                       // closed once the client registry is loaded
	// clientsDirty reports, and clears, whether the registry of clients changed since it was last asked.
	clientsDirty func() bool
	persist      func(job.Event) // record an event the leader itself produces
	// closeOpen takes an ended execution out of the store's open set, after the events persist queued
	// before it are recorded; it may be lost (a later sweep closes it then).
	// recheck: the execution may have been appended to the history already by a closer that died before
	// it took the execution out (a close found at takeover or by a sweep); the closer then looks first.
	closeOpen func(epoch int64, id string, recheck bool)
	jitter    func() float64 // in [0, 1): spreads retry delays
	// history moves and prunes the history; nil: it is kept as it is (unit tests).
	history historyStore
	// fallback is the store's fallback queue, replayed by the term; nil: no replay (unit tests).
	fallback replayStore
	replay   *replayState // the replay's progress, shown by the API
}

func (s *Server) leaderDeps() leaderDeps {
	return leaderDeps{
		cfg: s.cfg, metrics: s.metrics, now: s.now, store: s.store,
		healthy: s.sess.Healthy, send: s.outbox.Send, members: s.clients.Members,
		synced: s.clients.Synced(), persist: s.intake.persist, closeOpen: s.intake.closeOpen,
		clientsDirty: func() bool { return s.clientsDirty.Swap(false) },
		jitter:       job.RandomJitter,
		fallback:     s.store,
		history:      s.store,
		replay:       &replayState{},
	}
}

func newLeader(deps leaderDeps, logger *slog.Logger, epoch int64) *leader {
	return &leader{
		leaderDeps: deps,
		epoch:      epoch,
		logger:     logger.With("epoch", epoch),
		notes:      make(chan any, 1<<16),
		jobs:       map[string]*entry{},
		flights:    map[string]*flight{},
		openByJob:  map[string]map[string]*flight{},
		rr:         map[string]int{},
		live:       map[string]bool{},
		clients:    map[string]registry.Member{},
		started:    map[string]time.Time{},
		fullPipes:  map[string]bool{},
		usage:      map[string]usage{},
		lastFired:  map[string]time.Time{},
		stats:      map[string]*job.Stats{},
		statsDirty: map[string]bool{},
		savedAvg:   map[string]job.Duration{},
		removed:    map[string]time.Time{},
		declared:   map[string]string{},
		heard:      map[string]time.Time{},
		kept:       map[string]keptFiring{},
	}
}

// notify hands a note to the loop. Reports are dropped when the loop is far behind: every report is
// recorded by the intake, clients re-send acks and results until recorded, and the loop reconciles running
// executions with the store, so a dropped note delays the loop's knowledge but loses nothing.
func (l *leader) notify(n any) bool {
	select {
	case l.notes <- n:
		return true
	default:
		l.metrics.notesDropped.WithLabelValues(noteKind(n)).Inc()
		return false
	}
}

// notifySpare hands a note to the loop only while its queue is at most half full: for reports that are
// copies of ones already handed on, which must not take the room of new ones.
func (l *leader) notifySpare(n any) bool {
	if len(l.notes) > cap(l.notes)/2 {
		l.metrics.notesDropped.WithLabelValues(noteKind(n) + "_resent").Inc()
		return false
	}
	return l.notify(n)
}

func noteKind(n any) string {
	switch n.(type) {
	case ackNote:
		return "ack"
	case resultNote:
		return "result"
	case heartbeatNote:
		return "heartbeat"
	case recordedNote:
		return "recorded"
	case requestNote:
		return "request"
	case clientsChanged:
		return "clients"
	case jobChanged:
		return "job"
	}
	return "other"
}

// tell hands a note from one of the term's own goroutines to the loop, waiting for room: unlike a report,
// such a note is not sent again if it is lost.
func (l *leader) tell(ctx context.Context, n any) {
	select {
	case l.notes <- n:
	case <-ctx.Done():
	}
}

func storeCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, storeTimeout)
}

// run is the leader loop: a select over the term's end, the next firing, the flight check tick and the
// notes.
func (l *leader) run(ctx context.Context) error {
	if err := l.establish(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // the term ended while it was being established
		}
		return err
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	go l.resyncJobs(ctx)
	go l.replayLoop(ctx)
	go l.keepHistory(ctx)
	for {
		l.resetTimer(timer)
		var err error
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
			err = l.fireDue(ctx)
		case <-tick.C:
			err = l.checkFlights(ctx)
		case n := <-l.notes:
			err = l.handle(ctx, n)
		}
		l.releaseWoken()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// establish makes this term's state: it records the epoch in the store (refused if a newer leader exists),
// loads the jobs, takes over the executions an earlier term left in flight and fires what came due while
// no leader was acting. Every read it needs is of a size set by the jobs and what is in flight, never by
// history, and is tried again until it succeeds: a slow store delays the term's first firing, it does not
// end the term (unless it does not answer for maxEstablishWait).
func (l *leader) establish(ctx context.Context) error {
	err := l.retryRead(ctx, "claim the epoch", func(ctx context.Context) error {
		return l.store.ClaimEpoch(ctx, l.epoch, l.cfg.ID)
	})
	if err != nil {
		return fmt.Errorf("leader: claim epoch %d: %w", l.epoch, err)
	}
	// Without a synced view of the clients every inherited running execution would look orphaned.
	select {
	case <-l.synced:
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(l.cfg.ZooKeeper.SessionTimeout):
		l.logger.Warn("the client registry is not synced yet; going on without it")
	}
	l.rebuildEligibility()
	if err := l.loadJobs(ctx); err != nil {
		return err
	}
	l.loadStats(ctx)
	if err := l.migrateOpenSet(ctx, l.now()); err != nil {
		return err
	}
	l.start = l.now()
	// Take over before catching up: the overlap policies must see what is still open.
	if err := l.takeOver(ctx, l.start); err != nil {
		return err
	}
	if err := l.catchUp(ctx, l.start); err != nil {
		return err
	}
	l.applyDeclarations(ctx)
	l.logger.Info("leading", "jobs", len(l.jobs), "in_flight", len(l.flights))
	return nil
}

// loadJobs loads every job at establishment; catchUp then fires what the past owes. It fails only when
// the term ends.
func (l *leader) loadJobs(ctx context.Context) error {
	var specs []job.Spec
	err := l.retryRead(ctx, "load the jobs", func(ctx context.Context) error {
		var err error
		specs, err = l.store.ListJobs(ctx)
		return err
	})
	if err != nil {
		return err
	}
	now := l.now()
	for _, spec := range specs {
		l.installJob(spec, now, now)
	}
	return nil
}

// resyncJobs reloads every job now and then, off the loop (a full read is slow on FerretDB), so that a change
// made behind the leader's back (another tool writing the store, a lost notification) is picked up.
func (l *leader) resyncJobs(ctx context.Context) {
	t := time.NewTicker(15 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		taken := l.now()
		sctx, cancel := storeCtx(ctx)
		specs, err := l.store.ListJobs(sctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				l.metrics.storeErrors.WithLabelValues("list_jobs").Inc()
				l.logger.Warn("job resync failed", "err", err)
			}
			continue
		}
		l.tell(ctx, jobsSnapshot{specs: specs, taken: taken})
	}
}

// applySnapshot makes l.jobs match a snapshot read at taken. The snapshot may be older than a change the
// loop applied since, so it never replaces a newer version and never removes a job loaded after it was
// taken.
func (l *leader) applySnapshot(specs []job.Spec, taken time.Time) {
	seen := make(map[string]bool, len(specs))
	for _, spec := range specs {
		seen[spec.Name] = true
		if e, ok := l.jobs[spec.Name]; ok && e.spec.Version >= spec.Version {
			continue
		}
		if at, ok := l.removed[spec.Name]; ok && !at.Before(taken) {
			continue // deleted after the snapshot was read
		}
		l.setJob(spec)
	}
	for name, at := range l.removed {
		if at.Before(taken) {
			delete(l.removed, name)
		}
	}
	for name, e := range l.jobs {
		if !seen[name] && e.loaded.Before(taken) {
			l.removeJob(name)
		}
	}
}

// setJob installs a new or changed definition during the term. A firing that is due and not yet made stays
// due: a definition that changes at the very moment its job is due must not skip that firing. A job new to
// this term, or resumed, fires from its last recorded firing or its ActiveSince (what it missed is handed to
// its misfire policy by fireDue); the execution key makes any firing an earlier term already made a no-op.
func (l *leader) setJob(spec job.Spec) {
	now := l.now()
	from := now
	if e, ok := l.jobs[spec.Name]; ok && !e.spec.Paused {
		if !e.next.IsZero() && !e.next.After(now) && e.spec.Schedule == spec.Schedule && e.spec.TimeZone == spec.TimeZone {
			from = e.next.Add(-time.Nanosecond)
		}
	} else if since := l.owedSince(spec); since.Before(now) {
		from = since
	}
	l.installJob(spec, from, now)
}

// installJob installs spec with its next firing after from.
func (l *leader) installJob(spec job.Spec, from, now time.Time) {
	sched, err := schedule.Parse(spec.Schedule, spec.TimeZone)
	if err != nil {
		// Someone wrote a definition the API would have refused; keep the cluster running without it.
		l.logger.Error("job skipped: bad schedule in store", "job", spec.Name, "err", err)
		l.removeJob(spec.Name)
		return
	}
	e := l.jobs[spec.Name]
	if e == nil {
		e = &entry{}
		l.jobs[spec.Name] = e
	}
	e.spec, e.sched, e.loaded = spec, sched, now
	e.gen++
	e.next = time.Time{}
	if spec.Paused || spec.Mode == job.ModeLocal {
		return // a local job is fired by its client
	}
	e.next = sched.Next(from)
	if !e.next.IsZero() {
		heap.Push(&l.queue, queued{name: spec.Name, at: e.next, gen: e.gen})
	}
}

func (l *leader) removeJob(name string) {
	if e, ok := l.jobs[name]; ok {
		e.gen++ // its queued firings are now stale
		delete(l.jobs, name)
		l.jobGone(name)
	}
	l.removed[name] = l.now()
}

func (l *leader) confirmed() bool {
	return l.healthy(l.cfg.ZooKeeper.SessionTimeout * 2 / 3)
}

func (l *leader) resetTimer(t *time.Timer) {
	for len(l.queue) > 0 {
		it := l.queue[0]
		if e := l.jobs[it.name]; e == nil || e.gen != it.gen {
			heap.Pop(&l.queue)
			continue
		}
		t.Reset(max(it.at.Sub(l.now()), 0))
		return
	}
	t.Reset(time.Hour)
}

// handle applies one note.
func (l *leader) handle(ctx context.Context, n any) error {
	switch n := n.(type) {
	case clientsChanged:
		if l.clientsDirty() {
			l.rebuildEligibility()
			l.applyDeclarations(ctx)
		}
	case jobChanged:
		sctx, cancel := storeCtx(ctx)
		spec, err := l.store.GetJob(sctx, n.name)
		cancel()
		switch {
		case errors.Is(err, store.ErrNotFound):
			l.removeJob(n.name)
		case err != nil:
			l.logger.Warn("reload job failed; the periodic resync will retry", "job", n.name, "err", err)
		default:
			l.setJob(spec)
		}
	case jobsSnapshot:
		l.applySnapshot(n.specs, n.taken)
	case triggerRequest:
		id, err := l.trigger(ctx, n.name, n.params)
		n.reply <- triggerReply{id: id, err: err}
	case ackNote:
		l.onAck(n.ack)
	case resultNote:
		l.onResult(n.result)
	case heartbeatNote:
		l.onHeartbeat(n.hb)
	case recordedNote:
		for i, id := range n.ids {
			run := 0
			if i < len(n.runs) {
				run = n.runs[i]
			}
			l.recorded(id, run)
		}
	case reconciledNote:
		l.applyReconciled(n)
	case openSwept:
		l.applySwept(n)
	case statsSaved:
		l.savingStats = false
		for _, name := range n.failed {
			l.statsDirty[name] = true
		}
	case execAction:
		n.reply <- l.act(n)
	case inflightRequest:
		n.reply <- l.inflight(n.job)
	case heartbeatsRequest:
		n.reply <- heartbeatsReply{heard: maps.Clone(l.heard), start: l.start}
	case requestNote:
		l.onRequest(ctx, n)
	case declareNote:
		n.reply <- l.onDeclare(ctx, n)
	}
	return nil
}

// queued is one pending firing in the fire queue; gen tells stale entries (the job changed) apart.
type queued struct {
	name string
	at   time.Time
	gen  int
}

// fireQueue is a min-heap of firings by time.
type fireQueue []queued

func (q fireQueue) Len() int { return len(q) }
func (q fireQueue) Less(i, j int) bool {
	if q[i].at.Equal(q[j].at) {
		return q[i].name < q[j].name
	}
	return q[i].at.Before(q[j].at)
}
func (q fireQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *fireQueue) Push(x any)   { *q = append(*q, x.(queued)) }
func (q *fireQueue) Pop() any {
	old := *q
	it := old[len(old)-1]
	*q = old[:len(old)-1]
	return it
}
