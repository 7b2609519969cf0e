package server

import (
	"container/heap"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/store"
)

// firing is one decision to fire a job at a time. It becomes one execution, or one per shard.
type firing struct {
	spec    job.Spec
	at      time.Time
	trigger job.Trigger
	missed  int               // fire times it stands for besides its own
	params  map[string]string // nil: the job's
	skip    string            // why it is recorded as skipped instead of run; "" runs it
	id      string            // the execution id, when the trigger makes it (a run request); "" otherwise
	// catchUp: the firing is owed from a time nobody fired (a takeover gap, a stalled loop, a store that
	// refused it, a resumed job). Under forbid it queues behind the job's open run instead of being skipped.
	catchUp bool
	// maybe: the ids of its executions, when an insert of them failed after it was sent: the store may
	// have recorded them all the same (see retryUnsaved).
	maybe []string
	// failedAt: when its first insert failed; zero while none has.
	failedAt time.Time
	// stop: why its execution was asked to stop while it was on its way to the store (recording.go).
	stop string
	// batch: the batch run's node (and partition) it runs, if it is a batch's (see batchrun.go).
	batch *batchSlot
	// labels: what a client must carry to run it, besides the job's (a batch node's).
	labels map[string]string
}

// planned is an execution about to be recorded, and what happens to it then.
type planned struct {
	exec job.Execution
	skip string // recorded as skipped, for this reason
	// direct: the skip is recorded ended where it is fired, straight into the history (see skipsDirect)
	direct  bool
	queued  bool   // it waits for the job's open executions to end (overlap queue, or catch-up under forbid)
	catchUp bool   // made by a catch-up firing (see firing.catchUp)
	from    int    // the index of its firing in the (sorted) firings plan was given
	stop    string // asked to stop before it was recorded: it ends, never sent (see firing.stop)
}

// fireDue fires the jobs whose time has come, at most one insert's worth (see insertSizer): the rest stay
// due, and the loop comes back for them after the notes that arrived meanwhile. While the backlog is full
// (see backlog.go) a job that has an execution waiting does not fire on schedule: its times are owed,
// and go to its misfire policy if room comes too late. A job that fell behind owes what owed says.
func (l *leader) fireDue(ctx context.Context) error {
	if l.pipe.busy() || len(l.unsaved) > 0 {
		// The times stay due: the loop comes back when an insert is answered, or once the firings a
		// failed insert left are on their way again. Recorded before them, a later time would be where
		// the next term resumes the job, and a term that ended before the retry would lose them.
		return nil
	}
	now := l.now()
	var firings []firing
	limit := l.inserts.batch()
	full := l.backlogFull()
	var heldBack []queued
	for len(l.queue) > 0 && !l.queue[0].at.After(now) && len(firings) < limit {
		it := heap.Pop(&l.queue).(queued)
		e := l.jobs[it.name]
		if e == nil || e.gen != it.gen {
			continue
		}
		if full && l.holdsWaiting(it.name) {
			// Jobs with nothing waiting still fire: the backlog may be full of executions nobody can take
			// (no eligible client), and a job that others' leave room for must not stop with them.
			heldBack = append(heldBack, it)
			continue
		}
		owed := l.owed(e, it.at.Add(-time.Nanosecond), now)
		if len(owed) > 1 { // the loop fell behind: all of them are late
			markCatchUp(owed)
		}
		firings = append(firings, owed...)
		e.next = e.sched.Next(now)
		if !e.next.IsZero() {
			heap.Push(&l.queue, queued{name: it.name, at: e.next, gen: e.gen})
		}
	}
	if len(heldBack) > 0 {
		l.metrics.backlogFull.Inc()
		l.fullLog.Warn(l.logger, "backlog full: jobs with executions waiting do not fire on schedule; their times go to the misfire policies if they wait too long",
			"jobs_held", len(heldBack), "executions", l.backlog.count, "bytes", l.backlog.bytes,
			"limits.backlog", l.cfg.Limits.Backlog, "limits.backlog_mib", l.cfg.Limits.BacklogMiB)
		for _, it := range heldBack {
			heap.Push(&l.queue, it)
		}
	}
	return l.fire(ctx, firings, now)
}

// retryDelay is the wait before run of an execution of jobName, by its job's retry policy.
func (l *leader) retryDelay(jobName string, run int) time.Duration {
	var r job.Retry
	if e, ok := l.jobs[jobName]; ok {
		r = e.spec.Retry
	}
	return r.DelayBefore(run, l.jitter())
}

