package job

import (
	"testing"
	"time"
)

func TestFoldDerivesTheState(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	id := ExecutionID("j", at)
	acked := Event{ID: EventID(id, EventAcked, 1), ExecID: id, Kind: EventAcked, Attempt: 1, Client: "a", At: at}
	ok := Event{ID: EventID(id, EventFinished, 1), ExecID: id, Kind: EventFinished, Client: "a", At: at,
		Result: &Result{Status: StateSucceeded}}
	lost := Event{ID: EventID(id, EventLost, 1), ExecID: id, Kind: EventLost, Attempt: 1, Client: "a", At: at,
		Result: &Result{Status: StateFailed, Error: "client a left"}}
	other := Event{ID: "x/acked/1", ExecID: "x", Kind: EventAcked, Client: "b"}
	for name, tc := range map[string]struct {
		events []Event
		state  State
		client string
	}{
		"nothing yet":                  {nil, StatePending, ""},
		"acknowledged":                 {[]Event{acked}, StateRunning, "a"},
		"finished before its ack read": {[]Event{ok, acked}, StateSucceeded, "a"},
		"lost":                         {[]Event{acked, lost}, StateFailed, "a"},
		"a late result beats lost":     {[]Event{lost, acked, ok}, StateSucceeded, "a"},
		"other executions' events":     {[]Event{other}, StatePending, ""},
	} {
		t.Run(name, func(t *testing.T) {
			e := Execution{ID: id}
			e.Fold(tc.events)
			if e.State != tc.state || e.Client != tc.client {
				t.Fatalf("state %s on %q, want %s on %q", e.State, e.Client, tc.state, tc.client)
			}
		})
	}
}

func TestValidateNamesTheProblem(t *testing.T) {
	for name, tc := range map[string]struct {
		spec Spec
		want string
	}{
		"name":     {Spec{Name: "a b", Schedule: "@hourly", Handler: "x"}, `job name "a b"`},
		"schedule": {Spec{Name: "a", Handler: "x"}, "job a: schedule is required"},
		"handler":  {Spec{Name: "a", Schedule: "@hourly"}, "job a: handler is required"},
		"command":  {Spec{Name: "a", Schedule: "@hourly", Handler: HandlerShell}, `job a: handler "shell" needs params.command`},
		"timeout":  {Spec{Name: "a", Schedule: "@hourly", Handler: "x", Timeout: -1}, "job a: timeout -1ns is negative"},
		"zone":     {Spec{Name: "a", Schedule: "@hourly", Handler: "x", TimeZone: "Nowhere/Town"}, `job a: time_zone "Nowhere/Town"`},
	} {
		t.Run(name, func(t *testing.T) {
			err := tc.spec.Validate()
			if err == nil || len(err.Error()) < len(tc.want) || err.Error()[:len(tc.want)] != tc.want {
				t.Fatalf("err = %v, want it to start with %q", err, tc.want)
			}
		})
	}
}
