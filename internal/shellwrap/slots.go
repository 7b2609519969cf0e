package shellwrap

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
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

// Get returns the name of a slot ready for a run: one given back, its status and pid blanked (a blank
// file reads as none) and its output file empty or gone, or else a new directory. A caller journals the name after
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
// the result was made after it did). Its output file is emptied (or removed) now, so that a large one does
// not wait. Put never writes the status or the pid: a slot is blanked when it is handed out again.
func (s *Slots) Put(slot string) error {
	if err := recycleOutput(filepath.Join(s.dir, slot)); err != nil {
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

// empty readies a given-back slot for its next run: its status and pid blanked in place (see Trap: a
// truncation would free their blocks and start a writeback when the wrapper closes them). The output file
// and its window were emptied, or removed, when the slot was given back (recycleOutput), and nothing
// writes a window after: only the client's cuts do, while the run is under way.
func empty(dir string) error {
	for _, f := range []string{"status", "pid"} {
		if err := Blank(filepath.Join(dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	_, err := os.Stat(dir)
	return err
}

// blankField is what Blank writes: FieldWidth spaces and a newline, read as no value.
var blankField = []byte(strings.Repeat(" ", FieldWidth) + "\n")

// Blank empties a pid or status file in place: its first FieldWidth+1 bytes become blanks. A file longer
// than that (something else wrote it) is truncated instead.
func Blank(path string) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if st.Size > int64(len(blankField)) {
		if err := unix.Ftruncate(fd, 0); err != nil {
			return &os.PathError{Op: "truncate", Path: path, Err: err}
		}
		return nil
	}
	if st.Size == 0 {
		return nil
	}
	if _, err := unix.Pwrite(fd, blankField, 0); err != nil {
		return &os.PathError{Op: "write", Path: path, Err: err}
	}
	return nil
}

// WriteField writes value (a pid, a status) to path in place, padded as the wrapper pads it, making the
// file if it is missing and never truncating it (see Trap).
func WriteField(path, value string) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	b := []byte(value)
	if len(b) < FieldWidth {
		b = append(b, blankField[:FieldWidth-len(b)]...)
	}
	if _, err := unix.Pwrite(fd, append(b, '\n'), 0); err != nil {
		return &os.PathError{Op: "write", Path: path, Err: err}
	}
	return nil
}

// OutputWindowFile is the file beside a run's output file that says which of its offsets it still holds
// once its head was cut (see the client's capOutput): it belongs to that output file, and goes with it.
const OutputWindowFile = "out.window"

// removeWindow removes a slot's output window files (a plain unlink each: os.Remove tries rmdir too when
// the file is missing, as it nearly always is).
func removeWindow(dir string) error {
	for _, f := range []string{OutputWindowFile, OutputWindowFile + ".tmp"} {
		if err := unix.Unlink(filepath.Join(dir, f)); err != nil && err != unix.ENOENT {
			return &os.PathError{Op: "remove", Path: filepath.Join(dir, f), Err: err}
		}
	}
	return nil
}

// recycleOutput readies a slot's output file for the next run, the window first (a window left alone
// would hide the start of the next run's output). The file is kept, emptied, when no other process holds
// it open for writing, which a write lease tells (F_SETLEASE is refused while any other descriptor of the
// file is open for writing): a new file costs an inode, and on an ext4 without a journal each new inode is
// searched past those freed in the last seconds (about 0.4 ms of the client's CPU a run on the 2-core VM
// of the overload bench). A file that a process an earlier run left in the background still writes to,
// or one the lease cannot tell about (a file system without leases), is removed, as before.
func recycleOutput(dir string) error {
	if err := removeWindow(dir); err != nil {
		return err
	}
	path := filepath.Join(dir, "out")
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err == unix.ENOENT {
		return nil
	}
	if err == nil {
		if _, lerr := unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_WRLCK); lerr == nil {
			var st unix.Stat_t
			terr := unix.Fstat(fd, &st)
			if terr == nil && st.Size > 0 {
				terr = unix.Ftruncate(fd, 0)
			}
			_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_UNLCK)
			unix.Close(fd)
			if terr == nil {
				return nil
			}
		} else {
			unix.Close(fd)
		}
	}
	if err := unix.Unlink(path); err != nil && err != unix.ENOENT {
		return &os.PathError{Op: "remove", Path: path, Err: err}
	}
	return nil
}
