package server

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/schedule"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/wire"
)

// leader is the state of one leadership term: the jobs and when each fires next, and the executions in
// flight (fired, not yet finished).
//
// Concurrency: run's goroutine owns every field. Other goroutines reach it only through notes, a buffered
// channel: the intake delivers acks and results, the API delivers job changes and trigger requests,
// watchPeers delivers registry changes. Store calls are made from run's goroutine with the term's context,
// so when the term ends (ZooKeeper disconnection, session expiry, fencing) every call in progress is
// cancelled and no later firing or dispatch can happen under the old epoch.
type leader struct {
	s      *Server
	epoch  int64
	logger *slog.Logger
	notes  chan any

	jobs     map[string]*entry
	queue    fireQueue
	flights  map[string]*flight
	unsaved  []job.Execution // fired but not yet recorded because the store failed; retried on every tick
	rr       map[string]int  // round-robin position per job
	byJob    map[string][]string
	byHandle map[string][]string
	declared map[string]string // job -> fingerprint of the last declaration applied in this term
	heldTill time.Time         // executions inherited from an earlier term are not dispatched before this
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
	ackNote    struct{ ack *wire.Ack }
	resultNote struct{ result *wire.Result }
)

var errUnconfirmed = errors.New("leader: ZooKeeper has not confirmed the session recently; stepping down")

func newLeader(s *Server, epoch int64) *leader {
	return &leader{
		s:        s,
		epoch:    epoch,
		logger:   s.logger.With("epoch", epoch),
		notes:    make(chan any, 1<<16),
		jobs:     map[string]*entry{},
		flights:  map[string]*flight{},
		rr:       map[string]int{},
		declared: map[string]string{},
	}
}

// notify hands a note to the loop. Reports are dropped when the loop is far behind: every report is
// persisted by the intake before it gets here, and the loop recovers what it missed through re-sends.
func (l *leader) notify(n any) bool {
	select {
	case l.notes <- n:
		return true
	default:
		return false
	}
}

