package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// sample is one read of a server's /metrics: the value of every series, keyed by the series as printed
// (`name` or `name{label="value",...}`).
type sample map[string]float64

// scrape reads http://addr/metrics. The Prometheus text format is one `series value` per line, comments
// start with #; that is all this needs to know of it.
func scrape(ctx context.Context, addr string) (sample, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read metrics of %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil, fmt.Errorf("read metrics of %s: HTTP %d", addr, resp.StatusCode)
	}
	s := sample{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		s[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read metrics of %s: %w", addr, err)
	}
	return s, nil
}

func seriesName(series string) string {
	if i := strings.IndexByte(series, '{'); i >= 0 {
		return series[:i]
	}
	return series
}

// sum is the total of name over all its label sets (0 if absent).
func (s sample) sum(name string) float64 {
	var v float64
	for k, x := range s {
		if seriesName(k) == name {
			v += x
		}
	}
	return v
}

// label is the value of series' label key, or "".
func label(series, key string) string {
	i := strings.Index(series, key+`="`)
	if i < 0 {
		return ""
	}
	rest := series[i+len(key)+2:]
	if j := strings.IndexByte(rest, '"'); j >= 0 {
		return rest[:j]
	}
	return ""
}

// bucket is one cumulative histogram bucket: count observations were at most le.
type bucket struct{ le, count float64 }

// buckets returns histogram name's cumulative buckets, by upper bound, the last one +Inf.
func (s sample) buckets(name string) []bucket {
	var out []bucket
	for k, v := range s {
		if seriesName(k) != name+"_bucket" {
			continue
		}
		le, err := strconv.ParseFloat(label(k, "le"), 64)
		if err != nil {
			continue
		}
		out = append(out, bucket{le: le, count: v})
	}
	slices.SortFunc(out, func(a, b bucket) int {
		switch {
		case a.le < b.le:
			return -1
		case a.le > b.le:
			return 1
		}
		return 0
	})
	return out
}

// histogramDelta is what the histogram gained from before to after: the observations made in between.
func histogramDelta(before, after sample, name string) []bucket {
	a, b := before.buckets(name), after.buckets(name)
	if len(a) != len(b) {
		return b // the server restarted between the two reads; nothing better to offer
	}
	out := make([]bucket, len(b))
	for i := range b {
		out[i] = bucket{le: b[i].le, count: b[i].count - a[i].count}
	}
	return out
}

// histogramTotal is the number of observations in cumulative buckets b.
func histogramTotal(b []bucket) float64 {
	if len(b) == 0 {
		return 0
	}
	return b[len(b)-1].count
}

// quantile estimates the q-quantile from cumulative buckets as Prometheus's histogram_quantile does:
// linear interpolation inside the bucket that holds the rank, the first bucket starting at 0. over is
// true when the rank lies in the +Inf bucket; the value is then the highest finite bound, a lower bound.
func quantile(q float64, b []bucket) (v float64, over bool) {
	total := histogramTotal(b)
	if total == 0 {
		return math.NaN(), false
	}
	rank := q * total
	for i, bk := range b {
		if bk.count < rank {
			continue
		}
		lo, loCount := 0.0, 0.0
		if i > 0 {
			lo, loCount = b[i-1].le, b[i-1].count
		}
		if math.IsInf(bk.le, 1) {
			return lo, true
		}
		if bk.count == loCount {
			return bk.le, false
		}
		return lo + (bk.le-lo)*(rank-loCount)/(bk.count-loCount), false
	}
	return b[len(b)-1].le, false
}

// bucketMax is the upper bound of the highest non-empty bucket: every observation was at most that. over
// is true when some observation was above the highest finite bound (then v is that bound).
func bucketMax(b []bucket) (v float64, over bool) {
	total := histogramTotal(b)
	if total == 0 {
		return math.NaN(), false
	}
	for i, bk := range b {
		if bk.count >= total {
			if math.IsInf(bk.le, 1) {
				if i == 0 {
					return math.Inf(1), true
				}
				return b[i-1].le, true
			}
			return bk.le, false
		}
	}
	return math.NaN(), false
}

// rss is the resident memory of process pid in bytes, from /proc/<pid>/status (VmRSS).
func rss(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS of %d: %w", pid, err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS for process %d", pid)
}
