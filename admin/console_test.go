package admin

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/keyring"
	"github.com/clover-sched/clover/internal/registry"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/wire"
)

// fakeAPI answers the console's API calls from memory and refuses writes below the operator role, as
// the server's API does; it records every call with its caller.
type fakeAPI struct {
	mu       sync.Mutex
	jobs     map[string]job.Spec
	execs    []job.Execution // newest first, as the API lists them
	contacts map[string]store.Contact
	calls    []apiCall
	// output and ended are executions' output and whether their run ended, for the output route.
	output map[string]string
	ended  map[string]bool
	// triggered is the body of the last trigger.
	triggered *api.TriggerRequest
}

type apiCall struct {
	caller       Caller
	method, path string
}

func newFakeAPI(jobs ...job.Spec) *fakeAPI {
	a := &fakeAPI{jobs: map[string]job.Spec{}}
	for _, j := range jobs {
		a.jobs[j.Name] = j
	}
	return a
}

func (a *fakeAPI) allCalls() []apiCall {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]apiCall(nil), a.calls...)
}

func (a *fakeAPI) writes() []apiCall {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []apiCall
	for _, c := range a.calls {
		if c.method != http.MethodGet {
			out = append(out, c)
		}
	}
	return out
}

func (a *fakeAPI) Do(_ context.Context, caller Caller, method, path string, body []byte) (int, []byte, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, apiCall{caller, method, path})
	u, _ := url.Parse(path)
	answer := func(v any) (int, []byte, error) {
		b, _ := json.Marshal(v)
		return http.StatusOK, b, nil
	}
	if method != http.MethodGet && !caller.may(keyring.RoleOperator) {
		return http.StatusForbidden, []byte(`{"error":"` + caller.Name + ` may not do that"}`), nil
	}
	adminOnly := strings.HasPrefix(u.Path, "/api/v1/audit") || strings.HasPrefix(u.Path, "/api/v1/contacts") && method != http.MethodGet
	if adminOnly && !caller.may(keyring.RoleAdmin) {
		return http.StatusForbidden, []byte(`{"error":"` + caller.Name + ` may not do that: it needs role admin"}`), nil
	}
	switch p := u.Path; {
	case p == "/api/v1/audit":
		return answer([]store.AuditEntry{{Who: "alice", Role: "admin", Action: "POST /api/v1/jobs/{name}/pause", Target: "nightly", Status: 200, Via: "console"}})
	case p == "/api/v1/contacts" && method == http.MethodGet:
		var out []store.Contact
		for _, ct := range a.contacts {
			out = append(out, ct)
		}
		return answer(out)
	case p == "/api/v1/contacts":
		var req api.ContactRequest
		_ = json.Unmarshal(body, &req)
		if !strings.Contains(req.Email, "@") {
			return http.StatusBadRequest, []byte(`{"error":"contact ` + req.Name + `: email \"` + req.Email + `\" is not an address"}`), nil
		}
		if a.contacts == nil {
			a.contacts = map[string]store.Contact{}
		}
		a.contacts[req.Name] = store.Contact{Name: req.Name, Email: req.Email, Webhook: req.Webhook}
		return http.StatusCreated, []byte(`{}`), nil
	case strings.HasPrefix(p, "/api/v1/contacts/") && method == http.MethodDelete:
		delete(a.contacts, strings.TrimPrefix(p, "/api/v1/contacts/"))
		return http.StatusNoContent, nil, nil
	case p == "/api/v1/cluster":
		return answer(api.ClusterStatus{Server: "s1", Leader: &api.LeaderStatus{ID: "server-leading", Epoch: 7},
			Servers: []registry.Member{{ID: "server-leading"}}, Clients: []registry.Member{{ID: "client-a", Capacity: 8, Handlers: []string{"shell"}}}})
	case p == "/api/v1/backlog":
		return answer(api.Backlog{Open: 3, ByStatus: map[string]int{"running": 3}, Limit: 20000})
	case p == "/api/v1/activity":
		n, _ := strconv.Atoi(u.Query().Get("minutes"))
		out := api.Activity{Leader: "server-leading", Since: time.Now().Add(-time.Hour)}
		for i := range n {
			m := api.ActivityMinute{At: time.Now().Truncate(time.Minute).Add(time.Duration(i-n+1) * time.Minute)}
			m.Fired, m.Succeeded, m.Failed = 10+i%7, 9+i%7, 1
			out.Minutes = append(out.Minutes, m)
		}
		return answer(out)
	case p == "/api/v1/heartbeats":
		return answer([]api.ClientHeartbeat{{Client: "client-a", LastAt: time.Now()}})
	case p == "/api/v1/inflight":
		if u.Query().Get("job") == "nightly" {
			return answer([]api.InFlight{{ID: "nightly@1", Job: "nightly", Client: "client-a", Status: "running", Progress: &wire.Progress{ExecID: "nightly@1", Percent: 40, Message: "4 of 10 files"}}})
		}
		return answer([]api.InFlight{{ID: "x@1", Job: "x", Client: "client-a", Status: "running"}})
	case p == "/api/v1/alerts":
		return answer([]map[string]any{{"key": "k", "summary": "client-b is gone", "since": time.Now()}})
	case p == "/api/v1/executions" && a.execs == nil:
		return answer([]job.Execution{{ID: "nightly@1", Job: "nightly", State: job.StateFailed, Client: "client-a", Result: &job.Result{Status: job.StateFailed, Error: "exit status 3"}}})
	case p == "/api/v1/executions":
		q := u.Query()
		limit, _ := strconv.Atoi(q.Get("limit"))
		var out []job.Execution
		before, _ := time.Parse(time.RFC3339Nano, q.Get("before"))
		for _, e := range a.execs {
			if !before.IsZero() && (e.ScheduledAt.After(before) || e.ScheduledAt.Equal(before) && e.ID >= q.Get("before_id")) {
				continue
			}
			if q.Has("client") && !q.Has("since") {
				return http.StatusBadRequest, []byte(`{"error":"query text or client: needs since, at most 31 days back"}`), nil
			}
			if since, err := time.Parse(time.RFC3339, q.Get("since")); err == nil && e.ScheduledAt.Before(since) || q.Has("client") && e.Client != q.Get("client") {
				continue
			}
			if len(out) < limit {
				out = append(out, e)
			}
		}
		return answer(out)
	case strings.HasPrefix(p, "/api/v1/executions/") && strings.HasSuffix(p, "/output"):
		id := strings.TrimSuffix(strings.TrimPrefix(p, "/api/v1/executions/"), "/output")
		out := a.output[id]
		n, _ := strconv.Atoi(u.Query().Get("max"))
		off, err := strconv.ParseInt(u.Query().Get("offset"), 10, 64)
		if err != nil {
			off = max(int64(len(out)-n), 0)
		}
		off = min(off, int64(len(out)))
		text := out[off:min(int(off)+n, len(out))]
		return answer(api.OutputChunk{Execution: id, Run: 1, Offset: off, Text: text, Next: off + int64(len(text)), End: int64(len(out)), Ended: a.ended[id], Source: "client", Client: "client-a"})
	case strings.HasPrefix(p, "/api/v1/executions/"):
		id, action, _ := strings.Cut(strings.TrimPrefix(p, "/api/v1/executions/"), "/")
		for i, e := range a.execs {
			if e.ID != id {
				continue
			}
			if action == "stop" {
				a.execs[i].State = job.StateFailed
				return answer(api.ExecActionResponse{Execution: id, Action: action})
			}
			return answer(e)
		}
		return http.StatusNotFound, []byte(`{"error":"no execution ` + id + `"}`), nil
	case p == "/api/v1/fallback":
		return answer(api.FallbackStatus{})
	case p == "/api/v1/jobs" && method == http.MethodPost:
		var spec job.Spec
		if err := json.Unmarshal(body, &spec); err != nil || spec.Schedule == "" {
			return http.StatusBadRequest, []byte(`{"error":"job ` + spec.Name + `: schedule is empty"}`), nil
		}
		if err := spec.Validate(); err != nil {
			b, _ := json.Marshal(map[string]string{"error": err.Error()})
			return http.StatusBadRequest, b, nil
		}
		if _, ok := a.jobs[spec.Name]; ok {
			return http.StatusConflict, []byte(`{"error":"job exists"}`), nil
		}
		spec.Version = 1
		a.jobs[spec.Name] = spec
		return answer(spec)
	case p == "/api/v1/jobs":
		q := u.Query()
		var out []job.Spec
		for _, j := range a.jobs {
			text := strings.ToLower(q.Get("q"))
			switch {
			case j.Name <= q.Get("after"),
				text != "" && !strings.Contains(strings.ToLower(j.Name+" "+j.Handler+" "+j.Source), text),
				q.Get("state") == "paused" && !j.Paused, q.Get("state") == "active" && j.Paused,
				q.Has("contact") && !slices.Contains(j.Contacts, q.Get("contact")):
				continue
			}
			out = append(out, j)
		}
		slices.SortFunc(out, func(a, b job.Spec) int { return strings.Compare(a.Name, b.Name) })
		if n, err := strconv.Atoi(q.Get("limit")); err == nil && len(out) > n {
			out = out[:n]
		}
		return answer(out)
	case strings.HasPrefix(p, "/api/v1/jobs/"):
		rest := strings.TrimPrefix(p, "/api/v1/jobs/")
		name, action, _ := strings.Cut(rest, "/")
		j, ok := a.jobs[name]
		if !ok {
			return http.StatusNotFound, []byte(`{"error":"job ` + name + ` not found"}`), nil
		}
		switch {
		case action == "" && method == http.MethodPut:
			var spec job.Spec
			_ = json.Unmarshal(body, &spec)
			if err := spec.Validate(); err != nil {
				b, _ := json.Marshal(map[string]string{"error": err.Error()})
				return http.StatusBadRequest, b, nil
			}
			if spec.Version != j.Version {
				return http.StatusConflict, []byte(fmt.Sprintf(`{"error":"conflict: job %s is at version %d, not %d"}`, name, j.Version, spec.Version)), nil
			}
			spec.Version++
			a.jobs[name] = spec
			return answer(spec)
		case action == "" && method == http.MethodDelete:
			delete(a.jobs, name)
			return http.StatusNoContent, nil, nil
		}
		switch action {
		case "":
			return answer(j)
		case "next":
			return answer(api.NextFires{Job: name, Schedule: j.Schedule, Next: []time.Time{time.Now().Add(time.Hour)}})
		case "pause", "resume":
			j.Paused = action == "pause"
			a.jobs[name] = j
			return answer(j)
		case "trigger":
			a.triggered = nil
			_ = json.Unmarshal(body, &a.triggered)
			return answer(api.TriggerResponse{Execution: name + "@manual"})
		}
	}
	return http.StatusNotFound, []byte(`{"error":"no route"}`), nil
}

