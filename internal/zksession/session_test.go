package zksession_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"go.uber.org/goleak"

	"github.com/clover-sched/clover/internal/testenv"
	"github.com/clover-sched/clover/internal/zksession"
	"github.com/clover-sched/clover/internal/zksession/zksessiontest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, testenv.KeptGoroutines()) }

const timeout = time.Second

func connect(t *testing.T, addr, root string, opts ...zksession.Option) *zksession.Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	s, err := zksession.Connect(ctx, []string{addr}, root, timeout, logger, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// next waits for the next state on ch that satisfies ok.
func next(t *testing.T, ch <-chan zksession.State, within time.Duration, ok func(zksession.State) bool) zksession.State {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case st, open := <-ch:
			if !open {
				t.Fatal("subscription closed")
			}
			if ok(st) {
				return st
			}
		case <-deadline:
			t.Fatalf("no matching state within %s", within)
		}
	}
}

func kind(k zksession.Kind) func(zksession.State) bool {
	return func(st zksession.State) bool { return st.Kind == k }
}

func TestConnectEnsuresRootAndPaths(t *testing.T) {
	z := testenv.StartZooKeeper(t)
	s := connect(t, z.Addr, "/clover/a")
	if s.ID() == 0 {
		t.Fatal("no session id")
	}
	if ok, _, err := s.Conn().Exists("/clover/a"); err != nil || !ok {
		t.Fatalf("root not created: %v %v", ok, err)
	}
	if got := s.Path("servers", "x"); got != "/clover/a/servers/x" {
		t.Fatalf("Path = %q", got)
	}
	ctx := context.Background()
	for range 2 { // the second run finds everything there
		if err := s.EnsurePath(ctx, s.Path("b", "c", "d")); err != nil {
			t.Fatal(err)
		}
	}
	if !s.Healthy(s.SessionTimeout()) {
		t.Fatal("fresh session not healthy")
	}
}

func TestConnectGivesUpWithContext(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)) // nobody listens
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := zksession.Connect(ctx, []string{addr}, "/clover", timeout, slog.New(slog.DiscardHandler))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's deadline as the cause", err)
	}
	if !strings.Contains(err.Error(), addr) {
		t.Fatalf("err = %v, want it to name %s", err, addr)
	}
	t.Logf("gave up after %s: %v", time.Since(start).Round(time.Millisecond), err)
}

func TestSubscribeSeesOutageAndHealthyFollows(t *testing.T) {
	z := testenv.StartZooKeeper(t)
	s := connect(t, z.Addr, "/clover")
	sub := s.Subscribe()
	id := s.ID()

	z.Stop()
	next(t, sub, 5*time.Second, kind(zksession.Disconnected))
	if s.Healthy(time.Hour) {
		t.Fatal("healthy while disconnected")
	}
	z.Start()
	st := next(t, sub, 15*time.Second, kind(zksession.Connected))
	t.Logf("after restart: session 0x%x (before 0x%x)", st.SessionID, id)
	testenv.WaitFor(t, 5*time.Second, "healthy again", func() bool { return s.Healthy(s.SessionTimeout() / 2) })

	s.Unsubscribe(sub)
	if _, open := <-sub; open {
		t.Fatal("unsubscribed channel still open")
	}
}

func TestExpiryIsReportedAndANewSessionFollows(t *testing.T) {
	z := testenv.StartZooKeeper(t)
	var p zksessiontest.Partition
	s := connect(t, z.Addr, "/clover", p.Option())
	watcher := connect(t, z.Addr, "/clover")
	if _, err := s.Conn().Create("/clover/mine", nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	sub := s.Subscribe()
	old := s.ID()

	p.Cut()
	next(t, sub, 5*time.Second, kind(zksession.Disconnected))
	testenv.WaitFor(t, timeout+2*time.Second, "server to expire the cut session", func() bool {
		ok, _, err := watcher.Conn().Exists("/clover/mine")
		return err == nil && !ok
	})
	p.Heal()
	exp := next(t, sub, 5*time.Second, kind(zksession.Expired))
	if exp.SessionID != old {
		t.Fatalf("expired 0x%x, want 0x%x", exp.SessionID, old)
	}
	if n, _ := s.Losses(); n != 1 {
		t.Fatalf("Losses() expired = %d, want 1", n)
	}
	st := next(t, sub, 5*time.Second, kind(zksession.Connected))
	if st.SessionID == old || st.SessionID != s.ID() {
		t.Fatalf("new session 0x%x, old 0x%x, ID() 0x%x", st.SessionID, old, s.ID())
	}
}

func TestCloseClosesSubscriptions(t *testing.T) {
	z := testenv.StartZooKeeper(t)
	s := connect(t, z.Addr, "/clover")
	sub := s.Subscribe()
	s.Close()
	for range sub { // drains what was queued, then ends
	}
	if err := s.WaitConnected(context.Background()); err != zksession.ErrClosed {
		t.Fatalf("WaitConnected after Close = %v", err)
	}
	if _, open := <-s.Subscribe(); open {
		t.Fatal("subscription after Close is open")
	}
}

// A process stopped past its session timeout (simulated by freezing its connection) must not trust the
// session when it resumes, although the client library has not yet noticed anything.
func TestHealthyDistrustsAPausedSession(t *testing.T) {
	z := testenv.StartZooKeeper(t)
	var p zksessiontest.Partition
	s := connect(t, z.Addr, "/clover", p.Option())
	watcher := connect(t, z.Addr, "/clover")
	if _, err := s.Conn().Create("/clover/mine", nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	maxAge := s.SessionTimeout() / 2
	testenv.WaitFor(t, 2*time.Second, "healthy", func() bool { return s.Healthy(maxAge) })
	sub := s.Subscribe()

	p.Freeze()
	start := time.Now()
	testenv.WaitFor(t, 2*timeout, "unhealthy while frozen", func() bool { return !s.Healthy(maxAge) })
	t.Logf("unhealthy %s after the freeze; library state %s", time.Since(start).Round(time.Millisecond), s.State().Kind)
	if s.State().Kind != zksession.Connected {
		t.Fatal("test is moot: the library noticed the freeze")
	}
	testenv.WaitFor(t, timeout+2*time.Second, "server to expire the frozen session", func() bool {
		ok, _, err := watcher.Conn().Exists("/clover/mine")
		return err == nil && !ok
	})
	p.Thaw()
	if s.Healthy(maxAge) {
		t.Fatal("healthy right after resuming from a pause longer than the session timeout")
	}
	next(t, sub, 5*time.Second, kind(zksession.Expired))
	next(t, sub, 5*time.Second, kind(zksession.Connected))
	testenv.WaitFor(t, 5*time.Second, "healthy in the new session", func() bool { return s.Healthy(maxAge) })
}
