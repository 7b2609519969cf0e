package server

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/fallback"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/wire"
)

// Replay of the fallback queue: what clients could not deliver while no server took their reports.
//
// Concurrency: replay runs in its own goroutine for the length of a term, so that a long queue never holds
// up firing. It records results and acks in the store itself, like the intake, and then tells the loop, like
// the intake does; it hands run requests and declarations to the loop (tell) and waits for the answer, since
// only the loop may fire or change jobs. Each entry is settled (applied or rejected) only after its effect is
// recorded, and every effect is idempotent: an event id, an execution id made from the request id, a
// declaration compared with the stored job. So a leader that dies half way leaves entries waiting that the
// next leader applies again without doubling anything; exactly once is "at least once, idempotently".
//
// Order: each client's entries are applied in the order it queued them (the store sorts them). An entry
// that cannot be applied now (the store failed, the loop is not confirmed) stops that client's replay for
// this pass; the others go on.

// replayStore is what replay needs of the store.
type replayStore interface {
	WaitingFallback(ctx context.Context, limit int, skipClients []string) ([]fallback.Entry, error)
	SettleFallback(ctx context.Context, id string, state fallback.State, server string, epoch int64, reason string, at time.Time) (bool, error)
	FallbackWaitingFor(ctx context.Context, execIDs []string) ([]string, error)
	FallbackStatus(ctx context.Context) (fallback.Status, error)
	InsertExecutions(ctx context.Context, execs []job.Execution) ([]string, error)
	InsertEvents(ctx context.Context, events []job.Event) (int, error)
	RaiseAlert(ctx context.Context, a store.Alert, now time.Time) (bool, error)
	ClearAlert(ctx context.Context, key string, now time.Time) (bool, error)
	PruneFallback(ctx context.Context, before time.Time) (int64, error)
}

var _ replayStore = (*store.Store)(nil)

// Notes replay hands to the loop.
type (
	// requestNote asks the loop to run a client's run request; reply, when set, gets the outcome.
	requestNote struct {
		req   *wire.Request
		reply chan error
	}
	// declareNote asks the loop to apply declarations a client queued while no server was up.
	declareNote struct {
		client string
		specs  []job.Spec
		at     time.Time // when the client queued them
		reply  chan error
	}
)

// errRefused marks an entry or a request that can never be applied; it is settled rejected, not retried.
var errRefused = errors.New("refused")

const (
	replayBatch = 500
	// fallbackAlertKey names the alert raised while the fallback queue holds entries.
	fallbackAlertKey = "fallback-queue"
)

// replayState is a term's replay progress, read by the API.
type replayState struct {
	mu sync.Mutex
	p  api.ReplayProgress
	// alerted: this term raised the fallback alert; quiet: this term saw the queue empty and cleared the
	// alert. Only the replay goroutine touches them.
	alerted, quiet bool
}

func (r *replayState) update(f func(p *api.ReplayProgress)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(&r.p)
}

func (r *replayState) get() api.ReplayProgress {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.p
}

