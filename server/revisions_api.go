package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/jobdiff"
	"github.com/clover-sched/clover/internal/store"
)

// withMessage puts the request's ?message= in its context, for the revisions its job writes record;
// false (after answering 400) when it is too long.
func withMessage(w http.ResponseWriter, r *http.Request, n revisionNote) (*http.Request, bool) {
	if m := r.URL.Query().Get("message"); m != "" {
		n.message = m
	}
	switch {
	case len(n.message) > maxRevisionMessage:
		writeError(w, http.StatusBadRequest, fmt.Errorf("message: %d bytes, at most %d", len(n.message), maxRevisionMessage))
		return r, false
	case !utf8.ValidString(n.message) || strings.ContainsFunc(n.message, unicode.IsControl):
		// It is printed in tables and terminals: no escape sequences, no broken columns.
		writeError(w, http.StatusBadRequest, errors.New("message: must be UTF-8 text without control characters (tabs and newlines included)"))
		return r, false
	}
	return r.WithContext(withRevision(r.Context(), n)), true
}

// latestVersion is the newest version of job name: the job's, or its deletion's (deleted true).
func (s *Server) latestVersion(r *http.Request, name string) (v int64, deleted bool, err error) {
	spec, err := s.store.GetJob(r.Context(), name)
	if err == nil {
		return spec.Version, false, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return 0, false, err
	}
	dead, terr := s.store.Tombstones(r.Context(), []string{name})
	if terr != nil {
		return 0, false, terr
	}
	t, ok := dead[name]
	if !ok {
		return 0, false, err // no such job, and none deleted
	}
	return t.Version, true, nil
}

func pathVersion(r *http.Request, key string) (int64, error) {
	v, err := strconv.ParseInt(r.PathValue(key), 10, 64)
	if err != nil || v < 1 {
		return 0, fmt.Errorf("version %q: want a number, 1 or more", r.PathValue(key))
	}
	return v, nil
}

func queryVersion(r *http.Request, key string) (int64, error) {
	s := r.URL.Query().Get(key)
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 1 {
		return 0, fmt.Errorf("query %s=%q: want a version, 1 or more", key, s)
	}
	return v, nil
}

// listRevisions serves GET /api/v1/jobs/{name}/revisions.
func (s *Server) listRevisions(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	before, err := queryVersion(r, "before")
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	limit := int64(50)
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("query limit=%q: must be a number from 1 to 1000", v))
			return
		}
		limit = n
	}
	latest, deleted, err := s.latestVersion(r, name)
	if err != nil {
		writeError(w, storeStatus(err), err)
		return
	}
	page := api.RevisionPage{Job: name, Latest: latest, Deleted: deleted}
	if r.URL.Query().Get("tagged") == "true" {
		page.Revisions, err = s.store.TaggedRevisions(r.Context(), name)
	} else {
		if before == 0 || before > latest+1 {
			before = latest + 1
		}
		from := max(before-limit, 1)
		page.Revisions, err = s.store.ListRevisions(r.Context(), name, from, before)
		if from > 1 {
			page.Next = from
		}
	}
	if err != nil {
		writeError(w, storeStatus(err), err)
		return
	}
	if page.Revisions == nil {
		page.Revisions = []store.Revision{}
	}
	writeJSON(w, http.StatusOK, page)
}

// getRevision serves GET /api/v1/jobs/{name}/revisions/{version}.
func (s *Server) getRevision(w http.ResponseWriter, r *http.Request) {
	v, err := pathVersion(r, "version")
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	rev, err := s.store.GetRevision(r.Context(), r.PathValue("name"), v)
	if err != nil {
		writeError(w, storeStatus(err), err)
		return
	}
	writeJSON(w, http.StatusOK, rev)
}

// diffJob serves GET /api/v1/jobs/{name}/diff.
func (s *Server) diffJob(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	from, err := queryVersion(r, "from")
	if err == nil {
		var to int64
		if to, err = queryVersion(r, "to"); err == nil {
			s.answerDiff(w, r, name, from, to)
			return
		}
	}
	writeError(w, http.StatusBadRequest, err)
}

