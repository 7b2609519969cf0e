package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/registry"
	"github.com/clover-sched/clover/internal/wire"
)

// Unit tests of the scheduling policies, on the leader harness (fake store, fake clock, fake clients).

// ack tells the leader that peer accepted d, and records the ack, as a server's intake would.
func (h *harness) ack(peer string, d *wire.Dispatch) {
	h.l.onAck(&wire.Ack{Header: wire.Header{From: peer}, ExecID: d.ExecID, Job: d.Job, Attempt: d.Attempt, Run: d.Run, Accepted: true, At: h.now})
	id := job.EventID(d.ExecID, job.EventAcked, d.Attempt)
	h.store.mu.Lock()
	h.store.events[id] = job.Event{ID: id, ExecID: d.ExecID, Job: d.Job, Kind: job.EventAcked, Attempt: d.Attempt, Run: max(d.Run, 1), Client: peer, At: h.now}
	h.store.mu.Unlock()
}

// finish reports d's run ended with status, and says it is recorded, as a server's intake would.
func (h *harness) finish(peer string, d *wire.Dispatch, status job.State) {
	res := job.Result{Status: status, Duration: job.Duration(time.Second)}
	r := &wire.Result{Header: wire.Header{From: peer}, ExecID: d.ExecID, Job: d.Job, Attempt: d.Attempt, Run: d.Run, Result: res, FinishedAt: h.now}
	h.l.onResult(r)
	run := max(d.Run, 1)
	h.store.mu.Lock()
	id := job.EventID(d.ExecID, job.EventFinished, run)
	h.store.events[id] = job.Event{ID: id, ExecID: d.ExecID, Job: d.Job, Kind: job.EventFinished, Attempt: d.Attempt, Run: run, Client: peer, At: h.now, Result: &res}
	h.store.mu.Unlock()
	h.l.recorded(d.ExecID, run)
	h.l.releaseWoken() // as the loop does after each note
	h.l.offerFreedRoom()
}

func (h *harness) heartbeat(peer string, ids ...string) {
	h.l.onHeartbeat(&wire.Heartbeat{Header: wire.Header{From: peer}, Running: ids})
}

func (h *harness) state(id string) job.State {
	h.t.Helper()
	for _, e := range h.store.folded() {
		if e.ID == id {
			return e.State
		}
	}
	h.t.Fatalf("execution %s not recorded", id)
	return ""
}

func (h *harness) lastTo(peer string) *wire.Dispatch {
	h.t.Helper()
	s := h.sentTo(peer)
	if len(s) == 0 {
		h.t.Fatalf("nothing sent to %s", peer)
	}
	return s[len(s)-1].d
}

func spec(name, sched string, mutate func(*job.Spec)) job.Spec {
	s := job.Spec{Name: name, Schedule: sched, Handler: "shell", Params: map[string]string{"command": "true"}, Version: 1, ActiveSince: created}
	if mutate != nil {
		mutate(&s)
	}
	return s
}

func TestMisfirePolicies(t *testing.T) {
	for name, tc := range map[string]struct {
		// spec
		misfire job.Misfire
		// expectations, for an every-minute job last fired 10 minutes before the new leader starts
		runs    []time.Duration // scheduled times dispatched, as offsets from t0
		skipped []time.Duration // scheduled times recorded as skipped
		missed  int             // Missed on the first execution made
	}{
		"fire-once runs the latest missed time": {
			misfire: job.Misfire{}, runs: []time.Duration{10 * time.Minute}, missed: 9,
		},
		"skip records one skipped execution": {
			misfire: job.Misfire{Policy: job.MisfireSkip}, skipped: []time.Duration{10 * time.Minute}, missed: 9,
		},
		"fire-all runs the latest limit of them": {
			misfire: job.Misfire{Policy: job.MisfireFireAll, Limit: 3},
			runs:    []time.Duration{8 * time.Minute, 9 * time.Minute, 10 * time.Minute}, missed: 7,
		},
	} {
		t.Run(name, func(t *testing.T) {
			s := spec("m", "0 * * * * ?", func(s *job.Spec) { s.Misfire = tc.misfire; s.Overlap = job.OverlapAllow })
			s.ActiveSince = t0.Add(-time.Hour)
			fs := newFakeStore(s)
			fs.lastFired["m"] = t0
			h := newHarness(t, fs, "a")
			h.now = t0.Add(10*time.Minute + 30*time.Second) // the misfire threshold (15s) is long past
			h.establish()
			var runs []time.Duration
			for _, x := range h.sent {
				runs = append(runs, x.d.ScheduledAt.Sub(t0))
			}
			if !slices.Equal(runs, tc.runs) {
				t.Fatalf("dispatched %v, want %v", runs, tc.runs)
			}
			var skipped []time.Duration
			for _, e := range fs.folded() {
				if e.State == job.StateSkipped {
					skipped = append(skipped, e.ScheduledAt.Sub(t0))
				}
				if e.Trigger != job.TriggerCatchUp {
					t.Errorf("%s has trigger %s, want catch-up", e.ID, e.Trigger)
				}
			}
			if !slices.Equal(skipped, tc.skipped) {
				t.Fatalf("skipped %v, want %v", skipped, tc.skipped)
			}
			first := fs.execs[job.ExecutionID("m", t0.Add(slices.Min(append(slices.Clone(tc.runs), tc.skipped...))))]
			if first.Missed != tc.missed {
				t.Fatalf("missed = %d, want %d", first.Missed, tc.missed)
			}
		})
	}
}

func TestAResumedJobOwesWhatItMissedWhilePaused(t *testing.T) {
	s := spec("p", "0 * * * * ?", nil)
	fs := newFakeStore(s)
	h := newHarness(t, fs, "a")
	h.establish()
	h.advance(time.Minute) // fires t0+1m
	h.finish("a", h.lastTo("a"), job.StateSucceeded)
	paused := s
	paused.Paused, paused.Version = true, 2
	fs.jobs["p"] = paused
	h.l.handle(context.Background(), jobChanged{name: "p"})
	h.advance(10*time.Minute + 30*time.Second)
	if len(h.sent) != 1 {
		t.Fatalf("a paused job was dispatched: %d dispatches", len(h.sent))
	}
	resumed := s
	resumed.Version = 3
	fs.jobs["p"] = resumed
	h.l.handle(context.Background(), jobChanged{name: "p"})
	h.advance(time.Millisecond)
	if len(h.sent) != 2 || h.sent[1].d.Trigger != job.TriggerCatchUp || !h.sent[1].d.ScheduledAt.Equal(t0.Add(11*time.Minute)) {
		t.Fatalf("after resume sent %d, last %+v; want one catch-up for 12:11", len(h.sent), h.sent[len(h.sent)-1].d)
	}
}