// replayLoop replays the fallback queue every FallbackPoll until the term ends.
func (l *leader) replayLoop(ctx context.Context) {
	if l.fallback == nil {
		return
	}
	l.replay.update(func(p *api.ReplayProgress) { *p = api.ReplayProgress{Leader: l.cfg.ID, Epoch: l.epoch} })
	defer l.metrics.fallbackSeen.Set(0) // a follower watches no queue
	t := time.NewTicker(l.cfg.FallbackPoll)
	defer t.Stop()
	var pruned time.Time
	for {
		l.replayPass(ctx)
		if now := l.now(); now.Sub(pruned) >= time.Hour {
			pruned = now
			l.pruneFallback(ctx, now)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// pruneFallback deletes entries settled more than FallbackKeep ago: every pass reads the collection, and on
// FerretDB a read scans it whole.
func (l *leader) pruneFallback(ctx context.Context, now time.Time) {
	sctx, cancel := storeCtx(ctx)
	defer cancel()
	n, err := l.fallback.PruneFallback(sctx, now.Add(-l.cfg.FallbackKeep))
	switch {
	case err != nil:
		l.logger.Warn("cannot prune the fallback queue", "err", err)
	case n > 0:
		l.logger.Info("pruned settled fallback entries", "deleted", n, "older_than", l.cfg.FallbackKeep)
	}
}

// replayPass applies the entries waiting now, and raises or clears the alert that says they wait. A client
// whose entry cannot be applied yet is left out for the rest of the pass (its later entries wait behind
// it, to keep its order), and the pass reads on past it, so one stuck client never holds up the others.
func (l *leader) replayPass(ctx context.Context) {
	now := l.now()
	blocked := map[string]bool{} // clients one of whose entries could not be applied in this pass
	var passErr error
	defer func() {
		l.replay.update(func(p *api.ReplayProgress) {
			p.LastPassAt, p.LastError = now, ""
			if passErr != nil {
				p.LastError = passErr.Error()
			}
		})
	}()
	for batch := 0; batch < maxReplayBatches; batch++ {
		sctx, cancel := storeCtx(ctx)
		entries, err := l.fallback.WaitingFallback(sctx, replayBatch, slices.Sorted(maps.Keys(blocked)))
		cancel()
		if err != nil {
			passErr = err
			if ctx.Err() == nil {
				l.logger.Warn("cannot read the fallback queue", "err", err)
			}
			return
		}
		if batch == 0 {
			if len(entries) == 0 && len(blocked) == 0 {
				l.metrics.fallbackSeen.Set(0)
				l.clearFallbackAlert(ctx, now)
				return
			}
			l.raiseFallbackAlert(ctx, now)
		}
		if len(entries) == 0 {
			return
		}
		// Declarations first: a request may name a job that a declaration waiting here creates. Applying a
		// declaration early changes nothing else (it is state, not an action).
		declaresFirst := func(e fallback.Entry) int {
			if e.Kind == fallback.KindDeclare {
				return 0
			}
			return 1
		}
		slices.SortStableFunc(entries, func(a, b fallback.Entry) int { return cmp.Compare(declaresFirst(a), declaresFirst(b)) })
		settled := 0
		for _, e := range entries {
			if ctx.Err() != nil {
				return
			}
			if blocked[e.Client] {
				continue
			}
			if err := l.replayEntry(ctx, e); err != nil {
				blocked[e.Client], passErr = true, err
				continue
			}
			settled++
		}
		if settled == 0 {
			return // what is left waits behind entries that cannot be applied yet
		}
	}
}

// maxReplayBatches bounds the batches of one pass, so that the pass ends and the alert is brought up to
// date now and then even while a long queue drains.
const maxReplayBatches = 20

// replayEntry applies and settles one entry; an error means it waits for a later pass.
func (l *leader) replayEntry(ctx context.Context, e fallback.Entry) error {
	state, reason := fallback.StateApplied, ""
	if e.State == fallback.StateRejected { // the store could not read it
		state, reason = fallback.StateRejected, e.Error
	} else if err := l.applyEntry(ctx, e); errors.Is(err, errRefused) {
		state, reason = fallback.StateRejected, err.Error()
	} else if err != nil {
		l.logger.Warn("fallback entry not applied yet; the client's later entries wait behind it", "entry", e.ID, "kind", e.Kind, "err", err)
		return err
	}
	sctx, cancel := storeCtx(ctx)
	settledHere, err := l.fallback.SettleFallback(sctx, e.ID, state, l.cfg.ID, l.epoch, reason, l.now())
	cancel()
	if err != nil {
		l.logger.Warn("fallback entry applied but not marked so; it will be applied again, harmlessly", "entry", e.ID, "err", err)
		return err
	}
	if !settledHere {
		return nil // another leader settled it
	}
	l.metrics.fallbackReplayed.WithLabelValues(string(e.Kind), string(state)).Inc()
	if state == fallback.StateRejected {
		l.logger.Error("fallback entry rejected: it can never be applied", "entry", e.ID, "client", e.Client, "kind", e.Kind, "reason", reason)
	} else {
		l.logger.Info("fallback entry replayed", "entry", e.ID, "client", e.Client, "kind", e.Kind, "execution", e.ExecID)
	}
	l.replay.update(func(p *api.ReplayProgress) {
		if state == fallback.StateRejected {
			p.Rejected++
		} else {
			p.Applied++
		}
		p.LastEntry, p.LastAppliedAt = e.ID, l.now()
	})
	return nil
}

// applyEntry records an entry's effect. An error wrapping errRefused means it never can be.
func (l *leader) applyEntry(ctx context.Context, e fallback.Entry) error {
	if l.memberKey != nil && !e.SignedBy(l.memberKey(e.Client)) {
		// Anyone holding the queue's database credentials can write, and read, entries in any client's
		// name: an entry counts only when signed with its client's registration key (as its ZooKeeper
		// node is), by a client still in the allowlist.
		return fmt.Errorf("%w: a %s entry of %s not signed with its key (or the client is no longer admitted)", errRefused, e.Kind, e.Client)
	}
	if e.Kind == fallback.KindDeclare {
		var specs []job.Spec
		if err := json.Unmarshal(e.Payload, &specs); err != nil {
			return fmt.Errorf("%w: declarations do not decode: %v", errRefused, err)
		}
		reply := make(chan error, 1)
		return l.ask(ctx, declareNote{client: e.Client, specs: specs, at: e.At, reply: reply}, reply)
	}
	m, err := wire.Decode(e.Payload)
	if err != nil {
		return fmt.Errorf("%w: payload: %v", errRefused, err)
	}
	if from := wire.From(m); from != e.Client {
		return fmt.Errorf("%w: a %s from %s in an entry of client %s", errRefused, m.Kind(), from, e.Client)
	}
	// The queue does not authenticate its writers: a report must carry its run's token, as over ZeroMQ.
	if reason := unproven(m, e.Client, l.checkRunToken); reason != "" {
		return fmt.Errorf("%w: a %s of %s without proof that its run was %s's (%s)", errRefused, m.Kind(), e.Client, e.Client, reason)
	}
	if r, ok := m.(*wire.Result); ok {
		r.Result = r.Result.Bounded()
	}
	sctx, cancel := storeCtx(ctx)
	defer cancel()
	switch x := m.(type) {
	case *wire.Result:
		if e.Kind != fallback.KindResult {
			break
		}
		if _, err := l.fallback.InsertEvents(sctx, []job.Event{reportEvent(x)}); err != nil {
			return err
		}
		l.tell(ctx, resultNote{result: x})
		l.tell(ctx, recordedNote{ids: []string{x.ExecID}, runs: []int{max(x.Run, 1)}})
		return nil
	case *wire.Ack:
		if e.Kind != fallback.KindAck {
			break
		}
		if !x.Accepted {
			return fmt.Errorf("%w: an ack entry holds a refusal, which records nothing", errRefused)
		}
		if x.Local != nil {
			if _, err := l.fallback.InsertExecutions(sctx, []job.Execution{localExecution(x)}); err != nil {
				return err
			}
		}
		if _, err := l.fallback.InsertEvents(sctx, []job.Event{reportEvent(x)}); err != nil {
			return err
		}
		l.tell(ctx, ackNote{ack: x})
		return nil
	case *wire.Request:
		if e.Kind != fallback.KindRequest {
			break
		}
		reply := make(chan error, 1)
		return l.ask(ctx, requestNote{req: x, reply: reply}, reply)
	}
	return fmt.Errorf("%w: an entry of kind %s holds a frame of kind %s", errRefused, e.Kind, m.Kind())
}

// ask hands a note to the loop and waits for its answer.
func (l *leader) ask(ctx context.Context, note any, reply chan error) error {
	l.tell(ctx, note)
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// raiseFallbackAlert records, the first time a server sees entries waiting, an alert for the operators
// (the monitor mails it), and keeps its summary up to date while they wait.
func (l *leader) raiseFallbackAlert(ctx context.Context, now time.Time) {
	sctx, cancel := storeCtx(ctx)
	defer cancel()
	st, err := l.fallback.FallbackStatus(sctx)
	if err != nil || st.Waiting == 0 {
		return
	}
	l.metrics.fallbackSeen.Set(float64(st.Waiting))
	clients := slices.Sorted(maps.Keys(st.WaitingByClient))
	summary := fmt.Sprintf("%d entries wait in the fallback queue since %s, from clients %s",
		st.Waiting, st.OldestWaiting.UTC().Format(time.RFC3339), strings.Join(clients, ", "))
	opened, err := l.fallback.RaiseAlert(sctx, store.Alert{
		Key: fallbackAlertKey, Kind: "fallback", Summary: summary, Since: st.OldestWaiting, RaisedBy: l.cfg.ID,
		Contacts: l.cfg.Operators,
		Details: "Clients could not reach any server and queued their reports in MongoDB. The leader replays " +
			"them in order; watch `clover fallback status`. If entries keep waiting, read the leader's log for " +
			"\"fallback entry not applied yet\".",
	}, now)
	if err != nil {
		l.logger.Warn("cannot record the fallback alert", "err", err)
		return
	}
	if opened {
		l.logger.Error("clients queued reports in the fallback queue while no server took them; replaying",
			"waiting", st.Waiting, "since", st.OldestWaiting, "clients", clients)
	}
	l.replay.alerted, l.replay.quiet = true, false
}

// clearFallbackAlert clears the alert once the queue is empty.
func (l *leader) clearFallbackAlert(ctx context.Context, now time.Time) {
	if l.replay.quiet && !l.replay.alerted {
		return // cleared already by this term (an earlier leader may have left it open)
	}
	sctx, cancel := storeCtx(ctx)
	defer cancel()
	cleared, err := l.fallback.ClearAlert(sctx, fallbackAlertKey, now)
	if err != nil {
		return
	}
	if cleared || l.replay.alerted {
		l.logger.Info("the fallback queue is replayed; nothing waits")
	}
	l.replay.alerted, l.replay.quiet = false, true
}

// request runs a client's run request, once: its execution id comes from the request id, so a request
// that was recorded already (sent twice, or replayed) fires nothing new.
func (l *leader) request(ctx context.Context, r *wire.Request) error {
	if r.Batch != "" {
		return l.requestBatch(ctx, r)
	}
	id := job.RequestExecutionID(r.Job, r.ReqID)
	if _, ok := l.flights[id]; ok {
		return nil
	}
	if _, ok := l.flights[job.ShardExecutionID(id, 0)]; ok {
		return nil
	}
	// Recorded already and ended since (a re-send whose receipt was lost, an entry applied by a leader
	// that died before marking it): nothing to do. Planning it again would apply the overlap policy to a
	// firing that is not new (replace would stop the job's runs).
	for _, eid := range []string{id, job.ShardExecutionID(id, 0)} {
		sctx, cancel := storeCtx(ctx)
		known, err := l.store.ExecutionRecorded(sctx, eid, r.At)
		cancel()
		if err != nil {
			return err
		}
		if known {
			return nil
		}
	}
	spec, err := l.manualSpec(ctx, r.Job)
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, errLocalMode):
		return fmt.Errorf("%w: request %s: %v", errRefused, r.ReqID, err)
	case err != nil:
		return err
	}
	if spec.Handler == job.HandlerShell && spec.Source != "client:"+r.From && !slices.Contains(l.byJob[r.Job], r.From) {
		// Running someone else's shell command now is an operator's act, not a client's.
		return fmt.Errorf("%w: request %s: client %s may request only the shell jobs it declares, not %s", errRefused, r.ReqID, r.From, r.Job)
	}
	params, err := spec.MergeParams(r.Params)
	if err != nil {
		return fmt.Errorf("%w: request %s: %v", errRefused, r.ReqID, err)
	}
	_, err = l.fireNow(ctx, firing{spec: spec, at: r.At, trigger: job.TriggerRequest, params: params, id: id})
	if store.IsRefusedWrite(err) {
		// The database refuses the execution itself (a parameter name it cannot store, say): it always will.
		return fmt.Errorf("%w: request %s: %v", errRefused, r.ReqID, err)
	}
	return err
}

// onRequest runs a request and answers the client with a receipt once its execution is recorded (or it is
// refused for good: re-sending it would not help).
func (l *leader) onRequest(ctx context.Context, n requestNote) {
	err := l.request(ctx, n.req)
	if n.reply != nil {
		n.reply <- err
	}
	if errors.Is(err, errRefused) {
		l.logger.Warn("run request refused", "client", n.req.From, "job", n.req.Job, "request", n.req.ReqID, "err", err)
	} else if err != nil {
		l.logger.Debug("run request not run yet; the client sends it again", "request", n.req.ReqID, "err", err)
		return
	}
	frame, ferr := wire.Encode(&wire.Receipt{Header: wire.Header{From: l.cfg.ID, Epoch: l.epoch, SentAt: l.now()}, Requests: []string{n.req.ReqID}})
	if ferr == nil {
		_ = l.send(n.req.From, frame)
	}
}

// onDeclare applies declarations a client queued while no server was up. A client registered now is
// skipped: its registration in ZooKeeper is newer and stands.
func (l *leader) onDeclare(ctx context.Context, n declareNote) error {
	if l.live[n.client] {
		return nil
	}
	for _, spec := range n.specs {
		sctx, cancel := storeCtx(ctx)
		cur, err := l.store.GetJob(sctx, spec.Name)
		cancel()
		switch {
		case err == nil && cur.UpdatedAt.After(n.at):
			// Changed since the client queued this (by a newer process of the same client, say): the queued
			// declaration is older news and must not roll the job back.
			continue
		case err != nil && !errors.Is(err, store.ErrNotFound):
			return err
		}
		if err := l.applyDeclaration(ctx, n.client, spec); err != nil {
			if isTransient(err) {
				return err
			}
			l.logger.Warn("queued declaration not applied", "client", n.client, "job", spec.Name, "err", err)
		}
	}
	return nil
}
