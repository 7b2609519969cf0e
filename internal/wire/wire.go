package wire

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/clover-sched/clover/internal/job"
)

const (
	// Version is the frame version this package writes and reads.
	Version = 1
	// MaxFrame bounds a whole frame, header included, in bytes.
	MaxFrame = 1 << 20
	// MaxDecoded bounds the JSON in a frame, in bytes, after decompression.
	MaxDecoded = 4 << 20

	headerLen = 5 // magic, version, kind
)

var magic = []byte("CLV")

// Kind says which message a frame holds.
type Kind uint8

const (
	KindDispatch  Kind = 1 // leader -> client: run this execution
	KindAck       Kind = 2 // client -> any server: accepted (and started) or refused
	KindResult    Kind = 3 // client -> any server: the run ended
	KindReceipt   Kind = 4 // server -> client: these reports are recorded; follower -> leader: these results are
	KindHeartbeat Kind = 5 // client -> any server: alive, and what it runs (renews the runs' leases)
	KindStop      Kind = 6 // leader -> client: stop this run
	KindRequest   Kind = 7 // client -> any server: run this job now, for the client's application
	KindOutputAsk Kind = 8 // server -> client: send me this run's output from this offset
	KindOutput    Kind = 9 // client -> the server that asked: the run's output
)

