package schedule

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/cronexpr"
)

// This file turns a cron expression into the canonical 7-field text cronexpr evaluates
// ("sec min hour dom month dow year"). Every field is parsed and checked here, so errors name the field,
// and cronexpr's parser only ever sees explicit value lists, "*" and the special forms L, LW, nW, dL and
// d#k, with days of the week numbered 0 (Sunday) to 6. That sidesteps its quirks: it accepts reversed
// ranges (5-2) and then never fires, drops Sunday from ranges ending in 7 or SUN (FRI-SUN is Friday and
// Saturday), accepts '?' in every field and silently ignores fields past the seventh. L-n (and L-nW) in
// day-of-month, which cronexpr does not know, is evaluated here on top of it (see cronEval).

// fieldSpec describes one cron field.
type fieldSpec struct {
	name     string
	pos      int            // index of the field in cronexpr's 7-field layout
	min, max int            // accepted values
	names    map[string]int // month or weekday names, lower case
	cyclic   bool           // a reversed range wraps around (22-2, FRI-MON); false for the year
	// Day-of-week only.
	weekday bool
	sunday  int    // the number of Sunday: 0 in Unix numbering (where 7 is Sunday too), 1 in Quartz numbering
	note    string // added to the message for a number out of range
}

var (
	secondField = fieldSpec{name: "second", pos: 0, min: 0, max: 59, cyclic: true}
	minuteField = fieldSpec{name: "minute", pos: 1, min: 0, max: 59, cyclic: true}
	hourField   = fieldSpec{name: "hour", pos: 2, min: 0, max: 23, cyclic: true}
	domField    = fieldSpec{name: "day-of-month", pos: 3, min: 1, max: 31, cyclic: true}
	monthField  = fieldSpec{name: "month", pos: 4, min: 1, max: 12, cyclic: true, names: map[string]int{
		"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
		"jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12,
		"january": 1, "february": 2, "march": 3, "april": 4, "june": 6, "july": 7,
		"august": 8, "september": 9, "october": 10, "november": 11, "december": 12,
	}}
	// unixDOWField is the day of the week of the classic 5-field form: 0 and 7 are Sunday, 1 is Monday.
	unixDOWField = fieldSpec{name: "day-of-week", pos: 5, min: 0, max: 7, cyclic: true, weekday: true, sunday: 0,
		names: weekdayNames(0)}
	// quartzDOWField is the day of the week of the forms with seconds: 1 is Sunday, 7 is Saturday.
	quartzDOWField = fieldSpec{name: "day-of-week", pos: 5, min: 1, max: 7, cyclic: true, weekday: true, sunday: 1,
		names: weekdayNames(1), note: "Quartz day-of-week is 1-7, 1 = SUN (in expressions with a seconds field)"}
	// cronexpr knows the years 1970 to 2099 only.
	yearField = fieldSpec{name: "year", pos: 6, min: 1970, max: 2099}
)

// weekdayNames maps the names of the days of the week to numbers, Sunday being sunday.
func weekdayNames(sunday int) map[string]int {
	m := make(map[string]int, 14)
	for d, name := range []string{"sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"} {
		m[name] = sunday + d
		m[name[:3]] = sunday + d
	}
	return m
}

// Field layouts by field count. Only the 5-field form numbers the days of the week Unix-style.
var (
	layout5 = []*fieldSpec{&minuteField, &hourField, &domField, &monthField, &unixDOWField}
	layout6 = []*fieldSpec{&secondField, &minuteField, &hourField, &domField, &monthField, &quartzDOWField}
	layout7 = []*fieldSpec{&secondField, &minuteField, &hourField, &domField, &monthField, &quartzDOWField, &yearField}
)

// cronEval is a parsed cron expression, evaluated on wall-clock times written in UTC. A day matches if
// expr matches it or, when day-of-month has L-n items, if it is one of their days and anyDay matches the
// rest of the time (union, as when day-of-month and day-of-week are both restricted).
type cronEval struct {
	expr *cronexpr.Expression // nil when only the fromEnd days can match
	// For L-n and L-nW in day-of-month: anyDay is the expression with day-of-month and day-of-week "*".
	anyDay  *cronexpr.Expression
	fromEnd []fromEnd
}

