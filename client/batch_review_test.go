package client

import (
	"context"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/job"
)

// R8 end to end: a trigger's "scrıpt_dır" (dotless i) passes MergeParams and replaces the job's
// non-overridable script_dir in the command's environment.
func TestAFiringCannotReplaceANonOverridableParamInTheShell(t *testing.T) {
	s := job.Spec{Name: "j", Params: map[string]string{"command": `echo "dir=$CLOVER_PARAM_SCRIPT_DIR"`, "script_dir": "/opt/safe"}}
	merged, err := s.MergeParams(map[string]string{"scrıpt_dır": "/tmp/evil"})
	if err != nil {
		t.Logf("refused: %v", err)
		return
	}
	out := newOutputLog(job.MaxOutput)
	if err := runShell(context.Background(), JobContext{ExecutionID: "j@1", Params: merged, Output: out}); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); !strings.Contains(got, "dir=/opt/safe") {
		t.Errorf("the shell saw %q", strings.TrimSpace(got))
	}
}

// anyone who can write the watched directory can make the companion a FIFO: the poll reads it with
// os.ReadFile, which blocks for ever, and every watch of the client stops.
func TestAFIFOCompanionDoesNotHangTheWatches(t *testing.T) {
	dir := t.TempDir()
	data := dir + "/gl-20261231.csv"
	if err := os.WriteFile(data, []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(data+".md5", 0o600); err != nil {
		t.Skip(err)
	}
	c := &Client{}
	done := make(chan bool, 1)
	go func() { done <- c.sumMatches(data, data+".md5", &seenFile{size: 2}) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Error("sumMatches still blocked on a FIFO companion after 3s: the watch loop is stuck")
		// unblock it
		if f, err := os.OpenFile(data+".md5", os.O_WRONLY, 0); err == nil {
			f.Close()
		}
	}
}
