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
		"schedule": {Spec{Name: "a", Handler: "x", Mode: ModeLocal}, "job a: schedule is required in local mode (a job without one runs only when asked)"},
		"handler":  {Spec{Name: "a", Schedule: "@hourly"}, "job a: handler is required"},
		"command":  {Spec{Name: "a", Schedule: "@hourly", Handler: HandlerShell}, `job a: handler "shell" needs params.command`},
		"timeout":  {Spec{Name: "a", Schedule: "@hourly", Handler: "x", Timeout: -1}, "job a: timeout -1ns is negative"},
		"zone":     {Spec{Name: "a", Schedule: "@hourly", Handler: "x", TimeZone: "Nowhere/Town"}, `job a: time_zone "Nowhere/Town"`},
		"misfire":  {Spec{Name: "a", Schedule: "@hourly", Handler: "x", Misfire: Misfire{Policy: "maybe"}}, `job a: misfire.policy "maybe"`},
		"overlap":  {Spec{Name: "a", Schedule: "@hourly", Handler: "x", Overlap: "never"}, `job a: overlap "never"`},
		"strategy": {Spec{Name: "a", Schedule: "@hourly", Handler: "x", Routing: Routing{Strategy: "nearest"}}, `job a: routing.strategy "nearest"`},
		"shards":   {Spec{Name: "a", Schedule: "@hourly", Handler: "x", Routing: Routing{Shards: 3}}, "job a: routing.shards needs routing.strategy sharding-broadcast"},
		"retries":  {Spec{Name: "a", Schedule: "@hourly", Handler: "x", Retry: Retry{Max: 1000}}, "job a: retry.max 1000"},
		"jitter":   {Spec{Name: "a", Schedule: "@hourly", Handler: "x", Retry: Retry{Jitter: 2}}, "job a: retry.jitter 2"},
		"mode":     {Spec{Name: "a", Schedule: "@hourly", Handler: "x", Mode: "elsewhere"}, `job a: mode "elsewhere"`},
	} {
		t.Run(name, func(t *testing.T) {
			err := tc.spec.Validate()
			if err == nil || len(err.Error()) < len(tc.want) || err.Error()[:len(tc.want)] != tc.want {
				t.Fatalf("err = %v, want it to start with %q", err, tc.want)
			}
		})
	}
}

func TestFoldFollowsRunsAndDecisions(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	id := ExecutionID("j", at)
	ev := func(kind EventKind, attempt, run int, client string, status State) Event {
		e := Event{ID: EventID(id, kind, attempt), ExecID: id, Kind: kind, Attempt: attempt, Run: run, Client: client, At: at}
		if kind == EventFinished {
			e.ID = EventID(id, kind, run)
		}
		if status != "" {
			e.Result = &Result{Status: status}
		}
		return e
	}
	for name, tc := range map[string]struct {
		maxRuns int
		events  []Event
		state   State
		run     int
		client  string
	}{
		"a failed run with retries left":    {3, []Event{ev(EventAcked, 1, 1, "a", ""), ev(EventFinished, 1, 1, "a", StateFailed)}, StateRetrying, 2, "a"},
		"the retry runs":                    {3, []Event{ev(EventFinished, 1, 1, "a", StateFailed), ev(EventAcked, 2, 2, "b", ""), ev(EventAcked, 1, 1, "a", "")}, StateRunning, 2, "b"},
		"the last run fails":                {2, []Event{ev(EventFinished, 1, 1, "a", StateFailed), ev(EventFinished, 2, 2, "b", StateFailed)}, StateFailed, 2, "b"},
		"a retry succeeds":                  {2, []Event{ev(EventFinished, 1, 1, "a", StateFailed), ev(EventFinished, 2, 2, "b", StateSucceeded)}, StateSucceeded, 2, "b"},
		"orphaned":                          {1, []Event{ev(EventAcked, 1, 1, "a", ""), ev(EventOrphaned, 1, 1, "a", "")}, StateOrphaned, 1, "a"},
		"orphaned, then its client reports": {1, []Event{ev(EventOrphaned, 1, 1, "a", ""), ev(EventAcked, 1, 1, "a", ""), ev(EventFinished, 1, 1, "a", StateSucceeded)}, StateSucceeded, 1, "a"},
		"orphaned, then resumed":            {1, []Event{ev(EventAcked, 1, 1, "a", ""), ev(EventOrphaned, 1, 1, "a", ""), ev(EventResumed, 1, 1, "a", "")}, StateRunning, 1, "a"},
		"orphaned, then rerun":              {1, []Event{ev(EventAcked, 1, 1, "a", ""), ev(EventOrphaned, 1, 1, "a", ""), ev(EventRerun, 1, 1, "", "")}, StatePending, 1, "a"},
		"rerun runs elsewhere":              {1, []Event{ev(EventAcked, 1, 1, "a", ""), ev(EventOrphaned, 1, 1, "a", ""), ev(EventRerun, 1, 1, "", ""), ev(EventAcked, 2, 1, "b", "")}, StateRunning, 1, "b"},
		"lost without a result is pending":  {1, []Event{ev(EventAcked, 1, 1, "a", ""), ev(EventLost, 1, 1, "a", "")}, StatePending, 1, "a"},
		"skipped":                           {3, []Event{ev(EventFinished, 0, 1, "", StateSkipped)}, StateSkipped, 1, ""},
	} {
		t.Run(name, func(t *testing.T) {
			e := Execution{ID: id, MaxRuns: tc.maxRuns}
			e.Fold(tc.events)
			if e.State != tc.state || e.Run != tc.run || e.Client != tc.client {
				t.Fatalf("state %s run %d on %q, want %s run %d on %q", e.State, e.Run, e.Client, tc.state, tc.run, tc.client)
			}
		})
	}
}

func TestAStoppedRetryEndsTheExecutionInAnyOrder(t *testing.T) {
	id := "j@x"
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	failed := Event{ID: EventID(id, EventFinished, 1), ExecID: id, Kind: EventFinished, Attempt: 1, Run: 1, At: at,
		Result: &Result{Status: StateFailed}}
	stopped := Event{ID: EventID(id, EventFinished, 2), ExecID: id, Kind: EventFinished, Attempt: 1, Run: 2, At: at,
		Result: &Result{Status: StateFailed, Final: true, Error: "stopped before its retry"}}
	for _, evs := range [][]Event{{failed, stopped}, {stopped, failed}} {
		e := Execution{ID: id, MaxRuns: 3}
		e.Fold(evs)
		if e.State != StateFailed || e.Run != 2 {
			t.Fatalf("state %s run %d, want failed run 2", e.State, e.Run)
		}
	}
}

func TestAFinalFailureIsNotRetried(t *testing.T) {
	id := "j@x"
	e := Execution{ID: id, MaxRuns: 3}
	e.Fold([]Event{{ID: EventID(id, EventFinished, 1), ExecID: id, Kind: EventFinished, Attempt: 1, Run: 1,
		Result: &Result{Status: StateFailed, Final: true, Error: "stopped: by alice"}}})
	if e.State != StateFailed {
		t.Fatalf("state %s, want failed", e.State)
	}
}
