package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/registry"
	"github.com/clover-sched/clover/internal/schedule"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/transport"
	"github.com/clover-sched/clover/internal/wire"
)

// A property test of the leader across leadership terms: over random sequences of leader kills (with gaps
// shorter and longer than the misfire threshold), client kills, departures from the registry and restarts
// with an empty memory, no firing runs twice, none is lost under the fire-once misfire policy, and nothing
// is left open without a reason.
//
// The cluster is simulated on one goroutine with one clock that moves in steps of the leader's tick
// (250 ms); nothing sleeps. Every leadership term is a newLeader with a higher epoch over one shared store
// (the fakeStore, which gives the uniqueness of execution ids the real store gives) and the same simulated
// clients. A step does what the leader loop would (fireDue, checkFlights and the store check it starts),
// delivers the frames the leader sent, and lets each client do what the client library does: ignore a
// deposed leader's dispatch, refuse one after its accept-by or beyond its capacity, answer a re-sent
// dispatch of the same (execution, run) with its first answer, run each accepted execution for a random
// time, report its ack (200 ms after accepting) and its result, recorded in the store as a server's intake
// does and told to the current leader through its notes, and list what it runs in a heartbeat every 2 s.
// With no leader acting, reports are lost (no server records them); acks and results are sent again every
// second until recorded. Faults besides the kills: a leader may die in the middle of a step (what it sent
// and persisted in that step is lost with it, what it inserted stays); one recorded report in 50 does not
// reach the leader (the relay from the server that recorded it is lost); now and then the store's answer
// to an insert is lost although the insert landed.
//
// The properties, checked when the last leader has run a minute without faults:
//  1. No (execution, run) runs on two clients at once, and no execution of a job that is not rerunnable
//     starts twice. One case is counted, not failed: a start whose client died before any server recorded
//     its ack, followed by a start that a later term sent. Nothing in the store says to whom an earlier term
//     sent an execution, so a new leader cannot tell that start from a dispatch that never arrived; it
//     sends the inherited pending execution again once its hold is over (acknowledging after starting
//     leaves this window).
//  2. None lost under fire-once: the executions recorded are exactly those the firing rules owe (expected):
//     each fire time once, on schedule, while a leader acts or within the misfire threshold of the next
//     leader's start; for the times older than that, one catch-up per gap at the latest of them, its Missed
//     counting the others. Skipped executions count as recorded.
//  3. Every execution ended, or is open for a reason the current leader tracks: orphaned because the
//     client it names vanished with it, running on a live client that runs it, or pending for 20 s at most.
//
// CLOVER_PROPERTY_SEEDS=n runs n seeds instead of 200; CLOVER_PROPERTY_LOG=text prints each seed's log of events
// (cluster events and the lines that contain text; only:text, those lines only), which a failure prints anyway.

// propStep is the leader's tick.
const propStep = 250 * time.Millisecond

// propDecisionMemory is how long after its accept-by a client remembers its answer to a dispatch (the
// client library's decisionMemory).
const propDecisionMemory = time.Minute

type propKey struct {
	exec string
	run  int
}

type propDecision struct {
	start    *propStart // the run it started, if accepted
	accepted bool
	code     string
	reason   string
	attempt  int
	acceptBy time.Time
}

// propStart is one start of a run on a client: what the "runs at most once" property counts.
type propStart struct {
	exec, job  string
	run        int
	attempt    int
	client     string
	inc        int // the client's incarnation
	at         time.Time
	stop       time.Time // when it ended or its client died; zero while it runs
	rerunnable bool
	epoch      int64          // of the leader that dispatched it
	recorded   time.Time      // when its ack or result was first recorded in the store; zero if never
	reported   bool           // its result was recorded in the store
	heardBy    map[int64]bool // epochs of the leaders told of it (ack, result or heartbeat)
	died       bool           // its client was killed before a server recorded its result
}

// knownTo reports whether the leader of epoch could know at instant at that st had started: the store
// held its ack or result, or that leader had been told of it.
func (st *propStart) knownTo(epoch int64, at time.Time) bool {
	return (!st.recorded.IsZero() && st.recorded.Before(at)) || st.heardBy[epoch]
}

type propRun struct {
	d     *wire.Dispatch
	key   propKey
	endAt time.Time
	start *propStart
}

// propReport is an ack or a result waiting to reach a server.
type propReport struct {
	key    propKey
	start  *propStart
	ack    *wire.Ack
	result *wire.Result
	next   time.Time
	resend bool // sent again every second until a server records it
}

type propClient struct {
	id         string
	inc        int
	alive      bool
	registered bool
	capacity   int
	startedAt  time.Time
	maxEpoch   int64
	seen       map[propKey]propDecision
	newest     map[string]int
	active     map[propKey]*propRun
	received   map[string]bool // executions it was sent
	reports    []*propReport
	nextHB     time.Time
}

type propTerm struct {
	l         *leader
	epoch     int64
	inherited map[string]bool // executions the store had pending when it was established
	start     time.Time       // established
	last      time.Time       // the last step it acted (fired) in
	ctx       context.Context
	cancel    context.CancelFunc
	dying     bool // dies at the end of this step; what it sends and persists now is lost
	dead      bool
	// chunks: the inserts handed to the inserter and not made yet (propSim.asyncInserts); failedGen is
	// the inserter's.
	chunks    []*insertChunk
	failedGen int
	// recordedTo: the firings the term planned up to this instant are in the store (its last step); zero:
	// none. With inserts off the loop it is per job instead (madeTo): the latest scheduled time of the
	// job among the inserts made, which the inserter makes in time order.
	recordedTo time.Time
	madeTo     map[string]time.Time
}

type propVanished struct{ exec, client string }

type propFrame struct {
	to  *propClient
	msg wire.Message
}

type propAction struct {
	at   time.Time
	what string
	do   func()
}

// propStore is the fakeStore with an open set kept as the real store keeps it (a copy inserted with each
// execution, removed only when a leader closes it) and reads that fold each execution with its own events
// only (the fakeStore folds every event into every execution, which is slow for the thousands the
// simulation records).
type propStore struct {
	*fakeStore
	byExec map[string][]job.Event // the events of each execution; written by record only, under mu
}

func (s propStore) ReadOpenSet(context.Context) ([]job.Execution, []string, error) {
	var out []job.Execution
	for _, e := range s.fold(nil) {
		if s.isOpen(e.ID) {
			out = append(out, e)
		}
	}
	slices.SortStableFunc(out, func(a, b job.Execution) int { return a.ScheduledAt.Compare(b.ScheduledAt) })
	return out, nil, nil
}

func (s propStore) OpenByID(_ context.Context, ids []string) ([]job.Execution, error) {
	var out []job.Execution
	for _, e := range s.fold(ids) {
		if s.isOpen(e.ID) {
			out = append(out, e)
		}
	}
	return out, nil
}

// RecordSkipped records skipped executions as the fakeStore does, and their events for fold.
func (s propStore) RecordSkipped(ctx context.Context, into store.HistorySeries, execs []job.Execution, now time.Time) ([]string, error) {
	s.mu.Lock()
	fresh := map[string]bool{}
	for _, e := range execs {
		_, had := s.execs[e.ID]
		fresh[e.ID] = !had
	}
	s.mu.Unlock()
	dups, err := s.fakeStore.RecordSkipped(ctx, into, execs, now)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range execs {
		if fresh[e.ID] {
			s.byExec[e.ID] = append(s.byExec[e.ID], e.Runs...)
		}
	}
	return dups, err
}