func TestOverlapPolicies(t *testing.T) {
	for name, tc := range map[string]struct {
		overlap string
		// after the second firing, while the first still runs
		dispatched int  // executions dispatched so far
		skipped    bool // the second firing is recorded skipped
		stopped    bool // the first got a stop frame
		// after the first ends
		dispatchedAfter int
	}{
		"forbid skips":           {overlap: "", dispatched: 1, skipped: true, dispatchedAfter: 1},
		"allow runs alongside":   {overlap: job.OverlapAllow, dispatched: 2, dispatchedAfter: 2},
		"replace stops the open": {overlap: job.OverlapReplace, dispatched: 2, stopped: true, dispatchedAfter: 2},
		"queue waits":            {overlap: job.OverlapQueue, dispatched: 1, dispatchedAfter: 2},
	} {
		t.Run(name, func(t *testing.T) {
			fs := newFakeStore(spec("o", "0 * * * * ?", func(s *job.Spec) { s.Overlap = tc.overlap }))
			h := newHarness(t, fs, "a", "b")
			h.establish()
			h.advance(time.Minute)
			first := h.sent[0]
			h.ack(first.peer, first.d)
			h.heartbeat(first.peer, first.d.ExecID)
			h.advance(time.Minute)
			if len(h.sent) != tc.dispatched {
				t.Fatalf("dispatched %d, want %d", len(h.sent), tc.dispatched)
			}
			second := job.ExecutionID("o", t0.Add(2*time.Minute))
			if got := h.state(second) == job.StateSkipped; got != tc.skipped {
				t.Fatalf("second firing skipped = %v, want %v", got, tc.skipped)
			}
			if got := len(h.stops) > 0 && h.stops[0].stop.ExecID == first.d.ExecID && h.stops[0].peer == first.peer; got != tc.stopped {
				t.Fatalf("stop of the first = %v, want %v (stops %+v)", got, tc.stopped, h.stops)
			}
			h.finish(first.peer, first.d, job.StateSucceeded)
			h.advance(time.Second)
			if len(h.sent) != tc.dispatchedAfter {
				t.Fatalf("after the first ended dispatched %d, want %d", len(h.sent), tc.dispatchedAfter)
			}
		})
	}
}

func TestAManualTriggerObeysForbid(t *testing.T) {
	fs := newFakeStore(spec("f", "0 0 * * * ?", nil))
	h := newHarness(t, fs, "a")
	h.establish()
	id, err := h.l.trigger(context.Background(), "f", map[string]string{"x": "1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.l.trigger(context.Background(), "f", nil); !errors.Is(err, errOverlap) {
		t.Fatalf("second trigger while %s is open: err = %v, want errOverlap", id, err)
	}
	h.finish("a", h.lastTo("a"), job.StateSucceeded)
	if _, err := h.l.trigger(context.Background(), "f", nil); err != nil {
		t.Fatalf("trigger after the first ended: %v", err)
	}
}

func TestRoutingHonoursLabelsPinsAndCapacity(t *testing.T) {
	members := []registry.Member{
		{ID: "lin1", Handlers: []string{"shell"}, Capacity: 1, Labels: map[string]string{"os": "linux"}},
		{ID: "lin2", Handlers: []string{"shell"}, Capacity: 5, Width: 10, Labels: map[string]string{"os": "linux"}},
		{ID: "win1", Handlers: []string{"shell"}, Capacity: 5, Labels: map[string]string{"os": "windows"}},
	}
	for name, tc := range map[string]struct {
		routing job.Routing
		fires   int
		want    []string // peers of the dispatches, in order; "" marks none
		waiting int
	}{
		"labels":                 {routing: job.Routing{Labels: map[string]string{"os": "windows"}}, fires: 2, want: []string{"win1", "win1"}},
		"pinned":                 {routing: job.Routing{Clients: []string{"lin2"}}, fires: 2, want: []string{"lin2", "lin2"}},
		"slots fill then wait":   {routing: job.Routing{Clients: []string{"lin1"}}, fires: 2, want: []string{"lin1"}, waiting: 1},
		"width fills then waits": {routing: job.Routing{Clients: []string{"lin2"}, Width: 4}, fires: 3, want: []string{"lin2", "lin2"}, waiting: 1},
		"first":                  {routing: job.Routing{Strategy: job.RouteFirst, Labels: map[string]string{"os": "linux"}}, fires: 2, want: []string{"lin1", "lin2"}},
		"failover waits for the first": {routing: job.Routing{Strategy: job.RouteFailover, Clients: []string{"lin1", "lin2"}},
			fires: 2, want: []string{"lin1"}, waiting: 1},
		"least-busy": {routing: job.Routing{Strategy: job.RouteLeastBusy, Clients: []string{"lin2", "win1"}}, fires: 3,
			want: []string{"lin2", "win1", "lin2"}},
	} {
		t.Run(name, func(t *testing.T) {
			fs := newFakeStore(spec("r", "* * * * * ?", func(s *job.Spec) { s.Routing = tc.routing; s.Overlap = job.OverlapAllow }))
			h := newHarness(t, fs)
			h.clients = members
			h.establish()
			for range tc.fires {
				h.advance(time.Second)
				h.runEverything()
			}
			peers := firstAttempts(h.sent)
			if !slices.Equal(peers, tc.want) {
				t.Fatalf("dispatched to %v, want %v", peers, tc.want)
			}
			waiting := 0
			for _, v := range h.l.inflight("", 1000) {
				if v.Status == "waiting" {
					waiting++
				}
			}
			if waiting != tc.waiting {
				t.Fatalf("%d waiting, want %d", waiting, tc.waiting)
			}
		})
	}
}

// runEverything makes the clients accept every execution sent to them and list what they run in a
// heartbeat, as live clients do.
func (h *harness) runEverything() {
	for _, s := range h.sent {
		if f := h.l.flights[s.d.ExecID]; f != nil && f.phase == phaseDispatched && f.client == s.peer && f.attempt == s.d.Attempt {
			h.ack(s.peer, s.d)
		}
	}
	byClient := map[string][]string{}
	for id, f := range h.l.flights {
		if f.phase == phaseRunning {
			byClient[f.client] = append(byClient[f.client], id)
		}
	}
	for c, ids := range byClient {
		h.heartbeat(c, ids...)
	}
}

// firstAttempts lists the peer of each execution's first dispatch, in order.
func firstAttempts(all []sent) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range all {
		if !seen[s.d.ExecID] {
			seen[s.d.ExecID] = true
			out = append(out, s.peer)
		}
	}
	return out
}

