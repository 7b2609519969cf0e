package schedule

import (
	"slices"
	"testing"
)

// The 2026 transitions (checked against the zone database with Python's zoneinfo):
//   - America/New_York: 2026-03-08 01:59:59 EST -> 03:00:00 EDT (07:00Z); 2026-11-01 01:59:59 EDT -> 01:00:00 EST (06:00Z).
//   - Europe/London:    2026-03-29 00:59:59 GMT -> 02:00:00 BST (01:00Z); 2026-10-25 01:59:59 BST -> 01:00:00 GMT (01:00Z).
func TestDaylightSaving(t *testing.T) {
	tests := map[string]struct {
		// spec
		expr, tz string
		// environment: the window (from, to]
		from, to string
		// expectations
		want []string
	}{
		"NY spring: nonexistent 02:30 fires once at 03:00": {
			expr: "0 30 2 * * ?", tz: "America/New_York", from: "2026-03-07T00:00:00-05:00", to: "2026-03-10T00:00:00-04:00",
			want: []string{"2026-03-07T02:30:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"},
		},
		"NY spring: nonexistent 02:00 fires at 03:00": {
			expr: "0 0 2 * * ?", tz: "America/New_York", from: "2026-03-07T00:00:00-05:00", to: "2026-03-10T00:00:00-04:00",
			want: []string{"2026-03-07T02:00:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-09T02:00:00-04:00"},
		},
		"NY spring: 03:00 fires once": {
			expr: "0 0 3 * * ?", tz: "America/New_York", from: "2026-03-08T00:00:00-05:00", to: "2026-03-09T00:00:00-04:00",
			want: []string{"2026-03-08T03:00:00-04:00"},
		},
		"NY spring: every 30 minutes, the gap collapses into 03:00": {
			expr: "0 */30 * * * ?", tz: "America/New_York", from: "2026-03-08T01:00:00-05:00", to: "2026-03-08T04:00:00-04:00",
			want: []string{"2026-03-08T01:30:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T03:30:00-04:00", "2026-03-08T04:00:00-04:00"},
		},
		"NY spring: hourly": {
			expr: "0 0 * * * ?", tz: "America/New_York", from: "2026-03-08T00:00:00-05:00", to: "2026-03-08T04:00:00-04:00",
			want: []string{"2026-03-08T01:00:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T04:00:00-04:00"},
		},
		"NY spring: every second across the jump": {
			expr: "* * * * * ?", tz: "America/New_York", from: "2026-03-08T01:59:58-05:00", to: "2026-03-08T03:00:02-04:00",
			want: []string{"2026-03-08T01:59:59-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T03:00:01-04:00", "2026-03-08T03:00:02-04:00"},
		},
		"NY autumn: repeated 01:30 fires once, at the first": {
			expr: "0 30 1 * * ?", tz: "America/New_York", from: "2026-10-31T00:00:00-04:00", to: "2026-11-03T00:00:00-05:00",
			want: []string{"2026-10-31T01:30:00-04:00", "2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"},
		},
		"NY autumn: hourly skips the repeated 01:00": {
			expr: "0 0 * * * ?", tz: "America/New_York", from: "2026-11-01T00:00:00-04:00", to: "2026-11-01T03:00:00-05:00",
			want: []string{"2026-11-01T01:00:00-04:00", "2026-11-01T02:00:00-05:00", "2026-11-01T03:00:00-05:00"},
		},
		"NY autumn: every 20 minutes": {
			expr: "0 */20 * * * ?", tz: "America/New_York", from: "2026-11-01T01:00:00-04:00", to: "2026-11-01T02:20:00-05:00",
			want: []string{"2026-11-01T01:20:00-04:00", "2026-11-01T01:40:00-04:00", "2026-11-01T02:00:00-05:00", "2026-11-01T02:20:00-05:00"},
		},
		"NY autumn: from inside the second 01:00 hour": {
			expr: "0 */20 * * * ?", tz: "America/New_York", from: "2026-11-01T01:10:00-05:00", to: "2026-11-01T02:20:00-05:00",
			want: []string{"2026-11-01T02:00:00-05:00", "2026-11-01T02:20:00-05:00"},
		},
		"NY autumn: @every 1h is absolute": {
			expr: "@every 1h", tz: "America/New_York", from: "2026-11-01T00:00:00-04:00", to: "2026-11-01T03:00:00-05:00",
			want: []string{"2026-11-01T01:00:00-04:00", "2026-11-01T01:00:00-05:00", "2026-11-01T02:00:00-05:00", "2026-11-01T03:00:00-05:00"},
		},
		"NY spring: @every 1h is absolute": {
			expr: "@every 1h", tz: "America/New_York", from: "2026-03-08T00:00:00-05:00", to: "2026-03-08T04:00:00-04:00",
			want: []string{"2026-03-08T01:00:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T04:00:00-04:00"},
		},
		"NY spring: L-23 is March 8, nonexistent 02:30 fires at 03:00": {
			expr: "0 30 2 L-23 * ?", tz: "America/New_York", from: "2026-03-01T00:00:00-05:00", to: "2026-04-30T00:00:00-04:00",
			want: []string{"2026-03-08T03:00:00-04:00", "2026-04-07T02:30:00-04:00"},
		},
		"NY autumn: L-29 is November 1, repeated 01:30 fires once": {
			expr: "0 30 1 L-29 * ?", tz: "America/New_York", from: "2026-10-01T00:00:00-04:00", to: "2026-11-30T00:00:00-05:00",
			want: []string{"2026-10-02T01:30:00-04:00", "2026-11-01T01:30:00-04:00"},
		},
		"NY spring: Quartz 1#2, the second Sunday": {
			expr: "0 30 2 ? * 1#2", tz: "America/New_York", from: "2026-02-01T00:00:00-05:00", to: "2026-04-01T00:00:00-04:00",
			want: []string{"2026-02-08T02:30:00-05:00", "2026-03-08T03:00:00-04:00"},
		},
		"London spring: nonexistent 01:30 fires at 02:00 BST": {
			expr: "0 30 1 * * ?", tz: "Europe/London", from: "2026-03-28T00:00:00Z", to: "2026-03-31T00:00:00+01:00",
			want: []string{"2026-03-28T01:30:00Z", "2026-03-29T02:00:00+01:00", "2026-03-30T01:30:00+01:00"},
		},
		"London spring: nonexistent 01:00 fires at 02:00 BST": {
			expr: "0 0 1 * * ?", tz: "Europe/London", from: "2026-03-29T00:00:00Z", to: "2026-03-30T00:00:00+01:00",
			want: []string{"2026-03-29T02:00:00+01:00"},
		},
		"London spring: two nonexistent times collapse": {
			expr: "0 15,45 * * * ?", tz: "Europe/London", from: "2026-03-29T00:00:00Z", to: "2026-03-29T02:30:00+01:00",
			want: []string{"2026-03-29T00:15:00Z", "2026-03-29T00:45:00Z", "2026-03-29T02:00:00+01:00", "2026-03-29T02:15:00+01:00"},
		},
		"London autumn: repeated 01:30 fires once, at the first": {
			expr: "0 30 1 * * ?", tz: "Europe/London", from: "2026-10-24T00:00:00+01:00", to: "2026-10-27T00:00:00Z",
			want: []string{"2026-10-24T01:30:00+01:00", "2026-10-25T01:30:00+01:00", "2026-10-26T01:30:00Z"},
		},
		"London autumn: hourly skips the repeated 01:00": {
			expr: "0 0 * * * ?", tz: "Europe/London", from: "2026-10-25T00:00:00+01:00", to: "2026-10-25T03:00:00Z",
			want: []string{"2026-10-25T01:00:00+01:00", "2026-10-25T02:00:00Z", "2026-10-25T03:00:00Z"},
		},
		"London autumn: @daily unaffected": {
			expr: "@daily", tz: "Europe/London", from: "2026-10-24T00:00:00+01:00", to: "2026-10-27T00:00:00Z",
			want: []string{"2026-10-25T00:00:00+01:00", "2026-10-26T00:00:00Z", "2026-10-27T00:00:00Z"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s, err := Parse(tc.expr, tc.tz)
			if err != nil {
				t.Fatal(err)
			}
			from, to := mustTime(t, tc.from), mustTime(t, tc.to)
			got, truncated := s.Between(from, to, 100)
			if g := formatAll(got); truncated || !slices.Equal(g, tc.want) {
				t.Errorf("Between(%s, %s):\n got %q (truncated %v)\nwant %q", tc.from, tc.to, g, truncated, tc.want)
			}
			// Latest agrees with Between at every fire time and just before it.
			for i, f := range got {
				if l := s.Latest(from, f); !l.Equal(f) {
					t.Errorf("Latest(%s, %s) = %s, want itself", tc.from, f.Format(timeFmt), l.Format(timeFmt))
				}
				want := from
				if i > 0 {
					want = got[i-1]
				}
				if l := s.Latest(from, f.Add(-1)); !l.Equal(want) && !(i == 0 && l.IsZero()) {
					t.Errorf("Latest(%s, %s - 1ns) = %s, want %s", tc.from, f.Format(timeFmt), l.Format(timeFmt), want.Format(timeFmt))
				}
			}
		})
	}
}

const timeFmt = "2006-01-02T15:04:05.999999999Z07:00"
