package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/store"
)

// decodeContact reads a contact; an unknown or mistyped field is refused with an error naming it.
func decodeContact(r io.Reader) (store.Contact, error) {
	var req api.ContactRequest
	dec := json.NewDecoder(io.LimitReader(r, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return store.Contact{}, fmt.Errorf("contact: %w", err)
	}
	if dec.More() {
		return store.Contact{}, errors.New("contact: unexpected data after the JSON object")
	}
	c := store.Contact{Name: req.Name, Email: req.Email, Webhook: req.Webhook}
	if err := c.Validate(); err != nil {
		return store.Contact{}, err
	}
	return c, nil
}

func (s *Server) listContacts(w http.ResponseWriter, r *http.Request) {
	contacts, err := s.store.ListContacts(r.Context())
	if err != nil {
		writeError(w, storeStatus(err), err)
		return
	}
	if contacts == nil {
		contacts = []store.Contact{}
	}
	for i := range contacts {
		contacts[i] = contacts[i].Redacted()
	}
	writeJSON(w, http.StatusOK, contacts)
}

func (s *Server) createContact(w http.ResponseWriter, r *http.Request) {
	c, err := decodeContact(r.Body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	c.CreatedAt = s.now().UTC()
	noteAudit(r).target = c.Name
	if err := s.store.CreateContact(r.Context(), c); err != nil {
		writeError(w, storeStatus(err), err)
		return
	}
	c, err = s.store.GetContact(r.Context(), c.Name)
	if err != nil {
		writeError(w, storeStatus(err), err)
		return
	}
	writeJSON(w, http.StatusCreated, c.Redacted())
}

func (s *Server) getContact(w http.ResponseWriter, r *http.Request) {
	c, err := s.store.GetContact(r.Context(), r.PathValue("name"))
	if err != nil {
		writeError(w, storeStatus(err), err)
		return
	}
	writeJSON(w, http.StatusOK, c.Redacted())
}

func (s *Server) deleteContact(w http.ResponseWriter, r *http.Request) {
	if err := s.store.DeleteContact(r.Context(), r.PathValue("name")); err != nil {
		writeError(w, storeStatus(err), err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// listNotifications shows the notifications queued, newest first: ?alert=KEY for one alert's, ?limit=N
// (default 100).
func (s *Server) listNotifications(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("query limit=%q: must be a number from 1 to 1000", v))
			return
		}
		limit = n
	}
	out, err := s.store.ListNotifications(r.Context(), q.Get("alert"), limit)
	if err != nil {
		writeError(w, storeStatus(err), err)
		return
	}
	if out == nil {
		out = []store.Notification{}
	}
	writeJSON(w, http.StatusOK, out)
}
