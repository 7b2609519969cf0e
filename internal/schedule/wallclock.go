package schedule

import "time"

// Cron expressions are evaluated on wall-clock time, then mapped to instants by the DST rule in doc.go.
// A wall-clock time is written as a time.Time in UTC with the same fields ("02:30 on 8 March" is
// 2026-03-08T02:30:00Z), so cronexpr, which is evaluated only in UTC, never sees a transition: its own DST
// handling skips a time that does not exist and fires twice at a time that occurs twice.

// maxSkips bounds the candidates nextCron may pass over. Candidates are passed over only when several map
// to one instant (a stretch of nonexistent times all map to the moment the clock jumps), so a handful at
// most in practice; the bound guards against a zone database this reasoning does not foresee.
const maxSkips = 10000

// nextCron returns the first fire time of the cron schedule strictly after t, in s.loc, or zero.
func (s *Schedule) nextCron(t time.Time) time.Time {
	t = t.In(s.loc)
	w := wallClock(t)
	// In the second pass through a repeated stretch of wall-clock time (autumn), every wall-clock time up
	// to the end of the stretch maps to its first occurrence, which is before t: start after the stretch.
	if start, _ := t.ZoneBounds(); !start.IsZero() {
		_, before := start.Add(-time.Second).Zone()
		_, after := start.Zone()
		if before > after {
			if end := start.Unix() + int64(before); w.Unix() < end {
				w = time.Unix(end-1, 0).UTC()
			}
		}
	}
	if w.Year() < 1970 { // cronexpr treats the zero time as "no time"; nothing fires before 1970 anyway
		w = time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC)
	}
	for range maxSkips {
		c := s.cron.next(w)
		if c.IsZero() {
			return time.Time{}
		}
		if u := instant(c, s.loc); u.After(t) {
			return u
		}
		w = c
	}
	return time.Time{}
}

// wallClock returns the wall-clock time of t in t's location, truncated to the second, written in UTC.
func wallClock(t time.Time) time.Time {
	_, off := t.Zone()
	return time.Unix(t.Unix()+int64(off), 0).UTC()
}

// instant maps the wall-clock time w (written in UTC) to the instant it names in loc:
//   - if it occurs once, that instant;
//   - if it occurs twice (the clock was set back), the first;
//   - if it does not occur (the clock was set forward over it), the instant the clock jumped.
//
// The mapping never decreases as w grows, which nextCron relies on.
func instant(w time.Time, loc *time.Location) time.Time {
	ws := w.Unix()
	u := time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), w.Second(), 0, loc)
	start, end := u.ZoneBounds()
	if start.IsZero() && end.IsZero() { // one offset for all time: UTC or a fixed zone
		return u
	}
	// time.Date picks one of the valid instants, or a time next to a gap: the answer is in u's zone period
	// or one of its neighbours. Try the offset of each.
	var best time.Time
	try := func(p time.Time) {
		_, off := p.Zone()
		c := time.Unix(ws-int64(off), 0).In(loc)
		if _, got := c.Zone(); got == off && (best.IsZero() || c.Before(best)) {
			best = c
		}
	}
	try(u)
	if !start.IsZero() {
		try(start.Add(-time.Second))
	}
	if !end.IsZero() {
		try(end)
	}
	if !best.IsZero() {
		return best
	}
	// w is in a gap: at transition b the clock jumped from b+before to b+after, over w.
	for _, b := range [2]time.Time{start, end} {
		if b.IsZero() {
			continue
		}
		_, before := b.Add(-time.Second).Zone()
		_, after := b.Zone()
		if b.Unix()+int64(before) <= ws && ws < b.Unix()+int64(after) {
			return b.In(loc)
		}
	}
	return u // not reached for a consistent zone database
}
