package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/keyring"
)

// A job is created and edited with a form, a field per policy (see jobform.go), or as its JSON
// definition, the API's own form (?as=json), and the API validates it: its error is shown at the field
// it names, or above the definition, with what was typed kept. An edit is conditional on the version the
// page showed: if the job changed meanwhile, the page says so and shows the current definition next to
// the edited one, and nothing is overwritten.

// jobEditData is the create and edit page.
type jobEditData struct {
	New        bool
	Name       string
	Version    int64
	JSON       bool        // edited as its JSON definition
	Fields     []formField // edited field by field
	Definition string
	Error      string
	Current    string // a conflict: the job as it is now
}

// newJobTemplate is what the create page starts from.
var newJobTemplate = job.Spec{
	Name: "", Schedule: "0 0 2 * * ?", Handler: job.HandlerShell, Params: map[string]string{"command": "echo hello"},
	Overlap: job.OverlapForbid, Misfire: job.Misfire{Policy: job.MisfireFireOnce},
}

// editable is the part of a spec a person edits: what the server keeps (times, source, stats) is left
// out, and sent back as the server has it.
func editable(s job.Spec) string {
	s.Stats, s.CreatedAt, s.UpdatedAt, s.ActiveSince, s.PausedAt = nil, time.Time{}, time.Time{}, time.Time{}, time.Time{}
	s.Version = 0
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Sprintf("admin: encode %s: %v", s.Name, err)
	}
	// Fields the server sets are left out of the text rather than shown empty.
	var m map[string]any
	if json.Unmarshal(b, &m) == nil {
		for _, k := range []string{"version", "created_at", "updated_at", "active_since", "paused_at", "source", "stats"} {
			delete(m, k)
		}
		if out, err := json.MarshalIndent(m, "", "  "); err == nil {
			return string(out)
		}
	}
	return string(b)
}

func (c *Console) newJobPage(w http.ResponseWriter, r *http.Request) {
	if !c.mayDefine(w, r) {
		return
	}
	d := jobEditData{New: true, JSON: r.URL.Query().Get("as") == "json"}
	if d.JSON {
		d.Definition = editable(newJobTemplate)
	} else {
		spec := newJobTemplate
		d.Fields = formFields(&spec, true)
	}
	c.render(w, r, http.StatusOK, "jobedit", d)
}

func (c *Console) editJobPage(w http.ResponseWriter, r *http.Request) {
	if !c.mayDefine(w, r) {
		return
	}
	var spec job.Spec
	if err := c.get(r, "/api/v1/jobs/"+url.PathEscape(r.PathValue("name")), &spec); err != nil {
		c.fail(w, r, http.StatusBadGateway, err)
		return
	}
	d := jobEditData{Name: spec.Name, Version: spec.Version, JSON: r.URL.Query().Get("as") == "json"}
	if d.JSON {
		d.Definition = editable(spec)
	} else {
		d.Fields = formFields(&spec, false)
	}
	c.render(w, r, http.StatusOK, "jobedit", d)
}

// mayDefine reports whether the viewer may create, edit and delete jobs (the API asks the admin role,
// since a definition holds the shell command every client runs), and answers 403 if not.
func (c *Console) mayDefine(w http.ResponseWriter, r *http.Request) bool {
	if viewerOf(r.Context()).may(keyring.RoleAdmin) {
		return true
	}
	c.fail(w, r, http.StatusForbidden, errors.New("defining jobs needs the admin role"))
	return false
}

// saveJob creates a job (name "") or replaces one at the version the form was opened at.
func (c *Console) saveJob(w http.ResponseWriter, r *http.Request) {
	if !c.mayDefine(w, r) {
		return
	}
	name := r.PathValue("name")
	d := jobEditData{New: name == "", Name: name, Definition: r.PostFormValue("definition"), JSON: r.PostForm.Has("definition")}
	fmt.Sscan(r.PostFormValue("version"), &d.Version)
	var spec job.Spec
	if d.JSON {
		dec := json.NewDecoder(strings.NewReader(d.Definition))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&spec); err != nil {
			d.Error = "the definition is not a job's JSON: " + err.Error()
			c.render(w, r, http.StatusBadRequest, "jobedit", d)
			return
		}
	} else {
		if !d.New {
			// What the form does not show (who owns the definition) stays as it is.
			if err := c.get(r, "/api/v1/jobs/"+url.PathEscape(name), &spec); err != nil {
				c.fail(w, r, http.StatusBadGateway, err)
				return
			}
			spec.Stats = nil
		}
		var ok bool
		if d.Fields, ok = specFromForm(&spec, r.PostForm, d.New); !ok {
			d.Error = "some fields are not right: see below"
			c.render(w, r, http.StatusBadRequest, "jobedit", d)
			return
		}
		if !d.New {
			spec.Name = name
		}
	}
	var err error
	if d.New {
		err = c.call(r, http.MethodPost, "/api/v1/jobs", spec, &spec)
	} else {
		if spec.Name != name {
			d.Error = fmt.Sprintf("the definition names %q: a job is renamed by creating the new one and deleting %s", spec.Name, name)
			c.render(w, r, http.StatusBadRequest, "jobedit", d)
			return
		}
		spec.Version = d.Version // conditional on what the page showed
		if d.JSON {
			// Who owns the definition (a job file, a client) is not in the text: it stays as it is.
			var cur job.Spec
			if err := c.get(r, "/api/v1/jobs/"+url.PathEscape(name), &cur); err == nil {
				spec.Source = cur.Source
			}
		}
		err = c.call(r, http.MethodPut, "/api/v1/jobs/"+url.PathEscape(name), spec, &spec)
	}
	var ae *apiError
	switch {
	case err == nil:
		verb := "created"
		if !d.New {
			verb = "saved"
		}
		http.Redirect(w, r, "/ui/jobs/"+url.PathEscape(spec.Name)+"?done="+url.QueryEscape(fmt.Sprintf("%s, version %d", verb, spec.Version)), http.StatusSeeOther)
	case errors.As(err, &ae) && ae.status == http.StatusConflict && !d.New:
		var cur job.Spec
		if c.get(r, "/api/v1/jobs/"+url.PathEscape(name), &cur) == nil {
			d.Current = editable(cur)
			d.Error = fmt.Sprintf("%s changed since you opened it (version %d, now %d): nothing was saved. Compare, then edit again from the current version.", name, d.Version, cur.Version)
		} else {
			d.Error = err.Error()
		}
		c.render(w, r, http.StatusConflict, "jobedit", d)
	case errors.As(err, &ae) && ae.status < 500:
		d.Error = ae.msg
		if key := fieldOfError(ae.msg); key != "" {
			for i := range d.Fields {
				if d.Fields[i].Key == key {
					d.Fields[i].Error, d.Error = ae.msg, "the job was not saved: see "+d.Fields[i].Label
				}
			}
		}
		c.render(w, r, ae.status, "jobedit", d)
	default:
		c.fail(w, r, http.StatusBadGateway, err)
	}
}

func (c *Console) deleteJob(w http.ResponseWriter, r *http.Request) {
	if !c.mayDefine(w, r) {
		return
	}
	name := r.PathValue("name")
	if err := c.call(r, http.MethodDelete, "/api/v1/jobs/"+url.PathEscape(name), nil, nil); err != nil {
		c.fail(w, r, http.StatusBadGateway, err)
		return
	}
	http.Redirect(w, r, "/ui/jobs?deleted="+url.QueryEscape(name), http.StatusSeeOther)
}
