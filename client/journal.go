package client

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/clover-sched/clover/internal/shellwrap"
	"github.com/clover-sched/clover/internal/wire"
)

// journal keeps, on disk, what a restarted client needs to finish the story of each run it started: the
// dispatch, the result once made, and for a shell command the process id, the output and the exit
// status, which the command's wrapper writes even when the client is gone (see runShell). A client killed
// mid-run used to leave its executions orphaned forever; with the journal the same client, restarted,
// reports the runs that ended while it was down and watches again those still going.
//
// Layout, under <state_dir>/<client id>/: journal.log, one JSON line per event (a run started, its result
// made, its result confirmed by a server), appended, never synced (it must outlive the client's process,
// which the page cache does, not the machine: syncing each run cost the hot path too much), and rewritten
// with only the runs still open when it grows and at start; runs/slot<n>/ for each shell run under way or
// not yet confirmed, holding pid, out and status.
//
// A slot's directory serves a later run once its run is confirmed (see shellwrap.Slots: making and removing
// a directory and three files for each run cost a quarter of the client's own CPU). A version before the
// slots reads none of them: drain a client (stop it once its runs have ended) before going back to one. A journal written by a
// version that named the directory after the run (runs/<execution>.run<n>/) is still read; its start
// lines name no slot.
type journal struct {
	dir     string // <state_dir>/<client id>
	runsDir string // .../runs

	lock *os.File // <dir>/lock, flock'ed for the life of the process: one client process per journal

	mu        sync.Mutex
	log       *os.File // journal.log, appended
	size      int64
	rewriteAt int64               // the size past which the log is rewritten
	open      map[runKey]*openRun // runs started and not yet confirmed: what a rewrite keeps
	slots     *shellwrap.Slots    // shell runs' directories under runsDir
	line      bytes.Buffer        // appendLocked's, reused
}

type runKey struct {
	id  string
	run int
}

type openRun struct {
	rec    journalRecord
	result []byte
}

// journalRecord is what the journal keeps of a run when it starts.
type journalRecord struct {
	Dispatch  wire.Dispatch `json:"dispatch"`
	Run       int           `json:"run"`
	StartedAt time.Time     `json:"started_at"`
	Shell     bool          `json:"shell,omitempty"` // run by runShell: its wrapper leaves pid and status
	Slot      string        `json:"slot,omitempty"`  // a shell run's directory under runs/ ("": named by runDirName)
}

// logLine is one line of journal.log.
type logLine struct {
	Op     string         `json:"op"` // start, result, end
	Start  *journalRecord `json:"start,omitempty"`
	ID     string         `json:"id,omitempty"`
	Run    int            `json:"run,omitempty"`
	Result []byte         `json:"result,omitempty"` // the result frame
}

const (
	journalLog = "journal.log"
	// minRewrite is the least size past which the log is rewritten with only the open runs (past twice
	// what the last rewrite kept, when that was more).
	minRewrite = 8 << 20
)

