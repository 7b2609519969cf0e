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

// Notification is one message to one recipient, kept in an outbox until it is delivered: whoever raises an
// alert only inserts notifications (EnqueueNotifications) and never waits for a mail server; a dispatcher
// (package notify) delivers them, retries, and records how it went.
//
// ID is chosen by the caller and is the deduplication key: a notification queued twice (two monitors, or
// one restarted, that see the same problem) is stored, and so sent, once.
type Notification struct {
	ID       string `bson:"_id" json:"id"`
	AlertKey string `bson:"alert_key" json:"alert_key"`
	Kind     string `bson:"kind" json:"kind"`       // NotifyProblem, NotifyReminder or NotifyRecovery
	Channel  string `bson:"channel" json:"channel"` // ChannelEmail or ChannelWebhook
	To       string `bson:"to" json:"to"`           // an email address or a webhook URL
	Subject  string `bson:"subject,omitempty" json:"subject,omitempty"`
	Body     string `bson:"body,omitempty" json:"body,omitempty"`
	Payload  []byte `bson:"payload,omitempty" json:"payload,omitempty"` // JSON, for webhooks

	State     string `bson:"state" json:"state"`       // NotificationPending, NotificationSent or NotificationFailed
	Attempts  int    `bson:"attempts" json:"attempts"` // delivery attempts made
	LastError string `bson:"last_error,omitempty" json:"last_error,omitempty"`

	CreatedAt   time.Time `bson:"created_at" json:"created_at"`
	NextAttempt time.Time `bson:"next_attempt" json:"next_attempt"`
	SentAt      time.Time `bson:"sent_at,omitempty" json:"sent_at,omitzero"`
	// LeaseUntil is, while a dispatcher delivers the notification, until when its claim holds (see
	// ClaimNotification). It is informative: the claim itself is a document of its own.
	LeaseUntil time.Time `bson:"lease_until,omitempty" json:"lease_until,omitzero"`
	LeasedBy   string    `bson:"leased_by,omitempty" json:"leased_by,omitempty"`
}

// Notification states.
const (
	NotificationPending = "pending"
	NotificationSent    = "sent"
	NotificationFailed  = "failed" // gave up after the dispatcher's maximum attempts
)

// Notification kinds: what a notification says of its alert.
const (
	NotifyProblem  = "problem"
	NotifyReminder = "reminder"
	NotifyRecovery = "recovery"
)

// Notification channels.
const (
	ChannelEmail   = "email"
	ChannelWebhook = "webhook"
)

func (n Notification) check() error {
	switch {
	case n.ID == "":
		return errors.New("id is required")
	case n.Channel != ChannelEmail && n.Channel != ChannelWebhook:
		return fmt.Errorf("notification %s: channel %q: must be %s or %s", n.ID, n.Channel, ChannelEmail, ChannelWebhook)
	case n.Kind != NotifyProblem && n.Kind != NotifyReminder && n.Kind != NotifyRecovery:
		return fmt.Errorf("notification %s: kind %q: must be %s, %s or %s", n.ID, n.Kind, NotifyProblem, NotifyReminder, NotifyRecovery)
	case n.To == "":
		return fmt.Errorf("notification %s: to is required", n.ID)
	case n.State != "" && n.State != NotificationPending:
		return fmt.Errorf("notification %s: state %q: a notification is queued pending", n.ID, n.State)
	}
	return nil
}

// EnqueueNotifications stores notifications, pending, with one unordered bulk insert and reports how many
// were new. A notification whose ID is stored already is skipped silently: that is what keeps a mail from
// being sent twice. State may be left empty (pending); NextAttempt left zero is CreatedAt (send at once).
func (s *Store) EnqueueNotifications(ctx context.Context, ns []Notification) (inserted int, err error) {
	if len(ns) == 0 {
		return 0, nil
	}
	docs := make([]any, len(ns))
	for i, n := range ns {
		if err := n.check(); err != nil {
			return 0, fmt.Errorf("store: enqueue notifications: %w", err)
		}
		n.State, n.Attempts, n.LastError = NotificationPending, 0, ""
		n.SentAt, n.LeaseUntil, n.LeasedBy = time.Time{}, time.Time{}, ""
		n.CreatedAt = storedTime(n.CreatedAt)
		if n.NextAttempt.IsZero() {
			n.NextAttempt = n.CreatedAt
		}
		n.NextAttempt = storedTime(n.NextAttempt)
		docs[i] = n
	}
	_, err = s.notes.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	dups, err := duplicateIndexes(err)
	if err != nil {
		return 0, fmt.Errorf("store: enqueue notifications: %w", err)
	}
	return len(ns) - len(dups), nil
}

