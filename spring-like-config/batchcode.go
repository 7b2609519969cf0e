package springconfig

import (
	"context"
	"fmt"
	"strings"

	"github.com/clover-sched/clover/internal/workflow"
)

// BatchDeclarer is a source of batch declarations: files and batch builders. Register and MergeSet take
// them among their Declarers.
type BatchDeclarer interface {
	BatchDeclarations(ctx context.Context) ([]BatchDeclaration, error)
}

var (
	_ BatchDeclarer = files{}
	_ BatchDeclarer = (*BatchBuilder)(nil)
	_ Declarer      = (*BatchBuilder)(nil)
)

func (f files) BatchDeclarations(ctx context.Context) ([]BatchDeclaration, error) {
	set, err := LoadSet(ctx, f.paths, f.opts)
	return set.Batches, err
}

// BatchBuilder declares one batch in code, beside the jobs it runs:
//
//	b := springconfig.Batch("year-end").Cron("0 0 22 31 12 ?").Frequency("Y")
//	b.Node("extract", "ye-extract").Partitions("A", "B", "C")
//	b.Node("summary", "ye-report").Param("report", "head-office").After("extract")
//	b.Node("alert", "ye-report").AfterOn("failed", "extract")
//
// It is checked as a batch of a file is, when the declarations are read (by Register or MergeSet). A
// client declares batches of its own jobs only (client.DeclareBatch).
type BatchBuilder struct {
	def workflow.Definition
}

// Batch starts the declaration of the batch name.
func Batch(name string) *BatchBuilder { return &BatchBuilder{def: workflow.Definition{Name: name}} }

// Description says what the batch does.
func (b *BatchBuilder) Description(s string) *BatchBuilder { b.def.Description = s; return b }

// Cron starts a run on the schedule (a job's schedule syntax); the run's cycle is the fire time.
func (b *BatchBuilder) Cron(expr string) *BatchBuilder { b.def.Schedule = expr; return b }

// TimeZone is the schedule's time zone.
func (b *BatchBuilder) TimeZone(tz string) *BatchBuilder { b.def.TimeZone = tz; return b }

// Frequency is the frequency of the runs the schedule starts (D, W, M...).
func (b *BatchBuilder) Frequency(f string) *BatchBuilder { b.def.Frequency = f; return b }

// CycleFormat is the Go time layout of the cycles the schedule writes (default 2006-01-02).
func (b *BatchBuilder) CycleFormat(layout string) *BatchBuilder { b.def.CycleFormat = layout; return b }

// RequestedBy names the clients that may start a run (a file's arrival, an application's request).
func (b *BatchBuilder) RequestedBy(clients ...string) *BatchBuilder {
	b.def.RequestedBy = append(b.def.RequestedBy, clients...)
	return b
}

// Edge adds an edge with its control flag: successful (also ""), failed, completed or disabled.
func (b *BatchBuilder) Edge(from, to, flag string) *BatchBuilder {
	b.def.Edges = append(b.def.Edges, workflow.Edge{From: from, To: to, Flag: workflow.Flag(flag)})
	return b
}

// Node adds a node that runs job, and returns it to be described.
func (b *BatchBuilder) Node(name, job string) *NodeBuilder {
	b.def.Nodes = append(b.def.Nodes, workflow.Node{Name: name, Job: job})
	return &NodeBuilder{b: b, i: len(b.def.Nodes) - 1}
}

// Definition returns the batch as declared so far (unchecked).
func (b *BatchBuilder) Definition() workflow.Definition { return b.def }

// Declarations declares no job: a batch runs jobs declared elsewhere.
func (b *BatchBuilder) Declarations(context.Context) ([]Declaration, error) { return nil, nil }

// BatchDeclarations checks the batch and returns it.
func (b *BatchBuilder) BatchDeclarations(context.Context) ([]BatchDeclaration, error) {
	origin := fmt.Sprintf("Batch(%q)", b.def.Name)
	if err := b.def.Validate(); err != nil {
		return nil, Errors{{File: origin, Batch: b.def.Name, Msg: strings.TrimPrefix(err.Error(), "batch "+b.def.Name+": ")}}
	}
	return []BatchDeclaration{{Definition: b.def, Origin: origin}}, nil
}

// NodeBuilder describes one node of a BatchBuilder.
type NodeBuilder struct {
	b *BatchBuilder
	i int
}

