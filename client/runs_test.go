package client

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/clover-sched/clover/internal/config"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/transport"
	"github.com/clover-sched/clover/internal/wire"
)

// fakeServer is a ZeroMQ inbox that keeps every frame a client sends it.
type fakeServer struct {
	id   string
	mu   sync.Mutex
	msgs []wire.Message
}

// startFakeServer listens, adds the server to c's outbox as id, and waits until c can reach it.
func startFakeServer(t *testing.T, c *Client, id string) *fakeServer {
	t.Helper()
	fs, endpoint := listenFake(t, id)
	c.outbox.AddPeer(id, transport.Peer{Endpoint: endpoint, Server: true})
	probe, err := wire.Encode(&wire.Heartbeat{Header: wire.Header{From: "probe"}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return c.outbox.Send(id, probe) == nil })
	return fs
}

// listenFake starts a fake server and returns it with its endpoint.
func listenFake(t *testing.T, id string) (*fakeServer, string) {
	t.Helper()
	in, err := transport.Listen("tcp://127.0.0.1:0", transport.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fs := &fakeServer{id: id}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = in.Run(ctx, func(frame []byte, _ transport.Sender) {
			m, err := wire.Decode(frame)
			if err != nil {
				t.Errorf("server %s: undecodable frame: %v", id, err)
				return
			}
			if wire.From(m) == "probe" {
				return
			}
			fs.mu.Lock()
			fs.msgs = append(fs.msgs, m)
			fs.mu.Unlock()
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return fs, in.Endpoint()
}

// received returns the messages of type T the server got that match keep.
func received[T wire.Message](fs *fakeServer, keep func(T) bool) []T {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	var out []T
	for _, m := range fs.msgs {
		if x, ok := m.(T); ok && keep(x) {
			out = append(out, x)
		}
	}
	return out
}

func pendingResult(t *testing.T, c *Client, id string, run int) *wire.Result {
	t.Helper()
	c.mu.Lock()
	p, ok := c.pending.get(id, run)
	c.mu.Unlock()
	if !ok {
		t.Fatalf("no pending result for %s run %d", id, run)
	}
	m, err := wire.Decode(p.frame)
	if err != nil {
		t.Fatal(err)
	}
	return m.(*wire.Result)
}

func receiptFrame(t *testing.T, results, acks []string) []byte {
	t.Helper()
	f, err := wire.Encode(&wire.Receipt{Header: wire.Header{From: "s1"}, ExecIDs: results, Acked: acks})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestARetryIsANewRunOfTheSameExecution(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	later := now.Add(time.Minute)
	c, runs, release := newTestClient(t, now, 4)
	close(release) // runs end at once
	srv := startFakeServer(t, c, "s1")

	first := dispatch("x", "work", 1, later)
	first.Run = 1
	c.onDispatch(first)
	waitFor(t, func() bool { return runs.Load() == 1 && c.PendingResults() == 1 })

	retry := dispatch("x", "work", 1, later)
	retry.Attempt, retry.Run = 2, 2
	c.onDispatch(retry)
	waitFor(t, func() bool { return runs.Load() == 2 && c.PendingResults() == 2 })
	if r := pendingResult(t, c, "x", 2); r.Run != 2 || r.Attempt != 2 {
		t.Fatalf("result of the retry: run %d attempt %d, want 2 and 2", r.Run, r.Attempt)
	}
	if r := pendingResult(t, c, "x", 1); r.Run != 1 {
		t.Fatalf("result of the first run: run %d, want 1", r.Run)
	}

	// A late duplicate of run 1 (even a later attempt of it) is answered with run 1's answer, and not run.
	c.onDispatch(first)
	again := dispatch("x", "work", 1, later)
	again.Attempt, again.Run = 3, 1
	c.onDispatch(again)
	c.onDispatch(retry) // and run 2 runs once too
	waitFor(t, func() bool {
		return len(received(srv, func(a *wire.Ack) bool { return a.ExecID == "x" })) == 3
	})
	acks := received(srv, func(a *wire.Ack) bool { return a.ExecID == "x" })
	for i, want := range []int{1, 1, 2} {
		if !acks[i].Accepted || acks[i].Run != want {
			t.Fatalf("ack %d = accepted %v run %d, want accepted run %d", i, acks[i].Accepted, acks[i].Run, want)
		}
	}
	if got := runs.Load(); got != 2 {
		t.Fatalf("runs = %d, want 2", got)
	}
	s := c.Stats()
	if s.Accepted.Load() != 2 || s.Duplicates.Load() != 3 {
		t.Fatalf("accepted %d duplicates %d, want 2 and 3", s.Accepted.Load(), s.Duplicates.Load())
	}
	results := received(srv, func(r *wire.Result) bool { return r.ExecID == "x" })
	if len(results) != 2 || results[0].Run+results[1].Run != 3 {
		t.Fatalf("results = %d, want one of run 1 and one of run 2", len(results))
	}

	// A receipt names the execution only: it confirms the results of both runs, which were sent.
	c.receive(receiptFrame(t, []string{"x"}, nil), transport.Sender{Addr: "s1"})
	if got := c.PendingResults(); got != 0 {
		t.Fatalf("pending results after a receipt = %d, want 0", got)
	}
}

func TestAReceiptLeavesReportsNotYetSent(t *testing.T) {
	c, _, _ := newTestClient(t, time.Now(), 1)
	c.mu.Lock()
	c.acks.put("x", 1, &pendingReport{sent: true})
	c.acks.put("x", 2, &pendingReport{sent: false}) // still held for ackDelay
	c.acks.put("y", 1, &pendingReport{sent: true})
	c.mu.Unlock()
	c.receive(receiptFrame(t, nil, []string{"x"}), transport.Sender{Addr: "s1"})
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.acks.has("x", 1) || !c.acks.has("x", 2) || !c.acks.has("y", 1) {
		t.Fatalf("acks after a receipt for x = %v, want only x run 2 and y left", c.acks)
	}
}

func TestWidthIsRefusedWhenItDoesNotFit(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	later := now.Add(time.Minute)
	c, runs, release := newTestClientWith(t, func() time.Time { return now }, func(cfg *Config) { cfg.Capacity, cfg.Width = 4, 3 })
	srv := startFakeServer(t, c, "s1")
	wide := func(id string, width int) *wire.Dispatch {
		d := dispatch(id, "work", 1, later)
		d.Width = width
		return d
	}
	c.onDispatch(wide("a", 2))
	c.onDispatch(wide("b", 2)) // 2+2 > 3
	c.onDispatch(wide("c", 1)) // 2+1 fits
	waitFor(t, func() bool { return runs.Load() == 2 })
	var refusals []*wire.Ack
	waitFor(t, func() bool {
		refusals = received(srv, func(a *wire.Ack) bool { return !a.Accepted })
		return len(refusals) == 1
	})
	if r := refusals[0]; r.ExecID != "b" || r.Code != wire.RefuseBusy || !strings.Contains(r.Reason, "width 2") {
		t.Fatalf("refusal = %+v, want b refused busy for its width", r)
	}
	close(release)
	waitFor(t, func() bool { return c.PendingResults() == 2 })
	c.onDispatch(wide("d", 3)) // the width is free again
	waitFor(t, func() bool { return c.PendingResults() == 3 })
	if s := c.Stats(); s.Accepted.Load() != 3 || s.Refused.Load() != 1 {
		t.Fatalf("accepted %d refused %d, want 3 and 1", s.Accepted.Load(), s.Refused.Load())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.width != 0 || c.running != 0 {
		t.Fatalf("width %d running %d after every run ended, want 0", c.width, c.running)
	}
}

func TestStopKillsARunningShellJob(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	c, _, release := newTestClientWith(t, func() time.Time { return now }, func(cfg *Config) { cfg.Handlers = []string{job.HandlerShell} })
	defer close(release)
	c.raiseEpoch(2)
	d := dispatch("s", job.HandlerShell, 2, now.Add(time.Minute))
	// The sleep runs in the background of a shell that waits for it: it keeps the output pipe open, so the
	// run ends only when the whole process group is killed.
	started := filepath.Join(t.TempDir(), "started")
	d.Params = map[string]string{"command": "touch " + started + "; sleep 30 & wait"}
	c.onDispatch(d)
	waitFor(t, func() bool { _, err := os.Stat(started); return err == nil })

	c.onStop(&wire.Stop{Header: wire.Header{From: "old", Epoch: 1}, ExecID: "s", Reason: "deposed"})
	c.onStop(&wire.Stop{Header: wire.Header{From: "s1", Epoch: 2}, ExecID: "elsewhere", Reason: "not here"})
	if got := c.Stats().StaleEpoch.Load(); got != 1 {
		t.Fatalf("stale epoch = %d, want 1", got)
	}
	c.mu.Lock()
	still := c.active.has("s", 1)
	c.mu.Unlock()
	if !still {
		t.Fatal("a stop from a deposed leader ended the run")
	}

	frame, err := wire.Encode(&wire.Stop{Header: wire.Header{From: "s1", Epoch: 2}, ExecID: "s", Reason: "operator"})
	if err != nil {
		t.Fatal(err)
	}
	c.receive(frame, transport.Sender{Addr: "s1"})
	waitFor(t, func() bool { return c.PendingResults() == 1 })
	r := pendingResult(t, c, "s", 1)
	if r.Result.Status != job.StateFailed || !r.Result.Final || r.Result.Error != "stopped: operator" {
		t.Fatalf("result = %+v, want a final failure stopped: operator", r.Result)
	}
	if s := c.Stats(); s.Stopped.Load() != 1 || s.Failed.Load() != 1 {
		t.Fatalf("stopped %d failed %d, want 1 and 1", s.Stopped.Load(), s.Failed.Load())
	}
}

func TestHeartbeatListsTheRunsUnderWay(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	c, runs, release := newTestClientWith(t, func() time.Time { return now }, func(cfg *Config) {
		cfg.Capacity, cfg.LeaseRenew = 3, 20*time.Millisecond
	})
	s1 := startFakeServer(t, c, "s1")
	s2 := startFakeServer(t, c, "s2")
	c.setLeader("s2")
	c.raiseEpoch(7)
	for _, id := range []string{"b", "a"} {
		c.onDispatch(dispatch(id, "work", 7, now.Add(time.Minute)))
	}
	waitFor(t, func() bool { return runs.Load() == 2 })

	mine := func(h *wire.Heartbeat) bool { return h.From == "c1" }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.heartbeatLoop(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	waitFor(t, func() bool { return len(received(s2, mine)) >= 3 }) // the loop renews
	hb := received(s2, mine)[0]
	if !slices.Equal(hb.Running, []string{"a", "b"}) || hb.Capacity != 3 || hb.Epoch != 7 {
		t.Fatalf("heartbeat = %+v, want running [a b], capacity 3, epoch 7", hb)
	}
	if n := len(received(s1, mine)); n != 0 {
		t.Fatalf("a follower got %d heartbeats while the leader was reachable, want 0", n)
	}

	close(release)
	waitFor(t, func() bool { return c.PendingResults() == 2 })
	c.setLeader("gone") // an unknown leader: any server takes it
	waitFor(t, func() bool {
		hbs := append(received(s1, mine), received(s2, mine)...)
		return slices.ContainsFunc(hbs, func(h *wire.Heartbeat) bool { return len(h.Running) == 0 }) && len(received(s1, mine)) > 0
	})
}

func TestLocalJobFiresByItself(t *testing.T) {
	c, runs, release := newTestClientWith(t, time.Now, func(cfg *Config) {
		cfg.Jobs = []JobConfig{{Name: "tick", Schedule: "@every 1s", Handler: "quick", Mode: string(job.ModeLocal), Rerunnable: true}}
	})
	close(release)
	var got sync.Map
	c.Handle("quick", func(ctx context.Context, jc JobContext) error {
		got.Store(jc.ExecutionID, jc)
		return nil
	})
	srv := startFakeServer(t, c, "s1")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	c.startLocal(ctx, &wg)
	defer func() {
		cancel()
		wg.Wait()
	}()

	var ack *wire.Ack
	waitFor(t, func() bool {
		acks := received(srv, func(a *wire.Ack) bool { return a.Local != nil })
		if len(acks) == 0 {
			return false
		}
		ack = acks[0]
		return len(received(srv, func(r *wire.Result) bool { return r.ExecID == ack.ExecID })) == 1
	})
	e := ack.Local
	if !ack.Accepted || ack.Attempt != 1 || ack.Run != 1 || ack.Epoch != 0 || ack.Job != "tick" {
		t.Fatalf("ack = %+v, want accepted attempt 1 run 1 epoch 0 of tick", ack)
	}
	if e.ID != job.LocalExecutionID("tick", e.ScheduledAt, "c1") || e.Trigger != job.TriggerLocal || e.MaxRuns != 1 ||
		e.Server != "" || e.Epoch != 0 || e.Handler != "quick" || e.Rerunnable || e.ScheduledAt.Nanosecond() != 0 ||
		e.FiredAt.Before(e.ScheduledAt) {
		t.Fatalf("local execution = %+v", e)
	}
	v, ok := got.Load(e.ID)
	if !ok {
		t.Fatal("the handler did not run the local execution")
	}
	if jc := v.(JobContext); jc.Trigger != job.TriggerLocal || jc.Run != 1 || jc.Attempt != 1 || !jc.ScheduledAt.Equal(e.ScheduledAt) {
		t.Fatalf("job context = %+v", jc)
	}
	if runs.Load() != 0 {
		t.Fatal("the work handler ran")
	}

	// The ack carries the execution: it waits for its own receipt, the result does not replace it.
	c.mu.Lock()
	kept := c.acks.has(e.ID, 1)
	c.mu.Unlock()
	if !kept {
		t.Fatal("the ack of a local run was dropped before its receipt")
	}
	c.receive(receiptFrame(t, nil, []string{e.ID}), transport.Sender{Addr: "s1"})
	c.mu.Lock()
	kept = c.acks.has(e.ID, 1)
	c.mu.Unlock()
	if kept {
		t.Fatal("the ack of a local run outlived its receipt")
	}
}

func TestLocalJobSkipsAFiringWhileItsLastRunRuns(t *testing.T) {
	c, runs, release := newTestClientWith(t, time.Now, func(cfg *Config) {
		cfg.Jobs = []JobConfig{{Name: "slow", Schedule: "@every 1s", Handler: "work", Mode: string(job.ModeLocal)}}
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	c.startLocal(ctx, &wg)
	waitFor(t, func() bool { return c.Stats().LocalSkipped.Load() >= 1 })
	cancel()
	wg.Wait()
	if got := runs.Load(); got != 1 {
		t.Fatalf("runs = %d, want 1", got)
	}
	close(release)
	waitFor(t, func() bool { return c.PendingResults() == 1 })
}

func TestShellSeesRunAndShard(t *testing.T) {
	out := newOutputLog(256)
	err := runShell(context.Background(), JobContext{
		Output: out, Attempt: 3, Run: 2, Shard: &job.Shard{Index: 1, Total: 4, Item: "eu"},
		Params: map[string]string{"command": `echo "$CLOVER_ATTEMPT $CLOVER_RUN $CLOVER_SHARD_INDEX/$CLOVER_SHARD_TOTAL $CLOVER_SHARD_ITEM"`},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "3 2 1/4 eu\n" {
		t.Fatalf("output = %q", got)
	}
	out = newOutputLog(256)
	if err := runShell(context.Background(), JobContext{Output: out, Attempt: 1, Params: map[string]string{"command": `echo "$CLOVER_RUN ${CLOVER_SHARD_INDEX-unset}"`}}); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "1 unset\n" {
		t.Fatalf("output without a shard = %q", got)
	}
}

func TestJobPoliciesDecodeFromAConfigFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "client.yaml")
	yaml := `
id: c9
lease_renew: 500ms
width: 8
handlers: [shell]
jobs:
  - name: nightly
    schedule: "0 0 2 * * ?"
    command: "echo hi"
    timeout: 1m30s
    mode: local
    misfire: {policy: fire-all, limit: 5}
    overlap: queue
    routing:
      strategy: consistent-hash
      hash_key: tenant
      labels: {os: linux}
      clients: [c1, c2]
      width: 2
    retry: {max: 3, backoff: exponential, delay: 10s, max_delay: 5m, jitter: 0.2}
    overdue: {after: 45s, ratio: 2}
    rerunnable: true
  - name: spread
    schedule: "@every 10s"
    handler: work
    routing: {strategy: sharding-broadcast, shards: 3, shard_items: [a, b, c]}
`
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.KeysDir = "/etc/clover/keys"
	if err := config.Load(file, nil, nil, &cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.LeaseRenew != 500*time.Millisecond || cfg.Width != 8 || cfg.ResultRetry != time.Second || len(cfg.Jobs) != 2 {
		t.Fatalf("config = %+v", cfg)
	}
	s := cfg.Jobs[0].Spec()
	want := job.Spec{
		Name: "nightly", Schedule: "0 0 2 * * ?", Handler: job.HandlerShell, Params: map[string]string{"command": "echo hi"},
		Timeout: job.Duration(90 * time.Second), Mode: job.ModeLocal,
		Misfire: job.Misfire{Policy: job.MisfireFireAll, Limit: 5}, Overlap: job.OverlapQueue,
		Routing: job.Routing{Strategy: job.RouteConsistentHash, HashKey: "tenant", Labels: map[string]string{"os": "linux"}, Clients: []string{"c1", "c2"}, Width: 2},
		Retry: job.Retry{Max: 3, Backoff: job.BackoffExponential, Delay: job.Duration(10 * time.Second),
			MaxDelay: job.Duration(5 * time.Minute), Jitter: 0.2},
		Overdue:    job.Overdue{After: job.Duration(45 * time.Second), Ratio: 2},
		Rerunnable: true,
	}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("spec =\n%+v\nwant\n%+v", s, want)
	}
	r := cfg.Jobs[1].Spec().Routing
	if r.Strategy != job.RouteShardBroadcast || r.Shards != 3 || !slices.Equal(r.ShardItems, []string{"a", "b", "c"}) {
		t.Fatalf("routing = %+v", r)
	}

	// A bad value names its key.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("jobs:\n  - name: x\n    schedule: '@hourly'\n    command: 'true'\n    retry: {delay: soon}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg = DefaultConfig()
	if err := config.Load(bad, nil, nil, &cfg); err == nil || !strings.Contains(err.Error(), "delay") {
		t.Fatalf("err = %v, want it to name retry.delay", err)
	}
}

func TestProgressReachesTheHeartbeatAndTheOutput(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	c, _, release := newTestClientWith(t, func() time.Time { return now }, func(cfg *Config) {})
	reported := make(chan struct{})
	c.Handle("steps", func(ctx context.Context, jc JobContext) error {
		jc.Progress(10, "starting")
		jc.Progress(140, strings.Repeat("é", 150)) // out of range, too long: clamped and cut
		close(reported)
		<-release
		return nil
	})
	s := startFakeServer(t, c, "s1")
	c.onDispatch(dispatch("p@1", "steps", 1, now.Add(time.Minute)))
	<-reported
	c.heartbeat()
	mine := func(h *wire.Heartbeat) bool { return len(h.Progress) > 0 }
	waitFor(t, func() bool { return len(received(s, mine)) > 0 })
	p := received(s, mine)[0].Progress
	if len(p) != 1 || p[0].ExecID != "p@1" || p[0].Run != 1 || p[0].Percent != 100 ||
		len(p[0].Message) > wire.MaxProgressMessage || !utf8.ValidString(p[0].Message) {
		t.Fatalf("progress %+v: want the last report, clamped to 100 and cut to valid UTF-8", p)
	}
	close(release)
	waitFor(t, func() bool { return c.PendingResults() == 1 })
	if r := pendingResult(t, c, "p@1", 1); !strings.Contains(r.Result.Output, "progress 10%: starting") {
		t.Fatalf("output %q: want the progress lines", r.Result.Output)
	}
}
