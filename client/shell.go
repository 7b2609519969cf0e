package client

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/shellwrap"
)

// baseShellEnv are the variables of the client's environment every shell command gets.
var baseShellEnv = []string{"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR"}

// shellEnviron is the part of environ a shell command sees: baseShellEnv and the names in allow. The
// rest of the client's environment (database URIs, tokens, cloud credentials) stays in the client:
// a job's output is shown to anyone who can read executions.
func shellEnviron(environ, allow []string) []string {
	var out []string
	for _, kv := range environ {
		name, _, ok := strings.Cut(kv, "=")
		if ok && (slices.Contains(baseShellEnv, name) || slices.Contains(allow, name)) {
			out = append(out, kv)
		}
	}
	return out
}

// runShell runs params.command with /bin/sh -c in its own process group, so that a timeout kills
// everything the command started, not only the shell; so does a stop (the context is canceled). The job's
// context reaches the command as CLOVER_JOB, CLOVER_EXECUTION, CLOVER_CLIENT, CLOVER_SCHEDULED_AT,
// CLOVER_ATTEMPT, CLOVER_RUN and CLOVER_PARAM_<NAME> variables, and for a shard of a sharded firing as
// CLOVER_SHARD_INDEX (0-based), CLOVER_SHARD_TOTAL and CLOVER_SHARD_ITEM (empty when the shards are not
// named).
func runShell(ctx context.Context, jc JobContext) error {
	command := jc.Params["command"]
	if command == "" {
		return errors.New("shell: params.command is empty")
	}
	if jc.Trigger == job.TriggerBatch {
		command = batchCommand(command, jc.Params)
	}
	cmd := exec.Command("/bin/sh", "-c", command)
	cmd.Stdout, cmd.Stderr = jc.Output, jc.Output
	if jc.runDir != "" {
		// Journaled: the command must outlive the client and leave its exit status (see internal/shellwrap). Its
		// output goes to a file, not a pipe, which would break (SIGPIPE) when the client dies.
		out, err := openOutput(filepath.Join(jc.runDir, "out"))
		if err != nil {
			return fmt.Errorf("shell: output file: %w", err)
		}
		defer func() {
			out.Close()
			outputTail(jc.runDir, job.MaxOutput, jc.Output)
		}()
		cmd = exec.Command("/bin/sh", "-c", shellwrap.For(command), "clover-run", jc.runDir, command, shellwrap.RunTag(jc.ExecutionID, max(jc.Run, 1)))
		cmd.Stdout, cmd.Stderr = out, out
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if null, err := devNull(); err == nil {
		cmd.Stdin = null // else os/exec opens /dev/null itself, as it does for every run when Stdin is nil
	}
	cmd.Env = append(shellEnviron(os.Environ(), jc.shellEnv),
		"CLOVER_JOB="+jc.Job,
		"CLOVER_EXECUTION="+jc.ExecutionID,
		"CLOVER_CLIENT="+jc.Client,
		"CLOVER_SCHEDULED_AT="+jc.ScheduledAt.UTC().Format(time.RFC3339),
		"CLOVER_ATTEMPT="+strconv.Itoa(jc.Attempt),
		"CLOVER_RUN="+strconv.Itoa(max(jc.Run, 1)),
	)
	if sh := jc.Shard; sh != nil {
		cmd.Env = append(cmd.Env,
			"CLOVER_SHARD_INDEX="+strconv.Itoa(sh.Index),
			"CLOVER_SHARD_TOTAL="+strconv.Itoa(sh.Total),
			"CLOVER_SHARD_ITEM="+sh.Item,
		)
	}
	seen := map[string]string{}
	for _, k := range slices.Sorted(maps.Keys(jc.Params)) { // sorted: the same environment every time
		if k == "command" {
			continue
		}
		v := job.ParamVar(k)
		if other, dup := seen[v]; dup {
			// Which one the command would see depends on the order: refuse rather than guess.
			return fmt.Errorf("shell: params %q and %q are both CLOVER_PARAM_%s", other, k, v)
		}
		seen[v] = k
		cmd.Env = append(cmd.Env, "CLOVER_PARAM_"+v+"="+jc.Params[k])
	}
	if err := jc.spawn.start(cmd); err != nil {
		return err
	}
	if jc.runDir != "" {
		// The wrapper writes it too; this one is there even if the client dies before the wrapper runs.
		_ = shellwrap.WriteField(filepath.Join(jc.runDir, "pid"), strconv.Itoa(cmd.Process.Pid))
	}
	done := make(chan error, 1)
	go func() {
		waitExited(cmd.Process.Pid)
		done <- cmd.Wait()
	}()
	capEvery := time.NewTicker(time.Second)
	defer capEvery.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-ctx.Done():
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
			return ctx.Err()
		case <-capEvery.C:
			if jc.runDir != "" {
				capOutput(jc.runDir)
			}
		}
	}
}

