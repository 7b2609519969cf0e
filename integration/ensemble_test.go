package integration

import (
	"slices"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/clover-sched/clover/internal/registry"
	"github.com/clover-sched/clover/internal/testenv"
)

// On a three-server ZooKeeper ensemble, the ZooKeeper server each Clover session is connected to is
// killed in turn (the leader's first), then the ensemble's leader, each restored after: sessions move to
// the servers left, the Clover leader keeps its leadership or hands it over cleanly, and every second of
// the run fires exactly once, none lost.
func TestTheClusterRidesOutZooKeeperServersDyingInAnEnsemble(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c, l, start := startTicking(t, Options{Servers: 2, Clients: 1, ZooKeepers: 3, SessionTimeout: 4 * time.Second})
	zc, _, err := zk.Connect(c.ZKE.Servers(), 5*time.Second, zk.WithLogInfo(false))
	if err != nil {
		t.Fatal(err)
	}
	defer zc.Close()
	// hostOf is the ensemble member that holds the session of a Clover member's registration.
	hostOf := func(kind, id string) int {
		t.Helper()
		host := -1
		testenv.WaitFor(t, 30*time.Second, "the session of "+id+" on a ZooKeeper server", func() bool {
			_, st, err := zc.Exists(c.Root + "/" + kind + "/" + id)
			if err != nil || st == nil || st.EphemeralOwner == 0 {
				return false
			}
			for i, z := range c.ZKE.Members {
				if slices.Contains(testenv.SessionsOn(z.Addr), st.EphemeralOwner) {
					host = i
					return true
				}
			}
			return false
		})
		return host
	}
	kill := func(i int, why string) {
		t.Helper()
		t.Logf("killing ZooKeeper server %d (%s), %s", i+1, c.ZKE.Members[i].Addr, why)
		c.ZKE.Members[i].Stop()
		c.ZKE.WaitServing(t, 60*time.Second)
		l.waitRunAfter(t, c, time.Now().Add(2*time.Second), 60*time.Second) // firings go on without it
		c.ZKE.Members[i].Start()
		c.ZKE.WaitServing(t, 60*time.Second)
	}

	leader, epoch := c.WaitLeader(30 * time.Second)
	done := map[int]bool{}
	first := hostOf(registry.KindServers, leader.ID)
	kill(first, "the one the Clover leader's session is on")
	done[first] = true
	members := append([]*Member{}, c.Servers...)
	members = append(members, c.Clients...)
	for _, m := range members {
		kind := registry.KindServers
		if slices.Contains(c.Clients, m) {
			kind = registry.KindClients
		}
		if i := hostOf(kind, m.ID); !done[i] {
			kill(i, "the one "+m.ID+"'s session is on")
			done[i] = true
		}
	}
	kill(c.ZKE.Leader(), "the ensemble's leader")

	after, epochAfter := c.WaitLeader(30 * time.Second)
	if epochAfter < epoch {
		t.Fatalf("the epoch went back from %d to %d", epoch, epochAfter)
	}
	t.Logf("Clover leader before: %s (epoch %d), after: %s (epoch %d)", leader.ID, epoch, after.ID, epochAfter)
	c.WaitClients(1, 30*time.Second)
	end := time.Now().Add(3 * time.Second).Truncate(time.Second)
	l.waitComplete(t, c, start, end, 90*time.Second)
}
