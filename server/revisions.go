package server

import (
	"context"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/store"
)

// Every change to a job's definition is recorded as a revision (see store.Revision), by the code that
// makes it: createJobs, updateJobs and deleteJobs (the API, the console, `config apply`, rollbacks and
// restores) and the leader's declarations (clients). It is written after the change, under the job's
// lock: a revision whose write fails is missing from the history (logged at ERROR and counted), the change
// stands. Past history.revisions_keep, each new revision prunes the one that falls out of the window,
// unless it is tagged.

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

// recordRevisions records the revisions that specs (as stored, or for a deletion as they were with the
// deletion's version) make, as action unless ctx's note names another.
func (s *Server) recordRevisions(ctx context.Context, action string, specs []job.Spec) {
	if len(specs) == 0 {
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
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err := s.store.InsertRevisions(wctx, revs)
	if err != nil {
		err = s.store.InsertRevisions(wctx, revs) // once more: a recorded one is not recorded twice
	}
	if err != nil {
		s.metrics.revisionsFailed.Add(float64(len(revs)))
		s.logger.Error("job changes made without their revisions: the history misses them", "jobs", len(revs), "first", revs[0].Job, "err", err)
		return
	}
	keep := int64(s.cfg.History.RevisionsKeep)
	if keep <= 0 {
		return // not configured (a test's server): keep all
	}
	for _, r := range revs {
		if old := r.Version - keep; old >= 1 {
			if _, err := s.store.PruneRevision(wctx, r.Job, old); err != nil {
				s.logger.Warn("an old revision was not pruned", "job", r.Job, "version", old, "err", err)
			}
		}
	}
}

// continueVersions sets the version of each new job whose name a deleted job had to follow the deleted
// one's: its history goes on, and its revisions never take the old ones' keys.
func (s *Server) continueVersions(ctx context.Context, specs []job.Spec) error {
	names := make([]string, len(specs))
	for i, spec := range specs {
		names[i] = spec.Name
	}
	dead, err := s.store.Tombstones(ctx, names)
	if err != nil {
		return err
	}
	for i := range specs {
		if t, ok := dead[specs[i].Name]; ok && specs[i].Version <= t.Version {
			specs[i].Version = t.Version + 1
		}
	}
	return nil
}

// buryJobs records the deletion of jobs (as they were): their revisions, and their tombstones.
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
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.store.PutTombstones(wctx, ts); err != nil {
		s.logger.Error("deleted jobs without their tombstones: a job made again under one of their names starts its versions again", "first", ts[0].Job, "err", err)
	}
	s.recordRevisions(ctx, store.RevisionDeleted, revs)
}
