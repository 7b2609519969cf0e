package shellwrap

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// Slots hands out the directories journaled runs keep their pid, status and output files in (runs/slot<n>
// under a client's state directory), and takes a directory back once its run is confirmed, to serve a later
// run. Using a directory again, rather than making and removing one for each run, is what keeps a run's
// files cheap: on an ext4 without a journal each new inode costs a search past the inodes freed in the last
// seconds, and a run that made a directory and three files cost the client about 1.6 ms of CPU more than
// one that makes only its output file (measured on the 2-core VM of the overload bench: 9.9 against 8.2 ms
// a run, which is what the spawn ceiling costs).
type Slots struct {
	dir string

	mu     sync.Mutex
	free   []string        // slots given back, the last one first (its inodes are the warmest)
	isFree map[string]bool // the slots in free: one given back twice is handed out once
	next   int             // the number the next new slot tries
}

// slotPrefix begins a slot's name: slot0, slot1...
const slotPrefix = "slot"

// NewSlots hands out slots under dir, which exists. New slots are numbered past those in dir already.
func NewSlots(dir string) *Slots {
	s := &Slots{dir: dir, isFree: map[string]bool{}}
	if entries, err := os.ReadDir(dir); err == nil {
		for _, e := range entries {
			if IsSlot(e.Name()) {
				n, _ := strconv.Atoi(strings.TrimPrefix(e.Name(), slotPrefix))
				s.next = max(s.next, n+1)
			}
		}
	}
	return s
}

// Get returns the name of a slot ready for a run: one given back, its status and pid emptied (an empty
// file reads as none) and its output file gone, or else a new directory. A caller journals the name after
// Get returns, so that a restart never takes an earlier run's status or process for this run's. A
// directory that exists and was never given back (an open run's, kept by a restart) is never handed out.
func (s *Slots) Get() (string, error) {
	s.mu.Lock()
	var slot string
	if n := len(s.free); n > 0 {
		slot, s.free = s.free[n-1], s.free[:n-1]
		delete(s.isFree, slot)
	}
	s.mu.Unlock()
	if slot != "" && empty(filepath.Join(s.dir, slot)) == nil {
		return slot, nil
	} // else gone or unusable (someone cleaned the directory by hand): a new one instead
	for range 1000 {
		s.mu.Lock()
		slot = slotPrefix + strconv.Itoa(s.next)
		s.next++
		s.mu.Unlock()
		err := os.Mkdir(filepath.Join(s.dir, slot), 0o700)
		switch {
		case err == nil:
			return slot, nil
		case !errors.Is(err, os.ErrExist):
			return "", err
		}
	}
	return "", errors.New("no free slot name under " + s.dir)
}

// Put takes back the slot of a run that has ended and whose result is confirmed (its wrapper has exited:
// the result was made after it did). Its output file goes now, so that a large one does not wait. Put
// never writes the status or the pid: a slot is emptied when it is handed out again.
func (s *Slots) Put(slot string) error {
	if err := removeOutput(filepath.Join(s.dir, slot)); err != nil {
		return err
	}
	s.mu.Lock()
	if !s.isFree[slot] {
		s.free, s.isFree[slot] = append(s.free, slot), true
	}
	s.mu.Unlock()
	return nil
}

// IsSlot reports whether a directory name is a slot's: exactly slotPrefix and a number as Get writes it.
func IsSlot(name string) bool {
	n, err := strconv.Atoi(strings.TrimPrefix(name, slotPrefix))
	return err == nil && n >= 0 && name == slotPrefix+strconv.Itoa(n)
}

// empty readies a given-back slot for its next run. The output file is made new by each run, never
// truncated: a process the earlier run left in the background may still write to the old one.
func empty(dir string) error {
	for _, f := range []string{"status", "pid"} {
		if err := os.Truncate(filepath.Join(dir, f), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if err := removeOutput(dir); err != nil {
		return err
	}
	_, err := os.Stat(dir)
	return err
}

// OutputWindowFile is the file beside a run's output file that says which of its offsets it still holds
// once its head was cut (see the client's capOutput): it belongs to that output file, and goes with it.
const OutputWindowFile = "out.window"

// removeOutput removes a slot's output file and its window, the window first: a window left alone would
// hide the start of the next run's output.
func removeOutput(dir string) error {
	for _, f := range []string{OutputWindowFile, OutputWindowFile + ".tmp", "out"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}
