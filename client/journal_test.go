package client

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/shellwrap"
	"github.com/clover-sched/clover/internal/testenv"
	"github.com/clover-sched/clover/internal/wire"
)

// journaledClient is a test client with its journal open in dir, as Run opens it.
func journaledClient(t *testing.T, dir string) *Client {
	t.Helper()
	c, _, _ := newTestClientWith(t, time.Now, func(cfg *Config) {
		cfg.StateDir = dir
		cfg.Handlers = []string{job.HandlerShell}
	})
	j, err := openJournal(dir, c.cfg.ID)
	if err != nil {
		t.Fatal(err)
	}
	c.journal = j
	return c
}

// reported is the result c holds for run 1 of id, waiting for a receipt; nil if none.
func reported(t *testing.T, c *Client, id string) *wire.Result {
	t.Helper()
	c.mu.Lock()
	p, ok := c.pending.get(id, 1)
	c.mu.Unlock()
	if !ok {
		return nil
	}
	m, err := wire.Decode(p.frame)
	if err != nil {
		t.Fatalf("reported frame: %v", err)
	}
	return m.(*wire.Result)
}

func shellDispatch(id, command string) *wire.Dispatch {
	return &wire.Dispatch{
		Header: wire.Header{From: "s1", Epoch: 3}, ExecID: id, Job: "j", Handler: job.HandlerShell, Attempt: 1, Run: 1,
		Params: map[string]string{"command": command}, AcceptBy: time.Now().Add(time.Minute),
	}
}

