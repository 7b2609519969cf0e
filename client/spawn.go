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
// On Linux the nice value is a thread's, and a child inherits the value of the thread that forked it. The
// spawner forks from threads it keeps for that purpose, locked and lowered once, so that every job
// process is born at the lower priority (setting it after the start would leave the first instants of the
// command, and whatever it forked by then, at the client's). Go functions run inside the client and share
// its priority.

// spawnThreads is how many locked threads start processes: forks are short, and two keep one slow fork
// (a large environment, a busy kernel) from holding up the others.
const spawnThreads = 2

// spawner starts job processes at a lower CPU priority, in a cgroup when one is configured.
type spawner struct {
	nice   int
	cgroup *os.File // a cgroup v2 directory the processes are born in (CLONE_INTO_CGROUP); nil: none
	// unlowered says why job processes could not be given a lower priority; nil when they are.
	unlowered error

	reqs    chan spawnReq
	stop    chan struct{}
	stopped sync.WaitGroup
	once    sync.Once
}

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

// newSpawner starts the spawning threads. nice is added to the client's own niceness for job processes
// (0: the same priority as the client); cgroupDir, when not empty, is a cgroup v2 directory this user may
// move processes into.
func newSpawner(nice int, cgroupDir string) (*spawner, error) {
	s := &spawner{nice: nice, reqs: make(chan spawnReq), stop: make(chan struct{})}
	if cgroupDir != "" {
		f, err := openCgroup(cgroupDir)
		if err != nil {
			return nil, err
		}
		s.cgroup = f
	}
	if err := s.startThreads(); err != nil {
		// A container or a policy may refuse it: jobs then run at the client's priority, said in the log.
		s.nice, s.unlowered = 0, fmt.Errorf("job_nice %d: %w; job processes run at the client's priority", nice, err)
		if err := s.startThreads(); err != nil {
			s.close()
			return nil, err
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

// startThreads starts the spawning threads at s.nice.
func (s *spawner) startThreads() error {
	ready := make(chan error, spawnThreads)
	for range spawnThreads {
		s.stopped.Add(1)
		go s.serve(ready, nil)
	}
	var first error
	for range spawnThreads {
		if err := <-ready; err != nil && first == nil {
			first = err
		}
	}
	if first != nil { // stop those that started
		close(s.stop)
		s.stopped.Wait()
		s.stop = make(chan struct{})
	}
	return first
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

// serve is one spawning thread: it never unlocks its thread, so that the thread, whose priority was
// lowered for good (an unprivileged process cannot raise it back), ends with the goroutine. locked, when
// not nil, is closed once it holds a thread.
func (s *spawner) serve(ready chan<- error, locked chan<- struct{}) {
	defer s.stopped.Done()
	runtime.LockOSThread()
	if syscall.Gettid() == syscall.Getpid() {
		// The main thread's priority is the one ps and top show for the client, and the one Go hands back
		// to any goroutine once this one ends: it must keep the client's. While this goroutine holds it, a
		// new one cannot get it; it serves instead.
		other := make(chan struct{})
		s.stopped.Add(1)
		go s.serve(ready, other)
		<-other
		runtime.UnlockOSThread()
		return
	}
	if locked != nil {
		close(locked)
	}
	if s.nice != 0 {
		tid := syscall.Gettid()
		cur, err := syscall.Getpriority(syscall.PRIO_PROCESS, tid)
		if err != nil {
			ready <- fmt.Errorf("read the thread's priority: %w", err)
			return
		}
		// The raw getpriority system call returns 20 - nice.
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, min(20-cur+s.nice, 19)); err != nil {
			ready <- fmt.Errorf("lower the priority of job processes: %w", err)
			return
		}
	}
	ready <- nil
	for {
		select {
		case <-s.stop:
			return
		case r := <-s.reqs:
			r.done <- r.cmd.Start()
		}
	}
}

// start starts cmd at the jobs' priority, in the jobs' cgroup. After close it starts cmd at the client's
// priority: a run that outlives the client's shutdown still runs.
func (s *spawner) start(cmd *exec.Cmd) error {
	if s == nil {
		return cmd.Start()
	}
	if s.cgroup != nil {
		if cmd.SysProcAttr == nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{}
		}
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(s.cgroup.Fd())
	}
	r := spawnReq{cmd: cmd, done: make(chan error, 1)}
	select {
	case s.reqs <- r:
		return <-r.done
	case <-s.stop:
		if s.cgroup != nil {
			cmd.SysProcAttr.UseCgroupFD = false // the directory is being closed
		}
		return cmd.Start()
	}
}

// close ends the spawning threads.
func (s *spawner) close() {
	if s == nil {
		return
	}
	s.once.Do(func() { close(s.stop) })
	s.stopped.Wait()
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
