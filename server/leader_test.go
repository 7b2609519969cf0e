package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/registry"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/transport"
	"github.com/clover-sched/clover/internal/wire"
)

// fakeStore keeps executions in memory with the one guarantee the real store gives: an execution id is
// inserted once.
type fakeStore struct {
	mu          sync.Mutex
	jobs        map[string]job.Spec
	execs       map[string]job.Execution
	events      map[string]job.Event
	lastFired   map[string]time.Time // job -> the scheduled time of an ended firing the open set keeps for it
	shut        map[string]bool      // ids of executions taken out of the open set (which holds every other)
	closed      []string             // ids closed, in order
	stats       map[string]job.Stats
	failInsert  int                  // the next n inserts store the executions but report an error (a lost answer)
	inserts     []int                // the size of each insert
	skipInserts int                  // of which RecordSkipped
	skippedLast map[string]time.Time // RecordSkipped's latest firing on schedule of each job
	// skippedAtFiring: the ids RecordSkipped recorded, which never entered the open set
	skippedAtFiring map[string]bool
	failReads       int // the next n reads of the open set time out
	// history: ids recorded in the history besides those closed (shut) here, e.g. by a skip of another
	// term whose copy a deposed leader left in the open set
	history map[string]bool
	// failHistory: the next n reads of the history (InHistory) fail
	failHistory int
	claimErr    error
}

func newFakeStore(specs ...job.Spec) *fakeStore {
	fs := &fakeStore{jobs: map[string]job.Spec{}, execs: map[string]job.Execution{}, events: map[string]job.Event{}, lastFired: map[string]time.Time{}, shut: map[string]bool{}, stats: map[string]job.Stats{}}
	for _, s := range specs {
		fs.jobs[s.Name] = s
	}
	return fs
}

var _ leaderStore = (*fakeStore)(nil)

func (f *fakeStore) ClaimEpoch(context.Context, int64, string) error { return f.claimErr }
func (f *fakeStore) ListJobs(context.Context) ([]job.Spec, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []job.Spec
	for _, s := range f.jobs {
		out = append(out, s)
	}
	return out, nil
}
func (f *fakeStore) GetJob(_ context.Context, name string) (job.Spec, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.jobs[name]
	if !ok {
		return s, store.ErrNotFound
	}
	return s, nil
}
func (f *fakeStore) CountJobs(context.Context) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return int64(len(f.jobs)), nil
}
func (f *fakeStore) CreateJob(_ context.Context, s job.Spec) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jobs[s.Name] = s
	return nil
}
func (f *fakeStore) ReplaceJob(_ context.Context, s job.Spec, _ int64) error {
	return f.CreateJob(nil, s)
}
func (f *fakeStore) MigrateOpenSet(context.Context, time.Time) (int, error) { return 0, nil }

