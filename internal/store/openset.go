package store

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/clover-sched/clover/internal/job"
)

// openSet is where the open set's documents are kept: in one pair of collections (singleOpenSet, the
// layout every store had before) or in a pair per partition (partitionedOpenSet, docs/design.md record 19).
// The Store's open-set methods (ReadOpenSet, OpenByID, CloseExecutions, InsertExecutions' copies,
// InsertEvents) keep their rules whichever holds the documents; what differs is only which collections a
// read, insert or delete goes to.
type openSet interface {
	// insertCopies inserts the copies of executions, as stored, with unordered inserts, and returns the
	// positions in docs of those whose id was there already.
	insertCopies(ctx context.Context, docs []job.Execution) (duplicates []int, err error)
	// dropCopy deletes the copy of id, only if it was made by the term of epoch.
	dropCopy(ctx context.Context, id string, epoch int64) error
	// insertEvents inserts events, as stored, and counts those that were there already.
	insertEvents(ctx context.Context, docs []job.Event) (duplicates int, err error)
	// read returns the copies and events of the executions ids (all of them when ids is nil), the events
	// read before the copies: an event is inserted after its copy, so every event read has its copy read
	// too unless the execution was closed in between.
	read(ctx context.Context, ids []string) ([]job.Execution, []job.Event, error)
	// findEvents returns the events, of any execution, that filter selects.
	findEvents(ctx context.Context, filter bson.D) ([]job.Event, error)
	// remove deletes the copies, then the events, of ids.
	remove(ctx context.Context, ids []string) error
	// count counts the copies and the events.
	count(ctx context.Context) (execs, events int64, err error)
}

// Open-set forms, as the store's layout document names them (its open_set field; absent is single).
const (
	OpenSetSingle      = "single"
	OpenSetPartitioned = "partitioned"
)

// singleOpenSet keeps every copy in one collection and every event in another.
type singleOpenSet struct {
	s            *Store
	copies, evts *mongo.Collection
}

func (o singleOpenSet) insertCopies(ctx context.Context, docs []job.Execution) ([]int, error) {
	return insertEach(ctx, o.copies, docs)
}

func (o singleOpenSet) dropCopy(ctx context.Context, id string, epoch int64) error {
	_, err := o.copies.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "epoch", Value: epoch}})
	return err
}

func (o singleOpenSet) insertEvents(ctx context.Context, docs []job.Event) (int, error) {
	dups, err := insertEach(ctx, o.evts, docs)
	return len(dups), err
}

func (o singleOpenSet) read(ctx context.Context, ids []string) ([]job.Execution, []job.Event, error) {
	return readPair(ctx, o.s, o.copies, o.evts, ids)
}

func (o singleOpenSet) findEvents(ctx context.Context, filter bson.D) ([]job.Event, error) {
	return readWhere[job.Event](ctx, o.s, "open event", o.evts, filter)
}

func (o singleOpenSet) remove(ctx context.Context, ids []string) error {
	return removePair(ctx, o.copies, o.evts, ids)
}

func (o singleOpenSet) count(ctx context.Context) (execs, events int64, err error) {
	if execs, err = o.copies.CountDocuments(ctx, bson.D{}); err != nil {
		return 0, 0, err
	}
	events, err = o.evts.CountDocuments(ctx, bson.D{})
	return execs, events, err
}

// partitionedOpenSet keeps the copies of each partition (PartitionOf) in a collection named after it, and
// their events in one whose name starts "openev" instead of "open". An execution's copy and events are in
// the partitions of its id, so a read or a delete by ids goes only to theirs, and a close costs in
// proportion to the partitions it touches rather than to the whole set. Nothing drops a partition yet:
// emptied ones stay (an empty collection costs FerretDB a table), which is why a store is made partitioned
// only when asked (WithOpenSet).
type partitionedOpenSet struct {
	s  *Store
	db *mongo.Database
	// indexed: the event collections whose exec_id index this process made (MongoDB only: FerretDB scans
	// whatever the index, and every index is one more write per insert), at most maxIndexedKept.
	mu      sync.Mutex
	indexed map[string]bool
}

// maxIndexedKept bounds partitionedOpenSet.indexed: a new partition every 10 s makes 8,640 a day.
const maxIndexedKept = 1024

// eventsCollection names the collection of a partition's events.
func eventsCollection(partition string) string {
	return "openev" + strings.TrimPrefix(partition, "open")
}

