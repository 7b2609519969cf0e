package workflow

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/schedule"
)

// Flag is an edge's control flag: how the node before it must end for the node after it to run.
type Flag string

const (
	OnSuccess    Flag = "successful" // the node before succeeded (or did not run this time: skipped)
	OnFailure    Flag = "failed"     // the node before failed: a recovery or alerting step
	OnCompletion Flag = "completed"  // the node before ended, either way
	Disabled     Flag = "disabled"   // the edge is kept in the definition but imposes nothing
)

// Definition is a batch: a named graph of nodes.
type Definition struct {
	Name        string `json:"name" bson:"name"`
	Description string `json:"description,omitempty" bson:"description,omitempty"`
	Nodes       []Node `json:"nodes" bson:"nodes"`
	Edges       []Edge `json:"edges,omitempty" bson:"edges,omitempty"`
	// Schedule, when set, starts a run on its own (a job's schedule syntax, in TimeZone): the run's cycle
	// is the fire time written with CycleFormat (a Go time layout, default "2006-01-02"), at Frequency.
	// A cycle runs once, so two leaders, or a leader catching up, never start the same one twice.
	Schedule    string `json:"schedule,omitempty" bson:"schedule,omitempty"`
	TimeZone    string `json:"time_zone,omitempty" bson:"time_zone,omitempty"`
	Frequency   string `json:"frequency,omitempty" bson:"frequency,omitempty"`
	CycleFormat string `json:"cycle_format,omitempty" bson:"cycle_format,omitempty"`
	// RequestedBy are the clients that may start a run: by a file's arrival (a watch in their config) or
	// an application's request (client.RequestBatchRun). Starting a batch runs its jobs' commands now,
	// an operator's act: no client may unless named here.
	RequestedBy []string `json:"requested_by,omitempty" bson:"requested_by,omitempty"`
	// Source says who maintains the batch, as a job's does: "api" (the API, the CLI and the console),
	// "config:NAME" (`clover config apply`, which deletes only its own) or "client:ID" (declared by a
	// client in code, applied by the leader). An API write takes any batch over.
	Source string `json:"source,omitempty" bson:"source,omitempty"`
	// Version is the stored version (read), or the version a write replaces (0: a new batch); not part
	// of what is stored as the definition.
	Version int64 `json:"version,omitempty" bson:"-"`
}

// Node is one step of a batch: a job, run once or once per partition, on the run's frequencies.
type Node struct {
	Name string `json:"name"`
	Job  string `json:"job"`
	// Group names what the node belongs to (all DataStage jobs, all SSIS jobs): shown with it, and given
	// to its executions as params.group unless its params set one.
	Group string `json:"group,omitempty" bson:"group,omitempty"`
	// Labels are what a client must carry to run the node, besides its job's routing labels (os=windows
	// for an SSIS step).
	Labels map[string]string `json:"labels,omitempty" bson:"labels,omitempty"`
	Params map[string]string `json:"params,omitempty"`
	// Partitions splits the node into one execution per item (department A, B, C); empty: one.
	Partitions []string `json:"partitions,omitempty"`
	// PartitionsFrom takes the partitions when the node starts, instead: "param:NAME", the run's parameter
	// NAME, or "node:NAME", the last line of the output of node NAME (unpartitioned, with an edge to this
	// one): items separated by commas or spaces.
	PartitionsFrom string `json:"partitions_from,omitempty" bson:"partitions_from,omitempty"`
	// Frequencies are the run frequencies the node runs on ("D", "W", "M", or any name); empty: every
	// run. On another frequency it does not run, and counts as succeeded for the nodes after it.
	Frequencies []string `json:"frequencies,omitempty"`
	// Locks are named mutexes each execution of the node holds while it runs (the design's mutex locks):
	// exclusive, or shared with other shared holders. They hold across batches, runs and clients.
	Locks []Lock `json:"locks,omitempty" bson:"locks,omitempty"`
	// Resources are counted units each execution of the node holds while it runs, by resource (a
	// resource's capacity is set with PUT /api/v1/resources/{name}).
	Resources map[string]int `json:"resources,omitempty" bson:"resources,omitempty"`
	// Pre and Post are shell commands run before and after the job's command, in the same execution on
	// the same client (a shell job's only): pre && command && post, each failing the execution.
	Pre  string `json:"pre,omitempty" bson:"pre,omitempty"`
	Post string `json:"post,omitempty" bson:"post,omitempty"`
	// Handlers act when each of the node's executions starts, succeeds or fails: a shell command run
	// with it (with the run's context in CLOVER_PARAM_BATCH_*), and mail or webhooks to contacts.
	Handlers Handlers `json:"handlers,omitzero" bson:"handlers,omitempty"`
}

