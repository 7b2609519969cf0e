package schedule

import (
	"errors"
	"slices"
	"testing"
	"time"
)

// formatAll writes times as RFC 3339 in their own location, so the offset shows which side of a DST
// transition each is on.
func formatAll(ts []time.Time) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Format(time.RFC3339)
	}
	return out
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestParseForms(t *testing.T) {
	const from = "2026-01-01T00:00:00Z" // a Thursday
	tests := map[string]struct {
		// spec
		expr, tz string
		// expectations: the first fire times after from (at most 3), in the schedule's zone
		want []string
	}{
		"quartz 6 fields":             {expr: "0 30 9 ? * MON-FRI", want: []string{"2026-01-01T09:30:00Z", "2026-01-02T09:30:00Z", "2026-01-05T09:30:00Z"}},
		"quartz 7 fields with year":   {expr: "15 0 0 1 1 ? 2027-2028", want: []string{"2027-01-01T00:00:15Z", "2028-01-01T00:00:15Z"}},
		"classic 5 fields":            {expr: "*/15 * * * *", want: []string{"2026-01-01T00:15:00Z", "2026-01-01T00:30:00Z", "2026-01-01T00:45:00Z"}},
		"seconds step":                {expr: "*/20 * * * * ?", want: []string{"2026-01-01T00:00:20Z", "2026-01-01T00:00:40Z", "2026-01-01T00:01:00Z"}},
		"value with step":             {expr: "0 5/20 0 * * ?", want: []string{"2026-01-01T00:05:00Z", "2026-01-01T00:25:00Z", "2026-01-01T00:45:00Z"}},
		"range with step":             {expr: "0 0 9-17/4 * * ?", want: []string{"2026-01-01T09:00:00Z", "2026-01-01T13:00:00Z", "2026-01-01T17:00:00Z"}},
		"star without question mark":  {expr: "0 0 12 * * *", want: []string{"2026-01-01T12:00:00Z", "2026-01-02T12:00:00Z", "2026-01-03T12:00:00Z"}},
		"last day of month L":         {expr: "0 0 12 L * ?", want: []string{"2026-01-31T12:00:00Z", "2026-02-28T12:00:00Z", "2026-03-31T12:00:00Z"}},
		"last weekday LW":             {expr: "0 0 12 LW * ?", want: []string{"2026-01-30T12:00:00Z", "2026-02-27T12:00:00Z", "2026-03-31T12:00:00Z"}},
		"nearest weekday 15W":         {expr: "0 0 12 15W * ?", want: []string{"2026-01-15T12:00:00Z", "2026-02-16T12:00:00Z", "2026-03-16T12:00:00Z"}},
		"second Monday MON#2":         {expr: "0 0 8 ? * MON#2", want: []string{"2026-01-12T08:00:00Z", "2026-02-09T08:00:00Z", "2026-03-09T08:00:00Z"}},
		"last Friday 6L":              {expr: "0 0 17 ? * 6L", want: []string{"2026-01-30T17:00:00Z", "2026-02-27T17:00:00Z", "2026-03-27T17:00:00Z"}},
		"last Friday FRIL":            {expr: "0 0 17 ? * FRIL", want: []string{"2026-01-30T17:00:00Z", "2026-02-27T17:00:00Z", "2026-03-27T17:00:00Z"}},
		"names in any case":           {expr: "0 0 6 1 jan,Jul ?", want: []string{"2026-01-01T06:00:00Z", "2026-07-01T06:00:00Z", "2027-01-01T06:00:00Z"}},
		"full names":                  {expr: "0 0 6 ? * Monday", want: []string{"2026-01-05T06:00:00Z", "2026-01-12T06:00:00Z", "2026-01-19T06:00:00Z"}},
		"range ending in SUN":         {expr: "0 0 0 ? * FRI-SUN", want: []string{"2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z", "2026-01-04T00:00:00Z"}},
		"wrap-around hours":           {expr: "0 0 22-2 * * ?", want: []string{"2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z", "2026-01-01T22:00:00Z"}},
		"wrap-around weekdays":        {expr: "0 0 0 ? * FRI-MON", want: []string{"2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z", "2026-01-04T00:00:00Z"}},
		"wrap-around months":          {expr: "0 0 0 1 NOV-FEB ?", want: []string{"2026-02-01T00:00:00Z", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"}},
		"day of month OR day of week": {expr: "0 0 0 13 * FRI", want: []string{"2026-01-02T00:00:00Z", "2026-01-09T00:00:00Z", "2026-01-13T00:00:00Z"}},
		"extra spaces":                {expr: "  0  0 *   * * ?  ", want: []string{"2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z", "2026-01-01T03:00:00Z"}},
		"@hourly":                     {expr: "@hourly", want: []string{"2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z", "2026-01-01T03:00:00Z"}},
		"@daily":                      {expr: "@daily", want: []string{"2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z", "2026-01-04T00:00:00Z"}},
		"@midnight":                   {expr: "@midnight", want: []string{"2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z", "2026-01-04T00:00:00Z"}},
		"@daily in Tokyo":             {expr: "@daily", tz: "Asia/Tokyo", want: []string{"2026-01-02T00:00:00+09:00", "2026-01-03T00:00:00+09:00", "2026-01-04T00:00:00+09:00"}},
		"@weekly is Sunday":           {expr: "@weekly", want: []string{"2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z", "2026-01-18T00:00:00Z"}},
		"@monthly":                    {expr: "@monthly", want: []string{"2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"}},
		"@yearly":                     {expr: "@yearly", want: []string{"2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z", "2029-01-01T00:00:00Z"}},
		"@annually":                   {expr: "@ANNUALLY", want: []string{"2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z", "2029-01-01T00:00:00Z"}},
		"@every 90s":                  {expr: "@every 90s", want: []string{"2026-01-01T00:01:30Z", "2026-01-01T00:03:00Z", "2026-01-01T00:04:30Z"}},
		"@every 11s is epoch-aligned": {expr: "@every 11s", want: []string{"2026-01-01T00:00:03Z", "2026-01-01T00:00:14Z", "2026-01-01T00:00:25Z"}},
		"@every 24h is midnight UTC":  {expr: "@every 24h", tz: "America/New_York", want: []string{"2026-01-01T19:00:00-05:00", "2026-01-02T19:00:00-05:00", "2026-01-03T19:00:00-05:00"}},
		"@at":                         {expr: "@at 2026-03-08T02:30:00-05:00", tz: "Europe/London", want: []string{"2026-03-08T07:30:00Z"}},
		"@at in the past":             {expr: "@at 2025-12-31T23:59:59Z", want: nil},
		"year in the past":            {expr: "0 0 0 1 1 ? 1999", want: nil},
	}
	start := mustTime(t, from)
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s, err := Parse(tc.expr, tc.tz)
			if err != nil {
				t.Fatalf("Parse(%q, %q): %v", tc.expr, tc.tz, err)
			}
			var got []time.Time
			for n := s.Next(start); !n.IsZero() && len(got) < 3; n = s.Next(n) {
				got = append(got, n)
			}
			if g := formatAll(got); !slices.Equal(g, tc.want) {
				t.Errorf("%q in %q from %s:\n got %q\nwant %q", tc.expr, tc.tz, from, g, tc.want)
			}
			for _, n := range got {
				if n.Location() != s.Location() {
					t.Errorf("%s is in %v, want %v", n, n.Location(), s.Location())
				}
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := map[string]struct {
		// spec
		expr, tz string
		// expectations
		field string
		index int
		msg   string
	}{
		"too few fields":            {expr: "0 0 * *", msg: `schedule "0 0 * *": has 4 fields, want 5 (minute hour day-of-month month day-of-week), 6 (second first) or 7 (second first, year last)`},
		"too many fields":           {expr: "0 0 0 * * ? 2026 x", msg: `schedule "0 0 0 * * ? 2026 x": has 8 fields, want 5 (minute hour day-of-month month day-of-week), 6 (second first) or 7 (second first, year last)`},
		"hour out of range":         {expr: "0 0 25 * * ?", field: "hour", index: 3, msg: `schedule "0 0 25 * * ?": field 3 (hour): value 25 out of range 0-23`},
		"minute in 5 fields":        {expr: "60 * * * *", field: "minute", index: 1, msg: `schedule "60 * * * *": field 1 (minute): value 60 out of range 0-59`},
		"day-of-month out of range": {expr: "0 0 0 32 * ?", field: "day-of-month", index: 4, msg: `schedule "0 0 0 32 * ?": field 4 (day-of-month): value 32 out of range 1-31`},
		"day-of-week out of range":  {expr: "0 0 0 ? * 8", field: "day-of-week", index: 6, msg: `schedule "0 0 0 ? * 8": field 6 (day-of-week): value 8 out of range: Quartz day-of-week is 1-7, 1 = SUN (in expressions with a seconds field)`},
		"year out of range":         {expr: "0 0 0 1 1 ? 2100", field: "year", index: 7, msg: `schedule "0 0 0 1 1 ? 2100": field 7 (year): value 2100 out of range 1970-2099`},
		"not a number":              {expr: "x 0 0 * * ?", field: "second", index: 1, msg: `schedule "x 0 0 * * ?": field 1 (second): "x" is not a number`},
		"unknown month name":        {expr: "0 0 0 1 FOO ?", field: "month", index: 5, msg: `schedule "0 0 0 1 FOO ?": field 5 (month): "FOO" is not a month number or name`},
		"month name in day-of-week": {expr: "0 0 0 ? * JAN", field: "day-of-week", index: 6, msg: `schedule "0 0 0 ? * JAN": field 6 (day-of-week): "JAN" is not a day-of-week number or name`},
		"negative number":           {expr: "0 -5 * * * ?", field: "minute", index: 2, msg: `schedule "0 -5 * * * ?": field 2 (minute): a value is missing`},
		"open range":                {expr: "0 0 1- * * ?", field: "hour", index: 3, msg: `schedule "0 0 1- * * ?": field 3 (hour): a value is missing`},
		"empty list item":           {expr: "0 0 1,,2 * * ?", field: "hour", index: 3, msg: `schedule "0 0 1,,2 * * ?": field 3 (hour): empty list item in "1,,2"`},
		"step zero":                 {expr: "*/0 * * * * ?", field: "second", index: 1, msg: `schedule "*/0 * * * * ?": field 1 (second): step "0" in "*/0" must be 1-60`},
		"step too big":              {expr: "0 0 */25 * * ?", field: "hour", index: 3, msg: `schedule "0 0 */25 * * ?": field 3 (hour): step "25" in "*/25" must be 1-24`},
		"step not a number":         {expr: "0 0 0/x * * ?", field: "hour", index: 3, msg: `schedule "0 0 0/x * * ?": field 3 (hour): step "x" in "0/x" must be 1-24`},
		"question mark in hour":     {expr: "0 0 ? * * *", field: "hour", index: 3, msg: `schedule "0 0 ? * * *": field 3 (hour): '?' is only allowed in day-of-month and day-of-week`},
		"reversed year range":       {expr: "0 0 0 1 1 ? 2030-2026", field: "year", index: 7, msg: `schedule "0 0 0 1 1 ? 2030-2026": field 7 (year): range "2030-2026" is reversed`},
		"week out of range":         {expr: "0 0 0 ? * MON#6", field: "day-of-week", index: 6, msg: `schedule "0 0 0 ? * MON#6": field 6 (day-of-week): "MON#6": week "6" must be 1-5`},
		"bad nth weekday":           {expr: "0 0 0 ? * X#2", field: "day-of-week", index: 6, msg: `schedule "0 0 0 ? * X#2": field 6 (day-of-week): "X#2": want d#k, the k-th weekday d of the month: "X" is not a day-of-week number or name`},
		"bad last weekday":          {expr: "0 0 0 ? * 9L", field: "day-of-week", index: 6, msg: `schedule "0 0 0 ? * 9L": field 6 (day-of-week): "9L": want dL, the last weekday d of the month: value 9 out of range: Quartz day-of-week is 1-7, 1 = SUN (in expressions with a seconds field)`},
		"bad nearest weekday":       {expr: "0 0 0 32W * ?", field: "day-of-month", index: 4, msg: `schedule "0 0 0 32W * ?": field 4 (day-of-month): "32W": want nW, the weekday nearest day n: value 32 out of range 1-31`},
		"Quartz day-of-week 0":      {expr: "0 0 0 ? * 0", field: "day-of-week", index: 6, msg: `schedule "0 0 0 ? * 0": field 6 (day-of-week): value 0 out of range: Quartz day-of-week is 1-7, 1 = SUN (in expressions with a seconds field)`},
		"Quartz 0 in a list":        {expr: "0 0 0 ? * 1,0", field: "day-of-week", index: 6, msg: `schedule "0 0 0 ? * 1,0": field 6 (day-of-week): value 0 out of range: Quartz day-of-week is 1-7, 1 = SUN (in expressions with a seconds field)`},
		"Quartz 0 in a range":       {expr: "0 0 0 ? * 0-5", field: "day-of-week", index: 6, msg: `schedule "0 0 0 ? * 0-5": field 6 (day-of-week): value 0 out of range: Quartz day-of-week is 1-7, 1 = SUN (in expressions with a seconds field)`},
		"Quartz 0 with a step":      {expr: "0 0 0 ? * 0/2", field: "day-of-week", index: 6, msg: `schedule "0 0 0 ? * 0/2": field 6 (day-of-week): value 0 out of range: Quartz day-of-week is 1-7, 1 = SUN (in expressions with a seconds field)`},
		"Quartz 0L":                 {expr: "0 0 0 ? * 0L", field: "day-of-week", index: 6, msg: `schedule "0 0 0 ? * 0L": field 6 (day-of-week): "0L": want dL, the last weekday d of the month: value 0 out of range: Quartz day-of-week is 1-7, 1 = SUN (in expressions with a seconds field)`},
		"Quartz 0#2":                {expr: "0 0 0 ? * 0#2", field: "day-of-week", index: 6, msg: `schedule "0 0 0 ? * 0#2": field 6 (day-of-week): "0#2": want d#k, the k-th weekday d of the month: value 0 out of range: Quartz day-of-week is 1-7, 1 = SUN (in expressions with a seconds field)`},
		"Quartz 0 with a year":      {expr: "0 0 0 ? * 0 2027", field: "day-of-week", index: 6, msg: `schedule "0 0 0 ? * 0 2027": field 6 (day-of-week): value 0 out of range: Quartz day-of-week is 1-7, 1 = SUN (in expressions with a seconds field)`},
		"Unix day-of-week 8":        {expr: "0 0 * * 8", field: "day-of-week", index: 5, msg: `schedule "0 0 * * 8": field 5 (day-of-week): value 8 out of range 0-7`},
		"Unix 8#1":                  {expr: "0 0 * * 8#1", field: "day-of-week", index: 5, msg: `schedule "0 0 * * 8#1": field 5 (day-of-week): "8#1": want d#k, the k-th weekday d of the month: value 8 out of range 0-7`},
		"Unix step too big":         {expr: "0 0 * * */9", field: "day-of-week", index: 5, msg: `schedule "0 0 * * */9": field 5 (day-of-week): step "9" in "*/9" must be 1-8`},
		"Quartz step too big":       {expr: "0 0 0 ? * */8", field: "day-of-week", index: 6, msg: `schedule "0 0 0 ? * */8": field 6 (day-of-week): step "8" in "*/8" must be 1-7`},
		"L-n in day-of-week":        {expr: "0 0 0 ? * L-2", field: "day-of-week", index: 6, msg: `schedule "0 0 0 ? * L-2": field 6 (day-of-week): "L" is not a day-of-week number or name`},
		"L-31":                      {expr: "0 0 0 L-31 * ?", field: "day-of-month", index: 4, msg: `schedule "0 0 0 L-31 * ?": field 4 (day-of-month): "L-31": want L-n, n days before the last day of the month, with n 0-30`},
		"L- without n":              {expr: "0 0 0 L- * ?", field: "day-of-month", index: 4, msg: `schedule "0 0 0 L- * ?": field 4 (day-of-month): "L-": want L-n, n days before the last day of the month, with n 0-30`},
		"L-n not a number":          {expr: "0 0 0 1,L-x * ?", field: "day-of-month", index: 4, msg: `schedule "0 0 0 1,L-x * ?": field 4 (day-of-month): "L-x": want L-n, n days before the last day of the month, with n 0-30`},
		"L-n range":                 {expr: "0 0 0 L-3-1 * ?", field: "day-of-month", index: 4, msg: `schedule "0 0 0 L-3-1 * ?": field 4 (day-of-month): "L-3-1": want L-n, n days before the last day of the month, with n 0-30`},
		"L-n in 5 fields":           {expr: "0 0 L-40 * *", field: "day-of-month", index: 3, msg: `schedule "0 0 L-40 * *": field 3 (day-of-month): "L-40": want L-n, n days before the last day of the month, with n 0-30`},
		"L-n never in February":     {expr: "0 0 0 L-30 2 ?", msg: `schedule "0 0 0 L-30 2 ?": matches no date from 1970 to 2099`},
		"L-n not in that February":  {expr: "0 0 0 L-28 FEB ? 2027", msg: `schedule "0 0 0 L-28 FEB ? 2027": matches no date from 1970 to 2099`},
		"L in the hour":             {expr: "0 0 L * * ?", field: "hour", index: 3, msg: `schedule "0 0 L * * ?": field 3 (hour): "L" is not a number`},
		"no such date":              {expr: "0 0 0 30 2 ?", msg: `schedule "0 0 0 30 2 ?": matches no date from 1970 to 2099`},
		"no leap day in that year":  {expr: "0 0 0 29 2 ? 2027", msg: `schedule "0 0 0 29 2 ? 2027": matches no date from 1970 to 2099`},
		"unknown descriptor":        {expr: "@often", msg: `schedule "@often": unknown descriptor "@often": want @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly, @every <duration> or @at <time>`},
		"descriptor with argument":  {expr: "@daily 5", msg: `schedule "@daily 5": @daily takes no argument`},
		"@every without interval":   {expr: "@every", field: "interval", msg: `schedule "@every": interval: want @every <duration>, like @every 90s or @every 1h30m`},
		"@every not a duration":     {expr: "@every soon", field: "interval", msg: `schedule "@every soon": interval: "soon" is not a duration like 90s or 1h30m`},
		"@every too short":          {expr: "@every 500ms", field: "interval", msg: `schedule "@every 500ms": interval: 500ms is less than 1s`},
		"@every zero":               {expr: "@every 0s", field: "interval", msg: `schedule "@every 0s": interval: 0s is less than 1s`},
		"@every negative":           {expr: "@every -5s", field: "interval", msg: `schedule "@every -5s": interval: -5s is less than 1s`},
		"@every fraction":           {expr: "@every 1500ms", field: "interval", msg: `schedule "@every 1500ms": interval: 1.5s is not a whole number of seconds`},
		"@at without time":          {expr: "@at", field: "time", msg: `schedule "@at": time: want @at <RFC 3339 time>, like @at 2026-03-08T02:30:00-05:00`},
		"@at not a time":            {expr: "@at tomorrow", field: "time", msg: `schedule "@at tomorrow": time: "tomorrow" is not an RFC 3339 time like 2026-03-08T02:30:00-05:00`},
		"@at fraction":              {expr: "@at 2026-01-01T00:00:00.5Z", field: "time", msg: `schedule "@at 2026-01-01T00:00:00.5Z": time: 2026-01-01T00:00:00.5Z has a fraction of a second`},
		"unknown zone":              {expr: "@daily", tz: "Mars/Olympus", field: "time zone", msg: `schedule "@daily": time zone: "Mars/Olympus" is not a known IANA zone`},
		"zone path":                 {expr: "@daily", tz: "../zoneinfo/UTC", field: "time zone", msg: `schedule "@daily": time zone: "../zoneinfo/UTC" is not a known IANA zone`},
		"zone with a space":         {expr: "0 0 * * *", tz: "America/New York", field: "time zone", msg: `schedule "0 0 * * *": time zone: "America/New York" is not a known IANA zone`},
		"zone as an offset":         {expr: "0 0 * * *", tz: "+05:00", field: "time zone", msg: `schedule "0 0 * * *": time zone: "+05:00" is not a known IANA zone`},
		"Local zone":                {expr: "@daily", tz: "Local", field: "time zone", msg: `schedule "@daily": time zone: "Local" differs between servers: name an IANA zone such as Europe/London`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s, err := Parse(tc.expr, tc.tz)
			if err == nil {
				t.Fatalf("Parse(%q, %q) = %v, want an error", tc.expr, tc.tz, s)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T %v is not a *ParseError", err, err)
			}
			if err.Error() != tc.msg {
				t.Errorf("message\n got %s\nwant %s", err, tc.msg)
			}
			if pe.Expr != tc.expr || pe.Field != tc.field || pe.Index != tc.index {
				t.Errorf("got Expr %q Field %q Index %d, want %q %q %d", pe.Expr, pe.Field, pe.Index, tc.expr, tc.field, tc.index)
			}
		})
	}
}

func TestStringAndLocation(t *testing.T) {
	s, err := Parse(" 0 0 12 ? * MON ", "Europe/London")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.String(); got != "0 0 12 ? * MON" {
		t.Errorf("String() = %q", got)
	}
	if got := s.Location().String(); got != "Europe/London" {
		t.Errorf("Location() = %q", got)
	}
	u, err := Parse("@hourly", "")
	if err != nil {
		t.Fatal(err)
	}
	if u.Location() != time.UTC {
		t.Errorf("Location() for \"\" = %v, want UTC", u.Location())
	}
}

// A job without a schedule runs only when asked (a trigger, a request, a batch): its schedule parses and
// has no fire time at all.
func TestEmptyScheduleNeverFires(t *testing.T) {
	for _, expr := range []string{"", "  "} {
		s, err := Parse(expr, "Europe/London")
		if err != nil {
			t.Fatalf("Parse(%q): %v", expr, err)
		}
		now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
		if !s.Never() || !s.Next(now).IsZero() || !s.Latest(time.Time{}, now).IsZero() {
			t.Errorf("Parse(%q): Never %v, Next %v, Latest %v; want true and zero times", expr, s.Never(), s.Next(now), s.Latest(time.Time{}, now))
		}
		if times, more := s.Between(time.Time{}, now, 10); len(times) > 0 || more {
			t.Errorf("Parse(%q).Between = %v, %v; want none", expr, times, more)
		}
	}
	if s, _ := Parse("@daily", ""); s.Never() {
		t.Error("@daily: Never")
	}
}
