package election

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"path"
	"slices"
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

const (
	sessionTimeout = time.Second
	// expiryBound is how long a test waits for ZooKeeper to expire a session and the next candidate to lead:
	// the session timeout plus room for a loaded CI machine. How fast failover really is, is measured by the
	// bench (make bench), not asserted here.
	expiryBound  = 3*sessionTimeout + 5*time.Second
	electionPath = "/clover/election"
)

func newSession(t *testing.T, z *testenv.ZooKeeper, opts ...zksession.Option) *zksession.Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	s, err := zksession.Connect(ctx, []string{z.Addr}, "/clover", sessionTimeout, logger, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// cand is a candidate under test: its Campaign runs on a goroutine and reports to res.
type cand struct {
	t      *testing.T
	id     string
	sess   *zksession.Session
	e      *Election
	res    chan result
	cancel context.CancelFunc
}

type result struct {
	term *Term
	err  error
}

func newCand(t *testing.T, sess *zksession.Session, id string) *cand {
	value, _ := json.Marshal(map[string]string{"api": "http://" + id})
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	return &cand{t: t, id: id, sess: sess, e: New(sess, electionPath, id, value, logger)}
}

// campaign starts Campaign on a goroutine; the test's cleanup stops it.
func (c *cand) campaign() {
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan result, 1)
	c.res, c.cancel = res, cancel
	go func() {
		term, err := c.e.Campaign(ctx)
		res <- result{term, err}
	}()
	c.t.Cleanup(func() {
		cancel()
		<-res
	})
}

// leads waits until Campaign returns a term.
func (c *cand) leads(within time.Duration) *Term {
	c.t.Helper()
	select {
	case r := <-c.res:
		c.res <- r
		if r.err == nil {
			return r.term
		}
	default:
	}
	select {
	case r := <-c.res:
		if r.err != nil {
			c.t.Fatalf("%s: campaign: %v", c.id, r.err)
		}
		c.res <- r // keep it for cleanup
		return r.term
	case <-time.After(within):
		c.t.Fatalf("%s does not lead within %s", c.id, within)
		return nil
	}
}

func (c *cand) leading() bool {
	select {
	case r := <-c.res:
		c.res <- r
		return r.err == nil
	default:
		return false
	}
}

// firstLeader waits until exactly one of cs leads and returns it with its term.
func firstLeader(t *testing.T, within time.Duration, cs ...*cand) (*cand, *Term) {
	t.Helper()
	var leader *cand
	testenv.WaitFor(t, within, "a leader", func() bool {
		for _, c := range cs {
			if c.leading() {
				leader = c
				return true
			}
		}
		return false
	})
	for _, c := range cs {
		if c != leader && c.leading() {
			t.Fatalf("%s and %s both lead", leader.id, c.id)
		}
	}
	return leader, leader.leads(0)
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func checkLeader(t *testing.T, e *Election, id string, epoch int64) {
	t.Helper()
	l, err := e.Leader(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if l.ID != id || l.Epoch != epoch {
		t.Fatalf("Leader() = %s epoch %d, want %s epoch %d", l.ID, l.Epoch, id, epoch)
	}
}

// nodes maps candidate id to node name, as read by a raw connection.
func nodes(t *testing.T, conn *zk.Conn) map[string]string {
	t.Helper()
	children, _, err := conn.Children(electionPath)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, c := range candidates(children) {
		data, _, err := conn.Get(electionPath + "/" + c.name)
		var nd nodeData
		if err == nil && json.Unmarshal(data, &nd) == nil {
			out[nd.ID] = c.name
		}
	}
	return out
}

func seqOf(name string) int64 { return candidates([]string{name})[0].seq }

func TestOneLeaderAndResignHandsOverWithLargerEpoch(t *testing.T) {
	z := testenv.StartZooKeeper(t)
	cs := []*cand{newCand(t, newSession(t, z), "a"), newCand(t, newSession(t, z), "b"), newCand(t, newSession(t, z), "c")}
	for _, c := range cs {
		c.campaign()
	}
	ctx := context.Background()
	observer := New(newSession(t, z), electionPath, "observer", nil, slog.New(slog.DiscardHandler))
	obsCtx, stopObserving := context.WithCancel(ctx)
	var (
		mu       sync.Mutex
		observed []Leader
	)
	observing := make(chan struct{})
	go func() {
		defer close(observing)
		for l := range observer.Observe(obsCtx) {
			mu.Lock()
			observed = append(observed, l)
			mu.Unlock()
		}
	}()
	var epochs []int64
	for len(cs) > 0 {
		leader, term := firstLeader(t, 10*time.Second, cs...)
		checkLeader(t, leader.e, leader.id, term.Epoch())
		if n := len(epochs); n > 0 && term.Epoch() <= epochs[n-1] {
			t.Fatalf("epoch %d after %d", term.Epoch(), epochs[n-1])
		}
		epochs = append(epochs, term.Epoch())
		if err := leader.e.Resign(ctx); err != nil {
			t.Fatal(err)
		}
		if !closed(term.Done()) {
			t.Fatal("Done open after Resign")
		}
		cs = slices.DeleteFunc(cs, func(c *cand) bool { return c == leader })
	}
	t.Logf("epochs %v", epochs)
	if _, err := observer.Leader(ctx); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("Leader() with no candidates: %v", err)
	}

	// The observer saw each leader in turn (perhaps after a first "none"), then none.
	testenv.WaitFor(t, 5*time.Second, "observer to see that nobody leads", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(observed) > 0 && observed[len(observed)-1].ID == ""
	})
	stopObserving()
	<-observing
	var seenEpochs []int64
	for _, l := range observed {
		if l.ID != "" {
			seenEpochs = append(seenEpochs, l.Epoch)
		}
	}
	if !slices.Equal(seenEpochs, epochs) {
		t.Fatalf("observed %+v, want epochs %v", observed, epochs)
	}
}

