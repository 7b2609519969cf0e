package admin

import (
	"cmp"
	"fmt"
	"html"
	"html/template"
	"slices"
	"strings"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/workflow"
)

// A batch's graph and a run's Gantt, drawn as SVG on the server: no script, readable without one, and
// the same picture in every browser. Nodes are placed in columns by their longest path from a first node,
// rows in the order of the definition; each is colored by its state (classes in console.css) and shows its
// partitions as counts ("1 of 3 failed").

// maxDrawnNodes bounds the graph drawn; a larger batch is shown as its table only.
const maxDrawnNodes = 400

const (
	boxW, boxH   = 168, 44
	colW, rowH   = 220, 60
	graphPadding = 10
)

// drawGraph draws nodes (in the definition's order, with their state) and edges.
func drawGraph(nodes []workflow.NodeStatus, edges []workflow.Edge) template.HTML {
	if len(nodes) == 0 || len(nodes) > maxDrawnNodes {
		return ""
	}
	index := map[string]int{}
	for i, n := range nodes {
		index[n.Name] = i
	}
	// Columns: the longest path from a node with no edge in (Kahn's order; the definition has no cycle).
	in := make([]int, len(nodes))
	out := make([][]int, len(nodes))
	for _, e := range edges {
		f, okf := index[e.From]
		t, okt := index[e.To]
		if okf && okt {
			out[f] = append(out[f], t)
			in[t]++
		}
	}
	col := make([]int, len(nodes))
	var queue []int
	for i := range nodes {
		if in[i] == 0 {
			queue = append(queue, i)
		}
	}
	for len(queue) > 0 {
		i := queue[0]
		queue = queue[1:]
		for _, j := range out[i] {
			col[j] = max(col[j], col[i]+1)
			if in[j]--; in[j] == 0 {
				queue = append(queue, j)
			}
		}
	}
	row := make([]int, len(nodes))
	perCol := map[int]int{}
	rows, cols := 0, 0
	for i := range nodes {
		row[i] = perCol[col[i]]
		perCol[col[i]]++
		rows, cols = max(rows, row[i]+1), max(cols, col[i]+1)
	}
	x := func(i int) int { return graphPadding + col[i]*colW }
	y := func(i int) int { return graphPadding + row[i]*rowH }
	w, h := graphPadding*2+(cols-1)*colW+boxW, graphPadding*2+(rows-1)*rowH+boxH
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="graph" id="batch-graph" role="img" aria-label="the batch's graph" viewBox="0 0 %d %d" width="%d" height="%d" xmlns="http://www.w3.org/2000/svg">`, w, h, w, h)
	b.WriteString(`<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z"/></marker></defs>`)
	for _, e := range edges {
		f, okf := index[e.From]
		t, okt := index[e.To]
		if !okf || !okt {
			continue
		}
		flag := cmp.Or(e.Flag, workflow.OnSuccess)
		x1, y1, x2, y2 := x(f)+boxW, y(f)+boxH/2, x(t), y(t)+boxH/2
		mid := (x1 + x2) / 2
		fmt.Fprintf(&b, `<path class="edge flag-%s" d="M %d %d C %d %d, %d %d, %d %d" marker-end="url(#arrow)"><title>%s → %s (%s)</title></path>`,
			flag, x1, y1, mid, y1, mid, y2, x2, y2, html.EscapeString(e.From), html.EscapeString(e.To), flag)
	}
	for i, n := range nodes {
		state := cmp.Or(string(n.State), "defined")
		fmt.Fprintf(&b, `<a href="#node-%s"><g class="node st-%s" id="graph-node-%s"><title>%s</title>`,
			html.EscapeString(n.Name), state, html.EscapeString(n.Name), html.EscapeString(nodeTitle(n)))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" rx="6"/>`, x(i), y(i), boxW, boxH)
		fmt.Fprintf(&b, `<text x="%d" y="%d" class="name">%s</text>`, x(i)+8, y(i)+18, html.EscapeString(clip(n.Name, 22)))
		fmt.Fprintf(&b, `<text x="%d" y="%d" class="sub">%s</text>`, x(i)+8, y(i)+35, html.EscapeString(clip(nodeLine(n), 26)))
		b.WriteString(`</g></a>`)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // every name and text above is escaped
}

// nodeLine is a node's second line: its state, and its partitions collapsed to counts.
func nodeLine(n workflow.NodeStatus) string {
	total := 0
	for _, c := range n.Partitions {
		total += c
	}
	state := cmp.Or(string(n.State), n.Job)
	switch {
	case total <= 1:
		return state
	case n.Partitions[workflow.Failed] > 0:
		return fmt.Sprintf("%d of %d failed", n.Partitions[workflow.Failed], total)
	case n.Partitions[workflow.Running] > 0:
		return fmt.Sprintf("%d of %d running", n.Partitions[workflow.Running], total)
	}
	return fmt.Sprintf("%s · %d partitions", state, total)
}

func nodeTitle(n workflow.NodeStatus) string {
	t := n.Name + " (job " + n.Job
	if n.Group != "" {
		t += ", group " + n.Group
	}
	t += "): " + cmp.Or(string(n.State), "defined")
	if n.Reason != "" {
		t += ": " + n.Reason
	}
	return t
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

// maxGanttRows bounds the Gantt's rows.
const maxGanttRows = 300

// drawGantt draws one bar per execution, from when it was fired (or acknowledged) to its end (or now).
func drawGantt(execs []job.Execution, now time.Time) template.HTML {
	if len(execs) == 0 {
		return ""
	}
	start := func(e job.Execution) time.Time {
		if !e.AckedAt.IsZero() {
			return e.AckedAt
		}
		return e.FiredAt
	}
	end := func(e job.Execution) time.Time {
		if !e.FinishedAt.IsZero() {
			return e.FinishedAt
		}
		return now
	}
	execs = slices.Clone(execs)
	slices.SortFunc(execs, func(a, b job.Execution) int { return cmp.Or(start(a).Compare(start(b)), strings.Compare(a.ID, b.ID)) })
	if len(execs) > maxGanttRows {
		execs = execs[:maxGanttRows]
	}
	t0, t1 := start(execs[0]), start(execs[0])
	for _, e := range execs {
		t0 = minTime(t0, start(e))
		if end(e).After(t1) {
			t1 = end(e)
		}
	}
	span := max(t1.Sub(t0), time.Second)
	const label, width, bar = 230, 560, 16
	h := len(execs)*(bar+4) + 24
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="gantt" id="batch-gantt" role="img" aria-label="the run's executions over time" viewBox="0 0 %d %d" width="%d" height="%d" xmlns="http://www.w3.org/2000/svg">`, label+width+10, h, label+width+10, h)
	fmt.Fprintf(&b, `<text x="%d" y="12" class="axis">%s</text><text x="%d" y="12" class="axis" text-anchor="end">+%s</text>`,
		label, t0.UTC().Format("15:04:05Z"), label+width, span.Round(time.Second))
	for i, e := range execs {
		y := 20 + i*(bar+4)
		x := label + int(float64(width)*float64(start(e).Sub(t0))/float64(span))
		w := max(2, int(float64(width)*float64(end(e).Sub(start(e)))/float64(span)))
		name := e.BatchNode
		if e.BatchPartition != "" {
			name += "/" + e.BatchPartition
		}
		if e.BatchRound > 1 {
			name += fmt.Sprintf(" (round %d)", e.BatchRound)
		}
		fmt.Fprintf(&b, `<text x="0" y="%d" class="label">%s</text>`, y+12, html.EscapeString(clip(name, 34)))
		fmt.Fprintf(&b, `<rect class="bar st-%s" x="%d" y="%d" width="%d" height="%d"><title>%s: %s, %s</title></rect>`,
			e.State, x, y, w, bar, html.EscapeString(e.ID), e.State, end(e).Sub(start(e)).Round(time.Millisecond))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // every name above is escaped
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