// isCopiesCollection and isEventsCollection tell the open database's partitions from anything else.
func isCopiesCollection(name string) bool {
	return strings.HasPrefix(name, partitionTimePrefix) || strings.HasPrefix(name, partitionBatchPrefix) || name == partitionUntimed
}

func isEventsCollection(name string) bool {
	return strings.HasPrefix(name, "openev") && isCopiesCollection("open"+strings.TrimPrefix(name, "openev"))
}

// byPartition groups the positions 0..n-1 by the partition of id(i), in partition order.
func byPartition(n int, id func(int) string) (names []string, groups map[string][]int) {
	groups = map[string][]int{}
	for i := range n {
		p := PartitionOf(id(i)).Name
		groups[p] = append(groups[p], i)
	}
	return slices.Sorted(maps.Keys(groups)), groups
}

func (o *partitionedOpenSet) insertCopies(ctx context.Context, docs []job.Execution) ([]int, error) {
	names, groups := byPartition(len(docs), func(i int) string { return docs[i].ID })
	var duplicates []int
	for _, name := range names {
		idx := groups[name]
		part := make([]job.Execution, len(idx))
		for j, i := range idx {
			part[j] = docs[i]
		}
		dups, err := insertEach(ctx, o.db.Collection(name), part)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		for _, j := range dups {
			duplicates = append(duplicates, idx[j])
		}
	}
	return duplicates, nil
}

func (o *partitionedOpenSet) dropCopy(ctx context.Context, id string, epoch int64) error {
	_, err := o.db.Collection(PartitionOf(id).Name).DeleteOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "epoch", Value: epoch}})
	return err
}

func (o *partitionedOpenSet) insertEvents(ctx context.Context, docs []job.Event) (int, error) {
	names, groups := byPartition(len(docs), func(i int) string { return docs[i].ExecID })
	duplicates := 0
	for _, name := range names {
		coll, err := o.events(ctx, name)
		if err != nil {
			return 0, err
		}
		idx := groups[name]
		part := make([]job.Event, len(idx))
		for j, i := range idx {
			part[j] = docs[i]
		}
		dups, err := insertEach(ctx, coll, part)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", coll.Name(), err)
		}
		duplicates += len(dups)
	}
	return duplicates, nil
}

// events is the collection of the events of partition, indexed by execution on MongoDB.
func (o *partitionedOpenSet) events(ctx context.Context, partition string) (*mongo.Collection, error) {
	coll := o.db.Collection(eventsCollection(partition))
	if o.s.ferret || o.s.noIndexes {
		return coll, nil
	}
	o.mu.Lock()
	_, done := o.indexed[coll.Name()]
	o.mu.Unlock()
	if done {
		return coll, nil
	}
	if _, err := coll.Indexes().CreateOne(ctx, index("exec_id", bson.D{{Key: "exec_id", Value: 1}})); err != nil {
		return nil, fmt.Errorf("index %s: %w", coll.Name(), err)
	}
	o.mu.Lock()
	if len(o.indexed) >= maxIndexedKept {
		clear(o.indexed) // a partition written again is indexed again: creating an index that exists is a no-op
	}
	o.indexed[coll.Name()] = true
	o.mu.Unlock()
	return coll, nil
}

func (o *partitionedOpenSet) read(ctx context.Context, ids []string) ([]job.Execution, []job.Event, error) {
	if ids != nil {
		var (
			execs  []job.Execution
			events []job.Event
		)
		names, groups := byPartition(len(ids), func(i int) string { return ids[i] })
		for _, name := range names {
			part := make([]string, len(groups[name]))
			for j, i := range groups[name] {
				part[j] = ids[i]
			}
			e, ev, err := readPair(ctx, o.s, o.db.Collection(name), o.db.Collection(eventsCollection(name)), part)
			if err != nil {
				return nil, nil, err
			}
			execs, events = append(execs, e...), append(events, ev...)
		}
		return execs, events, nil
	}
	// The whole set: every event collection first, then every copy collection, listed after the events
	// were read, so that a partition made meanwhile is read for its copies.
	events, err := readListed[job.Event](ctx, o, isEventsCollection, "open event", bson.D{})
	if err != nil {
		return nil, nil, err
	}
	execs, err := readListed[job.Execution](ctx, o, isCopiesCollection, "open execution", bson.D{})
	if err != nil {
		return nil, nil, err
	}
	return execs, events, nil
}