// DueNotifications returns up to limit pending notifications whose NextAttempt has come by now, the
// longest due first. One may be in the hands of another dispatcher: ClaimNotification says.
func (s *Store) DueNotifications(ctx context.Context, now time.Time, limit int) ([]Notification, error) {
	filter := bson.D{{Key: "state", Value: NotificationPending}, {Key: "next_attempt", Value: bson.D{{Key: "$lte", Value: storedTime(now)}}}}
	opts := options.Find().SetSort(bson.D{{Key: "next_attempt", Value: 1}, {Key: "_id", Value: 1}}).SetLimit(int64(limit))
	cur, err := s.notes.Find(ctx, filter, opts)
	if err != nil {
		return nil, fmt.Errorf("store: due notifications: %w", err)
	}
	out, err := decodeEach[Notification](ctx, s, "notification", cur)
	if err != nil {
		return nil, fmt.Errorf("store: due notifications: %w", err)
	}
	return out, nil
}

// notificationClaim is one claim of one delivery attempt of a notification. Its _id is
// "<notification>/<attempt>/<gen>": claims of an attempt are numbered 1, 2, ... and a new one is made only
// once the last has expired (its claimer died or hung).
type notificationClaim struct {
	ID           string    `bson:"_id"`
	Notification string    `bson:"notification"`
	Attempt      int       `bson:"attempt"`
	Gen          int       `bson:"gen"`
	Owner        string    `bson:"owner,omitempty"`
	At           time.Time `bson:"at"`
	Until        time.Time `bson:"until"`
}

// ClaimNotification reserves the delivery of the pending notification id, at its current attempt, for
// owner until the lease time until. It reports true if the caller won it and must now try to send it, and
// returns the notification as it stands (its Attempts is the attempt claimed). It reports false if the
// notification is no longer pending or due at now, or if another claim of the same attempt holds (it has
// not expired at now), and ErrNotFound if there is no such notification.
//
// The claim is an inserted document, not a conditional update, because FerretDB's conditional updates are
// not atomic (store's package comment): of two dispatchers that race for the same attempt, the insert of
// the same claim id lets exactly one win, on every server. A claimer must finish (mark the notification
// sent, retry or failed) before until, or another dispatcher may claim the attempt again and send it a
// second time: choose until beyond the send timeout.
func (s *Store) ClaimNotification(ctx context.Context, id, owner string, now, until time.Time) (Notification, bool, error) {
	now, until = storedTime(now), storedTime(until)
	var n Notification
	err := s.notes.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&n)
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
		return Notification{}, false, fmt.Errorf("%w: notification %s", ErrNotFound, id)
	case err != nil:
		return Notification{}, false, fmt.Errorf("store: claim notification %s: %w", id, err)
	}
	if n.State != NotificationPending || n.NextAttempt.After(now) {
		return Notification{}, false, nil
	}
	var last notificationClaim
	err = s.claims.FindOne(ctx, bson.D{{Key: "notification", Value: id}, {Key: "attempt", Value: n.Attempts}},
		options.FindOne().SetSort(bson.D{{Key: "gen", Value: -1}})).Decode(&last)
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
	case err != nil:
		return Notification{}, false, fmt.Errorf("store: claim notification %s: %w", id, err)
	case last.Until.After(now):
		return Notification{}, false, nil // held by last.Owner
	}
	c := notificationClaim{Notification: id, Attempt: n.Attempts, Gen: last.Gen + 1, Owner: owner, At: now, Until: until}
	c.ID = fmt.Sprintf("%s/%d/%d", id, c.Attempt, c.Gen)
	if _, err := s.claims.InsertOne(ctx, c); err != nil {
		if mongo.IsDuplicateKeyError(err) {
			return Notification{}, false, nil // another dispatcher won this claim
		}
		return Notification{}, false, fmt.Errorf("store: claim notification %s: %w", id, err)
	}
	// Won. The notification may have been settled after it was read above, by a claimer of an earlier
	// attempt or generation: it matches here only if it still waits at the attempt claimed.
	res, err := s.notes.UpdateOne(ctx,
		bson.D{{Key: "_id", Value: id}, {Key: "state", Value: NotificationPending}, {Key: "attempts", Value: n.Attempts}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "lease_until", Value: until}, {Key: "leased_by", Value: owner}}}})
	if err != nil {
		return Notification{}, false, fmt.Errorf("store: claim notification %s: %w", id, err)
	}
	if res.MatchedCount == 0 {
		return Notification{}, false, nil
	}
	n.LeaseUntil, n.LeasedBy = until, owner
	return n, true, nil
}

// settleNotification updates the pending notification id, or returns ErrNotFound if it is not pending.
func (s *Store) settleNotification(ctx context.Context, what, id string, update bson.D) error {
	res, err := s.notes.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "state", Value: NotificationPending}}, update)
	if err != nil {
		return fmt.Errorf("store: %s notification %s: %w", what, id, err)
	}
	if res.MatchedCount == 0 {
		return fmt.Errorf("%w: pending notification %s", ErrNotFound, id)
	}
	return nil
}

