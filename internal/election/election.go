package election

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"regexp"
	"slices"
	"strconv"
	"sync"

	"github.com/go-zookeeper/zk"

	"github.com/clover-sched/clover/internal/zksession"
)

// ErrNoLeader is returned by Leader when there is no candidate.
var ErrNoLeader = errors.New("election: no leader")

// errRetry means that the tree changed under an attempt, which should be made again at once.
var errRetry = errors.New("election: tree changed, retry")

// errNotConnected means the attempt needs a connected session; it is a connection error.
var errNotConnected = fmt.Errorf("election: not connected: %w", zk.ErrConnectionClosed)

// Leader is who leads a term.
type Leader struct {
	ID    string // the leader's candidate id
	Epoch int64  // the term's fencing epoch: strictly grows from term to term
	Value []byte // the data the leader campaigned with, opaque here
}

// nodeData is what a candidate node holds.
type nodeData struct {
	ID    string `json:"id"`
	Value []byte `json:"value,omitempty"`
}

// nameRe matches candidate node names: an optional protected prefix with the creator's guid, then "n_" and
// ZooKeeper's ten-digit sequence number.
var nameRe = regexp.MustCompile(`^(?:_c_([0-9a-f]{32})-)?n_([0-9]{10})$`)

type candidate struct {
	name string
	guid string
	seq  int64
}

// candidates keeps the children that take part in the election, lowest sequence first.
func candidates(children []string) []candidate {
	var out []candidate
	for _, c := range children {
		m := nameRe.FindStringSubmatch(c)
		if m == nil {
			continue
		}
		seq, err := strconv.ParseInt(m[2], 10, 64)
		if err != nil {
			continue
		}
		out = append(out, candidate{name: c, guid: m[1], seq: seq})
	}
	slices.SortFunc(out, func(a, b candidate) int { return cmp.Compare(a.seq, b.seq) })
	return out
}

// Election is one candidate's view of the election under a path.
type Election struct {
	sess   *zksession.Session
	path   string
	id     string
	value  []byte
	data   []byte
	logger *slog.Logger

	// mu serializes Campaign and Resign and guards the fields below. Campaign holds it while it waits:
	// cancel its ctx to stop it.
	mu          sync.Mutex
	node        string // our candidate node's path; "" when we hold none
	nodeSession int64  // the session owning node
	pending     string // guid of a create whose outcome is unknown (the connection failed during it)
	led         bool   // node has led a term: the next term needs a new node, for a larger epoch
	term        *Term
}

// New prepares a candidate with id and value for the election under path; it does no I/O.
func New(sess *zksession.Session, path string, id string, value []byte, logger *slog.Logger) *Election {
	data, _ := json.Marshal(nodeData{ID: id, Value: value}) // cannot fail: a string and bytes
	return &Election{
		sess:   sess,
		path:   path,
		id:     id,
		value:  slices.Clone(value),
		data:   data,
		logger: logger.With("component", "election", "path", path, "id", id),
	}
}

// Campaign creates a candidate node, unless one exists in the current session, and blocks until this
// candidate leads or ctx ends. If ctx ends first, the node is deleted (as etcd does): a candidate that
// stopped campaigning does not keep its place in line. While the candidate leads, Campaign returns the
// current Term. After a Term ends, Campaign retires the node that led it and queues anew, so the next Term
// has a larger epoch; Resign first to let the next candidate lead meanwhile.
//
// A lost connection pauses the campaign until the session is back; after an expiry the node is created
// again in the new session.
func (e *Election) Campaign(ctx context.Context) (*Term, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.term != nil {
		select {
		case <-e.term.done:
			e.term = nil
		default:
			return e.term, nil
		}
	}

	sub := e.sess.Subscribe()
	handedOver := false
	defer func() {
		if !handedOver {
			e.sess.Unsubscribe(sub)
		}
	}()
	for {
		if err := ctx.Err(); err != nil {
			return nil, e.abandon(err)
		}
		drain(sub) // what happened before this attempt is history: the attempt reads the current state
		lead, own, pred, err := e.try(ctx)
		switch {
		case errors.Is(err, errRetry):
			continue
		case zksession.IsConnectionError(err):
			if err := e.sess.Backoff(ctx); err != nil {
				return nil, e.abandon(err)
			}
			continue
		case err != nil:
			return nil, err
		}
		if lead {
			// A session change after drain is queued in sub and will end the term at once.
			if st := e.sess.State(); st.Kind != zksession.Connected || st.SessionID != e.nodeSession {
				continue
			}
			seq := candidates([]string{path.Base(e.node)})[0].seq
			t := &Term{epoch: epochOf(seq), session: e.nodeSession, node: e.node, done: make(chan struct{}), stop: make(chan struct{})}
			e.term, e.led, handedOver = t, true, true
			go t.watch(e.sess, sub, own, e.logger)
			e.logger.Info("leading", "epoch", epochOf(seq), "node", e.node)
			return t, nil
		}
		select {
		case <-pred:
		case <-own:
		case _, ok := <-sub:
			if !ok {
				return nil, fmt.Errorf("election: campaign: %w", zksession.ErrClosed)
			}
		case <-ctx.Done():
		}
	}
}

