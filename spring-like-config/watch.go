package springconfig

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/workflow"
)

// WatchOptions say how Watch reads the files and what it starts from.
type WatchOptions struct {
	Options
	// Current is the set in force before Watch starts: the first apply gets the changes from it to the
	// files. Nil means nothing, so the first apply adds every job.
	Current []job.Spec
	// CurrentBatches is the batches in force before Watch starts, as Current is for jobs.
	CurrentBatches []workflow.Definition
	// Debounce is how long the files must stay quiet before they are read again (default 300ms): an
	// editor's save is several events.
	Debounce time.Duration
	// RetryAfter is when a failed apply is tried again (default 10s).
	RetryAfter time.Duration
	// Logger logs each reload (info), refused change (error) and failed apply (warn); nil: slog.Default().
	Logger *slog.Logger
	// OnReject, when set, is called with the errors of every refused change, besides the log.
	OnReject func(error)
}

// Watch applies the job files at paths, then every valid change to them, until ctx ends.
//
// Concurrency: Watch runs in the caller's goroutine and calls apply from it, one call at a time, so apply
// needs no locking of its own. It watches the directories rather than the files, because editors and
// config managers replace a file by renaming another over it, which ends a watch on the file itself.
//
// A change is read once the files have been quiet for Debounce. If any file is then invalid, the change
// is refused as a whole: the errors are logged (and given to OnReject), apply is not called, and the set
// in force stays. Otherwise apply gets the changes from the set in force; when it returns nil the new set
// is in force, and when it fails the files are read and applied again after RetryAfter (apply should be
// idempotent for that). Watch returns an error if it cannot start or the files are invalid at start, and
// nil when ctx ends.
func Watch(ctx context.Context, paths []string, opts WatchOptions, apply func(context.Context, Changes) error) error {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "springconfig")
	debounce := cmp.Or(opts.Debounce, 300*time.Millisecond)
	retryAfter := cmp.Or(opts.RetryAfter, 10*time.Second)

	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("springconfig: watch: %w", err)
	}
	defer w.Close()
	var watched []string
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return fmt.Errorf("springconfig: watch %s: %w", p, err)
		}
		watched = append(watched, abs)
		if dir := filepath.Dir(abs); !slices.Contains(w.WatchList(), dir) {
			if err := w.Add(dir); err != nil {
				return fmt.Errorf("springconfig: watch %s: %w", dir, err)
			}
		}
	}

	// Watching starts before the first read, so that no change made after it is missed.
	set, err := LoadSet(ctx, paths, opts.Options)
	if err != nil {
		return fmt.Errorf("springconfig: watch: %w", err)
	}
	current, currentBatches := opts.Current, opts.CurrentBatches
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	try := func(next Set) {
		changes := DiffSets(current, Specs(next.Jobs), currentBatches, Batches(next.Batches))
		if changes.Empty() {
			log.Debug("job files read: no change")
			return
		}
		if err := apply(ctx, changes); err != nil {
			if ctx.Err() == nil {
				log.Warn("job changes not applied; trying again later", "changes", changes.String(), "retry_after", retryAfter, "err", err)
				timer.Reset(retryAfter)
			}
			return
		}
		log.Info("job changes applied", "changes", changes.String())
		current, currentBatches = Specs(next.Jobs), Batches(next.Batches)
	}
	try(set)

	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("springconfig: watch: watcher closed")
			}
			if name, err := filepath.Abs(ev.Name); err == nil && slices.Contains(watched, name) {
				timer.Reset(debounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("springconfig: watch: watcher closed")
			}
			log.Warn("file watch error", "err", err)
		case <-timer.C:
			set, err := LoadSet(ctx, paths, opts.Options)
			if err != nil {
				log.Error("job files refused: the jobs in force stay", "err", err)
				if opts.OnReject != nil {
					opts.OnReject(err)
				}
				continue
			}
			try(set)
		}
	}
}
