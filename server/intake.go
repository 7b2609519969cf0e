package server

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/logx"
	"github.com/clover-sched/clover/internal/transport"
	"github.com/clover-sched/clover/internal/wire"
)

// intake receives what clients report (acks, results): it tells the leader at once (this server's leader
// loop when it leads, otherwise the leading server over ZeroMQ), records the reports in the store in
// batches, and tells each client which of its reports are safely recorded (receipts), so that it stops
// re-sending them.
//
// Concurrency: receive runs on the inbox goroutine. It decodes, tells the leader, and queues what is new;
// run's goroutine owns the batch and does every store write, so a slow store never blocks the ZeroMQ socket
// nor delays what the leader learns (a leader that heard of acks only after a slow write would re-send
// dispatches, and the re-sent answers would slow the store further). known, shared by both, holds the ids
// of events queued or recorded recently: a re-sent report is dropped at once (answered with a receipt if it
// is recorded already) instead of being queued and written again. A full queue drops frames (counted):
// clients re-send until they get a receipt, so a dropped frame delays a report but does not lose it.
type intake struct {
	intakeDeps
	queue   chan inbound
	local   chan localWrite
	dropLog logx.Limiter
	closer  *closer

	mu     sync.Mutex
	known  map[string]bool // event id -> recorded (true) or queued (false)
	expiry []recentID      // recorded ids, oldest first, from head on
	head   int
}

type inbound struct {
	msg   wire.Message
	event string // id of the event it records, "" for none (a refusal)
}

type recentID struct {
	id string
	at time.Time
}

const (
	intakeBatch = 1000
	intakeDelay = 5 * time.Millisecond
	// maxLocalKept bounds the leader's own writes kept for a retry while the store refuses them.
	maxLocalKept = 1 << 16
	// recentFor is how long a recorded event id is remembered to answer re-sent reports.
	recentFor = 30 * time.Second
)

// intakeDeps is what the intake uses of its server.
type intakeDeps struct {
	id      string // this server's id: its receipts and relays are from it
	now     func() time.Time
	logger  *slog.Logger
	metrics *metrics
	store   intakeStore
	send    func(peer string, frame []byte) error
	// term is this server's leader term; nil while it does not lead.
	term func() termReports
	// otherLeader names the leading server when another server leads.
	otherLeader func() (string, bool)
	// checkRunToken checks the run token of a client's report (keyring.RunToken); nil in insecure mode.
	checkRunToken func(execID string, run int, client, token string) bool
	// output hands a client's answer to the ask waiting for it (false: nobody waits for it).
	output func(*wire.Output) bool
}

// termReports is what the intake tells a leader term.
type termReports interface {
	Report(m wire.Message, resent bool)
	Recorded(ids []string, runs []int)
}

// intakeStore is what the intake writes.
type intakeStore interface {
	InsertEvents(ctx context.Context, events []job.Event) (duplicates int, err error)
	InsertExecutions(ctx context.Context, execs []job.Execution) (duplicates []string, err error)
}

func newIntake(deps intakeDeps, closer *closer) *intake {
	return &intake{
		intakeDeps: deps, queue: make(chan inbound, 1<<16), local: make(chan localWrite, 1<<12), known: map[string]bool{},
		closer: closer,
	}
}

// intakeDeps is the intake's view of s.
func (s *Server) intakeDeps() intakeDeps {
	return intakeDeps{
		id: s.cfg.ID, now: s.now, logger: s.logger, metrics: s.metrics, store: s.store, send: s.outbox.Send,
		term: func() termReports {
			if l := s.lead.Load(); l != nil {
				return l
			}
			return nil // not a nil *leader in an interface
		},
		otherLeader: func() (string, bool) {
			info, _, ok := s.leaderInfo()
			return info.ID, ok && info.ID != s.cfg.ID
		},
		checkRunToken: s.sec.checkRunToken(),
		output:        s.outputs.deliver,
	}
}

