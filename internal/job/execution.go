package job

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// State is where an execution is in its life. Terminal states never change again.
type State string

const (
	StatePending   State = "pending"   // fired and recorded, not yet acknowledged by a client (or waiting for one)
	StateRunning   State = "running"   // a client acknowledged it and runs it
	StateRetrying  State = "retrying"  // a run failed and a retry is due
	StateOrphaned  State = "orphaned"  // its client vanished mid-run and the job is not rerunnable: someone must decide
	StateSucceeded State = "succeeded" // the handler returned without error (exit code 0)
	StateFailed    State = "failed"    // the handler failed (its last run), or the client refused it
	StateSkipped   State = "skipped"   // it never ran: an overlap or misfire policy skipped it
)

// Terminal reports whether s is final.
func (s State) Terminal() bool {
	return s == StateSucceeded || s == StateFailed || s == StateSkipped
}

// Trigger says why an execution exists.
type Trigger string

const (
	TriggerSchedule Trigger = "schedule" // fired on time, or late within the misfire threshold
	TriggerCatchUp  Trigger = "catch-up" // one run standing in for firings missed past the threshold
	TriggerManual   Trigger = "manual"   // asked for through the API or CLI
	TriggerLocal    Trigger = "local"    // fired by the client itself (a job in local mode)
	TriggerRequest  Trigger = "request"  // asked for by a client's application (Client.RequestRun)
	TriggerBatch    Trigger = "batch"    // a node (or a node's partition) of a batch run
)

// Execution is one firing of a job. The stored document holds the fields up to Params; the rest is folded
// from the execution's Events when it is read (see Fold).
type Execution struct {
	ID          string            `json:"id" bson:"_id"`
	Job         string            `json:"job" bson:"job"`
	ScheduledAt time.Time         `json:"scheduled_at" bson:"scheduled_at"`
	FiredAt     time.Time         `json:"fired_at" bson:"fired_at"`
	Trigger     Trigger           `json:"trigger" bson:"trigger"`
	Epoch       int64             `json:"epoch" bson:"epoch"`   // leadership term that fired it
	Server      string            `json:"server" bson:"server"` // server that fired it
	Handler     string            `json:"handler" bson:"handler"`
	Params      map[string]string `json:"params,omitempty" bson:"params,omitempty"`
	Timeout     Duration          `json:"timeout,omitempty" bson:"timeout,omitempty"`
	// MaxRuns is how many times it may run (1 + retries); 0 means 1.
	MaxRuns    int  `json:"max_runs,omitempty" bson:"max_runs,omitempty"`
	Rerunnable bool `json:"rerunnable,omitempty" bson:"rerunnable,omitempty"`
	// Identity: what the execution is an instance of, in typed fields (stored and indexed) so that nothing
	// parses ids to find it. Firing is the id of the firing it belongs to: its own id, or the id shared by
	// the executions of a sharded firing (empty in records written before it existed; see FiringOf).
	Firing string `json:"firing,omitempty" bson:"firing,omitempty"`
	// Shard is its partition of a sharded firing: index, count (Total) and key (Item).
	Shard *Shard `json:"shard,omitempty" bson:"shard,omitempty"`
	// BatchRun, BatchNode, BatchPartition and BatchRound say what a batch workflow's execution runs: the
	// batch run (batch/cycle), the node of its graph, the node's partition ("" if it has none) and the
	// run's round (1, then one more per rerun or reset).
	BatchRun       string `json:"batch_run,omitempty" bson:"batch_run,omitempty"`
	BatchNode      string `json:"batch_node,omitempty" bson:"batch_node,omitempty"`
	BatchPartition string `json:"batch_partition,omitempty" bson:"batch_partition,omitempty"`
	BatchRound     int    `json:"batch_round,omitempty" bson:"batch_round,omitempty"`
	// Labels are what a client must carry to run it besides its job's routing labels (a batch node's).
	Labels map[string]string `json:"labels,omitempty" bson:"labels,omitempty"`
	// Missed is how many fire times this execution stands for besides its own (a catch-up run, or a
	// skipped record of a misfire).
	Missed int `json:"missed,omitempty" bson:"missed,omitempty"`
	// Width is the resource width it holds on its client (Routing.Width of its job).
	Width int `json:"width,omitempty" bson:"width,omitempty"`
	// JobVersion is the version of its job's definition it was fired with: the revision it runs (see
	// `clover job history`); 0 for a client's local run and records from before it existed.
	JobVersion int64 `json:"job_version,omitempty" bson:"job_version,omitempty"`

	State      State     `json:"state" bson:"-"`
	Client     string    `json:"client,omitempty" bson:"-"`
	Attempt    int       `json:"attempt,omitempty" bson:"-"` // dispatches so far; each to one client
	Run        int       `json:"run,omitempty" bson:"-"`     // the run now or last under way: 1, then 2 for the first retry...
	Overdue    bool      `json:"overdue,omitempty" bson:"-"`
	Runs       []Event   `json:"runs,omitempty" bson:"-"` // the outcome of every run that ended, oldest first
	AckedAt    time.Time `json:"acked_at,omitzero" bson:"-"`
	FinishedAt time.Time `json:"finished_at,omitzero" bson:"-"`
	Result     *Result   `json:"result,omitempty" bson:"-"`
}