// devNull is /dev/null, opened once for reading and given to every command as its standard input:
// os/exec opens it for each command otherwise, seven system calls a run. It is never closed.
var devNull = sync.OnceValues(func() (*os.File, error) { return os.Open(os.DevNull) })

// openOutput opens (making it if need be) a journaled run's output file for the command's appends. A plain
// open: os.OpenFile also tries the runtime's poller and checks flags, which a file only handed to a child
// needs neither of.
func openOutput(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_CREAT|unix.O_APPEND|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// watchAdopted is the handler of a journaled shell run that a restarted client found still going: it
// waits for the wrapper's process (not a child of this process, so it is polled) and returns the exit
// status the wrapper left. A stop or a timeout kills the process group, as for a run started here.
//
// tag is the run's shellwrap.RunTag ("" for a run directory named after its run, by an older version).
func watchAdopted(pid int, dir, tag string) HandlerFunc {
	return func(ctx context.Context, jc JobContext) error {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for n := 0; runsIn(pid, dir, tag); n++ {
			select {
			case <-ctx.Done():
				_ = syscall.Kill(-pid, syscall.SIGKILL)
				// Gone before the run ends: its slot serves a later run only after that.
				for i := 0; i < 50 && runsIn(pid, dir, tag); i++ {
					time.Sleep(20 * time.Millisecond)
				}
				outputTail(dir, job.MaxOutput, jc.Output)
				return ctx.Err()
			case <-t.C:
			}
			if n%5 == 0 {
				capOutput(dir)
			}
		}
		outputTail(dir, job.MaxOutput, jc.Output)
		code, _, ok := readStatus(dir)
		switch {
		case !ok:
			return errors.New("shell: the command's wrapper ended without leaving its exit status (killed, or replaced by an exec?)")
		case code != 0:
			return exitStatus(code)
		}
		return nil
	}
}

// batchCommand wraps a batch node's command in its pre and post commands and its handlers: the params
// batch_pre, batch_post, batch_on_start, batch_on_success and batch_on_failure, which only a batch run sets
// (job.IsBatchParam: a trigger or a request cannot). The execution fails if pre, the command or post
// fails, with the first failing one's exit code; the handlers' own codes are ignored.
func batchCommand(command string, p map[string]string) string {
	pre, post := p["batch_pre"], p["batch_post"]
	start, success, failure := p["batch_on_start"], p["batch_on_success"], p["batch_on_failure"]
	if pre == "" && post == "" && start == "" && success == "" && failure == "" {
		return command
	}
	group := func(c string) string { return "(\n" + c + "\n)" }
	var b strings.Builder
	if start != "" {
		b.WriteString(group(start) + "\n")
	}
	core := group(command)
	if pre != "" {
		core = group(pre) + " && " + core
	}
	if post != "" {
		core += " && " + group(post)
	}
	b.WriteString(core + "\nclover_rc=$?\n")
	if success != "" {
		b.WriteString("if [ $clover_rc -eq 0 ]; then " + group(success) + "; fi\n")
	}
	if failure != "" {
		b.WriteString("if [ $clover_rc -ne 0 ]; then " + group(failure) + "; fi\n")
	}
	b.WriteString("exit $clover_rc\n")
	return b.String()
}

// waitExited returns once child pid has exited (it is not reaped: cmd.Wait does that, then at once),
// waiting in the runtime's poller on a pidfd rather than in a blocking waitid, which holds a thread for
// each run under way and has the runtime take its P back (sysmon) and hand it over for every run. Where
// pidfds cannot be polled it returns at once, and cmd.Wait waits as before.
func waitExited(pid int) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Read(func(fd uintptr) bool {
		p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(p, 0)
		return err != nil && err != unix.EINTR || n > 0
	})
}