func TestAWaitingExecutionGoesOutWhenRoomFrees(t *testing.T) {
	fs := newFakeStore(spec("w", "* * * * * ?", func(s *job.Spec) { s.Overlap = job.OverlapAllow; s.Schedule = "@at 2026-03-01T12:00:01Z" }))
	fs.jobs["w2"] = spec("w2", "@at 2026-03-01T12:00:02Z", func(s *job.Spec) { s.Overlap = job.OverlapAllow })
	h := newHarness(t, fs)
	h.clients = []registry.Member{{ID: "a", Handlers: []string{"shell"}, Capacity: 1}}
	h.establish()
	h.advance(time.Second)
	h.runEverything()
	for range 20 { // the second waits as long as the first runs
		h.advance(time.Second)
		h.runEverything()
	}
	if len(firstAttempts(h.sent)) != 1 {
		t.Fatalf("dispatched %d with one slot, want 1", len(firstAttempts(h.sent)))
	}
	h.finish("a", h.sent[0].d, job.StateSucceeded)
	h.advance(250 * time.Millisecond)
	if got := firstAttempts(h.sent); len(got) != 2 {
		t.Fatalf("after the slot freed dispatched %v, want the waiting one too", got)
	}
}

func TestConsistentHashKeepsAKeyOnOneClient(t *testing.T) {
	fs := newFakeStore(spec("h", "0 * * * * ?", func(s *job.Spec) {
		s.Routing = job.Routing{Strategy: job.RouteConsistentHash, HashKey: "tenant"}
		s.Params["tenant"] = "acme"
		s.Overlap = job.OverlapAllow
	}))
	h := newHarness(t, fs, "a", "b", "c", "d")
	h.establish()
	for range 5 {
		h.advance(time.Minute)
	}
	peers := firstAttempts(h.sent)
	if len(peers) != 5 || slices.Compact(slices.Clone(peers))[0] != peers[0] || len(slices.Compact(slices.Clone(peers))) != 1 {
		t.Fatalf("consistent-hash dispatched to %v, want one client every time", peers)
	}
	if want := job.HashClient("acme", []string{"a", "b", "c", "d"}); peers[0] != want {
		t.Fatalf("client %s, want %s", peers[0], want)
	}
}

func TestShardingBroadcastSpreadsShards(t *testing.T) {
	fs := newFakeStore(spec("s", "0 * * * * ?", func(s *job.Spec) {
		s.Routing = job.Routing{Strategy: job.RouteShardBroadcast, ShardItems: []string{"eu", "us", "asia"}}
	}))
	h := newHarness(t, fs, "a", "b", "c")
	h.establish()
	h.advance(time.Minute)
	if len(h.sent) != 3 {
		t.Fatalf("dispatched %d, want one per shard (3)", len(h.sent))
	}
	fire := job.ExecutionID("s", t0.Add(time.Minute))
	peers := map[string]bool{}
	for i, s := range h.sent {
		sh := s.d.Shard
		if s.d.ExecID != job.ShardExecutionID(fire, sh.Index) || sh.Total != 3 || sh.Item != []string{"eu", "us", "asia"}[sh.Index] {
			t.Fatalf("dispatch %d: %s shard %+v", i, s.d.ExecID, sh)
		}
		peers[s.peer] = true
	}
	if len(peers) != 3 {
		t.Fatalf("shards went to %v, want three clients", peers)
	}
}

func TestAFailedRunIsRetriedWithBackoff(t *testing.T) {
	fs := newFakeStore(spec("r", "@at 2026-03-01T12:00:01Z", func(s *job.Spec) {
		s.Retry = job.Retry{Max: 2, Backoff: job.BackoffExponential, Delay: job.Duration(10 * time.Second)}
	}))
	h := newHarness(t, fs, "a")
	h.establish()
	h.advance(time.Second)
	d := h.lastTo("a")
	h.ack("a", d)
	h.finish("a", d, job.StateFailed)
	if got := h.state(d.ExecID); got != job.StateRetrying {
		t.Fatalf("state after a failed first run = %s, want retrying", got)
	}
	h.advance(9 * time.Second)
	if len(h.sent) != 1 {
		t.Fatal("retried before the 10s backoff")
	}
	h.advance(time.Second)
	d2 := h.lastTo("a")
	if d2.Run != 2 || d2.Attempt != 2 {
		t.Fatalf("retry dispatch run %d attempt %d, want run 2 attempt 2", d2.Run, d2.Attempt)
	}
	h.ack("a", d2)
	h.finish("a", d2, job.StateFailed)
	h.advance(19 * time.Second)
	if len(h.sent) != 2 {
		t.Fatal("second retry before the doubled 20s backoff")
	}
	h.advance(time.Second)
	d3 := h.lastTo("a")
	h.ack("a", d3)
	h.finish("a", d3, job.StateFailed)
	if got := h.state(d.ExecID); got != job.StateFailed {
		t.Fatalf("state after the last run failed = %s, want failed", got)
	}
	if _, ok := h.l.flights[d.ExecID]; ok {
		t.Fatal("still tracked after its last run")
	}
	e := fs.folded()[0]
	if len(e.Runs) != 3 {
		t.Fatalf("%d runs recorded, want 3", len(e.Runs))
	}
}

func TestRetryDelays(t *testing.T) {
	for name, tc := range map[string]struct {
		retry job.Retry
		run   int
		rnd   float64
		want  time.Duration
	}{
		"fixed default":           {retry: job.Retry{Max: 3}, run: 3, rnd: 0.5, want: 10 * time.Second},
		"exponential":             {retry: job.Retry{Backoff: job.BackoffExponential, Delay: job.Duration(time.Second)}, run: 4, rnd: 0.5, want: 4 * time.Second},
		"exponential capped":      {retry: job.Retry{Backoff: job.BackoffExponential, Delay: job.Duration(time.Minute), MaxDelay: job.Duration(5 * time.Minute)}, run: 10, rnd: 0.5, want: 5 * time.Minute},
		"jitter low end":          {retry: job.Retry{Delay: job.Duration(10 * time.Second), Jitter: 0.2}, run: 2, rnd: 0, want: 8 * time.Second},
		"jitter high end (below)": {retry: job.Retry{Delay: job.Duration(10 * time.Second), Jitter: 0.2}, run: 2, rnd: 0.75, want: 11 * time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			if got := tc.retry.DelayBefore(tc.run, tc.rnd); got != tc.want {
				t.Fatalf("DelayBefore(%d) = %s, want %s", tc.run, got, tc.want)
			}
		})
	}
}

func TestTheLeaderEnforcesTimeouts(t *testing.T) {
	fs := newFakeStore(spec("t", "@at 2026-03-01T12:00:01Z", func(s *job.Spec) { s.Timeout = job.Duration(30 * time.Second) }))
	h := newHarness(t, fs, "a")
	h.establish()
	h.advance(time.Second)
	d := h.lastTo("a")
	h.ack("a", d)
	grace := h.l.cfg.TimeoutGrace
	for elapsed := time.Duration(0); elapsed < 30*time.Second+grace; elapsed += time.Second {
		h.heartbeat("a", d.ExecID) // the client is alive and says it runs it, but never reports
		h.advance(time.Second)
	}
	h.heartbeat("a", d.ExecID)
	h.advance(time.Second)
	if len(h.stops) != 1 || h.stops[0].stop.ExecID != d.ExecID {
		t.Fatalf("stops %+v, want one for %s after timeout + grace", h.stops, d.ExecID)
	}
	for range grace / time.Second {
		h.heartbeat("a", d.ExecID)
		h.advance(time.Second)
	}
	h.heartbeat("a", d.ExecID)
	h.advance(time.Second)
	if got := h.state(d.ExecID); got != job.StateFailed {
		t.Fatalf("state = %s, want failed (timed out)", got)
	}
	if e := fs.folded()[0]; !strings.Contains(e.Result.Error, "timed out") {
		t.Fatalf("result error %q, want it to say timed out", e.Result.Error)
	}
}

