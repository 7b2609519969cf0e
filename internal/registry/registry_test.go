package registry

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"go.uber.org/goleak"

	"github.com/clover-sched/clover/internal/testenv"
	"github.com/clover-sched/clover/internal/zksession"
	"github.com/clover-sched/clover/internal/zksession/zksessiontest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, testenv.KeptGoroutines()) }

const sessionTimeout = time.Second

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func newSession(t *testing.T, z *testenv.ZooKeeper, opts ...zksession.Option) *zksession.Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := zksession.Connect(ctx, []string{z.Addr}, "/clover", sessionTimeout, testLogger(t), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func member(id string) Member {
	return Member{
		ID:        id,
		Endpoint:  "tcp://127.0.0.1:5555",
		APIAddr:   "127.0.0.1:8080",
		Capacity:  4,
		Labels:    map[string]string{"zone": "a"},
		Handlers:  []string{"shell"},
		StartedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Version:   "test",
	}
}

func register(t *testing.T, sess *zksession.Session, kind string, m Member) *Registration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := Register(ctx, sess, kind, m, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close(context.Background()) })
	return r
}

// startCache runs a cache until the test ends and waits for its first listing.
func startCache(t *testing.T, sess *zksession.Session, kind string, logger *slog.Logger) *Cache {
	t.Helper()
	c := NewCache(sess, kind, logger)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	select {
	case <-c.Synced():
	case <-time.After(10 * time.Second):
		t.Fatal("cache not synced")
	}
	return c
}

func ids(c *Cache) string {
	var out []string
	for _, m := range c.Members() {
		out = append(out, m.ID)
	}
	return strings.Join(out, ",")
}

func waitIDs(t *testing.T, c *Cache, within time.Duration, want string) time.Duration {
	t.Helper()
	start := time.Now()
	testenv.WaitFor(t, within, "members "+want, func() bool { return ids(c) == want })
	return time.Since(start)
}

func TestCacheFollowsRegisterUpdateCloseAndDeletion(t *testing.T) {
	z := testenv.StartZooKeeper(t)
	reader := newSession(t, z)
	servers := startCache(t, reader, KindServers, testLogger(t))
	clients := startCache(t, reader, KindClients, testLogger(t))
	if ids(servers) != "" {
		t.Fatalf("empty registry shows %q", ids(servers))
	}

	s1 := register(t, newSession(t, z), KindServers, member("s1"))
	s2 := register(t, newSession(t, z), KindServers, member("s2"))
	c1m := member("c1")
	c1m.Declared = json.RawMessage(`[{"name":"report","schedule":"@daily"}]`)
	c1m.Jobs = []string{"report"}
	register(t, newSession(t, z), KindClients, c1m)
	d := waitIDs(t, servers, 5*time.Second, "s1,s2")
	waitIDs(t, clients, 5*time.Second, "c1")
	t.Logf("cache saw both servers after %s", d)
	select {
	case <-servers.Changes():
	default:
		t.Fatal("no change notified")
	}
	got, ok := servers.Member("s1")
	want := member("s1")
	want.Kind = KindServers
	if !ok || got.Endpoint != want.Endpoint || got.Labels["zone"] != "a" || !got.StartedAt.Equal(want.StartedAt) || got.Kind != KindServers {
		t.Fatalf("Member(s1) = %+v, %v", got, ok)
	}
	if c, _ := clients.Member("c1"); string(c.Declared) != string(c1m.Declared) || !slices.Equal(c.Jobs, []string{"report"}) {
		t.Fatalf("Member(c1) = %+v", c)
	}
	got.Labels["zone"] = "changed" // a snapshot is the caller's own
	if again, _ := servers.Member("s1"); again.Labels["zone"] != "a" {
		t.Fatal("changing a snapshot changed the cache")
	}

	upd := member("s1")
	upd.Capacity, upd.Jobs = 8, []string{"backup"}
	if err := s1.Update(context.Background(), upd); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, "update seen", func() bool {
		m, _ := servers.Member("s1")
		return m.Capacity == 8 && slices.Equal(m.Jobs, []string{"backup"})
	})
	if err := s1.Update(context.Background(), member("other")); err == nil {
		t.Fatal("Update changed the id")
	}

	if err := s2.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Logf("cache dropped a closed registration after %s", waitIDs(t, servers, 5*time.Second, "s1"))

	// Someone deletes s1's node: the registration puts it back.
	if err := reader.Conn().Delete(reader.Path(KindServers, "s1"), -1); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, "s1 restored", func() bool {
		ok, _, err := reader.Conn().Exists(reader.Path(KindServers, "s1"))
		return err == nil && ok
	})
	waitIDs(t, servers, 5*time.Second, "s1")
	if m, _ := servers.Member("s1"); m.Capacity != 8 {
		t.Fatalf("restored with old data: %+v", m)
	}
}

