package client

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/shellwrap"
	"github.com/clover-sched/clover/internal/wire"
)

// BenchmarkShellRun is the cost of one shell run as the client pays it (execute: journal.begin, runShell,
// journal.result, journal.end), bare (no journal: a pipe, no wrapper) and journaled. Besides wall time it
// reports the CPU the run took, the client's and its children's together (cpu-ms/op): on a machine shared
// with other work that is the steadier figure, and the one that bounds runs a second on a busy client.
// Runs go in parallel (-cpu sets how many at once), as a loaded client runs them.
func BenchmarkShellRun(b *testing.B) {
	ledger := filepath.Join(b.TempDir(), "ledger")
	commands := map[string]string{
		"true":   "true",
		"ledger": `echo "$CLOVER_EXECUTION $CLOVER_CLIENT" >> ` + ledger,
	}
	for _, name := range []string{"true", "ledger"} {
		for _, journaled := range []bool{false, true} {
			mode := "bare"
			if journaled {
				mode = "journaled"
			}
			b.Run(name+"/"+mode, func(b *testing.B) { benchShellRuns(b, commands[name], journaled) })
		}
	}
}

func benchShellRuns(b *testing.B, command string, journaled bool) {
	var j *journal
	if journaled {
		var err error
		if j, err = openJournal(b.TempDir(), "c1"); err != nil {
			b.Fatal(err)
		}
		defer j.close()
	}
	sp := benchSpawner(b)
	benchParallelCPU(b, func(n int64) error { return benchOneRun(j, sp, command, n) })
}

// BenchmarkShellRunParts breaks a journaled run down: its process alone, bare (sh -c) and under each
// wrapper, and the journal's own work (its lines, the run directory and its files, the output read back)
// with no process at all. The wrappers' parts include the files they write.
func BenchmarkShellRunParts(b *testing.B) {
	tmp := b.TempDir()
	command := `echo "$CLOVER_EXECUTION $CLOVER_CLIENT" >> ` + filepath.Join(tmp, "ledger")
	env := append(shellEnviron(os.Environ(), nil), "CLOVER_EXECUTION=ledger@1", "CLOVER_CLIENT=c1")
	sp := benchSpawner(b)
	var dirs atomic.Int64 // names for the run directories of every sub-benchmark's every round
	process := func(_ int64, args ...string) error {
		dir := filepath.Join(tmp, strconv.FormatInt(dirs.Add(1), 10))
		if err := os.Mkdir(dir, 0o700); err != nil {
			return err
		}
		out, err := os.OpenFile(filepath.Join(dir, "out"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		defer out.Close()
		cmd := exec.Command("/bin/sh", append([]string{"-c"}, args...)...)
		if len(args) > 1 {
			cmd.Args = append(cmd.Args[:3], "clover-run", dir, command)
		}
		cmd.Stdout, cmd.Stderr, cmd.Env = out, out, env
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := sp.start(cmd); err != nil {
			return err
		}
		return cmd.Wait()
	}
	b.Run("process/sh -c", func(b *testing.B) {
		benchParallelCPU(b, func(n int64) error { return process(n, command) })
	})
	b.Run("process/wrapper", func(b *testing.B) {
		benchParallelCPU(b, func(n int64) error { return process(n, shellwrap.Trap, "") })
	})
	b.Run("process/wrapper with a subshell", func(b *testing.B) {
		benchParallelCPU(b, func(n int64) error { return process(n, shellwrap.Sub, "") })
	})
	b.Run("journal without a process", func(b *testing.B) {
		j, err := openJournal(b.TempDir(), "c1")
		if err != nil {
			b.Fatal(err)
		}
		defer j.close()
		benchParallelCPU(b, func(int64) error {
			d := &wire.Dispatch{ExecID: "ledger@" + strconv.FormatInt(dirs.Add(1), 10), Job: "ledger", Handler: job.HandlerShell,
				Params: map[string]string{"command": command}, AcceptBy: time.Now().Add(time.Minute)}
			dir, err := j.begin(d, 1, true, time.Now())
			if err != nil {
				return err
			}
			// What runShell and runHandler do around the process, and the two files the wrapper would write.
			out, err := openOutput(filepath.Join(dir, "out"))
			if err != nil {
				return err
			}
			_ = os.WriteFile(filepath.Join(dir, "pid"), []byte("12345\n"), 0o600)
			_, _ = out.WriteString(d.ExecID + " c1\n")
			out.Close()
			tail := newOutputLog(job.MaxOutput)
			outputTail(dir, job.MaxOutput, tail)
			if _, ok := tail.fileSize(); !ok {
				return errors.New("no output size")
			}
			if err := j.result(d.ExecID, 1, []byte(tail.String())); err != nil {
				return err
			}
			return j.end(d.ExecID, 1, dir)
		})
	})
}

// benchSpawner starts job processes as Run does: from threads at the jobs' lower priority.
func benchSpawner(b *testing.B) *spawner {
	sp, err := newSpawner(DefaultConfig().JobNice, "")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(sp.close)
	return sp
}

// benchParallelCPU runs f b.N times in parallel and reports the CPU each call took.
func benchParallelCPU(b *testing.B, f func(n int64) error) {
	var seq atomic.Int64
	b.ResetTimer()
	cpu0 := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := f(seq.Add(1)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
}

// benchOneRun is one run through the steps execute and runHandler take for a shell job, and the end a
// server's receipt sets off (reports.go).
func benchOneRun(j *journal, sp *spawner, command string, n int64) error {
	d := &wire.Dispatch{
		Header: wire.Header{From: "s1", Epoch: 3}, ExecID: fmt.Sprintf("ledger-%d@%d", n%100, n), Job: "ledger",
		Handler: job.HandlerShell, Attempt: 1, Run: 1, Params: map[string]string{"command": command},
		ScheduledAt: time.Now(), AcceptBy: time.Now().Add(time.Minute), Token: "t0123456789abcdef",
	}
	started := time.Now()
	dir, err := j.begin(d, 1, true, started)
	if err != nil && err != errNoJournal {
		return err
	}
	out := newOutputLog(job.MaxOutput)
	runErr := runShell(context.Background(), JobContext{
		ExecutionID: d.ExecID, Job: d.Job, Client: "c1", Params: d.Params, ScheduledAt: d.ScheduledAt,
		Attempt: 1, Run: 1, Output: out, runDir: dir, spawn: sp,
	})
	if runErr != nil {
		return fmt.Errorf("run %s: %w (output %q)", d.ExecID, runErr, out.String())
	}
	frame, err := wire.Encode(&wire.Result{
		Header: wire.Header{From: "c1", Epoch: 3, SentAt: time.Now()}, ExecID: d.ExecID, Job: d.Job, Attempt: 1,
		Run: 1, Result: job.Result{Status: job.StateSucceeded, Output: out.String()}, StartedAt: started,
		FinishedAt: time.Now(), Token: d.Token,
	})
	if err != nil {
		return err
	}
	if j == nil {
		return nil
	}
	if err := j.result(d.ExecID, 1, frame); err != nil {
		return err
	}
	return j.end(d.ExecID, 1, dir)
}

// cpuTime is the CPU this process and its reaped children have used.
func cpuTime() time.Duration {
	var self, children syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
	sum := func(r syscall.Rusage) time.Duration {
		return time.Duration(r.Utime.Nano() + r.Stime.Nano())
	}
	return sum(self) + sum(children)
}
