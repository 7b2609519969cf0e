package server

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/store"
)

// auditNote is what a write handler tells the audit log beyond the request: the versions of what it
// changed, and whether it only forwarded the request (the leader records it then).
type auditNote struct {
	target        string // what was written, when the path does not name it (a creation)
	before, after int64
	forwarded     bool
	itemized      bool // the handler recorded an entry per job it wrote (the bulk route)
}

type auditNoteKey struct{}

// noteAudit returns the request's audit note; a handler that is not audited gets a throwaway one.
func noteAudit(r *http.Request) *auditNote {
	if n, ok := r.Context().Value(auditNoteKey{}).(*auditNote); ok {
		return n
	}
	return &auditNote{}
}

// heldAnswer keeps a handler's answer (status and body) until the request's audit entry and revisions
// are stored, so that no caller reads an answer to a write whose records may still be missing: without
// it, a body larger than net/http's buffer would be on its way before them. It has no Unwrap: a flush
// through http.ResponseController (a forwarding proxy's) would send the status before the handler's.
type heldAnswer struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (w *heldAnswer) WriteHeader(status int) {
	if status < http.StatusOK {
		// Informational (a leader's 100 Continue through the forwarding proxy): on its way at once, as
		// net/http sends it; the final status follows.
		w.ResponseWriter.WriteHeader(status)
		return
	}
	if w.status == 0 {
		w.status = status
	}
}

func (w *heldAnswer) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.body.Write(b)
}

// send sends what the handler answered.
func (w *heldAnswer) send() {
	if w.status == 0 {
		return // nothing answered: net/http sends 200 with no body
	}
	w.ResponseWriter.WriteHeader(w.status)
	_, _ = w.ResponseWriter.Write(w.body.Bytes())
}

// audited runs a write and records it in the audit log, whatever its outcome; the answer is sent once
// the entry and the write's revisions are stored.
func (s *Server) audited(rt api.Route, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		note := &auditNote{}
		ctx, revisionsWritten := withRevisionWrites(context.WithValue(r.Context(), auditNoteKey{}, note))
		r = r.WithContext(ctx)
		held := &heldAnswer{ResponseWriter: w}
		defer held.send()
		defer revisionsWritten()
		h(held, r)
		if note.forwarded || note.itemized {
			return
		}
		s.audit(r, rt, cmp.Or(held.status, http.StatusOK), note, nil) // nothing written: net/http answers 200
	}
}

// audit writes one entry. A failure to write it is logged at ERROR: the write it records has happened.
func (s *Server) audit(r *http.Request, rt api.Route, status int, note *auditNote, refusal error) {
	c := callerOf(r.Context())
	e := store.AuditEntry{
		At: s.now(), Who: c.Name, Role: c.Role, Via: c.via(), Server: s.cfg.ID,
		Action: rt.Pattern(), Target: auditTarget(r), Status: status,
	}
	if note != nil {
		e.Before, e.After = note.before, note.after
		if e.Target == "" {
			e.Target = note.target
		}
	}
	if refusal != nil {
		e.Error = refusal.Error()
	}
	s.auditEntries(r, e)
}

// auditEntries writes entries and returns once they are stored, or their write failed (logged at ERROR
// and counted: the writes they record have happened). The entries of concurrent requests are written
// together (groupCommit): a request is still answered only after its entries are stored.
func (s *Server) auditEntries(r *http.Request, entries ...store.AuditEntry) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
	defer cancel()
	errs := s.auditLog.write(ctx, func(ctx context.Context, entries []store.AuditEntry) []error {
		return fill(make([]error, len(entries)), s.store.InsertAudits(ctx, entries))
	}, entries)
	for i, err := range errs {
		if err != nil {
			e := entries[i]
			s.metrics.auditFailed.Inc()
			s.logger.Error("audit entry not recorded", "who", e.Who, "action", e.Action, "target", e.Target, "status", e.Status, "err", err)
		}
	}
}

// auditTarget names what a request acts on: the path's name or id, or an alert's key.
func auditTarget(r *http.Request) string {
	for _, k := range []string{"name", "id"} {
		if v := r.PathValue(k); v != "" {
			return v
		}
	}
	return r.URL.Query().Get("key")
}

// listAudit serves the audit log, newest first (?who=, ?before= RFC 3339, ?limit= 1-1000, default 100).
func (s *Server) listAudit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("limit %q: must be a number from 1 to 1000", v))
			return
		}
		limit = n
	}
	var before store.AuditCursor
	if v := q.Get("before"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("before %q: want an RFC 3339 time", v))
			return
		}
		before = store.AuditCursor{At: t, ID: q.Get("before_id")}
	}
	entries, err := s.store.ListAudit(r.Context(), q.Get("who"), before, limit)
	if err != nil {
		writeError(w, storeStatus(err), err)
		return
	}
	if entries == nil {
		entries = []store.AuditEntry{}
	}
	writeJSON(w, http.StatusOK, entries)
}
