package server

import (
	"container/heap"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/clover-sched/clover/internal/job"
)

// maxOwed bounds the firings one job can owe at once within the misfire threshold.
const maxOwed = 1000

// fireDue fires every job whose time has come. A job that fell behind (the loop was stalled) owes what
// owed says: each time within the misfire threshold, one catch-up run for anything older.
func (l *leader) fireDue(ctx context.Context) error {
	now := l.now()
	var execs []job.Execution
	for len(l.queue) > 0 && !l.queue[0].at.After(now) {
		it := heap.Pop(&l.queue).(queued)
		e := l.jobs[it.name]
		if e == nil || e.gen != it.gen {
			continue
		}
		execs = append(execs, l.owed(e, it.at.Add(-time.Nanosecond), now)...)
		e.next = e.sched.Next(now)
		if !e.next.IsZero() {
			heap.Push(&l.queue, queued{name: it.name, at: e.next, gen: e.gen})
		}
	}
	return l.fire(ctx, execs, now)
}

// owed returns the executions job e owes for its fire times in (from, now]: one per time within the misfire
// threshold, and a single catch-up run standing in for every time older than that.
func (l *leader) owed(e *entry, from, now time.Time) []job.Execution {
	var out []job.Execution
	cut := now.Add(-l.cfg.MisfireThreshold)
	if from.Before(cut) {
		if t := e.sched.Latest(from, cut); !t.IsZero() {
			out = append(out, l.newExecution(e.spec, t, job.TriggerCatchUp, nil))
		}
		from = cut
	}
	times, truncated := e.sched.Between(from, now, maxOwed)
	if truncated {
		l.logger.Warn("job owes more firings than can be made at once; the oldest are dropped", "job", e.spec.Name, "kept", maxOwed)
		times = times[len(times)-maxOwed:]
	}
	for _, t := range times {
		out = append(out, l.newExecution(e.spec, t, job.TriggerSchedule, nil))
	}
	return out
}

// catchUp fires what came due while no leader was acting: from each job's last recorded firing (or its
// ActiveSince) to now, as owed says. The (job, scheduled time) key makes every firing that the previous
// leader had made a no-op.
func (l *leader) catchUp(ctx context.Context, now time.Time) error {
	sctx, cancel := context.WithTimeout(ctx, 4*storeTimeout) // one read of the recent history
	defer cancel()
	last, err := l.store.LastFired(sctx, now.Add(-l.cfg.OpenLookback))
	if err != nil {
		return fmt.Errorf("leader: last fired times: %w", err)
	}
	names := make([]string, 0, len(l.jobs))
	for name := range l.jobs {
		names = append(names, name)
	}
	slices.Sort(names)
	var execs []job.Execution
	for _, name := range names {
		e := l.jobs[name]
		if e.spec.Paused {
			continue
		}
		from := e.spec.ActiveSince.Add(-time.Nanosecond)
		if lf, ok := last[name]; ok && lf.After(from) {
			from = lf
		}
		execs = append(execs, l.owed(e, from, now)...)
	}
	return l.fire(ctx, execs, now)
}

// takeOver tracks the executions an earlier term left pending or running.
func (l *leader) takeOver(ctx context.Context, now time.Time) error {
	sctx, cancel := context.WithTimeout(ctx, 4*storeTimeout) // one read of the recent history
	defer cancel()
	open, err := l.store.OpenExecutions(sctx, now.Add(-l.cfg.OpenLookback))
	if err != nil {
		return fmt.Errorf("leader: open executions: %w", err)
	}
	for _, e := range open {
		l.inherit(e, now)
	}
	return nil
}

// inherit tracks an unfinished execution this term did not dispatch. If it is running, the client that
// runs it is watched. If not, an earlier term may have sent it to a client we cannot name, so it waits
// until any such dispatch is past its accept-by: the client would have acknowledged it by then (clients
// re-send acks until recorded), or it can no longer start it.
func (l *leader) inherit(e job.Execution, now time.Time) {
	if _, ok := l.flights[e.ID]; ok {
		return
	}
	f := &flight{exec: e, attempt: e.Attempt}
	if e.State == job.StateRunning {
		f.acked, f.ackedAt, f.client = true, now, e.Client
	} else {
		f.heldUntil = now.Add(l.cfg.AcceptWindow + l.cfg.AckTimeout)
	}
	l.flights[e.ID] = f
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
		ID: id, Job: spec.Name, ScheduledAt: at.UTC(), FiredAt: l.now().UTC(), Trigger: trigger,
		Epoch: l.epoch, Server: l.cfg.ID, Handler: spec.Handler, Params: params, Timeout: spec.Timeout,
		State: job.StatePending,
	}
}

