package schedule

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// firstFires returns the first n fire times of expr in tz strictly after from, formatted by formatAll.
func firstFires(t *testing.T, expr, tz, from string, n int) []string {
	t.Helper()
	s := mustParse(t, expr, tz)
	var got []time.Time
	for f := s.Next(mustTime(t, from)); !f.IsZero() && len(got) < n; f = s.Next(f) {
		got = append(got, f)
	}
	return formatAll(got)
}

// January 2026 starts on a Thursday; February and March 2026 on a Sunday; January 2027 on a Friday.
func TestDayOfWeekNumbering(t *testing.T) {
	const from = "2026-01-01T00:00:00Z"
	// Days of the first months of 2026 at noon UTC.
	day := func(ds ...string) []string {
		out := make([]string, len(ds))
		for i, d := range ds {
			out[i] = "2026-" + d + "T12:00:00Z"
		}
		return out
	}
	tests := map[string]struct {
		// spec
		expr string
		// expectations: the first fire times after from
		want []string
	}{
		// With seconds (6 or 7 fields): Quartz, 1 = SUN ... 7 = SAT.
		"quartz 1 is Sunday":               {expr: "0 0 12 ? * 1", want: day("01-04", "01-11", "01-18")},
		"quartz 2 is Monday":               {expr: "0 0 12 ? * 2", want: day("01-05", "01-12", "01-19")},
		"quartz 7 is Saturday":             {expr: "0 0 12 ? * 7", want: day("01-03", "01-10", "01-17")},
		"quartz 2-6 is MON-FRI":            {expr: "0 0 12 ? * 2-6", want: day("01-01", "01-02", "01-05", "01-06", "01-07", "01-08", "01-09", "01-12")},
		"quartz 1,7 is the weekend":        {expr: "0 0 12 ? * 1,7", want: day("01-03", "01-04", "01-10", "01-11")},
		"quartz 1-7 is every day":          {expr: "0 0 12 ? * 1-7", want: day("01-01", "01-02", "01-03", "01-04")},
		"quartz 7-1 wraps: SAT-SUN":        {expr: "0 0 12 ? * 7-1", want: day("01-03", "01-04", "01-10", "01-11")},
		"quartz 6-2 wraps: FRI-MON":        {expr: "0 0 12 ? * 6-2", want: day("01-02", "01-03", "01-04", "01-05", "01-09")},
		"quartz */2 is SUN,TUE,THU,SAT":    {expr: "0 0 12 ? * */2", want: day("01-01", "01-03", "01-04", "01-06", "01-08")},
		"quartz 2/2 is MON,WED,FRI":        {expr: "0 0 12 ? * 2/2", want: day("01-02", "01-05", "01-07", "01-09")},
		"quartz 2-6/2 is MON,WED,FRI":      {expr: "0 0 12 ? * 2-6/2", want: day("01-02", "01-05", "01-07", "01-09")},
		"quartz 6-2/2 wraps: FRI,SUN":      {expr: "0 0 12 ? * 6-2/2", want: day("01-02", "01-04", "01-09", "01-11")},
		"quartz 6#3 is the third Friday":   {expr: "0 0 12 ? * 6#3", want: day("01-16", "02-20", "03-20")},
		"quartz 1#1 is the first Sunday":   {expr: "0 0 12 ? * 1#1", want: day("01-04", "02-01", "03-01")},
		"quartz 7#5 is the fifth Saturday": {expr: "0 0 12 ? * 7#5", want: day("01-31", "05-30", "08-29")},
		"quartz 6L is the last Friday":     {expr: "0 0 12 ? * 6L", want: day("01-30", "02-27", "03-27")},
		"quartz 1L is the last Sunday":     {expr: "0 0 12 ? * 1L", want: day("01-25", "02-22", "03-29")},
		"quartz 7L is the last Saturday":   {expr: "0 0 12 ? * 7l", want: day("01-31", "02-28", "03-28")},
		"quartz L alone is Saturday":       {expr: "0 0 12 ? * L", want: day("01-03", "01-10", "01-17")},
		"quartz L in a list":               {expr: "0 0 12 ? * 2,L", want: day("01-03", "01-05", "01-10")},
		"quartz with a year":               {expr: "0 0 12 ? * 6#3 2027", want: []string{"2027-01-15T12:00:00Z", "2027-02-19T12:00:00Z", "2027-03-19T12:00:00Z"}},
		"quartz names: FRI#3":              {expr: "0 0 12 ? * FRI#3", want: day("01-16", "02-20", "03-20")},
		"quartz names: MON-FRI":            {expr: "0 0 12 ? * MON-FRI", want: day("01-01", "01-02", "01-05", "01-06")},
		"quartz names: SUN-SAT":            {expr: "0 0 12 ? * SUN-SAT", want: day("01-01", "01-02", "01-03", "01-04")},
		"quartz names: SATL":               {expr: "0 0 12 ? * SATL", want: day("01-31", "02-28", "03-28")},
		// Classic 5 fields: Unix, 0 and 7 = SUN, 1 = MON ... 6 = SAT.
		"unix 0 is Sunday":             {expr: "0 12 * * 0", want: day("01-04", "01-11", "01-18")},
		"unix 7 is Sunday":             {expr: "0 12 * * 7", want: day("01-04", "01-11", "01-18")},
		"unix 1 is Monday":             {expr: "0 12 * * 1", want: day("01-05", "01-12", "01-19")},
		"unix 6 is Saturday":           {expr: "0 12 * * 6", want: day("01-03", "01-10", "01-17")},
		"unix 1-5 is MON-FRI":          {expr: "0 12 * * 1-5", want: day("01-01", "01-02", "01-05", "01-06", "01-07", "01-08", "01-09", "01-12")},
		"unix 0,6 is the weekend":      {expr: "0 12 * * 0,6", want: day("01-03", "01-04", "01-10", "01-11")},
		"unix 0-7 is every day":        {expr: "0 12 * * 0-7", want: day("01-01", "01-02", "01-03", "01-04")},
		"unix 5-7 is FRI-SUN":          {expr: "0 12 * * 5-7", want: day("01-02", "01-03", "01-04", "01-09")},
		"unix 7-7 is Sunday":           {expr: "0 12 * * 7-7", want: day("01-04", "01-11", "01-18")},
		"unix 7-1 is SUN-MON":          {expr: "0 12 * * 7-1", want: day("01-04", "01-05", "01-11")},
		"unix 5-1 wraps: FRI-MON":      {expr: "0 12 * * 5-1", want: day("01-02", "01-03", "01-04", "01-05", "01-09")},
		"unix */2 is SUN,TUE,THU,SAT":  {expr: "0 12 * * */2", want: day("01-01", "01-03", "01-04", "01-06", "01-08")},
		"unix 1/2 is MON,WED,FRI":      {expr: "0 12 * * 1/2", want: day("01-02", "01-05", "01-07", "01-09")},
		"unix 1-5/2 is MON,WED,FRI":    {expr: "0 12 * * 1-5/2", want: day("01-02", "01-05", "01-07", "01-09")},
		"unix 5#3 is the third Friday": {expr: "0 12 * * 5#3", want: day("01-16", "02-20", "03-20")},
		"unix 7#1 is the first Sunday": {expr: "0 12 * * 7#1", want: day("01-04", "02-01", "03-01")},
		"unix 5L is the last Friday":   {expr: "0 12 * * 5L", want: day("01-30", "02-27", "03-27")},
		"unix 0L is the last Sunday":   {expr: "0 12 * * 0L", want: day("01-25", "02-22", "03-29")},
		"unix 7L is the last Sunday":   {expr: "0 12 * * 7L", want: day("01-25", "02-22", "03-29")},
		"unix L alone is Saturday":     {expr: "0 12 * * L", want: day("01-03", "01-10", "01-17")},
		"unix names: FRI#3":            {expr: "0 12 * * FRI#3", want: day("01-16", "02-20", "03-20")},
		"unix names: MON-FRI":          {expr: "0 12 * * MON-FRI", want: day("01-01", "01-02", "01-05", "01-06")},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := firstFires(t, tc.expr, "", from, len(tc.want)); !slices.Equal(got, tc.want) {
				t.Errorf("%q from %s:\n got %q\nwant %q", tc.expr, from, got, tc.want)
			}
		})
	}
}

