package shellwrap

import (
	"os"
	"path/filepath"
	"testing"
)

// A directory that exists and was never given back (an open run's, kept by a restarted client) is never
// handed out; a slot given back is, emptied; names that are not slots are told apart.
func TestSlotsNeverHandOutAKeptDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "slot0"), 0o700); err != nil {
		t.Fatal(err)
	}
	s := NewSlots(dir)
	got, err := s.Get()
	if err != nil || got != "slot1" {
		t.Fatalf("Get() = %q, %v; want slot1 (slot0 is kept)", got, err)
	}
	// A run whose output was cut leaves a window (and a window's temporary file, cut short): both go.
	for f, content := range map[string]string{"status": "3\n", "pid": "42\n", "out": "old\n", OutputWindowFile: "5 5\n", OutputWindowFile + ".tmp": "6"} {
		if err := os.WriteFile(filepath.Join(dir, got, f), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Put(got); err != nil {
		t.Fatal(err)
	}
	again, err := s.Get()
	if err != nil || again != got {
		t.Fatalf("Get() after Put = %q, %v; want %s again", again, err, got)
	}
	for _, f := range []string{"status", "pid"} {
		if b, err := os.ReadFile(filepath.Join(dir, again, f)); err != nil || Field(b) != "" {
			t.Fatalf("%s after Get: %q, %v; want blank", f, b, err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, again, "out")); err != nil && !os.IsNotExist(err) || len(b) != 0 {
		t.Fatalf("out after Get: %q, %v; want empty or none", b, err)
	}
	for _, f := range []string{OutputWindowFile, OutputWindowFile + ".tmp"} {
		if _, err := os.Stat(filepath.Join(dir, again, f)); !os.IsNotExist(err) {
			t.Fatalf("%s after Get: %v; want none", f, err)
		}
	}
	for name, want := range map[string]bool{"slot0": true, "slot12": true, "slot": false, "slot-1": false, "x.run1": false, "slot1.run1": false} {
		if IsSlot(name) != want {
			t.Errorf("IsSlot(%q) = %v, want %v", name, !want, want)
		}
	}
}

// A slot's output file is kept, emptied, for the next run, unless a process still holds it open for
// writing (one an earlier run left in the background): then it is removed, and that process writes on to
// a file no run reads.
func TestSlotsKeepTheOutputFileOnlyWhenNobodyWritesToIt(t *testing.T) {
	dir := t.TempDir()
	s := NewSlots(dir)
	slot, err := s.Get()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, slot, "out")
	if err := os.WriteFile(out, []byte("first run\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(out)
	if err := s.Put(slot); err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(out)
	if err != nil || after.Size() != 0 || !os.SameFile(before, after) {
		t.Fatalf("out after Put: %v, %v; want the same file, emptied", after, err)
	}
	if again, err := s.Get(); err != nil || again != slot {
		t.Fatalf("Get() = %q, %v", again, err)
	}
	if err := os.WriteFile(out, []byte("second run\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	writer, err := os.OpenFile(out, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	if err := s.Put(slot); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("out after Put while another descriptor writes to it: %v; want it removed", err)
	}
}

// The wrapper's fields are written in place and read back by their first field; a blanked one reads as
// none.
func TestFieldsAreWrittenInPlace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pid")
	if err := WriteField(path, "4194304"); err != nil {
		t.Fatal(err)
	}
	if err := WriteField(path, "7"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || Field(b) != "7" || len(b) != FieldWidth+1 {
		t.Fatalf("after two writes: %q, %v; want 7, padded", b, err)
	}
	if err := Blank(path); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); Field(b) != "" {
		t.Fatalf("after Blank: %q; want blank", b)
	}
	if err := os.WriteFile(path, []byte("something much longer than a field\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Blank(path); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); Field(b) != "" {
		t.Fatalf("a long file after Blank: %q; want blank", b)
	}
}
