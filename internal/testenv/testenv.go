package testenv

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/goleak"
)

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t T) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("testenv: free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		// The kernel may hand the same free port out twice before the first taker binds it (a member
		// whose process is still starting): never give one out twice in a process.
		givenMu.Lock()
		seen := given[port]
		given[port] = true
		givenMu.Unlock()
		if !seen {
			return port
		}
	}
	t.Fatalf("testenv: no free port not handed out before")
	return 0
}

var (
	givenMu sync.Mutex
	given   = map[int]bool{}
)

// RepoRoot is the directory holding go.mod.
func RepoRoot(t T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("testenv: go.mod not found above the working directory")
		}
		dir = parent
	}
}

// Process is a child process whose output goes to a log file and which is killed, with its whole process
// group, when the test ends.
type Process struct {
	Name    string
	LogPath string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// StartProcess starts argv with env added to the test's environment.
func StartProcess(t T, name, logPath string, env []string, argv ...string) *Process {
	t.Helper()
	p := &Process{Name: name, LogPath: logPath}
	if err := p.start(env, argv); err != nil {
		t.Fatalf("testenv: start %s: %v", name, err)
	}
	t.Cleanup(func() { p.Kill() })
	return p
}

func (p *Process) start(env, argv []string) error {
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := startFromKeptThread(cmd); err != nil {
		logf.Close()
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	return nil
}

// Pdeathsig is sent when the thread that forked the child ends, not the test process: a thread ended by
// code under test (a goroutine that exits while locked to it) would kill whatever was forked from it. So
// children are forked from one thread that is never let go.
var forker struct {
	once sync.Once
	reqs chan forkReq
}

type forkReq struct {
	cmd  *exec.Cmd
	done chan error
}

func startFromKeptThread(cmd *exec.Cmd) error {
	forker.once.Do(func() {
		forker.reqs = make(chan forkReq)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives as long as the test binary
			for r := range forker.reqs {
				r.done <- r.cmd.Start()
			}
		}()
	})
	r := forkReq{cmd: cmd, done: make(chan error, 1)}
	forker.reqs <- r
	return <-r.done
}

// Pid is the process id.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Pid
}

// Signal sends sig to the process group.
func (p *Process) Signal(sig syscall.Signal) error {
	return syscall.Kill(-p.Pid(), sig)
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// Wait waits up to d for the process to end and reports whether it did.
func (p *Process) Wait(d time.Duration) bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// Kill SIGKILLs the process group and waits for the process to end.
func (p *Process) Kill() {
	if p.Exited() {
		return
	}
	_ = p.Signal(syscall.SIGCONT) // a stopped process still dies of SIGKILL, but its group may hold stopped children
	_ = p.Signal(syscall.SIGKILL)
	p.Wait(10 * time.Second)
}

// Stop asks the process to end with SIGTERM and kills it if it has not ended within grace.
func (p *Process) Stop(grace time.Duration) {
	if p.Exited() {
		return
	}
	_ = p.Signal(syscall.SIGTERM)
	if !p.Wait(grace) {
		p.Kill()
	}
}

// Tail returns the last n lines of the process's log, for failure messages.
func (p *Process) Tail(n int) string {
	return TailFile(p.LogPath, n)
}

// TailFile returns the last n lines of path.
func TailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// WaitFor polls cond every 20ms until it returns true or timeout passes, then fails the test with what.
func WaitFor(t T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Poll(timeout, cond) {
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

// Poll polls cond every 20ms until it returns true (true) or timeout passes (false).
func Poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func dialOK(ctx context.Context, addr string) bool {
	d := net.Dialer{Timeout: 200 * time.Millisecond}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// T is the part of testing.TB that testenv needs; a load driver outside `go test` can supply its own.
type T interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Cleanup(func())
	TempDir() string
	Logf(format string, args ...any)
	Failed() bool
}

// KeptGoroutines is what goleak must not count as leaked in a package that starts processes: the
// goroutine that holds the forking thread.
func KeptGoroutines() goleak.Option {
	return goleak.IgnoreAnyFunction("github.com/clover-sched/clover/internal/testenv.startFromKeptThread.func1.1")
}
