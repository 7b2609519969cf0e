package zksession

import (
	"context"
	"fmt"
	"log/slog"
)

// publish hands st to a subscriber without blocking: when its buffer is full the oldest queued state is
// dropped to make room. Only onEvent sends, under Session.mu, so nobody else can fill the freed slot.
func publish(ch chan State, st State) {
	for {
		select {
		case ch <- st:
			return
		default:
		}
		select {
		case <-ch:
		default: // the subscriber just took one: retry the send
		}
	}
}

// zkLogger routes go-zookeeper's Printf logging to slog at Debug: it reports every connect attempt, and the
// state changes that matter are logged by onEvent.
type zkLogger struct{ l *slog.Logger }

func (z zkLogger) Printf(format string, args ...any) {
	z.l.Log(context.Background(), slog.LevelDebug, "zk: "+fmt.Sprintf(format, args...))
}