// TestQuartzMatchesUnix checks, over every single day, range and stepped range of the week, that Quartz
// number q and Unix number q-1 name the same day.
func TestQuartzMatchesUnix(t *testing.T) {
	type pair struct{ quartz, unix string }
	var pairs []pair
	for a := 0; a < 7; a++ {
		pairs = append(pairs,
			pair{fmt.Sprint(a + 1), fmt.Sprint(a)},
			pair{fmt.Sprintf("%dL", a+1), fmt.Sprintf("%dL", a)},
			pair{fmt.Sprintf("%d#2", a+1), fmt.Sprintf("%d#2", a)},
			pair{fmt.Sprintf("%d/3", a+1), fmt.Sprintf("%d/3", a)},
		)
		for b := 0; b < 7; b++ {
			for step := 1; step <= 3; step++ {
				pairs = append(pairs, pair{fmt.Sprintf("%d-%d/%d", a+1, b+1, step), fmt.Sprintf("%d-%d/%d", a, b, step)})
			}
		}
	}
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	to := from.AddDate(0, 2, 0)
	for _, p := range pairs {
		q, _ := mustParse(t, "0 0 12 ? * "+p.quartz, "").Between(from, to, 100)
		u, _ := mustParse(t, "0 12 * * "+p.unix, "").Between(from, to, 100)
		if len(q) == 0 || !slices.EqualFunc(q, u, time.Time.Equal) {
			t.Errorf("Quartz %q fires %q, Unix %q fires %q", p.quartz, formatAll(q), p.unix, formatAll(u))
		}
	}
}

