// Package browsertest drives Debian's headless Chromium for the console's tests (chromedp). Kept apart from
// testenv, which the bench binary links: this one needs package testing and chromedp.
package browsertest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/clover-sched/clover/internal/testenv"
)

// Chromium is Debian's browser (scripts/deps.sh installs it); CLOVER_CHROMIUM overrides it.
func Chromium() string {
	if p := os.Getenv("CLOVER_CHROMIUM"); p != "" {
		return p
	}
	return "/usr/bin/chromium"
}

// browserBudget bounds a test's whole use of one browser, start included: a page that never reaches the
// state a test waits for fails that test in this time instead of hanging until go test's -timeout.
const browserBudget = 60 * time.Second

// chromiumFlags are the only switches given besides the data dir (and the pipe chromedp talks over): no GPU,
// no network of the browser's own (updates, sync, QUIC probes), so that a test sees its page and nothing else.
var chromiumFlags = []string{
	"headless", "no-sandbox", "disable-gpu", "disable-quic", "no-first-run",
	"disable-background-networking", "disable-component-update", "disable-sync",
}

// Browser starts a headless Chromium with a fresh profile for the test and returns the context of its first
// tab, for chromedp.Run and chromedp.Do. The context expires after browserBudget (sooner if the test's own
// deadline is nearer); the browser and every process it started are gone when the test ends.
//
// Without Chromium the test is skipped, unless CLOVER_REQUIRE_BROWSER is set (as CI should), where it fails:
// a browser test that silently skips everywhere proves nothing.
func Browser(t testing.TB) context.Context {
	t.Helper()
	bin := Chromium()
	if _, err := exec.LookPath(bin); err != nil {
		msg := fmt.Sprintf("browsertest: no browser at %s (%v): install it with scripts/deps.sh (make deps)", bin, err)
		if os.Getenv("CLOVER_REQUIRE_BROWSER") != "" {
			t.Fatalf("%s; CLOVER_REQUIRE_BROWSER is set", msg)
		}
		t.Skipf("%s, or set CLOVER_REQUIRE_BROWSER to fail instead of skipping", msg)
	}

	// The log and the profile live in the test's temp dir, which is removed after the cleanups registered
	// below have killed the browser: TempDir registers its removal first, so it runs last.
	dir := t.TempDir()
	profile := filepath.Join(dir, "profile")
	logPath := filepath.Join(dir, "chromium.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("browsertest: create browser log: %v", err)
	}

	budget := browserBudget
	// Cleanup needs time of its own before go test's -timeout (only a *testing.T has a deadline).
	if dt, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if d, ok := dt.Deadline(); ok && time.Until(d)-20*time.Second < budget {
			budget = time.Until(d) - 20*time.Second
		}
	}
	root, stop := context.WithTimeout(context.Background(), budget)

	var pgid int
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.UserDataDir(profile),
		chromedp.CombinedOutput(logf),
		// Its own process group, so that the renderers and helpers it forks die with it; killed if the
		// thread that started it ends (chromedp keeps that thread while the browser runs).
		chromedp.ModifyCmdFunc(func(cmd *exec.Cmd) {
			if cmd.SysProcAttr == nil {
				cmd.SysProcAttr = &syscall.SysProcAttr{}
			}
			cmd.SysProcAttr.Setpgid = true
			cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
		}),
	}
	for _, f := range chromiumFlags {
		opts = append(opts, chromedp.Flag(f, true))
	}
	// A desktop's window, so that pages lay out (and screenshots show them) as an operator sees them.
	opts = append(opts, chromedp.WindowSize(1280, 860))
	alloc, cancelAlloc := chromedp.NewExecAllocator(root, opts...)
	ctx, cancelTab := chromedp.NewContext(alloc, chromedp.WithErrorf(t.Logf))

	t.Cleanup(func() {
		closeBrowser(t, ctx, cancelTab, cancelAlloc, pgid, profile)
		stop()
		logf.Close()
		if t.Failed() {
			t.Logf("browsertest: chromium's log (%s), last lines:\n%s", logPath, browserLogTail(logPath))
		}
	})

	// Start it now, so that a browser that cannot start fails here, with its log, not in the first action.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("browsertest: start %s: %v\n%s", bin, err, browserLogTail(logPath))
	}
	if b := chromedp.FromContext(ctx).Browser; b != nil && b.Process() != nil {
		pgid = b.Process().Pid
	}
	return ctx
}

// browserLogTail is the end of chromium's log without its complaints that there is no D-Bus, which a
// headless test does not need and which would otherwise be all a failure shows.
func browserLogTail(path string) string {
	var kept []string
	for line := range strings.Lines(testenv.TailFile(path, 300)) {
		if !strings.Contains(line, "dbus") {
			kept = append(kept, strings.TrimSuffix(line, "\n"))
		}
	}
	return strings.Join(kept[max(0, len(kept)-30):], "\n")
}

// closeBrowser asks the browser to close, then makes sure that no process of it is left: one that outlived
// the test would hold the profile open and keep a CPU busy under the next test.
func closeBrowser(t testing.TB, ctx context.Context, cancelTab, cancelAlloc context.CancelFunc, pgid int, profile string) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_ = chromedp.Cancel(cctx) // a browser that does not close in time is killed below
		cancelTab()
		cancelAlloc() // waits for the main process to end
	}()
	closed := waitClosed(done, 10*time.Second)
	if !closed {
		t.Logf("browsertest: browser did not close within 10s; killing it")
	}
	if pgid > 0 {
		_ = syscall.Kill(-pgid, syscall.SIGKILL) // also its helpers, once the main process has gone
	}
	// A helper that left the group would still name the profile on its command line.
	if !testenv.Poll(5*time.Second, func() bool { return killUsing(profile) == 0 }) {
		t.Errorf("browsertest: browser processes using %s still running after cleanup", profile)
	}
	if !closed && !waitClosed(done, 10*time.Second) {
		t.Errorf("browsertest: chromedp did not let go of the killed browser within 10s")
	}
}

func waitClosed(done <-chan struct{}, d time.Duration) bool {
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// killUsing SIGKILLs the processes whose command line has --user-data-dir=profile and returns how many.
func killUsing(profile string) int {
	want := []byte("--user-data-dir=" + profile)
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for arg := range bytes.SplitSeq(cmdline, []byte{0}) {
			if bytes.Equal(arg, want) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				n++
				break
			}
		}
	}
	return n
}

// Screenshot saves the page of ctx (a context from Browser) as a PNG, into $CLOVER_SCREENSHOTS if set (kept
// after the test) or else the test's temp dir, and logs where. The file is named for the test and name.
func Screenshot(t testing.TB, ctx context.Context, name string) string {
	t.Helper()
	dir := os.Getenv("CLOVER_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join(t.TempDir(), "screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("browsertest: screenshot %s: %v", name, err)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100 is PNG
	if err != nil {
		t.Fatalf("browsertest: screenshot %s: %v", name, err)
	}
	file := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()+"-"+name) + ".png"
	path := filepath.Join(dir, file)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatalf("browsertest: screenshot %s: %v", name, err)
	}
	t.Logf("browsertest: screenshot %s", path)
	return path
}
