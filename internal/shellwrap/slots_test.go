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
	for f, content := range map[string]string{"status": "3\n", "pid": "42\n", "out": "old\n"} {
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
		if b, err := os.ReadFile(filepath.Join(dir, again, f)); err != nil || len(b) != 0 {
			t.Fatalf("%s after Get: %q, %v; want empty", f, b, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, again, "out")); !os.IsNotExist(err) {
		t.Fatalf("out after Get: %v; want none", err)
	}
	for name, want := range map[string]bool{"slot0": true, "slot12": true, "slot": false, "slot-1": false, "x.run1": false, "slot1.run1": false} {
		if IsSlot(name) != want {
			t.Errorf("IsSlot(%q) = %v, want %v", name, !want, want)
		}
	}
}