// tokens are the fake tokens file: token -> holder.
var testTokens = map[string]Caller{
	"admin-token":    {Name: "alice", Role: keyring.RoleAdmin},
	"viewer-token":   {Name: "victor", Role: keyring.RoleViewer},
	"operator-token": {Name: "oscar", Role: keyring.RoleOperator},
}

type consoleRig struct {
	t       *testing.T
	api     *fakeAPI
	srv     *httptest.Server
	revoked map[string]bool
	mu      sync.Mutex
	now     time.Time
}

func newConsoleRig(t *testing.T) *consoleRig {
	rig := &consoleRig{t: t, api: newFakeAPI(job.Spec{Name: "nightly", Schedule: "0 0 2 * * ?", Handler: "shell", Version: 3}), revoked: map[string]bool{}, now: time.Now()}
	byHash := map[string]Caller{}
	for tok, c := range testTokens {
		sum := sha256.Sum256([]byte(tok))
		byHash[hex.EncodeToString(sum[:])] = c
	}
	c, err := New(Options{
		API: rig.api,
		Holder: func(hash string) (Caller, bool, error) {
			rig.mu.Lock()
			defer rig.mu.Unlock()
			c, ok := byHash[hash]
			return c, ok && !rig.revoked[c.Name], nil
		},
		SessionKey: []byte(strings.Repeat("k", 32)),
		Now: func() time.Time {
			rig.mu.Lock()
			defer rig.mu.Unlock()
			return rig.now
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	rig.srv = httptest.NewServer(c)
	t.Cleanup(rig.srv.Close)
	return rig
}

// client is a browser-like HTTP client with its own cookies that does not follow redirects.
func (rig *consoleRig) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (rig *consoleRig) do(c *http.Client, method, path string, form url.Values, header map[string]string) (*http.Response, string) {
	rig.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, rig.srv.URL+path, body)
	if err != nil {
		rig.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		rig.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// login logs c in with token and returns its CSRF token, read off the dashboard.
func (rig *consoleRig) login(c *http.Client, token string) string {
	rig.t.Helper()
	resp, _ := rig.do(c, "POST", "/ui/login", url.Values{"token": {token}, "next": {"/ui/"}}, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/" {
		rig.t.Fatalf("login: %s, Location %q", resp.Status, resp.Header.Get("Location"))
	}
	resp, body := rig.do(c, "GET", "/ui/", nil, nil)
	if resp.StatusCode != http.StatusOK {
		rig.t.Fatalf("dashboard after login: %s", resp.Status)
	}
	m := regexp.MustCompile(`"X-Clover-CSRF": "([^"]+)"`).FindStringSubmatch(body)
	if m == nil {
		rig.t.Fatalf("no CSRF token on the dashboard:\n%s", body)
	}
	return m[1]
}

func TestAPageNeedsALoginThatNamesItsHolder(t *testing.T) {
	rig := newConsoleRig(t)
	c := rig.client()
	resp, _ := rig.do(c, "GET", "/ui/jobs?q=night", nil, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/login?next="+url.QueryEscape("/ui/jobs?q=night") {
		t.Fatalf("before login: %s to %q, want 303 to the login page keeping the destination", resp.Status, resp.Header.Get("Location"))
	}
	resp, body := rig.do(c, "POST", "/ui/login", url.Values{"token": {"not-a-token"}}, nil)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "Unknown or revoked token") {
		t.Fatalf("a wrong token: %s, want 401 with the reason", resp.Status)
	}
	resp, _ = rig.do(c, "POST", "/ui/login", url.Values{"token": {"admin-token"}, "next": {"//evil.example/"}}, nil)
	if resp.Header.Get("Location") != "/ui/" {
		t.Fatalf("login with a foreign next: to %q, want /ui/", resp.Header.Get("Location"))
	}
	var cookie *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == sessionCookie {
			cookie = ck
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Path != "/ui/" || strings.Contains(cookie.Value, "admin-token") {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/ui/, without the token", cookie)
	}
	resp, body = rig.do(c, "GET", "/ui/", nil, nil)
	for _, want := range []string{"server-leading", "client-a", "client-b is gone", "exit status 3", `id="who">alice`} {
		if !strings.Contains(body, want) {
			t.Errorf("dashboard lacks %q", want)
		}
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	for _, call := range rig.api.allCalls() {
		if call.caller.Name != "alice" {
			t.Errorf("the API was called as %+v, want alice", call.caller)
		}
	}
	resp, _ = rig.do(c, "POST", "/ui/logout", url.Values{}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %s", resp.Status)
	}
	if resp, _ = rig.do(c, "GET", "/ui/", nil, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("after logout: %s, want a redirect to the login page", resp.Status)
	}
}

func TestASessionEndsWhenItsTokenIsRevokedOrItExpiresOrIsAltered(t *testing.T) {
	rig := newConsoleRig(t)
	c := rig.client()
	rig.login(c, "admin-token")
	rig.mu.Lock()
	rig.revoked["alice"] = true
	rig.mu.Unlock()
	if resp, _ := rig.do(c, "GET", "/ui/", nil, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoked token: %s, want a redirect to the login page", resp.Status)
	}
	rig.mu.Lock()
	rig.revoked["alice"] = false
	rig.mu.Unlock()

	c = rig.client()
	rig.login(c, "admin-token")
	u, _ := url.Parse(rig.srv.URL + "/ui/")
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == sessionCookie {
			_, sig, _ := strings.Cut(ck.Value, ".") // alice's signature on another payload
			body, _ := json.Marshal(session{Name: "alice", Role: keyring.RoleAdmin, Hash: "00", Expires: time.Now().Add(time.Hour).Unix(), Nonce: "n"})
			forged := &http.Cookie{Name: sessionCookie, Value: base64.RawURLEncoding.EncodeToString(body) + "." + sig, Path: "/ui/"}
			c2 := rig.client()
			c2.Jar.SetCookies(u, []*http.Cookie{forged})
			if resp, _ := rig.do(c2, "GET", "/ui/", nil, nil); resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("altered cookie: %s, want a redirect to the login page", resp.Status)
			}
		}
	}
	rig.mu.Lock()
	rig.now = rig.now.Add(sessionTTL + time.Minute)
	rig.mu.Unlock()
	if resp, _ := rig.do(c, "GET", "/ui/", nil, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("expired session: %s, want a redirect to the login page", resp.Status)
	}
}

func TestAWriteNeedsTheSessionsCSRFTokenAndTheConsolesOrigin(t *testing.T) {
	rig := newConsoleRig(t)
	c := rig.client()
	csrf := rig.login(c, "admin-token")
	if resp, _ := rig.do(c, "POST", "/ui/jobs/nightly/pause", url.Values{}, nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("pause without the CSRF token: %s, want 403", resp.Status)
	}
	if resp, _ := rig.do(c, "POST", "/ui/jobs/nightly/pause", url.Values{"csrf": {csrf}}, map[string]string{"Origin": "https://evil.example"}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("pause from a foreign origin: %s, want 403", resp.Status)
	}
	if n := len(rig.api.writes()); n != 0 {
		t.Fatalf("the API was written to %d times by refused requests", n)
	}
	resp, _ := rig.do(c, "POST", "/ui/jobs/nightly/pause", url.Values{"csrf": {csrf}}, map[string]string{"Origin": rig.srv.URL})
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/ui/jobs/nightly?done=") {
		t.Fatalf("pause: %s to %q", resp.Status, resp.Header.Get("Location"))
	}
	w := rig.api.writes()
	if len(w) != 1 || w[0].path != "/api/v1/jobs/nightly/pause" || w[0].caller.Name != "alice" {
		t.Fatalf("API writes %+v, want one pause as alice", w)
	}
	if _, body := rig.do(c, "GET", resp.Header.Get("Location"), nil, nil); !strings.Contains(body, `id="job-state">paused`) || !strings.Contains(body, `id="resume"`) {
		t.Fatal("the job page after the pause does not show it paused with a resume button")
	}
}

func TestAViewerSeesNoWriteButtonAndCannotForceOne(t *testing.T) {
	rig := newConsoleRig(t)
	c := rig.client()
	csrf := rig.login(c, "viewer-token")
	_, body := rig.do(c, "GET", "/ui/jobs/nightly", nil, nil)
	if !strings.Contains(body, `id="job-name">nightly`) {
		t.Fatalf("job page:\n%s", body)
	}
	for _, button := range []string{`id="pause"`, `id="trigger"`, `id="resume"`} {
		if strings.Contains(body, button) {
			t.Errorf("a viewer's job page shows %s", button)
		}
	}
	resp, _ := rig.do(c, "POST", "/ui/jobs/nightly/trigger", url.Values{"csrf": {csrf}}, nil)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a viewer's forced trigger: %s, want 403", resp.Status)
	}
	if n := len(rig.api.writes()); n != 0 {
		t.Fatalf("a viewer's forced trigger reached the API %d times", n)
	}
}

func TestTheJobListIsPagedAndFilteredOnTheServer(t *testing.T) {
	rig := newConsoleRig(t)
	rig.api.mu.Lock()
	for i := range 120 {
		name := fmt.Sprintf("etl-%03d", i)
		rig.api.jobs[name] = job.Spec{Name: name, Schedule: "@every 1h", Handler: "shell", Paused: i%2 == 0}
	}
	rig.api.mu.Unlock()
	c := rig.client()
	rig.login(c, "admin-token")
	var seen []string
	next := "/ui/jobs?q=etl&state=paused"
	for pages := 0; next != ""; pages++ {
		if pages > 2 {
			t.Fatal("more pages than the jobs need")
		}
		_, body := rig.do(c, "GET", next, nil, nil)
		for _, m := range regexp.MustCompile(`<a href="/ui/jobs/(etl-\d+)">`).FindAllStringSubmatch(body, -1) {
			seen = append(seen, m[1])
		}
		m := regexp.MustCompile(`href="([^"]+)" id="next"`).FindStringSubmatch(body)
		next = ""
		if m != nil {
			next = strings.ReplaceAll(m[1], "&amp;", "&")
		}
	}
	if len(seen) != 60 || !slices.IsSorted(seen) || seen[0] != "etl-000" {
		t.Fatalf("the pages listed %d paused etl jobs (%v...), want the 60, in name order, each once", len(seen), seen[:min(3, len(seen))])
	}
	for _, name := range seen {
		if n, _ := strconv.Atoi(strings.TrimPrefix(name, "etl-")); n%2 != 0 {
			t.Fatalf("%s is listed under paused", name)
		}
	}
	rig.api.mu.Lock()
	defer rig.api.mu.Unlock()
	for _, call := range rig.api.calls {
		if call.path == "/api/v1/jobs" {
			t.Fatal("the job list read every job instead of a page")
		}
	}
}

func TestExecutionsArePagedWithTheAPIsCursorAndAnOpenOneCanBeStopped(t *testing.T) {
	rig := newConsoleRig(t)
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	rig.api.mu.Lock()
	for i := 119; i >= 0; i-- { // newest first
		e := job.Execution{ID: fmt.Sprintf("nightly@%03d", i), Job: "nightly", ScheduledAt: t0.Add(time.Duration(i) * time.Minute), State: job.StateSucceeded}
		if i == 119 {
			e.State, e.Client = job.StateRunning, "client-a"
		}
		rig.api.execs = append(rig.api.execs, e)
	}
	rig.api.mu.Unlock()
	c := rig.client()
	csrf := rig.login(c, "admin-token")
	var seen []string
	next := "/ui/executions?job=nightly"
	for pages := 0; next != ""; pages++ {
		if pages > 3 {
			t.Fatal("more pages than the executions need")
		}
		_, body := rig.do(c, "GET", next, nil, nil)
		seen = append(seen, regexp.MustCompile(`href="/ui/executions/(nightly@\d+)"`).FindAllString(body, -1)...)
		m := regexp.MustCompile(`href="([^"]+)" id="older"`).FindStringSubmatch(body)
		next = ""
		if m != nil {
			next = strings.ReplaceAll(m[1], "&amp;", "&")
		}
	}
	if len(seen) != 120 || !strings.Contains(seen[0], "nightly@119") || !strings.Contains(seen[119], "nightly@000") {
		t.Fatalf("the pages listed %d executions (first %v), want 120 newest first, each once", len(seen), seen[:min(3, len(seen))])
	}
	_, body := rig.do(c, "GET", "/ui/executions/nightly@119", nil, nil)
	if !strings.Contains(body, `id="stop"`) {
		t.Fatal("a running execution's page has no stop button for an admin")
	}
	resp, _ := rig.do(c, "POST", "/ui/executions/nightly@119/stop", url.Values{"csrf": {csrf}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("stop: %s", resp.Status)
	}
	if w := rig.api.writes(); len(w) != 1 || w[0].path != "/api/v1/executions/nightly@119/stop" {
		t.Fatalf("API writes %+v, want the stop", w)
	}
	if _, body := rig.do(c, "GET", "/ui/executions/nightly@119", nil, nil); strings.Contains(body, `id="stop"`) {
		t.Fatal("an ended execution still offers a stop")
	}
}

func TestContactsAndTheAuditLogAreForAdmins(t *testing.T) {
	rig := newConsoleRig(t)
	rig.api.mu.Lock()
	j := rig.api.jobs["nightly"]
	j.Contacts = []string{"ops"}
	rig.api.jobs["nightly"] = j
	rig.api.mu.Unlock()
	admin := rig.client()
	csrf := rig.login(admin, "admin-token")
	resp, body := rig.do(admin, "POST", "/ui/contacts", url.Values{"csrf": {csrf}, "name": {"ops"}, "email": {"not-an-address"}, "webhook": {"https://hooks.example/T0KEN"}}, nil)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "is not an address") || !strings.Contains(body, `value="not-an-address"`) {
		t.Fatalf("a refused contact: %s; want 400 with the API's reason and the form filled in again", resp.Status)
	}
	if strings.Contains(body, "T0KEN") {
		t.Error("the refused form sent the webhook (a secret) back to the page")
	}
	resp, _ = rig.do(admin, "POST", "/ui/contacts", url.Values{"csrf": {csrf}, "name": {"ops"}, "email": {"ops@example.com"}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("add a contact: %s", resp.Status)
	}
	_, body = rig.do(admin, "GET", "/ui/contacts", nil, nil)
	if !strings.Contains(body, "ops@example.com") || !strings.Contains(body, `<a href="/ui/jobs/nightly">nightly</a>`) {
		t.Fatal("the contacts page does not list ops with the job that names it")
	}
	if _, body = rig.do(admin, "GET", "/ui/audit", nil, nil); !strings.Contains(body, "POST /api/v1/jobs/{name}/pause") || !strings.Contains(body, `id="nav-audit"`) {
		t.Fatal("an admin's audit page does not show the log")
	}

	viewer := rig.client()
	vcsrf := rig.login(viewer, "viewer-token")
	_, body = rig.do(viewer, "GET", "/ui/contacts", nil, nil)
	for _, s := range []string{`id="contact-add"`, `id="delete-ops"`, `id="nav-audit"`} {
		if strings.Contains(body, s) {
			t.Errorf("a viewer's contacts page shows %s", s)
		}
	}
	if resp, _ := rig.do(viewer, "POST", "/ui/contacts/ops/delete", url.Values{"csrf": {vcsrf}}, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a viewer's forced delete: %s, want 403", resp.Status)
	}
	if resp, _ := rig.do(viewer, "GET", "/ui/audit", nil, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a viewer's audit page: %s, want 403", resp.Status)
	}
	rig.api.mu.Lock()
	_, kept := rig.api.contacts["ops"]
	rig.api.mu.Unlock()
	if !kept {
		t.Error("a viewer's forced delete removed the contact")
	}
}

func TestTheClientsPageShowsEachClientsRunsAndHeartbeat(t *testing.T) {
	rig := newConsoleRig(t)
	c := rig.client()
	rig.login(c, "viewer-token")
	_, body := rig.do(c, "GET", "/ui/members", nil, nil)
	for _, want := range []string{"server-leading <strong>leader</strong> (epoch 7)", "<td>client-a</td><td>1 / 8</td>", `<a href="/ui/executions/x@1">x@1</a>`} {
		if !strings.Contains(body, want) {
			t.Errorf("the clients page lacks %q", want)
		}
	}
	if strings.Contains(body, "not this term") {
		t.Error("the clients page says the leader has not heard client-a, which its heartbeats list")
	}
}

func TestAJobIsCreatedAndEditedAsItsDefinitionAndAnEditNeverOverwritesANewerVersion(t *testing.T) {
	rig := newConsoleRig(t)
	c := rig.client()
	csrf := rig.login(c, "admin-token")
	_, body := rig.do(c, "GET", "/ui/new-job?as=json", nil, nil)
	if !strings.Contains(body, `id="definition"`) || !strings.Contains(body, "echo hello") {
		t.Fatal("the new job page has no definition to start from")
	}
	bad := `{"name": "report", "handler": "shell", "params": {"command": "make-report"}}`
	resp, body := rig.do(c, "POST", "/ui/new-job", url.Values{"csrf": {csrf}, "definition": {bad}}, nil)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "schedule is empty") || !strings.Contains(body, "make-report") {
		t.Fatalf("an invalid job: %s; want 400 with the API's reason and the definition kept", resp.Status)
	}
	if resp, body = rig.do(c, "POST", "/ui/new-job", url.Values{"csrf": {csrf}, "definition": {`{"name": "report", "bogus": 1}`}}, nil); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "bogus") {
		t.Fatalf("an unknown field: %s; want 400 naming it", resp.Status)
	}
	good := `{"name": "report", "schedule": "0 0 6 * * ?", "handler": "shell", "params": {"command": "make-report"}}`
	if resp, _ = rig.do(c, "POST", "/ui/new-job", url.Values{"csrf": {csrf}, "definition": {good}}, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("create: %s", resp.Status)
	}
	// Two editors open version 1; the first saves, the second is told and overwrites nothing.
	_, body = rig.do(c, "GET", "/ui/jobs/report/edit?as=json", nil, nil)
	if !strings.Contains(body, `name="version" value="1"`) || !strings.Contains(body, `id="definition"`) {
		t.Fatal("the edit page does not carry the version it shows")
	}
	first := strings.Replace(good, "0 0 6", "0 0 7", 1)
	if resp, _ = rig.do(c, "POST", "/ui/jobs/report/edit", url.Values{"csrf": {csrf}, "version": {"1"}, "definition": {first}}, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the first edit: %s", resp.Status)
	}
	second := strings.Replace(good, "0 0 6", "0 0 8", 1)
	resp, body = rig.do(c, "POST", "/ui/jobs/report/edit", url.Values{"csrf": {csrf}, "version": {"1"}, "definition": {second}}, nil)
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "changed since you opened it") || !strings.Contains(body, `id="current"`) {
		t.Fatalf("the second edit from version 1: %s; want 409 with the job as it is now", resp.Status)
	}
	rig.api.mu.Lock()
	got := rig.api.jobs["report"]
	rig.api.mu.Unlock()
	if got.Schedule != "0 0 7 * * ?" || got.Version != 2 {
		t.Fatalf("after the conflict the job is %q at version %d, want the first edit's schedule at version 2", got.Schedule, got.Version)
	}
	viewer := rig.client()
	vcsrf := rig.login(viewer, "viewer-token")
	if resp, _ = rig.do(viewer, "POST", "/ui/jobs/report/delete", url.Values{"csrf": {vcsrf}}, nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a viewer's forced delete: %s, want 403", resp.Status)
	}
	if resp, _ = rig.do(c, "POST", "/ui/jobs/report/delete", url.Values{"csrf": {csrf}}, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("delete: %s", resp.Status)
	}
}

