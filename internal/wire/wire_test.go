package wire

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"

	"github.com/clover-sched/clover/internal/job"
)

var (
	t0 = time.Date(2026, 3, 8, 7, 0, 0, 0, time.UTC)

	sampleDispatch = &Dispatch{
		Header: Header{From: "server-1", Epoch: 7, SentAt: t0.Add(time.Millisecond)},
		ExecID: job.ExecutionID("backup", t0), Job: "backup", Handler: job.HandlerShell,
		Params: map[string]string{"command": "pg_dump clover > /backup/clover.sql"}, Timeout: job.Duration(90 * time.Second),
		ScheduledAt: t0, Attempt: 1, Trigger: job.TriggerSchedule, AcceptBy: t0.Add(30 * time.Second),
	}
	sampleAck = &Ack{
		Header: Header{From: "client-a", Epoch: 7, SentAt: t0.Add(2 * time.Millisecond)},
		ExecID: sampleDispatch.ExecID, Job: "backup", Attempt: 1, Accepted: true, At: t0.Add(time.Millisecond),
	}
	sampleResult = &Result{
		Header: Header{From: "client-a", SentAt: t0.Add(time.Minute)},
		ExecID: sampleDispatch.ExecID, Job: "backup", Attempt: 1,
		Result:    job.Result{Status: job.StateFailed, ExitCode: 2, Duration: job.Duration(59 * time.Second), Output: "pg_dump: error", Error: "exit status 2"},
		StartedAt: t0.Add(time.Second), FinishedAt: t0.Add(time.Minute),
	}
	sampleReceipt   = &Receipt{Header: Header{From: "server-2", SentAt: t0}, ExecIDs: []string{"a@1", "b@2"}, Acked: []string{"c@3"}, ExecRuns: []int{1, 2}, AckedRuns: []int{1}}
	sampleHeartbeat = &Heartbeat{Header: Header{From: "client-a", SentAt: t0}, Running: []string{"j@1", "j@2"}, Runs: []int{1, 3}, Capacity: 8}
	sampleRequest   = &Request{Header: Header{From: "client-a", SentAt: t0}, ReqID: "client-a.1795000000.7", Job: "settle", Params: map[string]string{"date": "2026-11-23"}, At: t0}
	sampleAsk       = &OutputAsk{Header: Header{From: "server-2", SentAt: t0}, Ask: "server-2.17", ExecID: "backup@1", Run: 2, Offset: 4096, Max: MaxOutputChunk}
	sampleOutput    = &Output{Header: Header{From: "client-a", SentAt: t0}, Ask: "server-2.17", ExecID: "backup@1", Run: 2, Offset: 4096, Data: []byte("dumped 12 tables\n\xff\xfe not UTF-8"), End: 9000, First: 1024}
)