func TestFailoverWhenLeaderSessionCloses(t *testing.T) {
	z := testenv.StartZooKeeper(t)
	a, b := newCand(t, newSession(t, z), "a"), newCand(t, newSession(t, z), "b")
	a.campaign()
	termA := a.leads(10 * time.Second)
	b.campaign()

	observer := New(newSession(t, z), electionPath, "observer", nil, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seen := observer.Observe(ctx)
	if l := <-seen; l.ID != "a" || l.Epoch != termA.Epoch() {
		t.Fatalf("observed %+v first", l)
	}

	start := time.Now()
	a.sess.Close()
	termB := b.leads(expiryBound)
	t.Logf("b leads %s after a's session closed; epochs %d -> %d", time.Since(start).Round(time.Millisecond), termA.Epoch(), termB.Epoch())
	if termB.Epoch() <= termA.Epoch() {
		t.Fatalf("epoch %d after %d", termB.Epoch(), termA.Epoch())
	}
	if !closed(termA.Done()) {
		t.Fatal("a's term still open after its session closed")
	}
	select {
	case l := <-seen:
		if l.ID != "b" || l.Epoch != termB.Epoch() {
			t.Fatalf("observed %+v after failover", l)
		}
	case <-time.After(expiryBound):
		t.Fatal("observer did not see b")
	}
	cancel()
	for range seen { // closed once ctx ends
	}
}

func TestFailoverWhenLeaderSessionExpires(t *testing.T) {
	z := testenv.StartZooKeeper(t)
	var p zksessiontest.Partition
	a, b := newCand(t, newSession(t, z, p.Option()), "a"), newCand(t, newSession(t, z), "b")
	a.campaign()
	termA := a.leads(10 * time.Second)
	b.campaign()
	testenv.WaitFor(t, 5*time.Second, "b queued", func() bool { return nodes(t, b.sess.Conn())["b"] != "" })

	start := time.Now()
	p.Cut()
	testenv.WaitFor(t, expiryBound, "a's term to end on disconnect", func() bool { return closed(termA.Done()) })
	t.Logf("a's term ended %s after the cut", time.Since(start).Round(time.Millisecond))
	termB := b.leads(expiryBound)
	t.Logf("b leads %s after the cut; epochs %d -> %d", time.Since(start).Round(time.Millisecond), termA.Epoch(), termB.Epoch())
	if termB.Epoch() <= termA.Epoch() {
		t.Fatalf("epoch %d after %d", termB.Epoch(), termA.Epoch())
	}

	// a comes back in a new session and queues behind b.
	old := a.sess.ID()
	p.Heal()
	testenv.WaitFor(t, 5*time.Second, "a's new session", func() bool { id := a.sess.ID(); return id != 0 && id != old })
	if err := a.e.Resign(context.Background()); err != nil {
		t.Fatal(err)
	}
	a.campaign()
	testenv.WaitFor(t, 5*time.Second, "a queued again", func() bool { return nodes(t, b.sess.Conn())["a"] != "" })
	if a.leading() || closed(termB.Done()) {
		t.Fatal("a took over from b")
	}
	checkLeader(t, a.e, "b", termB.Epoch())

	if err := b.e.Resign(context.Background()); err != nil {
		t.Fatal(err)
	}
	termA2 := a.leads(5 * time.Second)
	if termA2.Epoch() <= termB.Epoch() {
		t.Fatalf("epoch %d after %d", termA2.Epoch(), termB.Epoch())
	}
}

func TestTermEndsWhenZooKeeperStopsAndCampaignResumes(t *testing.T) {
	z := testenv.StartZooKeeper(t)
	a, b := newCand(t, newSession(t, z), "a"), newCand(t, newSession(t, z), "b")
	a.campaign()
	termA := a.leads(10 * time.Second)
	b.campaign()
	testenv.WaitFor(t, 5*time.Second, "b queued", func() bool { return nodes(t, b.sess.Conn())["b"] != "" })

	start := time.Now()
	z.Stop()
	testenv.WaitFor(t, 3*time.Second, "a's term to end", func() bool { return closed(termA.Done()) })
	t.Logf("term ended %s after ZooKeeper stopped", time.Since(start).Round(time.Millisecond))
	if b.leading() {
		t.Fatal("b leads while ZooKeeper is down")
	}
	z.Start()

	// As a leader whose term ended would: resign (retrying until ZooKeeper answers), then campaign again.
	testenv.WaitFor(t, 15*time.Second, "a to resign", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return a.e.Resign(ctx) == nil
	})
	a.campaign()
	leader, term := firstLeader(t, 15*time.Second, a, b)
	t.Logf("%s leads after the restart, epoch %d -> %d", leader.id, termA.Epoch(), term.Epoch())
	if term.Epoch() <= termA.Epoch() {
		t.Fatalf("epoch %d after %d", term.Epoch(), termA.Epoch())
	}
}

