package server

import (
	"container/heap"
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/clover-sched/clover/internal/job"
)

// unsavedLookup bounds the read that looks for firings whose insert failed.
const unsavedLookup = time.Second

// maxOwed bounds the firings one job can owe at once within the misfire threshold.
const maxOwed = 1000

// maxMissedCount bounds how many missed fire times are counted one by one for the record.
const maxMissedCount = 100_000

// owed returns what job e owes for its fire times in (from, now]: one firing per time within the misfire
// threshold, and for the times older than that what the job's misfire policy says.
func (l *leader) owed(e *entry, from, now time.Time) []firing {
	var out []firing
	cut := now.Add(-l.cfg.MisfireThreshold)
	if from.Before(cut) {
		out = append(out, l.misfired(e, from, cut)...)
		from = cut
	}
	times, truncated := e.sched.Between(from, now, maxOwed)
	if truncated {
		l.logger.Warn("job owes more firings than can be made at once; the oldest are dropped", "job", e.spec.Name, "kept", maxOwed)
		times = times[len(times)-maxOwed:]
	}
	for _, t := range times {
		out = append(out, firing{spec: e.spec, at: t, trigger: job.TriggerSchedule})
	}
	return out
}

// misfired applies the job's misfire policy to its fire times in (from, cut]:
//   - fire-once: one catch-up run, at the latest missed time, standing in for all of them;
//   - skip: nothing runs; one execution at the latest missed time is recorded as skipped;
//   - fire-all: a catch-up run for each missed time, the latest Limit of them, oldest first.
//
// Every firing made here carries in Missed how many other times it stands for.
func (l *leader) misfired(e *entry, from, cut time.Time) []firing {
	latest := e.sched.Latest(from, cut)
	if latest.IsZero() {
		return nil
	}
	all, _ := e.sched.Between(from, cut, maxMissedCount)
	n := max(len(all), 1)
	policy := e.spec.Misfire.Policy
	if policy == "" {
		policy = job.MisfireFireOnce
	}
	l.metrics.misfires.WithLabelValues(policy).Add(float64(n))
	st := l.jobStats(e.spec.Name)
	st.Misfires += int64(n)
	st.LastMisfireAt, st.UpdatedAt = l.now().UTC(), l.now().UTC()
	l.statsDirty[e.spec.Name] = true
	switch policy {
	case job.MisfireSkip:
		return []firing{{spec: e.spec, at: latest, trigger: job.TriggerCatchUp, missed: n - 1, catchUp: true,
			skip: fmt.Sprintf("misfire: %d fire time(s) missed, policy skip", n)}}
	case job.MisfireFireAll:
		limit := e.spec.Misfire.Limit
		if limit <= 0 {
			limit = job.DefaultFireAllLimit
		}
		var times []time.Time
		for t := latest; !t.IsZero() && len(times) < limit; t = e.sched.Latest(from, t.Add(-time.Nanosecond)) {
			times = append(times, t)
		}
		slices.Reverse(times)
		out := make([]firing, len(times))
		for i, t := range times {
			out[i] = firing{spec: e.spec, at: t, trigger: job.TriggerCatchUp, catchUp: true}
		}
		out[0].missed = n - len(times)
		return out
	default:
		return []firing{{spec: e.spec, at: latest, trigger: job.TriggerCatchUp, missed: n - 1, catchUp: true}}
	}
}

// markCatchUp flags firings as catch-up firings.
func markCatchUp(firings []firing) []firing {
	for i := range firings {
		firings[i].catchUp = true
	}
	return firings
}

// catchUp fires what came due while no leader was acting: from each job's last recorded firing (read by
// takeOver from the open set) or its ActiveSince, to now, as owed says. The (job, scheduled time) key makes
// every firing that the previous leader had made a no-op.
func (l *leader) catchUp(ctx context.Context, now time.Time) error {
	names := slices.Sorted(maps.Keys(l.jobs))
	var firings []firing
	for _, name := range names {
		e := l.jobs[name]
		if e.spec.Paused || e.spec.Mode == job.ModeLocal {
			continue
		}
		firings = append(firings, markCatchUp(l.owed(e, l.owedSince(e.spec), now))...)
	}
	return l.fire(ctx, firings, now)
}

