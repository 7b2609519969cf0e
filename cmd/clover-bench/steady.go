package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// latenessHistogram is the leader's histogram of the time from an execution's scheduled time to its first
// dispatch.
const latenessHistogram = "clover_fire_lateness_seconds"

// steadyRows adds the rows the steady-rate scenarios (shell, gofunc) share: what the leader fired and
// recorded over the window against what was scheduled, how late it fired, and what went wrong. finished
// is the count of executions that finished in the window according to the store, -1 if unknown.
func steadyRows(tb *table, before, after snapshot, ws windowStats, scheduledPerSec float64, finished int64) {
	secs := after.at.Sub(before.at).Seconds()
	delta := func(name string) float64 { return after.m.sum(name) - before.m.sum(name) }
	series := func(s string) float64 { return after.m[s] - before.m[s] }

	fired := delta("clover_fires_total") / secs
	reports := delta("clover_executions_finished_total") / secs
	tb.add("scheduled", fmtRate(scheduledPerSec), "")
	tb.add("fired by the leader", fmt.Sprintf("%s (%s)", fmtRate(fired), fmtPct(fired, scheduledPerSec)), "100% of scheduled")
	if finished >= 0 {
		f := float64(finished) / secs
		tb.add("finished and recorded (store)", fmt.Sprintf("%s (%s)", fmtRate(f), fmtPct(f, scheduledPerSec)), "100% of scheduled")
	} else {
		tb.add("finished and recorded (store)", "- (count failed)", "100% of scheduled")
	}
	tb.add("result reports recorded (counter)", fmtRate(reports), "= finished")
	tb.add("  failed reports", fmtInt(int64(series(`clover_executions_finished_total{status="failed"}`))), "0")

	lat := histogramDelta(before.m, after.m, latenessHistogram)
	p50, o50 := quantile(0.50, lat)
	p99, o99 := quantile(0.99, lat)
	mx, omx := bucketMax(lat)
	maxText := "≤ " + fmtSeconds(mx)
	if omx {
		maxText = "> " + fmtSeconds(mx)
	}
	tb.add("fire lateness p50 (bucketed)", fmtQuantile(p50, o50), "")
	tb.add("fire lateness p99 (bucketed)", fmtQuantile(p99, o99), "< 50 ms")
	tb.add("fire lateness max (bucket bound)", maxText, "")
	tb.add("  first dispatches observed", fmtInt(int64(histogramTotal(lat))), "= fired")

	tb.add("misfires (catch-up runs)", fmtInt(int64(delta("clover_misfires_total"))), "0")
	tb.add("re-dispatches", fmtInt(int64(delta("clover_redispatches_total"))), "0")
	tb.add("store errors", fmtInt(int64(delta("clover_store_errors_total"))), "0")
	tb.add("frames dropped by the server", fmtInt(int64(delta("clover_frames_dropped_total")))+byLabel(before, after, "clover_frames_dropped_total", "reason"), "0")
	tb.add("in flight, max of 1 s samples / at end", fmt.Sprintf("%s / %s",
		fmtInt(int64(ws.maxInflight)), fmtInt(int64(after.m.sum("clover_inflight_executions")))), "≤ about 1 s of jobs")
	tb.add("waiting for a client, max of 1 s samples", fmtInt(int64(ws.maxWaiting)), "0")

	growth := float64(after.rss-before.rss) / secs * 60
	tb.add("server RSS at window start → end", fmt.Sprintf("%s → %s (%+.1f MiB/min)", fmtMiB(before.rss), fmtMiB(after.rss), growth/(1<<20)), "flat")
	tb.add("  peak of 1 s samples", fmtMiB(ws.peakRSS), "")
}

// byLabel lists what series name gained over the window by the value of label key, as " (a 3, b 5)", or ""
// when nothing was gained.
func byLabel(before, after snapshot, name, key string) string {
	var parts []string
	for series, v := range after.m {
		if seriesName(series) != name {
			continue
		}
		if d := v - before.m[series]; d > 0 {
			parts = append(parts, fmt.Sprintf("%s %s", label(series, key), fmtInt(int64(d))))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	slices.Sort(parts)
	return " (" + strings.Join(parts, ", ") + ")"
}

// steadyNotes explains where the steady figures come from.
func steadyNotes(tb *table, window time.Duration) {
	tb.note("window %s after warm-up; fired and result reports are deltas of the leader's /metrics over it", window)
	tb.note("  (clover_fires_total, clover_executions_finished_total, which counts re-sent reports again); finished counts")
	tb.note("  the finished events in the store whose finish time is in the window (one per execution), read 2 s after it")
	tb.note("lateness is scheduled time → first dispatch, from the clover_fire_lateness_seconds buckets (1, 5, 10, 25, 50,")
	tb.note("  100, 250, 500 ms, 1, 2.5, 5, 10, 30 s): quantiles interpolated inside a bucket, max = bound of the highest non-empty one")
	tb.note("CPUs busy: from /proc, per kind of process this run started (client processes include the commands they ran;")
	tb.note("  this driver includes any embedded clients)")
}

// logMetrics logs (with -v) every series of the leader that changed over the window, for digging into a
// figure: counters as deltas, gauges as before → after.
func logMetrics(t *T, before, after snapshot) {
	var lines []string
	for series, v := range after.m {
		if b := before.m[series]; v != b {
			lines = append(lines, fmt.Sprintf("%s: %g → %g (%+g)", series, b, v, v-b))
		}
	}
	slices.Sort(lines)
	t.Logf("leader metrics that changed over the window:\n  %s", strings.Join(lines, "\n  "))
}