func TestGarbageChildrenAreIgnored(t *testing.T) {
	z := testenv.StartZooKeeper(t)
	raw := newSession(t, z)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := raw.EnsurePath(ctx, electionPath); err != nil {
		t.Fatal(err)
	}
	garbage := []string{"garbage", "n_", "n_12", "n_00000000001", "n_-000000001", "_c_xyz-n_0000000000", "lock-0000000000", "n_000000000x"}
	for _, g := range garbage {
		if _, err := raw.Conn().Create(electionPath+"/"+g, []byte("\x00not json"), zk.FlagPersistent, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
	}
	observer := New(raw, electionPath, "observer", nil, slog.New(slog.DiscardHandler))
	if _, err := observer.Leader(ctx); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("Leader() over garbage = %v", err)
	}
	seen := observer.Observe(ctx)
	if l := <-seen; l.ID != "" || l.Epoch != 0 {
		t.Fatalf("observed %+v over garbage only, want the zero Leader", l)
	}

	value := []byte{0xff, 0xfe, 0x00, '{'} // not JSON, not UTF-8: opaque
	logger := slog.New(slog.NewTextHandler(t.Output(), nil))
	sess := newSession(t, z)
	a := &cand{t: t, id: "a", sess: sess, e: New(sess, electionPath, "a", value, logger)}
	a.campaign()
	term := a.leads(10 * time.Second)
	l := <-seen
	if l.ID != "a" || l.Epoch != term.Epoch() || string(l.Value) != string(value) {
		t.Fatalf("observed %+v", l)
	}
	if _, err := raw.Conn().Create(electionPath+"/late-garbage", nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	checkLeader(t, observer, "a", term.Epoch())
	if closed(term.Done()) {
		t.Fatal("garbage ended the term")
	}
	cancel()
	for range seen {
	}
}

func TestDeletingANonPredecessorChangesNothing(t *testing.T) {
	z := testenv.StartZooKeeper(t)
	raw := newSession(t, z)
	a, b, c := newCand(t, newSession(t, z), "a"), newCand(t, newSession(t, z), "b"), newCand(t, newSession(t, z), "c")
	a.campaign()
	termA := a.leads(10 * time.Second)
	for _, x := range []*cand{b, c} { // queue in order: a, b, c
		x.campaign()
		testenv.WaitFor(t, 5*time.Second, x.id+" queued", func() bool { return nodes(t, raw.Conn())[x.id] != "" })
	}
	still := func(what string) {
		t.Helper()
		if closed(termA.Done()) || b.leading() || c.leading() {
			t.Fatalf("after %s: leadership moved", what)
		}
		checkLeader(t, a.e, "a", termA.Epoch())
	}

	// c's node is nobody's predecessor; c notices its own node went and queues again, last.
	before := nodes(t, raw.Conn())
	if err := raw.Conn().Delete(electionPath+"/"+before["c"], -1); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, "c queued again", func() bool {
		n := nodes(t, raw.Conn())["c"]
		return n != "" && n != before["c"]
	})
	still("deleting c")

	// b's node is c's predecessor, not a's: c moves up behind a, b queues again behind c.
	before = nodes(t, raw.Conn())
	if err := raw.Conn().Delete(electionPath+"/"+before["b"], -1); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, "b queued again", func() bool {
		n := nodes(t, raw.Conn())["b"]
		return n != "" && n != before["b"]
	})
	still("deleting b")

	after := nodes(t, raw.Conn())
	if !(seqOf(after["a"]) < seqOf(after["c"]) && seqOf(after["c"]) < seqOf(after["b"])) {
		t.Fatalf("queue %v, want a < c < b", after)
	}
	if err := a.e.Resign(context.Background()); err != nil {
		t.Fatal(err)
	}
	termC := c.leads(5 * time.Second)
	if b.leading() || termC.Epoch() <= termA.Epoch() {
		t.Fatalf("after a resigned: b leading %v, epoch %d after %d", b.leading(), termC.Epoch(), termA.Epoch())
	}
	if got := path.Base(electionPath + "/" + after["c"]); epochOf(seqOf(got)) != termC.Epoch() {
		t.Fatalf("epoch %d is not c's node %s", termC.Epoch(), got)
	}
}