func TestALapsedLeaseReruns(t *testing.T) {
	for name, tc := range map[string]struct {
		rerunnable bool
		// expectations
		state        job.State
		dispatchedTo []string
	}{
		"a rerunnable job runs again on another client": {rerunnable: true, state: job.StateRunning, dispatchedTo: []string{"a", "b"}},
		"any other job is orphaned":                     {state: job.StateOrphaned, dispatchedTo: []string{"a"}},
	} {
		t.Run(name, func(t *testing.T) {
			fs := newFakeStore(spec("l", "@at 2026-03-01T12:00:01Z", func(s *job.Spec) { s.Rerunnable = tc.rerunnable }))
			h := newHarness(t, fs, "a", "b")
			h.establish()
			h.advance(time.Second)
			d := h.lastTo("a")
			h.ack("a", d) // recorded too, as an intake would
			h.heartbeat("a", d.ExecID)
			// a is registered but its heartbeats stop listing the run (it hung, or lost it).
			for range 2 * h.l.cfg.LeaseTimeout / time.Second {
				h.advance(time.Second)
			}
			if got := firstAttemptsAll(h.sent); !slices.Equal(got, tc.dispatchedTo) {
				t.Fatalf("dispatched to %v, want %v", got, tc.dispatchedTo)
			}
			if len(h.sent) > 1 {
				h.ack("b", h.lastTo("b"))
			}
			if got := h.state(d.ExecID); got != tc.state {
				t.Fatalf("state %s, want %s", got, tc.state)
			}
		})
	}
}

// firstAttemptsAll lists the peer of every new attempt, in order.
func firstAttemptsAll(all []sent) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range all {
		key := s.d.ExecID + "/" + string(rune('0'+s.d.Attempt))
		if !seen[key] {
			seen[key] = true
			out = append(out, s.peer)
		}
	}
	return out
}

func TestAnOrphanedExecutionWaitsForItsClientOrAnOperator(t *testing.T) {
	for name, tc := range map[string]struct {
		decide func(h *harness, id string) error
		state  job.State
		sent   int
	}{
		"its client lists it again": {decide: func(h *harness, id string) error { h.heartbeat("a", id); return nil }, state: job.StateRunning, sent: 1},
		"operator reruns it elsewhere": {decide: func(h *harness, id string) error {
			if err := h.l.act(execAction{id: id, action: "rerun", note: "alice"}); err != nil {
				return err
			}
			if got := h.sent[len(h.sent)-1].peer; got != "b" {
				return fmt.Errorf("rerun sent to %s, want b (not the client that vanished with it)", got)
			}
			return nil
		}, state: job.StatePending, sent: 2},
		"operator marks it done": {decide: func(h *harness, id string) error {
			return h.l.act(execAction{id: id, action: "done", status: job.StateSucceeded, note: "alice: checked the ledger"})
		}, state: job.StateSucceeded, sent: 1},
	} {
		t.Run(name, func(t *testing.T) {
			fs := newFakeStore(spec("o", "@at 2026-03-01T12:00:01Z", func(s *job.Spec) { s.Routing.Strategy = job.RouteFirst }))
			h := newHarness(t, fs, "a", "b")
			h.establish()
			h.advance(time.Second)
			d := h.lastTo("a")
			h.ack("a", d) // recorded too, as an intake would
			for range 2 * h.l.cfg.LeaseTimeout / time.Second {
				h.advance(time.Second)
			}
			if got := h.state(d.ExecID); got != job.StateOrphaned {
				t.Fatalf("state %s, want orphaned", got)
			}
			if err := h.l.act(execAction{id: d.ExecID, action: "done", status: "bogus"}); err == nil {
				t.Fatal("done with a bogus status was accepted")
			}
			if err := tc.decide(h, d.ExecID); err != nil {
				t.Fatal(err)
			}
			if got := h.state(d.ExecID); got != tc.state {
				t.Fatalf("state %s, want %s", got, tc.state)
			}
			if len(h.sent) != tc.sent {
				t.Fatalf("%d dispatches, want %d", len(h.sent), tc.sent)
			}
		})
	}
}

func TestOverdueAlarmFiresOnce(t *testing.T) {
	fs := newFakeStore(spec("slow", "0 * * * * ?", func(s *job.Spec) { s.Overdue = job.Overdue{After: job.Duration(5 * time.Second), Ratio: 3} }))
	h := newHarness(t, fs, "a")
	h.establish()
	h.l.observeRuntime("slow", 4*time.Second) // average 4s: the limit is max(5s, 12s)
	h.advance(time.Minute)
	d := h.lastTo("a")
	h.ack("a", d)
	for range 12 {
		h.heartbeat("a", d.ExecID)
		h.advance(time.Second)
	}
	if n := countKind(h.events, job.EventOverdue); n != 0 {
		t.Fatalf("overdue raised at 12s, before the 12s limit was passed")
	}
	for range 3 {
		h.heartbeat("a", d.ExecID)
		h.advance(time.Second)
	}
	if n := countKind(h.events, job.EventOverdue); n != 1 {
		t.Fatalf("%d overdue events after 15s, want 1", n)
	}
	if got := h.state(d.ExecID); got != job.StateRunning {
		t.Fatalf("an overdue run was disturbed: state %s", got)
	}
}

func countKind(evs []job.Event, k job.EventKind) int {
	n := 0
	for _, e := range evs {
		if e.Kind == k {
			n++
		}
	}
	return n
}

func TestStopEndsAWaitingExecutionAtOnceAndARunningOneOnItsClient(t *testing.T) {
	fs := newFakeStore(spec("s", "* * * * * ?", func(s *job.Spec) { s.Overlap = job.OverlapAllow }))
	h := newHarness(t, fs)
	h.clients = []registry.Member{{ID: "a", Handlers: []string{"shell"}, Capacity: 1}}
	h.establish()
	h.advance(time.Second)
	h.runEverything()
	h.advance(time.Second) // the second waits: one slot
	running, waiting := job.ExecutionID("s", t0.Add(time.Second)), job.ExecutionID("s", t0.Add(2*time.Second))
	if err := h.l.act(execAction{id: waiting, action: "stop"}); err != nil {
		t.Fatal(err)
	}
	if got := h.state(waiting); got != job.StateFailed {
		t.Fatalf("stopped waiting execution is %s, want failed", got)
	}
	if err := h.l.act(execAction{id: running, action: "stop", note: "bob"}); err != nil {
		t.Fatal(err)
	}
	if len(h.stops) != 1 || h.stops[0].peer != "a" || h.stops[0].stop.ExecID != running {
		t.Fatalf("stops %+v, want one to a for %s", h.stops, running)
	}
	if err := h.l.act(execAction{id: "nope", action: "stop"}); !errors.Is(err, errNotInFlight) {
		t.Fatalf("stop of an unknown execution: %v", err)
	}
}

