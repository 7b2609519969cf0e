package store

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"regexp"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Contact is someone to tell of a problem: jobs name their owners' contacts, and the monitor's operators
// are contacts too. A contact has an email address and, optionally, a webhook that receives the same
// alerts as JSON.
type Contact struct {
	Name      string    `bson:"_id" json:"name"`
	Email     string    `bson:"email" json:"email"`
	Webhook   string    `bson:"webhook,omitempty" json:"webhook,omitempty"` // an http(s) URL
	CreatedAt time.Time `bson:"created_at" json:"created_at"`
}

// Redacted is c with its webhook cut to scheme://host/...: the rest of a webhook URL is usually a token
// that lets anyone post to the receiver, and the API shows contacts to every viewer.
func (c Contact) Redacted() Contact {
	if c.Webhook != "" {
		if u, err := url.Parse(c.Webhook); err == nil && u.Host != "" {
			c.Webhook = u.Scheme + "://" + u.Host + "/..."
		} else {
			c.Webhook = "(set)"
		}
	}
	return c
}

// contactName is the job name pattern: a contact name goes in URLs and alert ids the same way.
var contactName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Validate names the first field that is wrong.
func (c Contact) Validate() error {
	if !contactName.MatchString(c.Name) {
		return fmt.Errorf("contact name %q: must be 1-128 characters of letters, digits, '.', '_' or '-', starting with a letter or digit", c.Name)
	}
	if c.Email == "" {
		return fmt.Errorf("contact %s: email is required", c.Name)
	}
	if _, err := mail.ParseAddress(c.Email); err != nil {
		return fmt.Errorf("contact %s: email %q: %w", c.Name, c.Email, err)
	}
	if c.Webhook != "" {
		u, err := url.Parse(c.Webhook)
		if err != nil {
			// The URL is not quoted: its path is usually a token, and errors are shown and logged.
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			return fmt.Errorf("contact %s: webhook: %w", c.Name, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("contact %s: webhook: must be an http:// or https:// URL with a host", c.Name)
		}
	}
	return nil
}

// CreateContact stores a new contact after checking it (an invalid one is an error naming the field). It
// returns ErrExists if a contact of that name exists.
func (s *Store) CreateContact(ctx context.Context, c Contact) error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("store: create contact: %w", err)
	}
	c.CreatedAt = storedTime(c.CreatedAt)
	_, err := s.contacts.InsertOne(ctx, c)
	switch {
	case mongo.IsDuplicateKeyError(err):
		return fmt.Errorf("%w: contact %s", ErrExists, c.Name)
	case err != nil:
		return fmt.Errorf("store: create contact %s: %w", c.Name, err)
	}
	return nil
}

// ListContacts returns every contact, sorted by name.
func (s *Store) ListContacts(ctx context.Context) ([]Contact, error) {
	cur, err := s.contacts.Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("store: list contacts: %w", err)
	}
	out, err := decodeEach[Contact](ctx, s, "contact", cur)
	if err != nil {
		return nil, fmt.Errorf("store: list contacts: %w", err)
	}
	return out, nil
}

// GetContact returns the contact named name, or ErrNotFound.
func (s *Store) GetContact(ctx context.Context, name string) (Contact, error) {
	return getByID[Contact](ctx, s.contacts, "contact", name)
}

// DeleteContact deletes the contact named name, or returns ErrNotFound. Jobs that name it keep the name;
// the monitor mails the operators instead.
func (s *Store) DeleteContact(ctx context.Context, name string) error {
	res, err := s.contacts.DeleteOne(ctx, bson.D{{Key: "_id", Value: name}})
	if err != nil {
		return fmt.Errorf("store: delete contact %s: %w", name, err)
	}
	if res.DeletedCount == 0 {
		return fmt.Errorf("%w: contact %s", ErrNotFound, name)
	}
	return nil
}