// fire records the executions in one bulk insert and dispatches the new ones.
//
// Before writing it checks that ZooKeeper confirmed the session recently: a leader that was frozen (GC,
// SIGSTOP, a paused VM) past its session timeout must not act before the ZooKeeper client notices. A firing
// found already recorded is usually the previous leader's; adopt looks at what stands behind it, because it
// may also be this term's own insert whose answer was lost, or one a deposed leader made just now.
func (l *leader) fire(ctx context.Context, execs []job.Execution, now time.Time) error {
	if len(execs) == 0 {
		return nil
	}
	if !l.confirmed() {
		return errUnconfirmed
	}
	sctx, cancel := storeCtx(ctx)
	dups, err := l.store.InsertExecutions(sctx, execs)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		l.metrics.storeErrors.WithLabelValues("insert_executions").Inc()
		l.logger.Warn("recording firings failed; will retry", "executions", len(execs), "err", err)
		l.unsaved = append(l.unsaved, execs...)
		return nil
	}
	dup := make(map[string]bool, len(dups))
	for _, id := range dups {
		dup[id] = true
	}
	l.metrics.duplicateFires.Add(float64(len(dups)))
	var unexplained []string
	for _, e := range execs {
		if dup[e.ID] {
			if _, tracked := l.flights[e.ID]; !tracked {
				unexplained = append(unexplained, e.ID)
			}
			continue
		}
		l.metrics.fires.WithLabelValues(string(e.Trigger)).Inc()
		if e.Trigger == job.TriggerCatchUp {
			l.metrics.misfires.Inc()
		}
		f := &flight{exec: e}
		l.flights[e.ID] = f
		l.dispatch(f, now)
	}
	return l.adopt(ctx, unexplained, now)
}

// adopt tracks unfinished executions behind firings that were found already recorded: this term's own
// (an insert reported failed that had landed) are dispatched now; an earlier term's are inherited.
func (l *leader) adopt(ctx context.Context, ids []string, now time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	sctx, cancel := storeCtx(ctx)
	execs, err := l.store.ExecutionsByID(sctx, ids)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		// They stay recorded and unfinished: the next leader's takeOver finds them.
		l.logger.Warn("cannot read firings found already recorded", "executions", len(ids), "err", err)
		return nil
	}
	for _, e := range execs {
		switch {
		case e.State.Terminal():
		case e.Epoch == l.epoch && e.State == job.StatePending:
			f := &flight{exec: e}
			l.flights[e.ID] = f
			l.dispatch(f, now)
		default:
			l.inherit(e, now)
		}
	}
	return nil
}

// retryUnsaved records again the firings the store refused. Times that are by now past the misfire
// threshold collapse into one catch-up run per job, so a long store outage does not end in a storm.
func (l *leader) retryUnsaved(ctx context.Context, now time.Time) error {
	if len(l.unsaved) == 0 {
		return nil
	}
	cut := now.Add(-l.cfg.MisfireThreshold)
	latestOld := map[string]int{}
	var keep []job.Execution
	for i, e := range l.unsaved {
		if e.Trigger == job.TriggerManual || !e.ScheduledAt.Before(cut) {
			keep = append(keep, e)
			continue
		}
		if j, ok := latestOld[e.Job]; !ok || l.unsaved[j].ScheduledAt.Before(e.ScheduledAt) {
			latestOld[e.Job] = i
		}
	}
	for _, i := range latestOld {
		e := l.unsaved[i]
		e.Trigger = job.TriggerCatchUp
		keep = append(keep, e)
	}
	l.unsaved = nil
	return l.fire(ctx, keep, now)
}

// trigger fires a job now, outside its schedule. The trigger's parameters add to and override the job's.
func (l *leader) trigger(ctx context.Context, name string, params map[string]string) (string, error) {
	var spec job.Spec
	if e, ok := l.jobs[name]; ok {
		spec = e.spec
	} else {
		sctx, cancel := storeCtx(ctx)
		s, err := l.store.GetJob(sctx, name)
		cancel()
		if err != nil {
			return "", err
		}
		spec = s
	}
	if !l.confirmed() {
		return "", errUnconfirmed
	}
	merged := make(map[string]string, len(spec.Params)+len(params))
	for k, v := range spec.Params {
		merged[k] = v
	}
	for k, v := range params {
		merged[k] = v
	}
	now := l.now()
	exec := l.newExecution(spec, now, job.TriggerManual, merged)
	sctx, cancel := storeCtx(ctx)
	_, err := l.store.InsertExecutions(sctx, []job.Execution{exec})
	cancel()
	if err != nil {
		// The insert may have landed even so: adopt it if it did, so it is not left stranded.
		_ = l.adopt(ctx, []string{exec.ID}, now)
		if _, ok := l.flights[exec.ID]; ok {
			return exec.ID, nil
		}
		return "", fmt.Errorf("record manual execution: %w", err)
	}
	l.metrics.fires.WithLabelValues(string(job.TriggerManual)).Inc()
	f := &flight{exec: exec}
	l.flights[exec.ID] = f
	l.dispatch(f, now)
	return exec.ID, nil
}
