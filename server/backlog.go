package server

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/job"
)

// The backlog is what the leader holds in memory for executions that wait: for a client with a free
// slot (waiting), or for the job's earlier executions (queued). Under overload (more work due than the
// clients can take) it would grow without bound, so two rules keep it bounded and turn the excess into
// misfires that the job's policy decides, counted and visible, instead of a growing heap:
//
//   - by age: an execution this term fired that no client could take within the misfire threshold goes to
//     its job's misfire policy (misfireStale), as a time the leader could not fire would;
//   - by size: while the backlog holds limits.backlog executions or limits.backlog_mib of them, a job
//     that has an execution in it does not fire on schedule (fireDue holds it back). Its fire times are
//     then owed, and when room comes back owed hands the ones older than the misfire threshold to its
//     policy, like a stalled loop's. A job with nothing waiting still fires, so that executions nobody
//     can take (no eligible client) cannot stop the others; past the limit the backlog grows by at most
//     one execution per job. Manual triggers and run requests still go in: a person or an application
//     asked.

// backlogUse is what the backlog holds: recounted on every tick, added to as firings are recorded.
type backlogUse struct {
	count int
	bytes int64
}

// flightBytes estimates the memory a waiting flight holds: the struct and its maps, its execution's
// strings and params.
func flightBytes(f *flight) int64 {
	n := 640 + len(f.exec.ID) + len(f.exec.Job) + len(f.exec.Firing) + len(f.exec.Handler) + len(f.frame)
	for k, v := range f.exec.Params {
		n += 48 + len(k) + len(v)
	}
	return int64(n)
}

// add counts f in the backlog.
func (b *backlogUse) add(f *flight) {
	b.count++
	b.bytes += flightBytes(f)
}

// holdsWaiting reports whether the job has an execution in the backlog (waiting for a client or queued)
// or on its way to it (recording).
func (l *leader) holdsWaiting(jobName string) bool {
	for _, f := range l.openByJob[jobName] {
		if f.phase == phaseWaiting || f.phase == phaseQueued || f.phase == phaseRecording {
			return true
		}
	}
	return false
}

// backlogFull reports whether the backlog is at one of its limits: scheduled firings wait.
func (l *leader) backlogFull() bool {
	lim := l.cfg.Limits
	return l.backlog.count >= lim.Backlog || l.backlog.bytes >= int64(lim.BacklogMiB)<<20
}

// stale reports whether f is an execution this term fired on schedule that has waited for a client past
// the misfire threshold, and that nothing was ever started for: it never left this leader, or every client
// it went to refused it, and no store check is pending. Executions of an earlier term, retries and
// requested or manual runs are never stale: the first may have been sent, the others were asked for.
func (l *leader) stale(f *flight, now time.Time) bool {
	since := f.exec.ScheduledAt
	if f.readyAt.After(since) {
		since = f.readyAt
	}
	return f.phase == phaseWaiting && !f.check && f.stopping == "" && !f.mayHaveRun && f.exclude == "" && f.exec.Epoch == l.epoch && f.run == 1 &&
		onSchedule(f.exec.Trigger) && since.Before(now.Add(-l.cfg.MisfireThreshold))
}

// misfireStale applies each job's misfire policy to its stale executions and returns those that still
// wait for a client:
//   - skip: all are recorded skipped;
//   - fire-once: one stands for all: each is skipped once a later execution of its job is open;
//   - fire-all: the latest Limit of them wait; the older ones are skipped.
func (l *leader) misfireStale(stale []*flight, now time.Time) (keep []*flight) {
	byJob := map[string][]*flight{}
	for _, f := range stale {
		byJob[f.exec.Job] = append(byJob[f.exec.Job], f)
	}
	for name, fs := range byJob {
		slices.SortFunc(fs, func(a, b *flight) int {
			return cmp.Or(a.exec.ScheduledAt.Compare(b.exec.ScheduledAt), cmp.Compare(a.exec.ID, b.exec.ID))
		})
		spec := l.spec(fs[0].exec)
		policy := cmp.Or(spec.Misfire.Policy, job.MisfireFireOnce)
		var skip []*flight
		reason := ""
		switch policy {
		case job.MisfireSkip:
			skip, reason = fs, "misfire: no client could take it within the misfire threshold (policy skip)"
		case job.MisfireFireAll:
			limit := spec.Misfire.Limit
			if limit <= 0 {
				limit = job.DefaultFireAllLimit
			}
			// The latest limit firings wait, all their shards; fs is in time order.
			firings := 0
			for i := len(fs) - 1; i >= 0; i-- {
				if i == len(fs)-1 || job.FiringOf(fs[i].exec) != job.FiringOf(fs[i+1].exec) {
					firings++
				}
				if firings > limit {
					skip = append(skip, fs[i])
				} else {
					keep = append(keep, fs[i])
				}
			}
			reason = fmt.Sprintf("misfire: no client could take it within the misfire threshold, and %d later times of the job wait (fire-all limit)", limit)
		default: // fire-once
			latest := l.latestOpen(name)
			for _, f := range fs {
				if latest != nil && latest != f && latest.exec.ScheduledAt.After(f.exec.ScheduledAt) {
					skip = append(skip, f)
				} else {
					keep = append(keep, f)
				}
			}
			reason = "misfire: no client could take it within the misfire threshold; a later execution of the job stands for it (fire-once)"
		}
		if len(skip) == 0 {
			continue
		}
		st := l.jobStats(name)
		st.Misfires += int64(len(skip))
		st.LastMisfireAt, st.UpdatedAt = now.UTC(), now.UTC()
		l.statsDirty[name] = true
		l.metrics.misfires.WithLabelValues("waiting").Add(float64(len(skip)))
		l.staleSkipped += int64(len(skip))
		for _, f := range skip {
			l.skipOpen(f, reason)
		}
	}
	return keep
}

// latestOpen is the open execution of the job scheduled last, on schedule; nil if none.
func (l *leader) latestOpen(jobName string) *flight {
	var latest *flight
	for _, f := range l.openByJob[jobName] {
		if f.active() && onSchedule(f.exec.Trigger) && (latest == nil || f.exec.ScheduledAt.After(latest.exec.ScheduledAt)) {
			latest = f
		}
	}
	return latest
}

// backlogView is the summary the API's /backlog and `clover exec live` show.
func (l *leader) backlogView() api.Backlog {
	now := l.now()
	b := api.Backlog{
		Open: len(l.flights) + len(l.recording), ByStatus: map[string]int{}, Waiting: l.backlog.count, Bytes: l.backlog.bytes,
		Limit: l.cfg.Limits.Backlog, LimitMiB: l.cfg.Limits.BacklogMiB, Full: l.backlogFull(),
		Misfired: l.staleSkipped, InsertBatch: l.inserts.batch(),
	}
	for _, f := range l.flights {
		st, _ := f.status(now)
		b.ByStatus[st]++
	}
	if len(l.recording) > 0 {
		b.ByStatus[phaseRecording.String()] += len(l.recording)
	}
	return b
}