// eventID is the id of the event a report records, or "" if it records none.
func eventID(m wire.Message) string {
	switch x := m.(type) {
	case *wire.Ack:
		if x.Accepted {
			return job.EventID(x.ExecID, job.EventAcked, x.Attempt)
		}
	case *wire.Result:
		return job.EventID(x.ExecID, job.EventFinished, max(x.Run, 1))
	}
	return ""
}

// receive handles one frame from the inbox. A frame that does not decode, or that its sender may not
// send, is dropped and counted; it never reaches the rest of the server.
func (in *intake) receive(frame []byte, from transport.Sender) {
	peer := from.Addr
	m, err := wire.Decode(frame)
	if err != nil {
		reason := "corrupt"
		var de *wire.DecodeError
		if errors.As(err, &de) {
			reason = de.Reason()
		}
		in.metrics.framesDropped.WithLabelValues(reason).Inc()
		in.dropLog.Warn(in.logger, "dropped undecodable frame", "peer", peer, "bytes", len(frame), "err", err)
		return
	}
	reason := mayNotSend(m, from.Identity)
	if reason == "" && from.Identity == "" && in.checkRunToken != nil {
		// CURVE is on but the frame names no peer (libzmq lets a handshake through without its ZAP
		// handler): nobody vouches for it.
		reason = "unauthenticated"
	}
	if reason == "" {
		reason = unproven(m, from.Identity, in.checkRunToken)
	}
	if reason != "" {
		in.metrics.framesDropped.WithLabelValues(reason).Inc()
		in.dropLog.Warn(in.logger, "dropped frame its sender may not send", "peer", peer, "identity", from.Identity,
			"kind", m.Kind().String(), "from", wire.From(m), "via", wire.Via(m), "reason", reason)
		if reason == "bad_run_token" || reason == "local_not_own" {
			// Its own report of a run that was never its (a journal left from another cluster, say): it
			// would send it again for ever. The receipt says it is settled: nothing was recorded, and
			// nothing will be.
			in.sendReceipts(map[string]*wire.Receipt{from.Identity: receiptFor(in.id, in.now(), m)})
		}
		return
	}
	in.metrics.framesReceived.WithLabelValues(m.Kind().String()).Inc()
	if r, ok := m.(*wire.Result); ok {
		r.Result = r.Result.Bounded() // a client keeps only a tail; a hostile one may send more
	}
	switch x := m.(type) {
	case *wire.Ack, *wire.Result:
		in.toLeader(m, in.resent(m))
	case *wire.Heartbeat, *wire.Request:
		in.toLeader(m, false)
		return
	case *wire.Output:
		if in.output == nil || !in.output(x) {
			in.metrics.framesDropped.WithLabelValues("unasked").Inc()
		}
		return
	case *wire.Receipt:
		// A follower telling the leader which results it recorded.
		if lead := in.term(); lead != nil && len(x.ExecIDs) > 0 {
			lead.Recorded(x.ExecIDs, x.ExecRuns)
		}
		return
	default:
		in.metrics.framesDropped.WithLabelValues("unexpected_kind").Inc()
		in.dropLog.Warn(in.logger, "dropped frame of a kind servers do not take", "peer", peer, "kind", m.Kind().String(), "from", wire.From(m))
		return
	}
	id := eventID(m)
	if id == "" || wire.Via(m) != "" {
		return // nothing to record, or recorded by the server that relayed it
	}
	in.mu.Lock()
	recorded, seen := in.known[id]
	if !seen {
		in.known[id] = false
	}
	in.mu.Unlock()
	if seen {
		if recorded {
			in.sendReceipts(map[string]*wire.Receipt{wire.From(m): receiptFor(in.id, in.now(), m)})
		}
		return
	}
	select {
	case in.queue <- inbound{msg: m, event: id}:
	default:
		in.mu.Lock()
		delete(in.known, id) // let a re-send be queued
		in.mu.Unlock()
		in.metrics.framesDropped.WithLabelValues("queue_full").Inc()
	}
}