func TestRoundTrip(t *testing.T) {
	tests := map[string]struct {
		msg  Message
		kind Kind
	}{
		"dispatch":                  {msg: sampleDispatch, kind: KindDispatch},
		"dispatch without extras":   {msg: &Dispatch{Header: Header{From: "s", Epoch: 1}, ExecID: "j@manual-x", Job: "j", Handler: "h", ScheduledAt: t0, AcceptBy: t0}, kind: KindDispatch},
		"ack accepted":              {msg: sampleAck, kind: KindAck},
		"ack refused":               {msg: &Ack{Header: Header{From: "c"}, ExecID: "e", Job: "j", Attempt: 2, Reason: "accept_by passed", At: t0}, kind: KindAck},
		"result":                    {msg: sampleResult, kind: KindResult},
		"result with an empty body": {msg: &Result{Header: Header{From: "c"}, ExecID: "e", Job: "j"}, kind: KindResult},
		"receipt":                   {msg: sampleReceipt, kind: KindReceipt},
		"heartbeat":                 {msg: sampleHeartbeat, kind: KindHeartbeat},
		"relayed ack":               {msg: &Ack{Header: Header{From: "c", Epoch: 3, Via: "server-2"}, ExecID: "e", Job: "j", At: t0}, kind: KindAck},
		"heartbeat idle":            {msg: &Heartbeat{Header: Header{From: "c"}}, kind: KindHeartbeat},
		"heartbeat with progress":   {msg: &Heartbeat{Header: Header{From: "c"}, Running: []string{"j@1"}, Progress: []Progress{{ExecID: "j@1", Run: 2, Percent: 40, Message: "4 of 10 files", At: t0}}}, kind: KindHeartbeat},
		"stop":                      {msg: &Stop{Header: Header{From: "s", Epoch: 4}, ExecID: "j@1", Reason: "replaced by j@2"}, kind: KindStop},
		"retry of a shard":          {msg: &Dispatch{Header: Header{From: "s", Epoch: 1}, ExecID: "j@1~2", Job: "j", Handler: "h", Attempt: 3, Run: 2, Width: 4, Shard: &job.Shard{Index: 2, Total: 3, Item: "eu"}, ScheduledAt: t0, AcceptBy: t0}, kind: KindDispatch},
		"local ack":                 {msg: &Ack{Header: Header{From: "c"}, ExecID: "j@1", Job: "j", Attempt: 1, Accepted: true, At: t0, Local: &job.Execution{ID: "j@1", Job: "j", ScheduledAt: t0, FiredAt: t0, Trigger: job.TriggerLocal, Handler: "h"}}, kind: KindAck},
		"request":                   {msg: sampleRequest, kind: KindRequest},
		"receipt of requests":       {msg: &Receipt{Header: Header{From: "s"}, Requests: []string{"c.1.1"}}, kind: KindReceipt},
		"output ask":                {msg: sampleAsk, kind: KindOutputAsk},
		"output":                    {msg: sampleOutput, kind: KindOutput},
		"output of an unknown run":  {msg: &Output{Header: Header{From: "c"}, Ask: "a", ExecID: "e", Unknown: true}, kind: KindOutput},
		"non-ASCII text":            {msg: &Ack{Header: Header{From: "клиент-1"}, ExecID: "e", Job: "j", Reason: "日本語 \u2028 \"quoted\"", At: t0}, kind: KindAck},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			frame, err := Encode(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			if k, err := Peek(frame); err != nil || k != tc.kind {
				t.Errorf("Peek = %v, %v, want %v", k, err, tc.kind)
			}
			got, err := Decode(frame)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.msg) {
				t.Errorf("round trip:\n got %#v\nwant %#v", got, tc.msg)
			}
			if h := HeaderOf(got); h != *tc.msg.header() {
				t.Errorf("HeaderOf = %+v, want %+v", h, *tc.msg.header())
			}
		})
	}
}