func TestTheLogsPageSearchesErrorsAndOutputWithinALookback(t *testing.T) {
	rig := newConsoleRig(t)
	c := rig.client()
	rig.login(c, "viewer-token")
	_, body := rig.do(c, "GET", "/ui/logs?text=EXIT+status&hours=6", nil, nil)
	if !strings.Contains(body, `<a href="/ui/executions/nightly@1">nightly@1</a>`) || !strings.Contains(body, "exit status 3") {
		t.Fatal("the logs page does not list the execution whose error matches")
	}
	var asked *url.URL
	for _, call := range rig.api.allCalls() {
		if u, _ := url.Parse(call.path); u.Path == "/api/v1/executions" {
			asked = u
		}
	}
	if asked == nil {
		t.Fatal("the logs page did not ask the API")
	}
	since, err := time.Parse(time.RFC3339Nano, asked.Query().Get("since"))
	if asked.Query().Get("text") != "EXIT status" || err != nil || rig.now.Sub(since) != 6*time.Hour {
		t.Errorf("the search asked %s: want the text and a since 6 hours back", asked.RawQuery)
	}
	if got := excerpt(strings.Repeat("a", 500)+"ORA-00942"+strings.Repeat("b", 500), "ora-00942"); !strings.Contains(got, "ORA-00942") || len(got) > 260+len("……") {
		t.Errorf("excerpt: %d bytes %q", len(got), got)
	}
}