func (k Kind) String() string {
	switch k {
	case KindDispatch:
		return "dispatch"
	case KindAck:
		return "ack"
	case KindResult:
		return "result"
	case KindReceipt:
		return "receipt"
	case KindHeartbeat:
		return "heartbeat"
	case KindStop:
		return "stop"
	case KindRequest:
		return "request"
	case KindOutputAsk:
		return "output_ask"
	case KindOutput:
		return "output"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Sentinel errors, wrapped by *DecodeError and by Encode's errors.
var (
	ErrShort    = errors.New("wire: frame too short")
	ErrMagic    = errors.New("wire: not a Clover frame")
	ErrVersion  = errors.New("wire: unsupported version")
	ErrKind     = errors.New("wire: unknown kind")
	ErrTooLarge = errors.New("wire: too large")
	ErrCorrupt  = errors.New("wire: corrupt compressed payload")
	ErrPayload  = errors.New("wire: invalid message") // bad JSON or a required field missing
)

// DecodeError says why a frame was rejected.
type DecodeError struct {
	Err    error  // one of the sentinels
	Detail string // what is wrong, for people: "frame of 3000000 bytes exceeds 1048576"
}

func (e *DecodeError) Error() string { return "wire: " + e.Detail }
func (e *DecodeError) Unwrap() error { return e.Err }

// Reason names the kind of fault in a fixed, short form fit for a metric label: "short", "magic",
// "version", "kind", "too_large", "corrupt" or "payload".
func (e *DecodeError) Reason() string {
	switch e.Err {
	case ErrShort:
		return "short"
	case ErrMagic:
		return "magic"
	case ErrVersion:
		return "version"
	case ErrKind:
		return "kind"
	case ErrTooLarge:
		return "too_large"
	case ErrCorrupt:
		return "corrupt"
	}
	return "payload"
}

func fail(sentinel error, format string, args ...any) *DecodeError {
	return &DecodeError{Err: sentinel, Detail: fmt.Sprintf(format, args...)}
}

// Header is carried by every message.
type Header struct {
	From   string    `json:"from"`            // the id of the server or client that wrote it; required
	Epoch  int64     `json:"epoch,omitempty"` // leadership epoch the message belongs to; 0 when not leader-bound
	SentAt time.Time `json:"sent_at"`
	// Via is the id of the server that relayed a client's report to the leader (see Relay); empty on the
	// original. From stays the client's id.
	Via string `json:"via,omitempty"`
}

func (h *Header) header() *Header { return h }

// Message is one of *Dispatch, *Ack, *Result, *Receipt, *Heartbeat, *Stop, *Request, *OutputAsk and
// *Output.
type Message interface {
	Kind() Kind
	header() *Header
}

// HeaderOf returns m's header, for code that handles every kind alike (fencing on Epoch, logging From).
func HeaderOf(m Message) Header { return *m.header() }

// From returns the id of m's writer.
func From(m Message) string { return m.header().From }

// Via returns the id of the server that relayed m, or "" if m came from its writer.
func Via(m Message) string { return m.header().Via }

// Relay encodes a copy of m marked as relayed by server via: a follower passes a client's Ack or Result on
// to the leader this way, so the leader knows the follower already recorded it (and sent the receipt), and
// a relayed frame is never relayed again. m itself is not changed.
func Relay(m Message, via string) ([]byte, error) {
	if !known(m) {
		return nil, &encodeError{fmt.Sprintf("wire: cannot relay %T", m), ErrKind}
	}
	var c Message
	switch m := m.(type) {
	case *Dispatch:
		x := *m
		c = &x
	case *Ack:
		x := *m
		c = &x
	case *Result:
		x := *m
		c = &x
	case *Receipt:
		x := *m
		c = &x
	case *Heartbeat:
		x := *m
		c = &x
	case *Stop:
		x := *m
		c = &x
	case *Request:
		x := *m
		c = &x
	case *OutputAsk:
		x := *m
		c = &x
	case *Output:
		x := *m
		c = &x
	default: // a kind added to known but not here: refuse it rather than crash the server relaying it
		return nil, &encodeError{fmt.Sprintf("wire: cannot relay %T", m), ErrKind}
	}
	c.header().Via = via
	return Encode(c)
}

// Dispatch asks a client to run an execution. Required: From, ExecID, Job, Handler and AcceptBy; Timeout
// and Attempt not negative. Epoch is not checked here: the client fences on it (an epoch older than the
// newest it has seen, 0 included, is stale).
type Dispatch struct {
	Header
	ExecID      string            `json:"exec_id"`
	Job         string            `json:"job"`
	Handler     string            `json:"handler"`
	Params      map[string]string `json:"params,omitempty"` // nil when empty
	Timeout     job.Duration      `json:"timeout,omitempty"`
	ScheduledAt time.Time         `json:"scheduled_at"`
	Attempt     int               `json:"attempt"`
	Run         int               `json:"run,omitempty"` // 1, then 2 for the first retry...; 0 means 1
	Trigger     job.Trigger       `json:"trigger,omitempty"`
	Width       int               `json:"width,omitempty"` // resource width the run takes on the client
	Shard       *job.Shard        `json:"shard,omitempty"`
	// AcceptBy is the last instant the client may start the run: after it the leader may have given the
	// execution to another client, so the client refuses instead.
	AcceptBy time.Time `json:"accept_by"`
	// Token proves that this run was sent to this client (keyring.RunToken); the client returns it with
	// its ack, result and heartbeats, and servers drop reports of a run without its token. Empty in
	// insecure mode.
	Token string `json:"token,omitempty"`
}

// Ack reports that a client accepted (and started) an execution, or refused it. Required: From, ExecID,
// Job, At; Attempt not negative.
type Ack struct {
	Header
	ExecID   string    `json:"exec_id"`
	Job      string    `json:"job"`
	Attempt  int       `json:"attempt"`
	Run      int       `json:"run,omitempty"`
	Accepted bool      `json:"accepted"`
	Code     string    `json:"code,omitempty"`   // why it was refused, for the leader: one of the Refuse* codes
	Reason   string    `json:"reason,omitempty"` // why it was refused, for people
	At       time.Time `json:"at"`
	// Local is the execution the client fired itself (a job in local mode); servers record it before the
	// ack. Its ID must be ExecID.
	Local *job.Execution `json:"local,omitempty"`
	Token string         `json:"token,omitempty"` // the dispatch's (see Dispatch.Token)
}

// Refusal codes. Only RefuseLate leaves the leader unsure whether the client ran the execution (it may
// have, and forgotten since); the others say it did not.
const (
	RefuseLate      = "late"       // the dispatch arrived after its accept-by
	RefuseBusy      = "busy"       // the client is at capacity
	RefuseNoHandler = "no_handler" // the client does not serve the job
)

// Result reports that a run ended. Required: From, ExecID, Job; Attempt not negative.
type Result struct {
	Header
	ExecID     string     `json:"exec_id"`
	Job        string     `json:"job"`
	Attempt    int        `json:"attempt"`
	Run        int        `json:"run,omitempty"`
	Result     job.Result `json:"result"`
	StartedAt  time.Time  `json:"started_at"`
	FinishedAt time.Time  `json:"finished_at"`
	Token      string     `json:"token,omitempty"` // the dispatch's (see Dispatch.Token)
}

// Receipt says that reports are durably recorded. A server sends one to the client that wrote them: the
// results (ExecIDs), the acks (Acked) and the run requests (Requests) it names are recorded, so the client
// stops re-sending them and drops them from its fallback queue and journal. A follower also sends one to
// the leader, naming the results it recorded (ExecIDs, ExecRuns), so that the leader can forget those
// executions without waiting for the store. Required: From, and at least one id in one of the three
// lists, none empty; ExecRuns and AckedRuns, when set, as long as their lists.
type Receipt struct {
	Header
	ExecIDs []string `json:"exec_ids"`
	Acked   []string `json:"acked,omitempty"`
	// ExecRuns and AckedRuns, when set, give the run of each id in ExecIDs and Acked (same length), so that
	// a late receipt of one run does not confirm another's report.
	ExecRuns  []int `json:"exec_runs,omitempty"`
	AckedRuns []int `json:"acked_runs,omitempty"`
	// Requests are the ids of run requests whose execution is recorded (or that were refused for good).
	Requests []string `json:"requests,omitempty"`
}

// Heartbeat tells the leader (through any server) that a client is alive and which executions it runs:
// each listed run's lease is renewed. Required: From; Capacity not negative, no empty id.
type Heartbeat struct {
	Header
	Running  []string `json:"running,omitempty"` // ids of the executions running now
	Runs     []int    `json:"runs,omitempty"`    // when set, the run of each of Running (same length)
	Tokens   []string `json:"tokens,omitempty"`  // when set, the run token of each of Running (same length)
	Capacity int      `json:"capacity"`          // executions it runs at once at most
	// Ended lists runs that ended here whose result no server has confirmed yet (EndedRuns: their runs,
	// same length): the client still answers for them, so their leases hold, but they take no slot.
	Ended     []string `json:"ended,omitempty"`
	EndedRuns []int    `json:"ended_runs,omitempty"`
	// Progress is what handlers of running runs last reported of their progress (only runs that did).
	Progress []Progress `json:"progress,omitempty"`
}

// Progress is how far a run has got, as its handler says.
type Progress struct {
	ExecID  string    `json:"exec_id"`
	Run     int       `json:"run,omitempty"`
	Percent int       `json:"percent"` // 0-100
	Message string    `json:"message,omitempty"`
	At      time.Time `json:"at"`
}

// MaxProgressMessage bounds a progress message, in bytes; a client cuts longer ones.
const MaxProgressMessage = 200

// EndedRunOf returns the run of Ended[i]: EndedRuns[i] when given, else 1.
func (h *Heartbeat) EndedRunOf(i int) int {
	if i < len(h.EndedRuns) {
		return max(h.EndedRuns[i], 1)
	}
	return 1
}

// RunOf returns the run of Running[i]: Runs[i] when given, else 1.
func (h *Heartbeat) RunOf(i int) int {
	if i < len(h.Runs) {
		return max(h.Runs[i], 1)
	}
	return 1
}

// TokenOf is the run token of Running[i] ("" when not given).
func (h *Heartbeat) TokenOf(i int) string {
	if i < len(h.Tokens) {
		return h.Tokens[i]
	}
	return ""
}

// Stop asks a client to stop a run: it kills the run (a shell job's whole process group) and reports it
// failed. Required: From, ExecID.
type Stop struct {
	Header
	ExecID string `json:"exec_id"`
	Reason string `json:"reason,omitempty"`
}

// Request asks the cluster to run a job now, on behalf of the client's application: a manual trigger that
// does not go through the API. ReqID is the client's unique id for it; the leader makes the execution id
// from it, so that a request sent twice (re-sent, or replayed from the fallback queue) runs once.
// Required: From, ReqID, Job, At.
type Request struct {
	Header
	ReqID  string            `json:"req_id"`
	Job    string            `json:"job,omitempty"`
	Params map[string]string `json:"params,omitempty"`
	At     time.Time         `json:"at"` // when the application asked
	// Batch, Cycle and Frequency ask for a run of a batch instead of a job (a file that arrived, an
	// application's request); the batch must list the client in requested_by. Note says why, for people.
	Batch     string `json:"batch,omitempty"`
	Cycle     string `json:"cycle,omitempty"`
	Frequency string `json:"frequency,omitempty"`
	Note      string `json:"note,omitempty"`
}

func (*Dispatch) Kind() Kind  { return KindDispatch }
func (*Ack) Kind() Kind       { return KindAck }
func (*Result) Kind() Kind    { return KindResult }
func (*Receipt) Kind() Kind   { return KindReceipt }
func (*Heartbeat) Kind() Kind { return KindHeartbeat }
func (*Stop) Kind() Kind      { return KindStop }
func (*Request) Kind() Kind   { return KindRequest }

var (
	_ Message = (*Dispatch)(nil)
	_ Message = (*Ack)(nil)
	_ Message = (*Result)(nil)
	_ Message = (*Receipt)(nil)
	_ Message = (*Heartbeat)(nil)
	_ Message = (*Stop)(nil)
	_ Message = (*Request)(nil)
)