// newExecutions makes the executions of a firing: one, or one per shard.
func (l *leader) newExecutions(fr firing) []job.Execution {
	id := job.ExecutionID(fr.spec.Name, fr.at)
	switch {
	case fr.id != "":
		id = fr.id
	case fr.trigger == job.TriggerManual:
		id = job.ManualExecutionID(fr.spec.Name, uuid.NewString())
	}
	params := fr.params
	if params == nil {
		params = fr.spec.Params
	}
	base := job.Execution{
		ID: id, Firing: id, Job: fr.spec.Name, ScheduledAt: fr.at.UTC(), FiredAt: l.now().UTC(), Trigger: fr.trigger,
		Epoch: l.epoch, Server: l.cfg.ID, Handler: fr.spec.Handler, Params: params, Timeout: fr.spec.Timeout,
		MaxRuns: fr.spec.Retry.MaxRuns(), Rerunnable: fr.spec.Rerunnable, Missed: fr.missed,
		Width: fr.spec.Routing.Width, State: job.StatePending, JobVersion: fr.spec.Version,
	}
	if base.MaxRuns == 1 {
		base.MaxRuns = 0
	}
	if b := fr.batch; b != nil {
		base.BatchRun, base.BatchNode, base.BatchPartition, base.BatchRound = b.run, b.node, b.partition, b.round
	}
	base.Labels = fr.labels
	n := fr.spec.Routing.ShardCount()
	if fr.spec.Routing.Strategy != job.RouteShardBroadcast || fr.skip != "" {
		return []job.Execution{base}
	}
	out := make([]job.Execution, n)
	for i := range out {
		e := base
		e.ID = job.ShardExecutionID(id, i)
		e.Shard = &job.Shard{Index: i, Total: n}
		if items := fr.spec.Routing.ShardItems; i < len(items) {
			e.Shard.Item = items[i]
		}
		out[i] = e
	}
	return out
}

// plan turns firings into executions and applies each job's overlap policy, in time order: a firing of a
// job that has open executions is skipped (forbid), queued (queue), or replaces them (replace: stops holds
// the flights to stop once the new one is recorded). Firings earlier in the same batch count as open.
func (l *leader) plan(firings []firing) (out []planned, stops map[string]string) {
	byTime := func(a, b firing) int { return a.at.Compare(b.at) }
	if !slices.IsSortedFunc(firings, byTime) { // fireDue's are, from the heap
		slices.SortStableFunc(firings, byTime)
	}
	batchOpen := map[string][]int{}   // job -> indexes in out of executions planned to run
	batchFirings := map[string]int{}  // job -> firings planned to run
	batchCatchUp := map[string]bool{} // job -> a catch-up firing of it is planned to run
	plannedIDs := map[string]bool{}   // execution ids planned
	for fi, fr := range firings {
		execs := l.newExecutions(fr)
		if plannedIDs[execs[0].ID] {
			continue // the same firing twice (a manual trigger's id is new each time)
		}
		plannedIDs[execs[0].ID] = true
		_, recording := l.recording[execs[0].ID]
		_, tracked := l.flights[execs[0].ID]
		if recording || tracked {
			// On its way to the store already, or recorded and followed: fired again after its job
			// changed (owed counts from the last firing recorded, which may not be answered yet). The
			// insert under way records it, or its failure makes it unsaved.
			continue
		}
		skip, queue := fr.skip, false
		name := fr.spec.Name
		if skip == "" && fr.spec.Overlap != job.OverlapAllow && (l.openCount(name) > 0 || len(batchOpen[name]) > 0) {
			switch fr.spec.Overlap {
			case job.OverlapQueue:
				if l.openFirings(name)+batchFirings[name] >= maxQueued {
					skip = fmt.Sprintf("overlap: %d executions already open or queued (queue)", maxQueued)
				} else {
					queue = true
				}
			case job.OverlapReplace:
				reason := "replaced by " + execs[0].ID
				for id, f := range l.openByJob[name] {
					if !f.active() {
						continue
					}
					if stops == nil {
						stops = map[string]string{}
					}
					stops[id] = reason
				}
				for _, i := range batchOpen[name] {
					out[i].skip = "overlap: " + reason
				}
				batchOpen[name], batchFirings[name] = nil, 0
			default: // forbid
				// Times owed from a gap run one after another, late, like any firing of a job that is
				// catching up; only a time that comes due while a run is going in normal operation is
				// skipped. checkFlights bounds the wait by the misfire threshold.
				switch {
				case !fr.catchUp && !l.catchingUp(name) && !batchCatchUp[name]:
					skip = "overlap: an earlier execution is still open (forbid)"
				case l.hasOrphan(name):
					skip = errOrphanAhead
				case l.openFirings(name)+batchFirings[name] >= maxQueued:
					skip = fmt.Sprintf("overlap: %d executions of the job already open or waiting to catch up (forbid)", maxQueued)
				default:
					queue = true
				}
			}
		}
		if skip == "" && fr.batch == nil {
			batchFirings[name]++
			batchCatchUp[name] = batchCatchUp[name] || fr.catchUp
		}
		direct := skip != "" && l.skipsDirect(fr)
		for _, e := range execs {
			if skip == "" && fr.batch == nil {
				batchOpen[name] = append(batchOpen[name], len(out))
			}
			out = append(out, planned{exec: e, skip: skip, direct: direct, queued: queue, catchUp: fr.catchUp, from: fi, stop: fr.stop})
		}
	}
	return out, stops
}

