package server

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/go-zookeeper/zk"

	"github.com/clover-sched/clover/internal/registry"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/zksession"
)

// SplitStore moves the open set, the audit log and the revisions of a store written by an earlier
// version to databases of their own (store.SplitDatabases; `clover server split-store`). Every server must be stopped, of any
// version: each reads and writes them where it found them when it started, so one running meanwhile
// would act on an open set that is no longer there (a firing run twice, a result lost). It refuses while
// any server is registered in ZooKeeper, and says so if one registered while it worked.
func (s *Server) SplitStore(ctx context.Context) (moved int, err error) {
	sec, err := s.loadSecurity()
	if err != nil {
		return 0, fmt.Errorf("split store: %w", err)
	}
	sess, err := zksession.Connect(ctx, s.cfg.ZooKeeper.Servers, s.cfg.ZooKeeper.Root, s.cfg.ZooKeeper.SessionTimeout, s.logger, sec.zk...)
	if err != nil {
		return 0, fmt.Errorf("split store: %w", err)
	}
	defer sess.Close()
	running := func() ([]string, error) {
		ids, _, err := sess.Conn().Children(sess.Path(registry.KindServers))
		if errors.Is(err, zk.ErrNoNode) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("split store: list the servers in ZooKeeper: %w", err)
		}
		slices.Sort(ids)
		return ids, nil
	}
	ids, err := running()
	if err != nil {
		return 0, err
	}
	if len(ids) > 0 {
		return 0, fmt.Errorf("split store: servers %v are running: stop every server first (the split moves what they read and write)", ids)
	}
	st, err := store.Open(ctx, s.cfg.Mongo.URI, s.cfg.Mongo.Database, store.WithLogger(s.logger))
	if err != nil {
		return 0, fmt.Errorf("split store: %w", err)
	}
	defer st.Close(context.WithoutCancel(ctx))
	moved, err = st.SplitDatabases(ctx)
	if err != nil {
		return moved, err
	}
	if ids, err := running(); err != nil || len(ids) > 0 {
		return moved, fmt.Errorf("split store: done, but servers %v started meanwhile (%v): restart them, they may have opened the store before it was split", ids, err)
	}
	return moved, nil
}