func TestLastDayOffset(t *testing.T) {
	tests := map[string]struct {
		// spec
		expr, tz string
		// environment
		from string
		// expectations: the first fire times after from; all of them if final
		want  []string
		final bool
	}{
		"L-0 is L": {expr: "0 0 12 L-0 * ?", from: "2026-01-01T00:00:00Z",
			want: []string{"2026-01-31T12:00:00Z", "2026-02-28T12:00:00Z", "2026-03-31T12:00:00Z"}},
		"L-3": {expr: "0 0 12 L-3 * ?", from: "2026-01-01T00:00:00Z",
			want: []string{"2026-01-28T12:00:00Z", "2026-02-25T12:00:00Z", "2026-03-28T12:00:00Z"}},
		"lower case": {expr: "0 0 12 l-3 * ?", from: "2026-01-01T00:00:00Z",
			want: []string{"2026-01-28T12:00:00Z", "2026-02-25T12:00:00Z", "2026-03-28T12:00:00Z"}},
		"L-1 in a leap year": {expr: "0 0 12 L-1 * ?", from: "2028-01-01T00:00:00Z",
			want: []string{"2028-01-30T12:00:00Z", "2028-02-28T12:00:00Z", "2028-03-30T12:00:00Z"}},
		"L-30 only in months of 31 days": {expr: "0 0 12 L-30 * ?", from: "2026-01-01T00:00:00Z",
			want: []string{"2026-01-01T12:00:00Z", "2026-03-01T12:00:00Z", "2026-05-01T12:00:00Z", "2026-07-01T12:00:00Z"}},
		"L-2 in February only": {expr: "0 0 12 L-2 FEB ?", from: "2026-01-01T00:00:00Z",
			want: []string{"2026-02-26T12:00:00Z", "2027-02-26T12:00:00Z", "2028-02-27T12:00:00Z"}},
		"L-3W: a Saturday moves to Friday": {expr: "0 0 12 L-3W * ?", from: "2026-01-01T00:00:00Z",
			want: []string{"2026-01-28T12:00:00Z", "2026-02-25T12:00:00Z", "2026-03-27T12:00:00Z"}},
		"L-6W: a Sunday moves to Monday": {expr: "0 0 12 L-6W * ?", from: "2026-01-01T00:00:00Z",
			want: []string{"2026-01-26T12:00:00Z", "2026-02-23T12:00:00Z", "2026-03-25T12:00:00Z"}},
		"L-0W: a last-day Sunday moves back to Friday": {expr: "0 0 12 L-0W * ?", from: "2026-05-01T00:00:00Z",
			want: []string{"2026-05-29T12:00:00Z", "2026-06-30T12:00:00Z", "2026-07-31T12:00:00Z"}},
		"L-30W: a first-day Saturday moves on to Monday": {expr: "0 0 12 L-30W * ?", from: "2026-07-01T00:00:00Z",
			want: []string{"2026-07-01T12:00:00Z", "2026-08-03T12:00:00Z", "2026-10-01T12:00:00Z"}},
		"in a list with a day": {expr: "0 0 12 1,L-1 * ?", from: "2026-01-01T00:00:00Z",
			want: []string{"2026-01-01T12:00:00Z", "2026-01-30T12:00:00Z", "2026-02-01T12:00:00Z", "2026-02-27T12:00:00Z"}},
		"in a list with L": {expr: "0 0 12 L,L-1 * ?", from: "2026-01-01T00:00:00Z",
			want: []string{"2026-01-30T12:00:00Z", "2026-01-31T12:00:00Z", "2026-02-27T12:00:00Z", "2026-02-28T12:00:00Z"}},
		"two offsets": {expr: "0 0 12 L-7,L-2 * ?", from: "2026-01-01T00:00:00Z",
			want: []string{"2026-01-24T12:00:00Z", "2026-01-29T12:00:00Z", "2026-02-21T12:00:00Z", "2026-02-26T12:00:00Z"}},
		"or a day of the week": {expr: "0 0 12 L-3 * MON", from: "2026-01-01T00:00:00Z",
			want: []string{"2026-01-05T12:00:00Z", "2026-01-12T12:00:00Z", "2026-01-19T12:00:00Z", "2026-01-26T12:00:00Z", "2026-01-28T12:00:00Z", "2026-02-02T12:00:00Z"}},
		"several times a day": {expr: "0 0 */12 L-1 * ?", from: "2026-01-30T00:00:00Z",
			want: []string{"2026-01-30T12:00:00Z", "2026-02-27T00:00:00Z", "2026-02-27T12:00:00Z"}},
		"from inside the day": {expr: "0 30 * L-1 * ?", from: "2026-01-30T22:45:00Z",
			want: []string{"2026-01-30T23:30:00Z", "2026-02-27T00:30:00Z"}},
		"5 fields": {expr: "0 12 L-2 * *", from: "2026-01-01T00:00:00Z",
			want: []string{"2026-01-29T12:00:00Z", "2026-02-26T12:00:00Z", "2026-03-29T12:00:00Z"}},
		"with a year": {expr: "0 0 12 L-3 * ? 2027", from: "2026-01-01T00:00:00Z",
			want: []string{"2027-01-28T12:00:00Z", "2027-02-25T12:00:00Z", "2027-03-28T12:00:00Z"}},
		"until 2099": {expr: "0 0 12 L-3 DEC ?", from: "2098-01-01T00:00:00Z",
			want: []string{"2098-12-28T12:00:00Z", "2099-12-28T12:00:00Z"}, final: true},
		"in a zone": {expr: "0 0 9 L-1 * ?", tz: "Asia/Tokyo", from: "2026-01-01T00:00:00Z",
			want: []string{"2026-01-30T09:00:00+09:00", "2026-02-27T09:00:00+09:00"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			n := len(tc.want)
			if tc.final {
				n++ // to see that nothing follows
			}
			if got := firstFires(t, tc.expr, tc.tz, tc.from, n); !slices.Equal(got, tc.want) {
				t.Errorf("%q from %s:\n got %q\nwant %q", tc.expr, tc.from, got, tc.want)
			}
		})
	}
}

