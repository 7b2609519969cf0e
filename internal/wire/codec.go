package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/golang/snappy"
)

// poolKeep bounds the buffers kept for reuse: a rare large frame's is left to the collector.
const poolKeep = 64 << 10

var (
	encodeBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}
	decodeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}
)

func putEncodeBuf(b *bytes.Buffer) {
	if b.Cap() <= poolKeep {
		b.Reset()
		encodeBufs.Put(b)
	}
}

func putDecodeBuf(b *[]byte) {
	if cap(*b) <= poolKeep {
		decodeBufs.Put(b)
	}
}

// newMessage returns an empty message of kind k, or nil for an unknown kind.
func newMessage(k Kind) Message {
	switch k {
	case KindDispatch:
		return new(Dispatch)
	case KindAck:
		return new(Ack)
	case KindResult:
		return new(Result)
	case KindReceipt:
		return new(Receipt)
	case KindHeartbeat:
		return new(Heartbeat)
	case KindStop:
		return new(Stop)
	case KindRequest:
		return new(Request)
	case KindOutputAsk:
		return new(OutputAsk)
	case KindOutput:
		return new(Output)
	}
	return nil
}

// Encode validates m and writes it as a frame. Its errors wrap ErrKind (m is nil or not a type of this
// package), ErrPayload (a required field is missing, or a time cannot be written as RFC 3339) or
// ErrTooLarge (the frame would exceed MaxFrame, or its JSON MaxDecoded).
func Encode(m Message) ([]byte, error) {
	if !known(m) {
		return nil, &encodeError{fmt.Sprintf("wire: cannot encode %T", m), ErrKind}
	}
	if reason := validate(m); reason != "" {
		return nil, &encodeError{fmt.Sprintf("wire: encode %s: %s", m.Kind(), reason), ErrPayload}
	}
	// The JSON goes to a pooled buffer (json.Marshal would copy it out of its own): only the frame is
	// allocated. An Encoder writes what Marshal does (HTML escaped), and a newline, dropped here.
	buf := encodeBufs.Get().(*bytes.Buffer)
	defer putEncodeBuf(buf)
	if err := json.NewEncoder(buf).Encode(m); err != nil {
		return nil, &encodeError{fmt.Sprintf("wire: encode %s: %v", m.Kind(), err), ErrPayload}
	}
	payload := bytes.TrimSuffix(buf.Bytes(), []byte{'\n'})
	if len(payload) > MaxDecoded {
		return nil, &encodeError{fmt.Sprintf("wire: encode %s: JSON of %d bytes exceeds %d", m.Kind(), len(payload), MaxDecoded), ErrTooLarge}
	}
	frame := make([]byte, headerLen+snappy.MaxEncodedLen(len(payload)))
	copy(frame, magic)
	frame[3], frame[4] = Version, byte(m.Kind())
	n := len(snappy.Encode(frame[headerLen:], payload))
	frame = frame[:headerLen+n]
	if len(frame) > MaxFrame {
		return nil, &encodeError{fmt.Sprintf("wire: encode %s: frame of %d bytes exceeds %d", m.Kind(), len(frame), MaxFrame), ErrTooLarge}
	}
	return frame, nil
}

type encodeError struct {
	msg string
	err error // a sentinel
}

func (e *encodeError) Error() string { return e.msg }

func (e *encodeError) Unwrap() error { return e.err }

// known reports whether m is a non-nil message of this package's types (a type elsewhere could embed
// Header and so satisfy Message).
func known(m Message) bool {
	switch m := m.(type) {
	case *Dispatch:
		return m != nil
	case *Ack:
		return m != nil
	case *Result:
		return m != nil
	case *Receipt:
		return m != nil
	case *Heartbeat:
		return m != nil
	case *Stop:
		return m != nil
	case *Request:
		return m != nil
	case *OutputAsk:
		return m != nil
	case *Output:
		return m != nil
	}
	return false
}

