package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.uber.org/goleak"

	"github.com/clover-sched/clover/integration"
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
	name string
	run  func(t *T, s settings, out io.Writer)
	long bool // an hour or more: run only when named
}

var scenarios = []scenario{
	{"shell", runShell, false},
	{"gofunc", runGoFunc, false},
	{"burst", runBurst, false},
	{"failover", runFailover, false},
	{"history", runHistory, false},
	{"writes", runWrites, false},
	{"soak", runSoak, true},
}

func main() {
	var (
		which   = flag.String("scenario", "all", "scenarios to run: all (but soak, an hour), or a comma-separated list of shell, gofunc, burst, failover, history, writes, soak")
		s       settings
		verbose = flag.Bool("v", false, "log the harness's steps and embedded clients' warnings to stderr")
	)
	flag.BoolVar(&s.quick, "quick", false, "10x fewer jobs and short windows, for a quick look")
	flag.IntVar(&s.jobs, "jobs", 0, "jobs in each scenario that creates many (default shell 1000, gofunc 5000, burst 10000; a tenth with -quick)")
	flag.DurationVar(&s.duration, "duration", 0, "measurement window of shell and gofunc (default 60s and 30s; 10s with -quick)")
	flag.IntVar(&s.rounds, "rounds", 3, "failover rounds for each of SIGKILL and SIGTERM")
	flag.BoolVar(&insecure, "insecure", false, "run the clusters without authentication (insecure: true), to measure what security costs")
	flag.Parse()

	selected, err := choose(*which)
	if err == nil && s.rounds < 1 {
		err = fmt.Errorf("-rounds %d: must be at least 1", s.rounds)
	}
	if err != nil || flag.NArg() > 0 {
		if err == nil {
			err = fmt.Errorf("unexpected arguments %q", flag.Args())
		}
		fmt.Fprintf(os.Stderr, "clover-bench: %v\n", err)
		flag.Usage()
		os.Exit(2)
	}
	os.Exit(run(selected, s, *verbose, os.Stdout, os.Stderr))
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
func run(selected []scenario, s settings, verbose bool, out, errOut io.Writer) int {
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
	root.Progressf("building clover")
	bin := integration.Binary(root)
	if os.Getenv("CLOVER_BIN") == "" {
		root.Cleanup(func() { _ = os.RemoveAll(filepath.Dir(bin)) })
	}
	printMachine(out)
	for _, sc := range selected {
		t := r.scope(sc.name)
		sc.run(t, s, out)
		t.Progressf("stopping the cluster")
		t.End()
	}
	r.finish()
	http.DefaultClient.CloseIdleConnections()
	fmt.Fprintf(out, "\ntotal %s\n", time.Since(begun).Round(time.Second))
	if err := goleak.Find(leaks); err != nil {
		fmt.Fprintf(errOut, "clover-bench: goroutines left behind after every scenario ended:\n%v\n", err)
		return 1
	}
	return 0
}
