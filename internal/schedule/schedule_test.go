package schedule

import (
	"slices"
	"sync"
	"testing"
	"time"
)

func mustParse(t testing.TB, expr, tz string) *Schedule {
	t.Helper()
	s, err := Parse(expr, tz)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNext(t *testing.T) {
	tests := map[string]struct {
		// spec
		expr, tz string
		// environment
		at time.Time
		// expectations
		want string // "" for the zero time
	}{
		"cron strictly after an exact fire time":   {expr: "0 * * * * ?", at: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), want: "2026-01-01T00:01:00Z"},
		"cron from a fraction of a second":         {expr: "* * * * * ?", at: time.Date(2026, 1, 1, 0, 0, 0, 500, time.UTC), want: "2026-01-01T00:00:01Z"},
		"cron from another zone":                   {expr: "0 0 9 * * ?", tz: "Europe/London", at: time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC), want: "2026-06-02T09:00:00+01:00"},
		"cron from the zero time":                  {expr: "0 0 0 1 1 ?", at: time.Time{}, want: "1970-01-01T00:00:00Z"},
		"cron after 2099":                          {expr: "@yearly", at: time.Date(2099, 6, 1, 0, 0, 0, 0, time.UTC), want: ""},
		"@every strictly after an exact multiple":  {expr: "@every 10s", at: time.Unix(1767225600, 0), want: "2026-01-01T00:00:10Z"},
		"@every from a fraction past a multiple":   {expr: "@every 10s", at: time.Unix(1767225600, 1), want: "2026-01-01T00:00:10Z"},
		"@every from a fraction before a multiple": {expr: "@every 10s", at: time.Unix(1767225599, 999999999), want: "2026-01-01T00:00:00Z"},
		"@every before the epoch":                  {expr: "@every 7s", at: time.Unix(-10, 0), want: "1969-12-31T23:59:53Z"},
		"@every returns the schedule's zone":       {expr: "@every 1h", tz: "Asia/Kolkata", at: time.Date(2026, 1, 1, 0, 10, 0, 0, time.UTC), want: "2026-01-01T06:30:00+05:30"},
		"@at before it":                            {expr: "@at 2026-05-01T12:00:00+02:00", at: time.Date(2026, 5, 1, 9, 59, 59, 0, time.UTC), want: "2026-05-01T10:00:00Z"},
		"@at at it":                                {expr: "@at 2026-05-01T12:00:00+02:00", at: time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC), want: ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := mustParse(t, tc.expr, tc.tz)
			got := s.Next(tc.at)
			switch {
			case tc.want == "" && !got.IsZero():
				t.Errorf("Next(%s) = %s, want the zero time", tc.at, got)
			case tc.want != "" && got.Format(time.RFC3339) != tc.want:
				t.Errorf("Next(%s) = %s, want %s", tc.at, got.Format(time.RFC3339), tc.want)
			}
		})
	}
}

func TestBetween(t *testing.T) {
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := map[string]struct {
		// spec
		expr string
		// environment
		from, to time.Time
		limit    int
		// expectations
		want      []string
		truncated bool
	}{
		"range excludes from, includes to": {expr: "@every 1m", from: from, to: from.Add(3 * time.Minute), limit: 10,
			want: []string{"2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z", "2026-01-01T00:03:00Z"}},
		"limit cuts off": {expr: "@every 1m", from: from, to: from.Add(3 * time.Minute), limit: 2,
			want: []string{"2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z"}, truncated: true},
		"limit exactly reached is not truncated": {expr: "@every 1m", from: from, to: from.Add(2 * time.Minute), limit: 2,
			want: []string{"2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z"}},
		"zero limit reports that times exist": {expr: "@every 1m", from: from, to: from.Add(time.Hour), limit: 0, truncated: true},
		"nothing in range":                    {expr: "@daily", from: from, to: from.Add(time.Hour), limit: 5},
		"to before from":                      {expr: "@every 1s", from: from, to: from.Add(-time.Hour), limit: 5},
		"cron": {expr: "0 0 12 ? * SAT,SUN", from: from, to: from.AddDate(0, 0, 7), limit: 5,
			want: []string{"2026-01-03T12:00:00Z", "2026-01-04T12:00:00Z"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, truncated := mustParse(t, tc.expr, "").Between(tc.from, tc.to, tc.limit)
			if g := formatAll(got); !slices.Equal(g, tc.want) || truncated != tc.truncated {
				t.Errorf("got %q truncated %v, want %q truncated %v", g, truncated, tc.want, tc.truncated)
			}
		})
	}
}

