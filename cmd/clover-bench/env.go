package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clover-sched/clover/internal/testenv"
)

// runner is what the harness's testing.TB stands for in this program: one stack of cleanups for the whole
// run, which scopes (the run, each scenario) unwind down to where they began.
//
// Concurrency: the stack is guarded by mu and popped one cleanup at a time, so the main goroutine ending
// a scope and an abort (Fatalf on any goroutine, or a signal) can unwind at the same moment and every
// cleanup still runs once. Each cleanup runs on its own goroutine with a time limit, so that one which
// hangs, or which calls Fatalf itself, cannot stop the others from running. The first abort wins
// (stopping); a later Fatalf ends only its own goroutine.
type runner struct {
	out     io.Writer // progress, -v logs and failures
	verbose bool

	mu       sync.Mutex
	cleanups []func()
	failed   atomic.Bool
	stopping atomic.Bool
}

// cleanupTimeout bounds one cleanup; a process the harness kills waits at most 10s for it to end.
const cleanupTimeout = 20 * time.Second

func newRunner(out io.Writer, verbose bool) *runner { return &runner{out: out, verbose: verbose} }

// scope starts a scope named name: its cleanups run, newest first, when End is called.
func (r *runner) scope(name string) *T {
	r.mu.Lock()
	defer r.mu.Unlock()
	return &T{r: r, name: name, mark: len(r.cleanups)}
}

// unwind runs the cleanups above mark, newest first.
func (r *runner) unwind(mark int) {
	for {
		r.mu.Lock()
		n := len(r.cleanups)
		if n <= mark {
			r.mu.Unlock()
			return
		}
		f := r.cleanups[n-1]
		r.cleanups = r.cleanups[:n-1]
		r.mu.Unlock()

		done := make(chan struct{})
		go func() {
			defer close(done)
			defer func() {
				if p := recover(); p != nil {
					fmt.Fprintf(r.out, "clover-bench: a cleanup panicked: %v\n", p)
				}
			}()
			f()
		}()
		select {
		case <-done:
		case <-time.After(cleanupTimeout):
			fmt.Fprintf(r.out, "clover-bench: a cleanup did not finish within %s; going on with the others\n", cleanupTimeout)
		}
	}
}

// finish runs every cleanup at the normal end of the run. A signal arriving meanwhile does not start a
// second teardown.
func (r *runner) finish() {
	r.stopping.Store(true)
	r.unwind(0)
}

// abort runs every cleanup and exits with code. Only the first caller tears down; any later caller (a
// worker goroutine, a cleanup that fails) just ends its goroutine.
func (r *runner) abort(code int) {
	if !r.stopping.CompareAndSwap(false, true) {
		runtime.Goexit()
	}
	r.unwind(0)
	os.Exit(code)
}

// T implements testenv.T for one scope of the run.
type T struct {
	r    *runner
	name string
	mark int
}

var _ testenv.T = (*T)(nil)

// End runs the cleanups registered since the scope began, newest first.
func (t *T) End() { t.r.unwind(t.mark) }

// Helper does nothing: there is no test output to attribute lines in.
func (t *T) Helper() {}

// Fatal is Fatalf with fmt.Sprint's formatting.
func (t *T) Fatal(args ...any) { t.Fatalf("%s", fmt.Sprint(args...)) }

// Fatalf prints the failure, runs every cleanup of the run and exits with status 1. It does not return.
func (t *T) Fatalf(format string, args ...any) {
	t.r.failed.Store(true)
	fmt.Fprintf(t.r.out, "clover-bench: %s: FAILED: %s\n", t.name, fmt.Sprintf(format, args...))
	t.r.abort(1)
}

// Cleanup registers f to run when the scope ends (or the run aborts), after every cleanup registered later.
func (t *T) Cleanup(f func()) {
	t.r.mu.Lock()
	defer t.r.mu.Unlock()
	t.r.cleanups = append(t.r.cleanups, f)
}

// TempDir makes a new directory that is removed when the scope ends.
func (t *T) TempDir() string {
	dir, err := os.MkdirTemp("", "clover-bench-")
	if err != nil {
		t.Fatalf("temp dir: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			fmt.Fprintf(t.r.out, "clover-bench: remove %s: %v\n", dir, err)
		}
	})
	return dir
}

// Logf prints to stderr with -v, and always once the run has failed (the harness then logs member logs).
func (t *T) Logf(format string, args ...any) {
	if t.r.verbose || t.r.failed.Load() {
		fmt.Fprintf(t.r.out, "[%s] %s\n", t.name, fmt.Sprintf(format, args...))
	}
}

// Failed reports whether the run has failed.
func (t *T) Failed() bool { return t.r.failed.Load() }

// Progressf always prints one line of progress, so that a run of minutes shows it is alive.
func (t *T) Progressf(format string, args ...any) {
	fmt.Fprintf(t.r.out, "%s  %-8s %s\n", time.Now().Format("15:04:05"), t.name, fmt.Sprintf(format, args...))
}

// Logger is the slog logger of components embedded in this process: warnings and errors with -v, nothing
// otherwise (at thousands of executions a second their logs would drown the tables).
func (t *T) Logger() *slog.Logger {
	if !t.r.verbose {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(t.r.out, &slog.HandlerOptions{Level: slog.LevelWarn})).With("scope", t.name)
}
