// Package schedule parses a job's schedule and computes when it fires.
//
// # Forms
//
// Parse accepts, with an IANA time zone ("" means UTC):
//
//   - Quartz-style cron with seconds: "sec min hour day-of-month month day-of-week [year]", e.g.
//     "0 30 9 ? * MON-FRI". Fields take *, lists (1,15), ranges (9-17), steps (*/15, 5/10, 9-17/2) and
//     names (JAN-DEC, SUN-SAT, any case). '?' means * and is accepted in day-of-month and day-of-week
//     only. Days of the week are numbered as in Quartz: 1 = Sunday, 2 = Monday ... 7 = Saturday, so
//     "2-6" is MON-FRI and 0 is an error. Day-of-month also takes L (last day), L-n (n days before the
//     last day, n 0-30: L-3 is the 28th of a 31-day month), LW (last weekday), nW (the weekday nearest
//     day n) and L-nW (the weekday nearest L-n); a W form never leaves the month, and L-n names no day in
//     a month of n days or fewer (L-30 fires on the 1st of 31-day months only). Day-of-week also takes L
//     alone (Saturday, the last day of the week), dL (the last day d of the month, e.g. 6L or FRIL: the
//     last Friday) and d#k (the k-th day d, k 1-5, e.g. 6#3 or FRI#3: the third Friday). A reversed
//     range wraps around (22-2 is 22,23,0,1,2; FRI-MON; 6-2), except in the year. The year is
//     1970-2099, the range of the evaluator (github.com/hashicorp/cronexpr).
//   - Classic 5-field cron, "min hour day-of-month month day-of-week": second 0, and days of the week
//     numbered as in Unix cron: 0 and 7 = Sunday, 1 = Monday ... 6 = Saturday, in every form (1-5 is
//     MON-FRI, 5L the last Friday, 5#3 the third Friday, 5-7 FRI-SUN). Everything else as above.
//   - @yearly (= @annually), @monthly, @weekly (Sunday), @daily (= @midnight), @hourly: second 0.
//   - "@every <Go duration>", at least 1s and a whole number of seconds, e.g. "@every 90s".
//   - "@at <RFC 3339 time>", one firing at a whole second, e.g. "@at 2026-03-08T02:30:00-05:00".
//
// A schedule that Parse rejects gets a *ParseError naming the cron field and its position (or the
// interval, the time or the time zone) and the reason. The zone must be an IANA name known to the zone
// database; "Local" is refused because it differs between servers.
//
// Differences from Quartz that callers must know:
//
//   - Quartz numbering of the days of the week (1 = Sunday) applies only with a seconds field (6 or 7
//     fields); the 5-field form keeps Unix numbering (0 and 7 = Sunday, 1 = Monday). Names mean the same
//     in both, so prefer MON to a number.
//   - '?' is not required: "0 0 12 * * *" is every day at noon. When day-of-month and day-of-week are both
//     restricted (neither * nor ?), a day matches if EITHER does, as in classic cron; Quartz rejects that.
//   - Lists may hold several special items and mix them with plain values ("1,L-1", "MON#1,FRI#3",
//     "L,15"); Quartz rejects most such lists, e.g. more than one d#k.
//   - An expression that matches no date at all (e.g. "0 0 0 30 2 ?" or "0 0 0 L-30 FEB ?") is a parse
//     error.
//
// # Daylight saving time
//
// Cron schedules and descriptors name wall-clock times in the schedule's zone. A wall-clock time maps to
// an instant as follows:
//
//   - A time that does not exist, because the clock is set forward over it, fires once, at the moment the
//     clock jumps. In America/New_York on 2026-03-08 the clock goes from 01:59:59 EST to 03:00:00 EDT, so
//     "0 30 2 * * ?" fires at 03:00 EDT (07:00Z) that day, and a job every minute fires once at 03:00
//     for all of 02:00-02:59 (and 03:00 itself, the same instant).
//   - A time that occurs twice, because the clock is set back, fires once, at its first occurrence. In
//     America/New_York on 2026-11-01 01:00-01:59 occurs in EDT and again in EST, so "0 30 1 * * ?" fires at
//     01:30 EDT (05:30Z) only. So does every wall-clock time in that hour: an hourly job
//     ("0 0 * * * ?") fires at 01:00 EDT and next at 02:00 EST, two real hours later, and a job every
//     minute pauses for the repeated hour. Use @every for work that must run every real hour.
//
// Fire times are therefore one per matching wall-clock time, never decreasing, and the same on every
// server with the same zone database. (cronexpr on its own skips nonexistent times and fires twice at
// repeated ones; this package evaluates it on wall-clock time and applies the rule above.)
//
// # @every
//
// "@every d" fires at the multiples of d since the Unix epoch, 1970-01-01T00:00:00Z, in absolute time:
// "@every 1h" fires on the hour UTC, "@every 7m" at 00:00Z, 00:07Z, ... and "@every 24h" at midnight UTC
// whatever the zone. It is not anchored at the job's creation, so every server computes the same instants
// (an execution is keyed by job and scheduled time). Daylight saving time does not affect it; the zone
// only sets the location of the returned times.
//
// # Evaluation
//
// Next, Between and Latest return whole seconds in the schedule's zone. Next returns the zero time when
// nothing is left (a past @at, or no matching date before 2100). Latest finds the last fire time in
// (floor, t] without walking every firing: arithmetic for @every, a bisection over Next for cron.
package schedule
