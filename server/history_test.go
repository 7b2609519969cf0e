package server

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// historyCalls records what keepHistoryOnce asks of the store.
type historyCalls struct {
	archived, audit []time.Time
}

func (h *historyCalls) ArchiveBuckets(_ context.Context, cut, _ time.Time) (int, error) {
	h.archived = append(h.archived, cut)
	return 0, nil
}
func (h *historyCalls) PruneArchive(context.Context, time.Time) (int, error) { return 0, nil }
func (h *historyCalls) PruneFences(context.Context, time.Time) (int, error)  { return 0, nil }
func (h *historyCalls) PruneAudit(_ context.Context, cut time.Time) (int, error) {
	h.audit = append(h.audit, cut)
	return 0, nil
}

// The audit log is pruned of what is older than history.audit_keep once an hour, also when the
// executions are kept for ever.
func TestTheLeaderPrunesTheAuditLogHourly(t *testing.T) {
	calls := &historyCalls{}
	cfg := DefaultConfig()
	cfg.History.Keep = 0
	l := &leader{leaderDeps: leaderDeps{cfg: cfg, metrics: newMetrics(prometheus.NewRegistry()), history: calls}, logger: slog.New(slog.DiscardHandler)}
	now := time.Date(2026, 12, 4, 5, 0, 0, 0, time.UTC)
	for _, after := range []time.Duration{0, time.Minute, 59 * time.Minute, time.Hour, 2 * time.Hour} {
		l.keepHistoryOnce(t.Context(), now.Add(after))
	}
	keep := cfg.History.AuditKeep
	want := []time.Time{now.Add(-keep), now.Add(time.Hour - keep), now.Add(2*time.Hour - keep)}
	if len(calls.audit) != len(want) {
		t.Fatalf("audit pruned with cuts %v, want %v", calls.audit, want)
	}
	for i := range want {
		if !calls.audit[i].Equal(want[i]) {
			t.Fatalf("audit pruned with cuts %v, want %v", calls.audit, want)
		}
	}
	if len(calls.archived) != 0 {
		t.Errorf("history kept for ever was archived: %v", calls.archived)
	}
}