// mayNotSend says why the peer authenticated as identity may not send m, or "" if it may. A client
// speaks for itself only: its frames must name it as their writer and cannot be relays or receipts.
// Servers (holders of the servers' key) send receipts and relays. Without CURVE (insecure mode) there is
// no identity to check.
func mayNotSend(m wire.Message, identity string) string {
	switch {
	case identity == "":
		return ""
	case identity == transport.ServersIdentity:
		if _, ok := m.(*wire.Receipt); ok || wire.Via(m) != "" {
			return ""
		}
		return "server_not_relayed"
	}
	switch {
	case wire.From(m) != identity:
		return "forged_sender"
	case wire.Via(m) != "":
		return "relay_from_client"
	}
	if _, ok := m.(*wire.Receipt); ok {
		return "receipt_from_client"
	}
	return ""
}

// unproven says why a client's ack or result does not show that the run it reports was its own, or ""
// if it does: a dispatched run by the token the leader gave that client, a run the client fired itself by
// its id. Checked on every server, before anything is recorded: an admitted client cannot end, fail or
// take over another's run. Relays were checked by the server that took them from the client.
func unproven(m wire.Message, identity string, check func(execID string, run int, client, token string) bool) string {
	if check == nil || identity == "" || identity == transport.ServersIdentity {
		return ""
	}
	var execID, token string
	var run int
	switch x := m.(type) {
	case *wire.Ack:
		if x.Local != nil {
			name, _, _ := strings.Cut(x.ExecID, "@")
			if x.Local.ID == x.ExecID && job.IsLocalOf(x.ExecID, identity) && x.Job == name && x.Local.Job == name {
				return ""
			}
			return "local_not_own"
		}
		execID, run, token = x.ExecID, x.Run, x.Token
	case *wire.Result:
		if job.IsLocalOf(x.ExecID, identity) {
			return ""
		}
		execID, run, token = x.ExecID, x.Run, x.Token
	default:
		return ""
	}
	if !check(execID, run, identity, token) {
		return "bad_run_token"
	}
	return ""
}

func (in *intake) run(ctx context.Context) error {
	go in.closer.run(ctx)
	batch := make([]inbound, 0, intakeBatch)
	var local []localWrite
	var retry <-chan time.Time // set while the leader's own writes wait to be tried again
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-in.queue:
			batch = append(batch, m)
		case w := <-in.local:
			local = append(local, w)
		case <-retry:
		}
		// Gather what arrives within intakeDelay into one bulk write.
		timer.Reset(intakeDelay)
	gather:
		for len(batch) < intakeBatch {
			select {
			case m := <-in.queue:
				batch = append(batch, m)
			case w := <-in.local:
				local = append(local, w)
			case <-timer.C:
				break gather
			case <-ctx.Done():
				return nil
			}
		}
		// Nobody re-sends what the leader itself produced (the end of an execution, a close): a batch whose
		// write failed keeps it for the next one.
		local = in.flush(ctx, batch, local)
		batch, retry = batch[:0], nil
		if n := len(local) - maxLocalKept; n > 0 {
			// The store has refused writes for long: drop the oldest rather than grow without bound. Such
			// an execution stays open in the store, and the next leader takes it over.
			in.logger.Error("the store refuses the leader's own writes; dropping the oldest", "dropped", n)
			local = slices.Delete(local, 0, n)
		}
		if len(local) > 0 {
			retry = time.After(time.Second)
		}
	}
}

