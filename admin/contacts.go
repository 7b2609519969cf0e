package admin

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/keyring"
	"github.com/clover-sched/clover/internal/store"
)

// contactsData is the contacts page: who alerts go to, which jobs name each, and the form to add one.
type contactsData struct {
	Contacts []contactRow
	JobsErr  string             // the jobs could not be read: which name each contact is unknown
	Form     api.ContactRequest // refilled after a refused add
	Error    string
	Message  string
}

type contactRow struct {
	store.Contact
	Jobs []string
	More string // the job list of all that name it, when there are more than shown
}

func (c *Console) contacts(w http.ResponseWriter, r *http.Request) {
	c.renderContacts(w, r, http.StatusOK, contactsData{Message: r.URL.Query().Get("done")})
}

func (c *Console) renderContacts(w http.ResponseWriter, r *http.Request, status int, d contactsData) {
	var list []store.Contact
	if err := c.get(r, "/api/v1/contacts", &list); err != nil {
		c.fail(w, r, http.StatusBadGateway, err)
		return
	}
	for _, ct := range list {
		row := contactRow{Contact: ct}
		// A page of the jobs that name it (the API filters, by index on MongoDB), not every job.
		var jobs []job.Spec
		q := url.Values{"contact": {ct.Name}, "limit": {strconv.Itoa(contactJobsShown + 1)}}
		if err := c.get(r, "/api/v1/jobs?"+q.Encode(), &jobs); err != nil {
			d.JobsErr = "which jobs name each contact is unknown: " + err.Error()
		}
		for i, j := range jobs {
			if i == contactJobsShown {
				row.More = "/ui/jobs?" + url.Values{"contact": {ct.Name}}.Encode()
				break
			}
			row.Jobs = append(row.Jobs, j.Name)
		}
		d.Contacts = append(d.Contacts, row)
	}
	c.render(w, r, status, "contacts", d)
}

// contactJobsShown is how many of the jobs that name a contact its row lists; the job list has the rest.
const contactJobsShown = 20

// addContact adds or replaces a contact (admins); the API's refusal is shown on the form, filled in again.
func (c *Console) addContact(w http.ResponseWriter, r *http.Request) {
	if !viewerOf(r.Context()).may(keyring.RoleAdmin) {
		c.fail(w, r, http.StatusForbidden, fmt.Errorf("adding a contact needs the admin role"))
		return
	}
	req := api.ContactRequest{Name: strings.TrimSpace(r.PostFormValue("name")), Email: strings.TrimSpace(r.PostFormValue("email")),
		Webhook: strings.TrimSpace(r.PostFormValue("webhook"))}
	if err := c.call(r, http.MethodPost, "/api/v1/contacts", req, nil); err != nil {
		status := http.StatusBadGateway
		if ae, ok := err.(*apiError); ok {
			status = ae.status
		}
		req.Webhook = "" // a secret is not sent back to the page
		c.renderContacts(w, r, status, contactsData{Form: req, Error: err.Error()})
		return
	}
	http.Redirect(w, r, "/ui/contacts?done="+url.QueryEscape("saved "+req.Name), http.StatusSeeOther)
}

func (c *Console) deleteContact(w http.ResponseWriter, r *http.Request) {
	if !viewerOf(r.Context()).may(keyring.RoleAdmin) {
		c.fail(w, r, http.StatusForbidden, fmt.Errorf("deleting a contact needs the admin role"))
		return
	}
	name := r.PathValue("name")
	if err := c.call(r, http.MethodDelete, "/api/v1/contacts/"+url.PathEscape(name), nil, nil); err != nil {
		c.fail(w, r, http.StatusBadGateway, err)
		return
	}
	http.Redirect(w, r, "/ui/contacts?done="+url.QueryEscape("deleted "+name), http.StatusSeeOther)
}

// auditData is a page of the audit log (admins).
type auditData struct {
	Who      string
	Entries  []store.AuditEntry
	OlderURL string
}

const auditPerPage = 100

func (c *Console) audit(w http.ResponseWriter, r *http.Request) {
	if !viewerOf(r.Context()).may(keyring.RoleAdmin) {
		c.fail(w, r, http.StatusForbidden, fmt.Errorf("the audit log is for the admin role"))
		return
	}
	q := r.URL.Query()
	d := auditData{Who: strings.TrimSpace(q.Get("who"))}
	read := url.Values{"limit": {fmt.Sprint(auditPerPage)}}
	if d.Who != "" {
		read.Set("who", d.Who)
	}
	if b := q.Get("before"); b != "" {
		read.Set("before", b)
		read.Set("before_id", q.Get("before_id"))
	}
	if err := c.get(r, "/api/v1/audit?"+read.Encode(), &d.Entries); err != nil {
		c.fail(w, r, http.StatusBadGateway, err)
		return
	}
	if len(d.Entries) == auditPerPage {
		last := d.Entries[len(d.Entries)-1]
		older := url.Values{"before": {last.At.UTC().Format(time.RFC3339Nano)}, "before_id": {last.ID}}
		if d.Who != "" {
			older.Set("who", d.Who)
		}
		d.OlderURL = "/ui/audit?" + older.Encode()
	}
	c.render(w, r, http.StatusOK, "audit", d)
}
