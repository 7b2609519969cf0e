package schedule

import (
	"fmt"
	"strings"
	"sync"
	"time"
)

type kind uint8

const (
	kindCron  kind = iota + 1
	kindEvery      // every interval seconds since the Unix epoch
	kindAt         // once, at at
	kindNever      // no schedule: the job fires only when asked (a trigger, a request, a batch)
)

// Schedule is a parsed schedule: when a job fires. It is immutable and safe for concurrent use.
type Schedule struct {
	expr     string
	loc      *time.Location
	kind     kind
	cron     *cronEval // evaluated on wall-clock times written in UTC; see nextCron
	interval int64     // seconds, for kindEvery
	at       time.Time // for kindAt
}

// descriptors are the @ names that stand for a cron expression.
var descriptors = map[string]string{
	"@yearly":   "0 0 0 1 1 ?",
	"@annually": "0 0 0 1 1 ?",
	"@monthly":  "0 0 0 1 * ?",
	"@weekly":   "0 0 0 ? * SUN",
	"@daily":    "0 0 0 * * ?",
	"@midnight": "0 0 0 * * ?",
	"@hourly":   "0 0 * * * ?",
}

// Parse parses expr, a cron expression (5, 6 or 7 fields), a descriptor such as @daily,
// "@every <duration>" or "@at <RFC 3339 time>", to be evaluated in the IANA time zone tz ("" means UTC).
// An empty expr is a schedule that never fires (Never reports it).
// Errors are *ParseError.
func Parse(expr, tz string) (*Schedule, error) {
	loc, perr := location(expr, tz)
	if perr != nil {
		return nil, perr
	}
	s := &Schedule{expr: strings.TrimSpace(expr), loc: loc}
	fields := strings.Fields(expr)
	if len(fields) == 0 {
		// A job without a schedule runs only when asked: by an operator, an application, or a batch.
		s.kind = kindNever
		return s, nil
	}
	if !strings.HasPrefix(fields[0], "@") {
		s.kind = kindCron
		if s.cron, perr = parseCron(expr); perr != nil {
			return nil, perr
		}
		if s.cron.next(time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC)).IsZero() {
			return nil, &ParseError{Expr: expr, Reason: "matches no date from 1970 to 2099"}
		}
		return s, nil
	}

	name := asciiLower(fields[0])
	if cron, ok := descriptors[name]; ok {
		if len(fields) > 1 {
			return nil, &ParseError{Expr: expr, Reason: fmt.Sprintf("%s takes no argument", name)}
		}
		s.kind = kindCron
		s.cron, _ = parseCron(cron)
		return s, nil
	}
	switch name {
	case "@every":
		if len(fields) != 2 {
			return nil, &ParseError{Expr: expr, Field: "interval", Reason: "want @every <duration>, like @every 90s or @every 1h30m"}
		}
		d, err := time.ParseDuration(fields[1])
		switch {
		case err != nil:
			return nil, &ParseError{Expr: expr, Field: "interval", Reason: fmt.Sprintf("%q is not a duration like 90s or 1h30m", fields[1])}
		case d < time.Second:
			return nil, &ParseError{Expr: expr, Field: "interval", Reason: fmt.Sprintf("%s is less than 1s", d)}
		case d%time.Second != 0:
			return nil, &ParseError{Expr: expr, Field: "interval", Reason: fmt.Sprintf("%s is not a whole number of seconds", d)}
		}
		s.kind, s.interval = kindEvery, int64(d/time.Second)
		return s, nil
	case "@at":
		if len(fields) != 2 {
			return nil, &ParseError{Expr: expr, Field: "time", Reason: "want @at <RFC 3339 time>, like @at 2026-03-08T02:30:00-05:00"}
		}
		at, err := time.Parse(time.RFC3339, fields[1])
		switch {
		case err != nil:
			return nil, &ParseError{Expr: expr, Field: "time", Reason: fmt.Sprintf("%q is not an RFC 3339 time like 2026-03-08T02:30:00-05:00", fields[1])}
		case at.Nanosecond() != 0:
			return nil, &ParseError{Expr: expr, Field: "time", Reason: fmt.Sprintf("%s has a fraction of a second", fields[1])}
		}
		s.kind, s.at = kindAt, at.In(loc)
		return s, nil
	}
	return nil, &ParseError{Expr: expr, Reason: fmt.Sprintf(
		"unknown descriptor %q: want @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly, @every <duration> or @at <time>",
		fields[0])}
}

