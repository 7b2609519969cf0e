package schedule

import (
	"errors"
	"testing"
	"time"
)

var fuzzZones = []string{"", "America/New_York", "Europe/London", "Asia/Kolkata", "Australia/Lord_Howe", "Pacific/Chatham"}

func FuzzParse(f *testing.F) {
	seeds := []string{
		"0 30 2 * * ?", "0 0 12 ? * MON-FRI", "*/15 * * * *", "0 0 0 1 1 ? 2027-2030", "0 0 12 LW * ?",
		"0 0 12 15W * ?", "0 0 8 ? * MON#2", "0 0 17 ? * 5L", "0 0 22-2 * * ?", "@daily", "@every 90s",
		"@at 2026-03-08T02:30:00-05:00", "0 0 25 * * ?", "@every 1.5s", "", "1-,/ * * * * ?", "0 0 0 31 2 ?",
		"* * * * * ?", "0 */20 * * * ?", "0 0 12 ? * 6#3", "0 0 12 ? * 2-6/2", "0 0 12 ? * L", "0 12 * * 5L",
		"0 12 * * 7-1", "0 30 2 L-23 * ?", "0 0 12 L-3W,1 * MON", "0 0 0 L-30 2 ?", "0 0 0 ? * 0",
	}
	for i, s := range seeds {
		f.Add(s, uint8(i), int64(1772953200+i*3600)) // around 2026-03-08
	}
	f.Add("0 30 1 * * ?", uint8(1), int64(1793512800)) // 2026-11-01T01:00:00-05:00, in the repeated hour
	f.Fuzz(func(t *testing.T, expr string, zone uint8, sec int64) {
		s, err := Parse(expr, fuzzZones[int(zone)%len(fuzzZones)])
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Parse(%q) error %T is not a *ParseError", expr, err)
			}
			return
		}
		at := time.Unix(sec, 0)
		n := s.Next(at)
		if n.IsZero() {
			return
		}
		if !n.After(at) {
			t.Fatalf("%q: Next(%s) = %s, not after", expr, at, n)
		}
		if n.Nanosecond() != 0 || n.Location() != s.Location() {
			t.Fatalf("%q: Next(%s) = %s, not a whole second in %v", expr, at, n, s.Location())
		}
		// n is the only fire time in (at, n].
		if l := s.Latest(at, n); !l.Equal(n) {
			t.Fatalf("%q: Latest(%s, %s) = %s, want %s", expr, at, n, l, n)
		}
	})
}