// fire records the executions of the firings, dispatches the new ones that run, records the end of those
// skipped, and stops what a replacing firing replaces, once it is recorded. The inserts are made off the
// loop (see recording.go); fire returns once they are planned.
//
// Before planning it checks that ZooKeeper confirmed the session recently: a leader that was frozen (GC,
// SIGSTOP, a paused VM) past its session timeout must not act before the ZooKeeper client notices. A firing
// found already recorded is usually the previous leader's; adopt looks at what stands behind it, because it
// may also be this term's own insert whose answer was lost, or one a deposed leader made just now.
func (l *leader) fire(ctx context.Context, firings []firing, now time.Time) error {
	if len(firings) == 0 {
		return nil
	}
	if !l.confirmed() {
		return errUnconfirmed
	}
	plan, stops := l.plan(firings)
	if len(plan) == 0 {
		return nil
	}
	return l.recordChunks(ctx, l.chunks(firings, plan, stops, now))
}

// record inserts the planned executions on the loop and acts on the new ones; it reports which were new.
// For a firing someone waits on (a manual trigger, a run request).
func (l *leader) record(ctx context.Context, plan []planned, now time.Time) (map[string]bool, error) {
	sctx, cancel := storeCtx(ctx)
	began := time.Now()
	dups, err := l.insertPlanned(sctx, plan, now)
	cancel()
	l.inserts.observe(len(plan), time.Since(began), err)
	l.metrics.insertSize.Set(float64(l.inserts.batch()))
	if err != nil {
		return nil, err
	}
	return l.applyRecorded(ctx, plan, dups, nil, now), nil
}

// directSkipHorizon bounds how long after its job's latest firing in the open set a firing may be skipped
// straight into the history (see skipsDirect).
const directSkipHorizon = 10 * time.Minute

// skipsDirect reports whether a firing the plan skips is recorded ended where it is fired
// (store.RecordSkipped: no open-set copy, event or close, the bulk of an overloaded store's work) rather
// than recorded as a run and ended. Only where nothing but the open set's copy would keep it right:
//   - a firing on the schedule: a manual trigger or a run request is looked for by its id (a request's
//     re-send stops at its fence), and must be found with its end;
//   - never tried before: one whose insert failed may have left its open-set copy without its fence, which
//     only an insert of the copy (a duplicate) finds and ends;
//   - shortly after the job's latest firing in the open set, which stays kept there: a new leader reads the
//     skips from the newest history buckets, and one it misses is owed again and found in the fence (kept
//     for days), so a job whose firings are sparse keeps its skips in the open set.
func (l *leader) skipsDirect(fr firing) bool {
	opened, ok := l.lastOpened[fr.spec.Name]
	return (fr.trigger == job.TriggerSchedule || fr.trigger == job.TriggerCatchUp) && fr.batch == nil && len(fr.maybe) == 0 &&
		ok && fr.at.Sub(opened) <= directSkipHorizon
}