var zones sync.Map // zone name -> *time.Location; LoadLocation reads the zone database on every call

func location(expr, tz string) (*time.Location, *ParseError) {
	switch tz {
	case "", "UTC":
		return time.UTC, nil
	case "Local":
		return nil, &ParseError{Expr: expr, Field: "time zone", Reason: `"Local" differs between servers: name an IANA zone such as Europe/London`}
	}
	if loc, ok := zones.Load(tz); ok {
		return loc.(*time.Location), nil
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, &ParseError{Expr: expr, Field: "time zone", Reason: fmt.Sprintf("%q is not a known IANA zone", tz)}
	}
	zones.Store(tz, loc)
	return loc, nil
}

// Never reports whether the schedule has no fire time at all (an empty expression).
func (s *Schedule) Never() bool { return s.kind == kindNever }

// String returns the expression as given to Parse, without surrounding spaces.
func (s *Schedule) String() string { return s.expr }

// Location returns the zone the schedule is evaluated in; returned times are in it.
func (s *Schedule) Location() *time.Location { return s.loc }

// Next returns the first fire time strictly after t, or the zero time if there is none (a past @at, or
// a cron expression with no date left before 2100). The result is in the schedule's zone and a whole second.
func (s *Schedule) Next(t time.Time) time.Time {
	switch s.kind {
	case kindNever:
		return time.Time{}
	case kindEvery:
		k := floorDiv(t.Unix(), s.interval) + 1
		if k > maxUnix/s.interval {
			return time.Time{}
		}
		return time.Unix(k*s.interval, 0).In(s.loc)
	case kindAt:
		if s.at.After(t) {
			return s.at
		}
		return time.Time{}
	default:
		return s.nextCron(t)
	}
}

// maxUnix bounds @every fire times: year 9999, the last year RFC 3339 (and so an execution id) can name.
var maxUnix = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC).Unix()

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// Between returns the fire times in (from, to], ascending, at most limit of them, and whether more fire
// times in the range were left out because of limit. A limit <= 0 returns none and reports whether any exist.
func (s *Schedule) Between(from, to time.Time, limit int) (times []time.Time, truncated bool) {
	for t := s.Next(from); !t.IsZero() && !t.After(to); t = s.Next(t) {
		if len(times) >= limit {
			return times, true
		}
		times = append(times, t)
	}
	return times, false
}

// Latest returns the last fire time that is after floor and not after t, or the zero time if there is none.
// It takes O(1) steps for @every and @at and O(log((t-floor)/1s)) evaluations of Next for cron.
func (s *Schedule) Latest(floor, t time.Time) time.Time {
	if !t.After(floor) {
		return time.Time{}
	}
	var last time.Time
	switch s.kind {
	case kindNever:
		return time.Time{}
	case kindEvery:
		k := floorDiv(t.Unix(), s.interval)
		if k > maxUnix/s.interval || k < floorDiv(minUnix, s.interval) {
			return time.Time{}
		}
		last = time.Unix(k*s.interval, 0).In(s.loc)
	case kindAt:
		last = s.at
		if last.After(t) {
			return time.Time{}
		}
	default:
		return s.latestCron(floor, t)
	}
	if !last.After(floor) {
		return time.Time{}
	}
	return last
}

var minUnix = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).Unix()

// latestCron bisects: fires(x) = "Next(x) exists and is not after t" is true for x before the answer and
// false from it on, and fire times are whole seconds, so once lo and hi are at most a second apart, with
// fires(lo) and !fires(hi), Next(lo) is the last fire time not after t.
func (s *Schedule) latestCron(floor, t time.Time) time.Time {
	fires := func(x time.Time) bool {
		n := s.nextCron(x)
		return !n.IsZero() && !n.After(t)
	}
	if !fires(floor) {
		return time.Time{}
	}
	lo, hi := floor, t // fires(hi) is false: Next(t) is after t
	for hi.Sub(lo) > time.Second {
		mid := lo.Add(hi.Sub(lo) / 2)
		if fires(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return s.nextCron(lo)
}