// openJournal opens (or makes) the journal of client clientID under stateDir. Whoever can write the
// journal can make the client report results it never produced, so the client's directory must belong to
// this user and be writable by nobody else.
func openJournal(stateDir, clientID string) (*journal, error) {
	abs, err := filepath.Abs(stateDir)
	if err != nil {
		return nil, fmt.Errorf("state_dir %s: %w", stateDir, err)
	}
	own := filepath.Join(abs, clientID)
	dir := filepath.Join(own, "runs")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state_dir %s: %w", stateDir, err)
	}
	for _, d := range []string{own, dir} {
		fi, err := os.Lstat(d)
		if err != nil {
			return nil, fmt.Errorf("state_dir %s: %w", stateDir, err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		switch {
		case !fi.IsDir():
			return nil, fmt.Errorf("state_dir: %s is not a directory (a link?)", d)
		case ok && int(st.Uid) != os.Getuid():
			return nil, fmt.Errorf("state_dir: %s belongs to user %d, not to this one (%d)", d, st.Uid, os.Getuid())
		case fi.Mode().Perm()&0o022 != 0:
			return nil, fmt.Errorf("state_dir: %s is writable by others (mode %v); want 0700", d, fi.Mode().Perm())
		}
	}
	// Two processes with the same id would each take the other's runs for runs of a dead client.
	lock, err := os.OpenFile(filepath.Join(own, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state_dir %s: %w", stateDir, err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("state_dir %s: another process of client %s holds its journal (%w)", stateDir, clientID, err)
	}
	j := &journal{dir: own, runsDir: dir, lock: lock, rewriteAt: minRewrite, open: map[runKey]*openRun{}, slots: shellwrap.NewSlots(dir)}
	if err := j.reopen(); err != nil {
		lock.Close()
		return nil, fmt.Errorf("state_dir %s: %w", stateDir, err)
	}
	return j, nil
}

// reopen opens journal.log for appending.
func (j *journal) reopen() error {
	f, err := os.OpenFile(filepath.Join(j.dir, journalLog), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err // the old handle, if any, stays in use
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	if j.log != nil {
		j.log.Close()
	}
	j.log, j.size = f, fi.Size()
	return nil
}

// close closes the log.
func (j *journal) close() {
	if j == nil {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.log != nil {
		j.log.Close()
		j.log = nil
	}
	if j.lock != nil {
		j.lock.Close() // releases the flock
		j.lock = nil
	}
}

// appendLocked appends one line; j.mu is held.
func (j *journal) appendLocked(l logLine) error {
	if j.log == nil {
		return errors.New("journal closed")
	}
	// The line is encoded into a buffer kept for the next one (j.mu is held): an Encoder writes what
	// json.Marshal does, and the newline.
	j.line.Reset()
	if err := json.NewEncoder(&j.line).Encode(l); err != nil {
		return err
	}
	b := j.line.Bytes()
	if j.line.Cap() > 1<<20 {
		j.line = bytes.Buffer{} // a rare large line's buffer is not kept
	}
	n, err := j.log.Write(b)
	if err != nil {
		// A part of a line would swallow the next one: cut it off.
		if n > 0 && j.log.Truncate(j.size) != nil {
			j.size += int64(n)
		}
		return err
	}
	j.size += int64(n)
	if j.size > j.rewriteAt {
		// The line is in the log either way; a rewrite that fails is tried again once the log has grown
		// by as much again, not on every line.
		if err := j.rewriteLocked(); err != nil {
			j.rewriteAt = j.size + minRewrite
		}
	}
	return nil
}

// rewriteLocked replaces the log with the lines of the runs still open; j.mu is held.
func (j *journal) rewriteLocked() error {
	var buf bytes.Buffer
	for _, o := range j.open {
		for _, l := range []logLine{{Op: "start", Start: &o.rec}, {Op: "result", ID: o.rec.Dispatch.ExecID, Run: o.rec.Run, Result: o.result}} {
			if l.Op == "result" && l.Result == nil {
				continue
			}
			b, err := json.Marshal(l)
			if err != nil {
				return err
			}
			buf.Write(append(b, '\n'))
		}
	}
	if err := writeWhole(filepath.Join(j.dir, journalLog), buf.Bytes()); err != nil {
		return err
	}
	j.rewriteAt = max(minRewrite, 2*int64(buf.Len()))
	return j.reopen()
}

// defaultStateDir is where a client keeps its journal when state_dir is not set: the user's state
// directory ($XDG_STATE_HOME/clover, else ~/.local/state/clover), which survives restarts and belongs to
// the user, unlike a shared temporary directory.
func defaultStateDir() (string, error) {
	if d := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "clover"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("state_dir: not set, and no home directory for the default: %w", err)
	}
	return filepath.Join(home, ".local", "state", "clover"), nil
}

// runDirName is a run's directory name: readable when it can be, and never a path.
func runDirName(execID string, run int) string {
	name := url.PathEscape(execID)
	if len(name) > 180 || name == "." || name == ".." {
		sum := sha256.Sum256([]byte(execID))
		name = hex.EncodeToString(sum[:16])
	}
	return name + ".run" + strconv.Itoa(run)
}

// begin records a run about to start, before it starts: a run that starts is always found by a restarted
// client. For a shell run it readies a slot's directory and returns it ("" otherwise).
func (j *journal) begin(d *wire.Dispatch, run int, shell bool, started time.Time) (string, error) {
	if j == nil {
		return "", errNoJournal
	}
	rec := journalRecord{Dispatch: *d, Run: run, StartedAt: started, Shell: shell}
	dir := ""
	if shell {
		slot, err := j.slots.Get()
		if err != nil {
			return "", fmt.Errorf("journal %s: %w", d.ExecID, err)
		}
		rec.Slot, dir = slot, filepath.Join(j.runsDir, slot)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	k := runKey{d.ExecID, run}
	j.open[k] = &openRun{rec: rec} // first: a rewrite the line sets off must keep it
	if err := j.appendLocked(logLine{Op: "start", Start: &rec}); err != nil {
		delete(j.open, k)
		if rec.Slot != "" {
			_ = j.slots.Put(rec.Slot)
		}
		return "", fmt.Errorf("journal %s: %w", d.ExecID, err)
	}
	return dir, nil
}

// runDir is the directory of a journaled shell run under runsDir, or "" when the record names none that
// is safe (a slot that is not one: the journal was edited).
func (j *journal) runDir(rec journalRecord) string {
	switch {
	case rec.Slot == "":
		return filepath.Join(j.runsDir, runDirName(rec.Dispatch.ExecID, rec.Run))
	case shellwrap.IsSlot(rec.Slot):
		return filepath.Join(j.runsDir, rec.Slot)
	}
	return ""
}

// errNoJournal: the client runs without a journal (tests that drive a client without Run, or a state
// directory it could not open).
var errNoJournal = errors.New("no journal")

// result records the result frame of a run, before it is sent: a restart reports it again.
func (j *journal) result(id string, run int, frame []byte) error {
	if j == nil {
		return errNoJournal
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	o, ok := j.open[runKey{id, run}]
	if !ok {
		return nil
	}
	o.result = frame
	return j.appendLocked(logLine{Op: "result", ID: id, Run: run, Result: frame})
}

// end forgets a run whose result a server confirmed, and frees its directory: a slot serves a later run,
// another directory is removed.
func (j *journal) end(id string, run int, dir string) error {
	if j == nil {
		return nil
	}
	j.mu.Lock()
	delete(j.open, runKey{id, run})
	err := j.appendLocked(logLine{Op: "end", ID: id, Run: run})
	j.mu.Unlock()
	if dir == "" || filepath.Dir(dir) != j.runsDir {
		return err
	}
	// A slot whose end line could not be written is not given back: a restart would take its run for open,
	// with the files of whichever run had the slot next. Removed instead (the restart reports it as unknown).
	if slot := filepath.Base(dir); shellwrap.IsSlot(slot) && err == nil {
		if rerr := j.slots.Put(slot); err == nil {
			err = rerr
		}
		return err
	}
	if rerr := removeRunDir(dir); err == nil {
		err = rerr
	}
	return err
}

// runFiles are the files a shell run leaves in its directory.
var runFiles = []string{"out", outputWindowFile, "pid", "status"}

// removeRunDir removes a run's directory. It names the files it knows rather than reading the directory
// first as os.RemoveAll does (about 155 against 210 µs a run on the 2-core VM it was measured on); a
// directory that holds anything else is left to RemoveAll.
func removeRunDir(dir string) error {
	for _, f := range runFiles {
		_ = os.Remove(filepath.Join(dir, f))
	}
	if err := os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return os.RemoveAll(dir)
}

// writeWhole writes b to path through a temporary file and a rename, so that path holds either nothing
// or all of b, whenever the process dies.
func writeWhole(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// exitStatus is the error of a command that exited with a status other than 0, as its wrapper recorded.
type exitStatus int

func (e exitStatus) Error() string { return "exit status " + strconv.Itoa(int(e)) }
func (e exitStatus) ExitCode() int { return int(e) }
