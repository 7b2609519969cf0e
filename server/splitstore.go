package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/clover-sched/clover/internal/registry"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/zksession"
)

// SplitStore moves the open set, the audit log and the revisions of a store written by an earlier
// version to databases of their own (store.SplitDatabases; `clover server split-store`). Every server must be stopped, of any
// version: each reads and writes them where it found them when it started, so one running meanwhile
// would act on an open set that is no longer there (a firing run twice, a result lost). It refuses while
// any server is registered in ZooKeeper, holds an ephemeral node (splitLock) that a server starting
// meanwhile finds before it opens the store (and refuses to start), and says so if one registered while
// it worked anyway (it had looked for the node before the split took it).
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
	lock := sess.Path(splitLock)
	if err := sess.EnsurePath(ctx, sess.Root()); err != nil {
		return 0, fmt.Errorf("split store: %w", err)
	}
	if _, err := sess.Conn().Create(lock, nil, zk.FlagEphemeral, sess.ACL(lock)); err != nil {
		if errors.Is(err, zk.ErrNodeExists) {
			return 0, fmt.Errorf("split store: another split holds %s", lock)
		}
		return 0, fmt.Errorf("split store: take %s: %w", lock, err)
	}
	defer func() { _ = sess.Conn().Delete(lock, -1) }()
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
	st, err := store.Open(ctx, s.cfg.Mongo.URI, s.cfg.Mongo.Database, store.WithLogger(s.logger), store.WithOpenSet(s.cfg.Mongo.OpenSet))
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

// splitLock names the node SplitStore holds while it works.
const splitLock = "split-store"

// refuseDuringSplit fails a server's start while a store split is under way: the server would open the
// store in the layout it is being moved out of.
func refuseDuringSplit(sess *zksession.Session) error {
	held, _, err := sess.Conn().Exists(sess.Path(splitLock))
	switch {
	case err != nil:
		return fmt.Errorf("look for a store split under way: %w", err)
	case held:
		return fmt.Errorf("a store split (clover server split-store) is under way: start this server once it has ended")
	}
	return nil
}

// layoutCheckEvery is how often a server that opened the store in an earlier version's layout looks for
// a split made since: a process that was paused, or cut off from ZooKeeper long enough to be counted
// gone, while split-store ran, checks at once when it runs again (a ticker keeps the tick it missed).
const layoutCheckEvery = 5 * time.Second

// errStoreSplit ends a server whose store was split after it opened it.
var errStoreSplit = errors.New("the store was split (clover server split-store) after this server opened it: start it again, it will open the split store")

// watchLayout ends the server if the store is split after the server opened it: it would go on reading
// and writing the collections the split moved (an open set nobody else reads, events lost to it). A
// server that opened a split store has nothing to watch.
func (s *Server) watchLayout(ctx context.Context) error {
	if s.store.Split() {
		return nil
	}
	t := time.NewTicker(layoutCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, storeTimeout)
		changed, err := s.store.LayoutChanged(cctx)
		cancel()
		switch {
		case changed:
			return errStoreSplit
		case err != nil && ctx.Err() == nil:
			s.logger.Debug("could not look for a store split", "err", err)
		}
	}
}