func (n *NodeBuilder) node() *workflow.Node { return &n.b.def.Nodes[n.i] }

// Node adds the next node of the batch.
func (n *NodeBuilder) Node(name, job string) *NodeBuilder { return n.b.Node(name, job) }

// After makes the node wait for each of from to succeed (or not run on this frequency).
func (n *NodeBuilder) After(from ...string) *NodeBuilder {
	return n.AfterOn("", from...) // the default flag, as a file writes it
}

// AfterOn makes the node wait for each of from to end as flag says: successful, failed, completed or
// disabled.
func (n *NodeBuilder) AfterOn(flag string, from ...string) *NodeBuilder {
	for _, f := range from {
		n.b.Edge(f, n.node().Name, flag)
	}
	return n
}

// Param sets one of the node's parameters (over its job's).
func (n *NodeBuilder) Param(name, value string) *NodeBuilder {
	if n.node().Params == nil {
		n.node().Params = map[string]string{}
	}
	n.node().Params[name] = value
	return n
}

// Partitions runs the node once per item.
func (n *NodeBuilder) Partitions(items ...string) *NodeBuilder {
	n.node().Partitions = append(n.node().Partitions, items...)
	return n
}

// PartitionsFrom takes the partitions when the node starts: "param:NAME" or "node:NAME".
func (n *NodeBuilder) PartitionsFrom(source string) *NodeBuilder {
	n.node().PartitionsFrom = source
	return n
}

// Frequencies are the run frequencies the node runs on.
func (n *NodeBuilder) Frequencies(f ...string) *NodeBuilder {
	n.node().Frequencies = append(n.node().Frequencies, f...)
	return n
}

// Group names what the node belongs to.
func (n *NodeBuilder) Group(g string) *NodeBuilder { n.node().Group = g; return n }

// Label requires the client that runs the node to carry name=value.
func (n *NodeBuilder) Label(name, value string) *NodeBuilder {
	if n.node().Labels == nil {
		n.node().Labels = map[string]string{}
	}
	n.node().Labels[name] = value
	return n
}

// Lock holds the named lock while each execution of the node runs, exclusively.
func (n *NodeBuilder) Lock(name string) *NodeBuilder {
	n.node().Locks = append(n.node().Locks, workflow.Lock{Name: name})
	return n
}

// SharedLock holds the named lock while each execution runs, shared with other shared holders.
func (n *NodeBuilder) SharedLock(name string) *NodeBuilder {
	n.node().Locks = append(n.node().Locks, workflow.Lock{Name: name, Shared: true})
	return n
}

// Resource holds units of the named resource while each execution runs.
func (n *NodeBuilder) Resource(name string, units int) *NodeBuilder {
	if n.node().Resources == nil {
		n.node().Resources = map[string]int{}
	}
	n.node().Resources[name] = units
	return n
}

// Pre and Post are shell commands run before and after the job's command (a shell job's).
func (n *NodeBuilder) Pre(command string) *NodeBuilder  { n.node().Pre = command; return n }
func (n *NodeBuilder) Post(command string) *NodeBuilder { n.node().Post = command; return n }

// OnStart, OnSuccess and OnFailure set the node's handlers: a command run with the execution (a shell
// job's), and contacts told by mail or webhook.
func (n *NodeBuilder) OnStart(command string, contacts ...string) *NodeBuilder {
	n.node().Handlers.OnStart = workflow.Handler{Command: command, Contacts: contacts}
	return n
}

func (n *NodeBuilder) OnSuccess(command string, contacts ...string) *NodeBuilder {
	n.node().Handlers.OnSuccess = workflow.Handler{Command: command, Contacts: contacts}
	return n
}

func (n *NodeBuilder) OnFailure(command string, contacts ...string) *NodeBuilder {
	n.node().Handlers.OnFailure = workflow.Handler{Command: command, Contacts: contacts}
	return n
}

// Batch returns the batch the node belongs to, to go on with it.
func (n *NodeBuilder) Batch() *BatchBuilder { return n.b }

// BatchDeclarations lets a NodeBuilder, the end of a chain, stand for its batch.
func (n *NodeBuilder) BatchDeclarations(ctx context.Context) ([]BatchDeclaration, error) {
	return n.b.BatchDeclarations(ctx)
}

// Declarations declares no job (see BatchBuilder.Declarations).
func (n *NodeBuilder) Declarations(context.Context) ([]Declaration, error) { return nil, nil }
