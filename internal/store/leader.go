package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// claim is one leadership term recorded in the cluster collection, one document per epoch.
//
// Why not one {_id: "leader"} document updated with the condition epoch < new epoch: FerretDB runs an
// update as a query and then a separate write, so two servers claiming at once can both pass the condition
// and the lower epoch can be written last (TestClaimEpochConcurrent catches it). Inserting a key is atomic
// everywhere, so a claim inserts its epoch, then looks for a higher one. Of two successful claims, the lower
// one's look therefore happened before the higher one's insert: a claim never succeeds once a higher epoch is
// recorded. The collection grows by one small document per term.
type claim struct {
	ID     string    `bson:"_id"`
	Epoch  int64     `bson:"epoch"`
	Server string    `bson:"server"`
	Since  time.Time `bson:"since"`
}

func claimID(epoch int64) string { return fmt.Sprintf("epoch-%d", epoch) }

// ClaimEpoch records that server leads with epoch. It returns ErrFenced if another server recorded the same
// epoch, or anyone recorded a higher one. Claiming again the epoch a server already holds succeeds (and keeps
// the original since time), so a leader may re-check its fence with it at any time.
func (s *Store) ClaimEpoch(ctx context.Context, epoch int64, server string) error {
	c := claim{ID: claimID(epoch), Epoch: epoch, Server: server, Since: storedTime(time.Now())}
	_, err := s.cluster.InsertOne(ctx, c)
	if mongo.IsDuplicateKeyError(err) {
		var held claim
		if err := s.cluster.FindOne(ctx, bson.D{{Key: "_id", Value: c.ID}}).Decode(&held); err != nil {
			return fmt.Errorf("store: claim epoch %d: read holder: %w", epoch, err)
		}
		if held.Server != server {
			return fmt.Errorf("%w: epoch %d is held by %s", ErrFenced, epoch, held.Server)
		}
		err = nil
	}
	if err != nil {
		return fmt.Errorf("store: claim epoch %d: %w", epoch, err)
	}
	var higher claim
	err = s.cluster.FindOne(ctx, bson.D{{Key: "epoch", Value: bson.D{{Key: "$gt", Value: epoch}}}}).Decode(&higher)
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
		return nil
	case err != nil:
		return fmt.Errorf("store: claim epoch %d: look for a higher epoch: %w", epoch, err)
	default:
		return fmt.Errorf("%w: epoch %d is held by %s", ErrFenced, higher.Epoch, higher.Server)
	}
}

// LeaderEpoch returns the highest epoch claimed and the server that claimed it; epoch 0 and server "" if no
// epoch was ever claimed.
func (s *Store) LeaderEpoch(ctx context.Context) (epoch int64, server string, err error) {
	var c claim
	opts := options.FindOne().SetSort(bson.D{{Key: "epoch", Value: -1}})
	err = s.cluster.FindOne(ctx, bson.D{}, opts).Decode(&c)
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
		return 0, "", nil
	case err != nil:
		return 0, "", fmt.Errorf("store: leader epoch: %w", err)
	}
	return c.Epoch, c.Server, nil
}
