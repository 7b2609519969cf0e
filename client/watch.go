package client

import (
	"cmp"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/clover-sched/clover/internal/workflow"
)

// WatchConfig starts a batch run when a file arrives (AutoSys' watch_file, the batch design's file
// trigger): a file matching Path (a glob) whose size and modification time have not changed for Stable
// and, with MD5Suffix, whose companion file (the path with the suffix) holds its MD5. The run's cycle comes
// from the file's name (Cycle, a regular expression whose first group is the cycle) or, without one, is
// the day the file was last modified (UTC, 2006-01-02). A cycle runs once, so a file seen again (a
// restart of the client, a second client watching the same directory) starts nothing new.
type WatchConfig struct {
	Batch     string            `mapstructure:"batch"`
	Path      string            `mapstructure:"path"`
	Stable    time.Duration     `mapstructure:"stable"`     // default 10s
	MD5Suffix string            `mapstructure:"md5_suffix"` // ".md5": data.csv is checked against data.csv.md5
	Cycle     string            `mapstructure:"cycle"`      // e.g. `gl-(\d{8})\.csv`
	Frequency string            `mapstructure:"frequency"`
	Params    map[string]string `mapstructure:"params"`
}

// defaultStable is how long a file must keep its size before it counts as arrived.
const defaultStable = 10 * time.Second

// validate checks a watch; i is its place in the configuration, for the error.
func (w *WatchConfig) validate(i int) error {
	where := fmt.Sprintf("watches[%d]", i)
	if err := workflow.ValidName(where+".batch", w.Batch); err != nil {
		return err
	}
	if w.Path == "" {
		return fmt.Errorf("%s.path: a file or a glob is required", where)
	}
	if _, err := filepath.Match(w.Path, ""); err != nil {
		return fmt.Errorf("%s.path %q: %w", where, w.Path, err)
	}
	if w.Stable < 0 {
		return fmt.Errorf("%s.stable: %s is negative", where, w.Stable)
	}
	if w.Cycle != "" {
		re, err := regexp.Compile(w.Cycle)
		if err != nil {
			return fmt.Errorf("%s.cycle %q: %w", where, w.Cycle, err)
		}
		if re.NumSubexp() < 1 {
			return fmt.Errorf("%s.cycle %q: needs a group, (...), that is the cycle", where, w.Cycle)
		}
	}
	if w.Frequency != "" {
		if err := workflow.ValidName(where+".frequency", w.Frequency); err != nil {
			return err
		}
	}
	return nil
}

// seenFile is what a watch knows of one file.
type seenFile struct {
	size    int64
	mtime   time.Time
	since   time.Time // when size and mtime were last seen to change
	asked   bool      // a run was asked for this version of the file
	badSum  string    // the companion's sum that did not match (said once)
	md5Size int64     // the size whose MD5 was computed last (a sum is computed once per version)
}

// watchFiles polls the watches once a second until ctx ends.
func (c *Client) watchFiles(ctx context.Context) {
	if len(c.cfg.Watches) == 0 {
		return
	}
	seen := make([]map[string]*seenFile, len(c.cfg.Watches))
	for i := range seen {
		seen[i] = map[string]*seenFile{}
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		for i := range c.cfg.Watches {
			c.pollWatch(&c.cfg.Watches[i], seen[i])
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// pollWatch looks at a watch's files once.
func (c *Client) pollWatch(w *WatchConfig, seen map[string]*seenFile) {
	now := c.now()
	paths, _ := filepath.Glob(w.Path) // the pattern was checked at start
	present := map[string]bool{}
	for _, p := range paths {
		if w.MD5Suffix != "" && strings.HasSuffix(p, w.MD5Suffix) {
			continue // a companion, not a file to watch
		}
		fi, err := os.Lstat(p) // a symbolic link is not a file that arrived (it could name a device)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		present[p] = true
		f := seen[p]
		if f == nil || f.size != fi.Size() || !f.mtime.Equal(fi.ModTime()) {
			seen[p] = &seenFile{size: fi.Size(), mtime: fi.ModTime(), since: now}
			continue
		}
		if f.asked || now.Sub(f.since) < cmp.Or(w.Stable, defaultStable) {
			continue
		}
		if w.MD5Suffix != "" && !c.sumMatches(p, p+w.MD5Suffix, f) {
			continue
		}
		cycle, err := watchCycle(w, p, fi.ModTime())
		if err != nil {
			c.logger.Warn("a file arrived but names no cycle; no run asked", "batch", w.Batch, "file", p, "err", err)
			f.asked = true
			continue
		}
		note := fmt.Sprintf("file %s arrived (%d bytes)", p, fi.Size())
		if _, err := c.RequestBatchRun(w.Batch, cycle, w.Frequency, w.Params, note); err != nil {
			c.logger.Warn("a file arrived; the batch run could not be asked for", "batch", w.Batch, "file", p, "err", err)
			continue
		}
		f.asked = true
		c.logger.Info("a file arrived: batch run asked for", "batch", w.Batch, "cycle", cycle, "file", p, "bytes", fi.Size())
	}
	for p := range seen {
		if !present[p] {
			delete(seen, p)
		}
	}
}

// maxHashed bounds the files whose MD5 a watch computes: more is not a file that arrived, it is a mistake
// (a sparse file, say), and hashing it would hold the watches for hours.
const maxHashed = 64 << 30

// sumMatches reports whether the companion file holds the MD5 of path (its first word, in hex). The
// companion must be a small regular file: a FIFO would block the watches, a link to a device never end.
func (c *Client) sumMatches(path, companion string, f *seenFile) bool {
	ci, err := os.Lstat(companion)
	if err != nil || !ci.Mode().IsRegular() || ci.Size() > 1<<10 {
		return false // not there yet, or not a companion
	}
	data, err := os.ReadFile(companion)
	if err != nil {
		return false
	}
	if f.size > maxHashed {
		if f.badSum != "too large" {
			c.logger.Warn("a watched file is too large to check its MD5; no run asked", "file", path, "bytes", f.size, "limit", maxHashed)
			f.badSum = "too large"
		}
		return false
	}
	want := strings.ToLower(strings.TrimSpace(strings.SplitN(strings.TrimSpace(string(data)), " ", 2)[0]))
	if want == "" || f.badSum == want && f.md5Size == f.size {
		return false
	}
	got, err := fileMD5(path)
	if err != nil {
		return false
	}
	f.md5Size = f.size
	if got != want {
		f.badSum = want
		c.logger.Warn("a file's MD5 does not match its companion; waiting for either to change", "file", path, "companion", companion, "md5", got, "companion_md5", want)
		return false
	}
	return true
}

func fileMD5(path string) (string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	h := md5.New()
	if _, err := io.Copy(h, fh); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

var cycleRegexps sync.Map // expression → *regexp.Regexp, compiled once (checked at start)

func cycleRegexp(expr string) *regexp.Regexp {
	if re, ok := cycleRegexps.Load(expr); ok {
		return re.(*regexp.Regexp)
	}
	re := regexp.MustCompile(expr)
	cycleRegexps.Store(expr, re)
	return re
}

// watchCycle is the cycle a file stands for.
func watchCycle(w *WatchConfig, path string, mtime time.Time) (string, error) {
	if w.Cycle == "" {
		return mtime.UTC().Format("2006-01-02"), nil
	}
	m := cycleRegexp(w.Cycle).FindStringSubmatch(filepath.Base(path))
	if m == nil || m[1] == "" {
		return "", errors.New("its name does not match " + w.Cycle)
	}
	return m[1], workflow.ValidName("cycle", m[1])
}
