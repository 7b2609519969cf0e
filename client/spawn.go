package client

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
)

// A client whose jobs saturate the machine must still answer ZooKeeper and the servers: a client starved
// past its session timeout loses its registration, and the leader then treats every run it holds as lost.
// So the processes shell jobs start run at a lower CPU priority than the client (and, when the operator
// gives one, in their own cgroup): under full load the kernel runs the client's few threads first and
// gives the jobs what is left, and capacity, not the scheduler, decides how much work is taken.
//
// On Linux the nice value is a thread's, and a child inherits the value of the thread that forked it. Job
// processes are forked from threads kept for that purpose, locked and lowered once, so that every job
// process is born at the lower priority (setting it after the start would leave the first instants of the
// command, and whatever it forked by then, at the client's). Go functions run inside the client and share
// its priority.
//
// Those threads live as long as the process, shared by every client in it. A lowered thread cannot be
// handed back to Go's pool (an unprivileged process cannot raise it again), so the only other way to be
// rid of one is to end it, and ending a thread is not harmless: Linux sends a child's parent-death signal
// (SysProcAttr.Pdeathsig) when the thread that forked the child ends, not the process. A program embedding
// the client that had started such a child from a thread Go later gave the spawner would see the child
// killed when the client stopped; the test harness did, losing its ZooKeeper.

// Two consequences of sharing: a fork that hangs (an exec on a hung file system) on both threads holds up
// every client of the process at that job_nice; and the priority is fixed when the pool starts, from the
// process's nice value then, so a process reniced later keeps forking jobs at the earlier value.

// spawnThreads is how many locked threads start processes for one nice value: forks are short, and two
// keep one slow fork (a large environment, a busy kernel) from holding up the others.
const spawnThreads = 2

// lowered holds the process's spawning threads, by the nice increment they were lowered by.
var lowered struct {
	sync.Mutex
	pools map[int]*threadPool
}

// threadPool is the spawning threads of one nice increment.
type threadPool struct {
	reqs chan spawnReq
	err  error // why no thread could be lowered; the pool is then not used
	tids []int // the threads' ids, for tests
}

type threadReady struct {
	tid int
	err error
}

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

// loweredThreads returns the threads that fork at the client's nice value plus nice, starting them the
// first time. A refusal is kept: it does not change while the process runs.
func loweredThreads(nice int) *threadPool {
	lowered.Lock()
	defer lowered.Unlock()
	if p, ok := lowered.pools[nice]; ok {
		return p
	}
	p := &threadPool{reqs: make(chan spawnReq)}
	ready := make(chan threadReady, spawnThreads)
	for range spawnThreads {
		go p.serve(nice, ready, nil)
	}
	var refused error
	for range spawnThreads {
		r := <-ready
		if r.err != nil {
			refused = r.err
			continue
		}
		p.tids = append(p.tids, r.tid)
	}
	if len(p.tids) == 0 { // one lowered thread serves alone; none, and the pool is not used
		p.err = refused
	}
	if lowered.pools == nil {
		lowered.pools = map[int]*threadPool{}
	}
	lowered.pools[nice] = p
	return p
}

// serve is one spawning thread. locked, when not nil, is closed once it holds a thread.
func (p *threadPool) serve(nice int, ready chan<- threadReady, locked chan<- struct{}) {
	runtime.LockOSThread()
	if syscall.Gettid() == syscall.Getpid() {
		// The main thread's priority is the one ps and top show for the client: it must keep the client's.
		// While this goroutine holds it, a new one cannot get it; it serves instead.
		other := make(chan struct{})
		go p.serve(nice, ready, other)
		<-other
		runtime.UnlockOSThread()
		return
	}
	if locked != nil {
		close(locked)
	}
	tid := syscall.Gettid()
	cur, err := syscall.Getpriority(syscall.PRIO_PROCESS, tid)
	if err != nil {
		runtime.UnlockOSThread() // unchanged: Go may have it back
		ready <- threadReady{err: fmt.Errorf("read the thread's priority: %w", err)}
		return
	}
	// The raw getpriority system call returns 20 - nice.
	if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, min(20-cur+nice, 19)); err != nil {
		runtime.UnlockOSThread()
		ready <- threadReady{err: fmt.Errorf("lower the priority of job processes: %w", err)}
		return
	}
	ready <- threadReady{tid: tid}
	for r := range p.reqs { // never closed: the thread stays locked and lowered until the process ends
		r.done <- r.cmd.Start()
	}
}

