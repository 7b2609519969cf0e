package server

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/store"
)

// Every change to a job's definition is recorded as a revision (see store.Revision), by the code that
// makes it: createJobs, updateJobs and deleteJobs (the API, the console, `config apply`, rollbacks and
// restores) and the leader's declarations (clients). It is written after the change (an API request's
// beside its audit entry, see withRevisionWrites), before the caller is answered: a revision whose write
// fails is missing from the history (logged at ERROR and counted), the change stands. Past history.revisions_keep, each new revision's predecessor by that many falls out of the
// window: it is deleted in the background unless it is tagged.

// revisionNote is what a request says of the revisions its changes make: why (an action other than the
// write's own, a rollback's source) and the caller's message.
type revisionNote struct {
	action  string
	message string
	from    int64
}

type revisionNoteKey struct{}

// withRevision puts n in ctx for the job writes made under it.
func withRevision(ctx context.Context, n revisionNote) context.Context {
	return context.WithValue(ctx, revisionNoteKey{}, n)
}

// maxRevisionMessage bounds a change's message, in bytes.
const maxRevisionMessage = 1000

// revisionWrites are the revision writes a request started and must see end before it is answered
// (see withRevisionWrites).
type revisionWrites struct{ wg sync.WaitGroup }

type revisionWritesKey struct{}

// withRevisionWrites lets the job writes made under ctx record their revisions while the request goes
// on: the audited routes write their audit entry meanwhile, and wait returns once both are stored, before
// the answer is sent. On FerretDB each insert is a commit of its own; one after the other, the two were a
// third of a job creation's time.
func withRevisionWrites(ctx context.Context) (_ context.Context, wait func()) {
	w := &revisionWrites{}
	return context.WithValue(ctx, revisionWritesKey{}, w), w.wg.Wait
}

// recordRevisions records the revisions that specs (as stored, or for a deletion as they were with the
// deletion's version) make, as action unless ctx's note names another. Concurrent callers' revisions go
// in one insert (groupCommit), tried twice, each with its own deadline. Under withRevisionWrites it
// returns at once and the request waits for the write before it is answered; the job's lock may be
// released before the revision is stored, which changes nothing: a revision's key is its version, and
// no two writes make one version.
func (s *Server) recordRevisions(ctx context.Context, action string, specs []job.Spec) {
	if len(specs) == 0 {
		return
	}
	if w, ok := ctx.Value(revisionWritesKey{}).(*revisionWrites); ok {
		ctx = context.WithValue(ctx, revisionWritesKey{}, nil)
		w.wg.Go(func() { s.recordRevisions(ctx, action, specs) })
		return
	}
	n, _ := ctx.Value(revisionNoteKey{}).(revisionNote)
	if n.action != "" && action != store.RevisionDeleted {
		action = n.action
	}
	c := callerOf(ctx)
	who, via := c.Name, c.via()
	revs := make([]store.Revision, len(specs))
	for i, spec := range specs {
		w := who
		if action == store.RevisionDeclared || w == "" {
			w = spec.Source // a client's declaration, or a change made with no caller (insecure mode)
		}
		revs[i] = store.Revision{Job: spec.Name, Version: spec.Version, Action: action, Spec: spec, At: s.now(),
			Who: w, Via: via, Message: n.message, From: n.from}
	}
	var errs []error
	for attempt := range 2 {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), groupWriteTimeout)
		errs = s.revisionLog.write(wctx, s.store.InsertRevisions, revs)
		cancel()
		if attempt == 0 && slices.ContainsFunc(errs, func(err error) bool { return err != nil && !errors.Is(err, store.ErrRevisionTaken) }) {
			continue // once more: one recorded meanwhile is not recorded twice
		}
		break
	}
	for i, err := range errs {
		r := revs[i]
		switch {
		case err != nil:
			if s.metrics != nil {
				s.metrics.revisionsFailed.Inc()
			}
			s.logger.Error("a job change made without its revision: the history misses it", "job", r.Job, "version", r.Version, "action", r.Action, "err", err)
		case s.cfg.History.RevisionsKeep > 0 && r.Version > int64(s.cfg.History.RevisionsKeep):
			s.prunes.add(store.RevisionKey{Job: r.Job, Version: r.Version - int64(s.cfg.History.RevisionsKeep)}, s)
		}
	}
}

