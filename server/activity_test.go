package server

import (
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/job"
)

func TestActivityCountsEachMinuteAndForgetsADayLater(t *testing.T) {
	var a activity
	at := time.Date(2026, 3, 1, 12, 0, 30, 0, time.UTC)
	a.fired(at)
	a.fired(at.Add(20 * time.Second))
	a.ended(at.Add(40*time.Second), job.StateFailed) // the next minute
	a.dispatched(at, true)
	v := a.view(at.Add(40*time.Second), 3)
	if len(v) != 3 || !v[2].At.Equal(at.Add(30*time.Second)) {
		t.Fatalf("view: %+v, want 3 minutes ending at 12:01", v)
	}
	if v[1].Fired != 2 || v[1].Late != 1 || v[2].Failed != 1 || v[0].Fired != 0 {
		t.Fatalf("counts %+v", v)
	}
	// A day later the slot of 12:00 counts another minute, from zero.
	later := at.Add(24 * time.Hour)
	a.fired(later)
	if v := a.view(later, 1); v[0].Fired != 1 {
		t.Fatalf("a day later: %+v, want the new minute's 1 firing only", v)
	}
	if v := a.view(later, activityMinutes); v[0].Fired != 0 || v[len(v)-2].Failed != 0 {
		t.Fatalf("the day before is still counted: %+v ... %+v", v[0], v[len(v)-2])
	}
}

func TestTheLeaderCountsWhatItFiresAndHowItEnds(t *testing.T) {
	fs := newFakeStore(shellJob("tick", "@every 1m", created))
	h := newHarness(t, fs, "a")
	h.establish()
	h.advance(time.Minute)
	d := h.lastTo("a")
	h.ack("a", d)
	h.finish("a", d, job.StateSucceeded)
	v := h.l.activity.view(h.now, 2)
	var fired, succeeded int
	for _, m := range v {
		fired, succeeded = fired+m.Fired, succeeded+m.Succeeded
	}
	if fired != 1 || succeeded != 1 {
		t.Fatalf("activity %+v: want 1 fired and 1 succeeded", v)
	}
}
