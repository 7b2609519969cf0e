package server

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/store"
)

// Job writes through this server (the API's single and bulk routes) are made by createJobs, updateJobs
// and deleteJobs, so that each
//   - holds the write locks of its jobs (jobLocks) from before its store write until the leader loop has
//     been handed what was stored: the loop receives the definitions of a job in the order they were
//     stored, and on FerretDB, where the store checks a version by reading just before it writes, no two
//     writes of one job through this server interleave;
//   - reserves room under limits.jobs from a count kept in memory (jobRoom) rather than counting the jobs,
//     which reads all of them on FerretDB;
//   - hands the leader loop what it stored (leader.JobsWritten, JobsDeleted), so the loop reads nothing.
// A store write whose outcome is unknown (no answer) asks the loop to read the job again instead, and the
// room to be counted again.

// jobLocks serializes the writes of each job within this server: one of 256 mutexes, by a hash of the
// job's name. A writer of many jobs takes their mutexes in ascending order and holds none while it waits
// for the leader loop, so no two writers, nor a writer and the loop, wait on each other in a circle. The
// zero value is ready.
type jobLocks [256]sync.Mutex

// lock takes the locks of names and returns their release.
func (l *jobLocks) lock(names ...string) (unlock func()) {
	var seen [len(jobLocks{})]bool
	idx := make([]int, 0, min(len(names), len(seen)))
	for _, name := range names {
		h := fnv.New32a()
		h.Write([]byte(name))
		if i := int(h.Sum32() % uint32(len(seen))); !seen[i] {
			seen[i] = true
			idx = append(idx, i)
		}
	}
	slices.Sort(idx)
	for _, i := range idx {
		l[i].Lock()
	}
	return func() {
		for _, i := range slices.Backward(idx) {
			l[i].Unlock()
		}
	}
}

const (
	// recountEvery bounds how long the room ignores jobs written to the store behind the servers' backs.
	recountEvery = time.Minute
	// refuseOnCountWithin: a creation is refused on a count at most this old, so that jobs deleted
	// behind the servers' backs do not keep the cluster full.
	refuseOnCountWithin = 5 * time.Second
)

// jobRoom keeps the number of jobs for limits.jobs: counted once a term (and every recountEvery), then
// moved by this server's creations and deletions. A count reads every job on FerretDB: half a second at
// 3,000 jobs, per creation before.
//
// Concurrency: mu guards every field. A creation reserves room before its store write and settles after.
// A recount waits until no reservation is outstanding, since a count may or may not see an insert under
// way, and holds mu while it counts, so that no reservation is made meanwhile. The zero value is ready.
type jobRoom struct {
	mu      sync.Mutex
	n       int64         // jobs stored: the last count, plus this server's creations and deletions since
	held    int64         // room reserved by creations under way
	epoch   int64         // the term the count was made in
	counted time.Time     // when; zero: count before the next reservation
	drained chan struct{} // closed when held drops to 0, for a recount waiting for it
}

// reserve reserves room for up to want new jobs under limit and returns how many it reserved: fewer than
// want when the limit is reached. The caller settles them.
func (r *jobRoom) reserve(ctx context.Context, count func(context.Context) (int64, error), limit int, epoch int64, now time.Time, want int) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	stale := func() bool { return r.counted.IsZero() || r.epoch != epoch || now.Sub(r.counted) >= recountEvery }
	for stale() && r.held > 0 {
		if r.drained == nil {
			r.drained = make(chan struct{})
		}
		drained := r.drained
		r.mu.Unlock()
		select {
		case <-drained:
		case <-ctx.Done():
		}
		r.mu.Lock()
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
	}
	free := func() int64 { return int64(limit) - r.n - r.held }
	if stale() || (free() < int64(want) && r.held == 0 && now.Sub(r.counted) >= refuseOnCountWithin) {
		n, err := count(ctx)
		if err != nil {
			return 0, err
		}
		r.n, r.epoch, r.counted = n, epoch, now
	}
	got := max(0, min(free(), int64(want)))
	r.held += got
	return int(got), nil
}

// settle ends reservations: created of the reserved jobs were stored. unknown says that the outcome of
// some others is unknown (a write not answered), which the next reservation counts again.
func (r *jobRoom) settle(reserved, created int, unknown bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.held -= int64(reserved)
	r.n += int64(created)
	if unknown {
		r.counted = time.Time{}
	}
	if r.held == 0 && r.drained != nil {
		close(r.drained)
		r.drained = nil
	}
}

// deleted records deletions made; unknown as for settle.
func (r *jobRoom) deleted(n int, unknown bool) {
	r.settle(0, -n, unknown)
}

// unknownOutcome reports whether a store error leaves it unknown whether the write happened.
func unknownOutcome(err error) bool {
	for _, known := range []error{store.ErrExists, store.ErrNotFound, store.ErrConflict, store.ErrRefused, errTooManyJobs} {
		if errors.Is(err, known) {
			return false
		}
	}
	return err != nil && !store.IsRefusedWrite(err)
}