func (s *Server) answerDiff(w http.ResponseWriter, r *http.Request, name string, from, to int64) {
	if to == 0 {
		latest, _, err := s.latestVersion(r, name)
		if err != nil {
			writeError(w, storeStatus(err), err)
			return
		}
		to = latest
	}
	if from == 0 {
		from = max(to-1, 1)
	}
	a, err := s.store.GetRevision(r.Context(), name, from)
	if err != nil {
		writeError(w, storeStatus(err), err)
		return
	}
	b, err := s.store.GetRevision(r.Context(), name, to)
	if err != nil {
		writeError(w, storeStatus(err), err)
		return
	}
	changes := jobdiff.Diff(a.Spec, b.Spec)
	if changes == nil {
		changes = []jobdiff.Change{}
	}
	writeJSON(w, http.StatusOK, api.JobDiff{Job: name, From: from, To: to, Changes: changes})
}

// rollbackJob serves POST /api/v1/jobs/{name}/rollback: a new version whose definition is an earlier
// one's, made only if the job is still at the version the caller expects (it saw the history at it).
func (s *Server) rollbackJob(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var body api.RollbackRequest
	if err := decodeBody(r, &body); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("rollback body: %w", err))
		return
	}
	if body.Version < 1 || body.Expect < 1 {
		writeError(w, http.StatusBadRequest, errors.New("rollback body: version (the one to go back to) and expect (the job's version you saw) are required"))
		return
	}
	r, ok := withMessage(w, r, revisionNote{action: store.RevisionRolledBack, message: body.Message, from: body.Version})
	if !ok {
		return
	}
	rev, err := s.store.GetRevision(r.Context(), name, body.Version)
	if err != nil {
		writeError(w, storeStatus(err), err)
		return
	}
	target := rev.Spec
	target.Name = name
	if err := validateSpec(target); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("version %d cannot be made again: %w", body.Version, err))
		return
	}
	now := s.now().UTC()
	out, errs := s.updateJobs(r.Context(), []string{name}, func(_ int, cur job.Spec) (job.Spec, error) {
		if cur.Version != body.Expect {
			return job.Spec{}, fmt.Errorf("%w: job %s changed since version %d (it is at %d now): nothing was rolled back; read its history again",
				store.ErrConflict, name, body.Expect, cur.Version)
		}
		next := target
		next.Source, next.CreatedAt, next.UpdatedAt, next.ActiveSince = cur.Source, cur.CreatedAt, now, cur.ActiveSince
		next.Paused, next.PausedAt = cur.Paused, cur.PausedAt // pausing is done by pause and resume only
		if next.Schedule != cur.Schedule || next.TimeZone != cur.TimeZone {
			next.ActiveSince = now // the restored schedule owes nothing from before now
		}
		return next, nil
	})
	if errs[0] != nil {
		writeError(w, storeStatus(errs[0]), errs[0])
		return
	}
	note := noteAudit(r)
	note.before, note.after = out[0].Version-1, out[0].Version
	writeJSON(w, http.StatusOK, out[0])
}

// restoreJob serves POST /api/v1/jobs/{name}/restore: a deleted job made again as it was deleted, its
// versions going on from the deletion's.
func (s *Server) restoreJob(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var body api.RestoreRequest
	if err := decodeBody(r, &body); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("restore body: %w", err))
		return
	}
	dead, err := s.store.Tombstones(r.Context(), []string{name})
	if err != nil {
		writeError(w, storeStatus(err), err)
		return
	}
	t, ok := dead[name]
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Errorf("%w: no deleted job %s to restore", store.ErrNotFound, name))
		return
	}
	r, ok = withMessage(w, r, revisionNote{action: store.RevisionRestored, message: body.Message, from: t.Version - 1})
	if !ok {
		return
	}
	rev, err := s.store.GetRevision(r.Context(), name, t.Version)
	if err != nil {
		writeError(w, storeStatus(err), fmt.Errorf("job %s: its last definition is gone: %w", name, err))
		return
	}
	spec := rev.Spec
	now := s.now().UTC()
	spec.Name, spec.Version = name, t.Version+1
	spec.CreatedAt, spec.UpdatedAt, spec.ActiveSince = now, now, now
	// Restored through the API, it is the API's now: a client that declared it does not get it back.
	spec.Source = apiSource(spec.Source)
	if err := validateSpec(spec); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("its last definition cannot be made again: %w", err))
		return
	}
	specs := []job.Spec{spec}
	if err := s.createJobs(r.Context(), specs)[0]; err != nil {
		writeError(w, storeStatus(err), err)
		return
	}
	note := noteAudit(r)
	note.target, note.after = name, specs[0].Version
	writeJSON(w, http.StatusCreated, store.AsStored(specs[0]))
}