// insertPlanned records planned executions: those that run, or are skipped as runs are recorded, in the
// fence and the open set (InsertExecutions); those skipped where they are fired straight into the history
// (RecordSkipped). It returns the ids recorded before, of both. Safe off the loop.
func (l *leader) insertPlanned(ctx context.Context, plan []planned, now time.Time) (duplicates []string, err error) {
	var runs, skips []job.Execution
	for _, p := range plan {
		if p.direct {
			skips = append(skips, skippedExecution(p.exec, p.skip, now))
		} else {
			runs = append(runs, p.exec)
		}
	}
	if len(runs) > 0 {
		if duplicates, err = l.store.InsertExecutions(ctx, runs); err != nil {
			return nil, err
		}
	}
	if len(skips) > 0 {
		series := store.HistorySeries{Epoch: l.epoch, Series: store.SkipSeries, Span: l.cfg.History.bucketSpan(), Size: l.cfg.History.BucketSize}
		skipDups, err := l.store.RecordSkipped(ctx, series, skips, now)
		if err != nil {
			return nil, err
		}
		duplicates = append(duplicates, skipDups...)
	}
	return duplicates, nil
}

// skippedExecution is e ended at now, skipped for reason: folded with the finished event that says so, as
// the closer would fold it.
func skippedExecution(e job.Execution, reason string, now time.Time) job.Execution {
	e.Fold([]job.Event{skipEvent(e, reason, now)})
	return e
}

// skipEvent is the finished event of e skipped for reason.
func skipEvent(e job.Execution, reason string, at time.Time) job.Event {
	return job.Event{
		ID: job.EventID(e.ID, job.EventFinished, 1), ExecID: e.ID, Job: e.Job, Kind: job.EventFinished, Run: 1,
		At: at.UTC(), Result: &job.Result{Status: job.StateSkipped, ExitCode: -1, Error: reason, Final: true},
	}
}

// applyRecorded acts on planned executions the store has recorded (dups: those it had recorded before),
// and reports which were new. A new one in stopped (id -> why) ends there, never sent.
func (l *leader) applyRecorded(ctx context.Context, plan []planned, dups []string, stopped map[string]string, now time.Time) map[string]bool {
	// A batch may fill clients: count what they hold now, after the insert, which can take seconds on a
	// loaded store. Counted before it, every dispatch of the last second before the insert still held its
	// slot after it, and whole batches waited for the next tick with the clients idle.
	l.rebuildUsage()
	clear(l.fullPipes)
	// Room the count finds goes first to what waited before these firings, oldest first (see room.go).
	l.line.roomFreed = true
	l.offerFreedRoom()
	dup := make(map[string]bool, len(dups))
	for _, id := range dups {
		dup[id] = true
	}
	l.metrics.duplicateFires.Add(float64(len(dups)))
	fresh := make(map[string]bool, len(plan))
	var unexplained []string
	planOf := map[string]planned{}
	for _, p := range plan {
		e := p.exec
		// Recorded now or before, it is in the store either way. A new one is in the open set unless it
		// was skipped there and then, which leaves the job's kept firing where it is (see keptFiring); one
		// recorded before may have ended and left it, and its copy was then dropped: adopt looks.
		if onSchedule(e.Trigger) && e.ScheduledAt.After(l.lastFired[e.Job]) {
			l.lastFired[e.Job] = e.ScheduledAt
		}
		if !p.direct && !dup[e.ID] {
			l.opened(e)
		}
		if dup[e.ID] {
			if f, tracked := l.flights[e.ID]; !tracked {
				unexplained = append(unexplained, e.ID)
				planOf[e.ID] = p
			} else if reason, ok := stopped[e.ID]; ok {
				l.stop(f, reason, true)
			}
			continue
		}
		fresh[e.ID] = true
		l.metrics.fires.WithLabelValues(string(e.Trigger)).Inc()
		if p.skip == "" {
			l.activity.fired(now)
		}
		switch {
		case p.direct:
			l.skipped(e, p.skip)
			continue
		case p.skip != "":
			l.recordSkip(e, p.skip)
			continue
		}
		f := &flight{exec: e, run: 1, catchUp: p.catchUp}
		if p.queued {
			f.phase = phaseQueued
		}
		l.track(f)
		if reason, ok := stopped[e.ID]; ok {
			l.metrics.stops.Inc()
			l.finishLocally(f, job.StateFailed, "stopped before it ran: "+reason, "stop", true)
			continue
		}
		if f.phase != phaseWaiting || !l.dispatch(f, now) {
			l.backlog.add(f)
		}
	}
	l.adopt(ctx, unexplained, planOf, stopped, now)
	return fresh
}

// recordSkip records that e, recorded in the open set, never runs, and why.
func (l *leader) recordSkip(e job.Execution, reason string) {
	l.persist(skipEvent(e, reason, l.now()))
	l.skipped(e, reason)
	l.ended(e)
}

