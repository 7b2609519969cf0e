package server

import (
	"context"
	"errors"

	"github.com/clover-sched/clover/internal/election"
	"github.com/clover-sched/clover/internal/store"
)

// monitorLeadership campaigns for leadership and runs the leader loop for each term won.
//
// A term ends when ZooKeeper can no longer vouch for it (disconnection, session expiry: the election's
// Term.Done), when the leader loop finds the session unconfirmed (no ping answered within two thirds of the
// session timeout), or when establishing the term finds a newer epoch claimed in the store (ErrFenced).
// Either way the loop's context is cancelled and the loop has returned before the server resigns
// (deleting its candidate node if the session still has it) and campaigns again for a new term with a
// larger epoch. Leadership lost and regained at once is therefore two separate terms, never a
// continuation.
func (s *Server) monitorLeadership(ctx context.Context) error {
	s.election.Lead(ctx, func(termCtx context.Context, term *election.Term) error {
		epoch := term.Epoch()
		s.logger.Info("leadership acquired", "epoch", epoch)
		s.metrics.leaderChanges.Inc()
		s.metrics.isLeader.Set(1)
		s.metrics.epoch.Set(float64(epoch))
		l := newLeader(s.leaderDeps(), s.logger, epoch)
		s.lead.Store(l)
		err := l.run(termCtx)
		s.lead.Store(nil)
		s.metrics.isLeader.Set(0)
		s.metrics.epoch.Set(0)
		s.metrics.orphaned.Set(0) // a follower reports none; the next term counts its own

		reason := "term ended"
		switch {
		case ctx.Err() != nil:
			reason = "server stopping"
		case errors.Is(err, store.ErrFenced):
			reason = "a newer leader is recorded in the store"
			s.logger.Error("the store records a newer epoch than ZooKeeper gave this term. If it persists, "+
				"ZooKeeper's data or the election node was wiped and its sequence counter restarted. To recover: "+
				"stop every server, delete the epoch documents in the store's cluster collection, then restart "+
				"the servers and every client (clients remember the newest epoch they saw)",
				"epoch", epoch, "err", err)
		case err != nil:
			reason = err.Error()
		}
		s.logger.Warn("leadership lost", "epoch", epoch, "reason", reason)
		return err
	})
	return nil
}
