package springconfig

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/testenv"
)

// recorder keeps what Watch hands out, for the test goroutine to poll.
type recorder struct {
	mu       sync.Mutex
	applied  []Changes
	rejected []error
}

func (r *recorder) apply(_ context.Context, c Changes) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.applied = append(r.applied, c)
	return nil
}

func (r *recorder) reject(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rejected = append(r.rejected, err)
}

func (r *recorder) counts() (int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.applied), len(r.rejected)
}

func (r *recorder) last() Changes {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.applied[len(r.applied)-1]
}

// replace writes a file the way editors do: a new file renamed over the old one.
func replace(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestWatch(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "jobs.yaml")
	v1 := "jobs:\n  - {name: a, schedule: \"@daily\", handler: x}\n  - {name: b, schedule: \"@daily\", handler: x}\n"
	v2 := "jobs:\n  - {name: a, schedule: \"@hourly\", handler: x}\n  - {name: c, schedule: \"@daily\", handler: x}\n"
	bad := "jobs:\n  - {name: a, schedule: \"0 0 25 * * ?\", handler: x}\n"
	v3 := "jobs:\n  - {name: c, schedule: \"@daily\", handler: x}\n"
	if err := os.WriteFile(path, []byte(v1), 0o644); err != nil {
		t.Fatal(err)
	}

	r := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Watch(ctx, []string{path}, WatchOptions{
			Options: Options{Lookup: noEnv}, Debounce: 20 * time.Millisecond,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), OnReject: r.reject,
		}, r.apply)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch: %v", err)
		}
	})

	names := func(c Changes) string { return c.String() }
	testenv.WaitFor(t, 5*time.Second, "the first apply", func() bool { n, _ := r.counts(); return n == 1 })
	if got := names(r.last()); got != "add a,b" {
		t.Fatalf("first apply: %s", got)
	}

	replace(t, path, v2)
	testenv.WaitFor(t, 5*time.Second, "the change to be applied", func() bool { n, _ := r.counts(); return n == 2 })
	if got := names(r.last()); got != "add c; update a; delete b" {
		t.Fatalf("second apply: %s", got)
	}

	replace(t, path, bad)
	testenv.WaitFor(t, 5*time.Second, "the invalid change to be refused", func() bool { _, n := r.counts(); return n == 1 })
	if n, _ := r.counts(); n != 2 {
		t.Fatalf("an invalid change was applied")
	}
	r.mu.Lock()
	rej := r.rejected[0].Error()
	r.mu.Unlock()
	if !strings.Contains(rej, `jobs.yaml:2: job a: key schedule: schedule "0 0 25 * * ?"`) {
		t.Errorf("rejection: %s", rej)
	}

	// The next valid version is compared with the set in force (v2), not with the refused one.
	replace(t, path, v3)
	testenv.WaitFor(t, 5*time.Second, "the fixed change to be applied", func() bool { n, _ := r.counts(); return n == 3 })
	if got := names(r.last()); got != "delete a" {
		t.Fatalf("third apply: %s", got)
	}
}

func TestWatchRefusesInvalidStart(t *testing.T) {
	path := write(t, t.TempDir(), "jobs.yaml", "jobs:\n  - {name: a}\n")
	err := Watch(context.Background(), []string{path}, WatchOptions{Options: Options{Lookup: noEnv}},
		func(context.Context, Changes) error { t.Error("apply called"); return nil })
	if err == nil || !strings.Contains(err.Error(), "job a: key handler: is required") {
		t.Fatalf("got %v", err)
	}
}