// fromEnd is L-n (n days before the last day of the month), or L-nW (the weekday nearest that day).
type fromEnd struct {
	n       int
	weekday bool
}

// parseCron parses a 5-, 6- or 7-field cron expression.
func parseCron(expr string) (*cronEval, *ParseError) {
	fields := strings.Fields(expr)
	var specs []*fieldSpec
	switch len(fields) {
	case 5:
		specs = layout5
	case 6:
		specs = layout6
	case 7:
		specs = layout7
	default:
		return nil, &ParseError{Expr: expr, Reason: fmt.Sprintf(
			"has %d fields, want 5 (minute hour day-of-month month day-of-week), 6 (second first) or 7 (second first, year last)",
			len(fields))}
	}
	out := [7]string{"0", "*", "*", "*", "*", "*", "*"}
	var c cronEval
	for i, f := range fields {
		spec := specs[i]
		text, ends, reason := spec.parse(f)
		if reason != "" {
			return nil, &ParseError{Expr: expr, Field: spec.name, Index: i + 1, Reason: reason}
		}
		out[spec.pos] = text
		c.fromEnd = append(c.fromEnd, ends...)
	}
	compile := func(fields [7]string) (*cronexpr.Expression, *ParseError) {
		e, err := cronexpr.Parse(strings.Join(fields[:], " "))
		if err != nil { // cannot happen: parse only writes what cronexpr accepts
			return nil, &ParseError{Expr: expr, Reason: "internal error: " + err.Error()}
		}
		return e, nil
	}
	var perr *ParseError
	if len(c.fromEnd) > 0 {
		every := out
		every[domField.pos], every[quartzDOWField.pos] = "*", "*"
		if c.anyDay, perr = compile(every); perr != nil {
			return nil, perr
		}
		if out[domField.pos] == "" { // only L-n items: the other days are those of day-of-week, if restricted
			if out[quartzDOWField.pos] == "*" {
				return &c, nil
			}
			out[domField.pos] = "*"
		}
	}
	if c.expr, perr = compile(out); perr != nil {
		return nil, perr
	}
	return &c, nil
}

// next returns the first wall-clock time after w that the expression matches, or the zero time if there
// is none before 2100.
func (c *cronEval) next(w time.Time) time.Time {
	var t time.Time
	if c.expr != nil {
		e := *c.expr // Expression.Next writes to its receiver: evaluate on a copy so c stays safe to share
		t = e.Next(w)
	}
	if c.anyDay == nil {
		return t
	}
	if u := c.nextFromEnd(w, t); !u.IsZero() {
		return u
	}
	return t
}

// nextFromEnd returns the first time after w, and before limit unless limit is zero, that anyDay matches
// on a day of fromEnd, or the zero time. It passes over at most two candidates a month: each pass moves w
// to the end of a day not before the candidate's, so it ends, at the latest when cronexpr runs out in 2099.
func (c *cronEval) nextFromEnd(w, limit time.Time) time.Time {
	e := *c.anyDay
	for {
		t := e.Next(w)
		if t.IsZero() || (!limit.IsZero() && !t.Before(limit)) {
			return time.Time{}
		}
		y, m, d := t.Date()
		last := time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
		day := 0 // the first day of fromEnd from d on, if any
		for _, f := range c.fromEnd {
			if v := f.day(y, m, last); v >= d && (day == 0 || v < day) {
				day = v
			}
		}
		switch {
		case day == d:
			return t
		case day == 0: // none left this month
			w = time.Date(y, m, last, 23, 59, 59, 0, time.UTC)
		default:
			w = time.Date(y, m, day-1, 23, 59, 59, 0, time.UTC)
		}
	}
}

