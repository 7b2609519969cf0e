package job

import (
	"fmt"
	"time"
)

// State is where an execution is in its life. Terminal states never change again.
type State string

const (
	StatePending   State = "pending"   // fired and recorded, not yet acknowledged by a client
	StateRunning   State = "running"   // a client acknowledged it and runs it
	StateSucceeded State = "succeeded" // the handler returned without error (exit code 0)
	StateFailed    State = "failed"    // the handler failed, or the client refused it
)

// Terminal reports whether s is final.
func (s State) Terminal() bool { return s == StateSucceeded || s == StateFailed }

// Trigger says why an execution exists.
type Trigger string

const (
	TriggerSchedule Trigger = "schedule" // fired on time, or late within the misfire threshold
	TriggerCatchUp  Trigger = "catch-up" // one run standing in for firings missed past the threshold
	TriggerManual   Trigger = "manual"   // asked for through the API or CLI
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

	State      State     `json:"state" bson:"-"`
	Client     string    `json:"client,omitempty" bson:"-"`
	Attempt    int       `json:"attempt,omitempty" bson:"-"`
	AckedAt    time.Time `json:"acked_at,omitzero" bson:"-"`
	FinishedAt time.Time `json:"finished_at,omitzero" bson:"-"`
	Result     *Result   `json:"result,omitempty" bson:"-"`
}

// ExecutionID is the key of the firing of job at scheduled: the same inputs give the same id on every server.
func ExecutionID(jobName string, scheduled time.Time) string {
	return jobName + "@" + scheduled.UTC().Format(time.RFC3339Nano)
}

// ManualExecutionID is the key of a manual trigger; token makes it unique (the API supplies a random one).
func ManualExecutionID(jobName, token string) string {
	return fmt.Sprintf("%s@manual-%s", jobName, token)
}

// Result is what a client reports when a run ends.
type Result struct {
	Status   State    `json:"status" bson:"status"` // StateSucceeded or StateFailed
	ExitCode int      `json:"exit_code" bson:"exit_code"`
	Duration Duration `json:"duration" bson:"duration"`
	Output   string   `json:"output,omitempty" bson:"output,omitempty"` // the tail, at most MaxOutput bytes
	Error    string   `json:"error,omitempty" bson:"error,omitempty"`
}

// MaxOutput bounds the output tail a client keeps and reports.
const MaxOutput = 4096

// EventKind names a fact about an execution.
type EventKind string

const (
	EventAcked    EventKind = "acked"    // a client accepted the execution and started it
	EventFinished EventKind = "finished" // the run ended; Result is set
	// EventLost: the client running it left the cluster without reporting; Result says why. A finished
	// event, if the client reports after all, overrides it.
	EventLost EventKind = "lost"
)

// Event is an append-only fact about an execution. Its ID makes a repeated report a duplicate, so a result
// sent twice (to two servers, or retried) is recorded once.
type Event struct {
	ID      string    `json:"id" bson:"_id"`
	ExecID  string    `json:"exec_id" bson:"exec_id"`
	Job     string    `json:"job" bson:"job"`
	Kind    EventKind `json:"kind" bson:"kind"`
	Attempt int       `json:"attempt" bson:"attempt"`
	Client  string    `json:"client" bson:"client"`
	At      time.Time `json:"at" bson:"at"`
	Result  *Result   `json:"result,omitempty" bson:"result,omitempty"`
}

// EventID is the key of the event of kind for attempt of exec. A finished event is keyed without the
// attempt: an execution ends once.
func EventID(execID string, kind EventKind, attempt int) string {
	if kind == EventFinished {
		return execID + "/" + string(kind)
	}
	return fmt.Sprintf("%s/%s/%d", execID, kind, attempt)
}

// Fold applies events (in any order) to e and sets its derived state.
func (e *Execution) Fold(events []Event) {
	e.State = StatePending
	var lost *Event
	for _, ev := range events {
		if ev.ExecID != e.ID {
			continue
		}
		switch ev.Kind {
		case EventAcked:
			if ev.Attempt >= e.Attempt && e.Result == nil {
				e.Attempt, e.Client, e.AckedAt = ev.Attempt, ev.Client, ev.At
				e.State = StateRunning
			}
		case EventFinished:
			if ev.Result != nil {
				r := *ev.Result
				e.Result, e.FinishedAt, e.Client = &r, ev.At, ev.Client
				e.State = r.Status
				if !e.State.Terminal() {
					e.State = StateFailed
				}
			}
		case EventLost:
			if ev.Result != nil {
				lost = &ev
			}
		}
	}
	if e.Result == nil && lost != nil {
		r := *lost.Result
		r.Status = StateFailed
		e.Result, e.FinishedAt, e.Client, e.State = &r, lost.At, lost.Client, StateFailed
	}
}