// tagPattern is what a tag may be: a name people type.
var tagPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// maxTags bounds a revision's tags.
const maxTags = 20

// tagRevision serves POST and DELETE of a revision's tags, under the job's lock (two taggings of one
// revision do not lose each other's tag). A prune checks the tags in its delete's own filter.
func (s *Server) tagRevision(add bool) http.HandlerFunc {
	return s.tagHandler(add, revisionTags{
		what: func(name string, v int64) string { return fmt.Sprintf("version %d of %s", v, name) },
		lock: func(name string) func() { return s.jobLocks.lock(name) },
		get: func(ctx context.Context, name string, v int64) (any, *[]string, error) {
			rev, err := s.store.GetRevision(ctx, name, v)
			return &rev, &rev.Tags, err
		},
		set: func(ctx context.Context, name string, v int64, tags []string) error {
			return s.store.SetRevisionTags(ctx, name, v, tags) // s.store is set after the routes are
		},
	})
}

// revisionTags are the revisions of one kind (a job's, a batch's), for tagHandler.
type revisionTags struct {
	what func(name string, v int64) string
	lock func(name string) func() // orders the tag edits of one name
	get  func(ctx context.Context, name string, v int64) (rev any, tags *[]string, err error)
	set  func(ctx context.Context, name string, v int64, tags []string) error
}

// tagHandler adds the body's tag to a revision, or removes the path's.
func (s *Server) tagHandler(add bool, t revisionTags) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		v, err := pathVersion(r, "version")
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		tag, ok := tagOf(w, r, add)
		if !ok {
			return
		}
		defer t.lock(name)()
		rev, tags, err := t.get(r.Context(), name, v)
		if err != nil {
			writeError(w, storeStatus(err), err)
			return
		}
		if *tags, err = editTags(*tags, tag, add, t.what(name, v)); err != nil {
			writeError(w, storeStatus(err), err)
			return
		}
		if err := t.set(r.Context(), name, v, *tags); err != nil {
			writeError(w, storeStatus(err), err)
			return
		}
		writeJSON(w, http.StatusOK, rev)
	}
}

// tagOf is the tag a tag route names: the body's (to add) or the path's (to remove); false after
// answering 400.
func tagOf(w http.ResponseWriter, r *http.Request, add bool) (string, bool) {
	tag := r.PathValue("tag")
	if add {
		var body api.TagRequest
		if err := decodeBody(r, &body); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("tag body: %w", err))
			return "", false
		}
		tag = body.Tag
	}
	if !tagPattern.MatchString(tag) {
		writeError(w, http.StatusBadRequest, fmt.Errorf("tag %q: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", tag))
		return "", false
	}
	return tag, true
}

// editTags adds tag to tags, or removes it; what names the revision in errors (errBadRequest: too many;
// store.ErrNotFound: no such tag to remove).
func editTags(tags []string, tag string, add bool, what string) ([]string, error) {
	switch i := slices.Index(tags, tag); {
	case add && i < 0:
		if len(tags) >= maxTags {
			return nil, fmt.Errorf("%w: %s has %d tags, at most %d", errBadRequest, what, len(tags), maxTags)
		}
		return append(tags, tag), nil
	case !add && i >= 0:
		return slices.Delete(tags, i, i+1), nil
	case !add:
		return nil, fmt.Errorf("%w: %s has no tag %q", store.ErrNotFound, what, tag)
	}
	return tags, nil
}