func TestCandidateQueuesAgainAfterItsSessionExpires(t *testing.T) {
	z := testenv.StartZooKeeper(t)
	var p zksessiontest.Partition
	a, b := newCand(t, newSession(t, z), "a"), newCand(t, newSession(t, z, p.Option()), "b")
	a.campaign()
	termA := a.leads(10 * time.Second)
	b.campaign()
	testenv.WaitFor(t, 5*time.Second, "b queued", func() bool { return nodes(t, a.sess.Conn())["b"] != "" })
	oldNode, oldSession := nodes(t, a.sess.Conn())["b"], b.sess.ID()

	p.Cut()
	testenv.WaitFor(t, expiryBound, "b's node to expire", func() bool { return nodes(t, a.sess.Conn())["b"] == "" })
	p.Heal()
	testenv.WaitFor(t, 10*time.Second, "b queued in its new session", func() bool {
		n := nodes(t, a.sess.Conn())["b"]
		if n == "" {
			return false
		}
		ok, stat, err := a.sess.Conn().Exists(electionPath + "/" + n)
		return err == nil && ok && stat.EphemeralOwner == b.sess.ID() && b.sess.ID() != oldSession
	})
	if n := nodes(t, a.sess.Conn())["b"]; seqOf(n) <= seqOf(oldNode) {
		t.Fatalf("new node %s is not after %s", n, oldNode)
	}
	if b.leading() {
		t.Fatal("b leads while a does")
	}
	if err := a.e.Resign(context.Background()); err != nil {
		t.Fatal(err)
	}
	if termB := b.leads(5 * time.Second); termB.Epoch() <= termA.Epoch() {
		t.Fatalf("epoch %d after %d", termB.Epoch(), termA.Epoch())
	}
}

