package fallback

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"
)

// Kind says what an entry holds.
type Kind string

const (
	KindResult  Kind = "result"  // a wire.Result frame: a run ended
	KindAck     Kind = "ack"     // a wire.Ack frame of a run the client fired itself (local mode)
	KindRequest Kind = "request" // a wire.Request frame: the client's application asked for a run
	KindDeclare Kind = "declare" // the JSON of the []job.Spec the client declares
)

// State is where an entry is in its replay.
type State string

const (
	StateWaiting  State = "waiting"  // not replayed yet
	StateApplied  State = "applied"  // replayed: its effect is recorded
	StateRejected State = "rejected" // can never be applied (say, a request for a job that does not exist); Error says why
)

// Entry is one report a client could not deliver.
type Entry struct {
	ID     string    `bson:"_id" json:"id"`
	Client string    `bson:"client" json:"client"`
	Boot   int64     `bson:"boot" json:"boot"` // start of the client process that queued it, Unix nanoseconds
	Seq    int64     `bson:"seq" json:"seq"`   // 1, 2... in the order that process queued its entries
	At     time.Time `bson:"at" json:"at"`     // when it was queued
	Kind   Kind      `bson:"kind" json:"kind"`
	// ExecID is the execution a result or an ack is about, so that a leader deciding whether a run was
	// lost can see that its report waits here.
	ExecID  string `bson:"exec_id,omitempty" json:"exec_id,omitempty"`
	Payload []byte `bson:"payload" json:"payload"`
	State   State  `bson:"state" json:"state"`

	AppliedAt time.Time `bson:"applied_at,omitempty" json:"applied_at,omitzero"`
	AppliedBy string    `bson:"applied_by,omitempty" json:"applied_by,omitempty"` // server id
	Epoch     int64     `bson:"epoch,omitempty" json:"epoch,omitempty"`           // of the leader that settled it
	Error     string    `bson:"error,omitempty" json:"error,omitempty"`
	// Sig signs what the client wrote (Signature) with its registration key: the queue's database does
	// not authenticate writers, so a secure cluster replays a declaration or a request only when signed.
	Sig string `bson:"sig,omitempty" json:"sig,omitempty"`
}

// Signature is the HMAC, under key, of what the client wrote in e: client, kind, execution, time and
// payload.
func (e *Entry) Signature(key []byte) string {
	m := hmac.New(sha256.New, key)
	for _, part := range [][]byte{[]byte(e.Client), []byte(e.Kind), []byte(e.ExecID), []byte(e.At.UTC().Format(time.RFC3339Nano)), e.Payload} {
		m.Write([]byte(strconv.Itoa(len(part))))
		m.Write([]byte{0})
		m.Write(part)
	}
	return hex.EncodeToString(m.Sum(nil))
}

// SignedBy reports whether e carries a valid signature for key.
func (e *Entry) SignedBy(key []byte) bool {
	return e.Sig != "" && len(key) > 0 && hmac.Equal([]byte(e.Sig), []byte(e.Signature(key)))
}

// EntryID is the id of the seq-th entry queued by the process of client started at boot. The numbers are
// zero-padded so that ids sort like the entries.
func EntryID(client string, boot, seq int64) string {
	return fmt.Sprintf("%s/%020d/%010d", client, boot, seq)
}

// Check reports what is wrong with an entry read from somewhere else (a spool file, the store), or nil.
func (e *Entry) Check() error {
	switch {
	case e.ID == "" || e.Client == "":
		return fmt.Errorf("fallback entry %q: id and client are required", e.ID)
	case e.Seq < 1:
		return fmt.Errorf("fallback entry %s: seq %d is not positive", e.ID, e.Seq)
	case len(e.Payload) == 0:
		return fmt.Errorf("fallback entry %s: payload is empty", e.ID)
	}
	switch e.Kind {
	case KindResult, KindAck, KindRequest, KindDeclare:
	default:
		return fmt.Errorf("fallback entry %s: unknown kind %q", e.ID, e.Kind)
	}
	return nil
}

// Status is what an operator sees of the queue.
type Status struct {
	Waiting  int64 `json:"waiting"`
	Applied  int64 `json:"applied"`
	Rejected int64 `json:"rejected"`
	// OldestWaiting is when the oldest entry still waiting was queued; zero when none waits.
	OldestWaiting time.Time `json:"oldest_waiting,omitzero"`
	// WaitingByClient counts the waiting entries of each client.
	WaitingByClient map[string]int64 `json:"waiting_by_client,omitempty"`
	// LastApplied is when the newest replayed entry was applied, and by which server.
	LastAppliedAt time.Time `json:"last_applied_at,omitzero"`
	LastAppliedBy string    `json:"last_applied_by,omitempty"`
}