// spawner starts one client's job processes at a lower CPU priority, in a cgroup when one is configured.
type spawner struct {
	threads *threadPool // nil: job processes start at the client's priority
	// unlowered says why job processes could not be given a lower priority; nil when they are.
	unlowered error

	mu     sync.RWMutex // held for reading while a start uses cgroup
	cgroup *os.File     // a cgroup v2 directory the processes are born in (CLONE_INTO_CGROUP); nil: none
	closed bool
}

// newSpawner prepares the spawning threads. nice is added to the client's own niceness for job processes
// (0: the same priority as the client); cgroupDir, when not empty, is a cgroup v2 directory this user may
// move processes into.
func newSpawner(nice int, cgroupDir string) (*spawner, error) {
	s := &spawner{}
	if cgroupDir != "" {
		f, err := openCgroup(cgroupDir)
		if err != nil {
			return nil, err
		}
		s.cgroup = f
	}
	if nice != 0 {
		if p := loweredThreads(nice); p.err != nil {
			// A container or a policy may refuse it: jobs then run at the client's priority, said in the log.
			s.unlowered = fmt.Errorf("job_nice %d: %w; job processes run at the client's priority", nice, p.err)
		} else {
			s.threads = p
		}
	}
	if s.cgroup != nil {
		// Refused at start (an old kernel, a directory outside the delegation, controllers below it) rather
		// than at every job's start.
		cmd := exec.Command("/bin/true")
		if err := s.start(cmd); err != nil {
			s.close()
			return nil, fmt.Errorf("job_cgroup %s: cannot start a process in it: %w", cgroupDir, err)
		}
		_ = cmd.Wait()
	}
	return s, nil
}

// openCgroup opens a cgroup v2 directory for CLONE_INTO_CGROUP, after checking that it is one.
func openCgroup(dir string) (*os.File, error) {
	if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err != nil {
		return nil, fmt.Errorf("job_cgroup %s: not a cgroup directory (no cgroup.procs): %w", dir, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "cgroup.type")); err != nil {
		return nil, fmt.Errorf("job_cgroup %s: not a cgroup v2 directory (no cgroup.type): %w", dir, err)
	}
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("job_cgroup %s: %w", dir, err)
	}
	return f, nil
}

// start starts cmd at the jobs' priority, in the jobs' cgroup. After close it still starts cmd, at the
// jobs' priority but outside the cgroup (its directory is closed): a run that outlives the client's
// shutdown still runs.
func (s *spawner) start(cmd *exec.Cmd) error {
	if s == nil {
		return cmd.Start()
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.cgroup != nil && !s.closed {
		if cmd.SysProcAttr == nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{}
		}
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(s.cgroup.Fd())
	}
	if s.threads == nil {
		return cmd.Start()
	}
	r := spawnReq{cmd: cmd, done: make(chan error, 1)}
	s.threads.reqs <- r
	return <-r.done
}

// close releases the cgroup directory; the spawning threads stay for the process's other clients and
// later ones.
func (s *spawner) close() {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	if s.cgroup != nil {
		_ = s.cgroup.Close()
	}
}

// niceOf returns the nice value of process pid (for tests and logs).
func niceOf(pid int) (int, error) {
	p, err := syscall.Getpriority(syscall.PRIO_PROCESS, pid)
	if err != nil {
		return 0, fmt.Errorf("priority of process %d: %w", pid, err)
	}
	return 20 - p, nil
}
