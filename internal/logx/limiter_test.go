package logx

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestLimiterHoldsBackAFlood(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	l := Limiter{Interval: time.Hour}
	for range 100 {
		l.Warn(logger, "bad frame")
	}
	if n := strings.Count(buf.String(), "bad frame"); n != 1 {
		t.Fatalf("%d lines for 100 warnings within the interval, want 1", n)
	}
	l.last = time.Time{} // the interval has passed
	l.Warn(logger, "bad frame")
	if !strings.Contains(buf.String(), "suppressed_since_last=99") {
		t.Fatalf("the next line does not count what was held back:\n%s", buf.String())
	}
}
