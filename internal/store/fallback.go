package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/clover-sched/clover/internal/fallback"
)

// AppendFallback stores entries in the fallback queue with one unordered bulk insert. An entry whose id is
// stored already is skipped: a client that moves its spool again after a crash queues nothing twice.
func (s *Store) AppendFallback(ctx context.Context, entries []fallback.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	docs := make([]any, len(entries))
	for i, e := range entries {
		if err := e.Check(); err != nil {
			return fmt.Errorf("store: append fallback: %w", err)
		}
		e.At = storedTime(e.At)
		if e.State == "" {
			e.State = fallback.StateWaiting
		}
		docs[i] = e
	}
	_, err := s.fallback.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	if _, err := duplicateIndexes(err); err != nil {
		return fmt.Errorf("store: append fallback: %w", err)
	}
	return nil
}

// WaitingFallback returns up to limit entries still waiting for replay, each client's in the order it
// queued them, leaving out the clients in skipClients. A document that does not decode, or is not a valid
// entry, is returned with State rejected and Error saying why, so that the replay settles it instead of
// tripping on it forever; one whose _id is not a string cannot be settled and is logged and left out.
func (s *Store) WaitingFallback(ctx context.Context, limit int, skipClients []string) ([]fallback.Entry, error) {
	opts := options.Find().
		SetSort(bson.D{{Key: "client", Value: 1}, {Key: "boot", Value: 1}, {Key: "seq", Value: 1}}).
		SetLimit(int64(limit))
	filter := bson.D{{Key: "state", Value: fallback.StateWaiting}}
	if len(skipClients) > 0 {
		filter = append(filter, bson.E{Key: "client", Value: bson.D{{Key: "$nin", Value: skipClients}}})
	}
	cur, err := s.fallback.Find(ctx, filter, opts)
	if err != nil {
		return nil, fmt.Errorf("store: waiting fallback: %w", err)
	}
	defer cur.Close(ctx)
	var out []fallback.Entry
	for cur.Next(ctx) {
		var e fallback.Entry
		if err := cur.Decode(&e); err != nil {
			id, ok := cur.Current.Lookup("_id").StringValueOK()
			if !ok {
				s.logger.Error("fallback queue holds a document whose _id is not a string; delete it", "id", cur.Current.Lookup("_id").String())
				continue
			}
			client, _ := cur.Current.Lookup("client").StringValueOK()
			out = append(out, fallback.Entry{ID: id, Client: client, State: fallback.StateRejected, Error: "does not decode: " + err.Error()})
			continue
		}
		if err := e.Check(); err != nil {
			e.State, e.Error = fallback.StateRejected, err.Error()
		}
		out = append(out, e)
	}
	if err := cur.Err(); err != nil {
		return out, fmt.Errorf("store: waiting fallback: %w", err)
	}
	return out, nil
}

// SettleFallback marks a waiting entry applied or rejected. It reports false if the entry was not waiting
// (another leader settled it first).
func (s *Store) SettleFallback(ctx context.Context, id string, state fallback.State, server string, epoch int64, reason string, at time.Time) (bool, error) {
	set := bson.D{
		{Key: "state", Value: state}, {Key: "applied_at", Value: storedTime(at)},
		{Key: "applied_by", Value: server}, {Key: "epoch", Value: epoch},
	}
	if reason != "" {
		set = append(set, bson.E{Key: "error", Value: reason})
	}
	res, err := s.fallback.UpdateOne(ctx,
		bson.D{{Key: "_id", Value: id}, {Key: "state", Value: fallback.StateWaiting}},
		bson.D{{Key: "$set", Value: set}})
	if err != nil {
		return false, fmt.Errorf("store: settle fallback entry %s: %w", id, err)
	}
	return res.ModifiedCount == 1, nil
}