// Found in review: the excerpt's match was found in the lowercased text and cut from the original,
// where characters that lengthen when lowercased put it past the end (a 500 for every searcher).
func TestAnExcerptHoldsForTextWhoseCaseChangesItsLength(t *testing.T) {
	for _, s := range []string{strings.Repeat("Ⱥ", 200) + "needle" + strings.Repeat("Ⱥ", 200), strings.Repeat("İ", 300) + "NEEDLE", "x"} {
		got := excerpt(s, "needle")
		if !utf8.ValidString(got) {
			t.Errorf("excerpt cut a character: %q", got)
		}
		if len(s) > 1 && !strings.Contains(strings.ToLower(got), "needle") {
			t.Errorf("excerpt lost the match: %q", got)
		}
	}
}

// Found in review: forms were parsed whole before any check, and a logout came from any page.
func TestFormsAreBoundedAndALogoutComesFromTheConsole(t *testing.T) {
	rig := newConsoleRig(t)
	c := rig.client()
	rig.login(c, "viewer-token")
	big := url.Values{"csrf": {strings.Repeat("x", maxFormBody+1)}}
	if resp, _ := rig.do(c, "POST", "/ui/jobs/nightly/pause", big, nil); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("a form over %d bytes: %s, want 413", maxFormBody, resp.Status)
	}
	if resp, _ := rig.do(c, "POST", "/ui/logout", url.Values{}, map[string]string{"Origin": "https://evil.example"}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a logout from a foreign page: %s, want 403", resp.Status)
	}
	if resp, _ := rig.do(c, "GET", "/ui/", nil, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("after the refused logout: %s, want still logged in", resp.Status)
	}
	for next, want := range map[string]string{"/ui/../../evil": "/ui/", "/ui/jobs/x": "/ui/jobs/x", "//evil.example/": "/ui/"} {
		if got := safeNext(next); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", next, got, want)
		}
	}
}

// Behind a proxy, the console takes writes from the origins api.origins names, and only those.
func TestTheConsoleTakesWritesFromTheOriginsItIsGiven(t *testing.T) {
	c := &Console{origins: []string{"https://clover.example.com/"}}
	for origin, want := range map[string]bool{
		"https://clover.example.com":  true,
		"https://CLOVER.example.com":  true,
		"http://clover.example.com":   false,
		"https://evil.example":        false,
		"https://clover.example.com.": false,
	} {
		r := httptest.NewRequest("POST", "http://10.0.0.5:17700/ui/jobs/x/pause", nil)
		r.Header.Set("Origin", origin)
		if got := c.sameOrigin(r); got != want {
			t.Errorf("a write from %s: taken %v, want %v", origin, got, want)
		}
	}
}
