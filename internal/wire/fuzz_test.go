package wire

import (
	"reflect"
	"testing"
)

func FuzzDecode(f *testing.F) {
	for _, m := range []Message{sampleDispatch, sampleAck, sampleResult, sampleReceipt, sampleHeartbeat, sampleRequest, sampleAsk, sampleOutput} {
		frame, err := Encode(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(frame)
		f.Add(frame[:len(frame)/2]) // truncated
		f.Add(frame[:5])
		bad := append([]byte(nil), frame...)
		bad[len(bad)/2] ^= 0x55 // a flipped byte
		f.Add(bad)
	}
	if relayed, err := Relay(sampleAck, "server-2"); err == nil {
		f.Add(relayed)
	}
	if hb, err := Encode(&Heartbeat{Header: Header{From: "c"}, Running: []string{"j@1"}, Progress: []Progress{{ExecID: "j@1", Percent: 50, Message: "half"}}}); err == nil {
		f.Add(hb)
	}
	f.Add([]byte{})
	f.Add([]byte("CLV"))
	f.Add([]byte("CLV\x01\x01\x80\x80\xc0\x02"))
	f.Add([]byte("CLV\x01\x01\xff\xff\xff\xff\x7f"))
	f.Add([]byte("CLV\x02\x01garbage"))
	f.Add(frameOf(1, KindHeartbeat, `{"from":"c","running":1,"unknown":[1,2,{"x":null}]}`))
	f.Add(frameOf(1, KindDispatch, `{"from":"s","epoch":1,"exec_id":"e","job":"j","handler":"h","scheduled_at":"2026-01-01T00:00:00+23:59","accept_by":"0000-01-01T00:00:00.123456789123Z","timeout":1e300,"params":{}}`))
	f.Fuzz(func(t *testing.T, frame []byte) {
		m, err := Decode(frame)
		if err != nil {
			if m != nil {
				t.Fatalf("Decode returned %#v with error %v", m, err)
			}
			return
		}
		if k, err := Peek(frame); err != nil || k != m.Kind() {
			t.Fatalf("Peek = %v, %v; Decode gave %v", k, err, m.Kind())
		}
		again, err := Encode(m)
		if err != nil {
			t.Fatalf("Encode(%#v) after Decode: %v", m, err)
		}
		m2, err := Decode(again)
		if err != nil {
			t.Fatalf("Decode(Encode(%#v)): %v", m, err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip changed the message:\n was %#v\n now %#v", m, m2)
		}
	})
}
