package client

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/shellwrap"
)

// A journaled command leaves its exit status in its run directory however it ends, for a client restarted
// after it ended to report: at its end, by `exit N`, by an error of the shell, and when it replaces its
// shell (`exec`) or the shell's EXIT trap (`trap`). Its output is the command's own, with no trace of the
// wrapper, and the client that started it sees the same exit status.
func TestAJournaledCommandLeavesItsExitStatus(t *testing.T) {
	for name, tc := range map[string]struct {
		// spec
		command string
		// expectations
		status     string // the status file's content, trimmed
		output     string // the output, trimmed
		subshell   bool   // run under shellwrap.Sub
		noInOutput string
	}{
		"success":                 {command: `echo fine`, status: "0", output: "fine"},
		"the last command fails":  {command: `true; false`, status: "1"},
		"exit N":                  {command: `echo before; exit 3; echo after`, status: "3", output: "before"},
		"a bare exit keeps $?":    {command: `false; exit`, status: "1"},
		"an external command":     {command: `/bin/sh -c 'exit 5'`, status: "5"},
		"set -e":                  {command: `set -e; false; echo not reached`, status: "1"},
		"set -C":                  {command: `set -C; echo 5 > "$__clover_dir/status"; exit 6`, status: "6"},
		"set -u":                  {command: `set -u; echo "$not_set"`, status: "2"},
		"a syntax error":          {command: `if true; then`, status: "2"},
		"a subshell's exit":       {command: `(exit 6)`, status: "6"},
		"a function returns":      {command: `f() { return 8; }; f`, status: "8"},
		"cd elsewhere":            {command: `cd /; exit 4`, status: "4"},
		"killed by a signal":      {command: `/bin/sh -c 'kill -9 $$'`, status: "137"},
		"set -x leaves no trace":  {command: `set -x; true`, status: "0", output: "+ true", noInOutput: "status"},
		"an echo function":        {command: `echo() { :; }; exit 9`, status: "9"},
		"the wrapper's variable":  {command: `__clover_dir=/tmp; exit 0`, status: "2"}, // refused loudly, not lost
		"exec":                    {command: `echo before; exec /bin/sh -c 'exit 7'`, status: "7", output: "before", subshell: true},
		"a trap of its own":       {command: `trap 'echo cleaning' EXIT; exit 2`, status: "2", output: "cleaning", subshell: true},
		"find -exec (not needed)": {command: `find /nonexistent -exec true {} + 2>/dev/null; exit 3`, status: "3", subshell: true},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			out := newOutputLog(job.MaxOutput)
			err := runShell(context.Background(), JobContext{Params: map[string]string{"command": tc.command}, Output: out, runDir: dir})
			b, rerr := os.ReadFile(filepath.Join(dir, "status"))
			if rerr != nil {
				t.Fatalf("no status left: %v (output %q)", rerr, out.String())
			}
			if got := strings.TrimSpace(string(b)); got != tc.status {
				t.Fatalf("status %q, want %q (output %q)", got, tc.status, out.String())
			}
			if got := exitCodeOf(err); got != tc.status {
				t.Fatalf("the client saw exit code %s (%v), want %s", got, err, tc.status)
			}
			if got := strings.TrimSpace(out.String()); tc.output != "" && got != tc.output {
				t.Fatalf("output %q, want %q", got, tc.output)
			}
			if tc.noInOutput != "" && strings.Contains(out.String(), tc.noInOutput) {
				t.Fatalf("output %q names %q", out.String(), tc.noInOutput)
			}
			if got := shellwrap.For(tc.command) == shellwrap.Sub; got != tc.subshell {
				t.Fatalf("runs in a subshell: %v, want %v", got, tc.subshell)
			}
		})
	}
}

// A status that cannot be written (here its directory is gone; a full disk does the same) does not change
// the exit status the client that started the command sees, even under `set -e`.
func TestAStatusThatCannotBeWrittenLeavesTheExitStatus(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	err := runShell(context.Background(), JobContext{Output: newOutputLog(job.MaxOutput), runDir: dir,
		Params: map[string]string{"command": `set -e; rm -r "$__clover_dir"; exit 3`}})
	if got := exitCodeOf(err); got != "3" {
		t.Fatalf("the client saw %v, want exit code 3", err)
	}
}

// A command that replaces its shell where the text does not show it (a script read with `.`) leaves no
// status: the client that started it still gets its exit status, and a restarted one would report the
// status as unknown, never as a success.
func TestAnExecOutOfSightLeavesNoStatusButTheClientSeesIt(t *testing.T) {
	dir, scripts := t.TempDir(), t.TempDir()
	script := filepath.Join(scripts, "replace.sh")
	if err := os.WriteFile(script, []byte("ex\"ec\" /bin/sh -c 'exit 4'\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := runShell(context.Background(), JobContext{Params: map[string]string{"command": ". " + script}, Output: newOutputLog(job.MaxOutput), runDir: dir})
	if got := exitCodeOf(err); got != "4" {
		t.Fatalf("the client saw %v, want exit code 4", err)
	}
	if _, _, ok := readStatus(dir); ok {
		t.Fatal("a status was left; this test documents that none is")
	}
}

// exitCodeOf is the exit code an error of runShell carries, "0" for none.
func exitCodeOf(err error) string {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return "0"
	case errors.As(err, &ee):
		return strings.TrimPrefix(ee.String(), "exit status ")
	}
	return err.Error()
}

// A journaled command reads nothing on its standard input (one /dev/null shared by every run, never
// consumed), and the run's output log learns the size of the output file from the tail it copies, which
// is what the report counts.
func TestAJournaledRunsOutputIsCountedFromItsTail(t *testing.T) {
	for run := range 2 {
		dir := t.TempDir()
		out := newOutputLog(job.MaxOutput)
		command := `printf 'stdin:%s\n' "$(wc -c)"; head -c 70000 /dev/zero | tr '\0' x; echo`
		if err := runShell(context.Background(), JobContext{Params: map[string]string{"command": command}, Output: out, runDir: dir}); err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		b, err := os.ReadFile(filepath.Join(dir, "out"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(b), "stdin:0\n") {
			t.Fatalf("run %d: output starts %q, want the command to have read nothing", run, b[:min(len(b), 20)])
		}
		size, ok := out.fileSize()
		if !ok || size != int64(len(b)) || size != 8+70001 {
			t.Fatalf("run %d: size %d (%v), want the file's %d", run, size, ok, len(b))
		}
		if tail := out.String(); len(tail) != min(job.MaxOutput, len(b)) || !strings.HasSuffix(string(b), tail) {
			t.Fatalf("run %d: tail of %d bytes is not the file's last", run, len(tail))
		}
	}
}

// A command that makes its output file a FIFO or a link does not make the client wait on it or read
// through it: its tail is empty, and the run ends.
func TestAnOutputFileMadeAFIFOOrALinkIsNotRead(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("not the run's\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, command := range map[string]string{
		"a FIFO": `rm -f "$__clover_dir/out"; mkfifo "$__clover_dir/out"`,
		"a link": `rm -f "$__clover_dir/out"; ln -s ` + secret + ` "$__clover_dir/out"`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			out := newOutputLog(job.MaxOutput)
			done := make(chan error, 1)
			go func() {
				done <- runShell(context.Background(), JobContext{Params: map[string]string{"command": command}, Output: out, runDir: dir})
			}()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("run: %v", err)
				}
			case <-time.After(time.Minute):
				t.Fatal("the run did not end: the client waits on its output file")
			}
			if got := out.String(); got != "" {
				t.Fatalf("tail %q, want nothing read through it", got)
			}
		})
	}
}
