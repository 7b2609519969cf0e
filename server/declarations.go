package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/schedule"
	"github.com/clover-sched/clover/internal/store"
)

// applyDeclarations records the jobs that clients declare in their registration. A declaration creates the
// job if it does not exist, and updates it if the stored job was declared by the same client, or by one that
// has left. A job created or edited through the API is never overwritten by a client, and two live clients
// that declare the same job differently do not take turns rewriting it: the first one keeps it.
func (l *leader) applyDeclarations(ctx context.Context) {
	members := l.members()
	for _, m := range members {
		if len(m.Declared) == 0 {
			continue
		}
		fp := fingerprintBytes(m.Declared)
		if l.declared[m.ID] == fp {
			continue
		}
		var specs []job.Spec
		if err := json.Unmarshal(m.Declared, &specs); err != nil {
			l.logger.Warn("client declared jobs that do not decode; ignored", "client", m.ID, "err", err)
			l.declared[m.ID] = fp
			continue
		}
		if len(specs) > l.cfg.Limits.JobsPerClient {
			l.logger.Error("client declares more jobs than limits.jobs_per_client; none applied", "client", m.ID,
				"declared", len(specs), "limit", l.cfg.Limits.JobsPerClient)
			l.declared[m.ID] = fp
			continue
		}
		ok := true
		for _, spec := range specs {
			if err := l.applyDeclaration(ctx, m.ID, spec); err != nil {
				l.logger.Warn("declared job not applied", "client", m.ID, "job", spec.Name, "err", err)
				ok = ok && !isTransient(err)
			}
		}
		if ok {
			l.declared[m.ID] = fp
		}
	}
	for _, m := range members {
		l.applyDeclaredBatches(ctx, m) // after the jobs, which they run
	}
	for id := range l.declared {
		if !l.live[id] {
			delete(l.declared, id)
		}
	}
	for id := range l.declaredBatches {
		if !l.live[id] {
			delete(l.declaredBatches, id)
		}
	}
}

// errTooManyJobs refuses a new job past limits.jobs.
var errTooManyJobs = errors.New("the cluster has limits.jobs jobs already")

// roomForJob reserves room for one new job under limits.jobs, or refuses it; the caller settles the
// reservation (created: whether the job was stored).
func (l *leader) roomForJob(ctx context.Context) (settle func(created bool), err error) {
	if l.room == nil {
		return func(bool) {}, checkJobRoom(ctx, l.store, l.cfg.Limits.Jobs)
	}
	got, err := l.room.reserve(ctx, l.store.CountJobs, l.cfg.Limits.Jobs, l.epoch, l.now(), 1)
	if err != nil {
		return nil, err
	}
	if got == 0 {
		return nil, fmt.Errorf("%w (%d)", errTooManyJobs, l.cfg.Limits.Jobs)
	}
	return func(created bool) {
		n := 0
		if created {
			n = 1
		}
		l.room.settle(1, n, false)
	}, nil
}

func checkJobRoom(ctx context.Context, st interface {
	CountJobs(context.Context) (int64, error)
}, limit int) error {
	n, err := st.CountJobs(ctx)
	if err != nil {
		return err
	}
	if n >= int64(limit) {
		return fmt.Errorf("%w (%d)", errTooManyJobs, limit)
	}
	return nil
}

func isTransient(err error) bool {
	return !errors.Is(err, errDeclarationRefused)
}

var errDeclarationRefused = errors.New("declaration refused")

func (l *leader) applyDeclaration(ctx context.Context, clientID string, spec job.Spec) error {
	if err := spec.Validate(); err != nil {
		return errors.Join(errDeclarationRefused, err)
	}
	if _, err := schedule.Parse(spec.Schedule, spec.TimeZone); err != nil {
		return errors.Join(errDeclarationRefused, err)
	}
	now := l.now().UTC()
	sctx, cancel := storeCtx(ctx)
	defer cancel()
	if l.locks != nil {
		// Ordered with the API's writes of the job (see jobChanges).
		defer l.locks.lock(spec.Name)()
	}
	cur, err := l.store.GetJob(sctx, spec.Name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		settle, err := l.roomForJob(sctx)
		if err != nil {
			return errors.Join(errDeclarationRefused, err)
		}
		spec.Source, spec.Version = "client:"+clientID, 1
		spec.CreatedAt, spec.UpdatedAt, spec.ActiveSince = now, now, now
		spec.Paused = false
		if l.revisions != nil {
			specs := []job.Spec{spec}
			if err := l.revisions.continueVersions(sctx, specs); err != nil {
				settle(false)
				return err
			}
			spec = specs[0]
		}
		err = l.store.CreateJob(sctx, spec)
		settle(err == nil)
		switch {
		case errors.Is(err, store.ErrExists):
			return nil // created meanwhile by someone else, who tells the loop
		case err != nil:
			return err
		}
	case err != nil:
		return err
	case !strings.HasPrefix(cur.Source, "client:"):
		return nil // owned by the API
	case fingerprint(cur) == fingerprint(spec):
		return nil
	case cur.Source != "client:"+clientID && l.live[strings.TrimPrefix(cur.Source, "client:")]:
		l.logger.Warn("two clients declare the same job differently; keeping the first", "job", spec.Name,
			"kept", cur.Source, "ignored", "client:"+clientID)
		return nil
	default:
		spec.Source, spec.Version = "client:"+clientID, cur.Version+1
		spec.CreatedAt, spec.UpdatedAt, spec.ActiveSince = cur.CreatedAt, now, cur.ActiveSince
		if spec.Schedule != cur.Schedule || spec.TimeZone != cur.TimeZone {
			spec.ActiveSince = now // the new schedule owes nothing from before it existed
		}
		spec.Paused, spec.PausedAt = cur.Paused, cur.PausedAt
		if err := l.store.ReplaceJob(sctx, spec, cur.Version); err != nil {
			return err
		}
	}
	// Installed now, as the loop's own write, after the API's writes still pending (of this job too: they
	// were stored before it, its lock held).
	l.changes.put([]job.Spec{store.AsStored(spec)}, nil)
	l.applyJobChanges()
	if l.revisions != nil {
		l.revisions.recordRevisions(sctx, store.RevisionDeclared, []job.Spec{store.AsStored(spec)})
	}
	return nil
}

// fingerprint identifies what a declaration says, ignoring bookkeeping fields.
func fingerprint(s job.Spec) string {
	b, _ := json.Marshal(struct {
		Schedule, TimeZone, Handler string
		Params                      map[string]string
		Timeout                     job.Duration
		Contacts                    []string
		Mode                        job.Mode
		Misfire                     job.Misfire
		Overlap                     string
		Routing                     job.Routing
		Retry                       job.Retry
		Overdue                     job.Overdue
		Rerunnable                  bool
		Overridable                 []string `json:",omitempty"` // omitted when empty: older fingerprints hold
	}{s.Schedule, s.TimeZone, s.Handler, s.Params, s.Timeout, s.Contacts,
		s.Mode, s.Misfire, s.Overlap, s.Routing, s.Retry, s.Overdue, s.Rerunnable, s.Overridable})
	return fingerprintBytes(b)
}

func fingerprintBytes(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}
