package client

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// runShell runs params.command with /bin/sh -c in its own process group, so that a timeout kills
// everything the command started, not only the shell; so does a stop (the context is canceled). The job's
// context reaches the command as CLOVER_JOB, CLOVER_EXECUTION, CLOVER_CLIENT, CLOVER_SCHEDULED_AT,
// CLOVER_ATTEMPT, CLOVER_RUN and CLOVER_PARAM_<NAME> variables, and for a shard of a sharded firing as
// CLOVER_SHARD_INDEX (0-based), CLOVER_SHARD_TOTAL and CLOVER_SHARD_ITEM (empty when the shards are not
// named).
func runShell(ctx context.Context, jc JobContext) error {
	command := jc.Params["command"]
	if command == "" {
		return errors.New("shell: params.command is empty")
	}
	cmd := exec.Command("/bin/sh", "-c", command)
	cmd.Stdout, cmd.Stderr = jc.Output, jc.Output
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = append(os.Environ(),
		"CLOVER_JOB="+jc.Job,
		"CLOVER_EXECUTION="+jc.ExecutionID,
		"CLOVER_CLIENT="+jc.Client,
		"CLOVER_SCHEDULED_AT="+jc.ScheduledAt.UTC().Format(time.RFC3339),
		"CLOVER_ATTEMPT="+strconv.Itoa(jc.Attempt),
		"CLOVER_RUN="+strconv.Itoa(max(jc.Run, 1)),
	)
	if sh := jc.Shard; sh != nil {
		cmd.Env = append(cmd.Env,
			"CLOVER_SHARD_INDEX="+strconv.Itoa(sh.Index),
			"CLOVER_SHARD_TOTAL="+strconv.Itoa(sh.Total),
			"CLOVER_SHARD_ITEM="+sh.Item,
		)
	}
	for k, v := range jc.Params {
		if k != "command" {
			cmd.Env = append(cmd.Env, "CLOVER_PARAM_"+strings.ToUpper(k)+"="+v)
		}
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return ctx.Err()
	}
}