// TestLastDayOffsetEveryDay checks L-n and L-nW for every n against a walk over every day of three years.
func TestLastDayOffsetEveryDay(t *testing.T) {
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	to := time.Date(2029, 1, 1, 0, 0, 0, 0, time.UTC)
	for n := 0; n <= 30; n++ {
		for _, w := range []string{"", "W"} {
			expr := fmt.Sprintf("0 0 12 L-%d%s * ?", n, w)
			var want []time.Time
			for d := from; d.Before(to); d = d.AddDate(0, 0, 1) {
				last := d.AddDate(0, 1, -d.Day()).Day()
				target := time.Date(d.Year(), d.Month(), last-n, 12, 0, 0, 0, time.UTC)
				if last-n < 1 {
					continue
				}
				if w == "W" {
					switch wd := target.Weekday(); {
					case wd == time.Saturday && target.Day() == 1:
						target = target.AddDate(0, 0, 2)
					case wd == time.Saturday:
						target = target.AddDate(0, 0, -1)
					case wd == time.Sunday && target.Day() == last:
						target = target.AddDate(0, 0, -2)
					case wd == time.Sunday:
						target = target.AddDate(0, 0, 1)
					}
				}
				if target.Day() == d.Day() {
					want = append(want, target)
				}
			}
			got, _ := mustParse(t, expr, "").Between(from, to, 1000)
			if !slices.EqualFunc(got, want, time.Time.Equal) {
				t.Errorf("%q:\n got %q\nwant %q", expr, formatAll(got), formatAll(want))
			}
		}
	}
}
