package server

import (
	"container/heap"
	"context"
	"sync"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/schedule"
)

type entry struct {
	spec   job.Spec
	sched  *schedule.Schedule
	next   time.Time
	gen    int
	loaded time.Time // when this definition was installed
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

// backlogRecheck is how long firings wait while the backlog is full: about a tick, which recounts it.
const backlogRecheck = 250 * time.Millisecond

func (l *leader) resetTimer(t *time.Timer) {
	for len(l.queue) > 0 {
		it := l.queue[0]
		if e := l.jobs[it.name]; e == nil || e.gen != it.gen {
			heap.Pop(&l.queue)
			continue
		}
		wait := it.at.Sub(l.now())
		if l.backlogFull() || l.pipe.busy() || len(l.unsaved) > 0 {
			// Due or not, nothing fires until a tick has found room (see fireDue), or an insert is
			// answered (the loop resets the timer after every note).
			wait = max(wait, backlogRecheck)
		}
		t.Reset(max(wait, 0))
		return
	}
	t.Reset(time.Hour)
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

func (q *fireQueue) Push(x any) { *q = append(*q, x.(queued)) }

func (q *fireQueue) Pop() any {
	old := *q
	it := old[len(old)-1]
	*q = old[:len(old)-1]
	return it
}

// jobChanges carries the job definitions written through this server (the API, client declarations) to
// the loop, so that the loop installs what was stored without reading the store: one read per change cost
// the loop a round trip each, and on FerretDB a round trip that grows with the number of jobs.
//
// Concurrency: writers put under mu; the loop takes everything pending in one turn when wake holds a
// token. Writers put while holding the jobs' write locks (jobLocks), so the last definition put for a name
// is the latest stored; a name written twice before the loop takes it is installed once, as last written.
// Nothing is dropped when the loop is busy (the map holds one entry per job at most), unlike a note.
type jobChanges struct {
	mu      sync.Mutex
	pending map[string]*job.Spec // nil: deleted
	wake    chan struct{}        // holds a token while pending may be non-empty
}

func newJobChanges() *jobChanges {
	return &jobChanges{pending: map[string]*job.Spec{}, wake: make(chan struct{}, 1)}
}

func (c *jobChanges) put(written []job.Spec, deleted []string) {
	c.mu.Lock()
	for _, spec := range written {
		c.pending[spec.Name] = &spec
	}
	for _, name := range deleted {
		c.pending[name] = nil
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default: // a token is there already
	}
}

func (c *jobChanges) take() map[string]*job.Spec {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.pending
	c.pending = make(map[string]*job.Spec, len(p))
	return p
}

// applyJobChanges installs every change put since the last turn.
func (l *leader) applyJobChanges() {
	for name, spec := range l.changes.take() {
		if spec == nil {
			l.removeJob(name)
		} else {
			l.setJob(*spec)
		}
	}
}