// A client dies while a shell command runs; the command goes on. Restarted (same id, same state dir), the
// client watches the command again while it runs, and reports its real exit status and output when it
// ends; restarted once more after the end, it reports them from what the command's wrapper left.
func TestARestartedClientReportsTheRealResultOfARunItStartedBefore(t *testing.T) {
	state := t.TempDir()
	gate := filepath.Join(t.TempDir(), "gate")
	first := journaledClient(t, state)
	// The command waits for the gate, so that it is surely still running when the next client starts.
	d := shellDispatch("sh@1", `while [ ! -e `+gate+` ]; do sleep 0.05; done; echo "the real output"; exit 3`)
	first.onDispatch(d) // the first incarnation starts it, and is then "killed": it is never looked at again
	testenv.WaitFor(t, 10*time.Second, "the command's wrapper to start", func() bool {
		first.mu.Lock()
		dir, _ := first.journaled.get(d.ExecID, 1)
		first.mu.Unlock()
		return dir != "" && wrapperPID(dir, shellwrap.RunTag(d.ExecID, 1)) > 0
	})

	first.journal.close() // the process dies: its lock on the journal goes with it
	second := journaledClient(t, state)
	second.recoverRuns()
	second.mu.Lock()
	_, watched := second.active.get(d.ExecID, 1)
	seen, _ := second.seen.get(d.ExecID, 1)
	second.mu.Unlock()
	if !watched || !seen.accepted {
		t.Fatalf("the restarted client does not hold the run still going (active %v, accepted %v)", watched, seen.accepted)
	}
	// A re-sent dispatch of it is answered, never run again.
	second.onDispatch(d)
	if second.stats.Accepted.Load() != 0 || second.stats.Duplicates.Load() != 1 {
		t.Fatalf("re-sent dispatch: accepted %d, duplicates %d; want it known", second.stats.Accepted.Load(), second.stats.Duplicates.Load())
	}
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var r *wire.Result
	testenv.WaitFor(t, 10*time.Second, "the watched run's result", func() bool { r = reported(t, second, d.ExecID); return r != nil })
	if r.Result.Status != job.StateFailed || r.Result.ExitCode != 3 || !strings.Contains(r.Result.Output, "the real output") {
		t.Fatalf("reported %+v, want failed with exit code 3 and the command's output", r.Result)
	}

	// Restarted once more, with the journal's result line for it garbled (a crash mid-write): the status
	// the wrapper left tells the same.
	logPath := filepath.Join(second.journal.dir, journalLog)
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if strings.Contains(line, `"op":"result"`) {
			line = line[:len(line)/2]
		}
		kept = append(kept, line)
	}
	if err := os.WriteFile(logPath, []byte(strings.Join(kept, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	second.journal.close()
	third := journaledClient(t, state)
	third.recoverRuns()
	r = reported(t, third, d.ExecID)
	if r == nil || r.Result.ExitCode != 3 || r.Run != 1 || !strings.Contains(r.Result.Output, "the real output") {
		t.Fatalf("after the run ended, a restart reports %+v; want exit code 3 and the output again", r)
	}
}

// A command that ends while its client is down is reported from the status its wrapper left; a Go
// handler's run dies with its client and is reported failed; a line of the journal that cannot be read is
// reported and skipped, and does not stop the client; a confirmed run is not reported again.
func TestARestartedClientReportsRunsThatEndedWhileItWasDown(t *testing.T) {
	state := t.TempDir()
	first := journaledClient(t, state)
	ok := shellDispatch("sh@ok", `echo fine`)
	dir, err := first.journal.begin(ok, 1, true, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// The wrapper runs as runShell starts it; nobody waits for it.
	if err := runShell(context.Background(), JobContext{ExecutionID: ok.ExecID, Params: ok.Params, Output: newOutputLog(job.MaxOutput), runDir: dir}); err != nil {
		t.Fatal(err)
	}
	goRun := dispatch("go@1", "work", 3, time.Now().Add(time.Minute))
	goRun.Run = 1
	if _, err := first.journal.begin(goRun, 1, false, time.Now()); err != nil {
		t.Fatal(err)
	}
	confirmed := dispatch("go@2", "work", 3, time.Now().Add(time.Minute))
	confirmed.Run = 1
	if _, err := first.journal.begin(confirmed, 1, false, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := first.journal.end(confirmed.ExecID, 1, ""); err != nil {
		t.Fatal(err)
	}
	first.journal.close()
	f, err := os.OpenFile(filepath.Join(state, "c1", journalLog), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("{not json\n{\"op\":\"start\",\"start\":{\"dispatch\":{}}}\n")
	f.Close()

	second := journaledClient(t, state)
	runs, bad := second.journal.runs()
	if len(runs) != 2 || len(bad) != 2 {
		t.Fatalf("read %d runs and %d bad lines, want the 2 open runs and the 2 bad lines: %v", len(runs), len(bad), bad)
	}
	second.journal.close()
	second = journaledClient(t, state) // runs() rewrote the log: read it afresh, as a restart would
	second.recoverRuns()
	if r := reported(t, second, confirmed.ExecID); r != nil {
		t.Fatalf("a confirmed run is reported again: %+v", r)
	}
	if r := reported(t, second, ok.ExecID); r == nil || r.Result.Status != job.StateSucceeded || r.Result.ExitCode != 0 || !strings.Contains(r.Result.Output, "fine") {
		t.Fatalf("the shell run that ended reports %+v; want succeeded with its output", r)
	}
	if r := reported(t, second, goRun.ExecID); r == nil || r.Result.Status != job.StateFailed || !r.Result.Final || !strings.Contains(r.Result.Error, "client stopped") {
		t.Fatalf("the Go handler's run reports %+v; want failed for good (no retry: it may have done part of its work) because its client stopped", r)
	}
}

// Whoever can write the journal can make the client report results it never produced: a journal another
// user could write is refused (the client then runs without one).
func TestAJournalOthersCanWriteIsRefused(t *testing.T) {
	state := t.TempDir()
	if _, err := openJournal(state, "c1"); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(state, "c1"), 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := openJournal(state, "c1"); err == nil || !strings.Contains(err.Error(), "writable by others") {
		t.Fatalf("err = %v, want a refusal naming the mode", err)
	}
}

// Two processes of one client id would each report the other's runs as those of a dead client: the
// second to open the journal is refused while the first holds it.
func TestOneProcessAtATimeHoldsAJournal(t *testing.T) {
	state := t.TempDir()
	first, err := openJournal(state, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openJournal(state, "c1"); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("err = %v, want a refusal while another holds it", err)
	}
	first.close()
	again, err := openJournal(state, "c1")
	if err != nil {
		t.Fatalf("after the first closed: %v", err)
	}
	again.close()
}

// A run whose start line makes the log due for a rewrite is kept by it.
func TestARewriteKeepsTheRunThatSetItOff(t *testing.T) {
	state := t.TempDir()
	j, err := openJournal(state, "c1")
	if err != nil {
		t.Fatal(err)
	}
	j.rewriteAt = 0 // the next line sets off a rewrite
	d := dispatch("go@1", "work", 3, time.Now().Add(time.Minute))
	d.Run = 1
	if _, err := j.begin(d, 1, false, time.Now()); err != nil {
		t.Fatal(err)
	}
	j.close()
	again, err := openJournal(state, "c1")
	if err != nil {
		t.Fatal(err)
	}
	defer again.close()
	if runs, bad := again.runs(); len(runs) != 1 || len(bad) != 0 {
		t.Fatalf("after the rewrite: %d runs (%v), want the one that set it off", len(runs), bad)
	}
}

// A confirmed run's slot serves the next run, emptied before the next run's start line: a restart never
// reports the earlier run's exit status for the next run, and the next run's output never holds what a
// process the earlier run left in the background writes after the slot changed hands.
func TestASlotIsUsedAgainOnlyEmptied(t *testing.T) {
	state, gates := t.TempDir(), t.TempDir()
	g1, g2 := filepath.Join(gates, "g1"), filepath.Join(gates, "g2")
	c := journaledClient(t, state)
	first := shellDispatch("sh@1", `( while [ ! -e `+g1+` ]; do sleep 0.02; done; echo late-from-first; : > `+g2+` ) & echo first; exit 4`)
	dir1, err := c.journal.begin(first, 1, true, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := runShell(context.Background(), JobContext{ExecutionID: first.ExecID, Params: first.Params, Output: newOutputLog(job.MaxOutput), runDir: dir1}); err == nil {
		t.Fatal("the first run: want exit status 4")
	}
	if code, _, ok := readStatus(dir1); !ok || code != 4 {
		t.Fatalf("the first run's status: %d (written %v), want 4", code, ok)
	}
	if err := c.journal.end(first.ExecID, 1, dir1); err != nil {
		t.Fatal(err)
	}

	second := shellDispatch("sh@2", `while [ ! -e `+g2+` ]; do sleep 0.02; done; echo second`)
	dir2, err := c.journal.begin(second, 1, true, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if dir2 != dir1 {
		t.Fatalf("the second run's directory %s, want the confirmed run's slot %s again", dir2, dir1)
	}
	if _, _, ok := readStatus(dir2); ok || wrapperPID(dir2, "") != 0 {
		t.Fatal("the slot still holds the first run's status or process id")
	}
	// The client dies before the second run's wrapper starts: a restart must not take the first run's
	// status for it.
	c.journal.close()
	restarted := journaledClient(t, state)
	restarted.recoverRuns()
	if r := reported(t, restarted, second.ExecID); r == nil || r.Result.ExitCode != -1 || !r.Result.Final {
		t.Fatalf("after a restart, the second run is reported as %+v; want its outcome unknown (exit code -1, final)", r)
	}

	if err := os.WriteFile(g1, nil, 0o600); err != nil { // the first run's background process writes, then lets the second end
		t.Fatal(err)
	}
	out := newOutputLog(job.MaxOutput)
	if err := runShell(context.Background(), JobContext{ExecutionID: second.ExecID, Params: second.Params, Output: out, runDir: dir2}); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); !strings.Contains(got, "second") || strings.Contains(got, "first") {
		t.Fatalf("the second run's output %q; want its own line only", got)
	}
}

// A journal written by a version that named each run's directory after the run (no slot in its start
// lines) is still read: a run that ended while the client was down is reported from what it left there.
func TestAJournalWithRunsNamedDirectoriesIsStillRead(t *testing.T) {
	state := t.TempDir()
	c := journaledClient(t, state)
	d := shellDispatch("sh@old", "echo old")
	dir := filepath.Join(c.journal.runsDir, runDirName(d.ExecID, 1))
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for f, content := range map[string]string{"status": "0\n", "out": "what the old run wrote\n", "pid": "1\n"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	line, err := json.Marshal(logLine{Op: "start", Start: &journalRecord{Dispatch: *d, Run: 1, StartedAt: time.Now(), Shell: true}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(line), `"slot"`) {
		t.Fatalf("the old start line names a slot: %s", line)
	}
	if err := os.WriteFile(filepath.Join(c.journal.dir, journalLog), append(line, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	c.journal.close()
	restarted := journaledClient(t, state)
	restarted.recoverRuns()
	r := reported(t, restarted, d.ExecID)
	if r == nil || r.Result.Status != job.StateSucceeded || !strings.Contains(r.Result.Output, "what the old run wrote") {
		t.Fatalf("reported %+v; want succeeded with the old run's output", r)
	}
}

// A process the earlier run of a slot left in the background names the slot's directory in its command
// line, as the wrapper did; it is never taken for the wrapper of the run that has the slot now, even when
// the pid file names it (a reused process id).
func TestABackgroundProcessOfAnEarlierRunIsNotTheNextRunsWrapper(t *testing.T) {
	state, gates := t.TempDir(), t.TempDir()
	gate, bgPID := filepath.Join(gates, "gate"), filepath.Join(gates, "bgpid")
	t.Cleanup(func() {
		// The gate lets the loop end, but the temporary directory holding it goes next, faster than the
		// loop looks: end the process itself, or it outlives the test.
		_ = os.WriteFile(gate, nil, 0o600)
		if b, err := os.ReadFile(bgPID); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	c := journaledClient(t, state)
	first := shellDispatch("sh@1", `( while [ ! -e `+gate+` ]; do sleep 0.02; done ) & echo $! > `+bgPID)
	dir, err := c.journal.begin(first, 1, true, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := runShell(context.Background(), JobContext{ExecutionID: first.ExecID, Params: first.Params, Output: newOutputLog(job.MaxOutput), runDir: dir}); err != nil {
		t.Fatal(err)
	}
	if err := c.journal.end(first.ExecID, 1, dir); err != nil {
		t.Fatal(err)
	}
	second := shellDispatch("sh@2", "true")
	dir2, err := c.journal.begin(second, 1, true, time.Now())
	if err != nil || dir2 != dir {
		t.Fatalf("begin: %s, %v; want the slot %s again", dir2, err, dir)
	}
	pid, err := os.ReadFile(bgPID)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir2, "pid"), pid, 0o600); err != nil {
		t.Fatal(err)
	}
	if wrapperPID(dir2, "") == 0 {
		t.Fatalf("the background process %s does not name the slot: the test shows nothing", strings.TrimSpace(string(pid)))
	}
	if got := wrapperPID(dir2, shellwrap.RunTag(second.ExecID, 1)); got != 0 {
		t.Fatalf("the earlier run's background process %d is taken for the second run's wrapper", got)
	}
}

// A journal whose end line could not be written does not give the slot back, and a restart that finds two
// open runs naming one slot gives its files to the later run only.
func TestTwoOpenRunsNamingOneSlotGiveItToTheLaterOnly(t *testing.T) {
	state := t.TempDir()
	c := journaledClient(t, state)
	a, b := shellDispatch("sh@a", "exit 0"), shellDispatch("sh@b", "exit 5")
	dirA, err := c.journal.begin(a, 1, true, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := runShell(context.Background(), JobContext{ExecutionID: a.ExecID, Params: a.Params, Output: newOutputLog(job.MaxOutput), runDir: dirA}); err != nil {
		t.Fatal(err)
	}
	// As a version that gave the slot back without its end line would have left things: b in a's slot.
	if err := c.journal.slots.Put(filepath.Base(dirA)); err != nil {
		t.Fatal(err)
	}
	dirB, err := c.journal.begin(b, 1, true, time.Now())
	if err != nil || dirB != dirA {
		t.Fatalf("begin: %s, %v; want %s", dirB, err, dirA)
	}
	if err := runShell(context.Background(), JobContext{ExecutionID: b.ExecID, Params: b.Params, Output: newOutputLog(job.MaxOutput), runDir: dirB}); err == nil {
		t.Fatal("b: want exit status 5")
	}
	c.journal.close()
	restarted := journaledClient(t, state)
	restarted.recoverRuns()
	if r := reported(t, restarted, b.ExecID); r == nil || r.Result.ExitCode != 5 {
		t.Fatalf("b reported as %+v; want exit code 5 from its slot", r)
	}
	if r := reported(t, restarted, a.ExecID); r == nil || r.Result.ExitCode != -1 {
		t.Fatalf("a reported as %+v; want its outcome unknown, never b's status", r)
	}

	// An end line that cannot be written: the slot is not given back.
	restarted.journal.mu.Lock()
	restarted.journal.log.Close() // writes now fail
	restarted.journal.mu.Unlock()
	if err := restarted.journal.end(b.ExecID, 1, dirB); err == nil {
		t.Fatal("end with a closed log: want an error")
	}
	if got, err := restarted.journal.slots.Get(); err != nil || got == filepath.Base(dirB) {
		t.Fatalf("Get after a failed end = %s, %v; want another slot than %s", got, err, filepath.Base(dirB))
	}
}