// Peek returns the kind of a frame after checking its size and header, without decompressing it.
func Peek(frame []byte) (Kind, error) {
	switch {
	case len(frame) > MaxFrame:
		return 0, fail(ErrTooLarge, "frame of %d bytes exceeds %d", len(frame), MaxFrame)
	case len(frame) < headerLen:
		return 0, fail(ErrShort, "frame of %d bytes is shorter than the %d-byte header", len(frame), headerLen)
	case !bytes.Equal(frame[:3], magic):
		return 0, fail(ErrMagic, "frame starts with %q, not %q", frame[:3], magic)
	case frame[3] != Version:
		return 0, fail(ErrVersion, "version %d is not supported (want %d)", frame[3], Version)
	}
	k := Kind(frame[4])
	if newMessage(k) == nil {
		return 0, fail(ErrKind, "unknown kind %d", frame[4])
	}
	return k, nil
}

// Decode reads a frame: one of this package's message types. Errors are *DecodeError.
func Decode(frame []byte) (Message, error) {
	k, err := Peek(frame)
	if err != nil {
		return nil, err
	}
	block := frame[headerLen:]
	n, err := snappy.DecodedLen(block)
	switch {
	case errors.Is(err, snappy.ErrTooLarge):
		return nil, fail(ErrTooLarge, "%s payload: %v", k, err)
	case err != nil:
		return nil, fail(ErrCorrupt, "%s payload: %v", k, err)
	}
	if n > MaxDecoded {
		return nil, fail(ErrTooLarge, "%s payload decodes to %d bytes, exceeding %d", k, n, MaxDecoded)
	}
	// The decompressed JSON lives in a pooled buffer: json.Unmarshal copies what it keeps (strings,
	// []byte, RawMessage), so nothing decoded refers to it.
	dbuf := decodeBufs.Get().(*[]byte)
	defer putDecodeBuf(dbuf)
	if cap(*dbuf) < n {
		*dbuf = make([]byte, n)
	}
	payload, err := snappy.Decode((*dbuf)[:n], block)
	if err != nil {
		return nil, fail(ErrCorrupt, "%s payload: %v", k, err)
	}
	m := newMessage(k)
	if err := json.Unmarshal(payload, m); err != nil {
		return nil, fail(ErrPayload, "%s payload: %v", k, err)
	}
	normalize(m)
	if reason := validate(m); reason != "" {
		return nil, fail(ErrPayload, "%s: %s", k, reason)
	}
	return m, nil
}

// normalize makes empty collections nil, so a decoded message encodes and decodes to itself.
func normalize(m Message) {
	switch m := m.(type) {
	case *Dispatch:
		if len(m.Params) == 0 {
			m.Params = nil
		}
	case *Heartbeat:
		if len(m.Running) == 0 {
			m.Running = nil
		}
		if len(m.Runs) == 0 {
			m.Runs = nil
		}
		if len(m.Ended) == 0 {
			m.Ended = nil
		}
		if len(m.EndedRuns) == 0 {
			m.EndedRuns = nil
		}
		if len(m.Progress) == 0 {
			m.Progress = nil
		}
	case *Receipt:
		if len(m.ExecIDs) == 0 {
			m.ExecIDs = nil
		}
		if len(m.Acked) == 0 {
			m.Acked = nil
		}
		if len(m.ExecRuns) == 0 {
			m.ExecRuns = nil
		}
		if len(m.AckedRuns) == 0 {
			m.AckedRuns = nil
		}
		if len(m.Requests) == 0 {
			m.Requests = nil
		}
	case *Request:
		if len(m.Params) == 0 {
			m.Params = nil
		}
	case *Output:
		if len(m.Data) == 0 {
			m.Data = nil
		}
	}
}

