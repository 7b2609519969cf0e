package election

import (
	"context"
	"time"
)

// Lead campaigns until ctx ends and calls lead for each term won, with a context that ends when the term
// does (ZooKeeper can no longer vouch for it) or when ctx ends. When lead returns, Lead resigns (so that
// another candidate leads meanwhile) and campaigns again: the next term has a larger epoch, so leadership
// lost and regained is two terms, never a continuation. A lead that returns an error pauses the campaign
// for a moment, to let the other candidates take over. The server's leader loop and the monitors' active
// monitor both run on it.
func (e *Election) Lead(ctx context.Context, lead func(ctx context.Context, term *Term) error) {
	backoff := minBackoff
	for ctx.Err() == nil {
		term, err := e.Campaign(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			e.logger.Warn("campaign failed; retrying", "err", err, "in", backoff)
			sleep(ctx, backoff)
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		backoff = minBackoff
		termCtx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-term.Done():
			case <-termCtx.Done():
			}
			cancel()
		}()
		err = lead(termCtx, term)
		cancel()
		resignCtx, done := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		_ = e.Resign(resignCtx)
		done()
		if err != nil && ctx.Err() == nil {
			sleep(ctx, handOver)
		}
	}
}

const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
	// handOver is how long a candidate whose term failed waits before it queues again.
	handOver = 200 * time.Millisecond
)

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
