package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/mail"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/testenv"
)

// A contact comes from anyone who can reach the API: decoding it must never panic, and what passes is a
// contact the monitor can mail.
func FuzzDecodeContact(f *testing.F) {
	for _, seed := range []string{
		`{"name":"ops","email":"ops@example.com"}`,
		`{"name":"ops","email":"Ops <ops@example.com>","webhook":"https://hooks.example.com/x"}`,
		`{"name":"ops","email":"ops@example.com","webhook":"ftp://x"}`,
		`{"name":"a/b","email":"x"}`, `{"name":"ops","emial":"ops@example.com"}`, `{"name":1}`,
		`{"name":"ops","email":"ops@example.com"} {}`, `[]`, `null`, "\x00",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		c, err := decodeContact(bytes.NewReader(body))
		if err != nil {
			return
		}
		if c.Name == "" || strings.ContainsAny(c.Name, "/ ") {
			t.Fatalf("accepted contact name %q", c.Name)
		}
		if _, err := mail.ParseAddress(c.Email); err != nil {
			t.Fatalf("accepted email %q: %v", c.Email, err)
		}
		if c.Webhook != "" {
			if u, err := url.Parse(c.Webhook); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				t.Fatalf("accepted webhook %q", c.Webhook)
			}
		}
	})
}

func TestDecodeContactNamesTheField(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		body, want string
	}{
		"unknown field":   {`{"name":"ops","emial":"ops@example.com"}`, `unknown field "emial"`},
		"wrong type":      {`{"name":"ops","email":7}`, "email"},
		"bad email":       {`{"name":"ops","email":"ops"}`, "email"},
		"bad webhook":     {`{"name":"ops","email":"ops@example.com","webhook":"mailto:x"}`, "webhook"},
		"bad name":        {`{"name":"../x","email":"ops@example.com"}`, "contact name"},
		"trailing object": {`{"name":"ops","email":"ops@example.com"}{}`, "after the JSON object"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := decodeContact(strings.NewReader(tt.body))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("decodeContact(%s) = %v, want an error naming %q", tt.body, err, tt.want)
			}
		})
	}
}

// TestContactRoutes serves the contact routes from a real store, without the rest of a server.
func TestContactRoutes(t *testing.T) {
	t.Parallel()
	uri := os.Getenv("CLOVER_TEST_MONGO_URI")
	if uri == "" {
		uri = testenv.StartFerretDB(t).URI
	}
	st, err := store.Open(t.Context(), uri, "t_contacts_api_"+rand.Text()[:8])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(context.Background()) })
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	s := &Server{store: st, now: func() time.Time { return now }}
	srv, tok := serveSecured(t, s)

	call := func(method, path, body string, wantStatus int, out any) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok.admin)
		if method != http.MethodGet {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var raw json.RawMessage
		_ = json.NewDecoder(resp.Body).Decode(&raw)
		if resp.StatusCode != wantStatus {
			t.Fatalf("%s %s = %d %s, want %d", method, path, resp.StatusCode, raw, wantStatus)
		}
		if out != nil {
			if err := json.Unmarshal(raw, out); err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
		}
	}

	var list []store.Contact
	call("GET", "/api/v1/contacts", "", http.StatusOK, &list)
	if list == nil || len(list) != 0 {
		t.Errorf("no contacts listed as %v, want []", list)
	}
	var created store.Contact
	call("POST", "/api/v1/contacts", `{"name":"ops","email":"ops@example.com","webhook":"https://hooks.example.com/x"}`, http.StatusCreated, &created)
	if created.Name != "ops" || created.Email != "ops@example.com" || !created.CreatedAt.Equal(now) {
		t.Errorf("created %+v", created)
	}
	var apiErr api.Error
	call("POST", "/api/v1/contacts", `{"name":"ops","email":"ops@example.com"}`, http.StatusConflict, &apiErr)
	call("POST", "/api/v1/contacts", `{"name":"dev","email":"dev"}`, http.StatusBadRequest, &apiErr)
	if !strings.Contains(apiErr.Error, "email") {
		t.Errorf("bad email refused with %q", apiErr.Error)
	}
	call("POST", "/api/v1/contacts", `{"name":"dev","email":"dev@example.com","created_at":"2000-01-01T00:00:00Z"}`, http.StatusBadRequest, &apiErr)
	call("POST", "/api/v1/contacts", `{"name":"dev","email":"dev@example.com"}`, http.StatusCreated, nil)

	var got store.Contact
	call("GET", "/api/v1/contacts/ops", "", http.StatusOK, &got)
	if got != created {
		t.Errorf("GET ops = %+v, want %+v", got, created)
	}
	call("GET", "/api/v1/contacts/nobody", "", http.StatusNotFound, nil)
	call("GET", "/api/v1/contacts", "", http.StatusOK, &list)
	if len(list) != 2 || list[0].Name != "dev" || list[1].Name != "ops" {
		t.Errorf("contacts %+v, want dev, ops", list)
	}
	call("DELETE", "/api/v1/contacts/ops", "", http.StatusNoContent, nil)
	call("DELETE", "/api/v1/contacts/ops", "", http.StatusNotFound, nil)

	if _, err := st.EnqueueNotifications(t.Context(), []store.Notification{
		{ID: "n1", AlertKey: "a", Kind: store.NotifyProblem, Channel: store.ChannelEmail, To: "dev@example.com", CreatedAt: now},
		{ID: "n2", AlertKey: "b", Kind: store.NotifyProblem, Channel: store.ChannelEmail, To: "dev@example.com", CreatedAt: now},
	}); err != nil {
		t.Fatal(err)
	}
	var notes []store.Notification
	call("GET", "/api/v1/notifications?alert=a", "", http.StatusOK, &notes)
	if len(notes) != 1 || notes[0].ID != "n1" || notes[0].State != store.NotificationPending {
		t.Errorf("notifications of a: %+v", notes)
	}
	call("GET", "/api/v1/notifications?limit=0", "", http.StatusBadRequest, nil)
}