// TestFrameLayout pins the bytes other implementations and older servers read.
func TestFrameLayout(t *testing.T) {
	frame, err := Encode(sampleHeartbeat)
	if err != nil {
		t.Fatal(err)
	}
	if string(frame[:5]) != "CLV\x01\x05" {
		t.Errorf("header = %q, want %q", frame[:5], "CLV\x01\x05")
	}
	payload, err := snappy.Decode(nil, frame[5:])
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"from":"client-a","sent_at":"2026-03-08T07:00:00Z","running":["j@1","j@2"],"runs":[1,3],"capacity":8}`
	if string(payload) != want {
		t.Errorf("payload\n got %s\nwant %s", payload, want)
	}
	frame, err = Encode(sampleDispatch)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ = snappy.Decode(nil, frame[5:])
	const wantDispatch = `{"from":"server-1","epoch":7,"sent_at":"2026-03-08T07:00:00.001Z","exec_id":"backup@2026-03-08T07:00:00Z","job":"backup","handler":"shell","params":{"command":"pg_dump clover \u003e /backup/clover.sql"},"timeout":"1m30s","scheduled_at":"2026-03-08T07:00:00Z","attempt":1,"trigger":"schedule","accept_by":"2026-03-08T07:00:30Z"}`
	if string(payload) != wantDispatch {
		t.Errorf("payload\n got %s\nwant %s", payload, wantDispatch)
	}
}

func TestKindString(t *testing.T) {
	want := map[Kind]string{KindDispatch: "dispatch", KindAck: "ack", KindResult: "result", KindReceipt: "receipt", KindHeartbeat: "heartbeat", KindOutputAsk: "output_ask", KindOutput: "output", 0: "kind(0)", 200: "kind(200)"}
	for k, s := range want {
		if k.String() != s {
			t.Errorf("Kind(%d).String() = %q, want %q", uint8(k), k.String(), s)
		}
	}
}

// frameOf builds a frame from raw parts, for malformed input.
func frameOf(version byte, kind Kind, json string) []byte {
	return append([]byte{'C', 'L', 'V', version, byte(kind)}, snappy.Encode(nil, []byte(json))...)
}

func TestDecodeErrors(t *testing.T) {
	big := make([]byte, 3000000)
	copy(big, "CLV\x01\x01")
	tests := map[string]struct {
		// spec
		frame []byte
		// expectations
		err error
		msg string
	}{
		"nil":                          {frame: nil, err: ErrShort, msg: "wire: frame of 0 bytes is shorter than the 5-byte header"},
		"magic only":                   {frame: []byte("CLV"), err: ErrShort, msg: "wire: frame of 3 bytes is shorter than the 5-byte header"},
		"bad magic":                    {frame: []byte("XYZ\x01\x01abc"), err: ErrMagic, msg: `wire: frame starts with "XYZ", not "CLV"`},
		"version 2":                    {frame: frameOf(2, KindAck, `{}`), err: ErrVersion, msg: "wire: version 2 is not supported (want 1)"},
		"version 0":                    {frame: frameOf(0, KindAck, `{}`), err: ErrVersion, msg: "wire: version 0 is not supported (want 1)"},
		"kind 0":                       {frame: frameOf(1, 0, `{}`), err: ErrKind, msg: "wire: unknown kind 0"},
		"kind 10":                      {frame: frameOf(1, 10, `{}`), err: ErrKind, msg: "wire: unknown kind 10"},
		"frame too large":              {frame: big, err: ErrTooLarge, msg: "wire: frame of 3000000 bytes exceeds 1048576"},
		"decodes too large":            {frame: []byte("CLV\x01\x01\x80\x80\xc0\x02"), err: ErrTooLarge, msg: "wire: dispatch payload decodes to 5242880 bytes, exceeding 4194304"},
		"declared length 4 GiB":        {frame: []byte("CLV\x01\x01\xff\xff\xff\xff\x0f"), err: ErrTooLarge, msg: "wire: dispatch payload decodes to 4294967295 bytes, exceeding 4194304"},
		"declared length over 4 GiB":   {frame: []byte("CLV\x01\x01\xff\xff\xff\xff\x7f"), err: ErrCorrupt, msg: "wire: dispatch payload: snappy: corrupt input"},
		"empty payload":                {frame: []byte("CLV\x01\x02"), err: ErrCorrupt, msg: "wire: ack payload: snappy: corrupt input"},
		"corrupt snappy":               {frame: []byte("CLV\x01\x02\x10\xff\xff\xff"), err: ErrCorrupt, msg: "wire: ack payload: snappy: corrupt input"},
		"truncated snappy":             {frame: frameOf(1, KindHeartbeat, `{"from":"c","running":1}`)[:12], err: ErrCorrupt, msg: "wire: heartbeat payload: snappy: corrupt input"},
		"not JSON":                     {frame: frameOf(1, KindAck, `{not json`), err: ErrPayload, msg: "wire: ack payload: invalid character 'n' looking for beginning of object key string"},
		"JSON array":                   {frame: frameOf(1, KindAck, `[1]`), err: ErrPayload, msg: "wire: ack payload: json: cannot unmarshal array into Go value of type wire.Ack"},
		"trailing data":                {frame: frameOf(1, KindAck, `{} {}`), err: ErrPayload, msg: "wire: ack payload: invalid character '{' after top-level value"},
		"wrong field type":             {frame: frameOf(1, KindHeartbeat, `{"from":"c","running":"3"}`), err: ErrPayload, msg: "wire: heartbeat payload: json: cannot unmarshal string into Go struct field Heartbeat.running of type []string"},
		"JSON null":                    {frame: frameOf(1, KindHeartbeat, `null`), err: ErrPayload, msg: "wire: heartbeat: from is required"},
		"empty from":                   {frame: frameOf(1, KindHeartbeat, `{"capacity":1}`), err: ErrPayload, msg: "wire: heartbeat: from is required"},
		"negative epoch":               {frame: frameOf(1, KindHeartbeat, `{"from":"c","epoch":-1}`), err: ErrPayload, msg: "wire: heartbeat: epoch -1 is negative"},
		"dispatch without job":         {frame: frameOf(1, KindDispatch, `{"from":"s","epoch":1,"exec_id":"e","handler":"h"}`), err: ErrPayload, msg: "wire: dispatch: job is required"},
		"dispatch without exec_id":     {frame: frameOf(1, KindDispatch, `{"from":"s","epoch":1,"job":"j","handler":"h"}`), err: ErrPayload, msg: "wire: dispatch: exec_id is required"},
		"dispatch without handler":     {frame: frameOf(1, KindDispatch, `{"from":"s","epoch":1,"exec_id":"e","job":"j"}`), err: ErrPayload, msg: "wire: dispatch: handler is required"},
		"dispatch without accept_by":   {frame: frameOf(1, KindDispatch, `{"from":"s","epoch":1,"exec_id":"e","job":"j","handler":"h","scheduled_at":"2026-01-01T00:00:00Z"}`), err: ErrPayload, msg: "wire: dispatch: accept_by is required"},
		"dispatch negative timeout":    {frame: frameOf(1, KindDispatch, `{"from":"s","epoch":1,"exec_id":"e","job":"j","handler":"h","scheduled_at":"2026-01-01T00:00:00Z","accept_by":"2026-01-01T00:00:00Z","timeout":"-1s"}`), err: ErrPayload, msg: "wire: dispatch: timeout -1s is negative"},
		"dispatch bad timeout":         {frame: frameOf(1, KindDispatch, `{"from":"s","timeout":"soon"}`), err: ErrPayload, msg: `wire: dispatch payload: duration "soon": time: invalid duration "soon"`},
		"ack without exec_id":          {frame: frameOf(1, KindAck, `{"from":"c","job":"j","at":"2026-01-01T00:00:00Z"}`), err: ErrPayload, msg: "wire: ack: exec_id is required"},
		"ack without at":               {frame: frameOf(1, KindAck, `{"from":"c","exec_id":"e","job":"j"}`), err: ErrPayload, msg: "wire: ack: at is required"},
		"result without exec_id":       {frame: frameOf(1, KindResult, `{"from":"c","job":"j"}`), err: ErrPayload, msg: "wire: result: exec_id is required"},
		"result negative attempt":      {frame: frameOf(1, KindResult, `{"from":"c","exec_id":"e","job":"j","attempt":-2}`), err: ErrPayload, msg: "wire: result: attempt -2 is negative"},
		"receipt without ids":          {frame: frameOf(1, KindReceipt, `{"from":"s","exec_ids":[]}`), err: ErrPayload, msg: "wire: receipt: exec_ids, acked or requests is required"},
		"receipt with an empty id":     {frame: frameOf(1, KindReceipt, `{"from":"s","exec_ids":["a",""]}`), err: ErrPayload, msg: "wire: receipt: exec_ids[1] is empty"},
		"heartbeat negative capacity":  {frame: frameOf(1, KindHeartbeat, `{"from":"c","capacity":-1}`), err: ErrPayload, msg: "wire: heartbeat: capacity -1 is negative"},
		"heartbeat runs mismatch":      {frame: frameOf(1, KindHeartbeat, `{"from":"c","running":["a","b"],"runs":[1]}`), err: ErrPayload, msg: "wire: heartbeat: runs has 1 runs for 2 running"},
		"receipt runs mismatch":        {frame: frameOf(1, KindReceipt, `{"from":"s","exec_ids":["a"],"exec_runs":[1,2]}`), err: ErrPayload, msg: "wire: receipt: exec_runs has 2 runs for 1 exec_ids"},
		"heartbeat empty running id":   {frame: frameOf(1, KindHeartbeat, `{"from":"c","running":["a",""]}`), err: ErrPayload, msg: "wire: heartbeat: running[1] is empty"},
		"request without req_id":       {frame: frameOf(1, KindRequest, `{"from":"c","job":"j","at":"2026-01-01T00:00:00Z"}`), err: ErrPayload, msg: "wire: request: req_id is required"},
		"request without job":          {frame: frameOf(1, KindRequest, `{"from":"c","req_id":"r","at":"2026-01-01T00:00:00Z"}`), err: ErrPayload, msg: "wire: request: job is required"},
		"request without at":           {frame: frameOf(1, KindRequest, `{"from":"c","req_id":"r","job":"j"}`), err: ErrPayload, msg: "wire: request: at is required"},
		"request of a job and a batch": {frame: frameOf(1, KindRequest, `{"from":"c","req_id":"r","job":"j","batch":"b","cycle":"c","at":"2026-01-01T00:00:00Z"}`), err: ErrPayload, msg: "wire: request: job and batch are exclusive"},
		"request of a batch, no cycle": {frame: frameOf(1, KindRequest, `{"from":"c","req_id":"r","batch":"b","at":"2026-01-01T00:00:00Z"}`), err: ErrPayload, msg: "wire: request: a batch's cycle is required"},
		"receipt empty request id":     {frame: frameOf(1, KindReceipt, `{"from":"s","requests":[""]}`), err: ErrPayload, msg: "wire: receipt: requests[0] is empty"},
		"progress out of range":        {frame: frameOf(1, KindHeartbeat, `{"from":"c","progress":[{"exec_id":"j@1","percent":101}]}`), err: ErrPayload, msg: "wire: heartbeat: progress[0].percent 101 is outside 0-100"},
		"progress without exec_id":     {frame: frameOf(1, KindHeartbeat, `{"from":"c","progress":[{"percent":1}]}`), err: ErrPayload, msg: "wire: heartbeat: progress[0].exec_id is empty"},
		"stop without exec_id":         {frame: frameOf(1, KindStop, `{"from":"s"}`), err: ErrPayload, msg: "wire: stop: exec_id is required"},
		"dispatch shard out of range":  {frame: frameOf(1, KindDispatch, `{"from":"s","exec_id":"e","job":"j","handler":"h","accept_by":"2026-01-01T00:00:00Z","shard":{"index":3,"total":3}}`), err: ErrPayload, msg: "wire: dispatch: shard 3 of 3 is out of range"},
		"ack local mismatch":           {frame: frameOf(1, KindAck, `{"from":"c","exec_id":"e","job":"j","accepted":true,"at":"2026-01-01T00:00:00Z","local":{"id":"f","job":"j"}}`), err: ErrPayload, msg: `wire: ack: local execution "f" of job "j" does not match exec_id and job`},
		"ask without ask":              {frame: frameOf(1, KindOutputAsk, `{"from":"s","exec_id":"e","max":1}`), err: ErrPayload, msg: "wire: output_ask: ask is required"},
		"ask for too much":             {frame: frameOf(1, KindOutputAsk, `{"from":"s","ask":"a","exec_id":"e","max":65537}`), err: ErrPayload, msg: "wire: output_ask: max 65537 is outside 1-65536"},
		"ask negative offset":          {frame: frameOf(1, KindOutputAsk, `{"from":"s","ask":"a","exec_id":"e","max":1,"offset":-1}`), err: ErrPayload, msg: "wire: output_ask: offset -1 is negative"},
		"output past its end":          {frame: frameOf(1, KindOutput, `{"from":"c","ask":"a","exec_id":"e","offset":2,"data":"AAAA","end":4}`), err: ErrPayload, msg: "wire: output: end 4 is before offset 2 plus 3 bytes of data"},
		"output offset overflows":      {frame: frameOf(1, KindOutput, `{"from":"c","ask":"a","exec_id":"e","offset":9223372036854775807,"data":"AAAA","end":9223372036854775807}`), err: ErrPayload, msg: "wire: output: end 9223372036854775807 is before offset 9223372036854775807 plus 3 bytes of data"},
		"output first past offset":     {frame: frameOf(1, KindOutput, `{"from":"c","ask":"a","exec_id":"e","offset":2,"first":3,"end":4}`), err: ErrPayload, msg: "wire: output: first 3 is outside 0-2 (the offset)"},
		"output without exec_id":       {frame: frameOf(1, KindOutput, `{"from":"c","ask":"a","end":0}`), err: ErrPayload, msg: "wire: output: exec_id is required"},
		"output data not base64":       {frame: frameOf(1, KindOutput, `{"from":"c","ask":"a","exec_id":"e","data":"*","end":9}`), err: ErrPayload, msg: "wire: output payload: illegal base64 data at input byte 0"},
		"bad time":                     {frame: frameOf(1, KindHeartbeat, `{"from":"c","sent_at":"yesterday"}`), err: ErrPayload, msg: `wire: heartbeat payload: parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": cannot parse "yesterday" as "2006"`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			m, err := Decode(tc.frame)
			if err == nil {
				t.Fatalf("Decode = %#v, want an error", m)
			}
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %T is not a *DecodeError", err)
			}
			if !errors.Is(err, tc.err) {
				t.Errorf("error %v is not %v", err, tc.err)
			}
			if err.Error() != tc.msg {
				t.Errorf("message\n got %s\nwant %s", err, tc.msg)
			}
			if want := reasons[tc.err]; de.Reason() != want {
				t.Errorf("Reason() = %q, want %q", de.Reason(), want)
			}
		})
	}
}

