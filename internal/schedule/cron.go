package schedule

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/hashicorp/cronexpr"
)

// This file turns a cron expression into the canonical 7-field text cronexpr evaluates
// ("sec min hour dom month dow year"). Every field is parsed and checked here, so errors name the field,
// and cronexpr's parser only ever sees explicit value lists, "*" and the special forms L, LW, nW, dL and
// d#k. That sidesteps its quirks: it accepts reversed ranges (5-2) and then never fires, drops Sunday from
// ranges ending in 7 or SUN (FRI-SUN is Friday and Saturday), accepts '?' in every field and silently
// ignores fields past the seventh.

// fieldSpec describes one cron field.
type fieldSpec struct {
	name     string
	min, max int            // accepted values; day-of-week accepts 7 as Sunday
	names    map[string]int // month or weekday names, lower case
	cyclic   bool           // a reversed range wraps around (22-2, FRI-MON); false for the year
}

var (
	secondField = fieldSpec{name: "second", min: 0, max: 59, cyclic: true}
	minuteField = fieldSpec{name: "minute", min: 0, max: 59, cyclic: true}
	hourField   = fieldSpec{name: "hour", min: 0, max: 23, cyclic: true}
	domField    = fieldSpec{name: "day-of-month", min: 1, max: 31, cyclic: true}
	monthField  = fieldSpec{name: "month", min: 1, max: 12, cyclic: true, names: map[string]int{
		"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
		"jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12,
		"january": 1, "february": 2, "march": 3, "april": 4, "june": 6, "july": 7,
		"august": 8, "september": 9, "october": 10, "november": 11, "december": 12,
	}}
	dowField = fieldSpec{name: "day-of-week", min: 0, max: 7, cyclic: true, names: map[string]int{
		"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6,
		"sunday": 0, "monday": 1, "tuesday": 2, "wednesday": 3, "thursday": 4, "friday": 5, "saturday": 6,
	}}
	// cronexpr knows the years 1970 to 2099 only.
	yearField = fieldSpec{name: "year", min: 1970, max: 2099}
)

// Field layouts by field count.
var (
	layout5 = []*fieldSpec{&minuteField, &hourField, &domField, &monthField, &dowField}
	layout6 = []*fieldSpec{&secondField, &minuteField, &hourField, &domField, &monthField, &dowField}
	layout7 = []*fieldSpec{&secondField, &minuteField, &hourField, &domField, &monthField, &dowField, &yearField}
)

// parseCron parses a 5-, 6- or 7-field cron expression into a cronexpr expression that is to be evaluated
// on wall-clock times expressed in UTC.
func parseCron(expr string) (*cronexpr.Expression, *ParseError) {
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
	for i, f := range fields {
		spec := specs[i]
		c, reason := spec.parse(f)
		if reason != "" {
			return nil, &ParseError{Expr: expr, Field: spec.name, Index: i + 1, Reason: reason}
		}
		out[position(spec)] = c
	}
	e, err := cronexpr.Parse(strings.Join(out[:], " "))
	if err != nil { // cannot happen: parse only writes what cronexpr accepts
		return nil, &ParseError{Expr: expr, Reason: "internal error: " + err.Error()}
	}
	return e, nil
}

// position is the index of spec's field in cronexpr's 7-field layout.
func position(spec *fieldSpec) int {
	for i, s := range layout7 {
		if s == spec {
			return i
		}
	}
	panic("schedule: unknown field " + spec.name)
}

// parse checks one field and returns its canonical cronexpr text, or a reason it is wrong.
func (f *fieldSpec) parse(field string) (canonical, reason string) {
	var (
		set      = make([]bool, f.max+1)
		specials []string
	)
	for item := range strings.SplitSeq(field, ",") {
		if item == "" {
			return "", fmt.Sprintf("empty list item in %q", field)
		}
		lower := asciiLower(item) // same length as item, so offsets into lower are offsets into item
		if lower == "*" || lower == "?" {
			if lower == "?" && f != &domField && f != &dowField {
				return "", "'?' is only allowed in day-of-month and day-of-week"
			}
			return "*", "" // the whole field matches everything
		}
		if sp, reason, ok := f.special(item, lower); ok {
			if reason != "" {
				return "", reason
			}
			specials = append(specials, sp)
			continue
		}
		if reason := f.addItem(set, item, lower); reason != "" {
			return "", reason
		}
	}
	if f == &dowField && set[7] { // 7 is Sunday
		set[0], set[7] = true, false
	}
	var parts []string
	for v, ok := range set {
		if ok {
			parts = append(parts, strconv.Itoa(v))
		}
	}
	return strings.Join(append(parts, specials...), ","), ""
}

// special recognises L, LW and nW in day-of-month and dL and d#k in day-of-week. ok reports whether item
// has one of those forms; reason is set when it has and is wrong.
func (f *fieldSpec) special(item, lower string) (canonical, reason string, ok bool) {
	switch f {
	case &domField:
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
	case &dowField:
		switch {
		case lower == "l":
			return "", `"L" alone is not supported in day-of-week: write dL for the last day d of the month, like 5L or FRIL`, true
		case strings.HasSuffix(lower, "l"):
			d, reason := f.value(item[:len(item)-1], lower[:len(lower)-1])
			if reason != "" {
				return "", fmt.Sprintf("%q: want dL, the last weekday d of the month: %s", item, reason), true
			}
			return strconv.Itoa(d%7) + "L", "", true
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
			return strconv.Itoa(d%7) + "#" + strconv.Itoa(k), "", true
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
	if f == &dowField {
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
		if f == &dowField && first == 7 { // 7-2 is SUN-TUE, 7-7 is SUN
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
			if f == &dowField {
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
		} else if f == &dowField && first == 7 {
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