// flush records a batch and sends the receipts. An ack whose result (of the same run) is in the same batch
// is not written: the result says more, and FerretDB writes fewer documents faster. The executions that
// clients fired themselves (local mode) are recorded before their events. The leader's closes go to the
// closer once the events before them are recorded. It returns the leader's writes that failed.
func (in *intake) flush(ctx context.Context, batch []inbound, local []localWrite) []localWrite {
	now := in.now()
	type runKey struct {
		id  string
		run int
	}
	finished := map[runKey]bool{}
	for _, m := range batch {
		if r, ok := m.msg.(*wire.Result); ok {
			finished[runKey{r.ExecID, max(r.Run, 1)}] = true
		}
	}
	var events []job.Event
	var closes []closeReq
	var closeEpoch int64
	for _, w := range local {
		switch {
		case w.event != nil:
			events = append(events, *w.event)
		case w.batchEnd != nil || w.batchRun != nil:
		default:
			closes, closeEpoch = append(closes, closeReq{id: w.close, recheck: w.recheck}), max(closeEpoch, w.epoch)
		}
	}
	var fresh []job.State
	var fired []job.Execution
	for _, m := range batch {
		switch x := m.msg.(type) {
		case *wire.Ack:
			if x.Local != nil {
				fired = append(fired, localExecution(x))
			}
			if !finished[runKey{x.ExecID, max(x.Run, 1)}] {
				events = append(events, reportEvent(x))
			}
		case *wire.Result:
			events = append(events, reportEvent(x))
			fresh = append(fresh, x.Result.Status)
		}
	}
	if len(fired) > 0 {
		sctx, cancel := context.WithTimeout(ctx, storeTimeout)
		_, err := in.store.InsertExecutions(sctx, fired)
		cancel()
		if err != nil {
			in.failed(batch, "recording executions fired by clients failed; clients will re-send", len(fired), err)
			return local
		}
	}
	if len(events) > 0 {
		sctx, cancel := context.WithTimeout(ctx, storeTimeout)
		dups, err := in.store.InsertEvents(sctx, events)
		cancel()
		if err != nil {
			in.failed(batch, "recording reports failed; clients will re-send", len(events), err)
			return local
		}
		in.metrics.eventsPersisted.Add(float64(len(events) - dups))
	}
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	err := in.writeBatch(sctx, local)
	cancel()
	if err != nil {
		in.failed(batch, "recording batch runs' records failed; will retry", len(local), err)
		return local
	}
	in.closer.add(closeEpoch, closes)
	for _, st := range fresh {
		in.metrics.finished.WithLabelValues(string(st)).Inc()
	}
	in.remember(batch, now)
	receipts := map[string]*wire.Receipt{}
	for _, m := range batch {
		from := wire.From(m.msg)
		if r := receipts[from]; r != nil {
			addToReceipt(r, m.msg)
		} else {
			receipts[from] = receiptFor(in.id, now, m.msg)
		}
	}
	in.sendReceipts(receipts)
	in.tellRecorded(batch, now)
	return nil
}

// failed forgets a batch whose write failed, so that the clients' re-sends are queued again.
func (in *intake) failed(batch []inbound, msg string, n int, err error) {
	in.metrics.storeErrors.WithLabelValues("insert_events").Inc()
	in.logger.Warn(msg, "documents", n, "err", err)
	in.mu.Lock()
	for _, m := range batch {
		delete(in.known, m.event)
	}
	in.mu.Unlock()
}

// tellRecorded tells the leader which results are now recorded, so that it forgets them.
func (in *intake) tellRecorded(batch []inbound, now time.Time) {
	var ids []string
	var runs []int
	for _, m := range batch {
		if r, ok := m.msg.(*wire.Result); ok {
			ids, runs = append(ids, r.ExecID), append(runs, max(r.Run, 1))
		}
	}
	if len(ids) == 0 {
		return
	}
	if lead := in.term(); lead != nil {
		lead.Recorded(ids, runs)
		return
	}
	leader, ok := in.otherLeader()
	if !ok {
		return // the next leader reads what is recorded from the store
	}
	if frame, err := wire.Encode(&wire.Receipt{Header: wire.Header{From: in.id, SentAt: now}, ExecIDs: ids, ExecRuns: runs}); err == nil {
		_ = in.send(leader, frame)
	}
}

