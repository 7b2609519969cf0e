package client

import (
	"context"
	"errors"
	"github.com/clover-sched/clover/internal/config"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/testenv"
	"github.com/clover-sched/clover/internal/transport"
	"github.com/clover-sched/clover/internal/wire"
)

// The spawning threads live as long as the process, by design (see spawn.go).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, testenv.KeptGoroutines(),
		goleak.IgnoreTopFunction("github.com/clover-sched/clover/client.(*threadPool).serve"))
}

// newTestClient is a client that is not running: dispatches are handed to onDispatch directly, and acks
// and results go to an outbox without peers (they are dropped, as when no server is up).
func newTestClient(t *testing.T, now time.Time, capacity int) (*Client, *atomic.Int64, chan struct{}) {
	t.Helper()
	return newTestClientWith(t, func() time.Time { return now }, func(cfg *Config) { cfg.Capacity = capacity })
}

// newTestClientWith is newTestClient with a clock and changes to the default config.
func newTestClientWith(t *testing.T, clock func() time.Time, mutate func(*Config)) (*Client, *atomic.Int64, chan struct{}) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.ID = "c1"
	cfg.StateDir = t.TempDir()
	cfg.Insecure = true // these tests drive the client's decisions, not its transport's security
	mutate(&cfg)
	c, err := New(cfg, WithClock(clock), WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	c.outbox = transport.NewOutbox(slog.New(slog.DiscardHandler), nil)
	t.Cleanup(c.outbox.Close)
	var runs atomic.Int64
	release := make(chan struct{})
	c.Handle("work", func(ctx context.Context, jc JobContext) error {
		runs.Add(1)
		<-release
		return nil
	})
	c.Handle("boom", func(ctx context.Context, jc JobContext) error { panic("kaboom") })
	return c, &runs, release
}

func dispatch(id, handler string, epoch int64, acceptBy time.Time) *wire.Dispatch {
	return &wire.Dispatch{
		Header: wire.Header{From: "s1", Epoch: epoch}, ExecID: id, Job: "j", Handler: handler,
		Attempt: 1, AcceptBy: acceptBy,
	}
}

func TestClientDecidesEachDispatchOnce(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	later := now.Add(time.Minute)
	for name, tc := range map[string]struct {
		// spec
		seenEpoch  int64
		capacity   int
		dispatches []*wire.Dispatch
		// expectations
		runs                                      int64
		accepted, refused, duplicates, staleEpoch int64
	}{
		"runs a dispatch": {
			capacity: 1, dispatches: []*wire.Dispatch{dispatch("a", "work", 3, later)},
			runs: 1, accepted: 1,
		},
		"a re-sent dispatch runs once": {
			capacity: 4, dispatches: []*wire.Dispatch{dispatch("a", "work", 3, later), dispatch("a", "work", 3, later), dispatch("a", "work", 3, later)},
			runs: 1, accepted: 1, duplicates: 2,
		},
		"ignores a deposed leader": {
			seenEpoch: 5, capacity: 1, dispatches: []*wire.Dispatch{dispatch("a", "work", 4, later)},
			staleEpoch: 1,
		},
		"epoch zero never passes once a leader is known": {
			seenEpoch: 1, capacity: 1, dispatches: []*wire.Dispatch{dispatch("a", "work", 0, later)},
			staleEpoch: 1,
		},
		"refuses after accept-by": {
			capacity: 1, dispatches: []*wire.Dispatch{dispatch("a", "work", 3, now.Add(-time.Millisecond))},
			refused: 1,
		},
		"a refused dispatch stays refused when re-sent": {
			capacity: 1, dispatches: []*wire.Dispatch{dispatch("a", "work", 3, now.Add(-time.Millisecond)), dispatch("a", "work", 3, later)},
			refused: 1, duplicates: 1,
		},
		"refuses past capacity": {
			capacity: 1, dispatches: []*wire.Dispatch{dispatch("a", "work", 3, later), dispatch("b", "work", 3, later)},
			runs: 1, accepted: 1, refused: 1,
		},
		"refuses an unknown handler": {
			capacity: 1, dispatches: []*wire.Dispatch{dispatch("a", "nope", 3, later)},
			refused: 1,
		},
	} {
		t.Run(name, func(t *testing.T) {
			c, runs, release := newTestClient(t, now, tc.capacity)
			c.raiseEpoch(tc.seenEpoch)
			for _, d := range tc.dispatches {
				c.onDispatch(d)
			}
			waitFor(t, func() bool { return runs.Load() == tc.runs })
			close(release)
			s := c.Stats()
			got := [4]int64{s.Accepted.Load(), s.Refused.Load(), s.Duplicates.Load(), s.StaleEpoch.Load()}
			want := [4]int64{tc.accepted, tc.refused, tc.duplicates, tc.staleEpoch}
			if got != want {
				t.Fatalf("accepted/refused/duplicates/stale = %v, want %v", got, want)
			}
			waitFor(t, func() bool { return c.PendingResults() == int(tc.runs) })
		})
	}
}

