package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/goleak"

	"github.com/clover-sched/clover/integration"
	"github.com/clover-sched/clover/internal/testenv"
)

// apiBudget is how long a scenario may spend creating its jobs through the API before it writes the rest
// straight into the store.
const apiBudget = 30 * time.Second

// settings are the flags a scenario reads.
type settings struct {
	quick    bool
	jobs     int           // 0: each scenario's own count
	duration time.Duration // 0: each scenario's own window
	rounds   int
	levels   []float64 // overload: fractions of the spawn ceiling
	ceil     *ceilings // measured at the start of the run; nil when no selected scenario reads them
}

// jobsOr is the number of jobs of a scenario whose full-size count is full.
func (s settings) jobsOr(full int) int {
	switch {
	case s.jobs > 0:
		return s.jobs
	case s.quick:
		return max(full/10, 1)
	}
	return full
}

// windowOr is the measurement window of a scenario whose full-size window is full.
func (s settings) windowOr(full, quick time.Duration) time.Duration {
	switch {
	case s.duration > 0:
		return s.duration
	case s.quick:
		return quick
	}
	return full
}

// settle is the pause between warm-up and the window.
func settle(s settings) time.Duration {
	if s.quick {
		return time.Second
	}
	return 3 * time.Second
}

type scenario struct {
	name     string
	run      func(t *T, s settings, out io.Writer) // nil: the ceilings alone
	long     bool                                  // an hour or more: run only when named
	ceilings bool                                  // reads the ceilings: they are measured first
}

var scenarios = []scenario{
	{name: "ceilings", ceilings: true},
	{name: "shell", run: runShell, ceilings: true},
	{name: "gofunc", run: runGoFunc, ceilings: true},
	{name: "overload", run: runOverload, ceilings: true},
	{name: "burst", run: runBurst},
	{name: "failover", run: runFailover},
	{name: "history", run: runHistory},
	{name: "writes", run: runWrites},
	{name: "console", run: runConsole},
	{name: "batch", run: runBatch},
	{name: "soak", run: runSoak, long: true},
}

func main() {
	var (
		which   = flag.String("scenario", "all", "scenarios to run: all (but soak, an hour), or a comma-separated list of ceilings, shell, gofunc, overload, burst, failover, history, writes, console, batch, soak (the ceilings are measured first whenever shell, gofunc or overload runs)")
		s       settings
		verbose = flag.Bool("v", false, "log the harness's steps and embedded clients' warnings to stderr")
		levels  = flag.String("levels", "50,100,200", "overload: the levels, in percent of the spawn ceiling")
		b       binaries
	)
	flag.StringVar(&b.newBin, "binary", "", "the clover binary the clusters run (default: built from this tree; CLOVER_BIN also sets it)")
	flag.StringVar(&b.oldBin, "old", "", "an older clover binary: each scenario runs against it (insecure) first, then against the new one, tables side by side")
	flag.StringVar(&b.oldLabel, "old-label", "old", "what the tables call the -old binary (e.g. its commit)")
	flag.BoolVar(&s.quick, "quick", false, "10x fewer jobs and short windows, for a quick look")
	flag.IntVar(&s.jobs, "jobs", 0, "jobs in each scenario that creates many (default shell 1000, gofunc 5000, burst 10000; a tenth with -quick)")
	flag.DurationVar(&s.duration, "duration", 0, "measurement window of shell, gofunc and overload (default 60s, 30s and 5m a level; 10s, 10s and 20s with -quick)")
	flag.IntVar(&s.rounds, "rounds", 3, "failover rounds for each of SIGKILL and SIGTERM")
	flag.BoolVar(&insecure, "insecure", false, "run the clusters without authentication (insecure: true), to measure what security costs")
	flag.Parse()

	selected, err := choose(*which)
	if err == nil && s.rounds < 1 {
		err = fmt.Errorf("-rounds %d: must be at least 1", s.rounds)
	}
	if err == nil {
		s.levels, err = parseLevels(*levels)
	}
	for _, p := range []*string{&b.newBin, &b.oldBin} {
		if *p == "" || err != nil {
			continue
		}
		if _, err = os.Stat(*p); err == nil {
			*p, err = filepath.Abs(*p) // the members may start in another directory
		}
		if err != nil {
			err = fmt.Errorf("clover binary: %w", err)
		}
	}
	b.newInsecure = insecure
	if err != nil || flag.NArg() > 0 {
		if err == nil {
			err = fmt.Errorf("unexpected arguments %q", flag.Args())
		}
		fmt.Fprintf(os.Stderr, "clover-bench: %v\n", err)
		flag.Usage()
		os.Exit(2)
	}
	os.Exit(run(selected, s, b, *verbose, os.Stdout, os.Stderr))
}

