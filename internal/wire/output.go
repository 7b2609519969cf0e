package wire

import "fmt"

// MaxOutputChunk bounds the bytes of output one Output carries: a reader pages through long output, it
// never gets it whole.
const MaxOutputChunk = 64 << 10

// OutputAsk asks the client that runs an execution for the run's output from a byte offset: how the
// console and `clover exec output --follow` show output while it is written. The client answers the
// server named in From, and only that one. Required: From, Ask, ExecID; Offset not negative; Max in
// 1-MaxOutputChunk. Run 0 asks for the newest run the client has of the execution.
type OutputAsk struct {
	Header
	Ask    string `json:"ask"` // the asking server's id for the question, returned in the answer
	ExecID string `json:"exec_id"`
	Run    int    `json:"run,omitempty"`
	Offset int64  `json:"offset"`
	Max    int    `json:"max"`
}

// Output answers an OutputAsk. Offsets count every byte the run has written since it started, so a reader
// that comes back with the offset it reached gets what follows, nothing twice. Data starts at Offset,
// which is past the asked offset when the client no longer keeps the bytes asked for (a long output keeps
// only its last part); End is how many bytes the run has written so far. Required: From, Ask, ExecID;
// 0 <= First <= Offset, Offset + len(Data) <= End, len(Data) <= MaxOutputChunk.
type Output struct {
	Header
	Ask    string `json:"ask"`
	ExecID string `json:"exec_id"`
	Run    int    `json:"run,omitempty"` // the run the bytes are of
	Offset int64  `json:"offset"`
	Data   []byte `json:"data,omitempty"`
	End    int64  `json:"end"`
	First  int64  `json:"first,omitempty"` // the oldest offset the client still keeps
	// Ended: the run has ended, End is final. Unknown: the client has no such run (anymore): the answer is
	// in the execution's stored result.
	Ended   bool `json:"ended,omitempty"`
	Unknown bool `json:"unknown,omitempty"`
}

func (*OutputAsk) Kind() Kind { return KindOutputAsk }
func (*Output) Kind() Kind    { return KindOutput }

var (
	_ Message = (*OutputAsk)(nil)
	_ Message = (*Output)(nil)
)

func validateOutputAsk(m *OutputAsk) string {
	switch {
	case m.Ask == "":
		return "ask is required"
	case m.ExecID == "":
		return "exec_id is required"
	case m.Run < 0:
		return fmt.Sprintf("run %d is negative", m.Run)
	case m.Offset < 0:
		return fmt.Sprintf("offset %d is negative", m.Offset)
	case m.Max < 1 || m.Max > MaxOutputChunk:
		return fmt.Sprintf("max %d is outside 1-%d", m.Max, MaxOutputChunk)
	}
	return ""
}

func validateOutput(m *Output) string {
	switch {
	case m.Ask == "":
		return "ask is required"
	case m.ExecID == "":
		return "exec_id is required"
	case m.Run < 0:
		return fmt.Sprintf("run %d is negative", m.Run)
	case m.Offset < 0:
		return fmt.Sprintf("offset %d is negative", m.Offset)
	case len(m.Data) > MaxOutputChunk:
		return fmt.Sprintf("data of %d bytes exceeds %d", len(m.Data), MaxOutputChunk)
	case m.End < 0 || m.Offset > m.End-int64(len(m.Data)): // not Offset+len > End: that can overflow
		return fmt.Sprintf("end %d is before offset %d plus %d bytes of data", m.End, m.Offset, len(m.Data))
	case m.First < 0 || m.First > m.Offset:
		return fmt.Sprintf("first %d is outside 0-%d (the offset)", m.First, m.Offset)
	}
	return ""
}
