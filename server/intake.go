package server

import (
	"context"
	"errors"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/logx"
	"github.com/clover-sched/clover/internal/wire"
)

// intake receives what clients report (acks, results), records it in the store in batches, tells the
// client which reports are safely recorded (receipts) and passes the reports on to the leader: to this
// server's leader loop when it leads, otherwise to the leading server over ZeroMQ.
//
// Concurrency: receive runs on the inbox goroutine and only decodes and queues; run's goroutine owns the
// batch and does all store writes, so a slow store never blocks the ZeroMQ socket. A full queue drops
// frames (counted): clients re-send results until they get a receipt, and the leader re-sends
// unacknowledged dispatches, so a dropped frame delays a report but does not lose it.
type intake struct {
	s       *Server
	queue   chan inbound
	local   chan job.Event
	dropLog logx.Limiter
	recent  recentIDs
}

type inbound struct {
	msg   wire.Message
	frame []byte
}

const (
	intakeBatch = 1000
	intakeDelay = 5 * time.Millisecond
)

func newIntake(s *Server) *intake {
	return &intake{s: s, queue: make(chan inbound, 1<<16), local: make(chan job.Event, 1<<12)}
}

// receive decodes one frame from the inbox. A frame that does not decode is dropped and counted; it never
// reaches the rest of the server.
func (in *intake) receive(frame []byte, peer string) {
	m, err := wire.Decode(frame)
	if err != nil {
		reason := "corrupt"
		var de *wire.DecodeError
		if errors.As(err, &de) {
			reason = de.Reason()
		}
		in.s.metrics.framesDropped.WithLabelValues(reason).Inc()
		in.dropLog.Warn(in.s.logger, "dropped undecodable frame", "peer", peer, "bytes", len(frame), "err", err)
		return
	}
	in.s.metrics.framesReceived.WithLabelValues(m.Kind().String()).Inc()
	switch m.(type) {
	case *wire.Ack, *wire.Result:
	case *wire.Heartbeat:
		return
	default:
		in.s.metrics.framesDropped.WithLabelValues("unexpected_kind").Inc()
		in.dropLog.Warn(in.s.logger, "dropped frame of a kind servers do not take", "peer", peer, "kind", m.Kind().String(), "from", wire.From(m))
		return
	}
	select {
	case in.queue <- inbound{msg: m, frame: frame}:
	default:
		in.s.metrics.framesDropped.WithLabelValues("queue_full").Inc()
	}
}

// persist queues an event the leader itself produced (an execution it ended).
func (in *intake) persist(ev job.Event) {
	select {
	case in.local <- ev:
	default:
		// The store is far behind; record it synchronously rather than lose an execution's end.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := in.s.store.InsertEvents(ctx, []job.Event{ev}); err != nil {
			in.s.logger.Error("recording an execution's end failed", "execution", ev.ExecID, "err", err)
		}
	}
}

func (in *intake) run(ctx context.Context) error {
	batch := make([]inbound, 0, intakeBatch)
	var local []job.Event
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-in.queue:
			batch = append(batch, m)
		case ev := <-in.local:
			local = append(local, ev)
		}
		// Gather what arrives within intakeDelay into one bulk write.
		timer.Reset(intakeDelay)
	gather:
		for len(batch) < intakeBatch {
			select {
			case m := <-in.queue:
				batch = append(batch, m)
			case ev := <-in.local:
				local = append(local, ev)
			case <-timer.C:
				break gather
			case <-ctx.Done():
				return nil
			}
		}
		in.flush(ctx, batch, local)
		batch, local = batch[:0], nil
	}
}

func (in *intake) flush(ctx context.Context, batch []inbound, local []job.Event) {
	now := in.s.now()
	in.recent.expire(now)
	events, fresh := in.newEvents(batch, local)
	// The leader hears of reports before they are recorded: an ack that waited on a slow store could let
	// the leader believe a running execution was never started.
	lead := in.s.lead.Load()
	for _, m := range batch {
		switch x := m.msg.(type) {
		case *wire.Ack:
			in.toLeader(lead, ackNote{ack: x}, m)
		case *wire.Result:
			in.toLeader(lead, resultNote{result: x}, m)
		}
	}
	if len(events) > 0 {
		sctx, cancel := context.WithTimeout(ctx, storeTimeout)
		dups, err := in.s.store.InsertEvents(sctx, events)
		cancel()
		if err != nil {
			in.s.metrics.storeErrors.WithLabelValues("insert_events").Inc()
			in.s.logger.Warn("recording reports failed; clients will re-send", "events", len(events), "err", err)
			return
		}
		in.s.metrics.eventsPersisted.Add(float64(len(events) - dups))
		for _, ev := range events {
			in.recent.add(ev.ID, now)
		}
	}
	for _, st := range fresh {
		in.s.metrics.finished.WithLabelValues(string(st)).Inc()
	}
	receipts := map[string]*wire.Receipt{}
	receipt := func(client string) *wire.Receipt {
		r := receipts[client]
		if r == nil {
			r = &wire.Receipt{Header: wire.Header{From: in.s.cfg.ID, SentAt: now}}
			receipts[client] = r
		}
		return r
	}
	for _, m := range batch {
		switch x := m.msg.(type) {
		case *wire.Ack:
			if x.Accepted && x.Via == "" {
				receipt(x.From).Acked = append(receipt(x.From).Acked, x.ExecID)
			}
		case *wire.Result:
			if x.Via == "" {
				receipt(x.From).ExecIDs = append(receipt(x.From).ExecIDs, x.ExecID)
			}
		}
	}
	for client, r := range receipts {
		if frame, err := wire.Encode(r); err == nil {
			_ = in.s.outbox.Send(client, frame) // a lost receipt only makes the client send the report again
		}
	}
}

