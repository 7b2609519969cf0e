package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// ledgerFile is the file every run of the overload scenario's jobs appends one line to: "<execution id>
// <client id>". What ran is counted there, not in what Clover recorded, as in the Dkron comparison.
type ledgerFile struct{ path string }

// size is the file's size now (0 before the first run): lines appended between two sizes are the runs
// that ended in between. Each line is one write of a few dozen bytes to a file opened O_APPEND, so a size
// never falls inside a line.
func (l ledgerFile) size() int64 {
	fi, err := os.Stat(l.path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// linesBetween counts the lines in bytes [from, to) of the file.
func (l ledgerFile) linesBetween(from, to int64) (int64, error) {
	f, err := os.Open(l.path)
	if err != nil {
		return 0, fmt.Errorf("ledger: %w", err)
	}
	defer f.Close()
	r := io.NewSectionReader(f, from, to-from)
	buf := make([]byte, 1<<16)
	var n int64
	for {
		k, err := r.Read(buf)
		n += int64(bytes.Count(buf[:k], []byte{'\n'}))
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("ledger: %w", err)
		}
	}
}

// ledgerCount is what the whole ledger says.
type ledgerCount struct {
	inWindow int // distinct executions scheduled in [from, to) that ran
	doubled  int // executions with more than one line, over the whole ledger
	lines    int
}

// count reads the whole ledger: the distinct executions scheduled in [from, to) (their ids end in the
// scheduled time) and the ones that ran more than once.
func (l ledgerFile) count(from, to time.Time) (ledgerCount, error) {
	var c ledgerCount
	f, err := os.Open(l.path)
	if os.IsNotExist(err) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("ledger: %w", err)
	}
	defer f.Close()
	seen := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		id, _, _ := strings.Cut(sc.Text(), " ")
		c.lines++
		seen[id]++
		if seen[id] == 2 {
			c.doubled++
		}
		if seen[id] > 1 {
			continue
		}
		_, at, ok := strings.Cut(id, "@")
		if !ok {
			continue
		}
		if ts, err := time.Parse(time.RFC3339Nano, at); err == nil && !ts.Before(from) && ts.Before(to) {
			c.inWindow++
		}
	}
	if err := sc.Err(); err != nil {
		return c, fmt.Errorf("ledger: %w", err)
	}
	return c, nil
}