// Handlers are what a node does on the start, success and failure of each of its executions.
type Handlers struct {
	OnStart   Handler `json:"on_start,omitzero" bson:"on_start,omitempty"`
	OnSuccess Handler `json:"on_success,omitzero" bson:"on_success,omitempty"`
	OnFailure Handler `json:"on_failure,omitzero" bson:"on_failure,omitempty"`
}

// Handler is one event's handler.
type Handler struct {
	Command  string   `json:"command,omitempty" bson:"command,omitempty"`
	Contacts []string `json:"contacts,omitempty" bson:"contacts,omitempty"`
}

// Commands reports whether the node runs any command besides its job's (pre, post, handlers).
func (n Node) Commands() bool {
	h := n.Handlers
	return n.Pre != "" || n.Post != "" || h.OnStart.Command != "" || h.OnSuccess.Command != "" || h.OnFailure.Command != ""
}

// MaxCommand bounds a pre, post or handler command.
const MaxCommand = 8 << 10

// Lock is a named mutex a node holds.
type Lock struct {
	Name   string `json:"name" bson:"name"`
	Shared bool   `json:"shared,omitempty" bson:"shared,omitempty"`
}

// MaxUnits bounds the units of a resource one node asks for, and a resource's capacity.
const MaxUnits = 1_000_000

// Bounds of one definition: what one run keeps in the leader's memory and fires.
const (
	MaxNodes      = 50_000
	MaxPartitions = 100_000 // of one node
)

// Edge makes To wait for From, as Flag says.
type Edge struct {
	From string `json:"from"`
	To   string `json:"to"`
	Flag Flag   `json:"flag,omitempty"` // default OnSuccess
}

var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// ValidName checks a name that goes into an execution's id (a batch run's cycle): the characters of a
// node's or a partition's name.
func ValidName(what, name string) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("%s %q: must be 1-128 characters of letters, digits, '.', '_' or '-', starting with a letter or digit", what, name)
	}
	return nil
}

// Layout is the time layout of a scheduled run's cycle.
func (d Definition) Layout() string {
	if d.CycleFormat == "" {
		return "2006-01-02"
	}
	return d.CycleFormat
}

// SplitPartitions reads a list of partitions: items separated by commas or white space, each checked as
// a name, none twice.
func SplitPartitions(s string) ([]string, error) {
	items := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r' })
	if len(items) > MaxPartitions {
		return nil, fmt.Errorf("%d partitions, at most %d", len(items), MaxPartitions)
	}
	seen := map[string]bool{}
	for _, it := range items {
		if err := ValidName("partition", it); err != nil {
			return nil, err
		}
		if seen[it] {
			return nil, fmt.Errorf("partition %q is given twice", it)
		}
		seen[it] = true
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("no partitions")
	}
	return items, nil
}

