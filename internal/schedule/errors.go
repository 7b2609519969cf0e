package schedule

import (
	"fmt"
	"strings"
)

// ParseError says why Parse rejected a schedule and where.
type ParseError struct {
	Expr string // the schedule as given
	// Field names what is wrong: a cron field ("second", "minute", "hour", "day-of-month", "month",
	// "day-of-week", "year"), "interval" (@every), "time" (@at) or "time zone"; empty when the whole
	// expression is at fault (field count, unknown descriptor, a date that never occurs).
	Field string
	// Index is the 1-based position of the cron field in Expr as written (in a 5-field expression the
	// minute is field 1); 0 when Field is not a cron field.
	Index  int
	Reason string
}

func (e *ParseError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "schedule %q: ", e.Expr)
	switch {
	case e.Index > 0:
		fmt.Fprintf(&b, "field %d (%s): ", e.Index, e.Field)
	case e.Field != "":
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Reason)
	return b.String()
}
