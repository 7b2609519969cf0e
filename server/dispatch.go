package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/schedule"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/wire"
)

// flight is an execution the leader has fired and not yet seen finish.
//
// The rules that keep an execution from running twice:
//   - a dispatch carries an accept-by instant; a client refuses to start it later than that;
//   - without an ack, the same frame goes again to the same client (it deduplicates by execution id);
//   - only after accept-by plus a grace of AckTimeout may the execution go to another client, because the
//     first client can no longer start it;
//   - executions inherited from an earlier term wait for heldTill for the same reason: the old leader may
//     have dispatched them, and we do not know to whom.
type flight struct {
	exec      job.Execution
	attempt   int
	client    string // the client it was last sent to (or that acked it); "" while waiting for one
	frame     []byte
	sentAt    time.Time
	acceptBy  time.Time
	acked     bool
	inherited bool
	lostAt    time.Time // when the running client was first seen gone
	sentOnce  bool
}

// dispatch sends f to a client that serves its job, in round-robin order, skipping exclude. It returns
// false when no client took it; the execution then waits and is tried again on every tick and registry
// change.
func (l *leader) dispatch(f *flight, now time.Time, exclude string) bool {
	if f.inherited && now.Before(l.heldTill) {
		return false
	}
	cands := l.candidates(f.exec)
	if exclude != "" && len(cands) > 1 {
		cands = slices.DeleteFunc(slices.Clone(cands), func(id string) bool { return id == exclude })
	}
	if len(cands) == 0 {
		f.client = ""
		return false
	}
	acceptBy := now.Add(l.s.cfg.AcceptWindow)
	frame, err := wire.Encode(&wire.Dispatch{
		Header:      wire.Header{From: l.s.cfg.ID, Epoch: l.epoch, SentAt: now},
		ExecID:      f.exec.ID,
		Job:         f.exec.Job,
		Handler:     f.exec.Handler,
		Params:      f.exec.Params,
		Timeout:     f.exec.Timeout,
		ScheduledAt: f.exec.ScheduledAt,
		Attempt:     f.attempt,
		Trigger:     f.exec.Trigger,
		AcceptBy:    acceptBy,
	})
	if err != nil {
		// Only an oversized frame (huge params) gets here; it can never be sent, so end it as failed.
		l.logger.Error("cannot encode dispatch", "execution", f.exec.ID, "err", err)
		l.finishLocally(f, "dispatch could not be encoded: "+err.Error())
		return false
	}
	start := l.rr[f.exec.Job]
	l.rr[f.exec.Job] = start + 1
	for i := range cands {
		c := cands[(start+i)%len(cands)]
		if err := l.s.outbox.Send(c, frame); err != nil {
			continue
		}
		if !f.sentOnce {
			l.s.metrics.fireLateness.Observe(now.Sub(f.exec.ScheduledAt).Seconds())
			f.sentOnce = true
		} else {
			l.s.metrics.redispatches.Inc()
		}
		l.s.metrics.dispatches.Inc()
		f.client, f.frame, f.sentAt, f.acceptBy = c, frame, now, acceptBy
		return true
	}
	f.client = ""
	return false
}

// candidates are the live clients that serve the execution's job by name or its handler, sorted.
func (l *leader) candidates(e job.Execution) []string {
	a, b := l.byJob[e.Job], l.byHandle[e.Handler]
	if len(b) == 0 {
		return a
	}
	if len(a) == 0 {
		return b
	}
	out := append(slices.Clone(a), b...)
	slices.Sort(out)
	return slices.Compact(out)
}

func (l *leader) rebuildEligibility() {
	l.byJob, l.byHandle = map[string][]string{}, map[string][]string{}
	for _, m := range l.s.clients.Members() { // sorted by id
		for _, j := range m.Jobs {
			l.byJob[j] = append(l.byJob[j], m.ID)
		}
		for _, h := range m.Handlers {
			l.byHandle[h] = append(l.byHandle[h], m.ID)
		}
	}
}

// checkFlights runs on every tick: it retries firings the store refused, sends what waits for a client,
// re-sends what was not acknowledged and hands on what a client can no longer start.
func (l *leader) checkFlights(ctx context.Context) error {
	now := l.s.now()
	if len(l.unsaved) > 0 {
		execs := l.unsaved
		l.unsaved = nil
		if err := l.fire(ctx, execs, now); err != nil {
			return err
		}
	}
	if len(l.flights) > 0 && !l.confirmed() {
		return errUnconfirmed
	}
	waiting := 0
	for _, f := range l.flights {
		_, alive := l.s.clients.Member(f.client)
		switch {
		case f.acked:
			if alive {
				f.lostAt = time.Time{}
				continue
			}
			if f.lostAt.IsZero() {
				f.lostAt = now
			} else if now.Sub(f.lostAt) > l.s.cfg.AckTimeout {
				l.finishLocally(f, "client "+f.client+" was lost while running it")
			}
		case f.client == "":
			if !l.dispatch(f, now, "") {
				waiting++
			}
		case now.After(f.acceptBy.Add(l.s.cfg.AckTimeout)):
			// The client can no longer start it: another may.
			if !l.dispatch(f, now, f.client) {
				waiting++
			}
		case alive && now.Sub(f.sentAt) >= l.s.cfg.AckTimeout:
			if err := l.s.outbox.Send(f.client, f.frame); err == nil {
				f.sentAt = now
				l.s.metrics.redispatches.Inc()
			}
		}
	}
	l.s.metrics.inflight.Set(float64(len(l.flights)))
	l.s.metrics.waiting.Set(float64(waiting))
	return nil
}

