package client

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/wire"
)

// journal keeps, on disk, what a restarted client needs to finish the story of each run it started: the
// dispatch, and for a shell command the process id, the output and the exit status, which the command's
// wrapper writes even when the client is gone (see runShell). A client killed mid-run used to leave its
// executions orphaned forever; with the journal the same client, restarted, reports the runs that ended
// while it was down and watches again those still going.
//
// Layout: <state_dir>/<client id>/runs/<execution>.<run>/ holding run.json (written and synced before
// the run starts), and for shell commands pid, out and status. A run's directory goes once a server has
// confirmed its result.
type journal struct {
	dir string // .../runs
}

// journalRecord is run.json.
type journalRecord struct {
	Dispatch  wire.Dispatch `json:"dispatch"`
	Run       int           `json:"run"`
	StartedAt time.Time     `json:"started_at"`
	Shell     bool          `json:"shell,omitempty"` // run by runShell: its wrapper leaves pid and status
}

const journalRecordFile = "run.json"

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
	return &journal{dir: dir}, nil
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

// begin records a run about to start and returns its directory: a run that starts is always found by a
// restarted client. The record is written whole (through a rename) but not synced: it must outlive the
// client's process, which the page cache does; a machine that loses power loses the runs with it, and
// syncing three times per run cost the hot path more than that rare case is worth (see the bench notes).
func (j *journal) begin(d *wire.Dispatch, run int, shell bool, started time.Time) (string, error) {
	if j == nil {
		return "", nil // not running (tests that drive a client without Run)
	}
	dir := filepath.Join(j.dir, runDirName(d.ExecID, run))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("journal %s: %w", d.ExecID, err)
	}
	b, err := json.Marshal(journalRecord{Dispatch: *d, Run: run, StartedAt: started, Shell: shell})
	if err != nil {
		return "", fmt.Errorf("journal %s: %w", d.ExecID, err)
	}
	if err := writeWhole(filepath.Join(dir, journalRecordFile), b); err != nil {
		return "", fmt.Errorf("journal %s: %w", d.ExecID, err)
	}
	return dir, nil
}

// end forgets a run whose result a server confirmed.
func (j *journal) end(dir string) error {
	if j == nil || dir == "" || filepath.Dir(dir) != j.dir {
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

// journaledRun is a run found in the journal by a restarted client.
type journaledRun struct {
	dir string
	rec journalRecord
	// For a shell run: the exit status its wrapper wrote (ok), or the wrapper's process, still running
	// (pid > 0).
	status   int
	statusOK bool
	endedAt  time.Time
	pid      int
	result   []byte // the result frame, when the run ended before the restart and its report was made
}

// runs reads the journal. A directory that cannot be read is reported in bad and left where it is, for
// a person to look at; it never stops the client.
func (j *journal) runs() (runs []journaledRun, bad []error) {
	entries, err := os.ReadDir(j.dir)
	if err != nil {
		return nil, []error{fmt.Errorf("journal %s: %w", j.dir, err)}
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(j.dir, e.Name())
		b, err := os.ReadFile(filepath.Join(dir, journalRecordFile))
		if errors.Is(err, os.ErrNotExist) {
			// The client died between the directory and the record: the run never started.
			_ = os.RemoveAll(dir)
			continue
		}
		var rec journalRecord
		if err == nil {
			err = json.Unmarshal(b, &rec)
		}
		if err == nil && (rec.Dispatch.ExecID == "" || rec.Run < 1) {
			err = errors.New("no execution id or run")
		}
		if err != nil {
			bad = append(bad, fmt.Errorf("journal %s: %s: %w", dir, journalRecordFile, err))
			continue
		}
		r := journaledRun{dir: dir, rec: rec}
		if b, err := os.ReadFile(filepath.Join(dir, "result")); err == nil && resultOf(b, rec) {
			r.result = b
		} else if rec.Shell {
			r.status, r.endedAt, r.statusOK = readStatus(dir)
			if !r.statusOK {
				r.pid = wrapperPID(dir)
			}
		}
		runs = append(runs, r)
	}
	return runs, bad
}

// resultOf reports whether frame is a result of the run rec journals (a garbled or foreign file is not:
// the run is then told from its exit status, or as unknown).
func resultOf(frame []byte, rec journalRecord) bool {
	m, err := wire.Decode(frame)
	if err != nil {
		return false
	}
	r, ok := m.(*wire.Result)
	return ok && r.ExecID == rec.Dispatch.ExecID && max(r.Run, 1) == rec.Run
}

// maxOutputFile bounds a shell run's output file: past it, the file is cut to its tail (the report keeps
// only job.MaxOutput bytes anyway), so that a chatty command cannot fill the state directory.
const maxOutputFile = 1 << 20

// capOutput cuts a run's output file to its last job.MaxOutput bytes once it is over maxOutputFile. The
// command appends (O_APPEND), so its writes go on at the new end; a line written during the cut may be
// lost, which the tail can afford.
func capOutput(dir string) {
	path := filepath.Join(dir, "out")
	fi, err := os.Stat(path)
	if err != nil || fi.Size() <= maxOutputFile {
		return
	}
	var keep bytes.Buffer
	keep.WriteString("[... earlier output cut]\n")
	outputTail(dir, int64(job.MaxOutput), &keep)
	if err := os.Truncate(path, 0); err != nil {
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = f.Write(keep.Bytes())
}

// readStatus reads the exit status a shell run's wrapper wrote, and when it wrote it.
func readStatus(dir string) (int, time.Time, bool) {
	path := filepath.Join(dir, "status")
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, time.Time{}, false
	}
	code, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, time.Time{}, false
	}
	var at time.Time
	if fi, err := os.Stat(path); err == nil {
		at = fi.ModTime()
	}
	return code, at, true
}

// wrapperPID is the process id of a shell run's wrapper if that process is still running; 0 otherwise. A
// process id is reused by the system, so the process must also name the run's directory in its command
// line, as the wrapper does.
func wrapperPID(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 || !runsIn(pid, dir) {
		return 0
	}
	return pid
}

// runsIn reports whether process pid is alive and was started for the run directory dir.
func runsIn(pid int, dir string) bool {
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	if stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil {
		// A zombie (state Z) has ended: only its parent has yet to reap it.
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
			return false
		}
	}
	for _, arg := range bytes.Split(cmdline, []byte{0}) {
		if string(arg) == dir {
			return true
		}
	}
	return false
}

// outputTail copies the last max bytes of a shell run's output file to w.
func outputTail(dir string, max int64, w io.Writer) {
	f, err := os.Open(filepath.Join(dir, "out"))
	if err != nil {
		return
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > max {
		_, _ = f.Seek(fi.Size()-max, io.SeekStart)
	}
	_, _ = io.Copy(w, f)
}

// exitStatus is the error of a command that exited with a status other than 0, as its wrapper recorded.
type exitStatus int

func (e exitStatus) Error() string { return "exit status " + strconv.Itoa(int(e)) }
func (e exitStatus) ExitCode() int { return int(e) }