func TestHandlerPanicIsAFailedResult(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	c, _, release := newTestClient(t, now, 1)
	defer close(release)
	c.onDispatch(dispatch("a", "boom", 1, now.Add(time.Minute)))
	waitFor(t, func() bool { return c.Stats().Failed.Load() == 1 && c.PendingResults() == 1 })
	c.mu.Lock()
	frame := c.pending["a"][1].frame
	c.mu.Unlock()
	m, err := wire.Decode(frame)
	if err != nil {
		t.Fatal(err)
	}
	r := m.(*wire.Result)
	if r.Result.Status != job.StateFailed || !strings.Contains(r.Result.Error, "kaboom") {
		t.Fatalf("result = %+v, want failed with the panic", r.Result)
	}
}

func TestShellResultCarriesExitCodeAndOutputTail(t *testing.T) {
	out := newOutputLog(16)
	err := runShell(context.Background(), JobContext{
		ExecutionID: "e", Job: "j", Output: out,
		Params: map[string]string{"command": `echo "$CLOVER_EXECUTION-$CLOVER_PARAM_COLOUR"; printf '%0100d' 0; echo tail-end; exit 3`, "colour": "red"},
	})
	var ee interface{ ExitCode() int }
	if err == nil || !asExit(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("err = %v, want exit code 3", err)
	}
	if got := out.String(); len(got) != 16 || !strings.HasSuffix(got, "tail-end\n") {
		t.Fatalf("tail = %q, want the last 16 bytes ending in tail-end", got)
	}
}

func TestShellTimeoutKillsTheProcessGroup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	// The child sleeps in the background of a shell that waits for it: killing only the shell would leave it.
	err := runShell(ctx, JobContext{Output: newOutputLog(64), Params: map[string]string{"command": "sleep 30 & wait"}})
	if err == nil || time.Since(start) > 10*time.Second {
		t.Fatalf("err = %v after %s, want a prompt timeout", err, time.Since(start))
	}
}

func TestTailKeepsTheLastBytes(t *testing.T) {
	tl := newOutputLog(5)
	for _, s := range []string{"ab", "cd", "efg", "h"} {
		_, _ = tl.Write([]byte(s))
	}
	if got := tl.String(); got != "defgh" {
		t.Fatalf("tail = %q, want defgh", got)
	}
	_, _ = tl.Write([]byte("0123456789"))
	if got := tl.String(); got != "56789" {
		t.Fatalf("tail = %q, want 56789", got)
	}
}