// FallbackWaitingFor returns which of execIDs have a result or an ack waiting in the fallback queue.
func (s *Store) FallbackWaitingFor(ctx context.Context, execIDs []string) ([]string, error) {
	if len(execIDs) == 0 {
		return nil, nil
	}
	filter := bson.D{{Key: "state", Value: fallback.StateWaiting}, {Key: "exec_id", Value: bson.D{{Key: "$in", Value: execIDs}}}}
	cur, err := s.fallback.Find(ctx, filter, options.Find().SetProjection(bson.D{{Key: "exec_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("store: fallback waiting for executions: %w", err)
	}
	var docs []struct {
		ExecID string `bson:"exec_id"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("store: fallback waiting for executions: %w", err)
	}
	out := make([]string, 0, len(docs))
	for _, d := range docs {
		out = append(out, d.ExecID)
	}
	return out, nil
}

// FallbackStatus counts the queue's entries for operators.
func (s *Store) FallbackStatus(ctx context.Context) (fallback.Status, error) {
	var st fallback.Status
	for state, n := range map[fallback.State]*int64{
		fallback.StateWaiting: &st.Waiting, fallback.StateApplied: &st.Applied, fallback.StateRejected: &st.Rejected,
	} {
		c, err := s.fallback.CountDocuments(ctx, bson.D{{Key: "state", Value: state}})
		if err != nil {
			return st, fmt.Errorf("store: fallback status: %w", err)
		}
		*n = c
	}
	if st.Waiting > 0 {
		cur, err := s.fallback.Find(ctx, bson.D{{Key: "state", Value: fallback.StateWaiting}},
			options.Find().SetProjection(bson.D{{Key: "client", Value: 1}, {Key: "at", Value: 1}}))
		if err != nil {
			return st, fmt.Errorf("store: fallback status: %w", err)
		}
		var docs []struct {
			Client string    `bson:"client"`
			At     time.Time `bson:"at"`
		}
		if err := cur.All(ctx, &docs); err != nil {
			return st, fmt.Errorf("store: fallback status: %w", err)
		}
		st.WaitingByClient = map[string]int64{}
		for _, d := range docs {
			st.WaitingByClient[d.Client]++
			if st.OldestWaiting.IsZero() || d.At.Before(st.OldestWaiting) {
				st.OldestWaiting = d.At
			}
		}
	}
	var last fallback.Entry
	err := s.fallback.FindOne(ctx, bson.D{{Key: "state", Value: fallback.StateApplied}},
		options.FindOne().SetSort(bson.D{{Key: "applied_at", Value: -1}})).Decode(&last)
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
	case err != nil:
		return st, fmt.Errorf("store: fallback status: %w", err)
	default:
		st.LastAppliedAt, st.LastAppliedBy = last.AppliedAt, last.AppliedBy
	}
	return st, nil
}

// FallbackEntries returns the entries of client, in the order it queued them, whatever their state.
func (s *Store) FallbackEntries(ctx context.Context, client string) ([]fallback.Entry, error) {
	cur, err := s.fallback.Find(ctx, bson.D{{Key: "client", Value: client}},
		options.Find().SetSort(bson.D{{Key: "boot", Value: 1}, {Key: "seq", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("store: fallback entries of %s: %w", client, err)
	}
	out, err := decodeEach[fallback.Entry](ctx, s, "fallback entry", cur)
	if err != nil {
		return nil, fmt.Errorf("store: fallback entries of %s: %w", client, err)
	}
	return out, nil
}

// PruneFallback deletes the entries settled (applied or rejected) before before; waiting entries stay
// whatever their age. It reports how many it deleted.
func (s *Store) PruneFallback(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.fallback.DeleteMany(ctx, bson.D{
		{Key: "state", Value: bson.D{{Key: "$ne", Value: fallback.StateWaiting}}},
		{Key: "applied_at", Value: bson.D{{Key: "$lt", Value: storedTime(before)}}},
	})
	if err != nil {
		return 0, fmt.Errorf("store: prune fallback: %w", err)
	}
	return res.DeletedCount, nil
}
