package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// table is one scenario's figures: a title, rows of cells under header, and notes printed below.
type table struct {
	title  string
	header []string
	rows   [][]string
	notes  []string
}

func newTable(title string, header ...string) *table {
	if len(header) == 0 {
		header = []string{"figure", "measured", "aim"}
	}
	return &table{title: title, header: header}
}

func (tb *table) add(cells ...string) { tb.rows = append(tb.rows, cells) }

func (tb *table) note(format string, args ...any) {
	tb.notes = append(tb.notes, fmt.Sprintf(format, args...))
}

func (tb *table) print(w io.Writer) {
	fmt.Fprintf(w, "\n== %s ==\n", tb.title)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(tb.header, "\t"))
	rule := make([]string, len(tb.header))
	for i, h := range tb.header {
		rule[i] = strings.Repeat("-", len(h))
	}
	fmt.Fprintln(tw, strings.Join(rule, "\t"))
	for _, r := range tb.rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	_ = tw.Flush()
	for _, n := range tb.notes {
		if rest, ok := strings.CutPrefix(n, "  "); ok { // a continuation of the note above
			fmt.Fprintf(w, "    %s\n", rest)
			continue
		}
		fmt.Fprintf(w, "  * %s\n", n)
	}
}

// printMachine prints what the figures were measured on.
func printMachine(w io.Writer) {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	load := "?"
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			load = strings.Join(f[:3], " ")
		}
	}
	fmt.Fprintf(w, "clover-bench %s\n", time.Now().Format(time.RFC3339))
	fmt.Fprintf(w, "machine: %d CPUs (%s), %s %s/%s, load average at start %s\n",
		runtime.NumCPU(), model, runtime.Version(), runtime.GOOS, runtime.GOARCH, load)
	fmt.Fprintf(w, "note: ZooKeeper, FerretDB, every server and client, and this driver share these %d CPUs, and the\n"+
		"      machine may be shared with other work: figures move from run to run. Compare runs on one machine.\n",
		runtime.NumCPU())
}

func fmtRate(perSec float64) string {
	switch {
	case math.IsNaN(perSec):
		return "-"
	case perSec >= 100:
		return fmt.Sprintf("%s/s", fmtInt(int64(math.Round(perSec))))
	default:
		return fmt.Sprintf("%.1f/s", perSec)
	}
}

// fmtInt writes n with thousands separators.
func fmtInt(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func fmtPct(part, whole float64) string {
	if whole == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*part/whole)
}

// fmtSeconds prints a duration given in seconds, in ms below 1s.
func fmtSeconds(s float64) string {
	switch {
	case math.IsNaN(s):
		return "-"
	case math.IsInf(s, 1):
		return "inf"
	case s < 1:
		return fmt.Sprintf("%.1f ms", s*1000)
	case s < 10:
		return fmt.Sprintf("%.2f s", s)
	default:
		return fmt.Sprintf("%.1f s", s)
	}
}

func fmtDur(d time.Duration) string { return fmtSeconds(d.Seconds()) }

func fmtMiB(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// fmtQuantile prints an estimate from bucketed data, saying when it only is a lower bound.
func fmtQuantile(v float64, over bool) string {
	if over {
		return "> " + fmtSeconds(v)
	}
	return fmtSeconds(v)
}