func TestJobStatsOutliveTheTerm(t *testing.T) {
	s := spec("slow", "0 * * * * ?", func(s *job.Spec) { s.Overdue = job.Overdue{Ratio: 2} })
	s.ActiveSince = t0.Add(-time.Hour)
	fs := newFakeStore(s)
	fs.lastFired["slow"] = t0.Add(-10 * time.Minute)
	h := newHarness(t, fs, "a")
	h.establish() // 11:51-11:59 are past the 15s threshold: 9 misfires, one catch-up run
	d := h.lastTo("a")
	h.ack("a", d)
	h.l.onResult(&wire.Result{Header: wire.Header{From: "a"}, ExecID: d.ExecID, Job: d.Job, Attempt: 1, Run: 1,
		Result: job.Result{Status: job.StateSucceeded, Duration: job.Duration(10 * time.Second)}, FinishedAt: h.now})
	h.advance(statsSaveEvery)
	h.advance(time.Millisecond) // let the save's note in
	for h.l.savingStats {
		h.l.handle(context.Background(), <-h.l.notes)
	}
	st, ok := fs.stats["slow"]
	if !ok || time.Duration(st.AvgRuntime) != 10*time.Second || st.Misfires != 9 {
		t.Fatalf("saved stats %+v, want a 10s average and 9 misfires", st)
	}
	// The next term alarms on the saved average: a run past 2 × 10s is overdue.
	h2 := newHarness(t, fs, "a")
	h2.now = h.now
	h2.establish()
	if got := h2.l.stats["slow"]; got == nil || time.Duration(got.AvgRuntime) != 10*time.Second {
		t.Fatalf("next term's stats %+v, want the saved 10s average", got)
	}
}

// Findings of the review of the policies, each as the scenario that broke.

// failedFirstRunOfAnEarlierTerm is a store in which an earlier term's execution failed its first run and
// has one retry left.
func failedFirstRunOfAnEarlierTerm() (*fakeStore, string) {
	s := spec("r", "@at 2026-03-01T11:59:00Z", func(s *job.Spec) { s.Retry = job.Retry{Max: 1, Delay: job.Duration(time.Second)} })
	fs := newFakeStore(s)
	id := job.ExecutionID("r", t0.Add(-time.Minute))
	fs.execs[id] = job.Execution{ID: id, Job: "r", ScheduledAt: t0.Add(-time.Minute), FiredAt: t0.Add(-time.Minute), Handler: "shell", MaxRuns: 2, Epoch: 6}
	fin := job.EventID(id, job.EventFinished, 1)
	fs.events[fin] = job.Event{ID: fin, ExecID: id, Job: "r", Kind: job.EventFinished, Attempt: 1, Run: 1, Client: "a", At: t0.Add(-2 * time.Second),
		Result: &job.Result{Status: job.StateFailed}}
	return fs, id
}

func TestAnInheritedRetryWaitsAndAdoptsARunAnEarlierTermStarted(t *testing.T) {
	fs, id := failedFirstRunOfAnEarlierTerm()
	// The previous term dispatched run 2 to b just before it died; b's ack is not recorded.
	h := newHarness(t, fs, "a", "b")
	h.establish()
	h.advance(time.Second)
	if len(h.sent) != 0 {
		t.Fatalf("an inherited retry was dispatched within the old dispatch's accept window: %+v", h.sent[0].d)
	}
	h.l.onHeartbeat(&wire.Heartbeat{Header: wire.Header{From: "b"}, Running: []string{id}, Runs: []int{2}})
	for range 20 {
		h.advance(time.Second)
		h.heartbeat2("b", id, 2)
	}
	if len(h.sent) != 0 {
		t.Fatalf("run 2 started again though b runs it: %+v", h.sent[0].d)
	}
	if f := h.l.flights[id]; f == nil || f.phase != phaseRunning || f.client != "b" || f.run != 2 {
		t.Fatalf("flight %+v, want run 2 running on b", h.l.flights[id])
	}
}

func (h *harness) heartbeat2(peer, id string, run int) {
	h.l.onHeartbeat(&wire.Heartbeat{Header: wire.Header{From: peer}, Running: []string{id}, Runs: []int{run}})
}

func TestAnInheritedRetryAsksTheStoreBeforeItStarts(t *testing.T) {
	fs, id := failedFirstRunOfAnEarlierTerm()
	h := newHarness(t, fs, "a", "b")
	h.establish()
	// Run 2's ack is recorded after the takeover read it, and its note went to the dead leader.
	ack := job.EventID(id, job.EventAcked, 2)
	fs.events[ack] = job.Event{ID: ack, ExecID: id, Job: "r", Kind: job.EventAcked, Attempt: 2, Run: 2, Client: "b", At: t0}
	for range 15 {
		h.advance(time.Second)
		h.heartbeat2("b", id, 2)
	}
	if len(h.sent) != 0 {
		t.Fatalf("run 2 dispatched again though the store says b runs it: %+v", h.sent[0].d)
	}
}

func TestStoppingAPendingRetryEndsTheExecutionForGood(t *testing.T) {
	fs := newFakeStore(spec("r", "@at 2026-03-01T12:00:01Z", func(s *job.Spec) { s.Retry = job.Retry{Max: 2} }))
	h := newHarness(t, fs, "a")
	h.establish()
	h.advance(time.Second)
	d := h.lastTo("a")
	h.ack("a", d)
	h.finish("a", d, job.StateFailed)
	if err := h.l.act(execAction{id: d.ExecID, action: "stop"}); err != nil {
		t.Fatal(err)
	}
	if got := h.state(d.ExecID); got != job.StateFailed {
		t.Fatalf("state after stopping a pending retry = %s, want failed", got)
	}
	// The next leader does not run it.
	h2 := newHarness(t, fs, "a")
	h2.now = h.now
	h2.establish()
	h2.advance(time.Minute)
	if len(h2.sent) != 0 {
		t.Fatalf("the next leader ran a stopped execution: %+v", h2.sent[0].d)
	}
}

