package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/clover-sched/clover/internal/schedule"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/wire"
	"github.com/clover-sched/clover/internal/workflow"
)

// Batches with a schedule start runs on their own. A scheduled run's cycle is its fire time written in
// the batch's cycle format, and a cycle runs once (its run's key): a term that fires a time an earlier
// term fired meets the run, and a term that starts after a fire time it missed starts that cycle late,
// once, unless it ran. Times before the batch was last written are never caught up (a batch defined at
// 09:00 with a 01:00 schedule does not start today's run on the next failover).

// batchCatchUp bounds how far back a new term looks for a scheduled run nobody started.
const batchCatchUp = 24 * time.Hour

type batchSchedule struct {
	batch   store.Batch
	sched   *schedule.Schedule
	next    time.Time
	written time.Time // no catch-up before it
	retryAt time.Time // a start that failed for a passing reason is tried again from then
}

// batchChanged tells the loop a batch was written or deleted (its schedule may have changed).
type batchChanged struct{ name string }

// loadBatchSchedules reads the batches and arms the scheduled ones, catching up on the latest fire time
// since a day ago (or since the batch was written) whose cycle never ran.
func (l *leader) loadBatchSchedules(ctx context.Context) error {
	var batches []store.Batch
	err := l.retryRead(ctx, "read the batches", func(ctx context.Context) error {
		var err error
		batches, err = l.batchStore.ListBatches(ctx)
		return err
	})
	if err != nil {
		return err
	}
	for _, b := range batches {
		l.armBatch(b, true)
	}
	return nil
}

// armBatch installs (or removes) a batch's schedule; catchUp also fires its latest missed time.
func (l *leader) armBatch(b store.Batch, catchUp bool) {
	delete(l.batchScheds, b.Name)
	if b.Deleted || b.Definition.Schedule == "" {
		return
	}
	sched, err := schedule.Parse(b.Definition.Schedule, b.Definition.TimeZone)
	if err != nil {
		l.logger.Error("batch schedule skipped: bad schedule in store", "batch", b.Name, "err", err)
		return
	}
	now := l.now()
	bs := &batchSchedule{batch: b, sched: sched, next: sched.Next(now), written: b.UpdatedAt}
	if catchUp {
		from := now.Add(-batchCatchUp)
		if b.UpdatedAt.After(from) {
			from = b.UpdatedAt
		}
		if latest := sched.Latest(from, now); !latest.IsZero() {
			bs.next = latest
		}
	}
	if !bs.next.IsZero() {
		l.batchScheds[b.Name] = bs
	}
}

// fireBatchSchedules starts the scheduled runs that are due.
func (l *leader) fireBatchSchedules(ctx context.Context, now time.Time) {
	for name, bs := range l.batchScheds {
		if bs.next.After(now) || bs.retryAt.After(now) {
			continue
		}
		at := bs.next
		d := bs.batch.Definition
		n := batchOpNote{op: "run", batch: name, cycle: at.In(bs.sched.Location()).Format(d.Layout()), frequency: d.Frequency,
			who: "schedule", why: "scheduled at " + at.UTC().Format(time.RFC3339), trigger: "schedule"}
		rep := l.startRun(ctx, n)
		switch {
		case rep.err != nil && !errors.Is(rep.err, errBatchRunExists) && !errors.Is(rep.err, errBadRequest):
			// The store did not answer: this fire time is tried again, not lost.
			bs.retryAt = now.Add(5 * time.Second)
			l.logger.Warn("scheduled batch run not started yet; trying again", "batch", name, "cycle", n.cycle, "err", rep.err)
			continue
		case errors.Is(rep.err, errBatchRunExists):
			// Another term fired it, or a request started the cycle first: said, since a request may
			// have run it early.
			l.logger.Info("scheduled batch run exists already", "batch", name, "cycle", n.cycle)
		case rep.err != nil:
			l.logger.Error("scheduled batch run not started", "batch", name, "cycle", n.cycle, "err", rep.err)
		}
		bs.retryAt = time.Time{}
		if bs.next = bs.sched.Next(now); bs.next.IsZero() {
			delete(l.batchScheds, name)
		}
	}
}

// onBatchChanged re-reads a batch written through the API and arms its schedule again.
func (l *leader) onBatchChanged(ctx context.Context, name string) {
	sctx, cancel := storeCtx(ctx)
	b, err := l.batchStore.GetBatch(sctx, name)
	cancel()
	switch {
	case errors.Is(err, store.ErrNotFound):
		delete(l.batchScheds, name)
	case err != nil:
		l.logger.Warn("cannot read a changed batch; its schedule is as it was", "batch", name, "err", err)
	default:
		l.armBatch(b, false)
	}
}