var unsetLease = bson.E{Key: "$unset", Value: bson.D{{Key: "lease_until", Value: ""}, {Key: "leased_by", Value: ""}}}

// MarkNotificationSent records that the pending notification id was delivered at at, counting the
// attempt. It returns ErrNotFound if the notification is not pending.
func (s *Store) MarkNotificationSent(ctx context.Context, id string, at time.Time) error {
	return s.settleNotification(ctx, "mark sent", id, bson.D{
		{Key: "$set", Value: bson.D{{Key: "state", Value: NotificationSent}, {Key: "sent_at", Value: storedTime(at)}}},
		{Key: "$inc", Value: bson.D{{Key: "attempts", Value: 1}}},
		unsetLease,
	})
}

// MarkNotificationRetry records a failed attempt of the pending notification id: attempts made so far,
// why the last failed, and when to try again. It returns ErrNotFound if the notification is not pending.
func (s *Store) MarkNotificationRetry(ctx context.Context, id string, attempts int, nextAttempt time.Time, errText string) error {
	return s.settleNotification(ctx, "mark retry", id, bson.D{
		{Key: "$set", Value: bson.D{
			{Key: "attempts", Value: attempts}, {Key: "next_attempt", Value: storedTime(nextAttempt)},
			{Key: "last_error", Value: errText},
		}},
		unsetLease,
	})
}

// MarkNotificationFailed gives up on the pending notification id after its last attempt (counted) failed
// with errText. It returns ErrNotFound if the notification is not pending.
func (s *Store) MarkNotificationFailed(ctx context.Context, id, errText string) error {
	return s.settleNotification(ctx, "mark failed", id, bson.D{
		{Key: "$set", Value: bson.D{{Key: "state", Value: NotificationFailed}, {Key: "last_error", Value: errText}}},
		{Key: "$inc", Value: bson.D{{Key: "attempts", Value: 1}}},
		unsetLease,
	})
}

// ListNotifications returns up to limit notifications of the alert alertKey (every alert's if it is
// empty), the newest first.
func (s *Store) ListNotifications(ctx context.Context, alertKey string, limit int) ([]Notification, error) {
	filter := bson.D{}
	if alertKey != "" {
		filter = bson.D{{Key: "alert_key", Value: alertKey}}
	}
	opts := options.Find().SetSort(bson.D{{Key: "created_at", Value: -1}, {Key: "_id", Value: 1}})
	if limit > 0 {
		opts.SetLimit(int64(limit))
	}
	cur, err := s.notes.Find(ctx, filter, opts)
	if err != nil {
		return nil, fmt.Errorf("store: list notifications: %w", err)
	}
	out, err := decodeEach[Notification](ctx, s, "notification", cur)
	if err != nil {
		return nil, fmt.Errorf("store: list notifications: %w", err)
	}
	return out, nil
}

// GetNotification returns the notification id, or ErrNotFound.
func (s *Store) GetNotification(ctx context.Context, id string) (Notification, error) {
	return getByID[Notification](ctx, s.notes, "notification", id)
}

// CountNotifications counts the notifications in state (pending, sent, failed).
func (s *Store) CountNotifications(ctx context.Context, state string) (int64, error) {
	n, err := s.notes.CountDocuments(ctx, bson.D{{Key: "state", Value: state}})
	if err != nil {
		return 0, fmt.Errorf("store: count %s notifications: %w", state, err)
	}
	return n, nil
}

// PruneNotifications deletes the notifications settled (sent or failed) and created before before, except
// those of the alerts in keep (the open ones: their ids are queued again while they stay open, and a deleted
// one would be sent again), and the claims made before before. It reports how many notifications it deleted.
func (s *Store) PruneNotifications(ctx context.Context, before time.Time, keep []string) (int64, error) {
	filter := bson.D{
		{Key: "state", Value: bson.D{{Key: "$ne", Value: NotificationPending}}},
		{Key: "created_at", Value: bson.D{{Key: "$lt", Value: storedTime(before)}}},
	}
	if len(keep) > 0 {
		filter = append(filter, bson.E{Key: "alert_key", Value: bson.D{{Key: "$nin", Value: keep}}})
	}
	res, err := s.notes.DeleteMany(ctx, filter)
	if err != nil {
		return 0, fmt.Errorf("store: prune notifications: %w", err)
	}
	if _, err := s.claims.DeleteMany(ctx, bson.D{{Key: "at", Value: bson.D{{Key: "$lt", Value: storedTime(before)}}}}); err != nil {
		return res.DeletedCount, fmt.Errorf("store: prune notification claims: %w", err)
	}
	return res.DeletedCount, nil
}