// remember marks the batch's events recorded, and forgets those recorded more than recentFor ago.
func (in *intake) remember(batch []inbound, now time.Time) {
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, m := range batch {
		in.known[m.event] = true
		in.expiry = append(in.expiry, recentID{id: m.event, at: now})
	}
	for in.head < len(in.expiry) && now.Sub(in.expiry[in.head].at) > recentFor {
		delete(in.known, in.expiry[in.head].id)
		in.head++
	}
	// Compact only when most of the slice is expired, so that expiring stays cheap per batch.
	if in.head > 1024 && 2*in.head > len(in.expiry) {
		n := copy(in.expiry, in.expiry[in.head:])
		clear(in.expiry[n:])
		in.expiry, in.head = in.expiry[:n], 0
	}
}

// reportEvent is the event an accepted ack or a result records.
func reportEvent(m wire.Message) job.Event {
	switch x := m.(type) {
	case *wire.Ack:
		return job.Event{
			ID: eventID(x), ExecID: x.ExecID, Job: x.Job, Kind: job.EventAcked, Attempt: x.Attempt,
			Run: max(x.Run, 1), Client: x.From, At: x.At.UTC(),
		}
	case *wire.Result:
		r := x.Result
		return job.Event{
			ID: eventID(x), ExecID: x.ExecID, Job: x.Job, Kind: job.EventFinished, Attempt: x.Attempt,
			Run: max(x.Run, 1), Client: x.From, At: x.FinishedAt.UTC(), Result: &r,
		}
	}
	return job.Event{}
}

// localExecution is the execution a client fired itself, as its ack carries it.
func localExecution(a *wire.Ack) job.Execution {
	e := *a.Local
	e.ID, e.Job, e.Trigger, e.Server = a.ExecID, a.Job, job.TriggerLocal, a.From
	return e
}

func receiptFor(server string, now time.Time, m wire.Message) *wire.Receipt {
	r := &wire.Receipt{Header: wire.Header{From: server, SentAt: now}}
	addToReceipt(r, m)
	return r
}

func addToReceipt(r *wire.Receipt, m wire.Message) {
	switch x := m.(type) {
	case *wire.Ack:
		r.Acked, r.AckedRuns = append(r.Acked, x.ExecID), append(r.AckedRuns, max(x.Run, 1))
	case *wire.Result:
		r.ExecIDs, r.ExecRuns = append(r.ExecIDs, x.ExecID), append(r.ExecRuns, max(x.Run, 1))
	}
}

func (in *intake) sendReceipts(receipts map[string]*wire.Receipt) {
	for client, r := range receipts {
		if frame, err := wire.Encode(r); err == nil {
			_ = in.send(client, frame) // a lost receipt only makes the client send the report again
		}
	}
}

// resent reports whether m is a report this server has queued or recorded already: a client's re-send.
func (in *intake) resent(m wire.Message) bool {
	id := eventID(m)
	if id == "" || wire.Via(m) != "" {
		return false
	}
	in.mu.Lock()
	_, seen := in.known[id]
	in.mu.Unlock()
	return seen
}

// toLeader passes a report to the leader loop, here or on the leading server. A report that was already
// relayed once is not relayed again, so two servers that each believe the other leads cannot bounce it.
// A client's re-send of a report this server already has (resent) goes to the loop here only while its
// queue is at most half full: under load, re-sent results were most of the reports and crowded out
// first reports, acks and heartbeats; the first copy went to the loop already, or was dropped with room
// to spare for a later re-send.
func (in *intake) toLeader(m wire.Message, resent bool) {
	if lead := in.term(); lead != nil {
		lead.Report(m, resent)
		return
	}
	if wire.Via(m) != "" {
		return
	}
	leader, ok := in.otherLeader()
	if !ok {
		return
	}
	frame, err := wire.Relay(m, in.id)
	if err != nil {
		return
	}
	_ = in.send(leader, frame)
}
