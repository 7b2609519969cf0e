package admin

import (
	"encoding/json"
	"time"

	"github.com/clover-sched/clover/api"
)

// chart is one chart's data as console.js draws it: times (unix seconds) and a series per count.
type chart struct {
	T         []int64            `json:"t"`
	Fired     []int              `json:"fired"`
	Succeeded []int              `json:"succeeded"`
	Failed    []int              `json:"failed"`
	Skipped   []int              `json:"skipped"`
	Late      []int              `json:"late"`
	Total     api.ActivityCounts `json:"-"` // for the table shown without JavaScript
}

// chartOf sums minutes into points of step each (minutes are oldest first, one per minute).
func chartOf(minutes []api.ActivityMinute, step time.Duration) chart {
	per := max(int(step/time.Minute), 1)
	var c chart
	for i := 0; i < len(minutes); i += per {
		var sum api.ActivityCounts
		for _, m := range minutes[i:min(i+per, len(minutes))] {
			sum.Fired += m.Fired
			sum.Succeeded += m.Succeeded
			sum.Failed += m.Failed
			sum.Skipped += m.Skipped
			sum.Late += m.Late
		}
		c.T = append(c.T, minutes[i].At.Unix())
		c.Fired, c.Succeeded, c.Failed = append(c.Fired, sum.Fired), append(c.Succeeded, sum.Succeeded), append(c.Failed, sum.Failed)
		c.Skipped, c.Late = append(c.Skipped, sum.Skipped), append(c.Late, sum.Late)
		c.Total.Fired += sum.Fired
		c.Total.Succeeded += sum.Succeeded
		c.Total.Failed += sum.Failed
		c.Total.Skipped += sum.Skipped
		c.Total.Late += sum.Late
	}
	return c
}

// JSON is the chart as the data-chart attribute carries it.
func (c chart) JSON() string {
	b, err := json.Marshal(c)
	if err != nil {
		return "{}"
	}
	return string(b)
}