// ExecutionID is the key of the firing of job at scheduled: the same inputs give the same id on every server.
func ExecutionID(jobName string, scheduled time.Time) string {
	return jobName + "@" + scheduled.UTC().Format(time.RFC3339Nano)
}

// LocalExecutionID is the key of the firing at scheduled of a local job by client: each client that
// declares a local job fires its own, and none is ever the same execution as a leader's firing.
func LocalExecutionID(jobName string, scheduled time.Time, client string) string {
	return ExecutionID(jobName, scheduled) + "@" + client
}

// IsLocalOf reports whether id is the key of a firing client made itself (LocalExecutionID): such a run
// was never dispatched, and only that client may report it.
func IsLocalOf(id, client string) bool {
	fire, ok := strings.CutSuffix(id, "@"+client)
	if !ok {
		return false
	}
	name, at, ok := strings.Cut(fire, "@")
	if !ok || ValidateName(name) != nil {
		return false
	}
	_, err := time.Parse(time.RFC3339Nano, at)
	return err == nil
}

// BatchExecutionID is the key of a batch run's node (or one of its partitions) in a round: run/node, or
// run/node/partition, and ~r<round> after it past the first round. The same on every server, so that a
// new leader that dispatches it again meets the first dispatch's key.
func BatchExecutionID(run, node, partition string, round int) string {
	id := run + "/" + node
	if partition != "" {
		id += "/" + partition
	}
	if round > 1 {
		id += fmt.Sprintf("~r%d", round)
	}
	return id
}

// ShardExecutionID is the key of shard index of the firing keyed fireID.
func ShardExecutionID(fireID string, index int) string {
	return fmt.Sprintf("%s~%d", fireID, index)
}

// Shard says which part of a sharded firing an execution is.
type Shard struct {
	Index int    `json:"index" bson:"index"` // 0-based
	Total int    `json:"total" bson:"total"`
	Item  string `json:"item,omitempty" bson:"item,omitempty"`
}

// FiringOf is the id of the firing e belongs to. Records written before executions carried Firing name
// it only in their id (a shard's is <firing>~<index>).
func FiringOf(e Execution) string {
	switch {
	case e.Firing != "":
		return e.Firing
	case e.Shard != nil:
		return strings.TrimSuffix(e.ID, fmt.Sprintf("~%d", e.Shard.Index))
	}
	return e.ID
}

// RunLimit is MaxRuns with its default.
func (e *Execution) RunLimit() int { return max(e.MaxRuns, 1) }

// ManualExecutionID is the key of a manual trigger; token makes it unique (the API supplies a random one).
func ManualExecutionID(jobName, token string) string {
	return fmt.Sprintf("%s@manual-%s", jobName, token)
}

// RequestExecutionID is the key of the run a client's application asked for with request id reqID: the
// same request, sent twice or replayed from the fallback queue, is the same execution.
func RequestExecutionID(jobName, reqID string) string {
	return fmt.Sprintf("%s@request-%s", jobName, reqID)
}

