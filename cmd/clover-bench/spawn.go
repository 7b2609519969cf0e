package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/clover-sched/clover/internal/shellwrap"
)

// The spawn ceiling: how many runs of a shell command this machine starts and reaps a second from Go, with
// enough runs at once to keep every CPU busy, measured before any cluster starts. No client can run a
// shell job faster than that, so the shell scenarios' throughputs are read as fractions of it.

// ledgerCommand is the overload scenario's command: one line per run, naming the execution (a run made
// twice shows as a repeated id) and the client that ran it.
func ledgerCommand(path string) string {
	return fmt.Sprintf(`echo "$CLOVER_EXECUTION $CLOVER_CLIENT" >> %s`, path)
}

// spawnMode is how a run is started.
type spawnMode int

const (
	// spawnJournaled is how `clover client` runs a shell job: a run directory (a slot, used again once its
	// run is confirmed), its journal line, the wrapper in its own process group with its output in a file,
	// the output's tail read back, two more journal lines and the slot given back (client/journal.go).
	spawnJournaled spawnMode = iota
	// spawnBare is `/bin/sh -c command` with its output in a pipe: a client without a journal, and every
	// client before it (acd91ff).
	spawnBare
)

func (m spawnMode) String() string {
	if m == spawnBare {
		return "bare sh -c (no journal, as acd91ff)"
	}
	return "as `clover client` runs it (wrapper, journal)"
}

// spawner starts runs of one command the way mode says, in dir (a scratch state directory).
type spawner struct {
	command string
	mode    spawnMode
	dir     string
	env     []string
	seq     atomic.Int64

	mu      sync.Mutex // the journal's, as the client's: one writer at a time
	journal *os.File
	slots   *shellwrap.Slots
}

func newSpawner(command string, mode spawnMode, dir string) (*spawner, error) {
	if err := os.MkdirAll(filepath.Join(dir, "runs"), 0o700); err != nil {
		return nil, fmt.Errorf("spawn ceiling: state dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "journal.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spawn ceiling: journal: %w", err)
	}
	// The variables the client gives a command (client/shell.go); their values do not change the cost.
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "CLOVER_JOB=bench-ceiling",
		"CLOVER_CLIENT=bench-ceiling", "CLOVER_SCHEDULED_AT=" + time.Now().UTC().Format(time.RFC3339),
		"CLOVER_ATTEMPT=1", "CLOVER_RUN=1"}
	slots := shellwrap.NewSlots(filepath.Join(dir, "runs"))
	return &spawner{command: command, mode: mode, dir: dir, env: env, journal: f, slots: slots}, nil
}

func (s *spawner) close() { s.journal.Close() }

// journalLine appends one line of about the size the client writes (a start line holds the dispatch).
func (s *spawner) journalLine(op, id string) error {
	b, err := json.Marshal(map[string]any{"op": op, "id": id, "run": 1, "pad": string(bytes.Repeat([]byte{'x'}, 300))})
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err = s.journal.Write(append(b, '\n'))
	return err
}

// run starts one run and waits for it.
func (s *spawner) run() error {
	n := s.seq.Add(1)
	id := fmt.Sprintf("bench-ceiling@%d", n)
	env := append(s.env[:len(s.env):len(s.env)], "CLOVER_EXECUTION="+id)
	if s.mode == spawnBare {
		var out bytes.Buffer
		cmd := exec.Command("/bin/sh", "-c", s.command)
		cmd.Stdout, cmd.Stderr, cmd.Env = &out, &out, env
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		return cmd.Run()
	}
	slot, err := s.slots.Get()
	if err != nil {
		return err
	}
	dir := filepath.Join(s.dir, "runs", slot)
	if err := s.journalLine("start", id); err != nil {
		return err
	}
	out, err := os.OpenFile(filepath.Join(dir, "out"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command("/bin/sh", "-c", shellwrap.For(s.command), "clover-run", dir, s.command, shellwrap.RunTag(id, 1))
	cmd.Stdout, cmd.Stderr, cmd.Env = out, out, env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		out.Close()
		return err
	}
	_ = shellwrap.WriteField(filepath.Join(dir, "pid"), strconv.Itoa(cmd.Process.Pid))
	err = cmd.Wait()
	out.Close()
	if err != nil {
		return err
	}
	if _, err := os.ReadFile(filepath.Join(dir, "out")); err != nil { // the output's tail, for the result
		return err
	}
	if err := s.journalLine("result", id); err != nil {
		return err
	}
	if err := s.journalLine("end", id); err != nil {
		return err
	}
	return s.slots.Put(slot)
}

// rate runs the command with workers runs at once for about d and returns completed runs a second: no run
// starts after d, and the time counted ends when the last one is reaped.
func (s *spawner) rate(ctx context.Context, workers int, d time.Duration) (float64, error) {
	var (
		done     atomic.Int64
		errOnce  sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(d)
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(deadline) {
				if err := s.run(); err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("spawn ceiling: %s (%s): %w", s.command, s.mode, err) })
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	return float64(done.Load()) / time.Since(start).Seconds(), nil
}

// spawnStep is one step of the ramp: runs at once, and the rate they reached.
type spawnStep struct {
	workers int
	rate    float64
}

// rampSpawn doubles the runs at once from the number of CPUs while that gains at least 5%, and returns
// every step; the best one is the ceiling. More runs at once than that only wait for a CPU.
func rampSpawn(ctx context.Context, s *spawner, step time.Duration) ([]spawnStep, spawnStep, error) {
	var steps []spawnStep
	var best spawnStep
	for w := runtime.NumCPU(); w <= 32*runtime.NumCPU(); w *= 2 {
		r, err := s.rate(ctx, w, step)
		if err != nil {
			return nil, best, err
		}
		steps = append(steps, spawnStep{w, r})
		if r < best.rate*1.05 {
			if r > best.rate {
				best = spawnStep{w, r}
			}
			break
		}
		best = spawnStep{w, r}
	}
	return steps, best, nil
}