// countingHandler counts log records by message and path.
type countingHandler struct {
	mu sync.Mutex
	n  map[string]int
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *countingHandler) WithGroup(string) slog.Handler            { return h }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	key := r.Message
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "path" {
			key += " " + a.Value.String()
		}
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n[key]++
	return nil
}

func (h *countingHandler) count(key string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n[key]
}

func TestCacheSkipsInvalidDataAndLogsItOnce(t *testing.T) {
	z := testenv.StartZooKeeper(t)
	raw := newSession(t, z)
	ctx := context.Background()
	if err := raw.EnsurePath(ctx, raw.Path(KindServers)); err != nil {
		t.Fatal(err)
	}
	wrongID, _ := json.Marshal(member("someone-else"))
	noEndpoint := member("no-endpoint")
	noEndpoint.Endpoint = ""
	noEndpointJSON, _ := json.Marshal(noEndpoint)
	garbage := map[string][]byte{
		"not-json":    []byte("{"),
		"empty":       nil,
		"wrong-id":    wrongID,
		"no-endpoint": noEndpointJSON,
		"bad name!":   []byte(`{"id":"bad name!","endpoint":"tcp://h:1"}`),
	}
	for name, data := range garbage {
		if _, err := raw.Conn().Create(raw.Path(KindServers, name), data, zk.FlagPersistent, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
	}
	register(t, newSession(t, z), KindServers, member("good"))
	logs := &countingHandler{n: map[string]int{}}
	c := startCache(t, newSession(t, z), KindServers, slog.New(logs))
	waitIDs(t, c, 5*time.Second, "good")
	const skipped = "skipping member with invalid data"
	for name := range garbage {
		if n := logs.count(skipped + " " + raw.Path(KindServers, name)); n != 1 {
			t.Errorf("%s logged %d times", name, n)
		}
	}

	// Rewriting the same garbage is not logged again; fixing it brings the member in.
	notJSON := raw.Path(KindServers, "not-json")
	if _, err := raw.Conn().Set(notJSON, []byte("{"), -1); err != nil {
		t.Fatal(err)
	}
	fixed, _ := json.Marshal(member("not-json"))
	if _, err := raw.Conn().Set(notJSON, fixed, -1); err != nil {
		t.Fatal(err)
	}
	waitIDs(t, c, 5*time.Second, "good,not-json")
	if n := logs.count(skipped + " " + notJSON); n != 1 {
		t.Fatalf("not-json logged %d times", n)
	}
	// Breaking it again takes it out of the view.
	if _, err := raw.Conn().Set(notJSON, []byte("[]"), -1); err != nil {
		t.Fatal(err)
	}
	waitIDs(t, c, 5*time.Second, "good")
}

func TestRegistrationSurvivesZooKeeperRestart(t *testing.T) {
	z := testenv.StartZooKeeper(t)
	member := newSession(t, z)
	register(t, member, KindServers, Member{ID: "s1", Endpoint: "tcp://127.0.0.1:1"})
	c := startCache(t, newSession(t, z), KindServers, testLogger(t))
	waitIDs(t, c, 5*time.Second, "s1")
	before := member.ID()

	z.Stop()
	stopped := time.Now()
	testenv.WaitFor(t, 10*time.Second, "ZooKeeper down longer than the session timeout", func() bool {
		return time.Since(stopped) > 2*sessionTimeout
	})
	z.Start()
	testenv.WaitFor(t, 15*time.Second, "member session back", func() bool { return member.Healthy(sessionTimeout) })
	waitIDs(t, c, 5*time.Second, "s1")
	ok, stat, err := member.Conn().Exists(member.Path(KindServers, "s1"))
	if err != nil || !ok || stat.EphemeralOwner != member.ID() {
		t.Fatalf("node after restart: %v %v %+v", ok, err, stat)
	}
	// ZooKeeper restores sessions from its log with a fresh timeout, so a client that comes back quickly
	// keeps its session; TestRegistrationRecreatedAfterSessionExpiry covers a real expiry.
	t.Logf("session before 0x%x, after 0x%x", before, member.ID())
}

func TestRegistrationRecreatedAfterSessionExpiry(t *testing.T) {
	z := testenv.StartZooKeeper(t)
	var p zksessiontest.Partition
	member := newSession(t, z, p.Option())
	register(t, member, KindServers, Member{ID: "s1", Endpoint: "tcp://127.0.0.1:1"})
	register(t, newSession(t, z), KindServers, Member{ID: "s2", Endpoint: "tcp://127.0.0.1:2"})
	c := startCache(t, newSession(t, z), KindServers, testLogger(t))
	waitIDs(t, c, 5*time.Second, "s1,s2")
	before := member.ID()

	p.Cut()
	d := waitIDs(t, c, sessionTimeout+2*time.Second, "s2")
	t.Logf("cache dropped the partitioned member %s after the cut (session timeout %s)", d, sessionTimeout)
	p.Heal()
	d = waitIDs(t, c, 10*time.Second, "s1,s2")
	t.Logf("cache saw it again %s after the heal", d)
	ok, stat, err := member.Conn().Exists(member.Path(KindServers, "s1"))
	if err != nil || !ok || stat.EphemeralOwner != member.ID() || member.ID() == before {
		t.Fatalf("node %v %v owner 0x%x, session 0x%x, before 0x%x", ok, err, stat.EphemeralOwner, member.ID(), before)
	}
}

func TestRegisterWaitsForANodeOfAnotherSession(t *testing.T) {
	z := testenv.StartZooKeeper(t)
	old := newSession(t, z)
	register(t, old, KindServers, Member{ID: "s1", Endpoint: "tcp://127.0.0.1:1"})
	sess := newSession(t, z)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := Register(ctx, sess, KindServers, Member{ID: "s1", Endpoint: "tcp://127.0.0.1:1"}, testLogger(t)); err == nil {
		t.Fatal("registered over a live node of another session")
	}

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r, err := Register(ctx, sess, KindServers, Member{ID: "s1", Endpoint: "tcp://127.0.0.1:2"}, testLogger(t))
		if err == nil {
			err = r.Close(ctx)
		}
		done <- err
	}()
	old.Close() // the previous process's session ends
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestMemberValidate(t *testing.T) {
	tests := map[string]struct {
		m       Member
		wantErr string
	}{
		"valid":         {m: Member{ID: "server-1.example:a@b_c", Endpoint: "tcp://10.0.0.1:5555"}},
		"ipv6":          {m: Member{ID: "s", Endpoint: "tcp://[::1]:5555"}},
		"empty id":      {m: Member{Endpoint: "tcp://h:1"}, wantErr: "id"},
		"slash in id":   {m: Member{ID: "a/b", Endpoint: "tcp://h:1"}, wantErr: "id"},
		"dot id":        {m: Member{ID: "..", Endpoint: "tcp://h:1"}, wantErr: "id"},
		"no endpoint":   {m: Member{ID: "s"}, wantErr: "endpoint"},
		"not tcp":       {m: Member{ID: "s", Endpoint: "ipc:///tmp/x"}, wantErr: "endpoint"},
		"wildcard host": {m: Member{ID: "s", Endpoint: "tcp://*:1"}, wantErr: "endpoint"},
		"no port":       {m: Member{ID: "s", Endpoint: "tcp://h"}, wantErr: "endpoint"},
		"bad port":      {m: Member{ID: "s", Endpoint: "tcp://h:70000"}, wantErr: "endpoint"},
		"negative cap":  {m: Member{ID: "s", Endpoint: "tcp://h:1", Capacity: -1}, wantErr: "capacity"},
		"bad kind":      {m: Member{ID: "s", Kind: "a/b", Endpoint: "tcp://h:1"}, wantErr: "kind"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			err := tt.m.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want one about %s", err, tt.wantErr)
			case err != nil && !strings.HasPrefix(err.Error(), "registry: "):
				t.Fatalf("error %q lacks the package prefix", err)
			}
		})
	}
}
