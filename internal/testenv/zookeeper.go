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
	dir := filepath.Join(t.TempDir(), "zookeeper")
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	port := FreePort(t)
	cfg := fmt.Sprintf(`tickTime=200
initLimit=10
syncLimit=5
dataDir=%s
clientPort=%d
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,stat,mntr
minSessionTimeout=400
maxSessionTimeout=60000
`, filepath.Join(dir, "data"), port)
	if err := os.WriteFile(filepath.Join(dir, "zoo.cfg"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	z := &ZooKeeper{Addr: fmt.Sprintf("127.0.0.1:%d", port), dir: dir, t: t}
	z.Start()
	return z
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