// A create whose answer is lost (the connection broke after the server made the node) leaves a node that
// Campaign must find by its guid and use, not queue a second time behind.
func TestCampaignAdoptsTheNodeOfALostCreate(t *testing.T) {
	z := testenv.StartZooKeeper(t)
	sess := newSession(t, z)
	if err := sess.EnsurePath(context.Background(), electionPath); err != nil {
		t.Fatal(err)
	}
	a := newCand(t, sess, "a")
	guid := "0123456789abcdef0123456789abcdef"
	lost, err := sess.Conn().Create(electionPath+"/_c_"+guid+"-n_", a.e.data, zk.FlagEphemeral|zk.FlagSequence, zk.WorldACL(zk.PermAll))
	if err != nil {
		t.Fatal(err)
	}
	a.e.pending = guid // what ensureNode records before a create whose answer never comes
	a.campaign()
	term := a.leads(5 * time.Second)
	if term.Epoch() != epochOf(seqOf(path.Base(lost))) {
		t.Fatalf("epoch %d, the lost create made %s", term.Epoch(), lost)
	}
	children, _, err := sess.Conn().Children(electionPath)
	if err != nil || len(children) != 1 {
		t.Fatalf("children %v, %v: want only the adopted node", children, err)
	}
}

// A leader that is paused past its session timeout (its connection frozen) does not learn that it was
// deposed until it runs again: Healthy says so in the meantime, and the new leader's epoch is larger.
func TestPausedLeaderIsDeposedAndFenced(t *testing.T) {
	z := testenv.StartZooKeeper(t)
	var p zksessiontest.Partition
	a, b := newCand(t, newSession(t, z, p.Option()), "a"), newCand(t, newSession(t, z), "b")
	a.campaign()
	termA := a.leads(10 * time.Second)
	b.campaign()
	testenv.WaitFor(t, 5*time.Second, "b queued", func() bool { return nodes(t, b.sess.Conn())["b"] != "" })

	p.Freeze()
	start := time.Now()
	termB := b.leads(expiryBound)
	t.Logf("b leads %s after a froze; epochs %d -> %d", time.Since(start).Round(time.Millisecond), termA.Epoch(), termB.Epoch())
	if termB.Epoch() <= termA.Epoch() {
		t.Fatalf("epoch %d after %d", termB.Epoch(), termA.Epoch())
	}
	if closed(termA.Done()) {
		t.Fatal("test is moot: a's term ended while frozen")
	}
	if a.sess.Healthy(a.sess.SessionTimeout() / 2) {
		t.Fatal("a's session looks healthy while a is deposed")
	}
	p.Thaw()
	testenv.WaitFor(t, 3*time.Second, "a's term to end once it runs again", func() bool { return closed(termA.Done()) })
}

// Lead runs one term at a time: a term that ends (here: its lead returns an error) is resigned, another
// candidate leads with a larger epoch, and every lead sees its context end when its term does.
func TestLeadRunsOneTermAtATimeAndHandsOver(t *testing.T) {
	z := testenv.StartZooKeeper(t)
	ctx, cancel := context.WithCancel(context.Background())
	var (
		mu      sync.Mutex
		leading int
		epochs  []int64
		overlap bool
	)
	var wg sync.WaitGroup
	for _, id := range []string{"a", "b"} {
		e := New(newSession(t, z), electionPath, id, nil, slog.New(slog.DiscardHandler))
		wg.Go(func() {
			e.Lead(ctx, func(termCtx context.Context, term *Term) error {
				mu.Lock()
				leading++
				overlap = overlap || leading > 1
				epochs = append(epochs, term.Epoch())
				n := len(epochs)
				mu.Unlock()
				defer func() { mu.Lock(); leading--; mu.Unlock() }()
				if n < 4 {
					return errors.New("test: this term fails")
				}
				<-termCtx.Done() // the fourth leads until the test stops
				return nil
			})
		})
	}
	testenv.WaitFor(t, 20*time.Second, "four terms", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(epochs) >= 4
	})
	cancel()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if overlap {
		t.Fatal("two leads ran at once")
	}
	for i := 1; i < len(epochs); i++ {
		if epochs[i] <= epochs[i-1] {
			t.Fatalf("epochs %v: not growing", epochs)
		}
	}
}