func (l *leader) dispatchWaiting(now time.Time) error {
	for _, f := range l.flights {
		if !f.acked && f.client == "" {
			l.dispatch(f, now, "")
		}
	}
	return nil
}

// finishLocally records the end of an execution that no client will report, and forgets it.
func (l *leader) finishLocally(f *flight, reason string) {
	now := l.s.now().UTC()
	ev := job.Event{
		ID: job.EventID(f.exec.ID, job.EventFinished, f.attempt), ExecID: f.exec.ID, Job: f.exec.Job,
		Kind: job.EventFinished, Attempt: f.attempt, Client: f.client, At: now,
		Result: &job.Result{Status: job.StateFailed, ExitCode: -1, Error: reason},
	}
	l.s.intake.persist(ev)
	l.logger.Warn("execution failed by the leader", "execution", f.exec.ID, "reason", reason)
	l.s.metrics.finished.WithLabelValues(string(job.StateFailed)).Inc()
	delete(l.flights, f.exec.ID)
}

func (l *leader) onAck(a *wire.Ack) {
	f, ok := l.flights[a.ExecID]
	if !ok || a.Attempt != f.attempt {
		return
	}
	if a.Accepted {
		f.acked, f.client, f.lostAt = true, a.From, time.Time{}
		return
	}
	l.logger.Info("client refused execution", "execution", a.ExecID, "client", a.From, "reason", a.Reason)
	if f.acked {
		return
	}
	l.dispatch(f, l.s.now(), a.From)
}

func (l *leader) onResult(r *wire.Result) {
	if _, ok := l.flights[r.ExecID]; ok {
		delete(l.flights, r.ExecID)
	}
}

// applyDeclarations records the jobs that clients declare in their registration. A declaration creates the
// job if it does not exist and updates it if the stored job came from a declaration too; a job created or
// edited through the API is never overwritten by a client.
func (l *leader) applyDeclarations(ctx context.Context) {
	for _, m := range l.s.clients.Members() {
		if len(m.Declared) == 0 {
			continue
		}
		var specs []job.Spec
		if err := json.Unmarshal(m.Declared, &specs); err != nil {
			l.logger.Warn("client declared jobs that do not decode; ignored", "client", m.ID, "err", err)
			continue
		}
		for _, spec := range specs {
			fp := fingerprint(spec)
			if l.declared[spec.Name] == fp {
				continue
			}
			if err := l.applyDeclaration(ctx, m.ID, spec); err != nil {
				l.logger.Warn("declared job not applied", "client", m.ID, "job", spec.Name, "err", err)
				continue
			}
			l.declared[spec.Name] = fp
		}
	}
}

func (l *leader) applyDeclaration(ctx context.Context, clientID string, spec job.Spec) error {
	if err := spec.Validate(); err != nil {
		return err
	}
	if _, err := schedule.Parse(spec.Schedule, spec.TimeZone); err != nil {
		return err
	}
	now := l.s.now().UTC()
	cur, err := l.s.store.GetJob(ctx, spec.Name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		spec.Source, spec.Version = "client:"+clientID, 1
		spec.CreatedAt, spec.UpdatedAt, spec.ActiveSince = now, now, now
		spec.Paused = false
		if err := l.s.store.CreateJob(ctx, spec); err != nil && !errors.Is(err, store.ErrExists) {
			return err
		}
	case err != nil:
		return err
	case !strings.HasPrefix(cur.Source, "client:"):
		return nil // owned by the API
	case fingerprint(cur) == fingerprint(spec):
		return nil
	default:
		spec.Source, spec.Version = "client:"+clientID, cur.Version+1
		spec.CreatedAt, spec.UpdatedAt, spec.ActiveSince = cur.CreatedAt, now, cur.ActiveSince
		spec.Paused = cur.Paused
		if err := l.s.store.ReplaceJob(ctx, spec, cur.Version); err != nil {
			return err
		}
	}
	stored, err := l.s.store.GetJob(ctx, spec.Name)
	if err != nil {
		return err
	}
	l.setJob(stored, now)
	return nil
}

// fingerprint identifies what a declaration says, ignoring bookkeeping fields.
func fingerprint(s job.Spec) string {
	b, _ := json.Marshal(struct {
		Schedule, TimeZone, Handler string
		Params                      map[string]string
		Timeout                     job.Duration
		Contacts                    []string
	}{s.Schedule, s.TimeZone, s.Handler, s.Params, s.Timeout, s.Contacts})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}
