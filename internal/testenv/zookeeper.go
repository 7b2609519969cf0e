package testenv

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ZkServerSh is Debian's ZooKeeper launcher; CLOVER_ZKSERVER overrides it.
func ZkServerSh() string {
	if p := os.Getenv("CLOVER_ZKSERVER"); p != "" {
		return p
	}
	return "/usr/share/zookeeper/bin/zkServer.sh"
}

// ZooKeeper is a standalone ZooKeeper server on a loopback port. tickTime is 200ms so that sessions may be
// as short as 400ms: tests of session loss do not wait long.
type ZooKeeper struct {
	Addr string // host:port
	dir  string
	t    T
	proc *Process
}

// StartZooKeeper starts a ZooKeeper server for the test and stops it when the test ends.
func StartZooKeeper(t T) *ZooKeeper {
	t.Helper()
	if _, err := os.Stat(ZkServerSh()); err != nil {
		t.Fatalf("testenv: ZooKeeper not installed (%v): run `make deps`", err)
	}
	z := prepareZooKeeper(t, "zookeeper", FreePort(t), "", 0)
	z.Start()
	return z
}

// prepareZooKeeper makes a server's directory (named name, under the test's temp dir) and its zoo.cfg:
// a 200 ms tick, the client port on loopback, the four-letter commands the harness reads; for a member
// of an ensemble (myid > 0), its id and the ensemble's server lines.
func prepareZooKeeper(t T, name string, port int, servers string, myid int) *ZooKeeper {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	if myid > 0 {
		if err := os.WriteFile(filepath.Join(dir, "data", "myid"), []byte(fmt.Sprintf("%d\n", myid)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := fmt.Sprintf(`tickTime=200
initLimit=25
syncLimit=10
dataDir=%s
clientPort=%d
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,stat,mntr,cons
minSessionTimeout=400
maxSessionTimeout=60000
%s`, filepath.Join(dir, "data"), port, servers)
	if err := os.WriteFile(filepath.Join(dir, "zoo.cfg"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return &ZooKeeper{Addr: fmt.Sprintf("127.0.0.1:%d", port), dir: dir, t: t}
}

// Start (re)starts the server on the same port and data directory.
func (z *ZooKeeper) Start() {
	z.t.Helper()
	z.proc = StartProcess(z.t, "zookeeper", filepath.Join(z.dir, "zookeeper.log"),
		[]string{"JMXDISABLE=true", "ZOO_LOG_DIR=" + z.dir, "SERVER_JVMFLAGS=-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1"},
		ZkServerSh(), "start-foreground", filepath.Join(z.dir, "zoo.cfg"))
	if !Poll(60*time.Second, func() bool { return z.proc.Exited() || ruok(z.Addr) }) || z.proc.Exited() {
		z.t.Fatalf("testenv: zookeeper did not start on %s:\n%s", z.Addr, z.proc.Tail(30))
	}
}

// Stop kills the server (as a crash would); Start brings it back with its data.
func (z *ZooKeeper) Stop() { z.proc.Kill() }

func ruok(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("ruok")); err != nil {
		return false
	}
	b, _ := io.ReadAll(c)
	return strings.TrimSpace(string(b)) == "imok"
}

// Ensemble is a quorum of ZooKeeper servers on loopback ports, as a production cluster runs: any one of
// them may be stopped (Members[i].Stop) and started again with its data.
type Ensemble struct {
	Members []*ZooKeeper
}

// StartZooKeeperEnsemble starts n ZooKeeper servers forming one ensemble and waits until it serves.
func StartZooKeeperEnsemble(t T, n int) *Ensemble {
	t.Helper()
	if _, err := os.Stat(ZkServerSh()); err != nil {
		t.Fatalf("testenv: ZooKeeper not installed (%v): run `make deps`", err)
	}
	type ports struct{ client, quorum, election int }
	ps := make([]ports, n)
	var servers strings.Builder
	for i := range ps {
		ps[i] = ports{FreePort(t), FreePort(t), FreePort(t)}
		fmt.Fprintf(&servers, "server.%d=127.0.0.1:%d:%d\n", i+1, ps[i].quorum, ps[i].election)
	}
	e := &Ensemble{}
	for i, p := range ps {
		e.Members = append(e.Members, prepareZooKeeper(t, fmt.Sprintf("zookeeper-%d", i+1), p.client, servers.String(), i+1))
	}
	for _, z := range e.Members {
		z.Start()
	}
	e.WaitServing(t, 60*time.Second)
	return e
}

// Servers are the members' addresses, as a Clover configuration lists them.
func (e *Ensemble) Servers() []string {
	out := make([]string, len(e.Members))
	for i, z := range e.Members {
		out[i] = z.Addr
	}
	return out
}

// WaitServing waits until a quorum of the members that run serves requests (one leads).
func (e *Ensemble) WaitServing(t T, timeout time.Duration) {
	t.Helper()
	if !Poll(timeout, func() bool { return e.Leader() >= 0 }) {
		t.Fatalf("testenv: the ZooKeeper ensemble does not serve within %s", timeout)
	}
}

// Leader is the index of the member that leads the ensemble, or -1.
func (e *Ensemble) Leader() int {
	for i, z := range e.Members {
		if strings.Contains(fourLetter(z.Addr, "srvr"), "Mode: leader") {
			return i
		}
	}
	return -1
}

// SessionsOn returns the ids of the sessions connected to the member at addr (the "cons" command).
func SessionsOn(addr string) []int64 {
	var out []int64
	for _, line := range strings.Split(fourLetter(addr, "cons"), "\n") {
		_, rest, ok := strings.Cut(line, "sid=0x")
		if !ok {
			continue
		}
		hex, _, _ := strings.Cut(rest, ",")
		var id int64
		if _, err := fmt.Sscanf(hex, "%x", &id); err == nil {
			out = append(out, id)
		}
	}
	return out
}

// fourLetter sends a four-letter command to a ZooKeeper server and returns its answer ("" if none).
func fourLetter(addr, cmd string) string {
	c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
	if err != nil {
		return ""
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte(cmd)); err != nil {
		return ""
	}
	b, _ := io.ReadAll(c)
	return string(b)
}
