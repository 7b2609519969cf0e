package client

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/shellwrap"
)

func TestOutputLogKeepsTheLastBytesAndCountsAll(t *testing.T) {
	o := newOutputLog(8)
	var all bytes.Buffer
	for i := range 40 {
		s := strings.Repeat(string(rune('a'+i%26)), i%5+1)
		all.WriteString(s)
		_, _ = o.Write([]byte(s))
		w := all.Bytes()
		if got, want := o.String(), string(w[max(len(w)-8, 0):]); got != want {
			t.Fatalf("after %d writes kept %q, want %q", i+1, got, want)
		}
		if o.size() != int64(all.Len()) {
			t.Fatalf("size %d, want %d", o.size(), all.Len())
		}
	}
	w := all.Bytes()
	// A reader that comes back with the offset it reached gets what follows, nothing twice.
	data, _, start, end := o.readAt(int64(len(w)-5), 3)
	if string(data) != string(w[len(w)-5:len(w)-2]) || start != int64(len(w)-5) || end != int64(len(w)) {
		t.Fatalf("readAt(len-5, 3) = %q, %d, %d", data, start, end)
	}
	// One older than what is kept starts at the oldest byte kept, and says so by its start.
	data, first, start, _ := o.readAt(0, 100)
	if string(data) != string(w[len(w)-8:]) || start != int64(len(w)-8) || first != start {
		t.Fatalf("readAt(0) = %q from %d, want the 8 kept bytes from %d", data, start, len(w)-8)
	}
	if data, _, start, _ := o.readAt(1<<40, 10); len(data) != 0 || start != int64(len(w)) {
		t.Fatalf("readAt(past the end) = %q from %d", data, start)
	}
	if got := o.tail(3); got != string(w[len(w)-3:]) {
		t.Fatalf("tail(3) = %q", got)
	}
	_, _ = o.Write(bytes.Repeat([]byte("z"), 20))
	if o.String() != "zzzzzzzz" || o.size() != int64(len(w)+20) {
		t.Fatalf("after a write longer than keep: %q, %d", o.String(), o.size())
	}
}

// A chatty command cannot fill the state directory: its output file is cut, and readers still count
// offsets from the run's start, so that a reader following it gets every byte the file still holds once.
func TestAShellRunsOutputFileIsCutAndKeepsItsOffsets(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	line := func(i int) string { return fmt.Sprintf("line %07d %s\n", i, strings.Repeat("x", 80)) }
	var written int64
	var read bytes.Buffer
	var off int64
	follow := func() {
		for {
			data, start, end, err := readOutputFile(dir, off, 64<<10)
			if err != nil {
				t.Fatal(err)
			}
			if start != off {
				t.Fatalf("read from %d started at %d: the reader keeps up, nothing was cut under it", off, start)
			}
			read.Write(data)
			off = start + int64(len(data))
			if end != written {
				t.Fatalf("end %d, want %d written", end, written)
			}
			if len(data) == 0 {
				return
			}
		}
	}
	for i := range 40000 { // ~3.6 MB, over maxOutputFile three times
		n, _ := f.WriteString(line(i))
		written += int64(n)
		if i%1000 == 999 {
			capOutput(dir)
			follow()
		}
	}
	capOutput(dir)
	follow()
	var want strings.Builder
	for i := range 40000 {
		want.WriteString(line(i))
	}
	if read.String() != want.String() {
		t.Fatalf("the reader got %d bytes, not the %d written in order", read.Len(), want.Len())
	}
	// On disk the file holds about its last outputFileKeep bytes, whatever its size says.
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok && sys.Blocks*512 > maxOutputFile {
		t.Fatalf("the file takes %d bytes on disk, over %d", sys.Blocks*512, maxOutputFile)
	}
	if first, _ := outputWindow(dir); first < written-maxOutputFile {
		t.Fatalf("the window starts at %d, more than %d before the end %d", first, maxOutputFile, written)
	}
	// A late reader starts at the oldest byte kept, which its start says.
	data, start, end, err := readOutputFile(dir, 0, 100)
	if err != nil || start == 0 || end != written || string(data) != want.String()[start:start+100] {
		t.Fatalf("a late reader got %q from %d (end %d), %v", data, start, end, err)
	}
	var tail bytes.Buffer
	outputTail(dir, job.MaxOutput, &tail)
	if tail.String() != want.String()[want.Len()-job.MaxOutput:] {
		t.Fatalf("the tail is not the last %d bytes", job.MaxOutput)
	}
	if outputFileSize(dir) != written {
		t.Fatalf("outputFileSize = %d, want %d", outputFileSize(dir), written)
	}
}

// A slot serves the next run with neither the earlier run's output nor its window: the next run's output
// is read from its first byte.
func TestASlotsNextRunReadsItsOutputFromItsStart(t *testing.T) {
	runs := t.TempDir()
	slots := shellwrap.NewSlots(runs)
	slot, err := slots.Get()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(runs, slot)
	if err := os.WriteFile(filepath.Join(dir, "out"), bytes.Repeat([]byte("x"), 3*maxOutputFile), 0o600); err != nil {
		t.Fatal(err)
	}
	capOutput(dir)
	if first, _ := outputWindow(dir); first == 0 {
		t.Fatal("the big output was not cut")
	}
	if err := slots.Put(slot); err != nil {
		t.Fatal(err)
	}
	again, err := slots.Get()
	if err != nil || again != slot {
		t.Fatalf("the slot was not given again: %q, %v", again, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "out"), []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	data, start, end, err := readOutputFile(dir, 0, 100)
	if err != nil || string(data) != "hello\n" || start != 0 || end != 6 {
		t.Fatalf("the next run's output reads %q from %d to %d (%v)", data, start, end, err)
	}
}
