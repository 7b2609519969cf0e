// Package store keeps Clover's state in MongoDB, or in anything that speaks its wire protocol (the tests and
// the demo use FerretDB 1.24 on SQLite): the job definitions, the leadership fence, every execution and the
// events reported about it.
//
// Where an execution is (see executions.go for the picture): its id in the fence of its scheduled day, and
// a copy of it and of its events in the open set while it has not ended (open.go); once the leader closes
// it, one folded record in a history bucket (history.go, history_read.go); older than history.keep, in the
// archive (archive.go).
//
// The per-execution path is insert-only (but for the open set's copies, deleted in batches when the
// execution ends). An execution is inserted once, when it fires, under the key job.ExecutionID derives from
// (job, scheduled time); what happens to it later (a client acknowledged it, it
// finished) is inserted as job.Event documents under keys job.EventID derives, and folded into the execution
// when it is read (job.Execution.Fold). Three reasons:
//
//   - A unique _id is the only guarantee every MongoDB-protocol server gives atomically. FerretDB has no
//     multi-document transactions, and its conditional updates are a query followed by a separate write, so
//     two writers can both pass the condition. An insert of an existing key fails on every server, and that
//     is how two processes that both believe they lead are kept from firing the same execution twice
//     (InsertExecutions reports the duplicates), and how a result reported twice is recorded once.
//   - FerretDB inserts in bulk about 25,000 documents a second but updates only a few hundred, fewer as a
//     collection grows.
//   - A retried insert is harmless, so callers can retry without reading first.
//
// For the same reason the leadership fence (ClaimEpoch) is one inserted document per epoch, not a single
// document updated in place.
//
// Times are stored as BSON dates, which hold milliseconds: the store truncates every time it writes to UTC
// milliseconds, so what is read back compares equal (==, reflect.DeepEqual) to what was written only after
// the same truncation. Execution ids keep the caller's full-precision scheduled time.
//
// On FerretDB 1.24 with SQLite every query reads the whole collection, even one by _id (its SQLite index on
// _id is not used by its queries): a filter on _id alone is evaluated in SQLite, a few microseconds a
// document; any other filter decodes every document first, 50-90 microseconds each. The FerretDB that
// scripts/ferretdb.sh builds (tests, bench, demo) has that one line fixed: a filter on _id alone, and the
// write that follows the read of every update and delete, search its _id index there. So every read here
// meets a bounded number of documents: the open set, a bucket index, a few buckets. Moving and pruning
// history are renames and drops. The indexes are for MongoDB.
package store
