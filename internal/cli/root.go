package cli

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// Version is set at build time with -ldflags "-X github.com/clover-sched/clover/internal/cli.Version=...".
var Version = "dev"

// NewRoot builds the clover command tree. out and errOut are where commands print.
func NewRoot(out, errOut io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "clover",
		Short:         "Clover: a distributed, highly available job scheduler",
		Long:          "Clover runs jobs on schedule across a cluster coordinated by ZooKeeper.\n\nRun members with `clover server` and `clover client`; operate the cluster with the other commands,\nwhich talk to the REST API of any server (--api or CLOVER_API).",
		Version:       Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(out)
	root.SetErr(errOut)
	root.AddCommand(newServerCmd(), newClientCmd(), newClusterCmd(), newJobCmd(), newExecCmd(), newFallbackCmd(), newConfigCmd(), newMonitorCmd(), newAlertCmd(), newContactCmd(), newKeysCmd(), newAuditCmd(), newBatchCmd())
	return root
}

// Main runs the command line and returns the process exit code.
func Main(args []string) int {
	root := NewRoot(os.Stdout, os.Stderr)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "clover:", err)
		return 1
	}
	return 0
}

// newLogger builds the process logger. Levels: debug is for developers (every frame, every decision),
// info marks what an operator wants in the log (start, stop, leadership), warn is something that went
// wrong and was handled (a dropped frame, a store retry), error needs a person.
func newLogger(level string, w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, fmt.Errorf("log_level %q: must be debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}