// parseLevels reads "50,100,200" as fractions.
func parseLevels(list string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(list, ",") {
		pct, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || pct <= 0 {
			return nil, fmt.Errorf("-levels %q: %q is not a positive percentage", list, f)
		}
		out = append(out, pct/100)
	}
	return out, nil
}

func choose(which string) ([]scenario, error) {
	if which == "all" {
		var out []scenario
		for _, sc := range scenarios {
			if !sc.long {
				out = append(out, sc)
			}
		}
		return out, nil
	}
	var out []scenario
	for _, name := range strings.Split(which, ",") {
		found := false
		for _, sc := range scenarios {
			if sc.name == strings.TrimSpace(name) {
				out, found = append(out, sc), true
			}
		}
		if !found {
			return nil, fmt.Errorf("-scenario %q: unknown scenario %q", which, name)
		}
	}
	return out, nil
}

// run runs the scenarios one after the other, each on its own cluster, torn down before the next starts.
func run(selected []scenario, s settings, b binaries, verbose bool, out, errOut io.Writer) int {
	r := newRunner(errOut, verbose)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		sig, ok := <-sigs
		if !ok {
			return
		}
		fmt.Fprintf(errOut, "\nclover-bench: %s: stopping every process and removing temp dirs (again to exit at once)\n", sig)
		go func() {
			<-sigs
			os.Exit(130)
		}()
		r.abort(130)
	}()
	leaks := goleak.IgnoreCurrent() // the signal handling above stays for the whole run

	begun := time.Now()
	root := r.scope("bench")
	if b.newBin != "" {
		_ = os.Setenv("CLOVER_BIN", b.newBin)
	}
	if os.Getenv("CLOVER_BIN") == "" {
		root.Progressf("building clover")
		b.newBin = integration.Binary(root)
		root.Cleanup(func() { _ = os.RemoveAll(filepath.Dir(b.newBin)) })
	} else {
		b.newBin = integration.Binary(root)
	}
	printMachine(out)
	mode := "secure"
	if insecure {
		mode = "insecure"
	}
	fmt.Fprintf(out, "clover: %s (%s)\n", b.newBin, mode)
	if b.oldBin != "" {
		fmt.Fprintf(out, "%s: %s (insecure)\n", b.oldLabel, b.oldBin)
	}
	if slices.ContainsFunc(selected, func(sc scenario) bool { return sc.ceilings }) {
		t := r.scope("ceilings")
		s.ceil = measureCeilings(t, s)
		t.End()
		s.ceil.print(out)
	}
	for _, sc := range selected {
		if sc.run == nil {
			continue
		}
		if b.oldBin != "" {
			runCompared(r, sc, s, b, out)
			continue
		}
		t := r.scope(sc.name)
		sc.run(t, s, out)
		t.Progressf("stopping the cluster")
		t.End()
	}
	r.finish()
	http.DefaultClient.CloseIdleConnections()
	fmt.Fprintf(out, "\ntotal %s\n", time.Since(begun).Round(time.Second))
	// The ZAP handler that the embedded clients' CURVE inboxes started lives as long as the process, by
	// design (internal/transport/zap.go): it is not left behind by a scenario.
	if err := goleak.Find(leaks, goleak.IgnoreAnyFunction("github.com/clover-sched/clover/internal/transport.serveZAP"),
		testenv.KeptGoroutines(), goleak.IgnoreTopFunction("github.com/clover-sched/clover/client.(*threadPool).serve")); err != nil {
		fmt.Fprintf(errOut, "clover-bench: goroutines left behind after every scenario ended:\n%v\n", err)
		return 1
	}
	return 0
}