// try makes one attempt to lead. It ensures our node and lists the candidates. When ours is first it returns
// lead and a watch on our node; otherwise the watches on our node and on our predecessor to wait on.
func (e *Election) try(ctx context.Context) (lead bool, own, pred <-chan zk.Event, err error) {
	if err := e.ensureNode(ctx); err != nil {
		return false, nil, nil, err
	}
	conn := e.sess.Conn()
	children, _, err := conn.Children(e.path)
	if err != nil {
		return false, nil, nil, fmt.Errorf("election: list %s: %w", e.path, err)
	}
	cands := candidates(children)
	me := slices.IndexFunc(cands, func(c candidate) bool { return c.name == path.Base(e.node) })
	if me < 0 {
		e.logger.Warn("candidate node vanished; creating another", "node", e.node)
		e.node = ""
		return false, nil, nil, errRetry
	}
	ok, _, own, err := conn.ExistsW(e.node)
	if err != nil {
		return false, nil, nil, fmt.Errorf("election: watch %s: %w", e.node, err)
	}
	if !ok {
		e.node = ""
		return false, nil, nil, errRetry
	}
	if me == 0 {
		return true, own, nil, nil
	}
	predPath := e.path + "/" + cands[me-1].name
	ok, _, pred, err = conn.ExistsW(predPath)
	if err != nil {
		return false, nil, nil, fmt.Errorf("election: watch %s: %w", predPath, err)
	}
	if !ok { // the predecessor left between the listing and the watch
		return false, nil, nil, errRetry
	}
	return false, own, pred, nil
}

// ensureNode makes sure that we hold a candidate node in the current session that has not led a term yet.
func (e *Election) ensureNode(ctx context.Context) error {
	st := e.sess.State()
	if st.Kind != zksession.Connected {
		return errNotConnected
	}
	if e.node != "" && e.nodeSession != st.SessionID {
		e.logger.Info("candidate node went with its expired session; creating another", "node", e.node)
		e.node = ""
	}
	if e.node != "" && e.led {
		if err := e.deleteNode(); err != nil {
			return err
		}
	}
	if e.node != "" {
		return nil
	}
	if err := e.sess.EnsurePath(ctx, e.path); err != nil {
		return err
	}
	if e.pending != "" {
		if err := e.findPending(); err != nil || e.node != "" {
			return err
		}
	}
	var guid [16]byte
	_, _ = rand.Read(guid[:]) // never fails
	e.pending = hex.EncodeToString(guid[:])
	p, err := e.sess.Conn().Create(e.path+"/_c_"+e.pending+"-n_", e.data, zk.FlagEphemeral|zk.FlagSequence, e.sess.ACL(e.path+"/_c_"))
	if err != nil {
		return fmt.Errorf("election: create candidate node under %s: %w", e.path, err)
	}
	return e.adopt(p)
}

// findPending looks for the node of a create whose answer was lost, by the guid in its name.
func (e *Election) findPending() error {
	children, _, err := e.sess.Conn().Children(e.path)
	if err != nil {
		return fmt.Errorf("election: list %s: %w", e.path, err)
	}
	for _, c := range candidates(children) {
		if c.guid == e.pending {
			return e.adopt(e.path + "/" + c.name)
		}
	}
	e.pending = "" // never created, or gone with an expired session
	return nil
}

// adopt makes p our node, recording the session that owns it.
func (e *Election) adopt(p string) error {
	ok, stat, err := e.sess.Conn().Exists(p)
	if err != nil {
		return fmt.Errorf("election: stat %s: %w", p, err)
	}
	e.pending = ""
	if !ok {
		return errRetry
	}
	e.node, e.nodeSession, e.led = p, stat.EphemeralOwner, false
	return nil
}

func (e *Election) deleteNode() error {
	if err := e.sess.Conn().Delete(e.node, -1); err != nil && !errors.Is(err, zk.ErrNoNode) {
		return fmt.Errorf("election: delete %s: %w", e.node, err)
	}
	e.node, e.led = "", false
	return nil
}

// retire deletes our node, or the one a lost create may have made, if the session still has it.
func (e *Election) retire() error {
	if e.pending != "" {
		if err := e.findPending(); err != nil {
			return err
		}
	}
	if e.node == "" {
		return nil
	}
	if e.nodeSession != e.sess.ID() { // expired: the server deleted it
		e.node, e.led = "", false
		return nil
	}
	return e.deleteNode()
}

// abandon ends a campaign that stops because of cause: our node is deleted so we do not keep a place in line.
func (e *Election) abandon(cause error) error {
	if err := e.retire(); err != nil {
		e.logger.Warn("could not withdraw candidate node; it goes with the session", "node", e.node, "err", err)
	}
	return fmt.Errorf("election: campaign: %w", cause)
}

