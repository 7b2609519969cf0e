package registry

import (
	"encoding/json"
	"testing"
)

// Registry nodes can be written by anyone with access to ZooKeeper: decoding their data must never panic,
// and whatever it accepts is a valid member of that node.
func FuzzDecode(f *testing.F) {
	good, _ := json.Marshal(Member{ID: "c1", Endpoint: "tcp://127.0.0.1:7000", Jobs: []string{"a"}, Declared: json.RawMessage(`[{"name":"a"}]`)})
	for _, seed := range [][]byte{good, nil, []byte("{}"), []byte(`{"id":"c1"}`), []byte(`{"id":"c1","endpoint":"tcp://x:1","declared":[1,2`), []byte("\xff\xfe")} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decode(KindClients, "c1", data)
		if err != nil {
			return
		}
		if m.ID != "c1" || m.Kind != KindClients {
			t.Fatalf("accepted data for another node: %+v", m)
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("accepted an invalid member: %v", err)
		}
	})
}