// skipped counts and tells of a firing that never runs. One skipped where it was fired (insertPlanned) is in
// the history already, and not in the open set: nothing more to do.
func (l *leader) skipped(e job.Execution, reason string) {
	l.metrics.skipped.WithLabelValues(skipLabel(reason)).Inc()
	l.activity.ended(l.now(), job.StateSkipped)
	l.batchEnded(e, job.StateSkipped, "")
	l.logger.Info("firing skipped", "execution", e.ID, "reason", reason)
}

func skipLabel(reason string) string {
	switch {
	case len(reason) >= 7 && reason[:7] == "misfire":
		return "misfire"
	case len(reason) >= 7 && reason[:7] == "overlap":
		return "overlap"
	}
	return "other"
}

// adopt tracks unfinished executions behind firings that were found already recorded: this term's own
// (an insert reported failed that had landed) get what was planned for them (plans: dispatched, queued or
// recorded skipped); an earlier term's are inherited.
func (l *leader) adopt(ctx context.Context, ids []string, plans map[string]planned, stopped map[string]string, now time.Time) {
	if len(ids) == 0 {
		return
	}
	sctx, cancel := storeCtx(ctx)
	execs, err := l.store.OpenByID(sctx, ids) // one that ended and was closed is not there: nothing to do
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			// They stay recorded and unfinished, in the open set: the next sweep or leader finds them.
			l.logger.Warn("cannot read firings found already recorded", "executions", len(ids), "err", err)
		}
		return
	}
	// A pending copy of this term's is one from an insert whose answer was lost, or one the store failed to
	// drop when the firing had ended before (dropResurrected could not read the history): that one must
	// not run. The history tells them apart; unread, the copy is held for the store check (verify), and
	// however it ends its close looks in the history first. (Only firings on the schedule: a batch's or a
	// person's are looked up by id and end as their requests say.)
	var own []string
	for _, e := range execs {
		if e.Epoch == l.epoch && e.State == job.StatePending && e.Attempt == 0 && keepsSchedule(e.Trigger) {
			own = append(own, e.ID)
		}
	}
	var (
		recorded map[string]bool
		herr     error
	)
	if len(own) > 0 {
		// Short: the loop waits, and unread the copies are only held for the check off the loop.
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		recorded, herr = l.store.InHistory(sctx, own)
		cancel()
		if herr != nil {
			l.metrics.storeErrors.WithLabelValues("in_history").Inc()
			l.logger.Warn("cannot look up firings found recorded before in the history; held for the store check", "executions", len(own), "err", herr)
			for _, id := range own {
				l.maybeRecorded[id] = true // however they end, their close looks in the history first
			}
		}
	}
	for _, e := range execs {
		l.opened(e)
		switch {
		case e.State.Terminal():
		case e.Epoch == l.epoch && e.State == job.StatePending && e.Attempt == 0 && herr == nil && recorded[e.ID]:
			l.endRecordedCopy(e, now)
		case e.Epoch == l.epoch && e.State == job.StatePending && e.Attempt == 0:
			p, ok := plans[e.ID]
			if ok && p.skip != "" {
				l.recordSkip(e, p.skip)
				continue
			}
			f := &flight{exec: e, run: 1, catchUp: ok && p.catchUp, verify: herr != nil}
			if ok && p.queued {
				f.phase = phaseQueued
			}
			l.track(f)
			if reason, ok := stopped[e.ID]; ok {
				l.metrics.stops.Inc()
				l.finishLocally(f, job.StateFailed, "stopped before it ran: "+reason, "stop", true)
				continue
			}
			if f.phase == phaseWaiting {
				l.dispatch(f, now)
			}
		default:
			l.inherit(e, now)
			if reason, ok := stopped[e.ID]; ok {
				if f, tracked := l.flights[e.ID]; tracked {
					l.stop(f, reason, true)
				}
			}
		}
	}
}

// opened notes that e, a firing, is in the open set: the job's kept firing, if older, leaves it, and e is
// the job's latest firing there if it is later than the one known.
func (l *leader) opened(e job.Execution) {
	l.firedLater(e)
	if onSchedule(e.Trigger) && e.ScheduledAt.After(l.lastOpened[e.Job]) {
		l.lastOpened[e.Job] = e.ScheduledAt
	}
}

// onSchedule reports whether executions of trigger stand for fire times of the job's schedule (and so
// count for what the schedule still owes).
func onSchedule(t job.Trigger) bool {
	return t != job.TriggerManual && t != job.TriggerRequest && t != job.TriggerBatch
}