func TestAStoppedRunThatFailsIsNotRetried(t *testing.T) {
	fs := newFakeStore(spec("r", "@at 2026-03-01T12:00:01Z", func(s *job.Spec) { s.Retry = job.Retry{Max: 2}; s.Rerunnable = true }))
	h := newHarness(t, fs, "a")
	h.establish()
	h.advance(time.Second)
	d := h.lastTo("a")
	h.ack("a", d)
	if err := h.l.act(execAction{id: d.ExecID, action: "stop"}); err != nil {
		t.Fatal(err)
	}
	// The handler failed on its own as the stop arrived: its result is not marked final.
	h.finish("a", d, job.StateFailed)
	h.advance(time.Minute)
	if got := h.state(d.ExecID); got != job.StateFailed {
		t.Fatalf("state = %s, want failed", got)
	}
	if len(h.sent) != 1 {
		t.Fatalf("a stopped run was retried: %d dispatches", len(h.sent))
	}
}

func TestQueuedFiringsStayQueuedUnderTheNextLeader(t *testing.T) {
	fs := newFakeStore(spec("q", "0 * * * * ?", func(s *job.Spec) { s.Overlap = job.OverlapQueue }))
	h := newHarness(t, fs, "a", "b")
	h.establish()
	h.advance(time.Minute)
	first := h.sent[0]
	h.ack(first.peer, first.d)
	h.heartbeat(first.peer, first.d.ExecID)
	h.advance(time.Minute)
	h.advance(time.Minute)
	if len(h.sent) != 1 {
		t.Fatalf("queued firings were dispatched: %d", len(h.sent))
	}
	h2 := newHarness(t, fs, "a", "b")
	h2.now = h.now
	h2.establish()
	for range 20 {
		h2.heartbeat(first.peer, first.d.ExecID)
		h2.advance(time.Second)
	}
	if len(h2.sent) != 0 {
		t.Fatalf("the next leader dispatched queued firings while the first runs: %+v", h2.sent[0].d)
	}
}

func TestAPlannedSkipSurvivesAnInsertThatFailedButLanded(t *testing.T) {
	fs := newFakeStore(spec("f", "0 * * * * ?", nil))
	h := newHarness(t, fs, "a", "b")
	h.establish()
	h.advance(time.Minute)
	h.ack(h.sent[0].peer, h.sent[0].d)
	h.heartbeat(h.sent[0].peer, h.sent[0].d.ExecID)
	fs.failInsert = 1
	h.advance(time.Minute) // forbid: 12:02 is planned skipped; the insert lands but reports an error
	h.heartbeat(h.sent[0].peer, h.sent[0].d.ExecID)
	h.advance(250 * time.Millisecond) // the retry finds it recorded
	if len(h.sent) != 1 {
		t.Fatalf("a firing planned skipped was dispatched: %+v", h.sent[len(h.sent)-1].d)
	}
	if got := h.state(job.ExecutionID("f", t0.Add(2*time.Minute))); got != job.StateSkipped {
		t.Fatalf("state %s, want skipped", got)
	}
}

func TestAStopBeforeTheAckIsNotUndoneByARefusal(t *testing.T) {
	fs := newFakeStore(spec("s", "@at 2026-03-01T12:00:01Z", nil))
	h := newHarness(t, fs, "a", "b")
	h.establish()
	h.advance(time.Second)
	d := h.lastTo(h.sent[0].peer)
	if err := h.l.act(execAction{id: d.ExecID, action: "stop"}); err != nil {
		t.Fatal(err)
	}
	h.l.onAck(&wire.Ack{Header: wire.Header{From: h.sent[0].peer}, ExecID: d.ExecID, Job: d.Job, Attempt: 1, Run: 1, Code: wire.RefuseBusy, At: h.now})
	for range 10 {
		h.advance(time.Second)
	}
	if len(h.sent) != 1 {
		t.Fatalf("a stopped execution was dispatched again: %d dispatches", len(h.sent))
	}
	if got := h.state(d.ExecID); got != job.StateFailed {
		t.Fatalf("state %s, want failed (stopped before it ran)", got)
	}
}

func TestAStaleHeartbeatDoesNotAckANewRun(t *testing.T) {
	fs := newFakeStore(spec("r", "@at 2026-03-01T12:00:01Z", func(s *job.Spec) { s.Retry = job.Retry{Max: 1, Delay: job.Duration(time.Second)} }))
	h := newHarness(t, fs, "a")
	h.establish()
	h.advance(time.Second)
	d := h.lastTo("a")
	h.ack("a", d)
	h.finish("a", d, job.StateFailed)
	h.advance(time.Second)
	d2 := h.lastTo("a")
	if d2.Run != 2 {
		t.Fatalf("run %d, want the retry", d2.Run)
	}
	h.heartbeat2("a", d.ExecID, 1) // sent while run 1 was under way
	if f := h.l.flights[d.ExecID]; f.phase == phaseRunning {
		t.Fatal("a heartbeat listing run 1 acknowledged run 2")
	}
}

func TestTheShardsOfAQueuedFiringGoOutTogether(t *testing.T) {
	fs := newFakeStore(spec("s", "0 * * * * ?", func(s *job.Spec) {
		s.Overlap = job.OverlapQueue
		s.Routing = job.Routing{Strategy: job.RouteShardBroadcast, Shards: 2}
	}))
	h := newHarness(t, fs, "a", "b")
	h.establish()
	h.advance(time.Minute)
	if n := len(firstAttempts(h.sent)); n != 2 {
		t.Fatalf("%d executions dispatched, want the 2 shards", n)
	}
	h.advance(time.Minute) // queued behind the first firing's shards
	if n := len(firstAttempts(h.sent)); n != 2 {
		t.Fatalf("%d executions dispatched, want the second firing queued", n)
	}
	for _, s := range h.sent[:2] {
		h.ack(s.peer, s.d)
		h.finish(s.peer, s.d, job.StateSucceeded)
	}
	h.advance(250 * time.Millisecond)
	if n := len(firstAttempts(h.sent)); n != 4 {
		t.Fatalf("%d executions dispatched, want both shards of the queued firing released together", n)
	}
}

func TestALapsedLeaseOfARunThatEndedUnheardDoesNotRerunIt(t *testing.T) {
	fs := newFakeStore(spec("r", "@at 2026-03-01T12:00:01Z", func(s *job.Spec) { s.Rerunnable = true }))
	h := newHarness(t, fs, "a", "b")
	h.establish()
	h.advance(time.Second)
	d := h.lastTo(h.sent[0].peer)
	h.ack(h.sent[0].peer, d)
	// The run ends and a server records it, but the news never reaches the leader.
	fin := job.EventID(d.ExecID, job.EventFinished, 1)
	fs.mu.Lock()
	fs.events[fin] = job.Event{ID: fin, ExecID: d.ExecID, Job: d.Job, Kind: job.EventFinished, Attempt: 1, Run: 1, Client: h.sent[0].peer, At: h.now,
		Result: &job.Result{Status: job.StateSucceeded}}
	fs.mu.Unlock()
	for range 2 * h.l.cfg.LeaseTimeout / time.Second {
		h.advance(time.Second)
	}
	if n := len(firstAttemptsAll(h.sent)); n != 1 {
		t.Fatalf("a run that ended was dispatched again: %d attempts", n)
	}
	if _, ok := h.l.flights[d.ExecID]; ok {
		t.Fatal("an ended execution is still tracked")
	}
}

