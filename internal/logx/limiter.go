package logx

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Limiter lets at most one line through per interval and says how many it held back, so that a flood of
// bad input (garbage frames from a misconfigured peer) cannot flood the log. The zero value allows one line
// a second.
type Limiter struct {
	Interval time.Duration

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// Warn logs msg at warn level unless a line went out less than Interval ago.
func (l *Limiter) Warn(logger *slog.Logger, msg string, args ...any) {
	l.log(logger, slog.LevelWarn, msg, args...)
}

// Error logs msg at error level unless a line went out less than Interval ago.
func (l *Limiter) Error(logger *slog.Logger, msg string, args ...any) {
	l.log(logger, slog.LevelError, msg, args...)
}

func (l *Limiter) log(logger *slog.Logger, level slog.Level, msg string, args ...any) {
	interval := l.Interval
	if interval == 0 {
		interval = time.Second
	}
	l.mu.Lock()
	now := time.Now()
	if now.Sub(l.last) < interval {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	l.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed_since_last", n)
	}
	logger.Log(context.Background(), level, msg, args...)
}
