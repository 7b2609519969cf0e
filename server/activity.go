package server

import (
	"time"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/job"
)

// activity counts, minute by minute over the last day, what the term fired and how what it followed
// ended: the console's charts. It lives in the leader's memory only (a new term starts it empty, and
// says since when it counts); the history holds every execution for anything longer or older.
type activity struct {
	mins [activityMinutes]activityMinute
}

type activityMinute struct {
	at     int64 // unix minute this slot counts; another: the slot is stale
	counts api.ActivityCounts
}

const activityMinutes = 24 * 60

// lateAfter is how late a first dispatch must be to count as late in the charts.
const lateAfter = time.Second

// slot is the counts of the minute of t.
func (a *activity) slot(t time.Time) *api.ActivityCounts {
	m := t.Unix() / 60
	s := &a.mins[m%activityMinutes]
	if s.at != m {
		*s = activityMinute{at: m}
	}
	return &s.counts
}

func (a *activity) fired(t time.Time) { a.slot(t).Fired++ }
func (a *activity) dispatched(t time.Time, late bool) {
	if late {
		a.slot(t).Late++
	}
}

// ended counts an execution that ended, by its outcome ("" when another term or server knows it).
func (a *activity) ended(t time.Time, outcome job.State) {
	s := a.slot(t)
	switch outcome {
	case job.StateSucceeded:
		s.Succeeded++
	case job.StateFailed:
		s.Failed++
	case job.StateSkipped:
		s.Skipped++
	}
}

// view is the last n minutes up to now, oldest first, every minute present.
func (a *activity) view(now time.Time, n int) []api.ActivityMinute {
	n = min(max(n, 1), activityMinutes)
	last := now.Unix() / 60
	out := make([]api.ActivityMinute, 0, n)
	for m := last - int64(n) + 1; m <= last; m++ {
		am := api.ActivityMinute{At: time.Unix(m*60, 0).UTC()}
		if s := a.mins[m%activityMinutes]; s.at == m {
			am.ActivityCounts = s.counts
		}
		out = append(out, am)
	}
	return out
}