func (s propStore) isOpen(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.shut[id]
}

// fold returns the executions named (all if ids is nil), folded, sorted by id.
func (s propStore) fold(ids []string) []job.Execution {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []job.Execution
	add := func(e job.Execution) {
		e.Fold(s.byExec[e.ID])
		out = append(out, e)
	}
	if ids == nil {
		for _, e := range s.execs {
			add(e)
		}
	} else {
		for _, id := range ids {
			if e, ok := s.execs[id]; ok {
				add(e)
			}
		}
	}
	slices.SortFunc(out, func(a, b job.Execution) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// record inserts an event unless one with its id exists (events are insert-only).
func (s propStore) record(ev job.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.events[ev.ID]; !ok {
		s.events[ev.ID] = ev
		s.byExec[ev.ExecID] = append(s.byExec[ev.ExecID], ev)
	}
}

type propSim struct {
	t      *testing.T
	rng    *rand.Rand
	cfg    Config
	now    time.Time
	store  propStore
	specs  map[string]job.Spec
	terms  []*propTerm
	lead   *propTerm
	epoch  int64
	nextID int

	clients []*propClient // every incarnation, in order of start
	dirty   bool          // the registry changed since the leader last asked
	outbox  []propFrame
	starts  []*propStart
	// vanished: a client died after it was sent the execution; it may have refused it or started it,
	// and if its answer did not reach the leader, nobody can tell which.
	vanished map[propVanished]bool
	actions  []propAction
	log      []string

	// What the clients do with a run; the random driver sets these from rng.
	runFor    func(d *wire.Dispatch) time.Duration
	hbPhase   func() time.Duration // when a new client sends its first heartbeat
	fails     func(d *wire.Dispatch) bool
	lossy     func(p *propReport) bool // the report reaches a server that records it, but its relay to the leader is lost
	stopped   int                      // stop frames received (none expected: no job has a timeout or overlap replace)
	unseen    int                      // runs started again after their first start died unseen (see check)
	knownBugs int                      // violations of a known bug tolerated (see propTolerateKnownBugs)
	stats     struct{ catchUps, atThreshold, late int }
	// asyncInserts: each term records its firings through an inserter, as a server does, whose inserts
	// the simulation makes at random steps later (the loop goes on meanwhile); a term that dies leaves
	// each of them made or not, at random. Otherwise inserts are made on the loop when planned.
	asyncInserts bool
}

func newPropSim(t *testing.T, rng *rand.Rand, specs ...job.Spec) *propSim {
	cfg := DefaultConfig()
	cfg.ZooKeeper.SessionTimeout = 2 * time.Second // as newHarness
	s := &propSim{
		t: t, rng: rng, cfg: cfg, now: t0, vanished: map[propVanished]bool{}, store: propStore{newFakeStore(specs...), map[string][]job.Event{}}, specs: map[string]job.Spec{},
		runFor:  func(*wire.Dispatch) time.Duration { return time.Second },
		fails:   func(*wire.Dispatch) bool { return false },
		lossy:   func(*propReport) bool { return false },
		hbPhase: func() time.Duration { return time.Duration(rng.IntN(8)) * propStep },
	}
	for _, sp := range specs {
		s.specs[sp.Name] = sp
	}
	return s
}

func (s *propSim) logf(format string, args ...any) {
	s.log = append(s.log, fmt.Sprintf("%8s  ", "+"+s.now.Sub(t0).String())+fmt.Sprintf(format, args...))
}

// at schedules a cluster event.
func (s *propSim) at(at time.Time, what string, do func()) {
	s.actions = append(s.actions, propAction{at: at, what: what, do: do})
}

func (s *propSim) pendingAction(what string) bool {
	return slices.ContainsFunc(s.actions, func(a propAction) bool { return a.what == what })
}

// members is the client registry, sorted by id.
func (s *propSim) members() []registry.Member {
	var out []registry.Member
	for _, c := range s.clients {
		if c.registered {
			out = append(out, registry.Member{ID: c.id, Kind: registry.KindClients, Handlers: []string{"shell"}, Capacity: c.capacity, StartedAt: c.startedAt})
		}
	}
	slices.SortFunc(out, func(a, b registry.Member) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// registered is the incarnation registered under id, if any.
func (s *propSim) registered(id string) *propClient {
	for _, c := range s.clients {
		if c.registered && c.id == id {
			return c
		}
	}
	return nil
}

func (s *propSim) alive() []*propClient {
	var out []*propClient
	for _, c := range s.clients {
		if c.alive {
			out = append(out, c)
		}
	}
	return out
}

// addClient starts a client incarnation under id ("" for a new id) and registers it.
func (s *propSim) addClient(id string, capacity int) *propClient {
	if id == "" {
		id = fmt.Sprintf("c%d", s.nextID)
		s.nextID++
	}
	inc := 0
	for _, c := range s.clients {
		if c.id == id {
			inc++
			if c.registered {
				s.t.Fatalf("client %s started while an incarnation of it is registered", id)
			}
		}
	}
	c := &propClient{
		id: id, inc: inc, alive: true, registered: true, capacity: capacity, startedAt: s.now, maxEpoch: s.epoch,
		seen: map[propKey]propDecision{}, newest: map[string]int{}, active: map[propKey]*propRun{}, received: map[string]bool{},
		nextHB: s.now.Add(s.hbPhase()),
	}
	s.clients = append(s.clients, c)
	s.dirty = true
	s.logf("client %s#%d starts and registers", id, inc)
	return c
}

// killClient kills c: its runs die with it and it forgets everything. It stays registered until leave.
func (s *propSim) killClient(c *propClient) {
	c.alive = false
	for _, r := range c.active {
		r.start.stop = s.now
	}
	for _, dec := range c.seen {
		if st := dec.start; st != nil && !st.reported {
			st.died = true
		}
	}
	for exec := range c.received {
		s.vanished[propVanished{exec, c.id}] = true
	}
	// A dispatch on its way to it (sent after a note, between steps) may have been read before it died:
	// nobody can tell, as with one it received.
	for _, f := range s.outbox {
		if d, ok := f.msg.(*wire.Dispatch); ok && f.to == c {
			s.vanished[propVanished{d.ExecID, c.id}] = true
		}
	}
	c.active, c.reports, c.seen, c.newest, c.received = nil, nil, nil, nil, nil
	s.logf("client %s#%d killed", c.id, c.inc)
}

func (s *propSim) leave(c *propClient) {
	c.registered = false
	s.dirty = true
	s.logf("client %s#%d leaves the registry", c.id, c.inc)
}

// startLeader establishes a new term with a higher epoch.
func (s *propSim) startLeader() {
	if s.lead != nil {
		s.t.Fatal("a leader is already acting")
	}
	s.epoch++
	term := &propTerm{epoch: s.epoch}
	term.ctx, term.cancel = context.WithCancel(context.Background())
	cfg := s.cfg
	cfg.ID = fmt.Sprintf("server-%d", s.epoch)
	synced := make(chan struct{})
	close(synced)
	deps := leaderDeps{
		cfg: cfg, metrics: newMetrics(prometheus.NewRegistry()), now: func() time.Time { return s.now },
		store:   s.store,
		healthy: func(time.Duration) bool { return true },
		send:    func(peer string, frame []byte) error { return s.send(term, peer, frame) },
		members: s.members,
		synced:  synced,
		clientsDirty: func() bool {
			d := s.dirty
			s.dirty = false
			return d
		},
		persist: func(ev job.Event) {
			if !term.dying && !term.dead {
				s.store.record(ev)
				s.logf("leader epoch %d records %s of %s attempt %d client %q", term.epoch, ev.Kind, ev.ExecID, ev.Attempt, ev.Client)
			}
		},
		closeOpen: func(_ int64, id string, _ bool) {
			if !term.dying && !term.dead {
				s.store.closeOpen(0, id, false)
				s.logf("leader epoch %d closes %s", term.epoch, id)
			}
		},
		jitter: func() float64 { return 0.5 },
	}
	term.l = newLeader(deps, slog.New(slog.DiscardHandler), s.epoch)
	if s.asyncInserts {
		term.failedGen = -1
		term.l.pipe.cap = 1 + s.rng.IntN(4) // several inserts to a firing plan
		term.l.pipe.submit = func(c *insertChunk) {
			if term.dead {
				s.t.Fatalf("a dead leader (epoch %d) handed an insert over", term.epoch)
			}
			term.chunks = append(term.chunks, c)
		}
	}
	s.lead = term
	s.terms = append(s.terms, term)
	for _, c := range s.alive() {
		c.maxEpoch = max(c.maxEpoch, s.epoch) // clients watch the election
	}
	s.logf("leader epoch %d established", s.epoch)
	term.inherited = map[string]bool{}
	open, _, _ := s.store.ReadOpenSet(term.ctx)
	for _, e := range open {
		if e.State == job.StatePending {
			term.inherited[e.ID] = true
		}
	}
	if err := term.l.establish(term.ctx); err != nil {
		s.t.Fatalf("establish epoch %d: %v", s.epoch, err)
	}
	term.start, term.last = s.now, s.now
	if !s.asyncInserts {
		term.recordedTo = s.now // establish's inserts were made
	}
}

// killLeader ends the current term, now or at the end of this step (mid: it dies in the middle of its
// work, and what it sends and persists in this step is lost).
func (s *propSim) killLeader(mid bool) {
	if mid {
		s.lead.dying = true
		s.logf("leader epoch %d dies during this step", s.lead.epoch)
		return
	}
	s.endTerm()
}

func (s *propSim) endTerm() {
	// The inserter makes them one after another: some of them, in order, are made as the term dies, and
	// nobody hears the answers.
	made := s.rng.IntN(len(s.lead.chunks) + 1)
	for _, c := range s.lead.chunks[:made] {
		if c.gen <= s.lead.failedGen {
			continue // the inserter does not try a failed generation's
		}
		s.lead.made(c, false)
		execs := make([]job.Execution, len(c.plan))
		for i, p := range c.plan {
			execs[i] = p.exec
		}
		_, _ = s.store.InsertExecutions(context.Background(), execs)
		s.logf("leader epoch %d: an insert of %d executions lands as it dies", s.lead.epoch, len(execs))
	}
	s.lead.chunks = nil
	s.lead.dead = true
	s.lead.cancel()
	s.logf("leader epoch %d dead (last acted at +%s)", s.lead.epoch, s.lead.last.Sub(t0))
	s.lead = nil
	s.outbox = nil
}

func (s *propSim) send(term *propTerm, peer string, frame []byte) error {
	if term.dead {
		s.t.Fatalf("a dead leader (epoch %d) sent a frame", term.epoch)
	}
	c := s.registered(peer)
	if c == nil || !c.alive {
		return transport.ErrUnavailable
	}
	m, err := wire.Decode(frame)
	if err != nil {
		s.t.Fatalf("leader sent an undecodable frame: %v", err)
	}
	if !term.dying {
		s.outbox = append(s.outbox, propFrame{to: c, msg: m})
	}
	return nil
}

// step moves the clock by one tick and runs the cluster for it; chaos, if set, runs first.
func (s *propSim) step(chaos func()) {
	s.now = s.now.Add(propStep)
	if chaos != nil {
		chaos()
	}
	s.runActions()
	s.leaderStep()
	s.deliver()
	s.clientsStep()
}

func (s *propSim) runActions() {
	for {
		i := slices.IndexFunc(s.actions, func(a propAction) bool { return !a.at.After(s.now) })
		if i < 0 {
			return
		}
		a := s.actions[i]
		s.actions = slices.Delete(s.actions, i, i+1)
		a.do()
	}
}

// leaderStep does what the leader loop does in one tick: fire what is due, check the flights, and apply
// the answer of the store check that the flight check may start.
func (s *propSim) leaderStep() {
	term := s.lead
	if term == nil {
		return
	}
	l := term.l
	s.makeInserts(term)
	if err := l.fireDue(term.ctx); err != nil {
		s.t.Fatalf("fireDue: %v", err)
	}
	s.makeInserts(term)
	if err := l.checkFlights(term.ctx); err != nil {
		s.t.Fatalf("checkFlights: %v", err)
	}
	s.makeInserts(term)
	for l.reconciling {
		select {
		case n := <-l.notes:
			if err := l.handle(term.ctx, n); err != nil {
				s.t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			s.t.Fatal("the store check did not answer")
		}
	}
	term.last = s.now
	if !s.asyncInserts {
		term.recordedTo = s.now
	}
	if term.dying {
		s.endTerm()
	}
}

// made notes the scheduled times an insert the term made recorded. failed: its answer was an error, and
// the fakeStore writes before it fails; insertPlanned records the firings skipped where they were fired
// after the others, and not at all when those failed.
func (term *propTerm) made(c *insertChunk, failed bool) {
	if term.madeTo == nil {
		term.madeTo = map[string]time.Time{}
	}
	runs := slices.ContainsFunc(c.plan, func(p planned) bool { return !p.direct })
	for _, p := range c.plan {
		if p.direct && failed && runs {
			continue
		}
		if keepsSchedule(p.exec.Trigger) && p.exec.ScheduledAt.After(term.madeTo[p.exec.Job]) {
			term.madeTo[p.exec.Job] = p.exec.ScheduledAt
		}
	}
}

// makeInserts makes none, one or two of the inserts handed to the term's inserter, in order, and hands
// the loop each answer.
func (s *propSim) makeInserts(term *propTerm) {
	for n := s.rng.IntN(3); n > 0 && len(term.chunks) > 0; n-- {
		c := term.chunks[0]
		term.chunks = term.chunks[1:]
		var note insertedNote
		landed := false
		if c.gen > term.failedGen && s.rng.IntN(40) == 0 {
			// The store times out before it writes anything.
			note = insertedNote{chunk: c, err: errors.New("timeout before the write"), tried: true}
			term.failedGen = c.gen
		} else {
			note = term.l.insertChunk(term.ctx, c, &term.failedGen)
			landed = note.tried // the fakeStore writes before it fails (failInsert)
		}
		if landed { // made, though its answer may be an error
			term.made(c, note.err != nil)
		}
		ids := make([]string, len(c.plan))
		for i, p := range c.plan {
			ids[i] = p.exec.ID
		}
		s.logf("leader epoch %d: an insert answered (err %v, duplicates %v): %v", term.epoch, note.err, note.dups, ids)
		if err := term.l.handle(term.ctx, note); err != nil {
			s.t.Fatalf("inserted: %v", err)
		}
		term.l.releaseWoken()
		term.l.offerFreedRoom()
	}
}

func (s *propSim) deliver() {
	frames := s.outbox
	s.outbox = nil
	for _, f := range frames {
		if !f.to.alive {
			continue
		}
		switch m := f.msg.(type) {
		case *wire.Dispatch:
			s.onDispatch(f.to, m)
		case *wire.Stop:
			s.stopped++
		default:
			s.t.Fatalf("leader sent a %s to a client", m.Kind())
		}
	}
}

// onDispatch is what a client does with a dispatch (see client.onDispatch).
func (s *propSim) onDispatch(c *propClient, d *wire.Dispatch) {
	if d.Epoch < c.maxEpoch {
		return // a deposed leader's
	}
	c.maxEpoch = d.Epoch
	c.received[d.ExecID] = true
	run := max(d.Run, 1)
	k := propKey{d.ExecID, run}
	answer := func(dec propDecision, resend bool, delay time.Duration) {
		s.logf("%s#%d answers %s attempt %d (accept-by +%s): accepted %v %s", c.id, c.inc, d.ExecID, d.Attempt, d.AcceptBy.Sub(t0), dec.accepted, dec.code)
		a := &wire.Ack{Header: wire.Header{From: c.id, Epoch: d.Epoch, SentAt: s.now}, ExecID: d.ExecID, Job: d.Job,
			Attempt: d.Attempt, Run: run, Accepted: dec.accepted, Code: dec.code, Reason: dec.reason, At: s.now}
		c.reports = append(c.reports, &propReport{key: k, start: dec.start, ack: a, next: s.now.Add(delay), resend: resend})
	}
	if prev, ok := c.seen[k]; ok && (prev.accepted || d.Attempt <= prev.attempt) {
		answer(prev, false, 0) // the first answer again, at once
		return
	}
	if newest, ok := c.newest[d.ExecID]; ok && run < newest {
		return
	}
	dec := propDecision{attempt: d.Attempt, acceptBy: d.AcceptBy}
	switch {
	case s.now.After(d.AcceptBy):
		dec.code, dec.reason = wire.RefuseLate, "accept-by has passed"
	case len(c.active) >= c.capacity:
		dec.code, dec.reason = wire.RefuseBusy, "at capacity"
	default:
		dec.accepted = true
	}
	c.newest[d.ExecID] = max(c.newest[d.ExecID], run)
	if !dec.accepted {
		c.seen[k] = dec
		answer(dec, false, 0)
		return
	}
	st := &propStart{exec: d.ExecID, job: d.Job, run: run, attempt: d.Attempt, client: c.id, inc: c.inc, at: s.now,
		rerunnable: s.specs[d.Job].Rerunnable, epoch: d.Epoch, heardBy: map[int64]bool{}}
	dec.start = st
	c.seen[k] = dec
	s.starts = append(s.starts, st)
	c.active[k] = &propRun{d: d, key: k, endAt: s.now.Add(s.runFor(d)), start: st}
	s.logf("%s#%d starts %s run %d attempt %d", c.id, c.inc, d.ExecID, run, d.Attempt)
	answer(dec, true, 200*time.Millisecond) // held for ackDelay, then sent until recorded
}

// clientsStep ends the runs that are due, sends the reports that are due and the heartbeats.
func (s *propSim) clientsStep() {
	for _, c := range s.clients {
		if !c.alive {
			continue
		}
		for _, k := range slices.SortedFunc(maps.Keys(c.active), func(a, b propKey) int { return strings.Compare(a.exec, b.exec) }) {
			r := c.active[k]
			if r.endAt.After(s.now) {
				continue
			}
			delete(c.active, k)
			r.start.stop = s.now
			res := job.Result{Status: job.StateSucceeded, Duration: job.Duration(s.now.Sub(r.start.at))}
			if s.fails(r.d) {
				res.Status, res.ExitCode, res.Error = job.StateFailed, 1, "exit status 1"
			}
			c.reports = slices.DeleteFunc(c.reports, func(p *propReport) bool { return p.key == k && p.ack != nil && p.resend })
			c.reports = append(c.reports, &propReport{key: k, start: r.start, next: s.now, resend: true, result: &wire.Result{
				Header: wire.Header{From: c.id, Epoch: r.d.Epoch, SentAt: s.now}, ExecID: k.exec, Job: r.d.Job,
				Attempt: r.d.Attempt, Run: k.run, Result: res, StartedAt: r.start.at, FinishedAt: s.now,
			}})
			s.logf("%s#%d ends %s run %d: %s", c.id, c.inc, k.exec, k.run, res.Status)
		}
		s.sendReports(c)
		if !c.nextHB.After(s.now) {
			c.nextHB = c.nextHB.Add(2 * time.Second)
			if s.lead != nil {
				hb := &wire.Heartbeat{Header: wire.Header{From: c.id, Epoch: c.maxEpoch, SentAt: s.now}, Capacity: c.capacity}
				for _, k := range slices.SortedFunc(maps.Keys(c.active), func(a, b propKey) int { return strings.Compare(a.exec, b.exec) }) {
					hb.Running, hb.Runs = append(hb.Running, k.exec), append(hb.Runs, k.run)
					c.active[k].start.heardBy[s.lead.epoch] = true
				}
				s.tell(heartbeatNote{hb: hb})
			}
		}
		// Forget old answers, as the client does a minute after their accept-by.
		for k, dec := range c.seen {
			if _, running := c.active[k]; !running && s.now.Sub(dec.acceptBy) > propDecisionMemory &&
				!slices.ContainsFunc(c.reports, func(p *propReport) bool { return p.key == k }) {
				delete(c.seen, k)
			}
		}
	}
}

// tell hands a report to the current leader's loop, as the intake does, and lets the loop apply it.
func (s *propSim) tell(n any) {
	if err := s.lead.l.handle(s.lead.ctx, n); err != nil {
		s.t.Fatalf("leader: %v", err)
	}
	s.lead.l.releaseWoken() // as the loop does after each note
	s.lead.l.offerFreedRoom()
}

// sendReports sends c's due reports to a server: it records acks and results in the store, as the
// intake does, and tells the leader. With no leader acting the report is lost.
func (s *propSim) sendReports(c *propClient) {
	var keep []*propReport
	for _, p := range c.reports {
		if p.next.After(s.now) {
			keep = append(keep, p)
			continue
		}
		if s.lead == nil {
			if p.resend {
				p.next = s.now.Add(time.Second)
				keep = append(keep, p)
			}
			continue
		}
		relayed := !s.lossy(p)
		switch {
		case p.ack != nil:
			a := p.ack
			if a.Accepted {
				id := job.EventID(a.ExecID, job.EventAcked, a.Attempt)
				s.store.record(job.Event{ID: id, ExecID: a.ExecID, Job: a.Job, Kind: job.EventAcked, Attempt: a.Attempt,
					Run: max(a.Run, 1), Client: a.From, At: a.At})
				if p.start.recorded.IsZero() {
					p.start.recorded = s.now
				}
			}
			if relayed {
				s.tell(ackNote{ack: a})
				if a.Accepted {
					p.start.heardBy[s.lead.epoch] = true
				}
			}
		case p.result != nil:
			r := p.result
			res := r.Result
			run := max(r.Run, 1)
			s.store.record(job.Event{ID: job.EventID(r.ExecID, job.EventFinished, run), ExecID: r.ExecID, Job: r.Job,
				Kind: job.EventFinished, Attempt: r.Attempt, Run: run, Client: r.From, At: r.FinishedAt, Result: &res})
			p.start.reported = true
			if p.start.recorded.IsZero() {
				p.start.recorded = s.now
			}
			if relayed {
				p.start.heardBy[s.lead.epoch] = true
				s.tell(resultNote{result: r})
				s.tell(recordedNote{ids: []string{r.ExecID}, runs: []int{run}})
			}
		}
		if !relayed {
			s.logf("the relay of %s's report on %s to the leader is lost", c.id, p.key.exec)
		}
	}
	c.reports = keep
}

// grid is a random duration in [0, d] on the tick grid.
func (s *propSim) grid(d time.Duration) time.Duration {
	return time.Duration(s.rng.IntN(int(d/propStep)+1)) * propStep
}

// randomRun drives the simulation for chaos, with random kills, departures and restarts, then lets it
// settle with a leader acting and at least one client alive.
func (s *propSim) randomRun(clients int, chaos, settle time.Duration) {
	thr := s.cfg.MisfireThreshold
	for range clients {
		s.addClient("", 12)
	}
	s.at(t0.Add(s.grid(3*thr)), "leader", s.startLeader)
	killLeaderEvery, killClientEvery, loseInsertEvery := 30*time.Second, 20*time.Second, 40*time.Second
	end := t0.Add(chaos)
	chaosStep := func() {
		if s.lead != nil && s.rng.Float64() < float64(propStep)/float64(killLeaderEvery) {
			mid := s.rng.IntN(3) == 0
			s.killLeader(mid)
			next := s.now.Add(s.grid(3 * thr))
			if mid && !next.After(s.now) {
				next = s.now.Add(propStep) // the next leader establishes once this one is dead
			}
			s.at(next, "leader", s.startLeader)
		}
		if alive := s.alive(); len(alive) > 0 && s.rng.Float64() < float64(propStep)/float64(killClientEvery) {
			c := alive[s.rng.IntN(len(alive))]
			s.killClient(c)
			s.at(s.now.Add(s.cfg.ZooKeeper.SessionTimeout+s.grid(3*time.Second)), "leave", func() {
				s.leave(c)
				if s.rng.IntN(4) == 0 {
					return // gone for good
				}
				id := ""
				if s.rng.IntN(2) == 0 {
					id = c.id
				}
				s.at(s.now.Add(s.grid(15*time.Second)), "restart", func() { s.addClient(id, 12) })
			})
		}
		if s.rng.Float64() < float64(propStep)/float64(loseInsertEvery) {
			s.store.mu.Lock()
			s.store.failInsert = 1 // the next insert lands, but its answer is lost
			s.store.mu.Unlock()
			s.logf("the answer to the next insert will be lost")
		}
	}
	for s.now.Before(end) {
		s.step(chaosStep)
	}
	s.logf("chaos ends")
	if s.lead == nil && !s.pendingAction("leader") {
		s.at(s.now, "leader", s.startLeader)
	}
	if len(s.alive()) == 0 {
		s.addClient("", 12)
	}
	// Short runs from now on, so that a backlog left by a long outage of every client drains.
	s.runFor = func(*wire.Dispatch) time.Duration { return time.Duration(100+s.rng.IntN(400)) * time.Millisecond }
	for stop := s.now.Add(settle); s.now.Before(stop); {
		s.step(nil)
	}
	if s.lead == nil {
		s.t.Fatal("no leader at the end")
	}
	// The inserts still on their way are answered before the check, as they would be a moment later.
	for len(s.lead.chunks) > 0 {
		s.makeInserts(s.lead)
	}
}

// propTolerateKnownBugs makes the property test count (and log), not fail on, the violations of the two
// known bugs that TestPropertyBugInheritedPendingIsSentWithoutAStoreCheck and
// TestPropertyBugAnInheritedExecutionIsOrphanedUnderAnOlderAttempt show, each recognised by its exact
// signature. Set it to false once they are fixed.
const propTolerateKnownBugs = false

// inheritedBlind reports whether b is the known bug's second run of a: a new term inherited the execution
// as pending, a's result (or ack) was recorded after that term read the store and its relay to the leader
// was lost, and the term sent it again after the hold without reading the store again.
func (s *propSim) inheritedBlind(a, b *propStart) bool {
	i := slices.IndexFunc(s.terms, func(t *propTerm) bool { return t.epoch == b.epoch })
	if i < 0 || b.epoch <= a.epoch {
		return false
	}
	term := s.terms[i]
	return term.inherited[b.exec] && !a.recorded.IsZero() && !a.recorded.Before(term.start) && !a.heardBy[b.epoch]
}

// propExpected is an execution the fire-once rules call for.
type propExpected struct {
	job     string
	at      time.Time
	trigger job.Trigger
	missed  int
}

// expected computes, from the terms alone, what the firing rules owe for each job: within a term every
// fire time fires once, on schedule; a new term fires, from the job's last recorded firing (or its
// ActiveSince), each time newer than start - MisfireThreshold on schedule, and the older times as one
// catch-up at the latest of them, its Missed counting the others (firing.go's owed: misfired times are
// in (from, cut], cut = start - threshold included).
func (s *propSim) expected() map[string]propExpected {
	out := map[string]propExpected{}
	thr := s.cfg.MisfireThreshold
	for _, spec := range s.specs {
		sched, err := schedule.Parse(spec.Schedule, spec.TimeZone)
		if err != nil {
			s.t.Fatal(err)
		}
		add := func(at time.Time, trigger job.Trigger, missed int) {
			out[job.ExecutionID(spec.Name, at)] = propExpected{job: spec.Name, at: at, trigger: trigger, missed: missed}
		}
		last := spec.ActiveSince.Add(-time.Nanosecond)
		for _, term := range s.terms {
			upTo := term.recordedTo
			if s.asyncInserts {
				upTo = term.madeTo[spec.Name]
			}
			if upTo.IsZero() {
				continue // it recorded nothing of the job (its inserts were never made): as if it never led
			}
			if cut := term.start.Add(-thr); last.Before(cut) {
				missed, _ := sched.Between(last, cut, maxMissedCount)
				if n := len(missed); n > 0 {
					add(missed[n-1], job.TriggerCatchUp, n-1)
					s.stats.catchUps++
					if missed[n-1].Equal(cut) {
						s.stats.atThreshold++ // late by exactly the threshold: a misfire
					}
				}
				last = cut
			}
			times, _ := sched.Between(last, upTo, maxMissedCount)
			for _, at := range times {
				add(at, job.TriggerSchedule, 0)
				if !at.After(term.start) {
					s.stats.late++ // came due while no leader acted; fired late, within the threshold
				}
			}
			if n := len(times); n > 0 {
				last = times[n-1]
			}
		}
	}
	return out
}

// check verifies the three properties and returns what fails.
func (s *propSim) check() []string {
	var bad []string
	execs := s.store.fold(nil)

	// 1. No (execution, run) started twice; no execution of a job that is not rerunnable started twice at
	// all. A rerunnable one may run again, but never while its earlier run is still going on a live client.
	byKey := map[propKey][]*propStart{}
	byExec := map[string][]*propStart{}
	for _, st := range s.starts {
		k := propKey{st.exec, st.run}
		byKey[k] = append(byKey[k], st)
		byExec[st.exec] = append(byExec[st.exec], st)
	}
	describe := func(ss []*propStart) string {
		var parts []string
		for _, st := range ss {
			parts = append(parts, fmt.Sprintf("run %d attempt %d on %s#%d at +%s", st.run, st.attempt, st.client, st.inc, st.at.Sub(t0)))
		}
		return strings.Join(parts, ", ")
	}
	for _, exec := range slices.Sorted(maps.Keys(byExec)) {
		ss := byExec[exec]
		for i, b := range ss {
			for _, a := range ss[:i] {
				switch {
				case a.run == b.run && (a.stop.IsZero() || a.stop.After(b.at)):
					bad = append(bad, fmt.Sprintf("1: %s ran on two clients at once: %s", exec, describe([]*propStart{a, b})))
				case b.rerunnable:
				case a.died && a.epoch != b.epoch && !a.knownTo(b.epoch, b.at):
					// a started, and its client died before any server recorded its ack or told the leader
					// that sent b, an earlier term's: nothing in the store says to whom that term sent it,
					// so a new leader cannot tell it from a dispatch that never arrived, and sends the
					// inherited pending execution again after the hold: the README's known gap, the limit of
					// acknowledging after starting. Within one term the leader knows where it sent it and
					// must not.
					s.unseen++
					s.logf("run again after an unseen start: %s: %s", exec, describe([]*propStart{a, b}))
				case propTolerateKnownBugs && s.inheritedBlind(a, b):
					s.knownBugs++
					s.logf("known bug (TestPropertyBugInheritedPendingIsSentWithoutAStoreCheck): %s ran twice: %s", exec, describe([]*propStart{a, b}))
				default:
					bad = append(bad, fmt.Sprintf("1: %s ran twice: %s", exec, describe([]*propStart{a, b})))
				}
			}
		}
	}

	// 2. None lost under fire-once: the executions recorded are exactly those the rules owe.
	want := s.expected()
	got := map[string]job.Execution{}
	for _, e := range execs {
		got[e.ID] = e
	}
	for _, id := range slices.Sorted(maps.Keys(want)) {
		w := want[id]
		e, ok := got[id]
		switch {
		case !ok:
			bad = append(bad, fmt.Sprintf("2: lost: %s (%s, missed %d) was never recorded", id, w.trigger, w.missed))
		case e.Trigger != w.trigger || e.Missed != w.missed:
			bad = append(bad, fmt.Sprintf("2: %s recorded as %s missed %d, want %s missed %d", id, e.Trigger, e.Missed, w.trigger, w.missed))
		}
	}
	for _, e := range execs {
		if _, ok := want[e.ID]; !ok {
			bad = append(bad, fmt.Sprintf("2: %s (%s, missed %d) recorded, but the rules owe no such firing", e.ID, e.Trigger, e.Missed))
		}
	}

	// 3. Every execution ended, or is open for a reason the current leader tracks: orphaned because its
	// client died running it, running on a live client, or pending since lately.
	l := s.lead.l
	orphanedBy := map[string]string{}
	s.store.mu.Lock()
	for _, ev := range s.store.events {
		if ev.Kind == job.EventOrphaned {
			orphanedBy[ev.ExecID] = ev.Client
		}
	}
	s.store.mu.Unlock()
	for _, e := range execs {
		if e.State.Terminal() {
			continue
		}
		f, tracked := l.flights[e.ID]
		if !tracked {
			bad = append(bad, fmt.Sprintf("3: %s is %s and the leader does not track it", e.ID, e.State))
			continue
		}
		switch e.State {
		case job.StateOrphaned:
			// The client is the one named by the orphaned event: the store folds an execution's client
			// from its ack, and the leader may have learnt of the run from a heartbeat only.
			// It is orphaned for a reason if that client died running it, or died after it was sent it
			// (it may have started it, and nobody can tell if its answer was lost).
			client := orphanedBy[e.ID]
			died := slices.ContainsFunc(byKey[propKey{e.ID, e.Run}], func(st *propStart) bool { return st.client == client && st.died })
			if !(died || s.vanished[propVanished{e.ID, client}]) || f.phase != phaseOrphaned {
				bad = append(bad, fmt.Sprintf("3: %s is orphaned (leader: %v) but client %q did not vanish with it: %s", e.ID, f.phase == phaseOrphaned, client, describe(byExec[e.ID])))
			}
		case job.StateRunning:
			c := s.registered(e.Client)
			switch {
			case c != nil && c.alive && c.active[propKey{e.ID, e.Run}] != nil:
			case propTolerateKnownBugs && f.phase == phaseOrphaned && f.attempt < e.Attempt:
				s.knownBugs++
				s.logf("known bug (TestPropertyBugAnInheritedExecutionIsOrphanedUnderAnOlderAttempt): %s is orphaned under attempt %d, recorded running under attempt %d", e.ID, f.attempt, e.Attempt)
			default:
				bad = append(bad, fmt.Sprintf("3: %s is running on %s, which does not run it: %s", e.ID, e.Client, describe(byExec[e.ID])))
			}
		default:
			if s.now.Sub(e.FiredAt) > 20*time.Second {
				bad = append(bad, fmt.Sprintf("3: %s is still %s, %s after it was fired (leader: client %q phase %s check %v held until +%s): %s",
					e.ID, e.State, s.now.Sub(e.FiredAt), f.client, f.phase, f.check, f.heldUntil.Sub(t0), describe(byExec[e.ID])))
			}
		}
	}
	// 4. The open set holds every execution that has not ended (a new leader reads only it), and of the
	// ended ones only each job's latest scheduled firing that entered it (not one skipped where it was
	// fired) and what ended since the last sweep could close it.
	latest := map[string]time.Time{}
	for _, e := range execs {
		if keepsSchedule(e.Trigger) && !s.store.skippedAtFiring[e.ID] && e.ScheduledAt.After(latest[e.Job]) {
			latest[e.Job] = e.ScheduledAt
		}
	}
	for _, e := range execs {
		open := s.store.isOpen(e.ID)
		switch {
		case !e.State.Terminal() && !open:
			bad = append(bad, fmt.Sprintf("4: %s is %s but was taken out of the open set", e.ID, e.State))
		case e.State.Terminal() && open && !(keepsSchedule(e.Trigger) && e.ScheduledAt.Equal(latest[e.Job])) &&
			s.now.Sub(e.FinishedAt) > openSweepEvery+30*time.Second:
			bad = append(bad, fmt.Sprintf("4: %s ended at +%s and is still in the open set", e.ID, e.FinishedAt.Sub(t0)))
		}
	}
	if s.stopped > 0 {
		bad = append(bad, fmt.Sprintf("%d stop frames sent, none expected", s.stopped))
	}
	// 4. With inserts off the loop, the last term still fires: what it recorded of each job reaches the
	// job's last time before its last step (the expected firings above follow what was recorded, so
	// a term that stopped firing would pass them).
	if s.asyncInserts && s.lead != nil {
		for _, name := range slices.Sorted(maps.Keys(s.specs)) {
			sched, _ := schedule.Parse(s.specs[name].Schedule, s.specs[name].TimeZone)
			due := sched.Latest(s.lead.start, s.lead.last.Add(-time.Second))
			if got := s.lead.madeTo[name]; !due.IsZero() && got.Before(due) {
				bad = append(bad, fmt.Sprintf("4: the last term recorded %s up to +%s only; its time +%s was due before its last step", name, got.Sub(t0), due.Sub(t0)))
			}
		}
	}
	return bad
}

func (s *propSim) report(t *testing.T, bad []string) {
	t.Helper()
	if len(bad) > 0 {
		t.Error(s.describe(bad))
	} else if os.Getenv("CLOVER_PROPERTY_LOG") != "" {
		t.Log(s.describe(nil))
	}
}

// describe lists what failed, the terms, and the end of the simulation's log (with CLOVER_PROPERTY_LOG=text, the
// lines about the cluster and those that contain text).
func (s *propSim) describe(bad []string) string {
	var terms []string
	for _, term := range s.terms {
		terms = append(terms, fmt.Sprintf("epoch %d: +%s..+%s", term.epoch, term.start.Sub(t0), term.last.Sub(t0)))
	}
	const maxLog = 400
	log := s.log
	if text := os.Getenv("CLOVER_PROPERTY_LOG"); text != "" {
		only, ok := strings.CutPrefix(text, "only:") // only the lines that contain it
		log = slices.DeleteFunc(slices.Clone(log), func(line string) bool {
			if ok {
				return !strings.Contains(line, only)
			}
			return !strings.Contains(line, text) && !strings.Contains(line, "leader") && !strings.Contains(line, "client")
		})
	}
	if len(log) > maxLog {
		log = log[len(log)-maxLog:]
	}
	if len(bad) > 20 {
		bad = append(bad[:20], fmt.Sprintf("... and %d more", len(bad)-20))
	}
	return fmt.Sprintf("%s\nterms: %s\nlast %d events:\n%s", strings.Join(bad, "\n"), strings.Join(terms, "; "), len(log), strings.Join(log, "\n"))
}

// propJobs are the jobs of the property test: fire-once (the default misfire policy), overlap allow (every
// time runs) and forbid (the default), and one rerunnable job.
func propJobs() []job.Spec {
	allow := func(s *job.Spec) { s.Overlap = job.OverlapAllow }
	return []job.Spec{
		spec("every1-allow", "@every 1s", allow),
		spec("every2-forbid", "@every 2s", nil),
		spec("cron3-forbid", "*/3 * * * * ?", nil),
		spec("cron5-allow", "0/5 * * * * ?", allow),
		spec("every2-rerunnable", "@every 2s", func(s *job.Spec) { s.Overlap = job.OverlapAllow; s.Rerunnable = true }),
	}
}

// randomSim runs the simulation of seed: 2-4 clients, 150 s of random kills, restarts and lost answers,
// then a minute to settle.
func randomSim(t *testing.T, seed uint64, async bool) *propSim {
	rng := rand.New(rand.NewPCG(seed, 0x636c6f766572))
	s := newPropSim(t, rng, propJobs()...)
	s.asyncInserts = async
	s.runFor = func(*wire.Dispatch) time.Duration {
		if rng.IntN(10) == 0 {
			return time.Duration(5000+rng.IntN(15000)) * time.Millisecond // long: spans kills and overlaps
		}
		return time.Duration(100+rng.IntN(4000)) * time.Millisecond
	}
	s.fails = func(*wire.Dispatch) bool { return rng.IntN(10) == 0 }
	s.lossy = func(*propReport) bool { return rng.IntN(50) == 0 }
	s.randomRun(2+rng.IntN(3), 150*time.Second, time.Minute)
	return s
}

func TestPropertyFiringsRunOnceAndNoneIsLostAcrossKills(t *testing.T) {
	propertyRuns(t, false)
}

// The same with the inserts made off the loop, as a server makes them: the placeholders of what is being
// recorded, answers that come steps later, failed inserts whose successors are not tried, and terms that
// die with inserts made or not.
func TestPropertyFiringsRunOnceAndNoneIsLostWithInsertsOffTheLoop(t *testing.T) {
	propertyRuns(t, true)
}

func propertyRuns(t *testing.T, async bool) {
	seeds := 200
	if testing.Short() {
		seeds = 8
	}
	if n, err := strconv.Atoi(os.Getenv("CLOVER_PROPERTY_SEEDS")); err == nil && n > 0 {
		seeds = n // a longer search: CLOVER_PROPERTY_SEEDS=1000 go test -run Property ./server/
	}
	for seed := uint64(1); seed <= uint64(seeds); seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			t.Parallel()
			s := randomSim(t, seed, async)
			bad := s.check()
			t.Logf("seed %d: %d terms, %d client incarnations, %d executions (%d catch-ups, %d of them at the threshold, %d fired late within it), %d runs; %d run again after an unseen start, %d of a known bug",
				seed, len(s.terms), len(s.clients), len(s.store.ids()), s.stats.catchUps, s.stats.atThreshold, s.stats.late, len(s.starts), s.unseen, s.knownBugs)
			if len(bad) > 0 {
				t.Logf("seed %d fails; rerun with -run 'Property.*/seed=%d$'", seed, seed)
			}
			s.report(t, bad)
		})
	}
}

// scripted runs a simulation of the given jobs and clients (capacity 12 each), with a leader from t0, the
// given actions at their offsets from t0, until until; every run lasts runFor.
func scripted(t *testing.T, specs []job.Spec, clients int, runFor time.Duration, until time.Duration, script map[time.Duration]func(s *propSim)) *propSim {
	s := newPropSim(t, rand.New(rand.NewPCG(1, 2)), specs...)
	s.runFor = func(*wire.Dispatch) time.Duration { return runFor }
	s.hbPhase = func() time.Duration { return 500 * time.Millisecond } // heartbeats at +0.5s, +2.5s...
	t.Cleanup(func() {
		if os.Getenv("CLOVER_PROPERTY_LOG") != "" {
			t.Log(s.describe(nil))
		}
	})
	for range clients {
		s.addClient("", 12)
	}
	s.startLeader()
	for at, do := range script {
		s.at(t0.Add(at), "script", func() { do(s) })
	}
	for s.now.Before(t0.Add(until)) {
		s.step(nil)
	}
	return s
}

// starts lists the clients that started exec, as "client#incarnation".
func (s *propSim) startsOf(exec string) []string {
	var out []string
	for _, st := range s.starts {
		if st.exec == exec {
			out = append(out, fmt.Sprintf("%s#%d", st.client, st.inc))
		}
	}
	return out
}

// byID is the client incarnation registered or last started under id.
func (s *propSim) byID(id string) *propClient {
	var last *propClient
	for _, c := range s.clients {
		if c.id == id {
			last = c
		}
	}
	return last
}

func TestPropertyASilentClientThatRestartsIsNotSentTheOldDispatch(t *testing.T) {
	// c0 accepts, and is killed before its ack leaves; it leaves the registry and restarts with the same
	// id, empty-handed, before the dispatch's accept-by. The leader must not send the old dispatch to the new
	// process, which would start it again.
	once := spec("once", "@at 2026-03-01T12:00:01Z", nil)
	id := job.ExecutionID("once", t0.Add(time.Second))
	s := scripted(t, []job.Spec{once}, 1, 30*time.Second, 30*time.Second, map[time.Duration]func(*propSim){
		1250 * time.Millisecond: func(s *propSim) { s.killClient(s.byID("c0")) },
		3500 * time.Millisecond: func(s *propSim) { s.leave(s.byID("c0")) },
		4 * time.Second:         func(s *propSim) { s.addClient("c0", 12) },
	})
	if got := s.startsOf(id); len(got) != 1 {
		t.Fatalf("%s started on %v, want once\n%s", id, got, s.describe(nil))
	}
}

func TestPropertyInheritedPendingIsCheckedBeforeItIsSent(t *testing.T) {
	// Leader 1 sends the firing to c0, which runs it and dies; no server records anything while no leader
	// acts. Leader 2 inherits the execution as pending and holds it. c0's re-sent result reaches a server,
	// which records it, but its relay to leader 2 is lost (a follower that does not know the new leader
	// yet, a full note queue); c0 has its receipt and stops sending. When the hold ends, leader 2 sends the
	// execution to c1 without asking the store, and it runs a second time.
	once := spec("once", "@at 2026-03-01T12:00:01Z", nil)
	id := job.ExecutionID("once", t0.Add(time.Second))
	s := scripted(t, []job.Spec{once}, 2, time.Second, 30*time.Second, map[time.Duration]func(*propSim){
		1250 * time.Millisecond: func(s *propSim) { s.killLeader(false) }, // c0's ack, due at +1.2s, is lost
		2500 * time.Millisecond: func(s *propSim) {
			s.startLeader() // inherits the execution pending, held until +9.5s
			s.lossy = func(p *propReport) bool { return p.result != nil && p.result.From == "c0" }
		},
		3250 * time.Millisecond: func(s *propSim) { s.killClient(s.byID("c0")) }, // its result recorded at +3s
		5500 * time.Millisecond: func(s *propSim) { s.leave(s.byID("c0")) },
	})
	if e := s.store.fold([]string{id}); len(e) != 1 || e[0].State != job.StateSucceeded {
		t.Fatalf("the store does not say %s succeeded: %+v", id, e)
	}
	if got := s.startsOf(id); len(got) != 1 {
		t.Fatalf("%s started on %v, want once\n%s", id, got, s.describe(nil))
	}
}

func TestPropertyAnInheritedExecutionIsOrphanedUnderItsAckedAttempt(t *testing.T) {
	// Leader 1 sends the firing to c0 (attempt 1) and dies before c0's ack is recorded. Leader 2 inherits
	// it as pending (attempt 0 in the store); c0's re-sent ack reaches it and is recorded. Then c0 dies
	// mid-run: leader 2 orphans the execution, but records the orphaned event under its flight's attempt,
	// still 0. The store orders an execution's events by attempt, so the orphaned event folds before the
	// ack of attempt 1 and the execution reads as running on the vanished client.
	once := spec("once", "@at 2026-03-01T12:00:01Z", nil)
	id := job.ExecutionID("once", t0.Add(time.Second))
	s := scripted(t, []job.Spec{once}, 1, time.Minute, 20*time.Second, map[time.Duration]func(*propSim){
		1250 * time.Millisecond: func(s *propSim) { s.killLeader(false) },
		1500 * time.Millisecond: func(s *propSim) { s.startLeader() },
		3 * time.Second:         func(s *propSim) { s.killClient(s.byID("c0")) }, // after its ack is recorded at +2.25s
		5 * time.Second:         func(s *propSim) { s.leave(s.byID("c0")) },
	})
	if f := s.lead.l.flights[id]; f == nil || f.phase != phaseOrphaned {
		t.Fatalf("the leader does not hold %s orphaned\n%s", id, s.describe(nil))
	}
	if e := s.store.fold([]string{id}); len(e) != 1 || e[0].State != job.StateOrphaned {
		t.Fatalf("the leader orphaned %s, the store says %s (events %+v)\n%s", id, e[0].State, s.store.byExec[id], s.describe(nil))
	}
}

func TestPropertyCheckCatchesViolations(t *testing.T) {
	// The checks themselves: a clean run passes; a lost firing, a wrong Missed, a second run and an
	// execution nobody tracks are each reported.
	s := randomSim(t, 1, false)
	if bad := s.check(); len(bad) > 0 {
		t.Fatalf("seed 1 fails: %s", strings.Join(bad, "\n"))
	}
	var lost, catchUp, ran string
	for _, e := range s.store.fold(nil) {
		switch {
		case lost == "" && e.Trigger == job.TriggerSchedule:
			lost = e.ID
		case catchUp == "" && e.Trigger == job.TriggerCatchUp:
			catchUp = e.ID
		}
	}
	for _, st := range s.starts {
		if !st.rerunnable {
			ran = st.exec
			s.starts = append(s.starts, &propStart{exec: st.exec, job: st.job, run: st.run, attempt: st.attempt + 1,
				client: "other", at: st.at.Add(time.Minute), stop: st.at.Add(2 * time.Minute), epoch: st.epoch, heardBy: map[int64]bool{}})
			break
		}
	}
	if lost == "" || catchUp == "" || ran == "" {
		t.Fatalf("seed 1 has no execution to tamper with: %q %q %q", lost, catchUp, ran)
	}
	stuck := job.Execution{ID: "every1-allow@manual-x", Job: "every1-allow", Trigger: job.TriggerManual, FiredAt: t0, State: job.StatePending}
	closedEarly := job.Execution{ID: "every1-allow@manual-y", Job: "every1-allow", Trigger: job.TriggerManual, FiredAt: t0, State: job.StatePending}
	s.store.mu.Lock()
	s.store.execs[closedEarly.ID] = closedEarly
	s.store.shut[closedEarly.ID] = true
	s.store.mu.Unlock()
	// An ended execution nobody closed, long ago (not its job's latest firing).
	var leftOpen string
	for _, e := range s.store.fold(nil) { // sorted by id: the oldest firings of each job first
		if leftOpen == "" && e.Trigger == job.TriggerSchedule && e.ID != lost && e.State.Terminal() && s.now.Sub(e.FinishedAt) > 2*time.Minute {
			leftOpen = e.ID
		}
	}
	s.store.mu.Lock()
	delete(s.store.shut, leftOpen)
	delete(s.store.execs, lost)
	e := s.store.execs[catchUp]
	e.Missed++
	s.store.execs[catchUp] = e
	s.store.execs[stuck.ID] = stuck
	s.store.mu.Unlock()
	bad := strings.Join(s.check(), "\n")
	for _, want := range []string{
		"2: lost: " + lost,
		"2: " + catchUp + " recorded as catch-up missed",
		"1: " + ran + " ran twice",
		"3: " + stuck.ID + " is pending and the leader does not track it",
		"4: " + closedEarly.ID + " is pending but was taken out of the open set",
		"4: " + leftOpen + " ended at",
	} {
		if !strings.Contains(bad, want) {
			t.Errorf("the checks do not report %q; they report:\n%s", want, bad)
		}
	}
}
