package server

import (
	"context"
	"time"
)

// historyStore is what the term needs to keep the history bounded.
type historyStore interface {
	ArchiveBuckets(ctx context.Context, cut, now time.Time) (int, error)
	PruneArchive(ctx context.Context, cut time.Time) (int, error)
	PruneFences(ctx context.Context, cut time.Time) (int, error)
	PruneAudit(ctx context.Context, cut time.Time) (int, error)
}

// pruneAuditEvery is how often the leader drops the audit log's old days: they end once a day, and an
// audit log of an earlier version (one collection) is read whole by the delete.
const pruneAuditEvery = time.Hour

// keepHistory keeps the store's size set by the firing rate and history.keep, not by age, until the term
// ends: every history.checkEvery (a minute at most), off the loop, it moves history buckets older than history.keep into the
// archive (a rename each), drops archived buckets older than history.archive_keep more, and drops the
// fences (the ids of fired executions) no firing can need again; every pruneAuditEvery it drops the audit
// log's days older than history.audit_keep. Each step is idempotent, so a leader that
// dies half way leaves the next one to finish it.
func (l *leader) keepHistory(ctx context.Context) {
	if l.history == nil {
		return
	}
	t := time.NewTicker(l.cfg.History.checkEvery())
	defer t.Stop()
	for {
		l.keepHistoryOnce(ctx, l.now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (l *leader) keepHistoryOnce(ctx context.Context, now time.Time) {
	h := l.cfg.History
	stepWithin := func(timeout time.Duration, what string, f func(ctx context.Context) (int, error)) {
		sctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		n, err := f(sctx)
		switch {
		case err != nil && ctx.Err() == nil:
			l.metrics.storeErrors.WithLabelValues("history").Inc()
			l.logger.Warn("keeping the history bounded failed; tried again at its next turn (a minute; the audit log's, an hour)", "step", what, "err", err)
		case n > 0:
			l.logger.Info("history kept bounded", "step", what, "count", n)
		}
	}
	step := func(what string, f func(ctx context.Context) (int, error)) { stepWithin(4*storeTimeout, what, f) }
	if h.AuditKeep > 0 && now.Sub(l.auditPruned) >= pruneAuditEvery {
		l.auditPruned = now
		// Once per store it also moves an earlier version's audit log into days: a read and an insert
		// of every entry, minutes for millions on FerretDB, off the loop.
		stepWithin(10*time.Minute, "drop old audit days", func(ctx context.Context) (int, error) { return l.history.PruneAudit(ctx, now.Add(-h.AuditKeep)) })
	}
	if h.Keep <= 0 {
		return // kept for ever
	}
	step("archive buckets", func(ctx context.Context) (int, error) { return l.history.ArchiveBuckets(ctx, now.Add(-h.Keep), now) })
	if h.ArchiveKeep > 0 {
		step("drop archived buckets", func(ctx context.Context) (int, error) {
			return l.history.PruneArchive(ctx, now.Add(-h.Keep-h.ArchiveKeep))
		})
	}
	// A batch run's records (its ends and operations) are kept as long as the archive keeps executions
	// (for ever when it does).
	if bp, ok := l.batchStore.(interface {
		PruneBatchRuns(ctx context.Context, cut time.Time) (int, error)
	}); ok && h.ArchiveKeep > 0 {
		step("drop old batch runs", func(ctx context.Context) (int, error) { return bp.PruneBatchRuns(ctx, now.Add(-h.Keep-h.ArchiveKeep)) })
	}
	// A firing is never made again once its time is older than the misfire handling looks back (the
	// jobs' last firings are in the open set) and no queued request can name it (fallback_keep).
	step("drop fences", func(ctx context.Context) (int, error) {
		cut := now.Add(-max(h.Keep, l.cfg.FallbackKeep))
		// A batch run's executions are fenced on the day the run started, however long it stays open (a
		// paused run resumed weeks later): those days are kept while it is open.
		if l.batchStore != nil {
			open, err := l.batchStore.ListBatchRuns(ctx, "", true, 0)
			if err != nil {
				return 0, err
			}
			for _, r := range open {
				if day := r.StartedAt.UTC().Truncate(24 * time.Hour); day.Before(cut) {
					cut = day
				}
			}
		}
		return l.history.PruneFences(ctx, cut)
	})
}