// validate returns what is wrong with m, or "".
func validate(m Message) string {
	h := m.header()
	switch {
	case h.From == "":
		return "from is required"
	case h.Epoch < 0:
		return fmt.Sprintf("epoch %d is negative", h.Epoch)
	}
	switch m := m.(type) {
	case *Dispatch:
		switch {
		case m.ExecID == "":
			return "exec_id is required"
		case m.Job == "":
			return "job is required"
		case m.Handler == "":
			return "handler is required"
		case m.AcceptBy.IsZero():
			return "accept_by is required"
		case m.Timeout < 0:
			return fmt.Sprintf("timeout %s is negative", m.Timeout)
		case m.Attempt < 0:
			return fmt.Sprintf("attempt %d is negative", m.Attempt)
		case m.Run < 0:
			return fmt.Sprintf("run %d is negative", m.Run)
		case m.Width < 0:
			return fmt.Sprintf("width %d is negative", m.Width)
		case m.Shard != nil && (m.Shard.Index < 0 || m.Shard.Index >= m.Shard.Total):
			return fmt.Sprintf("shard %d of %d is out of range", m.Shard.Index, m.Shard.Total)
		}
	case *Ack:
		switch {
		case m.ExecID == "":
			return "exec_id is required"
		case m.Job == "":
			return "job is required"
		case m.At.IsZero():
			return "at is required"
		case m.Attempt < 0:
			return fmt.Sprintf("attempt %d is negative", m.Attempt)
		case m.Run < 0:
			return fmt.Sprintf("run %d is negative", m.Run)
		case m.Local != nil && (m.Local.ID != m.ExecID || m.Local.Job != m.Job):
			return fmt.Sprintf("local execution %q of job %q does not match exec_id and job", m.Local.ID, m.Local.Job)
		case m.Local != nil && !m.Accepted:
			return "a local execution is always accepted"
		}
	case *Result:
		switch {
		case m.ExecID == "":
			return "exec_id is required"
		case m.Job == "":
			return "job is required"
		case m.Attempt < 0:
			return fmt.Sprintf("attempt %d is negative", m.Attempt)
		case m.Run < 0:
			return fmt.Sprintf("run %d is negative", m.Run)
		}
	case *Receipt:
		if len(m.ExecIDs) == 0 && len(m.Acked) == 0 && len(m.Requests) == 0 {
			return "exec_ids, acked or requests is required"
		}
		for i, id := range m.Requests {
			if id == "" {
				return fmt.Sprintf("requests[%d] is empty", i)
			}
		}
		for i, id := range m.ExecIDs {
			if id == "" {
				return fmt.Sprintf("exec_ids[%d] is empty", i)
			}
		}
		for i, id := range m.Acked {
			if id == "" {
				return fmt.Sprintf("acked[%d] is empty", i)
			}
		}
		if len(m.ExecRuns) != 0 && len(m.ExecRuns) != len(m.ExecIDs) {
			return fmt.Sprintf("exec_runs has %d runs for %d exec_ids", len(m.ExecRuns), len(m.ExecIDs))
		}
		if len(m.AckedRuns) != 0 && len(m.AckedRuns) != len(m.Acked) {
			return fmt.Sprintf("acked_runs has %d runs for %d acked", len(m.AckedRuns), len(m.Acked))
		}
	case *Heartbeat:
		if m.Capacity < 0 {
			return fmt.Sprintf("capacity %d is negative", m.Capacity)
		}
		for i, id := range m.Running {
			if id == "" {
				return fmt.Sprintf("running[%d] is empty", i)
			}
		}
		if len(m.Runs) != 0 && len(m.Runs) != len(m.Running) {
			return fmt.Sprintf("runs has %d runs for %d running", len(m.Runs), len(m.Running))
		}
		for i, id := range m.Ended {
			if id == "" {
				return fmt.Sprintf("ended[%d] is empty", i)
			}
		}
		if len(m.EndedRuns) != 0 && len(m.EndedRuns) != len(m.Ended) {
			return fmt.Sprintf("ended_runs has %d runs for %d ended", len(m.EndedRuns), len(m.Ended))
		}
		for i, p := range m.Progress {
			switch {
			case p.ExecID == "":
				return fmt.Sprintf("progress[%d].exec_id is empty", i)
			case p.Percent < 0 || p.Percent > 100:
				return fmt.Sprintf("progress[%d].percent %d is outside 0-100", i, p.Percent)
			case len(p.Message) > MaxProgressMessage:
				return fmt.Sprintf("progress[%d].message of %d bytes exceeds %d", i, len(p.Message), MaxProgressMessage)
			}
		}
	case *Stop:
		if m.ExecID == "" {
			return "exec_id is required"
		}
	case *Request:
		switch {
		case m.ReqID == "":
			return "req_id is required"
		case m.Job == "" && m.Batch == "":
			return "job is required"
		case m.Job != "" && m.Batch != "":
			return "job and batch are exclusive"
		case m.Batch != "" && m.Cycle == "":
			return "a batch's cycle is required"
		case len(m.Note) > 1000:
			return "note: at most 1000 bytes"
		case m.At.IsZero():
			return "at is required"
		}
	case *OutputAsk:
		return validateOutputAsk(m)
	case *Output:
		return validateOutput(m)
	}
	return ""
}