// requestBatch starts the run a client asked for (a file arrived, an application asked), if the batch
// lists the client in requested_by. A cycle that ran already is the request done, not refused: a re-send,
// or a second client seeing the same file.
func (l *leader) requestBatch(ctx context.Context, r *wire.Request) error {
	if l.batchStore == nil {
		return fmt.Errorf("%w: request %s: %v", errRefused, r.ReqID, errNoBatches)
	}
	if !l.confirmed() {
		return errUnconfirmed // the client sends it again; a frozen term must not start a run nobody follows
	}
	sctx, cancel := storeCtx(ctx)
	b, err := l.batchStore.GetBatch(sctx, r.Batch)
	cancel()
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("%w: request %s: %v", errRefused, r.ReqID, err)
	case err != nil:
		return err
	case !slices.Contains(b.Definition.RequestedBy, r.From):
		return fmt.Errorf("%w: request %s: batch %s does not list client %s in requested_by", errRefused, r.ReqID, r.Batch, r.From)
	case r.Frequency != "" && r.Frequency != b.Definition.Frequency:
		// A frequency no node lists would skip those nodes, and they would count as succeeded.
		return fmt.Errorf("%w: request %s: a client starts batch %s at its own frequency %q only, not %q", errRefused, r.ReqID, r.Batch, b.Definition.Frequency, r.Frequency)
	}
	why := "requested by client " + r.From
	if r.Note != "" {
		why += ": " + clip(r.Note, 500)
	}
	rep := l.startRun(ctx, batchOpNote{op: "run", batch: r.Batch, cycle: r.Cycle, frequency: b.Definition.Frequency, params: r.Params,
		who: "client:" + r.From, why: why, trigger: "request"})
	switch {
	case rep.err == nil:
		return nil
	case errors.Is(rep.err, errBatchRunExists):
		l.logger.Info("a requested batch run exists already", "run", store.BatchRunID(r.Batch, r.Cycle), "client", r.From)
		return nil
	case errors.Is(rep.err, errBadRequest):
		return fmt.Errorf("%w: request %s: %v", errRefused, r.ReqID, rep.err)
	}
	return rep.err
}

// clip cuts s to at most n bytes, on a character boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// oneLine makes a value safe to print as one line of a mail: no line breaks or control characters that
// could forge other lines.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, clip(s, 500))
}

// batchNotifier is what the leader needs to tell a node's contacts of its start and end; the store has it.
type batchNotifier interface {
	GetContact(ctx context.Context, name string) (store.Contact, error)
	EnqueueNotifications(ctx context.Context, ns []store.Notification) (int, error)
}

// notifyNode queues mail (and webhook calls) to the contacts a node's handler names, off the loop; the
// monitors' dispatchers deliver them. Each is keyed by run, round, node and event: queued twice (a new
// term redoing a node's end), it is sent once.
func (l *leader) notifyNode(run *batchRun, node workflow.Node, event string, h workflow.Handler, reason string) {
	bn, ok := l.batchStore.(batchNotifier)
	if !ok || len(h.Contacts) == 0 {
		return
	}
	doc, now := run.doc, l.now()
	subject := fmt.Sprintf("[clover] batch run %s: node %s %s", doc.ID, node.Name, event)
	body := fmt.Sprintf("Batch:     %s (version %d)\nCycle:     %s\nFrequency: %s\nNode:      %s (job %s)\nRound:     %d\nEvent:     %s\n",
		doc.Batch, doc.Version, doc.Cycle, doc.Frequency, node.Name, node.Job, doc.Round, event)
	if reason != "" {
		body += "Why:       " + oneLine(reason) + "\n"
	}
	for _, k := range slices.Sorted(maps.Keys(doc.Params)) {
		body += fmt.Sprintf("Param:     %s=%s\n", oneLine(k), oneLine(doc.Params[k]))
	}
	payload, _ := json.Marshal(map[string]any{"batch": doc.Batch, "cycle": doc.Cycle, "frequency": doc.Frequency, "run": doc.ID,
		"round": doc.Round, "node": node.Name, "job": node.Job, "event": event, "reason": reason, "params": doc.Params, "at": now})
	contacts := slices.Clone(h.Contacts)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		defer cancel()
		var ns []store.Notification
		for _, name := range contacts {
			ct, err := bn.GetContact(ctx, name)
			if err != nil {
				l.logger.Warn("batch: a node's contact is unknown; not told", "run", doc.ID, "node", node.Name, "contact", name, "err", err)
				continue
			}
			base := store.Notification{AlertKey: "batch/" + doc.ID + "/" + node.Name, Kind: store.NotifyProblem, State: store.NotificationPending, CreatedAt: now, NextAttempt: now}
			if event != "failed" {
				base.Kind = store.NotifyRecovery
			}
			key := fmt.Sprintf("batch/%s/%d/%s/%s", doc.ID, doc.Round, node.Name, event)
			if ct.Email != "" {
				n := base
				n.ID, n.Channel, n.To, n.Subject, n.Body = key+"/email/"+ct.Email, store.ChannelEmail, ct.Email, subject, body
				ns = append(ns, n)
			}
			if ct.Webhook != "" {
				n := base
				n.ID, n.Channel, n.To, n.Payload = key+"/webhook/"+ct.Name, store.ChannelWebhook, ct.Webhook, payload
				ns = append(ns, n)
			}
		}
		if _, err := bn.EnqueueNotifications(ctx, ns); err != nil {
			l.logger.Warn("batch: a node's contacts could not be told", "run", doc.ID, "node", node.Name, "err", err)
		}
	}()
}
