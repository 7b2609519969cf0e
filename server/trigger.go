package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/clover-sched/clover/internal/job"
)

// errOverlap refuses a manual trigger that the job's overlap policy forbids.
var errOverlap = errors.New("the job has an open execution and its overlap policy is forbid")

// errLocalMode refuses to fire a job in local mode: only its clients fire it.
var errLocalMode = errors.New("runs in local mode: its client fires it")

// trigger fires a job now, outside its schedule. The trigger's parameters add to the job's, and override
// those it lists as overridable (job.Spec.MergeParams).
// The job's overlap policy holds for it too: under forbid it is refused while an execution is open.
func (l *leader) trigger(ctx context.Context, name string, params map[string]string) (string, error) {
	spec, err := l.manualSpec(ctx, name)
	if err != nil {
		return "", err
	}
	if (spec.Overlap == "" || spec.Overlap == job.OverlapForbid) && l.openCount(name) > 0 {
		return "", fmt.Errorf("job %s: %w", name, errOverlap)
	}
	merged, err := spec.MergeParams(params)
	if err != nil {
		return "", err
	}
	return l.fireNow(ctx, firing{spec: spec, at: l.now(), trigger: job.TriggerManual, params: merged})
}

// manualSpec is the definition of a job fired outside its schedule, if this term may fire it.
func (l *leader) manualSpec(ctx context.Context, name string) (job.Spec, error) {
	var spec job.Spec
	if e, ok := l.jobs[name]; ok {
		spec = e.spec
	} else {
		sctx, cancel := storeCtx(ctx)
		s, err := l.store.GetJob(sctx, name)
		cancel()
		if err != nil {
			return job.Spec{}, err
		}
		spec = s
	}
	if spec.Mode == job.ModeLocal {
		return job.Spec{}, fmt.Errorf("job %s: %w", name, errLocalMode)
	}
	if !l.confirmed() {
		return job.Spec{}, errUnconfirmed
	}
	return spec, nil
}

// fireNow records and dispatches one firing made outside the schedule, under the job's overlap policy,
// and returns its id (a sharded firing's executions are id~0, id~1...).
func (l *leader) fireNow(ctx context.Context, fr firing) (string, error) {
	now := l.now()
	plan, stops := l.plan([]firing{fr})
	if len(plan) == 0 { // its id is on its way to the store, or followed (see plan): nothing new to record
		if fr.id != "" {
			return fr.id, nil
		}
		return "", fmt.Errorf("job %s: the firing at %s is being recorded already", fr.spec.Name, fr.at.UTC().Format(time.RFC3339Nano))
	}
	id := plan[0].exec.Firing // sharded: its executions are id~0, id~1...
	fresh, err := l.record(ctx, plan, now)
	if err != nil {
		// The insert may have landed even so: adopt it if it did, so it is not left stranded.
		planOf := map[string]planned{}
		for _, p := range plan {
			planOf[p.exec.ID] = p
		}
		l.adopt(ctx, []string{plan[0].exec.ID}, planOf, nil, now)
		if _, ok := l.flights[plan[0].exec.ID]; !ok {
			return "", fmt.Errorf("record %s execution: %w", fr.trigger, err)
		}
		fresh = map[string]bool{plan[0].exec.ID: true}
	}
	if !fresh[plan[0].exec.ID] {
		return id, nil // recorded before: it replaces nothing now
	}
	for fid, reason := range stops {
		l.stopOpen(fid, reason)
	}
	return id, nil
}