func TestLatest(t *testing.T) {
	now := time.Date(2026, 6, 15, 10, 20, 30, 400, time.UTC)
	tests := map[string]struct {
		// spec
		expr string
		// environment
		floor, t time.Time
		// expectations
		want string // "" for the zero time
	}{
		"@every 1s, an hour back":        {expr: "@every 1s", floor: now.Add(-time.Hour), t: now, want: "2026-06-15T10:20:30Z"},
		"@every, last fire equals floor": {expr: "@every 1h", floor: time.Date(2026, 6, 15, 10, 0, 0, 0, time.UTC), t: now, want: ""},
		"@every, last fire after floor":  {expr: "@every 1h", floor: time.Date(2026, 6, 15, 9, 59, 59, 0, time.UTC), t: now, want: "2026-06-15T10:00:00Z"},
		"@every, t on a fire time":       {expr: "@every 10s", floor: now.Add(-time.Hour), t: time.Date(2026, 6, 15, 10, 20, 30, 0, time.UTC), want: "2026-06-15T10:20:30Z"},
		"cron every second":              {expr: "* * * * * ?", floor: now.Add(-time.Hour), t: now, want: "2026-06-15T10:20:30Z"},
		"cron years back":                {expr: "0 0 0 1 1 ?", floor: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), t: now, want: "2026-01-01T00:00:00Z"},
		"cron from the zero floor":       {expr: "0 0 0 29 2 ?", floor: time.Time{}, t: now, want: "2024-02-29T00:00:00Z"},
		"cron none in range":             {expr: "@daily", floor: now.Add(-time.Hour), t: now, want: ""},
		"@at inside":                     {expr: "@at 2026-06-15T10:00:00Z", floor: now.Add(-time.Hour), t: now, want: "2026-06-15T10:00:00Z"},
		"@at after t":                    {expr: "@at 2026-06-15T11:00:00Z", floor: now.Add(-time.Hour), t: now, want: ""},
		"@at before floor":               {expr: "@at 2026-06-15T09:00:00Z", floor: now.Add(-time.Hour), t: now, want: ""},
		"floor after t":                  {expr: "* * * * * ?", floor: now, t: now.Add(-time.Hour), want: ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := mustParse(t, tc.expr, "").Latest(tc.floor, tc.t)
			switch {
			case tc.want == "" && !got.IsZero():
				t.Errorf("Latest = %s, want the zero time", got)
			case tc.want != "" && got.Format(time.RFC3339) != tc.want:
				t.Errorf("Latest = %s, want %s", got.Format(time.RFC3339), tc.want)
			}
		})
	}
}

// TestLatestMatchesBetween checks Latest against the last of Between over many windows, DST included.
func TestLatestMatchesBetween(t *testing.T) {
	schedules := []struct{ expr, tz string }{
		{"*/7 */11 * * * ?", "America/New_York"},
		{"*/7 * 1-3 * * ?", "America/New_York"},
		{"0 */13 * * * ?", "Europe/London"},
		{"0 30 1,2 * * ?", "America/New_York"},
		{"0 0 12 LW * ?", "UTC"},
		{"0 */20 1-3 L-23 * ?", "America/New_York"},
		{"0 0 */6 L-3W,L-30 * ?", "Europe/London"},
		{"0 0 12 ? * 1#2", "America/New_York"},
		{"@every 17s", "Europe/London"},
	}
	starts := []time.Time{
		time.Date(2026, 3, 8, 5, 0, 0, 0, time.UTC),
		time.Date(2026, 11, 1, 4, 30, 0, 0, time.UTC),
		time.Date(2026, 3, 29, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 10, 24, 23, 0, 0, 0, time.UTC),
	}
	for _, sc := range schedules {
		s := mustParse(t, sc.expr, sc.tz)
		for _, start := range starts {
			for _, span := range []time.Duration{3 * time.Second, 5 * time.Minute, 3 * time.Hour, 4 * 24 * time.Hour} {
				for _, back := range []time.Duration{time.Second, time.Hour, 100 * time.Hour} {
					floor, end := start.Add(-back), start.Add(span)
					all, _ := s.Between(floor, end, 1<<20)
					var want time.Time
					if len(all) > 0 {
						want = all[len(all)-1]
					}
					if got := s.Latest(floor, end); !got.Equal(want) {
						t.Errorf("%q in %s: Latest(%s, %s) = %s, want %s", sc.expr, sc.tz, floor, end, got, want)
					}
				}
			}
		}
	}
}

// TestConcurrentUse runs under -race: cronexpr's Expression.Next writes to its receiver, and a Schedule
// must still be safe to share.
func TestConcurrentUse(t *testing.T) {
	s := mustParse(t, "0 0 12 L,15 * ?", "America/New_York")
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	want, _ := s.Between(start, start.AddDate(1, 0, 0), 100)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			from := start.AddDate(0, 0, i) // different months, so the day lists differ
			got, _ := s.Between(from, start.AddDate(1, 0, 0), 100)
			if !slices.EqualFunc(got, want[len(want)-len(got):], time.Time.Equal) {
				t.Errorf("goroutine %d: got %v", i, got)
			}
		})
	}
	wg.Wait()
}

func BenchmarkNextCron(b *testing.B) {
	s := mustParse(b, "0 */5 9-17 ? * MON-FRI", "Europe/London")
	t := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	for b.Loop() {
		t = s.Next(t)
		if t.Year() > 2090 {
			t = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
		}
	}
}

func BenchmarkLatestCronHour(b *testing.B) {
	s := mustParse(b, "* * * * * ?", "Europe/London")
	t := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	for b.Loop() {
		s.Latest(t.Add(-time.Hour), t)
	}
}