// Resign ends the current term (its Done is closed when Resign returns) and deletes our candidate node if
// the session still has it, so that the next candidate leads. It waits for a running Campaign to return.
func (e *Election) Resign(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.term != nil {
		e.term.end()
		e.term = nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("election: resign: %w", err)
	}
	if err := e.retire(); err != nil {
		return fmt.Errorf("election: resign: %w", err)
	}
	return nil
}

// Leader returns the current leader, or ErrNoLeader when there is no candidate.
func (e *Election) Leader(ctx context.Context) (Leader, error) {
	for {
		if err := ctx.Err(); err != nil {
			return Leader{}, fmt.Errorf("election: leader: %w", err)
		}
		l, _, err := e.leader()
		if !errors.Is(err, errRetry) {
			return l, err
		}
	}
}

// leader reads the lowest candidate and returns it with its node's path.
func (e *Election) leader() (Leader, string, error) {
	conn := e.sess.Conn()
	children, _, err := conn.Children(e.path)
	if errors.Is(err, zk.ErrNoNode) {
		return Leader{}, "", ErrNoLeader
	}
	if err != nil {
		return Leader{}, "", fmt.Errorf("election: list %s: %w", e.path, err)
	}
	cands := candidates(children)
	if len(cands) == 0 {
		return Leader{}, "", ErrNoLeader
	}
	p := e.path + "/" + cands[0].name
	data, _, err := conn.Get(p)
	if errors.Is(err, zk.ErrNoNode) {
		return Leader{}, "", errRetry
	}
	if err != nil {
		return Leader{}, "", fmt.Errorf("election: read %s: %w", p, err)
	}
	l := Leader{Epoch: epochOf(cands[0].seq)}
	var nd nodeData
	if err := json.Unmarshal(data, &nd); err != nil {
		// Not written by this package: it still holds the first place, so it is reported, without an id.
		l.Value = data
	} else {
		l.ID, l.Value = nd.ID, nd.Value
	}
	return l, p, nil
}

// Observe sends the current leader and then every change of leader, until ctx ends; then it closes the
// channel. The zero Leader (ID "", Epoch 0) means that no candidate is left. The same leader is not sent
// twice in a row, and a reader that falls behind gets the latest leader, not every one in between.
func (e *Election) Observe(ctx context.Context) <-chan Leader {
	ch := make(chan Leader)
	go e.observe(ctx, ch)
	return ch
}

// observe runs Observe's loop on its own goroutine, which it alone owns; it ends with ctx (or the Session).
// Since a new candidate always gets a larger sequence, the leader changes only when the leader's node goes:
// it watches that one node, or the children while there is no leader. The watch is set before the leader
// is sent, so a change during a slow send is not missed.
func (e *Election) observe(ctx context.Context, ch chan<- Leader) {
	defer close(ch)
	sub := e.sess.Subscribe()
	defer e.sess.Unsubscribe(sub)
	conn := e.sess.Conn()
	var last *Leader
	for ctx.Err() == nil {
		var w <-chan zk.Event
		l, node, err := e.leader()
		switch {
		case err == nil:
			var ok bool
			if ok, _, w, err = conn.ExistsW(node); err == nil && !ok {
				continue
			}
		case errors.Is(err, ErrNoLeader):
			var children []string
			children, _, w, err = conn.ChildrenW(e.path)
			if errors.Is(err, zk.ErrNoNode) { // no election yet: create its parent to watch it
				if err = e.sess.EnsurePath(ctx, e.path); err == nil {
					continue
				}
				if errors.Is(err, zksession.ErrNotMine) { // a server makes it: wait for that
					var ok bool
					if ok, _, w, err = conn.ExistsW(e.path); err == nil && ok {
						continue
					}
				}
			}
			if err == nil && len(candidates(children)) > 0 { // one arrived since the listing
				continue
			}
		case errors.Is(err, errRetry):
			continue
		}
		if err != nil {
			if !zksession.IsConnectionError(err) {
				e.logger.Warn("observe", "err", err)
			}
			if e.sess.Backoff(ctx) != nil {
				return
			}
			continue
		}
		if last == nil || !sameLeader(*last, l) {
			select {
			case ch <- l:
				last = &l
			case <-ctx.Done():
				return
			}
		}
		select {
		case <-w:
		case _, ok := <-sub:
			if !ok {
				return
			}
		case <-ctx.Done():
		}
	}
}

func sameLeader(a, b Leader) bool {
	return a.ID == b.ID && a.Epoch == b.Epoch && bytes.Equal(a.Value, b.Value)
}

func drain(ch <-chan zksession.State) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// epochOf is the epoch of a term led by the node with sequence seq. It is one more than the sequence so that
// every real epoch is positive: 0 means "not bound to a term" on the wire, and must never pass a fence.
func epochOf(seq int64) int64 { return seq + 1 }
