package store

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestContactValidate(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		contact Contact
		wantErr string // a part of the error; empty: valid
	}{
		"email only":           {contact: Contact{Name: "ops", Email: "ops@example.com"}},
		"email with a name":    {contact: Contact{Name: "ops.team_1", Email: "Ops Team <ops@example.com>"}},
		"https webhook":        {contact: Contact{Name: "ops", Email: "ops@example.com", Webhook: "https://hooks.example.com/x?y=1"}},
		"http webhook":         {contact: Contact{Name: "ops", Email: "ops@example.com", Webhook: "http://127.0.0.1:9000/"}},
		"empty name":           {contact: Contact{Email: "ops@example.com"}, wantErr: "contact name"},
		"name with a slash":    {contact: Contact{Name: "a/b", Email: "ops@example.com"}, wantErr: "contact name"},
		"name starting with -": {contact: Contact{Name: "-a", Email: "ops@example.com"}, wantErr: "contact name"},
		"no email":             {contact: Contact{Name: "ops"}, wantErr: "email is required"},
		"bad email":            {contact: Contact{Name: "ops", Email: "not an address"}, wantErr: "email"},
		"webhook not a URL":    {contact: Contact{Name: "ops", Email: "ops@example.com", Webhook: "::nope"}, wantErr: "webhook"},
		"webhook ftp":          {contact: Contact{Name: "ops", Email: "ops@example.com", Webhook: "ftp://example.com/"}, wantErr: "webhook"},
		"webhook without host": {contact: Contact{Name: "ops", Email: "ops@example.com", Webhook: "https:///x"}, wantErr: "webhook"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			err := tt.contact.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Validate() = %v, want an error about %q", err, tt.wantErr)
			}
		})
	}
}

func TestContacts(t *testing.T) {
	t.Parallel()
	s := testStore(t)
	ctx := t.Context()

	ops := Contact{Name: "ops", Email: "ops@example.com", Webhook: "https://hooks.example.com/ops", CreatedAt: t0.Add(1234567 * time.Nanosecond)}
	dev := Contact{Name: "dev", Email: "dev@example.com", CreatedAt: t0}
	for _, c := range []Contact{ops, dev} {
		if err := s.CreateContact(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateContact(ctx, ops); !errors.Is(err, ErrExists) {
		t.Errorf("second CreateContact(ops) = %v, want ErrExists", err)
	}
	if err := s.CreateContact(ctx, Contact{Name: "bad", Email: "nope"}); err == nil || !strings.Contains(err.Error(), "email") {
		t.Errorf("CreateContact with a bad email = %v, want an error naming email", err)
	}

	got, err := s.GetContact(ctx, "ops")
	want := ops
	want.CreatedAt = storedTime(ops.CreatedAt)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("GetContact(ops) = %+v, %v; want %+v", got, err, want)
	}
	if _, err := s.GetContact(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetContact(nobody) = %v, want ErrNotFound", err)
	}

	list, err := s.ListContacts(ctx)
	if err != nil || len(list) != 2 || list[0].Name != "dev" || list[1].Name != "ops" {
		t.Errorf("ListContacts = %+v, %v; want dev, ops", list, err)
	}
	if list[0].Webhook != "" {
		t.Errorf("dev has webhook %q, want none", list[0].Webhook)
	}

	if err := s.DeleteContact(ctx, "ops"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteContact(ctx, "ops"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second DeleteContact(ops) = %v, want ErrNotFound", err)
	}
	if list, err := s.ListContacts(ctx); err != nil || len(list) != 1 {
		t.Errorf("ListContacts after delete = %+v, %v; want dev", list, err)
	}
}