// day returns the day of month y-m, which has last days, that f names, or 0 if there is none (L-30 in
// February).
func (f fromEnd) day(y int, m time.Month, last int) int {
	d := last - f.n
	if d < 1 {
		return 0
	}
	if !f.weekday {
		return d
	}
	// The weekday nearest d, without leaving the month (as cronexpr does for nW).
	switch time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Weekday() {
	case time.Saturday:
		if d > 1 {
			return d - 1
		}
		return d + 2
	case time.Sunday:
		if d < last {
			return d + 1
		}
		return d - 2
	}
	return d
}

// parse checks one field and returns its canonical cronexpr text and, for day-of-month, its L-n items,
// or a reason it is wrong. The text is empty when the field has L-n items only.
func (f *fieldSpec) parse(field string) (canonical string, ends []fromEnd, reason string) {
	var (
		set      = make([]bool, f.max+1)
		specials []string
	)
	for item := range strings.SplitSeq(field, ",") {
		if item == "" {
			return "", nil, fmt.Sprintf("empty list item in %q", field)
		}
		lower := asciiLower(item) // same length as item, so offsets into lower are offsets into item
		switch {
		case lower == "*" || lower == "?":
			if lower == "?" && f != &domField && !f.weekday {
				return "", nil, "'?' is only allowed in day-of-month and day-of-week"
			}
			return "*", nil, "" // the whole field matches everything
		case f.weekday && lower == "l": // Quartz: L alone is the last day of the week, Saturday
			set[f.sunday+6] = true
			continue
		case f == &domField && strings.HasPrefix(lower, "l-"):
			e, reason := parseFromEnd(item, lower)
			if reason != "" {
				return "", nil, reason
			}
			ends = append(ends, e)
			continue
		}
		if sp, reason, ok := f.special(item, lower); ok {
			if reason != "" {
				return "", nil, reason
			}
			specials = append(specials, sp)
			continue
		}
		if reason := f.addItem(set, item, lower); reason != "" {
			return "", nil, reason
		}
	}
	if f.weekday { // to cronexpr's numbering, 0 (Sunday) to 6
		days := make([]bool, 7)
		for v, ok := range set {
			if ok {
				days[f.cronWeekday(v)] = true
			}
		}
		set = days
	}
	var parts []string
	for v, ok := range set {
		if ok {
			parts = append(parts, strconv.Itoa(v))
		}
	}
	return strings.Join(append(parts, specials...), ","), ends, ""
}

// parseFromEnd parses L-n or L-nW in day-of-month; lower starts with "l-".
func parseFromEnd(item, lower string) (fromEnd, string) {
	ns := lower[2:]
	w := strings.HasSuffix(ns, "w")
	if w {
		ns = ns[:len(ns)-1]
	}
	n, err := strconv.Atoi(ns)
	if err != nil || !isDigits(ns) || n > 30 {
		return fromEnd{}, fmt.Sprintf("%q: want L-n, n days before the last day of the month, with n 0-30", item)
	}
	return fromEnd{n: n, weekday: w}, ""
}

// cronWeekday converts a day-of-week value of f to cronexpr's numbering, 0 (Sunday) to 6.
func (f *fieldSpec) cronWeekday(v int) int { return (v - f.sunday + 7) % 7 }

// sevenIsSunday reports whether f is the Unix day of the week, where 7 is Sunday again (0).
func (f *fieldSpec) sevenIsSunday() bool { return f.weekday && f.sunday == 0 }