// Node returns the node named name.
func (d Definition) Node(name string) (Node, bool) {
	for _, n := range d.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// ErrCycle: the graph has a cycle; the error names its path.
var ErrCycle = errors.New("cycle")

// Validate reports the first thing wrong with d, naming it: a bad or repeated name, an edge to an
// unknown node, a bad flag, a repeated edge, a cycle (with its path: "batch eod: cycle: a → b → a").
func (d Definition) Validate() error {
	if !namePattern.MatchString(d.Name) {
		return fmt.Errorf("batch name %q: must be 1-128 characters of letters, digits, '.', '_' or '-'", d.Name)
	}
	if len(d.Nodes) == 0 || len(d.Nodes) > MaxNodes {
		return fmt.Errorf("batch %s: %d nodes, want 1-%d", d.Name, len(d.Nodes), MaxNodes)
	}
	if d.Schedule != "" {
		if _, err := schedule.Parse(d.Schedule, d.TimeZone); err != nil {
			return fmt.Errorf("batch %s: %w", d.Name, err)
		}
		sample := time.Date(2026, 12, 31, 23, 59, 59, 0, time.UTC)
		if err := ValidName("cycle", sample.Format(d.Layout())); err != nil {
			return fmt.Errorf("batch %s: cycle_format %q writes cycles like %q: %w", d.Name, d.CycleFormat, sample.Format(d.Layout()), err)
		}
	}
	if d.Frequency != "" {
		if err := ValidName("frequency", d.Frequency); err != nil {
			return fmt.Errorf("batch %s: %w", d.Name, err)
		}
	}
	seen := map[string]bool{}
	for i, n := range d.Nodes {
		switch {
		case !namePattern.MatchString(n.Name):
			return fmt.Errorf("batch %s: nodes[%d]: name %q: must be 1-128 characters of letters, digits, '.', '_' or '-'", d.Name, i, n.Name)
		case seen[n.Name]:
			return fmt.Errorf("batch %s: node %s: named twice", d.Name, n.Name)
		case n.Job == "":
			return fmt.Errorf("batch %s: node %s: job is required", d.Name, n.Name)
		}
		seen[n.Name] = true
		if n.Group != "" && !namePattern.MatchString(n.Group) {
			return fmt.Errorf("batch %s: node %s: group %q: must be 1-128 characters of letters, digits, '.', '_' or '-'", d.Name, n.Name, n.Group)
		}
		for k, v := range n.Labels {
			if !namePattern.MatchString(k) || len(v) > 256 {
				return fmt.Errorf("batch %s: node %s: label %q: want a name of 1-128 letters, digits, '.', '_' or '-' and a value of at most 256 bytes", d.Name, n.Name, k)
			}
		}
		if len(n.Partitions) > MaxPartitions {
			return fmt.Errorf("batch %s: node %s: %d partitions, at most %d", d.Name, n.Name, len(n.Partitions), MaxPartitions)
		}
		for k := range n.Params {
			if job.SameParam(k, "command") {
				return fmt.Errorf("batch %s: node %s: params.%s: a batch never sets a job's command", d.Name, n.Name, k)
			}
			if job.IsBatchParam(k) {
				return fmt.Errorf("batch %s: node %s: params.%s: set by the run itself (its context; use pre, post and handlers for commands)", d.Name, n.Name, k)
			}
		}
		for what, c := range map[string]string{"pre": n.Pre, "post": n.Post, "handlers.on_start.command": n.Handlers.OnStart.Command,
			"handlers.on_success.command": n.Handlers.OnSuccess.Command, "handlers.on_failure.command": n.Handlers.OnFailure.Command} {
			if len(c) > MaxCommand {
				return fmt.Errorf("batch %s: node %s: %s: %d bytes, at most %d", d.Name, n.Name, what, len(c), MaxCommand)
			}
		}
		for _, h := range []Handler{n.Handlers.OnStart, n.Handlers.OnSuccess, n.Handlers.OnFailure} {
			for _, c := range h.Contacts {
				if c == "" {
					return fmt.Errorf("batch %s: node %s: a handler names an empty contact", d.Name, n.Name)
				}
			}
		}
		locks := map[string]bool{}
		for _, l := range n.Locks {
			if !namePattern.MatchString(l.Name) || locks[l.Name] {
				return fmt.Errorf("batch %s: node %s: lock %q: repeated, or not 1-128 characters of letters, digits, '.', '_' or '-'", d.Name, n.Name, l.Name)
			}
			locks[l.Name] = true
		}
		for r, units := range n.Resources {
			switch {
			case !namePattern.MatchString(r):
				return fmt.Errorf("batch %s: node %s: resource %q: must be 1-128 characters of letters, digits, '.', '_' or '-'", d.Name, n.Name, r)
			case units < 1 || units > MaxUnits:
				return fmt.Errorf("batch %s: node %s: resource %s: %d units, want 1-%d", d.Name, n.Name, r, units, MaxUnits)
			}
		}
		parts := map[string]bool{}
		for _, p := range n.Partitions {
			if !namePattern.MatchString(p) || parts[p] {
				return fmt.Errorf("batch %s: node %s: partition %q: repeated, or not 1-128 characters of letters, digits, '.', '_' or '-'", d.Name, n.Name, p)
			}
			parts[p] = true
		}
	}
	for _, n := range d.Nodes {
		if n.PartitionsFrom == "" {
			continue
		}
		kind, name, _ := strings.Cut(n.PartitionsFrom, ":")
		switch {
		case len(n.Partitions) > 0:
			return fmt.Errorf("batch %s: node %s: partitions and partitions_from are exclusive", d.Name, n.Name)
		case kind == "param" && name != "":
		case kind == "node":
			src, ok := d.Node(name)
			has := slices.ContainsFunc(d.Edges, func(e Edge) bool { return e.From == name && e.To == n.Name && e.Flag != Disabled })
			switch {
			case !ok:
				return fmt.Errorf("batch %s: node %s: partitions_from %q: no such node", d.Name, n.Name, n.PartitionsFrom)
			case len(src.Partitions) > 0 || src.PartitionsFrom != "":
				return fmt.Errorf("batch %s: node %s: partitions_from %q: that node is partitioned; its output is not one list", d.Name, n.Name, n.PartitionsFrom)
			case src.Post != "" || src.Handlers.OnSuccess.Command != "":
				return fmt.Errorf("batch %s: node %s: partitions_from %q: that node's post or on_success command would print after its list", d.Name, n.Name, n.PartitionsFrom)
			case !has:
				return fmt.Errorf("batch %s: node %s: partitions_from %q: needs an edge from %s, so that its output exists when this node starts", d.Name, n.Name, n.PartitionsFrom, name)
			}
		default:
			return fmt.Errorf("batch %s: node %s: partitions_from %q: want param:NAME or node:NAME", d.Name, n.Name, n.PartitionsFrom)
		}
	}
	edges := map[[2]string]bool{}
	for i, e := range d.Edges {
		switch {
		case !seen[e.From]:
			return fmt.Errorf("batch %s: edges[%d]: from %q: no such node", d.Name, i, e.From)
		case !seen[e.To]:
			return fmt.Errorf("batch %s: edges[%d]: to %q: no such node", d.Name, i, e.To)
		case e.From == e.To:
			return fmt.Errorf("batch %s: edges[%d]: %s waits for itself", d.Name, i, e.From)
		case edges[[2]string{e.From, e.To}]:
			return fmt.Errorf("batch %s: edges[%d]: %s → %s is given twice", d.Name, i, e.From, e.To)
		}
		switch e.Flag {
		case "", OnSuccess, OnFailure, OnCompletion, Disabled:
		default:
			return fmt.Errorf("batch %s: edges[%d]: flag %q: want %s, %s, %s or %s", d.Name, i, e.Flag, OnSuccess, OnFailure, OnCompletion, Disabled)
		}
		edges[[2]string{e.From, e.To}] = true
	}
	if path := d.cycle(); path != nil {
		return fmt.Errorf("batch %s: %w: %s", d.Name, ErrCycle, strings.Join(path, " → "))
	}
	return nil
}

// cycle returns a cycle's path (its first node repeated at its end), or nil. Disabled edges count: a
// definition must stay a graph whatever is enabled.
func (d Definition) cycle() []string {
	out := map[string][]string{}
	for _, e := range d.Edges {
		out[e.From] = append(out[e.From], e.To)
	}
	const (
		unseen = iota
		open
		closed
	)
	state := map[string]int{}
	var stack []string
	var found []string
	var visit func(n string) bool
	visit = func(n string) bool {
		state[n] = open
		stack = append(stack, n)
		for _, m := range out[n] {
			switch state[m] {
			case open:
				i := slices.Index(stack, m)
				found = append(append([]string{}, stack[i:]...), m)
				return true
			case unseen:
				if visit(m) {
					return true
				}
			}
		}
		stack = stack[:len(stack)-1]
		state[n] = closed
		return false
	}
	for _, n := range d.Nodes {
		if state[n.Name] == unseen && visit(n.Name) {
			return found
		}
	}
	return nil
}

// Same reports whether a and b define the same batch: what the cluster keeps about it (Version, Source)
// is ignored, and so is the difference between an empty and a missing map or list, as JSON has it.
func Same(a, b Definition) bool {
	a.Version, a.Source, b.Version, b.Source = 0, "", 0, ""
	a.Edges, b.Edges = explicitFlags(a.Edges), explicitFlags(b.Edges)
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}

// explicitFlags writes the default flag out, so that "" and "successful" compare equal.
func explicitFlags(edges []Edge) []Edge {
	out := slices.Clone(edges)
	for i := range out {
		if out[i].Flag == "" {
			out[i].Flag = OnSuccess
		}
	}
	return out
}
