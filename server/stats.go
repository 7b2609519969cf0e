package server

import (
	"context"
	"fmt"
	"time"

	"github.com/clover-sched/clover/internal/job"
)

// overdueSamples is how many recent successful runs the average runtime of a job weighs.
const overdueSamples = 10

// jobStats returns the stats of a job, made if it has none yet.
func (l *leader) jobStats(name string) *job.Stats {
	st, ok := l.stats[name]
	if !ok {
		st = &job.Stats{Job: name}
		l.stats[name] = st
	}
	return st
}

// observeRuntime adds a successful run's duration to its job's moving average.
func (l *leader) observeRuntime(jobName string, d time.Duration) {
	st := l.jobStats(jobName)
	if st.AvgRuntime == 0 {
		st.AvgRuntime = job.Duration(d)
	} else {
		avg := time.Duration(st.AvgRuntime)
		st.AvgRuntime = job.Duration(avg + (d-avg)/overdueSamples)
	}
	st.UpdatedAt = l.now().UTC()
	// A job whose average was never saved compares with none (0): the average of a job that takes less
	// than statsMinChange is not worth a write (the overdue alarm of a next leader learns it from the
	// first run it sees).
	if notable(time.Duration(l.savedAvg[jobName]), time.Duration(st.AvgRuntime)) {
		l.statsDirty[jobName] = true
	}
}

// notable reports whether an average runtime moved far enough from the one saved to be saved again: by
// a tenth and by statsMinChange. Every run of a job moves its average a little; saving each such move
// cost one store write per job every statsSaveEvery (on FerretDB about 8 ms each, in the way of the
// executions' and results' inserts: 5,000 jobs took 40 s), for no use to the overdue alarm. The leader
// keeps the exact average; the store's copy serves the next leader and `job get`.
func notable(saved, avg time.Duration) bool {
	diff := avg - saved
	if diff < 0 {
		diff = -diff
	}
	return diff >= statsMinChange && 10*diff >= saved
}

// statsMinChange is the least change of an average runtime that is saved.
const statsMinChange = 100 * time.Millisecond

// statsSaveEvery is how often changed job stats are written to the store.
const statsSaveEvery = 30 * time.Second

// statsSaveBatch bounds the jobs whose stats one save writes: on FerretDB each costs a write of 8 ms or more
// that holds up the inserts of executions and results, and a save must end well within storeTimeout. A
// leader with many new jobs saves their first stats over several saves.
const statsSaveBatch = 100

// saveStats writes the changed stats, off the loop.
func (l *leader) saveStats(ctx context.Context, now time.Time) {
	if l.savingStats || len(l.statsDirty) == 0 || now.Sub(l.lastStatsSave) < statsSaveEvery {
		return
	}
	batch := make([]job.Stats, 0, min(len(l.statsDirty), statsSaveBatch))
	for name := range l.statsDirty {
		if len(batch) == statsSaveBatch {
			break // the rest in the next save
		}
		delete(l.statsDirty, name)
		if st, ok := l.stats[name]; ok {
			batch = append(batch, *st)
			l.savedAvg[name] = st.AvgRuntime
		}
	}
	l.lastStatsSave, l.savingStats = now, true
	go func() {
		sctx, cancel := storeCtx(ctx)
		defer cancel()
		var failed []string
		if err := l.store.SaveStats(sctx, batch); err != nil && ctx.Err() == nil {
			l.metrics.storeErrors.WithLabelValues("save_stats").Inc()
			l.logger.Warn("saving job stats failed; they are saved again in the next save", "jobs", len(batch), "err", err)
			for _, st := range batch {
				failed = append(failed, st.Job)
			}
		}
		l.tell(ctx, statsSaved{failed: failed})
	}()
}

// loadStats reads what earlier terms learned of the jobs; without it the overdue averages start afresh.
func (l *leader) loadStats(ctx context.Context) {
	sctx, cancel := storeCtx(ctx)
	defer cancel()
	all, err := l.store.ListStats(sctx)
	if err != nil {
		l.metrics.storeErrors.WithLabelValues("list_stats").Inc()
		l.logger.Warn("cannot read job stats; overdue averages start afresh", "err", err)
		return
	}
	for name, st := range all {
		l.stats[name] = &st
		l.savedAvg[name] = st.AvgRuntime
	}
}

// checkOverdue raises the overdue alarm once per run: runtime > max(After, Ratio × average runtime).
func (l *leader) checkOverdue(f *flight, now time.Time) {
	if f.overdue {
		return
	}
	o := l.spec(f.exec).Overdue
	limit := time.Duration(o.After)
	if o.Ratio > 0 {
		if st, ok := l.stats[f.exec.Job]; ok && st.AvgRuntime > 0 {
			limit = max(limit, time.Duration(o.Ratio*float64(st.AvgRuntime)))
		}
	}
	if limit <= 0 || now.Sub(f.ackedAt) <= limit {
		return
	}
	f.overdue = true
	l.metrics.overdue.Inc()
	l.logger.Warn("execution overdue", "execution", f.exec.ID, "client", f.client, "running_for", now.Sub(f.ackedAt).Round(time.Second), "limit", limit)
	l.persist(job.Event{
		ID: job.EventID(f.exec.ID, job.EventOverdue, f.attempt), ExecID: f.exec.ID, Job: f.exec.Job, Kind: job.EventOverdue,
		Attempt: f.attempt, Run: f.run, Client: f.client, At: now.UTC(),
		Note: fmt.Sprintf("running for %s, limit %s", now.Sub(f.ackedAt).Round(time.Second), limit),
	})
}