// createJobs stores new jobs, stamped and validated, and returns each one's error. Near limits.jobs the
// first ones get the room left, and the room of one that turns out to exist goes to the next. A job
// made under a deleted one's name goes on from its versions: specs[i].Version is set to the version
// stored.
func (s *Server) createJobs(ctx context.Context, specs []job.Spec) []error {
	errs := make([]error, len(specs))
	names := make([]string, len(specs))
	for i, spec := range specs {
		names[i] = spec.Name
	}
	defer s.jobLocks.lock(names...)()
	if err := s.continueVersions(ctx, specs); err != nil {
		return fill(errs, fmt.Errorf("read the deleted jobs of these names: %w", err))
	}
	for next := 0; next < len(specs); {
		room, err := s.room.reserve(ctx, s.store.CountJobs, s.cfg.Limits.Jobs, s.epoch(), s.now(), len(specs)-next)
		if err != nil {
			fill(errs[next:], fmt.Errorf("count the jobs for limits.jobs: %w", err))
			break
		}
		if room == 0 {
			for i := next; i < len(specs); i++ {
				errs[i] = fmt.Errorf("job %s: %w (%d)", specs[i].Name, errTooManyJobs, s.cfg.Limits.Jobs)
			}
			break
		}
		batch := specs[next : next+room]
		if len(specs) == 1 {
			// A single creation (POST /api/v1/jobs) is inserted together with concurrent ones.
			copy(errs[next:], s.creates.write(ctx, s.store.CreateJobs, batch))
		} else {
			copy(errs[next:], s.store.CreateJobs(ctx, batch))
		}
		var (
			written []job.Spec
			unknown []string
		)
		for i, spec := range batch {
			switch err := errs[next+i]; {
			case err == nil:
				written = append(written, store.AsStored(spec))
			case unknownOutcome(err):
				unknown = append(unknown, spec.Name)
			}
		}
		s.room.settle(room, len(written), len(unknown) > 0)
		s.publish(written, nil, unknown)
		s.recordRevisions(ctx, store.RevisionCreated, written)
		next += room
	}
	return errs
}

// updateJobs changes the jobs of names as change says (i: the job's position in names), each conditional
// on the version it reads, and returns each as stored.
func (s *Server) updateJobs(ctx context.Context, names []string, change func(i int, cur job.Spec) (job.Spec, error)) ([]job.Spec, []error) {
	out, errs := make([]job.Spec, len(names)), make([]error, len(names))
	if len(names) == 1 || s.store.UpdatesOneByOne() {
		// A job at a time, a few at once, each under its own lock: on FerretDB a bulk update takes
		// seconds, too long to hold the locks of every job it writes.
		var wg sync.WaitGroup
		slots := make(chan struct{}, 4)
		for i, name := range names {
			wg.Go(func() {
				slots <- struct{}{}
				defer func() { <-slots }()
				defer s.jobLocks.lock(name)()
				out[i], errs[i] = s.store.UpdateJob(ctx, name, func(cur job.Spec) (job.Spec, error) { return change(i, cur) })
				s.publishUpdates(names[i:i+1], out[i:i+1], errs[i:i+1])
				if errs[i] == nil {
					s.recordRevisions(ctx, store.RevisionUpdated, out[i:i+1])
				}
			})
		}
		wg.Wait()
		return out, errs
	}
	defer s.jobLocks.lock(names...)()
	out, errs = s.store.UpdateJobs(ctx, names, change)
	s.publishUpdates(names, out, errs)
	var changed []job.Spec
	for i, err := range errs {
		if err == nil {
			changed = append(changed, out[i])
		}
	}
	s.recordRevisions(ctx, store.RevisionUpdated, changed)
	return out, errs
}

// publishUpdates hands the leader loop the outcome of updates.
func (s *Server) publishUpdates(names []string, out []job.Spec, errs []error) {
	var (
		written []job.Spec
		unknown []string
	)
	for i, err := range errs {
		switch {
		case err == nil:
			written = append(written, out[i])
		case unknownOutcome(err):
			unknown = append(unknown, names[i])
		}
	}
	s.publish(written, nil, unknown)
}

// deleteJobs deletes the jobs of names, each at version expect[i] unless it is 0 (expect may be nil), and
// returns each as it was.
func (s *Server) deleteJobs(ctx context.Context, names []string, expect []int64) ([]job.Spec, []error) {
	defer s.jobLocks.lock(names...)()
	var (
		out  []job.Spec
		errs []error
	)
	if len(names) == 1 {
		var v int64
		if len(expect) > 0 {
			v = expect[0]
		}
		spec, err := s.store.DeleteJobAt(ctx, names[0], v)
		out, errs = []job.Spec{spec}, []error{err}
	} else {
		out, errs = s.store.DeleteJobs(ctx, names, expect)
	}
	var (
		deleted, unknown []string
		buried           []job.Spec
	)
	for i, err := range errs {
		switch {
		case err == nil:
			deleted = append(deleted, names[i])
			buried = append(buried, out[i])
		case unknownOutcome(err):
			unknown = append(unknown, names[i])
		}
	}
	s.room.deleted(len(deleted), len(unknown) > 0)
	s.publish(nil, deleted, unknown)
	s.buryJobs(ctx, buried)
	return out, errs
}

// publish hands the leader loop, if this server leads, what was stored; unknown are jobs it must read
// again, their write not having been answered.
func (s *Server) publish(written []job.Spec, deleted, unknown []string) {
	l := s.lead.Load()
	if l == nil {
		return // a term that starts after the write reads it; one that ended needs nothing
	}
	if len(written) > 0 {
		l.JobsWritten(written...)
	}
	if len(deleted) > 0 {
		l.JobsDeleted(deleted...)
	}
	for _, name := range unknown {
		l.JobChanged(name)
	}
}

// epoch is the term this server leads, 0 when it does not.
func (s *Server) epoch() int64 {
	if l := s.lead.Load(); l != nil {
		return l.epoch
	}
	return 0
}

func fill(errs []error, err error) []error {
	for i := range errs {
		errs[i] = err
	}
	return errs
}
