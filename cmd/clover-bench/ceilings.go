package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/testenv"
)

// ceilings are what this machine itself can do, measured once at the start of a run, before any cluster
// starts, so that every throughput a scenario prints can be read as a fraction of what was possible in
// the same run (on a shared 2-core machine the absolute figures move from run to run; the fractions much
// less).
type ceilings struct {
	// Runs a second of a shell command started and reaped from Go, by command: "ledger" (the overload
	// scenario's) and "true" (the shell scenario's), each as `clover client` runs it and bare.
	spawn     map[string]float64 // key: command + "/" + "journaled" or "bare"
	workers   int                // runs at once at which the ledger command peaked
	ramp      []spawnStep
	rawDocs   float64 // small documents a second, InsertMany of storeBatch
	execs     executionCeiling
	measuring time.Duration
}

// spawnCeiling is the ceiling of command ("ledger" or "true") as `clover client` runs it.
func (c *ceilings) spawnCeiling(command string) float64 {
	if c == nil {
		return 0
	}
	return c.spawn[command+"/journaled"]
}

// execCeiling is the Clover-shaped store ceiling in executions a second (0 when not measured).
func (c *ceilings) execCeiling() float64 {
	if c == nil {
		return 0
	}
	return c.execs.recorded
}

// measureCeilings measures the spawn ceilings in a scratch directory and the store's on a FerretDB of its
// own, started as a cluster's is (same binary, same flags) and stopped when t's scope ends. Each figure is
// taken over about step (longer for the full run); spawn runs first, while FerretDB is not yet running.
func measureCeilings(t *T, s settings) *ceilings {
	step := 3 * time.Second
	if s.quick {
		step = 1500 * time.Millisecond
	}
	begun := time.Now()
	c := &ceilings{spawn: map[string]float64{}}
	ctx := context.Background()
	dir := t.TempDir()
	commands := map[string]string{"ledger": ledgerCommand(filepath.Join(dir, "ledger.txt")), "true": "true"}

	t.Progressf("spawn ceiling: `%s`, doubling runs at once from %d while it gains", commands["ledger"], runtime.NumCPU())
	sp, err := newSpawner(commands["ledger"], spawnJournaled, filepath.Join(dir, "ledger-journaled"))
	if err != nil {
		t.Fatalf("%v", err)
	}
	ramp, best, err := rampSpawn(ctx, sp, step)
	sp.close()
	if err != nil {
		t.Fatalf("%v", err)
	}
	c.ramp, c.workers, c.spawn["ledger/journaled"] = ramp, best.workers, best.rate
	// Each figure is the best of a few rounds, the variants taking turns: a burst of other work on a shared
	// machine lowers one sample, never raises it, and the ceiling is what the machine can do.
	rounds := 3
	if s.quick {
		rounds = 2
	}
	for round := range rounds {
		t.Progressf("spawn ceiling: round %d of %d, every variant with %d at once", round+1, rounds, best.workers)
		for _, k := range []string{"ledger/journaled", "ledger/bare", "true/journaled", "true/bare"} {
			if k == "ledger/journaled" && round == 0 {
				continue // the ramp's best was its first sample
			}
			name, mode, _ := strings.Cut(k, "/")
			m := spawnJournaled
			if mode == "bare" {
				m = spawnBare
			}
			sp, err := newSpawner(commands[name], m, filepath.Join(dir, fmt.Sprintf("%s-%s-%d", name, mode, round)))
			if err != nil {
				t.Fatalf("%v", err)
			}
			r, err := sp.rate(ctx, best.workers, step)
			sp.close()
			if err != nil {
				t.Fatalf("%v", err)
			}
			c.spawn[k] = max(c.spawn[k], r)
		}
	}

	t.Progressf("store ceilings: starting FerretDB")
	f := testenv.StartFerretDB(t)
	t.Progressf("store ceilings: raw documents, then Clover-shaped executions")
	if c.rawDocs, err = rawDocRate(ctx, f.URI, step); err != nil {
		t.Fatalf("%v", err)
	}
	if c.execs, err = executionRates(ctx, f.URI, 2*step); err != nil {
		t.Fatalf("%v", err)
	}
	c.measuring = time.Since(begun)
	return c
}

// print prints the ceilings' table.
func (c *ceilings) print(out io.Writer) {
	tb := newTable("ceilings: what this machine itself does, measured before any cluster starts", "figure", "measured", "used as")
	tb.add("spawn: ledger command, as `clover client` runs it", fmtRate(c.spawn["ledger/journaled"]), "the spawn ceiling (overload)")
	tb.add("  the same, bare sh -c (no journal, as acd91ff)", fmtRate(c.spawn["ledger/bare"]), "")
	tb.add("spawn: `true`, as `clover client` runs it", fmtRate(c.spawn["true/journaled"]), "the spawn ceiling (shell)")
	tb.add("  the same, bare sh -c", fmtRate(c.spawn["true/bare"]), "")
	var ramp []string
	for _, st := range c.ramp {
		ramp = append(ramp, fmt.Sprintf("%d: %s", st.workers, fmtRate(st.rate)))
	}
	tb.add("  runs at once (ledger, as the client runs it)", strings.Join(ramp, ", "), fmt.Sprintf("%d for every spawn figure", c.workers))
	tb.add(fmt.Sprintf("store: raw small documents (InsertMany of %d)", storeBatch), fmtRate(c.rawDocs)+" documents", "")
	tb.add("store: Clover-shaped executions recorded (fired, acked, finished)", fmtRate(c.execs.recorded)+" executions", "the store ceiling (gofunc)")
	tb.add("store: the same, each also closed into the history", fmtRate(c.execs.closed)+" executions", "")
	tb.add("  fire alone: InsertExecutions (open copy + fence)", fmtRate(c.execs.fire), "")
	tb.add("  report alone: InsertEvents acked, then finished", fmtRate(c.execs.report), "")
	tb.add("  close alone: OpenByID, history Append, CloseExecutions", fmtRate(c.execs.close), "")
	tb.add("executions/s per 1,000 raw documents/s", fmt.Sprintf("%.0f (closed too: %.0f)", 1000*c.execs.recorded/c.rawDocs,
		1000*c.execs.closed/c.rawDocs), "to raise (issue 14)")
	tb.note("spawn: runs of `sh -c '<command>'` started and reaped a second from Go, as many at once as gained 5%% or more")
	tb.note("  (doubling from the CPU count), the best of a few rounds; the ledger command is `%s`;", ledgerCommand("FILE"))
	tb.note("  `clover client` starts a journaled run under a wrapper shell (an EXIT trap writes the status; pid/status/out files, journal lines)")
	tb.note("store: on a FerretDB of its own, started as a cluster's, on scratch databases, through internal/store, %d executions", storeBatch)
	tb.note("  a batch: recorded = 2 documents fired (open-set copy, fence) and 2 events (acked, finished), with the store's indexes;")
	tb.note("  closed adds the closer's work: a read of the open set, 1 history record (and its bucket's index), 3 documents deleted,")
	tb.note("  in closes of whatever waits, up to %s ids at once, as the closer does;", fmtInt(store.MaxCloseBatch))
	tb.note("  the stages run concurrently as the leader, the intake and the closer do; alone = executions over that stage's time")
	tb.note("  in the store, while the others ran")
	tb.note("measured in %s, while the rest of the machine did whatever it was doing (see the load average above)", c.measuring.Round(time.Second))
	tb.print(out)
}