// newEvents turns a batch of reports into the events to insert, leaving out what need not be written: a
// report relayed by another server (it recorded it), one recorded here recently (a client re-sent it
// because its receipt was slow or lost), the same report twice in one batch, and an ack whose result is in
// the same batch (the result says more). Duplicates matter beyond their own cost: FerretDB inserts a bulk
// that holds one a document at a time. fresh lists the status of each result seen for the first time here.
func (in *intake) newEvents(batch []inbound, local []job.Event) (events []job.Event, fresh []job.State) {
	finished := map[string]bool{}
	for _, m := range batch {
		if r, ok := m.msg.(*wire.Result); ok && r.Via == "" {
			finished[r.ExecID] = true
		}
	}
	seen := map[string]bool{}
	add := func(ev job.Event) bool {
		if seen[ev.ID] || in.recent.has(ev.ID) {
			return false
		}
		seen[ev.ID] = true
		events = append(events, ev)
		return true
	}
	for _, ev := range local {
		add(ev)
	}
	for _, m := range batch {
		if wire.Via(m.msg) != "" {
			continue
		}
		switch x := m.msg.(type) {
		case *wire.Ack:
			if x.Accepted && !finished[x.ExecID] {
				add(job.Event{
					ID: job.EventID(x.ExecID, job.EventAcked, x.Attempt), ExecID: x.ExecID, Job: x.Job,
					Kind: job.EventAcked, Attempt: x.Attempt, Client: x.From, At: x.At.UTC(),
				})
			}
		case *wire.Result:
			r := x.Result
			if add(job.Event{
				ID: job.EventID(x.ExecID, job.EventFinished, x.Attempt), ExecID: x.ExecID, Job: x.Job,
				Kind: job.EventFinished, Attempt: x.Attempt, Client: x.From, At: x.FinishedAt.UTC(), Result: &r,
			}) {
				fresh = append(fresh, r.Status)
			}
		}
	}
	return events, fresh
}

// recentIDs remembers the ids of events recorded in the last recentFor, so that re-sent reports are
// answered with a receipt without another write. Only the intake goroutine uses it.
type recentIDs struct {
	at    map[string]time.Time
	order []recentID // oldest first, from head on
	head  int
}

type recentID struct {
	id string
	at time.Time
}

const recentFor = 30 * time.Second

func (r *recentIDs) has(id string) bool { _, ok := r.at[id]; return ok }

func (r *recentIDs) add(id string, now time.Time) {
	if r.at == nil {
		r.at = map[string]time.Time{}
	}
	if _, ok := r.at[id]; ok {
		return
	}
	r.at[id] = now
	r.order = append(r.order, recentID{id: id, at: now})
}

func (r *recentIDs) expire(now time.Time) {
	for r.head < len(r.order) && now.Sub(r.order[r.head].at) > recentFor {
		delete(r.at, r.order[r.head].id)
		r.head++
	}
	// Compact only when most of the slice is expired, so that expiring stays cheap per flush.
	if r.head > 1024 && 2*r.head > len(r.order) {
		n := copy(r.order, r.order[r.head:])
		clear(r.order[n:])
		r.order, r.head = r.order[:n], 0
	}
}

// toLeader passes a report to the leader loop, here or on the leading server. A report that was already
// forwarded once is not forwarded again, so two servers that each believe the other leads cannot bounce it.
func (in *intake) toLeader(lead *leader, note any, m inbound) {
	if lead != nil {
		lead.notify(note)
		return
	}
	if wire.Via(m.msg) != "" {
		return
	}
	info, _, ok := in.s.leaderInfo()
	if !ok || info.ID == in.s.cfg.ID {
		return
	}
	frame, err := wire.Relay(m.msg, in.s.cfg.ID)
	if err != nil {
		return
	}
	_ = in.s.outbox.Send(info.ID, frame)
}