// run is the leader loop: a select over the term's end, the next firing, the flight check tick, a periodic
// job resync and the notes.
func (l *leader) run(ctx context.Context) error {
	if err := l.establish(ctx); err != nil {
		return err
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	go l.resyncJobs(ctx)
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
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// establish makes this term's state: it records the epoch in the store (refused if a newer leader exists),
// loads the jobs, fires what came due while there was no leader and takes over the executions in flight.
func (l *leader) establish(ctx context.Context) error {
	if err := l.s.store.ClaimEpoch(ctx, l.epoch, l.s.cfg.ID); err != nil {
		return fmt.Errorf("leader: claim epoch %d: %w", l.epoch, err)
	}
	l.rebuildEligibility()
	if err := l.loadJobs(ctx); err != nil {
		return err
	}
	now := l.s.now()
	// Any dispatch of an earlier term carried an accept-by at most AcceptWindow after that term could last
	// act, which was before this term began; past heldTill no client will start one of them any more.
	l.heldTill = now.Add(l.s.cfg.AcceptWindow + l.s.cfg.AckTimeout)
	if err := l.takeOver(ctx, now); err != nil {
		return err
	}
	if err := l.catchUp(ctx, now); err != nil {
		return err
	}
	l.applyDeclarations(ctx)
	l.logger.Info("leading", "jobs", len(l.jobs), "in_flight", len(l.flights))
	return nil
}

// loadJobs loads every job at establishment.
func (l *leader) loadJobs(ctx context.Context) error {
	specs, err := l.s.store.ListJobs(ctx)
	if err != nil {
		l.s.metrics.storeErrors.WithLabelValues("list_jobs").Inc()
		return fmt.Errorf("leader: load jobs: %w", err)
	}
	l.applyJobs(specs, time.Time{})
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
		taken := l.s.now()
		specs, err := l.s.store.ListJobs(ctx)
		if err != nil {
			if ctx.Err() == nil {
				l.s.metrics.storeErrors.WithLabelValues("list_jobs").Inc()
				l.logger.Warn("job resync failed", "err", err)
			}
			continue
		}
		l.notify(jobsSnapshot{specs: specs, taken: taken})
	}
}

// applyJobs makes l.jobs match specs. A job whose definition changed gets its next firing recomputed from
// now; at establishment catchUp handles the past. A snapshot taken at a given time (not zero) may be older
// than a change the loop has applied since, so it never replaces a newer version and never removes a job
// loaded after it was taken.
func (l *leader) applyJobs(specs []job.Spec, taken time.Time) {
	seen := make(map[string]bool, len(specs))
	now := l.s.now()
	for _, spec := range specs {
		seen[spec.Name] = true
		if e, ok := l.jobs[spec.Name]; ok {
			if e.spec.Version == spec.Version || (!taken.IsZero() && e.spec.Version > spec.Version) {
				continue
			}
		}
		l.setJob(spec, now)
	}
	for name, e := range l.jobs {
		if !seen[name] && (taken.IsZero() || e.loaded.Before(taken)) {
			l.removeJob(name)
		}
	}
}

// setJob installs or replaces a job and schedules its next firing after now.
func (l *leader) setJob(spec job.Spec, now time.Time) {
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
	if spec.Paused {
		return
	}
	e.next = sched.Next(now)
	if !e.next.IsZero() {
		heap.Push(&l.queue, queued{name: spec.Name, at: e.next, gen: e.gen})
	}
}

func (l *leader) removeJob(name string) {
	if e, ok := l.jobs[name]; ok {
		e.gen++ // its queued firings are now stale
		delete(l.jobs, name)
	}
}

// catchUp fires what came due while no leader was acting. Times later than the misfire threshold run each
// (just late); a job whose missed times are older than that gets one catch-up run for all of them. The
// (job, scheduled time) key makes every one of these a no-op if the previous leader had fired it already.
func (l *leader) catchUp(ctx context.Context, now time.Time) error {
	since := now.Add(-l.s.cfg.MisfireThreshold)
	last, err := l.s.store.LastFired(ctx, since)
	if err != nil {
		return fmt.Errorf("leader: last fired times: %w", err)
	}
	var execs []job.Execution
	names := make([]string, 0, len(l.jobs))
	for name := range l.jobs {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		e := l.jobs[name]
		if e.spec.Paused {
			continue
		}
		from := laterOf(e.spec.ActiveSince, since)
		if lf, ok := last[name]; ok {
			from = laterOf(from, lf)
		} else if t := e.sched.Latest(e.spec.ActiveSince, since); !t.IsZero() {
			execs = append(execs, l.newExecution(e.spec, t, job.TriggerCatchUp, nil))
		}
		times, _ := e.sched.Between(from, now, 1000)
		for _, t := range times {
			execs = append(execs, l.newExecution(e.spec, t, job.TriggerSchedule, nil))
		}
	}
	return l.fire(ctx, execs, now)
}

// takeOver tracks the executions an earlier term left pending or running.
func (l *leader) takeOver(ctx context.Context, now time.Time) error {
	open, err := l.s.store.OpenExecutions(ctx, now.Add(-l.s.cfg.OpenLookback))
	if err != nil {
		return fmt.Errorf("leader: open executions: %w", err)
	}
	for _, e := range open {
		if _, ok := l.flights[e.ID]; ok {
			continue
		}
		f := &flight{exec: e, attempt: max(e.Attempt, 1), inherited: true}
		if e.State == job.StateRunning {
			f.acked, f.client = true, e.Client
		}
		l.flights[e.ID] = f
	}
	return nil
}

func laterOf(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// fireDue fires every job whose time has come.
func (l *leader) fireDue(ctx context.Context) error {
	now := l.s.now()
	var execs []job.Execution
	for len(l.queue) > 0 && !l.queue[0].at.After(now) {
		it := heap.Pop(&l.queue).(queued)
		e := l.jobs[it.name]
		if e == nil || e.gen != it.gen {
			continue
		}
		execs = append(execs, l.newExecution(e.spec, it.at, job.TriggerSchedule, nil))
		e.next = e.sched.Next(it.at)
		if !e.next.IsZero() {
			heap.Push(&l.queue, queued{name: it.name, at: e.next, gen: e.gen})
		}
	}
	return l.fire(ctx, execs, now)
}

func (l *leader) newExecution(spec job.Spec, at time.Time, trigger job.Trigger, params map[string]string) job.Execution {
	id := job.ExecutionID(spec.Name, at)
	if trigger == job.TriggerManual {
		id = job.ManualExecutionID(spec.Name, uuid.NewString())
	}
	if params == nil {
		params = spec.Params
	}
	return job.Execution{
		ID: id, Job: spec.Name, ScheduledAt: at.UTC(), FiredAt: l.s.now().UTC(), Trigger: trigger,
		Epoch: l.epoch, Server: l.s.cfg.ID, Handler: spec.Handler, Params: params, Timeout: spec.Timeout,
		State: job.StatePending,
	}
}

// fire records the executions in one bulk insert and dispatches those that were not already recorded.
// Before writing it checks that ZooKeeper confirmed the session recently: a leader that was frozen (GC,
// SIGSTOP, a VM pause) past its session timeout must not act before the ZooKeeper client notices.
func (l *leader) fire(ctx context.Context, execs []job.Execution, now time.Time) error {
	if len(execs) == 0 {
		return nil
	}
	if !l.confirmed() {
		return errUnconfirmed
	}
	dups, err := l.s.store.InsertExecutions(ctx, execs)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		l.s.metrics.storeErrors.WithLabelValues("insert_executions").Inc()
		l.logger.Warn("recording firings failed; will retry", "executions", len(execs), "err", err)
		l.unsaved = append(l.unsaved, execs...)
		return nil
	}
	dup := make(map[string]bool, len(dups))
	for _, id := range dups {
		dup[id] = true
	}
	l.s.metrics.duplicateFires.Add(float64(len(dups)))
	for _, e := range execs {
		if dup[e.ID] {
			continue
		}
		l.s.metrics.fires.WithLabelValues(string(e.Trigger)).Inc()
		if e.Trigger == job.TriggerCatchUp {
			l.s.metrics.misfires.Inc()
		}
		f := &flight{exec: e, attempt: 1}
		l.flights[e.ID] = f
		l.dispatch(f, now, "")
	}
	return nil
}

func (l *leader) confirmed() bool {
	return l.s.sess.Healthy(l.s.cfg.ZooKeeper.SessionTimeout * 2 / 3)
}

func (l *leader) resetTimer(t *time.Timer) {
	for len(l.queue) > 0 {
		it := l.queue[0]
		if e := l.jobs[it.name]; e == nil || e.gen != it.gen {
			heap.Pop(&l.queue)
			continue
		}
		t.Reset(max(it.at.Sub(l.s.now()), 0))
		return
	}
	t.Reset(time.Hour)
}

// handle applies one note.
func (l *leader) handle(ctx context.Context, n any) error {
	switch n := n.(type) {
	case clientsChanged:
		l.rebuildEligibility()
		l.applyDeclarations(ctx)
		return l.dispatchWaiting(l.s.now())
	case jobsSnapshot:
		l.applyJobs(n.specs, n.taken)
	case jobChanged:
		spec, err := l.s.store.GetJob(ctx, n.name)
		switch {
		case errors.Is(err, store.ErrNotFound):
			l.removeJob(n.name)
		case err != nil:
			l.logger.Warn("reload job failed; the periodic resync will retry", "job", n.name, "err", err)
		default:
			l.setJob(spec, l.s.now())
		}
	case triggerRequest:
		id, err := l.trigger(ctx, n.name, n.params)
		n.reply <- triggerReply{id: id, err: err}
	case ackNote:
		l.onAck(n.ack)
	case resultNote:
		l.onResult(n.result)
	}
	return nil
}

// trigger fires a job now, outside its schedule.
func (l *leader) trigger(ctx context.Context, name string, params map[string]string) (string, error) {
	e, ok := l.jobs[name]
	if !ok {
		spec, err := l.s.store.GetJob(ctx, name)
		if err != nil {
			return "", err
		}
		e = &entry{spec: spec}
	}
	if !l.confirmed() {
		return "", errUnconfirmed
	}
	// A trigger's parameters add to and override the job's own for this run.
	merged := make(map[string]string, len(e.spec.Params)+len(params))
	for k, v := range e.spec.Params {
		merged[k] = v
	}
	for k, v := range params {
		merged[k] = v
	}
	now := l.s.now()
	exec := l.newExecution(e.spec, now, job.TriggerManual, merged)
	if _, err := l.s.store.InsertExecutions(ctx, []job.Execution{exec}); err != nil {
		return "", fmt.Errorf("record manual execution: %w", err)
	}
	l.s.metrics.fires.WithLabelValues(string(job.TriggerManual)).Inc()
	f := &flight{exec: exec, attempt: 1}
	l.flights[exec.ID] = f
	l.dispatch(f, now, "")
	return exec.ID, nil
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
