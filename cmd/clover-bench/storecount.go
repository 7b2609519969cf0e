package main

import (
	"context"
	"fmt"
	"time"

	"github.com/clover-sched/clover/integration"
)

// countFinished counts the executions that finished (on their client's clock) in [from, to) and whose end
// is recorded, each once (unlike the servers' clover_executions_finished_total, which counts every result
// report recorded, re-sent ones too). It is run after the window because it reads every history bucket.
func countFinished(c *integration.Cluster, from, to time.Time) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	ids, err := c.Store().FinishedBetween(ctx, from, to)
	if err != nil {
		return 0, fmt.Errorf("count finished executions: %w", err)
	}
	return int64(len(ids)), nil
}