var reasons = map[error]string{
	ErrShort: "short", ErrMagic: "magic", ErrVersion: "version", ErrKind: "kind",
	ErrTooLarge: "too_large", ErrCorrupt: "corrupt", ErrPayload: "payload",
}

// TestStaleDispatchDecodes: a dispatch of epoch 0 is well-formed; fencing it is the client's job.
func TestStaleDispatchDecodes(t *testing.T) {
	m := &Dispatch{Header: Header{From: "intruder"}, ExecID: "e", Job: "j", Handler: "shell", AcceptBy: t0, Attempt: 1}
	frame, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(frame)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Errorf("got %#v, want %#v", got, m)
	}
}

func TestRelay(t *testing.T) {
	frame, err := Relay(sampleResult, "server-2")
	if err != nil {
		t.Fatal(err)
	}
	if sampleResult.Via != "" {
		t.Fatal("Relay changed its argument")
	}
	m, err := Decode(frame)
	if err != nil {
		t.Fatal(err)
	}
	want := *sampleResult
	want.Via = "server-2"
	if !reflect.DeepEqual(m, &want) {
		t.Errorf("got %#v, want %#v", m, &want)
	}
	if From(m) != "client-a" || Via(m) != "server-2" || Via(sampleResult) != "" {
		t.Errorf("From = %q, Via = %q, Via(original) = %q", From(m), Via(m), Via(sampleResult))
	}
	if _, err := Relay(nil, "server-2"); !errors.Is(err, ErrKind) {
		t.Errorf("Relay(nil) error = %v, want ErrKind", err)
	}
	if _, err := Relay(&Ack{Header: Header{From: "c"}}, "server-2"); !errors.Is(err, ErrPayload) {
		t.Errorf("Relay(invalid ack) error = %v, want ErrPayload", err)
	}
}

