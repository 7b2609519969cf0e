package main

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of the CPU times in /proc (USER_HZ), 100 on every Linux this runs on.
const clockTick = 100

// cpuSample is the CPU time, in clock ticks, used so far by this process and by each kind of process it
// started, and by the whole machine.
type cpuSample struct {
	at          time.Time
	byKind      map[string]float64 // "server", "client", "ferretdb", "zookeeper", "driver"
	machineBusy float64            // every CPU, every process: all time but idle and iowait
}

// sampleCPU reads /proc. A child's figure includes the children it has reaped (the shell commands a
// client ran). Processes that ended between two samples are missing from the second one, so compare
// samples taken while the same processes run.
func sampleCPU() cpuSample {
	s := cpuSample{at: time.Now(), byKind: map[string]float64{}}
	self := os.Getpid()
	if f, err := procStat(self); err == nil {
		s.byKind["driver"] = f.utime + f.stime
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil || pid == self {
			continue
		}
		f, err := procStat(pid)
		if err != nil || f.ppid != self {
			continue
		}
		s.byKind[kindOf(pid)] += f.utime + f.stime + f.cutime + f.cstime
	}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		fields := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
		for i, v := range fields[1:] {
			x, _ := strconv.ParseFloat(v, 64)
			if i != 3 && i != 4 && i < 8 {
				s.machineBusy += x
			}
		}
	}
	return s
}

type procFields struct {
	ppid                         int
	utime, stime, cutime, cstime float64
}

// procStat reads /proc/<pid>/stat. The command name (field 2) may hold spaces, so fields are counted
// after its closing parenthesis.
func procStat(pid int) (procFields, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procFields{}, err
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return procFields{}, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b)[i+1:]) // f[0] is field 3 (state)
	if len(f) < 15 {
		return procFields{}, fmt.Errorf("short /proc/%d/stat", pid)
	}
	num := func(k int) float64 { x, _ := strconv.ParseFloat(f[k-3], 64); return x }
	return procFields{ppid: int(num(4)), utime: num(14), stime: num(15), cutime: num(16), cstime: num(17)}, nil
}

// kindOf names what a child process of this driver is, from its command line.
func kindOf(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	switch base := filepath.Base(args[0]); {
	case strings.HasPrefix(base, "clover") && len(args) > 1 && (args[1] == "server" || args[1] == "client"):
		return args[1] // a clover binary under any name (an old commit's, built aside)
	case strings.Contains(base, "ferretdb"):
		return "ferretdb"
	case strings.Contains(base, "java") || strings.Contains(string(b), "zookeeper"):
		return "zookeeper"
	default:
		return base
	}
}

// cpuRows adds how many CPUs each kind of process kept busy between two samples, on average, and the
// whole machine.
func cpuRows(tb *table, what string, before, after cpuSample) {
	secs := after.at.Sub(before.at).Seconds()
	machine := (after.machineBusy - before.machineBusy) / clockTick / secs
	tb.add(fmt.Sprintf("CPUs busy %s, of %d", what, runtime.NumCPU()), fmt.Sprintf("%.2f", machine), "")
	kinds := make([]string, 0, len(after.byKind))
	for k := range after.byKind {
		kinds = append(kinds, k)
	}
	rank := func(k string) int {
		if i := slices.Index([]string{"server", "client", "ferretdb", "zookeeper", "driver"}, k); i >= 0 {
			return i
		}
		return 9
	}
	slices.SortFunc(kinds, func(a, b string) int { return cmp.Or(rank(a)-rank(b), strings.Compare(a, b)) })
	var ours float64
	for _, k := range kinds {
		used := (after.byKind[k] - before.byKind[k]) / clockTick / secs
		ours += used
		name := k
		switch k {
		case "client":
			name = "client processes"
		case "driver":
			name = "this driver"
		}
		tb.add("  "+name, fmt.Sprintf("%.2f", used), "")
	}
	tb.add("  the rest of the machine", fmt.Sprintf("%.2f", max(machine-ours, 0)), "")
}