// special recognises L, LW and nW in day-of-month and dL and d#k in day-of-week. ok reports whether item
// has one of those forms; reason is set when it has and is wrong.
func (f *fieldSpec) special(item, lower string) (canonical, reason string, ok bool) {
	switch {
	case f == &domField:
		switch {
		case lower == "l":
			return "L", "", true
		case lower == "lw":
			return "LW", "", true
		case strings.HasSuffix(lower, "w"):
			d, reason := f.value(item[:len(item)-1], lower[:len(lower)-1])
			if reason != "" {
				return "", fmt.Sprintf("%q: want nW, the weekday nearest day n: %s", item, reason), true
			}
			return strconv.Itoa(d) + "W", "", true
		}
	case f.weekday:
		switch {
		case strings.HasSuffix(lower, "l"):
			d, reason := f.value(item[:len(item)-1], lower[:len(lower)-1])
			if reason != "" {
				return "", fmt.Sprintf("%q: want dL, the last weekday d of the month: %s", item, reason), true
			}
			return strconv.Itoa(f.cronWeekday(d)) + "L", "", true
		case strings.Contains(lower, "#"):
			ds, ks, _ := strings.Cut(lower, "#")
			d, reason := f.value(item[:len(ds)], ds)
			if reason != "" {
				return "", fmt.Sprintf("%q: want d#k, the k-th weekday d of the month: %s", item, reason), true
			}
			k, err := strconv.Atoi(ks)
			if err != nil || !isDigits(ks) || k < 1 || k > 5 {
				return "", fmt.Sprintf("%q: week %q must be 1-5", item, item[len(ds)+1:]), true
			}
			return strconv.Itoa(f.cronWeekday(d)) + "#" + strconv.Itoa(k), "", true
		}
	}
	return "", "", false
}

// addItem adds the values of a list item (v, a-b, */s, v/s, a-b/s) to set.
func (f *fieldSpec) addItem(set []bool, item, lower string) (reason string) {
	base, stepText, hasStep := strings.Cut(lower, "/")
	step := 1
	if hasStep {
		n, err := strconv.Atoi(stepText)
		span := f.max - f.min + 1
		if err != nil || !isDigits(stepText) || n < 1 || n > span {
			return fmt.Sprintf("step %q in %q must be 1-%d", item[len(base)+1:], item, span)
		}
		step = n
	}
	last := f.max
	if f.sevenIsSunday() {
		last = 6 // "*/2" and "2/2" do not count 7 (Sunday again)
	}
	var first int
	switch lo, hi, isRange := strings.Cut(base, "-"); {
	case base == "*":
		if !hasStep {
			return "" // unreachable: a bare "*" is handled by parse
		}
		first = f.min
	case isRange:
		var reason string
		if first, reason = f.value(item[:len(lo)], lo); reason != "" {
			return reason
		}
		if last, reason = f.value(item[len(lo)+1:len(base)], hi); reason != "" {
			return reason
		}
		if f.sevenIsSunday() && first == 7 { // 7-2 is SUN-TUE, 7-7 is SUN
			first = 0
			if last == 7 {
				last = 0
			}
		}
		if first > last {
			if !f.cyclic {
				return fmt.Sprintf("range %q is reversed", item[:len(base)])
			}
			// Wrap around: 22-2 is 22,23,0,1,2; FRI-MON is FRI,SAT,SUN,MON.
			min, size := f.min, f.max-f.min+1
			if f.sevenIsSunday() {
				size = 7
			}
			for i := 0; i <= (last-first+size)%size; i += step {
				set[min+(first-min+i)%size] = true
			}
			return ""
		}
	default:
		var reason string
		if first, reason = f.value(item[:len(base)], base); reason != "" {
			return reason
		}
		if !hasStep {
			last = first
		} else if f.sevenIsSunday() && first == 7 {
			first = 0
		}
	}
	for v := first; v <= last; v += step {
		set[v] = true
	}
	return ""
}

// value parses a number or a name; orig is the text as written, for messages.
func (f *fieldSpec) value(orig, lower string) (int, string) {
	if v, ok := f.names[lower]; ok {
		return v, ""
	}
	if orig == "" {
		return 0, "a value is missing"
	}
	if !isDigits(lower) || len(lower) > 9 {
		if f.names != nil {
			return 0, fmt.Sprintf("%q is not a %s number or name", orig, f.name)
		}
		return 0, fmt.Sprintf("%q is not a number", orig)
	}
	v, _ := strconv.Atoi(lower)
	if v < f.min || v > f.max {
		if f.note != "" {
			return 0, fmt.Sprintf("value %d out of range: %s", v, f.note)
		}
		return 0, fmt.Sprintf("value %d out of range %d-%d", v, f.min, f.max)
	}
	return v, ""
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// asciiLower lower-cases ASCII letters only, so the result has the same length as s.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