func TestConfigValidateNamesTheKey(t *testing.T) {
	for name, tc := range map[string]struct {
		mutate func(*Config)
		want   string
	}{
		"id":        {func(c *Config) { c.ID = "a/b" }, `id "a/b"`},
		"listen":    {func(c *Config) { c.Listen = "127.0.0.1:1" }, `listen "127.0.0.1:1"`},
		"capacity":  {func(c *Config) { c.Capacity = -1 }, "capacity -1"},
		"job_nice":  {func(c *Config) { c.JobNice = 20 }, "job_nice 20"},
		"zookeeper": {func(c *Config) { c.ZooKeeper.Servers = nil }, "zookeeper.servers"},
		"width":     {func(c *Config) { c.Width = -1 }, "width -1"},
		"lease":     {func(c *Config) { c.LeaseRenew = 0 }, "lease_renew 0s"},
		"job":       {func(c *Config) { c.Jobs = []JobConfig{{Name: "x", Schedule: "@hourly"}} }, "jobs[0]: job x: handler is required"},
		"policy": {func(c *Config) {
			c.Jobs = []JobConfig{{Name: "x", Schedule: "@hourly", Command: "true", Retry: RetryConfig{Jitter: 2}}}
		}, "jobs[0]: job x: retry.jitter 2"},
		"local shards": {func(c *Config) {
			c.Jobs = []JobConfig{{Name: "x", Schedule: "@hourly", Command: "true", Mode: "local", Routing: RoutingConfig{Strategy: job.RouteShardBroadcast, Shards: 2}}}
		}, "jobs[0]: job x: a local job cannot be sharded"},
		"twice": {func(c *Config) {
			c.Jobs = []JobConfig{{Name: "x", Schedule: "@hourly", Command: "true"}, {Name: "x", Schedule: "@daily", Command: "true"}}
		}, "jobs[1]: job x is declared twice"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.KeysDir = "/etc/clover/keys"
			tc.mutate(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	bad := DefaultConfig()
	bad.KeysDir = "/etc/clover/keys"
	bad.Jobs = []JobConfig{{Name: "x", Schedule: "0 61 * * * ?", Command: "true"}}
	if _, err := New(bad); err == nil || !strings.Contains(err.Error(), "minute") {
		t.Fatalf("New with a bad cron: err = %v, want it to name the minute field", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, 10*time.Second, "condition", cond)
}

func asExit(err error, target *interface{ ExitCode() int }) bool { return errors.As(err, target) }

func TestARefusedExecutionMayBeAcceptedOnALaterAttempt(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	c, runs, release := newTestClient(t, now, 1)
	later := now.Add(time.Minute)
	c.onDispatch(dispatch("busy", "work", 1, later)) // takes the only slot
	second := dispatch("x", "work", 1, later)
	c.onDispatch(second) // refused: at capacity
	close(release)
	waitFor(t, func() bool { return c.PendingResults() == 1 }) // the slot is free again
	c.onDispatch(second)                                       // the same attempt again: still refused
	retry := dispatch("x", "work", 1, later)
	retry.Attempt = 2
	c.onDispatch(retry) // a new attempt: accepted
	waitFor(t, func() bool { return runs.Load() == 2 })
	if got := c.Stats().Refused.Load(); got != 1 {
		t.Fatalf("refused = %d, want 1", got)
	}
	c.onDispatch(retry) // and never run twice
	if got := runs.Load(); got != 2 {
		t.Fatalf("runs = %d, want 2", got)
	}
}

// A shell job this client declares runs here only with the command it declares: another client that
// declared the job differently (and had its version stored first) does not get its command run here.
func TestADeclaredShellJobRunsOnlyItsOwnCommand(t *testing.T) {
	c, _, _ := newTestClientWith(t, time.Now, func(cfg *Config) { cfg.Handlers = []string{"shell"} })
	if err := c.Declare(job.Spec{Name: "x", Schedule: "@every 1h", Handler: job.HandlerShell, Params: map[string]string{"command": "echo mine"}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		job, command string
		runs         bool
	}{
		{"x", "echo mine", true},
		{"x", "echo theirs", false},
		{"y", "echo an admin's", true}, // not declared here: written by an admin
	} {
		h, _ := c.resolve(&wire.Dispatch{Job: tc.job, Handler: job.HandlerShell, Params: map[string]string{"command": tc.command}})
		if (h != nil) != tc.runs {
			t.Errorf("job %s with %q: runs = %v, want %v", tc.job, tc.command, h != nil, tc.runs)
		}
	}
}

// The Debian package's client.yaml holds only keys a client knows, with values it takes.
func TestThePackagesClientConfigLoads(t *testing.T) {
	cfg := DefaultConfig()
	if err := config.Load("../packaging/etc/client.yaml", nil, nil, &cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("packaging/etc/client.yaml: %v", err)
	}
	if cfg.StateDir != "/var/lib/clover/state" || cfg.Fallback.MongoURIFile != "/etc/clover/mongo.uri" || len(cfg.ZooKeeper.Servers) != 3 {
		t.Fatalf("loaded %+v", cfg)
	}
}
