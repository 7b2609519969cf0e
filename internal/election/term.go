package election

import (
	"log/slog"
	"sync"

	"github.com/go-zookeeper/zk"

	"github.com/clover-sched/clover/internal/zksession"
)

// Term is one period of leadership, with its fencing epoch.
type Term struct {
	epoch   int64
	session int64
	node    string
	done    chan struct{} // closed by watch when the term ends; never reopens
	stop    chan struct{} // closed by Resign
	once    sync.Once
}

// Epoch is the term's fencing epoch: larger than that of every earlier term of this election.
func (t *Term) Epoch() int64 { return t.epoch }

// Done is closed when the term ends: the connection was lost or the session expired or closed, the node was
// deleted, or Resign was called. Then the caller stops acting as leader, Resigns and Campaigns again.
func (t *Term) Done() <-chan struct{} { return t.done }

// end stops watch and waits until Done is closed.
func (t *Term) end() {
	t.once.Do(func() { close(t.stop) })
	<-t.done
}

// watch runs on its own goroutine for the whole term and is the only one to close done. It waits on four
// sources: the Session's Done; sub, the session's state changes, subscribed before the term was granted so
// none is missed (anything but the same session still connected ends the term); own, the watch on our node
// (deleted, or no longer watched because the session expired or closed, ends the term; a data change
// re-arms it); and stop, closed by Resign.
func (t *Term) watch(sess *zksession.Session, sub <-chan zksession.State, own <-chan zk.Event, logger *slog.Logger) {
	defer close(t.done)
	defer sess.Unsubscribe(sub)
	reason := ""
	for reason == "" {
		select {
		case <-t.stop:
			logger.Info("resigned", "epoch", t.epoch)
			return
		case <-sess.Done():
			logger.Info("term ended: session closed", "epoch", t.epoch)
			return
		case st, ok := <-sub:
			switch {
			case !ok:
				reason = "session closed"
			case st.Kind != zksession.Connected || st.SessionID != t.session:
				reason = "session " + st.Kind.String()
			}
		case ev := <-own:
			if ev.Type != zk.EventNodeDataChanged {
				reason = "candidate node: " + ev.Type.String()
				break
			}
			ok, _, w, err := sess.Conn().ExistsW(t.node)
			switch {
			case err != nil:
				reason = "re-watch candidate node: " + err.Error()
			case !ok:
				reason = "candidate node deleted"
			default:
				own = w
			}
		}
	}
	logger.Warn("leadership lost", "epoch", t.epoch, "reason", reason)
}
