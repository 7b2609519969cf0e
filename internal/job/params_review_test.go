package job

import (
	"os/exec"
	"strings"
	"testing"
)

// a firing's key that differs from a non-overridable job parameter by a dotless i (U+0131) is not
// EqualFold to it, so MergeParams adds it; the client exports both as CLOVER_PARAM_<strings.ToUpper(key)>,
// the same variable, and exec keeps the last (sorted: the firing's): the job's value is replaced.
func TestAFiringCannotShadowANonOverridableParamsVariable(t *testing.T) {
	s := Spec{Name: "j", Params: map[string]string{"command": `echo "$CLOVER_PARAM_SCRIPT_DIR"`, "script_dir": "/opt/safe"}}
	merged, err := s.MergeParams(map[string]string{"scrıpt_dır": "/tmp/evil"})
	if err != nil {
		t.Logf("refused: %v", err)
		return
	}
	// As client/shell.go builds the environment (sorted keys).
	env := []string{}
	for _, k := range []string{"script_dir", "scrıpt_dır"} {
		env = append(env, "CLOVER_PARAM_"+strings.ToUpper(k)+"="+merged[k])
	}
	cmd := exec.Command("/bin/sh", "-c", merged["command"])
	cmd.Env = env
	out, _ := cmd.Output()
	if got := strings.TrimSpace(string(out)); got != "/opt/safe" {
		t.Errorf("the job's non-overridable script_dir reached its command as %q", got)
	}
}
