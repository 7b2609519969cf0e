package client

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestShellJobsRunAtTheJobsPriority: a shell job's process, and what it starts, run at the client's nice
// value plus job_nice, while the client itself keeps its own.
func TestShellJobsRunAtTheJobsPriority(t *testing.T) {
	own, err := niceOf(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	s, err := newSpawner(7, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	out := newOutputLog(256)
	// The shell reports its own niceness, and so does a process it starts.
	err = runShell(context.Background(), JobContext{Output: out, spawn: s,
		Params: map[string]string{"command": `nice; sh -c nice`}})
	if err != nil {
		t.Fatal(err)
	}
	want := strconv.Itoa(min(own+7, 19))
	if got := strings.Fields(out.String()); len(got) != 2 || got[0] != want || got[1] != want {
		t.Fatalf("job processes' nice values %q, want %s twice (the client's is %d)", got, want, own)
	}
	if now, _ := niceOf(os.Getpid()); now != own {
		t.Fatalf("the client's nice value changed from %d to %d", own, now)
	}

	// After close, a process still starts (a run that outlives the client's shutdown), still lowered.
	s.close()
	out = newOutputLog(256)
	if err := runShell(context.Background(), JobContext{Output: out, spawn: s, Params: map[string]string{"command": "nice"}}); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(out.String()); got != want {
		t.Fatalf("after close: nice %s, want %s", got, want)
	}
}

// TestSpawningThreadsOutliveTheClient: closing a client does not end the threads that fork its jobs.
// Linux signals a child's Pdeathsig when the thread that forked it ends; a thread Go gave the spawner may
// have forked such a child for the program embedding the client (the test harness's ZooKeeper died so).
func TestSpawningThreadsOutliveTheClient(t *testing.T) {
	s, err := newSpawner(5, "")
	if err != nil {
		t.Fatal(err)
	}
	if s.unlowered != nil {
		t.Skipf("this machine refuses to lower a thread's priority: %v", s.unlowered)
	}
	tids := s.threads.tids
	if len(tids) != spawnThreads {
		t.Fatalf("threads %v, want %d", tids, spawnThreads)
	}
	// What the embedding program sees: a child forked with a parent-death signal survives the close.
	child := exec.Command("sleep", "0.5")
	child.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.start(child); err != nil {
		t.Fatal(err)
	}
	s.close()
	if err := child.Wait(); err != nil {
		t.Fatalf("a child forked by the spawner with Pdeathsig ended with %v after the client closed, want a clean exit", err)
	}
	again, err := newSpawner(5, "")
	if err != nil {
		t.Fatal(err)
	}
	defer again.close()
	cmd := exec.Command("/bin/true")
	if err := again.start(cmd); err != nil { // served by the same threads
		t.Fatal(err)
	}
	_ = cmd.Wait()
	for _, tid := range tids {
		if _, err := os.Stat("/proc/self/task/" + strconv.Itoa(tid)); err != nil {
			t.Errorf("spawning thread %d ended with the client: %v", tid, err)
		}
	}
	if !slices.Equal(again.threads.tids, tids) {
		t.Errorf("a second client got threads %v, want the process's %v", again.threads.tids, tids)
	}
}

func TestAJobCgroupThatIsNoCgroupIsRefusedByName(t *testing.T) {
	dir := t.TempDir()
	_, err := newSpawner(10, dir)
	if err == nil || !strings.Contains(err.Error(), "job_cgroup "+dir) {
		t.Fatalf("err = %v, want one naming job_cgroup and the directory", err)
	}
}

func TestTheDefaultCapacityFollowsTheCPUs(t *testing.T) {
	n, why := DefaultCapacity()
	if n < 1 || why == "" {
		t.Fatalf("DefaultCapacity() = %d, %q", n, why)
	}
	cfg := DefaultConfig()
	cfg.Insecure = true
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c.cfg.Capacity != n || !strings.Contains(c.capacityFrom, "derived") {
		t.Fatalf("capacity %d (%s), want the derived %d", c.cfg.Capacity, c.capacityFrom, n)
	}
	cfg.Capacity = 3
	if c, err = New(cfg); err != nil || c.cfg.Capacity != 3 {
		t.Fatalf("a configured capacity: %v, %d", err, c.cfg.Capacity)
	}
}
