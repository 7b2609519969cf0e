package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"time"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/logx"
	"github.com/clover-sched/clover/internal/registry"
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
	// auditPruned is when keepHistory last pruned the audit log; only its goroutine uses it.
	auditPruned time.Time
	// changes are the job definitions written through the API and the declarations, taken by the loop in
	// one turn (see jobChanges).
	changes *jobChanges

	jobs           map[string]*entry
	queue          fireQueue
	flights        map[string]*flight
	openByJob      map[string]map[string]*flight // job -> its open executions (the overlap policies read it)
	recording      map[string]*flight            // executions on their way to the store (see recording.go)
	pipe           insertPipe                    // the inserts on their way to the store
	unsaved        []firing                      // firings not recorded because the store failed; retried on a tick
	unsavedWait    time.Duration                 // the back-off before the next retry of unsaved
	unsavedRetryAt time.Time                     // no retry of unsaved before
	rr             map[string]int                // round-robin position per job
	byJob          map[string][]string
	byHandle       map[string][]string
	live           map[string]bool            // ids of registered clients
	clients        map[string]registry.Member // registered clients by id
	started        map[string]time.Time       // registered clients' incarnations (registration times)
	fullPipes      map[string]bool            // clients whose send queue refused a frame this tick or batch
	usage          map[string]usage           // what each client holds (see routing.go)
	lastFired      map[string]time.Time       // job -> latest scheduled time recorded
	lastOpened     map[string]time.Time       // job -> the same, of those recorded in the open set (see ended)
	stats          map[string]*job.Stats      // job -> what the leader learned of it (saved now and then)
	statsDirty     map[string]bool            // jobs whose stats changed since the last save
	savedAvg       map[string]job.Duration    // job -> the average runtime last saved (or being saved)
	lastStatsSave  time.Time
	savingStats    bool
	removed        map[string]time.Time // job -> when this term removed it, so that an older snapshot does not revive it
	declared       map[string]string    // client id -> fingerprint of the declarations last applied
	// declaredBatches: client id -> fingerprint of the batch declarations last applied
	declaredBatches map[string]string
	heard           map[string]time.Time // client id -> when its last heartbeat reached this term
	lastReconcile   time.Time
	reconciling     bool
	kept            map[string]keptFiring // job -> its latest scheduled firing, ended, left in the open set
	lastSweep       time.Time
	sweeping        bool
	// applyingOpenSet: the closes asked now are of executions found ended in the open set (see close).
	applyingOpenSet bool
	// maybeRecorded: executions that may be in the history while their copies are still open: found there
	// (endedElsewhere), or copies nothing may have ended that the loop took on before the history could
	// tell (inherited, adopted; see
	// endedElsewhere): their close must look there first, and not record them twice.
	maybeRecorded map[string]bool
	woken         map[string]bool // jobs with an execution that just ended (see wake)
	backlog       backlogUse      // what waits for a client or its job's queue (see backlog.go)
	line          waitLine        // what the last tick left waiting, for room freed before the next (room.go)
	inserts       insertSizer     // how many executions one insert takes (see insertSizer)
	fullLog       logx.Limiter    // the backlog-full warning, at most once a minute
	staleSkipped  int64           // executions of this term that waited past the misfire threshold and were skipped
	activity      activity        // minute counts for the console's charts
	// Batch runs (see batchrun.go): the runs followed, the partitions to fire at the end of this turn,
	// the writes left to the batch writer, and the store lookups of ends not heard of.
	runs            map[string]*batchRun
	finished        map[string]*batchRun      // runs that ended lately (see keepFinished)
	finishedOrder   []string                  // their ids, oldest first
	unloaded        map[string]store.BatchRun // open runs not taken over yet (see loadBatchRuns)
	lastUnloadedTry time.Time
	openSetEnds     map[string][]store.BatchEnd // ends found in the open set at takeover, by run
	batchDue        []*batchSlot
	batchLooking    bool
	lastBatchCheck  time.Time
	gate            *batchGate
	batchScheds     map[string]*batchSchedule // batch → its schedule, for those that have one
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
		// inHistory: asked about because of flight.check, pending in the open set, and recorded in the
		// history: ended elsewhere (see endedElsewhere).
		inHistory []string
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
	CountJobs(ctx context.Context) (int64, error)
	CreateJob(ctx context.Context, spec job.Spec) error
	ReplaceJob(ctx context.Context, spec job.Spec, expectVersion int64) error
	MigrateOpenSet(ctx context.Context, since time.Time) (int, error)
	ReadOpenSet(ctx context.Context) (execs []job.Execution, stray []string, err error)
	OpenByID(ctx context.Context, ids []string) ([]job.Execution, error)
	InHistory(ctx context.Context, ids []string) (map[string]bool, error)
	ExecutionRecorded(ctx context.Context, id string, scheduled time.Time) (bool, error)
	InsertExecutions(ctx context.Context, execs []job.Execution) (duplicates []string, err error)
	RecordSkipped(ctx context.Context, into store.HistorySeries, execs []job.Execution, now time.Time) (duplicates []string, err error)
	LatestSkipped(ctx context.Context, series string) (map[string]time.Time, error)
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
	// runToken names a dispatch's client in it (keyring.RunToken); checkRunToken checks one a client
	// returns. Both nil in insecure mode.
	runToken      func(execID string, run int, client string) string
	checkRunToken func(execID string, run int, client, token string) bool
	// memberKey is the registration key of a client (keyring.MemberKey), which also signs its fallback
	// entries; nil in insecure mode.
	memberKey func(id string) []byte
	synced    <-chan struct{} // closed once the client registry is loaded
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
	// onEnd, when set, is told of every execution this term stops following, and how it ended (see
	// forget).
	onEnd func(e job.Execution, outcome job.State)
	// locks and room are the server's job write locks and its count of jobs under limits.jobs (see
	// jobwrites.go), which declarations share with the API; nil in unit tests: no lock, and a count.
	locks *jobLocks
	room  *jobRoom
	// revisions records the revisions of the jobs a declaration creates or changes, and says the version
	// a new job of a deleted one's name goes on from (see revisions.go); nil in unit tests.
	revisions declarationRevisions
	// batchStore keeps batch definitions and runs; nil in unit tests (no batches).
	batchStore batchStore
	// persistBatch records a batch end or a run's state in order with persist and closeOpen (the
	// intake's); nil in unit tests.
	persistBatch func(end *store.BatchEnd, run *store.BatchRun)
}