func (o *partitionedOpenSet) findEvents(ctx context.Context, filter bson.D) ([]job.Event, error) {
	return readListed[job.Event](ctx, o, isEventsCollection, "open event", filter)
}

// readListed reads what filter selects in every collection of o's database that keep names.
func readListed[T any](ctx context.Context, o *partitionedOpenSet, keep func(string) bool, what string, filter bson.D) ([]T, error) {
	names, err := o.list(ctx, keep)
	if err != nil {
		return nil, err
	}
	var out []T
	for _, name := range names {
		docs, err := readWhere[T](ctx, o.s, what, o.db.Collection(name), filter)
		if err != nil {
			return nil, err
		}
		out = append(out, docs...)
	}
	return out, nil
}

func (o *partitionedOpenSet) remove(ctx context.Context, ids []string) error {
	names, groups := byPartition(len(ids), func(i int) string { return ids[i] })
	for _, name := range names {
		part := make([]string, len(groups[name]))
		for j, i := range groups[name] {
			part[j] = ids[i]
		}
		if err := removePair(ctx, o.db.Collection(name), o.db.Collection(eventsCollection(name)), part); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

func (o *partitionedOpenSet) count(ctx context.Context) (execs, events int64, err error) {
	names, err := o.list(ctx, func(n string) bool { return isCopiesCollection(n) || isEventsCollection(n) })
	if err != nil {
		return 0, 0, err
	}
	for _, name := range names {
		n, err := o.db.Collection(name).CountDocuments(ctx, bson.D{})
		if err != nil {
			return 0, 0, fmt.Errorf("count %s: %w", name, err)
		}
		if isEventsCollection(name) {
			events += n
		} else {
			execs += n
		}
	}
	return execs, events, nil
}

// list names the collections of the open database that keep.
func (o *partitionedOpenSet) list(ctx context.Context, keep func(string) bool) ([]string, error) {
	names, err := o.db.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		return nil, fmt.Errorf("list the open set's partitions: %w", err)
	}
	names = slices.DeleteFunc(names, func(n string) bool { return !keep(n) })
	slices.Sort(names)
	return names, nil
}

// insertEach inserts docs into coll with one unordered bulk insert and returns the positions of those
// whose _id was there already.
func insertEach[T any](ctx context.Context, coll *mongo.Collection, docs []T) ([]int, error) {
	items := make([]any, len(docs))
	for i := range docs {
		items[i] = docs[i]
	}
	_, err := coll.InsertMany(ctx, items, options.InsertMany().SetOrdered(false))
	return duplicateIndexes(err)
}

// readPair reads the events, then the copies, of ids (all when ids is nil) from one pair of collections.
func readPair(ctx context.Context, s *Store, copies, evts *mongo.Collection, ids []string) ([]job.Execution, []job.Event, error) {
	execFilter, evFilter := bson.D{}, bson.D{}
	if ids != nil {
		in := bson.D{{Key: "$in", Value: ids}}
		execFilter, evFilter = bson.D{{Key: "_id", Value: in}}, bson.D{{Key: "exec_id", Value: in}}
	}
	events, err := readWhere[job.Event](ctx, s, "open event", evts, evFilter)
	if err != nil {
		return nil, nil, err
	}
	execs, err := readWhere[job.Execution](ctx, s, "open execution", copies, execFilter)
	if err != nil {
		return nil, nil, err
	}
	return execs, events, nil
}

func readWhere[T any](ctx context.Context, s *Store, what string, coll *mongo.Collection, filter bson.D) ([]T, error) {
	cur, err := coll.Find(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", coll.Name(), err)
	}
	out, err := decodeEach[T](ctx, s, what, cur)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", coll.Name(), err)
	}
	return out, nil
}

// removePair deletes the copies of ids, then their events, by lists of at most MaxCloseBatch ids: the
// copy goes first, so that a failure half way leaves stray events (which ReadOpenSet reports), never an
// execution without the events that ended it.
func removePair(ctx context.Context, copies, evts *mongo.Collection, ids []string) error {
	for chunk := range slices.Chunk(ids, MaxCloseBatch) {
		in := bson.D{{Key: "$in", Value: chunk}}
		if _, err := copies.DeleteMany(ctx, bson.D{{Key: "_id", Value: in}}); err != nil {
			return err
		}
		if _, err := evts.DeleteMany(ctx, bson.D{{Key: "exec_id", Value: in}}); err != nil {
			return err
		}
	}
	return nil
}