// ReadOpenSet returns the executions in the open set, and for each lastFired entry an ended firing of its
// job at that time (what the set keeps for a job whose latest firing ended).
func (f *fakeStore) ReadOpenSet(context.Context) ([]job.Execution, []string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failReads > 0 {
		f.failReads--
		return nil, nil, context.DeadlineExceeded
	}
	var out []job.Execution
	for _, e := range f.folded() {
		if !f.shut[e.ID] {
			out = append(out, e)
		}
	}
	for name, at := range f.lastFired {
		id := job.ExecutionID(name, at)
		if _, ok := f.execs[id]; !ok {
			out = append(out, job.Execution{ID: id, Job: name, ScheduledAt: at, Trigger: job.TriggerSchedule, State: job.StateSucceeded})
		}
	}
	slices.SortStableFunc(out, func(a, b job.Execution) int { return a.ScheduledAt.Compare(b.ScheduledAt) })
	return out, nil, nil
}
func (f *fakeStore) OpenByID(_ context.Context, ids []string) ([]job.Execution, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []job.Execution
	for _, e := range f.folded() {
		if !f.shut[e.ID] && slices.Contains(ids, e.ID) {
			out = append(out, e)
		}
	}
	return out, nil
}
func (f *fakeStore) InHistory(_ context.Context, ids []string) (map[string]bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failHistory > 0 && len(ids) > 0 {
		f.failHistory--
		return nil, context.DeadlineExceeded
	}
	out := map[string]bool{}
	for _, id := range ids {
		if f.shut[id] || f.history[id] {
			out[id] = true
		}
	}
	return out, nil
}
func (f *fakeStore) ExecutionRecorded(_ context.Context, id string, _ time.Time) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.execs[id]
	return ok, nil
}
func (f *fakeStore) closeOpen(_ int64, id string, _ bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.shut[id] = true
	f.closed = append(f.closed, id)
}
func (f *fakeStore) InsertExecutions(_ context.Context, execs []job.Execution) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inserts = append(f.inserts, len(execs))
	var dups []string
	for _, e := range execs {
		if _, ok := f.execs[e.ID]; ok {
			// Fired before: the store keeps the copy it has, and drops the one this insert would bring
			// back if the execution was closed (ended, in the history).
			dups = append(dups, e.ID)
			continue
		}
		delete(f.shut, e.ID)
		f.execs[e.ID] = e
	}
	if f.failInsert > 0 {
		f.failInsert--
		return nil, errors.New("connection reset")
	}
	return dups, nil
}
func (f *fakeStore) RecordSkipped(_ context.Context, _ store.HistorySeries, execs []job.Execution, _ time.Time) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inserts = append(f.inserts, len(execs))
	f.skipInserts++
	var dups []string
	for _, e := range execs {
		if _, ok := f.execs[e.ID]; ok {
			dups = append(dups, e.ID)
			continue
		}
		// Ended and closed at once: in the store, never in the open set.
		f.execs[e.ID] = e
		for _, ev := range e.Runs {
			f.events[ev.ID] = ev
		}
		f.shut[e.ID] = true
		if f.skippedAtFiring == nil {
			f.skippedAtFiring = map[string]bool{}
		}
		f.skippedAtFiring[e.ID] = true
		if keepsSchedule(e.Trigger) && e.ScheduledAt.After(f.skippedLast[e.Job]) {
			if f.skippedLast == nil {
				f.skippedLast = map[string]time.Time{}
			}
			f.skippedLast[e.Job] = e.ScheduledAt
		}
	}
	if f.failInsert > 0 {
		f.failInsert--
		return nil, errors.New("connection reset")
	}
	return dups, nil
}
func (f *fakeStore) LatestSkipped(context.Context, string) (map[string]time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.skippedLast), nil
}
func (f *fakeStore) ListStats(context.Context) (map[string]job.Stats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]job.Stats{}
	for k, v := range f.stats {
		out[k] = v
	}
	return out, nil
}
func (f *fakeStore) SaveStats(_ context.Context, stats []job.Stats) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, st := range stats {
		f.stats[st.Job] = st
	}
	return nil
}
func (f *fakeStore) folded() []job.Execution {
	var evs []job.Event
	for _, ev := range f.events {
		evs = append(evs, ev)
	}
	var out []job.Execution
	for _, e := range f.execs {
		e.Fold(evs)
		out = append(out, e)
	}
	return out
}
func (f *fakeStore) ids() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for id := range f.execs {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// harness is a leader with fake dependencies and a clock that moves only when told.
type harness struct {
	t        *testing.T
	l        *leader
	store    *fakeStore
	now      time.Time
	clients  []registry.Member
	down     map[string]bool
	sent     []sent
	stops    []stopSent
	receipts []*wire.Receipt
	healthy  bool
	events   []job.Event
	dirty    bool // the client registry changed
}

type sent struct {
	peer string
	d    *wire.Dispatch
}

type stopSent struct {
	peer string
	stop *wire.Stop
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// created is just after t0: jobs created then owe nothing at t0 itself.
var created = t0.Add(time.Millisecond)

func newHarness(t *testing.T, fs *fakeStore, clients ...string) *harness {
	h := &harness{t: t, store: fs, now: t0, down: map[string]bool{}, healthy: true}
	for _, c := range clients {
		h.clients = append(h.clients, registry.Member{ID: c, Handlers: []string{"shell"}})
	}
	cfg := DefaultConfig()
	cfg.ZooKeeper.SessionTimeout = 2 * time.Second
	synced := make(chan struct{})
	close(synced)
	deps := leaderDeps{
		cfg: cfg, metrics: newMetrics(prometheus.NewRegistry()), now: func() time.Time { return h.now },
		store:   fs,
		healthy: func(time.Duration) bool { return h.healthy },
		send: func(peer string, frame []byte) error {
			if h.down[peer] {
				return transport.ErrUnavailable
			}
			m, err := wire.Decode(frame)
			if err != nil {
				t.Fatalf("leader sent an undecodable frame: %v", err)
			}
			switch m := m.(type) {
			case *wire.Dispatch:
				h.sent = append(h.sent, sent{peer: peer, d: m})
			case *wire.Stop:
				h.stops = append(h.stops, stopSent{peer: peer, stop: m})
			case *wire.Receipt:
				h.receipts = append(h.receipts, m)
			default:
				t.Fatalf("leader sent a %s to a client", m.Kind())
			}
			return nil
		},
		members: func() []registry.Member { return h.clients },
		synced:  synced,
		persist: func(ev job.Event) {
			h.events = append(h.events, ev)
			fs.mu.Lock()
			if _, ok := fs.events[ev.ID]; !ok {
				fs.events[ev.ID] = ev
			}
			fs.mu.Unlock()
		},
		closeOpen: fs.closeOpen,
		jitter:    func() float64 { return 0.5 },
		clientsDirty: func() bool {
			d := h.dirty
			h.dirty = false
			return d
		},
	}
	h.l = newLeader(deps, slog.New(slog.DiscardHandler), 7)
	return h
}

func (h *harness) establish() {
	h.t.Helper()
	if err := h.l.establish(context.Background()); err != nil {
		h.t.Fatal(err)
	}
}

// advance moves the clock and runs what the loop would: due firings and the flight check.
func (h *harness) advance(d time.Duration) {
	h.t.Helper()
	h.now = h.now.Add(d)
	if err := h.l.fireDue(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	if err := h.l.checkFlights(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	// A store check runs off the loop: wait for its answer and apply it, as the loop would.
	for h.l.reconciling {
		select {
		case n := <-h.l.notes:
			if err := h.l.handle(context.Background(), n); err != nil {
				h.t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			h.t.Fatal("the store check did not answer")
		}
	}
}

func (h *harness) sentTo(peer string) []sent {
	return slices.DeleteFunc(slices.Clone(h.sent), func(s sent) bool { return s.peer != peer })
}

func shellJob(name, sched string, activeSince time.Time) job.Spec {
	// The tests written before overlap policies existed fire alongside open executions.
	return job.Spec{Name: name, Schedule: sched, Handler: "shell", Params: map[string]string{"command": "true"}, Version: 1, ActiveSince: activeSince,
		Overlap: job.OverlapAllow}
}

func ids(name string, times ...time.Time) []string {
	var out []string
	for _, t := range times {
		out = append(out, job.ExecutionID(name, t))
	}
	slices.Sort(out)
	return out
}

func TestEachScheduledTimeFiresOnceToOneClient(t *testing.T) {
	h := newHarness(t, newFakeStore(shellJob("tick", "@every 1s", created)), "a", "b")
	h.establish()
	for range 4 {
		h.advance(time.Second)
	}
	want := ids("tick", t0.Add(time.Second), t0.Add(2*time.Second), t0.Add(3*time.Second), t0.Add(4*time.Second))
	if got := h.store.ids(); !slices.Equal(got, want) {
		t.Fatalf("recorded %v, want %v", got, want)
	}
	// Without acks the leader re-sends, but each execution only ever to the client it chose.
	to := map[string]string{}
	for _, s := range h.sent {
		if prev, ok := to[s.d.ExecID]; ok && prev != s.peer {
			t.Fatalf("%s sent to %s and %s", s.d.ExecID, prev, s.peer)
		}
		to[s.d.ExecID] = s.peer
	}
	if len(to) != 4 || len(h.sentTo("a")) == 0 || len(h.sentTo("b")) == 0 {
		t.Fatalf("dispatched %v, want 4 executions spread over a and b", to)
	}
}

func TestCatchUpAfterALeaderChange(t *testing.T) {
	for name, tc := range map[string]struct {
		// spec
		lastFired time.Time // zero: no firing recorded recently
		// expectations
		schedule, catchUp int
	}{
		"a short gap runs each time late":        {lastFired: t0.Add(-5 * time.Second), schedule: 5},
		"a long gap runs once for the old times": {lastFired: t0.Add(-time.Hour), schedule: 15, catchUp: 1},
		"nothing recorded since the job exists":  {schedule: 15, catchUp: 1},
		"fired just now: nothing owed":           {lastFired: t0},
	} {
		t.Run(name, func(t *testing.T) {
			fs := newFakeStore(shellJob("tick", "@every 1s", t0.Add(-24*time.Hour)))
			if !tc.lastFired.IsZero() {
				fs.lastFired["tick"] = tc.lastFired
			}
			h := newHarness(t, fs, "a")
			h.establish()
			var schedule, catchUp int
			for _, e := range fs.execs {
				switch e.Trigger {
				case job.TriggerSchedule:
					schedule++
				case job.TriggerCatchUp:
					catchUp++
					if !e.ScheduledAt.Equal(t0.Add(-h.l.cfg.MisfireThreshold)) {
						t.Errorf("catch-up for %s, want the latest missed time %s", e.ScheduledAt, t0.Add(-h.l.cfg.MisfireThreshold))
					}
				}
			}
			if schedule != tc.schedule || catchUp != tc.catchUp {
				t.Fatalf("fired %d on schedule and %d catch-up, want %d and %d", schedule, catchUp, tc.schedule, tc.catchUp)
			}
		})
	}
}

func TestAStalledLoopCoalescesMissedTimes(t *testing.T) {
	h := newHarness(t, newFakeStore(shellJob("tick", "@every 1s", created)), "a")
	h.establish()
	h.advance(time.Minute) // the loop did not run for a minute
	var schedule, catchUp int
	for _, e := range h.store.execs {
		if e.Trigger == job.TriggerCatchUp {
			catchUp++
		} else {
			schedule++
		}
	}
	if catchUp != 1 || schedule != 15 {
		t.Fatalf("after a 60s stall: %d catch-up and %d scheduled, want 1 and 15", catchUp, schedule)
	}
}

func TestAJobChangedWhenDueStillFires(t *testing.T) {
	fs := newFakeStore(shellJob("daily", "0 0 13 * * ?", t0))
	h := newHarness(t, fs, "a")
	h.establish()
	h.now = t0.Add(time.Hour + 300*time.Millisecond) // 13:00:00.3, the loop busy until now
	changed := fs.jobs["daily"]
	changed.Version, changed.Contacts = 2, []string{"ops@example.com"}
	h.l.setJob(changed)
	h.advance(0)
	if got, want := h.store.ids(), ids("daily", t0.Add(time.Hour)); !slices.Equal(got, want) {
		t.Fatalf("recorded %v, want %v", got, want)
	}
}

func TestASilentLiveClientKeepsItsExecution(t *testing.T) {
	h := newHarness(t, newFakeStore(shellJob("tick", "@at 2026-03-01T12:00:01Z", t0)), "a", "b")
	h.establish()
	h.advance(time.Second)
	first := h.sent[0].peer
	for range 40 { // 20 seconds, far past accept-by, without an ack
		h.advance(500 * time.Millisecond)
	}
	for _, s := range h.sent {
		if s.peer != first || s.d.Attempt != 1 {
			t.Fatalf("sent attempt %d to %s; want only re-sends of attempt 1 to %s", s.d.Attempt, s.peer, first)
		}
	}
	// Re-sends back off: after 1s, 2s, 4s, 8s... (ack timeout 2s, doubling).
	if len(h.sent) != 4 {
		t.Fatalf("%d sends in 20s without an ack, want 4 (the dispatch and re-sends backing off)", len(h.sent))
	}
}

func TestARefusalMovesTheExecutionWithANewAttempt(t *testing.T) {
	h := newHarness(t, newFakeStore(shellJob("once", "@at 2026-03-01T12:00:01Z", t0)), "a", "b")
	h.establish()
	h.advance(time.Second)
	first := h.sent[0]
	h.l.onAck(&wire.Ack{Header: wire.Header{From: first.peer}, ExecID: first.d.ExecID, Attempt: 1, Accepted: false, Reason: "busy"})
	h.advance(250 * time.Millisecond)
	if len(h.sent) != 2 || h.sent[1].peer == first.peer || h.sent[1].d.Attempt != 2 {
		t.Fatalf("after a refusal by %s: sends %+v, want attempt 2 to the other client", first.peer, h.sent)
	}
	h.l.onAck(&wire.Ack{Header: wire.Header{From: first.peer}, ExecID: first.d.ExecID, Attempt: 1, Accepted: false})
	h.l.onAck(&wire.Ack{Header: wire.Header{From: h.sent[1].peer}, ExecID: first.d.ExecID, Attempt: 2, Accepted: true})
	for range 20 {
		h.advance(time.Second)
	}
	if len(h.sent) != 2 {
		t.Fatalf("an acknowledged execution was sent again: %+v", h.sent[2:])
	}
}

func TestADepartedClientsExecutionMovesOnlyAfterAcceptBy(t *testing.T) {
	s := shellJob("once", "@at 2026-03-01T12:00:01Z", t0)
	s.Rerunnable = true
	h := newHarness(t, newFakeStore(s), "a", "b")
	h.establish()
	h.advance(time.Second)
	gone := h.sent[0].peer
	h.clients = slices.DeleteFunc(h.clients, func(m registry.Member) bool { return m.ID == gone })
	h.down[gone] = true
	h.l.rebuildEligibility()
	acceptBy := h.sent[0].d.AcceptBy
	for h.now.Before(acceptBy.Add(h.l.cfg.AckTimeout)) {
		h.advance(250 * time.Millisecond)
		if len(h.sent) > 1 && h.now.Before(acceptBy.Add(h.l.cfg.AckTimeout)) {
			t.Fatalf("re-dispatched at %s, before accept-by %s plus the ack timeout", h.now.Format(time.StampMilli), acceptBy.Format(time.StampMilli))
		}
	}
	h.advance(250 * time.Millisecond) // the store says it has not finished
	h.advance(250 * time.Millisecond)
	if len(h.sent) != 2 || h.sent[1].peer == gone || h.sent[1].d.Attempt != 2 {
		t.Fatalf("sends %+v, want attempt 2 to the remaining client", h.sent)
	}
}

// A job that must not run twice is not sent elsewhere when the client it was sent to goes away without a
// word (it may have started it and died before its ack was recorded): it is orphaned. So is it when the
// client comes back under the same id, without memory of what it was sent.
func TestAnUnansweredDispatchToAVanishedClientIsOrphaned(t *testing.T) {
	for name, vanish := range map[string]func(h *harness, gone string){
		"the client left": func(h *harness, gone string) {
			h.clients = slices.DeleteFunc(h.clients, func(m registry.Member) bool { return m.ID == gone })
			h.down[gone] = true
		},
		"the client restarted": func(h *harness, gone string) {
			for i := range h.clients {
				if h.clients[i].ID == gone {
					h.clients[i].StartedAt = h.now
				}
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, newFakeStore(shellJob("once", "@at 2026-03-01T12:00:01Z", t0)), "a", "b")
			h.establish()
			h.advance(time.Second)
			gone := h.sent[0].peer
			vanish(h, gone)
			h.l.rebuildEligibility()
			for range 12 {
				h.advance(time.Second)
			}
			if n := len(firstAttemptsAll(h.sent)); n != 1 {
				t.Fatalf("dispatched %d attempts, want only the first", n)
			}
			if got := h.state(h.sent[0].d.ExecID); got != job.StateOrphaned {
				t.Fatalf("state %s, want orphaned", got)
			}
		})
	}
}

// An inherited pending execution is held past the earlier term's accept-by, asked about in the store
// (the open set, and the history: see TestAnInheritedCopyOfAFiringRecordedInTheHistoryDoesNotRun), then
// sent once.
func TestInheritedExecutionsWaitForTheOldAcceptBy(t *testing.T) {
	fs := newFakeStore(shellJob("once", "@at 2026-03-01T11:59:59Z", t0.Add(-time.Hour)))
	old := job.Execution{ID: job.ExecutionID("once", t0.Add(-time.Second)), Job: "once", ScheduledAt: t0.Add(-time.Second), Epoch: 6, Handler: "shell", Trigger: job.TriggerSchedule}
	fs.execs[old.ID] = old
	h := newHarness(t, fs, "a")
	h.establish()
	held := h.l.cfg.AcceptWindow + h.l.cfg.AckTimeout
	for h.now.Before(t0.Add(held)) {
		if len(h.sent) > 0 {
			t.Fatalf("dispatched an inherited execution at +%s, before +%s", h.now.Sub(t0), held)
		}
		h.advance(250 * time.Millisecond)
	}
	h.advance(250 * time.Millisecond)
	if len(h.sent) != 1 || h.sent[0].d.ExecID != old.ID {
		t.Fatalf("sends %+v, want the inherited execution once", h.sent)
	}
}

func TestAnInsertThatLandedDespiteAnErrorIsDispatchedOnce(t *testing.T) {
	fs := newFakeStore(shellJob("tick", "@every 1s", created))
	h := newHarness(t, fs, "a")
	h.establish()
	fs.failInsert = 1
	h.now = t0.Add(time.Second)
	if err := h.l.fireDue(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(h.sent) != 0 {
		t.Fatalf("dispatched %d executions whose insert reported an error", len(h.sent))
	}
	h.advance(0) // the retry finds the execution recorded, by this term: ours to dispatch
	if len(h.sent) != 1 || h.sent[0].d.ExecID != job.ExecutionID("tick", t0.Add(time.Second)) {
		t.Fatalf("sends %+v, want the landed execution once", h.sent)
	}
	h.advance(0)
	if len(h.sent) != 1 {
		t.Fatalf("sent again: %+v", h.sent)
	}
}

func TestAnUnconfirmedSessionStopsTheTerm(t *testing.T) {
	h := newHarness(t, newFakeStore(shellJob("tick", "@every 1s", created)), "a")
	h.establish()
	h.healthy = false
	h.now = t0.Add(time.Second)
	if err := h.l.fireDue(context.Background()); !errors.Is(err, errUnconfirmed) {
		t.Fatalf("fireDue with an unconfirmed session: err = %v, want errUnconfirmed", err)
	}
	if len(h.store.execs) != 0 || len(h.sent) != 0 {
		t.Fatalf("recorded %d and sent %d while unconfirmed", len(h.store.execs), len(h.sent))
	}
}

func TestARunningExecutionOfAClientThatLeftIsOrphaned(t *testing.T) {
	h := newHarness(t, newFakeStore(shellJob("once", "@at 2026-03-01T12:00:01Z", t0)), "a")
	h.establish()
	h.advance(time.Second)
	h.l.onAck(&wire.Ack{Header: wire.Header{From: "a"}, ExecID: h.sent[0].d.ExecID, Attempt: 1, Accepted: true})
	h.clients = nil
	h.l.rebuildEligibility()
	lostAfter := h.l.cfg.ZooKeeper.SessionTimeout + h.l.cfg.AckTimeout
	for elapsed := time.Duration(0); elapsed <= lostAfter; elapsed += 250 * time.Millisecond {
		h.advance(250 * time.Millisecond)
		if len(h.events) > 0 && elapsed < lostAfter {
			t.Fatalf("marked lost after %s, before %s", elapsed, lostAfter)
		}
	}
	h.advance(250 * time.Millisecond) // the store is asked whether the run ended
	h.advance(250 * time.Millisecond)
	if len(h.events) != 1 || h.events[0].Kind != job.EventOrphaned {
		t.Fatalf("events %+v, want one orphaned event", h.events)
	}
	if f := h.l.flights[h.sent[0].d.ExecID]; f == nil || f.phase != phaseOrphaned {
		t.Fatal("an orphaned execution is not tracked as such")
	}
	if len(h.sent) != 1 {
		t.Fatalf("an orphaned execution was dispatched again: %d dispatches", len(h.sent))
	}
}

func TestManyJobsDueTogetherAreOneInsert(t *testing.T) {
	var specs []job.Spec
	for i := range 100 {
		specs = append(specs, shellJob(fmt.Sprintf("j%03d", i), "@every 1s", created))
	}
	fs := newFakeStore(specs...)
	h := newHarness(t, fs, "a", "b", "c")
	h.establish()
	h.advance(time.Second)
	if len(fs.execs) != 100 || len(h.sent) != 100 {
		t.Fatalf("recorded %d, sent %d; want 100 each", len(fs.execs), len(h.sent))
	}
}

func TestALateRefusalOfAFinishedExecutionDoesNotRunItAgain(t *testing.T) {
	fs := newFakeStore(shellJob("once", "@at 2026-03-01T12:00:01Z", t0))
	h := newHarness(t, fs, "a", "b")
	h.establish()
	h.advance(time.Second)
	first := h.sent[0]
	// The client ran it and its result was recorded, but the note never reached the leader; much later
	// the client, having forgotten it, refuses a re-send as late.
	fs.mu.Lock()
	fs.events["r"] = job.Event{ID: "r", ExecID: first.d.ExecID, Kind: job.EventFinished, Result: &job.Result{Status: job.StateSucceeded}}
	fs.mu.Unlock()
	h.l.onAck(&wire.Ack{Header: wire.Header{From: first.peer}, ExecID: first.d.ExecID, Attempt: 1, Code: wire.RefuseLate})
	for range 10 {
		h.advance(250 * time.Millisecond)
	}
	if len(h.sent) != 1 {
		t.Fatalf("a finished execution was dispatched again: %+v", h.sent[1:])
	}
	if _, tracked := h.l.flights[first.d.ExecID]; tracked {
		t.Fatal("the finished execution is still tracked")
	}
}

func TestARecordedAckTheLeaderMissedKeepsTheExecutionWhereItRuns(t *testing.T) {
	fs := newFakeStore(shellJob("once", "@at 2026-03-01T12:00:01Z", t0))
	h := newHarness(t, fs, "a", "b")
	h.establish()
	h.advance(time.Second)
	first := h.sent[0]
	// The client acked through another server, which recorded it; the relay to the leader was lost. Then
	// the client's ZooKeeper session ended while it kept running.
	fs.mu.Lock()
	fs.events["ack"] = job.Event{ID: "ack", ExecID: first.d.ExecID, Kind: job.EventAcked, Attempt: 1, Client: first.peer}
	fs.mu.Unlock()
	h.clients = slices.DeleteFunc(h.clients, func(m registry.Member) bool { return m.ID == first.peer })
	h.down[first.peer] = true
	h.dirty = true
	for range 40 {
		h.advance(250 * time.Millisecond)
	}
	if len(h.sent) != 1 {
		t.Fatalf("a running execution was dispatched again: %+v", h.sent[1:])
	}
}

func TestAnOldSnapshotDoesNotReviveADeletedJob(t *testing.T) {
	fs := newFakeStore(shellJob("gone", "@every 1s", created))
	h := newHarness(t, fs, "a")
	h.establish()
	specs, _ := fs.ListJobs(context.Background())
	taken := h.now
	h.now = h.now.Add(100 * time.Millisecond)
	delete(fs.jobs, "gone")
	h.l.removeJob("gone") // the DELETE reached the loop before the snapshot read earlier
	h.l.applySnapshot(specs, taken)
	if _, ok := h.l.jobs["gone"]; ok {
		t.Fatal("a snapshot read before the delete brought the job back")
	}
}

func TestAReportedResultIsKeptUntilRecorded(t *testing.T) {
	for name, recorded := range map[string]bool{"a server records it": true, "no server does": false} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, newFakeStore(shellJob("once", "@at 2026-03-01T12:00:01Z", t0)), "a")
			h.establish()
			h.advance(time.Second)
			id := h.sent[0].d.ExecID
			h.l.onResult(&wire.Result{Header: wire.Header{From: "a"}, ExecID: id, Job: "once", Attempt: 1,
				Result: job.Result{Status: job.StateSucceeded}, FinishedAt: h.now})
			if recorded {
				if err := h.l.handle(context.Background(), recordedNote{ids: []string{id}}); err != nil {
					t.Fatal(err)
				}
			}
			for range 8 {
				h.advance(10 * time.Second)
			}
			if len(h.sent) != 1 {
				t.Fatalf("an execution that reported its result was sent again: %+v", h.sent[1:])
			}
			if _, tracked := h.l.flights[id]; tracked {
				t.Fatal("still tracked after resultGrace")
			}
			wantEvents := 0
			if !recorded {
				wantEvents = 1 // the leader records the result itself
			}
			if len(h.events) != wantEvents || (wantEvents == 1 && (h.events[0].Kind != job.EventFinished || h.events[0].Result.Status != job.StateSucceeded)) {
				t.Fatalf("events %+v, want %d finished event(s) from the leader", h.events, wantEvents)
			}
		})
	}
}

// A takeover read that times out is tried again within the term, which then takes over and fires; a store
// that records a newer leader ends the term at once.
func TestEstablishTriesTheOpenSetAgainAndStepsDownOnlyWhenFenced(t *testing.T) {
	fs := newFakeStore(shellJob("tick", "@every 1s", t0.Add(-time.Hour)))
	fs.lastFired["tick"] = t0.Add(-2 * time.Second)
	fs.failReads = 2
	h := newHarness(t, fs, "a")
	h.establish() // about two seconds: one between tries
	if fs.failReads != 0 {
		t.Fatalf("%d failed reads left: the term did not try again", fs.failReads)
	}
	if len(h.sent) == 0 {
		t.Fatal("the term took over but fired nothing owed")
	}

	fenced := newFakeStore()
	fenced.claimErr = store.ErrFenced
	h2 := newHarness(t, fenced, "a")
	if err := h2.l.establish(context.Background()); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("establish against a fenced store = %v, want ErrFenced", err)
	}
}
