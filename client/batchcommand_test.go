package client

import (
	"os/exec"
	"strings"
	"testing"
)

// A batch node's pre, command and post run in order and the first failure is the execution's; the
// handlers run on start and on the outcome, their own codes ignored.
func TestABatchNodesCommandIsWrappedInItsPreAndPostAndHandlers(t *testing.T) {
	hooks := map[string]string{"batch_pre": "echo pre", "batch_post": "echo post", "batch_on_start": "echo start; false",
		"batch_on_success": "echo ok", "batch_on_failure": "echo failed # a comment"}
	for _, tc := range []struct {
		command, out string
		code         int
	}{
		{"echo main", "start pre main post ok", 0},
		{"echo main; exit 3", "start pre main failed", 3},
	} {
		cmd := exec.Command("/bin/sh", "-c", batchCommand(tc.command, hooks))
		out, err := cmd.Output()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if got := strings.Join(strings.Fields(string(out)), " "); got != tc.out || code != tc.code {
			t.Errorf("%q: %q exit %d, want %q exit %d", tc.command, got, code, tc.out, tc.code)
		}
	}
	pre := map[string]string{"batch_pre": "exit 5"}
	if err := exec.Command("/bin/sh", "-c", batchCommand("echo never", pre)).Run(); err == nil || err.(*exec.ExitError).ExitCode() != 5 {
		t.Errorf("a failing pre: %v, want exit 5 and no command", err)
	}
	if batchCommand("echo x", map[string]string{"other": "y"}) != "echo x" {
		t.Error("a node without hooks changed the command")
	}
}
