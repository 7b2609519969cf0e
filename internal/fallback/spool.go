package fallback

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrSpoolFull is returned by Spool.Append when the entries would take the spool past its bound.
var ErrSpoolFull = errors.New("fallback: spool is full")

// Spool is a bounded local file of entries, one JSON document a line, fsynced on every append: where a
// client keeps what it could not deliver while MongoDB is unreachable too. It is not safe for concurrent
// use; Queue serializes its calls.
type Spool struct {
	path string
	max  int64
	f    *os.File
	size int64
	n    int
}

// OpenSpool opens the spool at path, creating it if needed, with room for max bytes. A last line cut short
// by a crash during an append is cut off (its entry was never reported as queued); a line that does not
// decode is an error that names it, since entries after it would otherwise be replayed out of order.
func OpenSpool(path string, max int64) (*Spool, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("fallback: open spool: %w", err)
	}
	s := &Spool{path: path, max: max, f: f}
	entries, good, err := s.read()
	if err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Truncate(good); err != nil {
		f.Close()
		return nil, fmt.Errorf("fallback: spool %s: cut a torn last line: %w", path, err)
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("fallback: spool %s: %w", path, err)
	}
	s.size, s.n = good, len(entries)
	return s, nil
}

// read decodes the whole file; good is the length of its complete lines.
func (s *Spool) read() (entries []Entry, good int64, err error) {
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return nil, 0, fmt.Errorf("fallback: spool %s: %w", s.path, err)
	}
	r := bufio.NewReader(s.f)
	for line := 1; ; line++ {
		b, err := r.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			return entries, good, nil // b, if any, is a torn last line
		}
		if err != nil {
			return nil, 0, fmt.Errorf("fallback: read spool %s: %w", s.path, err)
		}
		var e Entry
		if err := json.Unmarshal(bytes.TrimSpace(b), &e); err != nil {
			return nil, 0, fmt.Errorf("fallback: spool %s line %d: %w", s.path, line, err)
		}
		if err := e.Check(); err != nil {
			return nil, 0, fmt.Errorf("fallback: spool %s line %d: %w", s.path, line, err)
		}
		entries = append(entries, e)
		good += int64(len(b))
	}
}

// Entries returns every entry in the spool, oldest first.
func (s *Spool) Entries() ([]Entry, error) {
	entries, _, err := s.read()
	if _, serr := s.f.Seek(s.size, io.SeekStart); err == nil && serr != nil {
		err = fmt.Errorf("fallback: spool %s: %w", s.path, serr)
	}
	return entries, err
}

// Append writes entries at the end and syncs the file: once it returns nil they survive a crash.
func (s *Spool) Append(entries []Entry) error {
	var buf bytes.Buffer
	for _, e := range entries {
		b, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("fallback: spool entry %s: %w", e.ID, err)
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	if s.size+int64(buf.Len()) > s.max {
		return fmt.Errorf("%w: %s holds %d bytes, bound %d", ErrSpoolFull, s.path, s.size, s.max)
	}
	n, err := s.f.Write(buf.Bytes())
	if err == nil {
		err = s.f.Sync()
	}
	if err != nil {
		// Cut what may have been half written, so the next append starts on a line of its own.
		_ = s.f.Truncate(s.size)
		_, _ = s.f.Seek(s.size, io.SeekStart)
		return fmt.Errorf("fallback: append to spool %s: %w", s.path, err)
	}
	s.size += int64(n)
	s.n += len(entries)
	return nil
}

// Clear empties the spool, once its entries are safely elsewhere.
func (s *Spool) Clear() error {
	if err := s.f.Truncate(0); err != nil {
		return fmt.Errorf("fallback: clear spool %s: %w", s.path, err)
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("fallback: clear spool %s: %w", s.path, err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("fallback: clear spool %s: %w", s.path, err)
	}
	s.size, s.n = 0, 0
	return nil
}

// Len is the number of entries in the spool.
func (s *Spool) Len() int { return s.n }

// Close closes the file; the entries stay in it.
func (s *Spool) Close() error { return s.f.Close() }
