package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/clover-sched/clover/internal/fallback"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/shellwrap"
	"github.com/clover-sched/clover/internal/wire"
)

// recoverRuns takes up the runs the journal holds from before a restart, before the client registers:
//   - a run whose result was made is reported again (servers may not have it);
//   - a shell run whose command ended while the client was down is reported with the exit status and
//     output its wrapper left;
//   - a shell run whose command still runs is watched again: it holds its slot, heartbeats list it (the
//     leader then sees it running again, even if it had orphaned it) and it reports when it ends;
//   - any other run died with the client (a Go handler runs in its process), or its outcome is unknown
//     (the command left no exit status): it is reported failed, for good (final: no retry, since the run
//     may have done part of its work and the job may not be one that can run twice), so that the
//     execution ends with a clear error instead of waiting for a person.
func (c *Client) recoverRuns() {
	if c.journal == nil {
		return
	}
	runs, bad := c.journal.runs()
	for _, err := range bad {
		c.logger.Error("a journaled run cannot be read; it is left for a person to look at", "err", err)
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range runs {
		d, run := r.rec.Dispatch, r.rec.Run
		// A re-sent dispatch of it gets the answer it got before the restart; it never runs twice here.
		c.seen.put(d.ExecID, run, decision{accepted: true, attempt: d.Attempt, acceptBy: d.AcceptBy})
		c.journaled.put(d.ExecID, run, r.dir)
		if r.pid > 0 {
			ctx, ar := c.startRunLocked(d.ExecID, run, d.Width, "")
			ar.token = d.Token
			c.logger.Info("a run started before the restart is still going; watching it again", "execution", d.ExecID, "run", run, "pid", r.pid)
			go c.runHandler(ctx, &d, run, watchAdopted(r.pid, r.dir, r.tag), ar, r.dir, r.rec.StartedAt)
			continue
		}
		frame := r.result
		if frame == nil {
			var err error
			if frame, err = c.recoveredResult(r, now); err != nil {
				c.logger.Error("cannot report a journaled run", "execution", d.ExecID, "err", err)
				continue
			}
		}
		c.logger.Info("reporting a run that ended while the client was down", "execution", d.ExecID, "run", run)
		c.pending.put(d.ExecID, run, &pendingReport{
			frame: frame, next: now, wait: c.cfg.ResultRetry,
			kind: fallback.KindResult, execID: d.ExecID, created: now,
		})
	}
}

// recoveredResult is the result frame of a journaled run that ended without a report.
func (c *Client) recoveredResult(r journaledRun, now time.Time) ([]byte, error) {
	d := r.rec.Dispatch
	finished := now
	res := job.Result{Status: job.StateFailed, ExitCode: -1}
	switch {
	case r.statusOK:
		out := newOutputLog(job.MaxOutput)
		outputTail(r.dir, job.MaxOutput, out)
		res.Output, res.OutputBytes = out.String(), out.fileBytes(r.dir)
		if !r.endedAt.IsZero() {
			finished = r.endedAt
		}
		res.ExitCode = r.status
		if r.status == 0 {
			res.Status = job.StateSucceeded
		} else {
			res.Error = fmt.Sprintf("exit status %d (it ended while its client was down)", r.status)
		}
	case r.rec.Shell:
		res.Error = "the command's wrapper ended without leaving its exit status while its client was down (killed, the machine restarted, or the command replaced its shell with an exec the client could not see); not retried: it may have done part of its work"
		res.Final = true
	default:
		res.Error = "its client stopped while it ran (a Go handler runs in the client's process); not retried: it may have done part of its work"
		res.Final = true
	}
	if finished.Before(r.rec.StartedAt) {
		finished = r.rec.StartedAt
	}
	res.Duration = job.Duration(finished.Sub(r.rec.StartedAt))
	if res.Status == job.StateSucceeded {
		c.stats.Succeeded.Add(1)
	} else {
		c.stats.Failed.Add(1)
	}
	return wire.Encode(&wire.Result{
		Header: wire.Header{From: c.cfg.ID, Epoch: d.Epoch, SentAt: now},
		ExecID: d.ExecID, Job: d.Job, Attempt: d.Attempt, Run: r.rec.Run, Result: res,
		StartedAt: r.rec.StartedAt, FinishedAt: finished, Token: d.Token,
	})
}

// journaledRun is a run found in the journal by a restarted client.
type journaledRun struct {
	dir string
	tag string // the wrapper's shellwrap.RunTag; "" for a directory named after the run (older versions)
	rec journalRecord
	// For a shell run: the exit status its wrapper wrote (ok), or the wrapper's process, still running
	// (pid > 0).
	status   int
	statusOK bool
	endedAt  time.Time
	pid      int
	result   []byte // the result frame, when the run ended before the restart and its report was made
}

// runs reads the journal: the runs started and not confirmed. A line that cannot be read (the last one,
// cut by a crash; garbage) is reported in bad and skipped; it never stops the client. It then rewrites the
// log with only those runs, and removes the directories of shell runs it does not know.
func (j *journal) runs() (runs []journaledRun, bad []error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	b, err := os.ReadFile(filepath.Join(j.dir, journalLog))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, []error{fmt.Errorf("journal %s: %w", j.dir, err)}
	}
	order, listed := []runKey{}, map[runKey]bool{}
	for n, line := range bytes.Split(b, []byte{'\n'}) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var l logLine
		if err := json.Unmarshal(line, &l); err != nil {
			bad = append(bad, fmt.Errorf("journal %s line %d: %w", journalLog, n+1, err))
			continue
		}
		switch {
		case l.Op == "start" && l.Start != nil && l.Start.Dispatch.ExecID != "" && l.Start.Run >= 1:
			k := runKey{l.Start.Dispatch.ExecID, l.Start.Run}
			if !listed[k] {
				order, listed[k] = append(order, k), true
			}
			j.open[k] = &openRun{rec: *l.Start}
		case l.Op == "result":
			if o, ok := j.open[runKey{l.ID, l.Run}]; ok && resultOf(l.Result, o.rec) {
				o.result = l.Result
			}
		case l.Op == "end":
			delete(j.open, runKey{l.ID, l.Run})
		default:
			bad = append(bad, fmt.Errorf("journal %s line %d: not a start, result or end line", journalLog, n+1))
		}
	}
	// A slot named by two open runs (an end line that could not be written gave it back early) holds the
	// files of the later run only: the earlier one is reported from its result line, or as unknown.
	latest := map[string]runKey{}
	for _, k := range order {
		if o, ok := j.open[k]; ok && o.rec.Slot != "" {
			latest[o.rec.Slot] = k
		}
	}
	keep := map[string]bool{}
	for _, k := range order {
		o, ok := j.open[k]
		if !ok {
			continue
		}
		r := journaledRun{rec: o.rec, result: o.result}
		if o.rec.Shell {
			r.dir = j.runDir(o.rec)
			switch {
			case r.dir == "":
				bad = append(bad, fmt.Errorf("journal %s: run %d of %s names slot %q, not one: reported as unknown", journalLog, k.run, k.id, o.rec.Slot))
			case o.rec.Slot != "" && latest[o.rec.Slot] != k:
				bad = append(bad, fmt.Errorf("journal %s: run %d of %s names slot %s, which a later run took: reported from its result, or as unknown", journalLog, k.run, k.id, o.rec.Slot))
				r.dir = ""
			}
			if r.dir == "" {
				runs = append(runs, r) // no status, no process: its result line, or failed with its outcome unknown
				continue
			}
			if o.rec.Slot != "" {
				r.tag = shellwrap.RunTag(k.id, k.run)
			}
			keep[filepath.Base(r.dir)] = true
			if r.result == nil {
				r.status, r.endedAt, r.statusOK = readStatus(r.dir)
				if !r.statusOK {
					r.pid = wrapperPID(r.dir, r.tag)
				}
			}
		}
		runs = append(runs, r)
	}
	if entries, err := os.ReadDir(j.runsDir); err == nil {
		for _, e := range entries {
			// A directory no open run names, whose command has ended: left by a run confirmed before the
			// client could remove it.
			if d := filepath.Join(j.runsDir, e.Name()); !keep[e.Name()] && wrapperPID(d, "") == 0 {
				_ = os.RemoveAll(d)
			}
		}
	}
	if err := j.rewriteLocked(); err != nil {
		bad = append(bad, fmt.Errorf("journal %s: rewrite: %w", j.dir, err))
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

// readStatus reads the exit status a shell run's wrapper wrote, and when it wrote it.
func readStatus(dir string) (int, time.Time, bool) {
	path := filepath.Join(dir, "status")
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, time.Time{}, false
	}
	code, err := strconv.Atoi(shellwrap.Field(b))
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
//
// tag, when set, must be in the command line too: a slot serves one run after another, and a process an
// earlier run left in the background names the same directory.
func wrapperPID(dir, tag string) int {
	b, err := os.ReadFile(filepath.Join(dir, "pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(shellwrap.Field(b))
	if err != nil || pid <= 0 || !runsIn(pid, dir, tag) {
		return 0
	}
	return pid
}

// runsIn reports whether process pid is alive and was started for the run directory dir (however the
// path was spelled then), and, when tag is set, for that run.
func runsIn(pid int, dir, tag string) bool {
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
	args := bytes.Split(cmdline, []byte{0})
	if tag != "" && !slices.ContainsFunc(args, func(a []byte) bool { return string(a) == tag }) {
		return false
	}
	dirInfo, dirErr := os.Stat(dir)
	for _, arg := range args {
		if string(arg) == dir {
			return true
		}
		if dirErr == nil && len(arg) > 0 && arg[0] == '/' {
			if fi, err := os.Stat(string(arg)); err == nil && fi.IsDir() && os.SameFile(fi, dirInfo) {
				return true
			}
		}
	}
	return false
}
