package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"unicode"
)

// Old against new (-old): each scenario runs first against the older binary, then against the new one, and
// their tables are printed merged, the two figures of a row side by side. The older binary runs insecure,
// since the commit it was built from may predate the security work (keys, CURVE, tokens: acd91ff does);
// the new one runs as the flags say (secure by default).

// tableSink takes the tables of a scenario instead of printing them.
type tableSink interface{ addTable(tb *table) }

// emit prints tb to out, or hands it to out when out collects tables.
func emit(out io.Writer, tb *table) {
	if s, ok := out.(tableSink); ok {
		s.addTable(tb)
		return
	}
	tb.print(out)
}

// collector is the out of a scenario run whose tables are merged later; anything else written to it goes
// through to w.
type collector struct {
	io.Writer
	tables []*table
}

func (c *collector) addTable(tb *table) { c.tables = append(c.tables, tb) }

// binaries says which clover binary each side of a comparison runs.
type binaries struct {
	newBin, oldBin string
	oldLabel       string
	newInsecure    bool // -insecure
}

// use points the harness (integration.Binary reads CLOVER_BIN) at one side's binary.
func (b binaries) use(old bool) {
	if old {
		_ = os.Setenv("CLOVER_BIN", b.oldBin)
		insecure = true
		return
	}
	_ = os.Setenv("CLOVER_BIN", b.newBin)
	insecure = b.newInsecure
}

// runCompared runs sc against the old binary then the new one and prints their tables merged.
func runCompared(r *runner, sc scenario, s settings, b binaries, out io.Writer) {
	var sides [2]*collector
	for i, old := range []bool{true, false} {
		b.use(old)
		// Scope names become embedded clients' ids: letters, digits, '.', '_' and '-' only.
		name := sc.name + "-new"
		if old {
			name = sc.name + "-" + idSafe(b.oldLabel)
		}
		t := r.scope(name)
		sides[i] = &collector{Writer: out}
		sc.run(t, s, sides[i])
		t.Progressf("stopping the cluster")
		t.End()
	}
	old, cur := sides[0].tables, sides[1].tables
	for i := range max(len(old), len(cur)) {
		switch {
		case i >= len(old):
			cur[i].print(out)
		case i >= len(cur):
			old[i].print(out)
		default:
			sideBySide(old[i], cur[i], b.oldLabel).print(out)
		}
	}
}

// idSafe replaces what a client id may not hold with '-'.
func idSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 128 && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '.' || r == '_' || r == '-') {
			return r
		}
		return '-'
	}, s)
}

// sideBySide merges two tables of one scenario: rows matched by their first cell (the figure), in the new
// table's order with rows only the old one has after them; each measured column becomes an old and a new
// column; a last column named "aim" or "used as" is kept once.
func sideBySide(old, cur *table, oldLabel string) *table {
	keep := 0
	if last := cur.header[len(cur.header)-1]; last == "aim" || last == "used as" {
		keep = 1
	}
	measured := len(cur.header) - 1 - keep
	header := []string{cur.header[0]}
	for j := 1; j <= measured; j++ {
		h := cur.header[j]
		if measured == 1 {
			h = ""
		} else {
			h += " "
		}
		header = append(header, h+oldLabel, h+"new")
	}
	if keep == 1 {
		header = append(header, cur.header[len(cur.header)-1])
	}
	out := &table{title: cur.title, header: header}
	if old.title != cur.title {
		out.notes = append(out.notes, fmt.Sprintf("%s: %s", oldLabel, old.title))
	}
	cell := func(r []string, j int) string {
		if j < len(r) {
			return r[j]
		}
		return ""
	}
	merge := func(o, n []string) []string {
		row := []string{cell(n, 0)}
		if n == nil {
			row[0] = cell(o, 0)
		}
		for j := 1; j <= measured; j++ {
			row = append(row, cell(o, j), cell(n, j))
		}
		if keep == 1 {
			aim := cell(n, measured+1)
			if n == nil {
				aim = cell(o, len(o)-1)
			}
			row = append(row, aim)
		}
		return row
	}
	used := make([]bool, len(old.rows))
	find := func(figure string) []string {
		for i, r := range old.rows {
			if !used[i] && cell(r, 0) == figure {
				used[i] = true
				return r
			}
		}
		return nil
	}
	for _, r := range cur.rows {
		out.rows = append(out.rows, merge(find(cell(r, 0)), r))
	}
	for i, r := range old.rows {
		if !used[i] {
			out.rows = append(out.rows, merge(r, nil))
		}
	}
	out.notes = append(out.notes, cur.notes...)
	for _, n := range old.notes {
		if slices.Contains(cur.notes, n) {
			continue
		}
		if rest, ok := strings.CutPrefix(n, "  "); ok { // a continuation stays one
			out.notes = append(out.notes, "  "+oldLabel+": "+rest)
		} else {
			out.notes = append(out.notes, oldLabel+": "+n)
		}
	}
	return out
}
