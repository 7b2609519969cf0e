package server

import (
	"bytes"
	"net/http/httptest"
	"testing"
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
	})
}