// Every kind a server may receive can be relayed: a kind left out once crashed followers.
func TestRelayEveryKind(t *testing.T) {
	stop := &Stop{Header: Header{From: "s"}, ExecID: "j@1"}
	for k := Kind(1); newMessage(k) != nil; k++ {
		var m Message
		for _, s := range []Message{sampleDispatch, sampleAck, sampleResult, sampleReceipt, sampleHeartbeat, stop, sampleRequest, sampleAsk, sampleOutput} {
			if s.Kind() == k {
				m = s
			}
		}
		if m == nil {
			t.Fatalf("no sample of kind %s: add one here", k)
		}
		frame, err := Relay(m, "server-2")
		if err != nil {
			t.Fatalf("Relay(%s): %v", k, err)
		}
		got, err := Decode(frame)
		if err != nil || Via(got) != "server-2" || got.Kind() != k {
			t.Fatalf("relayed %s decodes to %#v, %v", k, got, err)
		}
	}
}

func TestDecodeAllowsUnknownFields(t *testing.T) {
	m, err := Decode(frameOf(1, KindHeartbeat, `{"from":"c","running":["j@1"],"capacity":4,"memory_mb":512,"labels":{"zone":"a"}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := &Heartbeat{Header: Header{From: "c"}, Running: []string{"j@1"}, Capacity: 4}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("got %#v, want %#v", m, want)
	}
}

func TestPeek(t *testing.T) {
	frame, err := Encode(sampleReceipt)
	if err != nil {
		t.Fatal(err)
	}
	// Peek reads the header only: a corrupt body does not matter.
	frame = append(frame[:5], 0xff, 0xff)
	if k, err := Peek(frame); err != nil || k != KindReceipt {
		t.Errorf("Peek = %v, %v, want receipt", k, err)
	}
	if _, err := Peek([]byte("CLV\x01\x0a")); !errors.Is(err, ErrKind) {
		t.Errorf("Peek(kind 10) error = %v, want ErrKind", err)
	}
}

func TestTimesKeepTheirInstant(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 1, 1, 30, 0, 123456789, ny)
	frame, err := Encode(&Ack{Header: Header{From: "c", SentAt: time.Now()}, ExecID: "e", Job: "j", At: at})
	if err != nil {
		t.Fatal(err)
	}
	m, err := Decode(frame)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.(*Ack).At; !got.Equal(at) {
		t.Errorf("At = %s, want %s", got, at)
	}
}

type foreign struct{ Header }

func (foreign) Kind() Kind { return KindAck }

func TestEncodeErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	noise := func(n int) string { // random hex: snappy cannot shrink it much
		b := make([]byte, n/2)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return hex.EncodeToString(b)
	}
	tests := map[string]struct {
		// spec
		m Message
		// expectations
		err error
		msg string
	}{
		"nil":             {m: nil, err: ErrKind, msg: "wire: cannot encode <nil>"},
		"typed nil":       {m: (*Ack)(nil), err: ErrKind, msg: "wire: cannot encode *wire.Ack"},
		"foreign type":    {m: &foreign{Header{From: "x"}}, err: ErrKind, msg: "wire: cannot encode *wire.foreign"},
		"no from":         {m: &Heartbeat{}, err: ErrPayload, msg: "wire: encode heartbeat: from is required"},
		"no exec_id":      {m: &Ack{Header: Header{From: "c"}, Job: "j", At: t0}, err: ErrPayload, msg: "wire: encode ack: exec_id is required"},
		"year 10000":      {m: &Heartbeat{Header: Header{From: "c", SentAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}}, err: ErrPayload, msg: "wire: encode heartbeat: json: error calling MarshalJSON for type time.Time: Time.MarshalJSON: year outside of range [0,9999]"},
		"frame too large": {m: &Result{Header: Header{From: "c"}, ExecID: "e", Job: "j", Result: job.Result{Output: noise(1500000)}}, err: ErrTooLarge, msg: "wire: encode result: frame of 1500311 bytes exceeds 1048576"},
		"JSON too large":  {m: &Result{Header: Header{From: "c"}, ExecID: "e", Job: "j", Result: job.Result{Output: strings.Repeat("a", MaxDecoded)}}, err: ErrTooLarge, msg: "wire: encode result: JSON of 4194523 bytes exceeds 4194304"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			frame, err := Encode(tc.m)
			if err == nil {
				t.Fatalf("Encode = %d bytes, want an error", len(frame))
			}
			if !errors.Is(err, tc.err) {
				t.Errorf("error %v is not %v", err, tc.err)
			}
			if err.Error() != tc.msg {
				t.Errorf("message\n got %s\nwant %s", err, tc.msg)
			}
		})
	}
}

// TestLargestFrameDecodes checks the limits agree: JSON of exactly MaxDecoded bytes encodes and decodes.
func TestLargestFrameDecodes(t *testing.T) {
	m := &Result{Header: Header{From: "c"}, ExecID: "e", Job: "j", Result: job.Result{Output: "a"}}
	one, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	m.Result.Output = strings.Repeat("a", MaxDecoded-len(one)+1)
	frame, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(frame)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Error("round trip changed the message")
	}
	m.Result.Output += "a"
	if _, err := Encode(m); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Encode of MaxDecoded+1 bytes of JSON: %v, want ErrTooLarge", err)
	}
}

func BenchmarkEncodeDecodeDispatch(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		frame, err := Encode(sampleDispatch)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Decode(frame); err != nil {
			b.Fatal(err)
		}
	}
}