// Result is what a client reports when a run ends.
type Result struct {
	Status   State    `json:"status" bson:"status"` // StateSucceeded or StateFailed
	ExitCode int      `json:"exit_code" bson:"exit_code"`
	Duration Duration `json:"duration" bson:"duration"`
	Output   string   `json:"output,omitempty" bson:"output,omitempty"` // the tail, at most MaxOutput bytes
	// OutputBytes is how many bytes of output the run wrote: Output is the last of them.
	OutputBytes int64  `json:"output_bytes,omitempty" bson:"output_bytes,omitempty"`
	Error       string `json:"error,omitempty" bson:"error,omitempty"`
	// Final says no retry may follow, whatever the job's retry policy: the run was stopped, or the leader
	// gave it up without knowing whether it is still running somewhere.
	Final bool `json:"final,omitempty" bson:"final,omitempty"`
}

// MaxOutput bounds the output tail a client keeps and reports.
const MaxOutput = 4096

// EventKind names a fact about an execution.
type EventKind string

const (
	EventAcked    EventKind = "acked"    // a client accepted the execution and started it (attempt)
	EventFinished EventKind = "finished" // a run ended; Result is set (one per run)
	// EventLost: the client running an attempt left or let its lease lapse. With a Result (the job is not
	// rerunnable and is given up), it fails the run unless the client reports after all; without one, the
	// execution is dispatched again.
	EventLost EventKind = "lost"
	// EventOrphaned: the client running an attempt vanished and the job is not rerunnable: the execution
	// waits for the client to report or for an operator to decide.
	EventOrphaned EventKind = "orphaned"
	EventRerun    EventKind = "rerun"    // an operator chose to run an orphaned execution again
	EventResumed  EventKind = "resumed"  // the client of an orphaned attempt showed it still runs it
	EventOverdue  EventKind = "overdue"  // the run lasts longer than its job expects (an alarm only)
	EventStopping EventKind = "stopping" // someone asked for the run to be stopped
)

// Event is an append-only fact about an execution. Its ID makes a repeated report a duplicate, so a result
// sent twice (to two servers, or retried) is recorded once.
type Event struct {
	ID      string    `json:"id" bson:"_id"`
	ExecID  string    `json:"exec_id" bson:"exec_id"`
	Job     string    `json:"job" bson:"job"`
	Kind    EventKind `json:"kind" bson:"kind"`
	Attempt int       `json:"attempt" bson:"attempt"`
	Run     int       `json:"run,omitempty" bson:"run,omitempty"` // 0 means 1
	Client  string    `json:"client" bson:"client"`
	At      time.Time `json:"at" bson:"at"`
	Result  *Result   `json:"result,omitempty" bson:"result,omitempty"`
	Note    string    `json:"note,omitempty" bson:"note,omitempty"` // who decided, and why
}

// EventID is the key of the event of kind for attempt n of exec. A finished event is keyed by run instead
// (n is the run): each run ends once, whoever reports it.
func EventID(execID string, kind EventKind, n int) string {
	if kind == EventFinished {
		if n <= 1 {
			return execID + "/" + string(kind)
		}
		return fmt.Sprintf("%s/%s/r%d", execID, kind, n)
	}
	return fmt.Sprintf("%s/%s/%d", execID, kind, n)
}

// kindOrder orders the events of one attempt by cause and effect: the ack first, the end last, and the
// leader's decisions in between in the order it took them.
var kindOrder = map[EventKind]int{
	EventAcked: 0, EventStopping: 1, EventOverdue: 1, EventLost: 1, EventOrphaned: 1, EventResumed: 1, EventRerun: 1, EventFinished: 2,
}

// SeqEventID is the key of an event of kind that may happen more than once in an attempt (orphaned and
// resumed again): at, the leader's clock, tells them apart and orders them.
func SeqEventID(execID string, kind EventKind, attempt int, at time.Time) string {
	return fmt.Sprintf("%s/%s/%d/%d", execID, kind, attempt, at.UnixNano())
}

