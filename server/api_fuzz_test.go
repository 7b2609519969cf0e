package server

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"reflect"
	"testing"

	"github.com/clover-sched/clover/internal/job"
)

// A job definition comes from anyone who can reach the API: decoding and validating it must never panic,
// and what passes is a job the leader can schedule.
func FuzzDecodeSpec(f *testing.F) {
	for _, seed := range []string{
		`{"name":"a","schedule":"@every 1s","handler":"shell","params":{"command":"true"}}`,
		`{"name":"b","schedule":"0 0 2 L * ?","time_zone":"Europe/Paris","handler":"report","timeout":"90s"}`,
		`{"name":"c","schedule":"@at 2026-01-01T00:00:00Z","handler":"x","timeout":12.5}`,
		`{"name":"","schedule":"","handler":""}`, `[]`, `{"timeout":"forever"}`, "\x00",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		spec, err := decodeSpec(httptest.NewRequest("POST", "/api/v1/jobs", bytes.NewReader(body)))
		if err != nil {
			return
		}
		if err := validateSpec(spec); err != nil {
			return
		}
		if spec.Name == "" || spec.Schedule == "" || spec.Handler == "" || spec.Timeout < 0 {
			t.Fatalf("accepted an incomplete job: %+v", spec)
		}
		// What passes is stored and served back as JSON: it must come back the same, and pass again.
		b, err := json.Marshal(spec)
		if err != nil {
			t.Fatalf("accepted %+v, which does not encode: %v", spec, err)
		}
		again, err := decodeSpec(httptest.NewRequest("POST", "/api/v1/jobs", bytes.NewReader(b)))
		if err != nil {
			t.Fatalf("accepted %q, but its encoding %s does not decode: %v", body, b, err)
		}
		if err := validateSpec(again); err != nil {
			t.Fatalf("accepted %q, but its encoding %s does not validate: %v", body, b, err)
		}
		if !reflect.DeepEqual(normalized(spec), normalized(again)) {
			t.Fatalf("accepted %q; it comes back as %+v, not %+v", body, again, spec)
		}
	})
}

// normalized is a spec with the differences JSON cannot keep: an empty map is dropped (omitempty).
func normalized(s job.Spec) job.Spec {
	if len(s.Params) == 0 {
		s.Params = nil
	}
	if len(s.Routing.Labels) == 0 {
		s.Routing.Labels = nil
	}
	if len(s.Routing.Clients) == 0 {
		s.Routing.Clients = nil
	}
	if len(s.Routing.ShardItems) == 0 {
		s.Routing.ShardItems = nil
	}
	if len(s.Contacts) == 0 {
		s.Contacts = nil
	}
	return s
}