// The leader's slot count heals by itself: a run whose end the leader never heard of (a dropped note
// under load) stops holding its slot once its client's heartbeats stop listing it.
func TestASlotHeldByARunTheLeaderLostTrackOfFrees(t *testing.T) {
	fs := newFakeStore(spec("a1", "@at 2026-03-01T12:00:01Z", nil))
	fs.jobs["a2"] = spec("a2", "@at 2026-03-01T12:00:02Z", nil)
	h := newHarness(t, fs)
	h.clients = []registry.Member{{ID: "a", Handlers: []string{"shell"}, Capacity: 1}}
	h.establish()
	h.advance(time.Second)
	h.runEverything() // a1 runs; its result note will be lost
	h.advance(time.Second)
	if n := len(firstAttempts(h.sent)); n != 1 {
		t.Fatalf("%d dispatched with one slot, want 1", n)
	}
	for range 6 {
		h.heartbeat("a") // lists nothing: a1 ended
		h.advance(time.Second)
	}
	if n := len(firstAttempts(h.sent)); n != 2 {
		t.Fatalf("%d dispatched, want a2 once a1's slot freed", n)
	}
}

// A run that ended but whose result has not reached the leader (a loaded store, a dropped note) is
// neither lost nor orphaned while its client lists it as ended, and it takes no slot.
func TestAnEndedRunStillReportingKeepsItsLeaseButNoSlot(t *testing.T) {
	fs := newFakeStore(spec("e1", "@at 2026-03-01T12:00:01Z", nil))
	fs.jobs["e2"] = spec("e2", "@at 2026-03-01T12:00:02Z", nil)
	h := newHarness(t, fs)
	h.clients = []registry.Member{{ID: "a", Handlers: []string{"shell"}, Capacity: 1}}
	h.establish()
	h.advance(time.Second)
	d := h.lastTo("a")
	h.ack("a", d)
	for range 3 * h.l.cfg.LeaseTimeout / time.Second {
		h.l.onHeartbeat(&wire.Heartbeat{Header: wire.Header{From: "a"}, Ended: []string{d.ExecID}, EndedRuns: []int{1}})
		h.advance(time.Second)
	}
	if got := h.state(d.ExecID); got != job.StateRunning {
		t.Fatalf("state %s, want still running (its result is on its way)", got)
	}
	if n := len(firstAttempts(h.sent)); n != 2 {
		t.Fatalf("%d executions dispatched, want e2 too: e1 ended and holds no slot", n)
	}
}

func TestStatsSavedOnlyWhenTheAverageMovesNotably(t *testing.T) {
	for _, c := range []struct {
		saved, avg time.Duration
		want       bool
	}{
		{5 * time.Microsecond, 50 * time.Microsecond, false}, // tiny jobs: noise
		{10 * time.Second, 10*time.Second + 500*time.Millisecond, false},
		{10 * time.Second, 12 * time.Second, true},
		{10 * time.Second, 8 * time.Second, true},
		{50 * time.Millisecond, 400 * time.Millisecond, true},
	} {
		if got := notable(c.saved, c.avg); got != c.want {
			t.Errorf("notable(%s, %s) = %v, want %v", c.saved, c.avg, got, c.want)
		}
	}
}

// A run's progress, from its client's heartbeat, shows in the in-flight view; a report from another client,
// or of another run, does not.
func TestProgressShowsInFlight(t *testing.T) {
	h := newHarness(t, newFakeStore(shellJob("p", "@every 1h", created)), "a")
	h.establish()
	h.advance(time.Hour)
	d := h.lastTo("a")
	h.ack("a", d)
	progress := func(from string, run, pct int) {
		h.l.onHeartbeat(&wire.Heartbeat{Header: wire.Header{From: from}, Running: []string{d.ExecID},
			Progress: []wire.Progress{{ExecID: d.ExecID, Run: run, Percent: pct, Message: "copying", At: h.now}}})
	}
	progress("a", 1, 30)
	progress("b", 1, 90) // not its client
	progress("a", 2, 95) // not its run
	v := h.l.inflight("p", 1000)
	if len(v) != 1 || v[0].Progress == nil || v[0].Progress.Percent != 30 || v[0].Progress.Message != "copying" {
		t.Fatalf("in flight %+v, want the run at 30%% from its own client", v)
	}
}

// A takeover gap under the default policies: the times owed run one after another, in order, late, and
// none is skipped; a time that comes due while the job catches up joins the queue.
func TestCatchUpUnderForbidRunsEachOwedTimeInOrder(t *testing.T) {
	fs := newFakeStore(spec("tick", "@every 1s", func(s *job.Spec) { s.ActiveSince = t0.Add(-time.Hour) }))
	fs.lastFired["tick"] = t0.Add(-5 * time.Second)
	h := newHarness(t, fs, "a")
	h.establish()
	if len(h.sent) != 1 {
		t.Fatalf("after the takeover %d dispatched, want 1 (the rest wait behind it)", len(h.sent))
	}
	var ran []time.Time
	next := func() {
		t.Helper()
		if len(h.sent) != len(ran)+1 {
			t.Fatalf("%d dispatched after %d ended: two runs overlap, or the next did not go out at once", len(h.sent), len(ran))
		}
		d := h.sent[len(h.sent)-1].d
		if n := len(ran); n > 0 && !d.ScheduledAt.After(ran[n-1]) {
			t.Fatalf("ran %s after %s: out of order", d.ScheduledAt, ran[n-1])
		}
		ran = append(ran, d.ScheduledAt)
		h.ack("a", d)
		if len(ran) == 3 {
			h.advance(time.Second) // a new time comes due while the job catches up
		}
		h.finish("a", d, job.StateSucceeded)
	}
	for range 6 { // the 5 owed, and the one that came due meanwhile
		next()
	}
	if len(h.sent) != 6 {
		t.Fatalf("%d dispatched after the catch-up, want 6", len(h.sent))
	}
	for range 2 { // then on time again
		h.advance(time.Second)
		next()
	}
	for i := 1; i < len(ran); i++ {
		if ran[i].Sub(ran[i-1]) != time.Second {
			t.Fatalf("ran %v: a second is missing", ran)
		}
	}
	for _, e := range fs.folded() {
		if e.State == job.StateSkipped {
			t.Fatalf("%s skipped: %+v", e.ID, e.Result)
		}
	}
}