// Fold applies events (in any order) to e and sets its derived state.
//
// Events are applied by attempt, and within one attempt by cause and effect (ack, then lost or orphaned,
// then resumed or rerun, then finished): every step the leader takes that changes an execution's course
// (a retry, a dispatch after a lost client, a rerun) is a new attempt, so this order is the order in which
// things happened, whatever the clocks of the machines that recorded them say.
func (e *Execution) Fold(events []Event) {
	mine := make([]Event, 0, len(events))
	for _, ev := range events {
		if ev.ExecID == e.ID {
			mine = append(mine, ev)
		}
	}
	slices.SortStableFunc(mine, func(a, b Event) int {
		if c := cmp.Compare(a.Attempt, b.Attempt); c != 0 {
			return c
		}
		if c := cmp.Compare(kindOrder[a.Kind], kindOrder[b.Kind]); c != 0 {
			return c
		}
		if c := cmp.Compare(max(a.Run, 1), max(b.Run, 1)); c != 0 {
			return c
		}
		return a.At.Compare(b.At)
	})
	e.State, e.Run, e.Runs, e.Overdue = StatePending, 1, nil, false
	ended := map[int]bool{}
	stopped := map[int]bool{} // runs someone asked to stop: their failure is final
	var lost *Event           // a lost event with a result: the run fails unless it is reported after all
	for _, ev := range mine {
		run := max(ev.Run, 1)
		if e.State.Terminal() && ev.Kind != EventFinished {
			if ev.Kind == EventAcked && ev.Attempt >= e.Attempt && e.AckedAt.IsZero() {
				e.Attempt, e.AckedAt = ev.Attempt, ev.At // an ack read after its result: shown, changes nothing
			}
			continue
		}
		switch ev.Kind {
		case EventAcked:
			if run >= e.Run && ev.Attempt >= e.Attempt && !ended[run] {
				e.Attempt, e.Run, e.Client, e.AckedAt = ev.Attempt, run, ev.Client, ev.At
				e.State, e.Overdue, lost = StateRunning, false, nil
			}
		case EventLost:
			if run == e.Run && !ended[run] {
				e.Attempt = max(e.Attempt, ev.Attempt)
				if ev.Result != nil {
					lost = &ev
				} else if e.State == StateRunning {
					e.State = StatePending
				}
			}
		case EventOrphaned:
			if run == e.Run && !ended[run] {
				e.Attempt, e.State = max(e.Attempt, ev.Attempt), StateOrphaned
				if ev.Client != "" {
					e.Client = ev.Client // the client to go and ask what happened
				}
			}
		case EventResumed:
			if e.State == StateOrphaned {
				e.State = StateRunning
			}
		case EventRerun:
			if e.State == StateOrphaned {
				e.State = StatePending
			}
		case EventStopping:
			stopped[run] = true
		case EventOverdue:
			if e.State == StateRunning {
				e.Overdue = true
			}
		case EventFinished:
			if ev.Result == nil || ended[run] {
				continue
			}
			ended[run] = true
			r := *ev.Result
			if r.Status != StateSucceeded && r.Status != StateSkipped {
				r.Status = StateFailed
			}
			e.Runs = append(e.Runs, ev)
			e.Result, e.FinishedAt, e.Client, lost = &r, ev.At, ev.Client, nil
			e.Attempt = max(e.Attempt, ev.Attempt)
			switch {
			case run < e.Run:
				// A late report of an earlier run: a later one is already under way.
			case r.Status != StateFailed || r.Final || stopped[run] || run >= e.RunLimit():
				e.State, e.Run = r.Status, run
			default:
				e.State, e.Run = StateRetrying, run+1
			}
		}
	}
	if lost != nil && !e.State.Terminal() && e.State != StateRetrying {
		r := *lost.Result
		r.Status = StateFailed
		e.Result, e.FinishedAt, e.Client, e.State = &r, lost.At, lost.Client, StateFailed
	}
}

// MaxError bounds a result's error message as stored.
const MaxError = 4096

// Bounded is r with its output cut to its last MaxOutput bytes and its error to its first MaxError, at
// UTF-8 boundaries: what a server stores whatever a client sent.
func (r Result) Bounded() Result {
	r.OutputBytes = max(r.OutputBytes, int64(len(r.Output)))
	if len(r.Output) > MaxOutput {
		out := r.Output[len(r.Output)-MaxOutput:]
		for len(out) > 0 && !utf8.RuneStart(out[0]) {
			out = out[1:]
		}
		r.Output = out
	}
	if len(r.Error) > MaxError {
		e := r.Error[:MaxError]
		for len(e) > 0 && !utf8.ValidString(e) {
			e = e[:len(e)-1]
		}
		r.Error = e + " [cut]"
	}
	return r
}