// declarationRevisions is what declarations need of the definition history.
type declarationRevisions interface {
	recordRevisions(ctx context.Context, action string, specs []job.Spec)
	continueVersions(ctx context.Context, specs []job.Spec) error
}

func (s *Server) leaderDeps() leaderDeps {
	return leaderDeps{
		cfg: s.cfg, metrics: s.metrics, now: s.now, store: s.store,
		healthy: s.sess.Healthy, send: s.outbox.Send, members: s.admittedClients,
		runToken: s.sec.runToken(), checkRunToken: s.sec.checkRunToken(), memberKey: s.sec.memberKey(),
		synced: s.clients.Synced(), persist: s.intake.persist, closeOpen: s.intake.closeOpen,
		clientsDirty: func() bool { return s.clientsDirty.Swap(false) },
		jitter:       job.RandomJitter,
		fallback:     s.store,
		history:      s.store,
		replay:       &replayState{},
		locks:        &s.jobLocks,
		room:         &s.room,
		revisions:    s,
		batchStore:   s.store,
		persistBatch: s.intake.persistBatch,
	}
}

func newLeader(deps leaderDeps, logger *slog.Logger, epoch int64) *leader {
	return &leader{
		leaderDeps:    deps,
		epoch:         epoch,
		logger:        logger.With("epoch", epoch),
		notes:         make(chan any, 1<<16),
		changes:       newJobChanges(),
		jobs:          map[string]*entry{},
		flights:       map[string]*flight{},
		openByJob:     map[string]map[string]*flight{},
		recording:     map[string]*flight{},
		rr:            map[string]int{},
		live:          map[string]bool{},
		clients:       map[string]registry.Member{},
		started:       map[string]time.Time{},
		fullPipes:     map[string]bool{},
		usage:         map[string]usage{},
		lastFired:     map[string]time.Time{},
		lastOpened:    map[string]time.Time{},
		maybeRecorded: map[string]bool{},
		stats:         map[string]*job.Stats{},
		statsDirty:    map[string]bool{},
		savedAvg:      map[string]job.Duration{},
		removed:       map[string]time.Time{},
		declared:      map[string]string{}, declaredBatches: map[string]string{},
		heard:       map[string]time.Time{},
		kept:        map[string]keptFiring{},
		fullLog:     logx.Limiter{Interval: time.Minute},
		runs:        map[string]*batchRun{},
		finished:    map[string]*batchRun{},
		unloaded:    map[string]store.BatchRun{},
		openSetEnds: map[string][]store.BatchEnd{},
		gate:        newBatchGate(),
		batchScheds: map[string]*batchSchedule{},
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
	case insertedNote:
		return "inserted"
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

// run is the leader loop: a select over the term's end, the next firing, the flight check tick, the notes
// and the job changes.
func (l *leader) run(ctx context.Context) error {
	l.startInserter(ctx)
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
		case <-l.changes.wake:
			l.applyJobChanges()
		}
		if err == nil {
			err = l.fireBatchDue(ctx)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		l.releaseWoken()
		l.offerFreedRoom()
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
	if err := l.loadBatchRuns(ctx); err != nil {
		return err
	}
	l.applyDeclarations(ctx)
	l.logger.Info("leading", "jobs", len(l.jobs), "in_flight", len(l.flights))
	return nil
}

func (l *leader) confirmed() bool {
	return l.healthy(l.cfg.ZooKeeper.SessionTimeout * 2 / 3)
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
	case insertedNote:
		return l.inserted(ctx, n)
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
		n.reply <- l.inflight(n.job, n.limit)
	case backlogRequest:
		n.reply <- l.backlogView()
	case activityRequest:
		n.reply <- api.Activity{Leader: l.cfg.ID, Since: l.start, Minutes: l.activity.view(l.now(), n.minutes)}
	case heartbeatsRequest:
		n.reply <- heartbeatsReply{heard: maps.Clone(l.heard), start: l.start}
	case requestNote:
		l.onRequest(ctx, n)
	case declareNote:
		n.reply <- l.onDeclare(ctx, n)
	case batchOpNote:
		n.reply <- l.onBatchOp(ctx, n)
	case batchStatusNote:
		n.reply <- l.batchStatus(n.id)
	case batchLookedUp:
		l.applyBatchLookup(n)
	case batchChanged:
		if l.batchStore != nil {
			l.onBatchChanged(ctx, n.name)
		}
	case resourcesChanged:
		n.reply <- l.onResourcesChanged(ctx)
	}
	return nil
}