// owedSince is the instant after which a job owes firings: its last recorded firing, or, if none is
// known, when it was last paused or became active.
func (l *leader) owedSince(spec job.Spec) time.Time {
	from := spec.ActiveSince.Add(-time.Nanosecond)
	if lf, ok := l.lastFired[spec.Name]; ok {
		if lf.After(from) {
			from = lf
		}
	} else if spec.PausedAt.After(from) {
		from = spec.PausedAt
	}
	return from
}

// retryUnsaved fires again the firings the store refused. After an outage longer than the misfire
// threshold, the times past it are handed to each job's misfire policy, so that a long outage does not end
// in a storm (a shorter one retries them as they were: late, not missed). A firing the store may have
// recorded although its insert failed is first looked for, and one found is fired again as it was, so
// that the insert finds it recorded and the loop takes it on (a catch-up made in its stead would leave it
// pending in the store, untracked, for the next term to run).
func (l *leader) retryUnsaved(ctx context.Context, now time.Time) error {
	if len(l.unsaved) == 0 || !l.pipe.idle() || now.Before(l.unsavedRetryAt) {
		// Retried once nothing is on its way to the store (firings of a failed insert's generation may
		// still come back, and the retry must not overtake them), and not before the back-off.
		return nil
	}
	var ask []string
	for _, fr := range l.unsaved {
		ask = append(ask, fr.maybe...)
	}
	landed := map[string]bool{}
	if len(ask) > 0 {
		// On the loop, with a short deadline: a store that cannot answer this cannot take the retry either.
		sctx, cancel := context.WithTimeout(ctx, unsavedLookup)
		execs, err := l.store.OpenByID(sctx, ask)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				l.backOffUnsaved(now)
				l.logger.Warn("cannot read whether failed inserts were recorded; retrying later", "executions", len(ask), "err", err)
			}
			return nil
		}
		for _, e := range execs {
			landed[e.ID] = true
		}
	}
	thr := l.cfg.MisfireThreshold
	cut := now.Add(-thr)
	oldest := map[string]time.Time{} // job -> just before its oldest misfired time
	missed := map[string]int{}       // job -> the times its misfired catch-up firings stood for
	hasLanded := map[string]bool{}   // jobs with a firing found recorded: none of theirs is folded
	for _, fr := range l.unsaved {
		if slices.ContainsFunc(fr.maybe, func(id string) bool { return landed[id] }) {
			hasLanded[fr.spec.Name] = true
		}
	}
	var keep []firing
	for _, fr := range l.unsaved {
		// A time at the cut itself is misfired's, as in owed: kept as well, it was fired twice.
		if hasLanded[fr.spec.Name] || !onSchedule(fr.trigger) || fr.at.After(cut) || now.Sub(fr.failedAt) <= thr {
			keep = append(keep, fr)
			continue
		}
		missed[fr.spec.Name] += fr.missed
		if t, ok := oldest[fr.spec.Name]; !ok || fr.at.Before(t) {
			oldest[fr.spec.Name] = fr.at.Add(-time.Nanosecond)
		}
	}
	for name, from := range oldest {
		if e, ok := l.jobs[name]; ok {
			// The times fireDue held back while these waited are folded with them, and the job's place in
			// the fire queue moves past the cut: one catch-up for the outage, every time counted once.
			if !e.next.IsZero() && !e.next.After(cut) {
				e.gen++
				e.next = e.sched.Next(cut)
				if !e.next.IsZero() {
					heap.Push(&l.queue, queued{name: name, at: e.next, gen: e.gen})
				}
			}
			frs := l.misfired(e, from, cut)
			if len(frs) > 0 {
				frs[0].missed += missed[name]
			}
			keep = append(keep, frs...)
		}
	}
	l.unsaved = nil
	return l.fire(ctx, keep, now)
}