// A catch-up that cannot keep up is bounded by the misfire threshold: under fire-once the queued times
// past it are skipped, the latest queued stands for them; under skip all of them are; normal operation
// then skips as forbid does.
func TestAQueueBehindAHungRunIsBoundedByTheMisfireThreshold(t *testing.T) {
	for _, policy := range []string{"", job.MisfireSkip} {
		t.Run("policy="+policy, func(t *testing.T) {
			fs := newFakeStore(spec("tick", "@every 1s", func(s *job.Spec) {
				s.ActiveSince = t0.Add(-time.Hour)
				s.Misfire.Policy = policy
			}))
			fs.lastFired["tick"] = t0.Add(-5 * time.Second)
			h := newHarness(t, fs, "a")
			h.establish()
			first := h.sent[0].d
			h.ack("a", first)
			for range 40 {
				h.heartbeat("a", first.ExecID)
				h.advance(time.Second)
			}
			if len(h.sent) != 1 {
				t.Fatalf("%d dispatched while the first ran", len(h.sent))
			}
			cut := h.now.Add(-h.l.cfg.MisfireThreshold)
			var queued, skipped int
			var newest time.Time
			for _, f := range h.l.flights {
				if f.phase == phaseQueued {
					queued++
					if f.exec.ScheduledAt.After(newest) {
						newest = f.exec.ScheduledAt
					}
					if f.exec.ScheduledAt.Before(cut.Add(-time.Second)) {
						t.Errorf("%s still queued, past the misfire threshold", f.exec.ID)
					}
				}
			}
			for _, e := range fs.folded() {
				if e.State == job.StateSkipped {
					skipped++
					if e.Result == nil || !strings.HasPrefix(e.Result.Error, "misfire") {
						t.Errorf("%s skipped for %+v, want a misfire", e.ID, e.Result)
					}
				}
			}
			if skipped == 0 || queued == 0 || queued > 20 {
				t.Fatalf("%d queued and %d skipped, want a queue bounded by the threshold", queued, skipped)
			}
			if newest.Before(h.now.Add(-time.Second)) {
				t.Fatalf("the newest queued time is %s, want the latest fired (%s)", newest, h.now)
			}
		})
	}
}

// An execution a previous leader left pending under forbid is late: it queues, and the times owed since
// queue behind it instead of being skipped.
func TestInheritedPendingUnderForbidQueuesWithTheCatchUp(t *testing.T) {
	fs := newFakeStore(spec("tick", "@every 1s", func(s *job.Spec) { s.ActiveSince = t0.Add(-time.Hour) }))
	fs.lastFired["tick"] = t0
	h := newHarness(t, fs, "a")
	h.establish()
	h.advance(time.Second) // fired and dispatched, never acked: the leader dies
	if len(h.sent) != 1 {
		t.Fatalf("dispatched %d, want 1", len(h.sent))
	}
	h2 := newHarness(t, fs, "a")
	h2.now = h.now.Add(3 * time.Second)
	h2.establish()
	for range 15 {
		for i := 0; i < len(h2.sent); i++ { // each run ends at once, and lets the next go out
			if d := h2.sent[i].d; h2.state(d.ExecID) == job.StatePending {
				h2.ack("a", d)
				h2.finish("a", d, job.StateSucceeded)
			}
		}
		h2.advance(time.Second)
	}
	for _, e := range fs.folded() {
		if e.State == job.StateSkipped {
			t.Fatalf("%s skipped: %+v", e.ID, e.Result)
		}
	}
	if len(h2.sent) < 15 {
		t.Fatalf("the new leader dispatched %d, want the inherited one, the 3 owed and those since", len(h2.sent))
	}
}

// Under forbid, times owed do not wait behind an orphaned execution, which ends only when its client
// returns or a person decides: they are skipped, and say why.
func TestCatchUpDoesNotWaitBehindAnOrphan(t *testing.T) {
	fs := newFakeStore(spec("o", "@every 1s", func(s *job.Spec) { s.ActiveSince = t0.Add(-time.Hour) }))
	fs.lastFired["o"] = t0
	h := newHarness(t, fs, "a")
	h.establish()
	h.advance(time.Second)
	d := h.lastTo("a")
	h.ack("a", d)
	h.clients = nil // its client vanishes: the run is orphaned
	h.dirty = true
	for range 2 * h.l.cfg.LeaseTimeout / time.Second {
		h.advance(time.Second)
	}
	if got := h.state(d.ExecID); got != job.StateOrphaned {
		t.Fatalf("state %s, want orphaned", got)
	}
	h.clients = []registry.Member{{ID: "a", Handlers: []string{"shell"}}}
	h.dirty = true
	h.advance(3 * time.Second) // a stalled loop: the 3 times owed are catch-up firings
	n := 0
	for _, e := range fs.folded() {
		if e.ScheduledAt.After(h.now.Add(-3 * time.Second)) {
			n++
			if e.State != job.StateSkipped || e.Result == nil || e.Result.Error != errOrphanAhead {
				t.Fatalf("%s is %s (%+v), want skipped behind the orphan", e.ID, e.State, e.Result)
			}
		}
	}
	if n != 3 {
		t.Fatalf("%d firings in the stalled 3 seconds, want 3", n)
	}
}

// Every execution says in typed fields which firing it belongs to and which part of it it is; the id of a
// sharded firing is not recovered by cutting ids.
func TestExecutionsCarryTheirIdentity(t *testing.T) {
	fs := newFakeStore(spec("s", "@every 1m", func(s *job.Spec) {
		s.Overlap = job.OverlapAllow
		s.Routing = job.Routing{Strategy: job.RouteShardBroadcast, ShardItems: []string{"eu", "us", "asia"}}
	}), spec("p", "@every 1m", func(s *job.Spec) { s.Overlap = job.OverlapAllow }))
	h := newHarness(t, fs, "a", "b", "c")
	h.establish()
	fid, err := h.l.trigger(context.Background(), "s", nil)
	if err != nil {
		t.Fatal(err)
	}
	h.advance(time.Minute)
	shards := map[int]string{}
	for _, e := range fs.folded() {
		switch {
		case e.Job == "p":
			if e.Firing != e.ID || e.Shard != nil {
				t.Errorf("%s: firing %q, shard %+v; want itself, none", e.ID, e.Firing, e.Shard)
			}
		case e.Trigger == job.TriggerManual:
			if e.Firing != fid || e.Shard == nil || e.Shard.Total != 3 {
				t.Fatalf("%s: firing %q, shard %+v; want %s, one of 3", e.ID, e.Firing, e.Shard, fid)
			}
			shards[e.Shard.Index] = e.Shard.Item
			if got := job.FiringOf(e); got != fid {
				t.Errorf("FiringOf(%s) = %s, want %s", e.ID, got, fid)
			}
			legacy := e
			legacy.Firing = "" // as written before the field existed
			if got := job.FiringOf(legacy); got != fid {
				t.Errorf("FiringOf(legacy %s) = %s, want %s", e.ID, got, fid)
			}
		}
	}
	if shards[0] != "eu" || shards[1] != "us" || shards[2] != "asia" {
		t.Fatalf("shards %v, want eu, us, asia by index", shards)
	}
}
