package store

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Alert is a problem someone must hear of. The monitor mails what is open; the server that sees a problem
// raises it. There is one document per problem (its Key), raised again after it cleared.
type Alert struct {
	Key      string    `bson:"_id" json:"key"` // names the problem, e.g. "fallback-queue"
	Kind     string    `bson:"kind" json:"kind"`
	State    string    `bson:"state" json:"state"` // AlertOpen or AlertCleared
	Summary  string    `bson:"summary" json:"summary"`
	Where    string    `bson:"where,omitempty" json:"where,omitempty"`     // the member, job or execution
	Details  string    `bson:"details,omitempty" json:"details,omitempty"` // what to do
	Contacts []string  `bson:"contacts,omitempty" json:"contacts,omitempty"`
	Since    time.Time `bson:"since" json:"since"` // when the problem started
	RaisedAt time.Time `bson:"raised_at" json:"raised_at"`
	RaisedBy string    `bson:"raised_by" json:"raised_by"`
	// UpdatedAt is when the summary was last brought up to date.
	UpdatedAt time.Time `bson:"updated_at" json:"updated_at"`
	ClearedAt time.Time `bson:"cleared_at,omitempty" json:"cleared_at,omitzero"`
}

// Alert states.
const (
	AlertOpen    = "open"
	AlertCleared = "cleared"
)

// RaiseAlert opens the alert a.Key, or brings the summary of the open one up to date. It reports whether it
// opened it (the first sight of the problem); two servers raising at once may both see true.
func (s *Store) RaiseAlert(ctx context.Context, a Alert, now time.Time) (opened bool, err error) {
	now = storedTime(now)
	res, err := s.alerts.UpdateOne(ctx,
		bson.D{{Key: "_id", Value: a.Key}, {Key: "state", Value: AlertOpen}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "summary", Value: a.Summary}, {Key: "updated_at", Value: now}}}})
	if err != nil {
		return false, fmt.Errorf("store: raise alert %s: %w", a.Key, err)
	}
	if res.MatchedCount == 1 {
		return false, nil
	}
	a.State, a.RaisedAt, a.UpdatedAt, a.ClearedAt = AlertOpen, now, now, time.Time{}
	a.Since = storedTime(a.Since)
	if _, err := s.alerts.ReplaceOne(ctx, bson.D{{Key: "_id", Value: a.Key}}, a, options.Replace().SetUpsert(true)); err != nil {
		return false, fmt.Errorf("store: raise alert %s: %w", a.Key, err)
	}
	return true, nil
}

// RefreshAlert brings the summary of the open alert a.Key up to date; it reports false, and changes
// nothing, if the alert is not open (cleared meanwhile, by an operator say: it is not reopened here).
func (s *Store) RefreshAlert(ctx context.Context, a Alert, now time.Time) (bool, error) {
	res, err := s.alerts.UpdateOne(ctx,
		bson.D{{Key: "_id", Value: a.Key}, {Key: "state", Value: AlertOpen}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "summary", Value: a.Summary}, {Key: "updated_at", Value: storedTime(now)}}}})
	if err != nil {
		return false, fmt.Errorf("store: refresh alert %s: %w", a.Key, err)
	}
	return res.MatchedCount == 1, nil
}

// ClearAlert marks the open alert key cleared; it reports false if it was not open.
func (s *Store) ClearAlert(ctx context.Context, key string, now time.Time) (bool, error) {
	res, err := s.alerts.UpdateOne(ctx,
		bson.D{{Key: "_id", Value: key}, {Key: "state", Value: AlertOpen}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "state", Value: AlertCleared}, {Key: "cleared_at", Value: storedTime(now)}}}})
	if err != nil {
		return false, fmt.Errorf("store: clear alert %s: %w", key, err)
	}
	return res.ModifiedCount == 1, nil
}

// GetAlert returns the alert key, or ErrNotFound.
func (s *Store) GetAlert(ctx context.Context, key string) (Alert, error) {
	return getByID[Alert](ctx, s.alerts, "alert", key)
}

// ListAlerts returns the alerts in state (AlertOpen, AlertCleared), or all for "".
func (s *Store) ListAlerts(ctx context.Context, state string) ([]Alert, error) {
	filter := bson.D{}
	if state != "" {
		filter = bson.D{{Key: "state", Value: state}}
	}
	cur, err := s.alerts.Find(ctx, filter, options.Find().SetSort(bson.D{{Key: "raised_at", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("store: list alerts: %w", err)
	}
	out, err := decodeEach[Alert](ctx, s, "alert", cur)
	if err != nil {
		return nil, fmt.Errorf("store: list alerts: %w", err)
	}
	return out, nil
}