// revisionPrunes are the revisions that fell out of their jobs' windows, deleted in the background: one
// delete for all that are pending when it starts, so that under a run of changes the deletes come in
// batches (on FerretDB every delete reads the whole collection: one a change would make each change pay
// for every job's history). A server that stops forgets its pending prunes: those revisions stay, which
// costs room, not correctness.
type revisionPrunes struct {
	mu      sync.Mutex
	pending []store.RevisionKey
	running bool
}

// pruneBatch bounds one delete.
const pruneBatch = 500

func (p *revisionPrunes) add(k store.RevisionKey, s *Server) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pending = append(p.pending, k)
	if p.running {
		return
	}
	p.running = true
	go p.run(s)
}

func (p *revisionPrunes) run(s *Server) {
	for {
		p.mu.Lock()
		batch := p.pending
		p.pending = nil
		if len(batch) == 0 {
			p.running = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		for chunk := range slices.Chunk(batch, pruneBatch) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			_, err := s.store.PruneRevisions(ctx, chunk)
			cancel()
			if err != nil {
				s.logger.Warn("old revisions not pruned", "revisions", len(chunk), "err", err)
			}
		}
	}
}

// idle reports whether nothing is pending or being pruned.
func (p *revisionPrunes) idle() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.running && len(p.pending) == 0
}

// tombstoneCache is the deleted jobs' last versions as this server knows them in its term: read once a
// term, kept up by its deletions, so that a creation reads nothing to learn whether its name was a
// deleted job's (every job write is made by the leader).
type tombstoneCache struct {
	mu     sync.Mutex
	epoch  int64
	loaded bool
	byName map[string]int64
}

// continueVersions sets the version of each new job whose name a deleted job had to follow the deleted
// one's: its history goes on, and its revisions never take the old ones' keys.
func (s *Server) continueVersions(ctx context.Context, specs []job.Spec) error {
	t := &s.tombs
	t.mu.Lock()
	defer t.mu.Unlock()
	if epoch := s.epoch(); !t.loaded || t.epoch != epoch {
		all, err := s.store.AllTombstones(ctx)
		if err != nil {
			return err
		}
		t.byName, t.epoch, t.loaded = map[string]int64{}, epoch, true
		for name, ts := range all {
			t.byName[name] = ts.Version
		}
	}
	for i := range specs {
		if v, ok := t.byName[specs[i].Name]; ok && specs[i].Version <= v {
			specs[i].Version = v + 1
		}
	}
	return nil
}

// buryJobs records the deletion of jobs (as they were): their tombstones, then their revisions.
func (s *Server) buryJobs(ctx context.Context, deleted []job.Spec) {
	if len(deleted) == 0 {
		return
	}
	revs := make([]job.Spec, len(deleted))
	ts := make([]store.Tombstone, len(deleted))
	for i, spec := range deleted {
		spec.Version++
		revs[i] = spec
		ts[i] = store.Tombstone{Job: spec.Name, Version: spec.Version, At: s.now()}
	}
	// Concurrent deletions share one insert: on FerretDB each is a commit on the jobs' database, where the
	// deletions themselves are.
	var err error
	for range 2 {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), groupWriteTimeout)
		err = errors.Join(s.tombstoneLog.write(wctx, s.store.PutTombstones, ts)...)
		cancel()
		if err == nil {
			break
		}
	}
	if err != nil {
		s.logger.Error("deleted jobs without their tombstones: a job made again under one of their names starts its versions again, and its first revisions are refused", "first", ts[0].Job, "err", err)
	}
	s.tombs.mu.Lock()
	if s.tombs.byName != nil {
		for _, t := range ts {
			s.tombs.byName[t.Job] = t.Version
		}
	}
	s.tombs.mu.Unlock()
	s.recordRevisions(ctx, store.RevisionDeleted, revs)
}
